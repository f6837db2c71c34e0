package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"gopkg.in/yaml.v3"

	"github.com/kinlog/kinlog/internal/testenv"
)

func TestAgentConfigErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := fmt.Sprintf("stream: s\nstate_dir: %s\n", dir)
	tests := []struct {
		file string
		args []string
		want string
	}{
		{base, nil, "files: no inputs"},
		{"state_dir: x\nfiles: [{paths: [a]}]\n", nil, "stream: required"},
		{"stream: s\nfiles: [{paths: [a]}]\n", nil, "state_dir: required"},
		{base + "files:\n  - paths: [a]\n    pol_interval: 1s\n", nil, "files[0].pol_interval (file "},
		{base + "files:\n  - paths: [a]\n    poll_interval: soon\n", nil, "files[0].poll_interval"},
		{base + "files:\n  - paths: [a]\n    format: jsn\n", nil, "files[0].format"},
		{base + "files:\n  - paths: []\n", nil, "files[0].paths: at least one glob"},
		{base + "files:\n  - paths: [a]\n    multiline: {start_pattern: '('}\n", nil, "files[0].multiline.start_pattern"},
		{base + "syslog:\n  - listen: 127.0.0.1:514\n", nil, "syslog[0].listen"},
		{base + "sockets:\n  - listen: udp://127.0.0.1:514\n", nil, "sockets[0].listen: udp is for syslog"},
		{base + "partition_key: shard\nfiles: [{paths: [a]}]\n", nil, "partition_key"},
		{base + "files: [{paths: [a]}]\n", []string{"--set", "producer.spool_sync=sometimes"}, "producer.spool_sync"},
		{base + "files: [{paths: [a]}]\n", []string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(p, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, stderr, code := runKinlog(t, ctx, "", append([]string{"agent", "--config", p}, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %q", code, stderr, tt.want)
			}
		})
	}
	if _, stderr, code := runKinlog(t, ctx, "", "agent"); code != 2 || !strings.Contains(stderr, "no configuration: run kinlog agent --config agent.yaml") {
		t.Errorf("agent without a configuration: exit %d, %q", code, stderr)
	}
	p := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(p, []byte(base+"files: [{paths: [/var/log/app/*.log]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runKinlog(t, ctx, "", "agent", "--config", p, "--check")
	if code != 0 || !strings.Contains(out, "paths:") || !strings.Contains(out, "listen: 127.0.0.1:8081") {
		t.Fatalf("--check: exit %d, %s %s", code, out, stderr)
	}
}

// TestAgentShippedConfigs: every agent.yaml the repository ships is valid for this binary.
func TestAgentShippedConfigs(t *testing.T) {
	raw, err := os.ReadFile("../../infra/k8s/agent/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil || cm.Data["agent.yaml"] == "" {
		t.Fatalf("infra/k8s/agent/configmap.yaml: no agent.yaml (%v)", err)
	}
	k8s := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(k8s, []byte(cm.Data["agent.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{k8s, "../../infra/systemd/agent.yaml", "../../examples/celery/agent.yaml"} {
		out, stderr, code := runKinlog(t, context.Background(), "", "agent", "--check", "--config", p)
		if code != 0 {
			t.Errorf("%s: exit %d %s %s", p, code, stderr, out)
		}
	}
}

// TestAgentCommand runs `kinlog agent` on a log file and a syslog socket against the local
// Kinesis, checks its probes and metrics, and stops it with SIGTERM: it exits 0 with every
// line confirmed and its position stored.
func TestAgentCommand(t *testing.T) {
	kc := testenv.KinesisClient(t)
	stream := testenv.Name(t, "agent-cli")
	testenv.CreateStream(t, kc, stream, 2)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	var lines strings.Builder
	for i := range 500 {
		fmt.Fprintf(&lines, `{"level":"info","msg":"line %d"}`+"\n", i)
	}
	if err := os.WriteFile(log, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "syslog.sock")
	cfg := fmt.Sprintf("stream: %s\nstate_dir: %s\nhttp:\n  listen: 127.0.0.1:0\nlog:\n  format: json\nfiles:\n  - paths: [%q]\nsyslog:\n  - listen: unixgram://%s\n",
		stream, filepath.Join(dir, "state"), filepath.Join(dir, "*.log"), sock)
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kinlogBin, "agent", "--config", p)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	addr := probeAddr(t, &stderr)
	waitFor(t, func() (string, bool) { return "", httpGet(t, "http://"+addr+"/readyz") == "ready\n" })
	waitFor(t, func() (string, bool) {
		return "", strings.Contains(httpGet(t, "http://"+addr+"/metrics"), `kinlog_agent_records_shipped_total{input="files[0]"} 500`)
	})
	metrics := httpGet(t, "http://"+addr+"/metrics")
	for _, want := range []string{`kinlog_agent_file_bytes_behind{file="` + log + `",input="files[0]"} 0`, `kinlog_agent_lines_read_total{input="files[0]"} 500`,
		`kinlog_producer_records_delivered_total{producer="files",stream="` + stream + `"} 500`, "kinlog_agent_oldest_unshipped_age_seconds"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent on SIGTERM: %v\n%s", err, stderr.String())
	}
	pos, err := os.ReadFile(filepath.Join(dir, "state", "positions.json"))
	if err != nil || !strings.Contains(string(pos), fmt.Sprintf(`"offset": %d`, lines.Len())) {
		t.Fatalf("positions after SIGTERM: %s %v", pos, err)
	}
}

// TestAgentMissingStream: the agent says at start, in words, that the stream does not
// exist, keeps running (not ready) and stops cleanly.
func TestAgentMissingStream(t *testing.T) {
	testenv.Require(t, testenv.Kinesis)
	dir := t.TempDir()
	cfg := fmt.Sprintf("stream: %s\nstate_dir: %s\nhttp:\n  listen: \"-\"\nlog:\n  format: json\nfiles:\n  - paths: [%q]\n",
		testenv.Name(t, "no-such-stream"), filepath.Join(dir, "state"), filepath.Join(dir, "*.log"))
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kinlogBin, "agent", "--config", p)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	waitFor(t, func() (string, bool) { return "", strings.Contains(stderr.String(), "the stream does not exist") })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent on SIGTERM: %v\n%s", err, stderr.String())
	}
}

func waitFor(t *testing.T, f func() (string, bool)) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if v, ok := f(); ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConsumeRequiresLeaseTable: with consumer.create_lease_table false (the default), a
// missing lease table is an error naming the option, and no table is created (a typo in the
// name used to start a new table and re-archive the whole stream).
func TestConsumeRequiresLeaseTable(t *testing.T) {
	kc := testenv.KinesisClient(t)
	stream := testenv.Name(t, "no-table")
	testenv.CreateStream(t, kc, stream, 1)
	table := testenv.Name(t, "missing-leases")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, stderr, code := runKinlog(t, ctx, "", "consume", "--set", "stream="+stream, "--set", "sink.s3.bucket=unused",
		"--set", "consumer.lease_table="+table, "--set", "http.listen=-")
	if code != 1 || !strings.Contains(stderr, "lease table "+table+" does not exist: set consumer.create_lease_table: true") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if _, err := testenv.DynamoDBClient(t).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table}); err == nil {
		t.Fatalf("lease table %s was created", table)
	}
}

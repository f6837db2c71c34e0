package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/testenv"
)

// kinlogBin is the kinlog binary built once for the CLI tests, which drive the real
// executable the way users do.
var kinlogBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kinlog-cli-test")
	if err != nil {
		panic(err)
	}
	kinlogBin = filepath.Join(dir, "kinlog")
	build := exec.Command("go", "build", "-race", "-o", kinlogBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building kinlog: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runKinlog runs the binary with args and stdin, and returns its output and exit code.
func runKinlog(t *testing.T, ctx context.Context, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, kinlogBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running kinlog %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, 2, "usage: kinlog"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"demo", "--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"athena-ddl"}, 2, "bucket is required"},
		{[]string{"athena-ddl", "--bucket", "b", "--prefix", "logs/!{timestamp:EEE}/"}, 2, "Athena can project"},
		{[]string{"athena-ddl", "--bucket", "b", "--columns", "nocolon"}, 2, "not name:type"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, code := runKinlog(t, ctx, "", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.inStderr) {
				t.Fatalf("kinlog %v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, tt.code, tt.inStderr)
			}
		})
	}
}

// TestCommandHelp: every command's --help (and -h) prints its purpose, usage and flags to
// stdout and exits 0; a wrong flag names itself and points at --help.
func TestCommandHelp(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"demo", "--help"}, {"consume", "--help"}, {"produce", "--help"}, {"produce", "-h"},
		{"query", "--help"}, {"athena-ddl", "--help"}, {"checkpoint", "list", "--help"},
		{"checkpoint", "--help"}, {"checkpoint", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			stdout, stderr, code := runKinlog(t, ctx, "", args...)
			want := "flags:\n  -"
			if len(args) == 2 && args[0] == "checkpoint" {
				want = "kinlog checkpoint list" // the subcommands, each with its own --help
			}
			if code != 0 || !strings.Contains(stdout, "kinlog "+args[0]) || !strings.Contains(stdout, want) || stderr != "" {
				t.Fatalf("kinlog %v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
			}
		})
	}
	// Every command's help ends with examples; help's own help is the command list.
	if stdout, stderr, code := runKinlog(t, ctx, "", "help", "--help"); code != 0 || !strings.Contains(stdout, "commands:") || stderr != "" {
		t.Errorf("kinlog help --help: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, c := range commands() {
		if c.run == nil {
			continue
		}
		if stdout, _, code := runKinlog(t, ctx, "", c.name, "--help"); code != 0 || !strings.Contains(stdout, "\nexamples:\n  ") {
			t.Errorf("kinlog %s --help: exit %d, no examples:\n%s", c.name, code, stdout)
		}
	}
	for _, arg := range []string{"help", "--help", "-h"} {
		if stdout, stderr, code := runKinlog(t, ctx, "", arg); code != 0 || !strings.Contains(stdout, "commands:") || stderr != "" {
			t.Fatalf("kinlog %s: exit %d, stdout %q, stderr %q", arg, code, stdout, stderr)
		}
	}
	_, stderr, code := runKinlog(t, ctx, "", "produce", "--spool-synk", "write")
	if code != 2 || !strings.Contains(stderr, "-spool-synk") || !strings.Contains(stderr, "kinlog produce --help") {
		t.Fatalf("a wrong flag: exit %d, stderr %q", code, stderr)
	}
	if stdout, _, _ := runKinlog(t, ctx, "", "produce", "--help"); !strings.Contains(stdout, "-spool-sync") {
		t.Fatalf("produce --help does not show the spool flags: %q", stdout)
	}
}

func TestAthenaDDLCommand(t *testing.T) {
	out, stderr, code := runKinlog(t, context.Background(), "", "athena-ddl", "--bucket", "arch", "--encoding", "parquet", "--table", "app")
	if code != 0 || !strings.Contains(out, "CREATE EXTERNAL TABLE IF NOT EXISTS kinlog.app (") || !strings.Contains(out, "STORED AS PARQUET") ||
		!strings.Contains(out, "'storage.location.template' = 's3://arch/logs/dt=${dt}/hour=${hour}/'") {
		t.Fatalf("athena-ddl: exit %d\n%s%s", code, out, stderr)
	}
}

// TestDemo runs `kinlog demo` (what `make demo` runs) on the local stack and checks what it
// reports.
func TestDemo(t *testing.T) {
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stdout, stderr, code := runKinlog(t, ctx, "", "demo", "--records", "5000", "--cleanup")
	if code != 0 {
		t.Fatalf("kinlog demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"produced 5000 log records through the slog handler",
		"archived 5000/5000 records",
		"every record archived exactly once",
		"source rollups",
		"█",
		"demo ok",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	for _, re := range []string{`(?m)^records\s+5000$`, `(?m)^latency_ms\s+count 5000 `, `(?m)^errors\s+\d+ \(\d+\.\d+%\)$`} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("demo output does not match %s:\n%s", re, stdout)
		}
	}
	// --cleanup deleted what the demo created.
	m := regexp.MustCompile(`deleted stream (kinlog-demo-\S+), lease table`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no cleanup line:\n%s", stdout)
	}
	if _, err := testenv.S3Client(t).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(m[1])}); err == nil {
		t.Errorf("bucket %s still there after --cleanup", m[1])
	}
	if _, err := testenv.DynamoDBClient(t).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(m[1] + "-leases")}); err == nil {
		t.Errorf("lease table %s-leases still there after --cleanup", m[1])
	}
}

func TestVersionAndHelpCommand(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, code := runKinlog(t, ctx, "", args...)
		if code != 0 || !strings.HasPrefix(out, "kinlog ") || !strings.Contains(out, "go1.") {
			t.Errorf("kinlog %v: exit %d, %q", args, code, out)
		}
	}
	out, _, code := runKinlog(t, ctx, "", "help", "agent")
	if code != 0 || !strings.HasPrefix(out, "kinlog agent: ") || !strings.Contains(out, "examples:") {
		t.Errorf("kinlog help agent: exit %d, %q", code, out)
	}
	if _, stderr, code := runKinlog(t, ctx, "", "help", "nope"); code != 2 || !strings.Contains(stderr, `unknown command "nope"`) {
		t.Errorf("kinlog help nope: exit %d, %q", code, stderr)
	}
}

// TestDemoRefusesRealAWS: without --aws, kinlog demo runs only against local endpoints (it
// creates a stream, a table and a bucket, which cost money in an AWS account).
func TestDemoRefusesRealAWS(t *testing.T) {
	for _, env := range [][]string{
		nil, // no endpoints at all: the SDK would reach AWS
		{"AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:4567", "AWS_ENDPOINT_URL_DYNAMODB=http://localhost:4570", "AWS_ENDPOINT_URL_S3=https://s3.eu-west-1.amazonaws.com"},
	} {
		cmd := exec.Command(kinlogBin, "demo")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "AWS_ENDPOINT_URL") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "pass --aws") {
			t.Errorf("demo with %v: %v\n%s", env, err, out)
		}
		if len(env) > 0 && !strings.Contains(string(out), "AWS_ENDPOINT_URL_S3=https://s3.eu-west-1.amazonaws.com is not on this machine") {
			t.Errorf("demo does not name the remote endpoint:\n%s", out)
		}
	}
}

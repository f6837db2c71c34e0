package agent_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/agent"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// listenerAddr returns the bound address of the agent's listener whose scheme is network.
func listenerAddr(t *testing.T, r *running, network string) string {
	t.Helper()
	for _, l := range r.a.Status().Listeners {
		if a, ok := strings.CutPrefix(l, network+"://"); ok {
			return a
		}
	}
	t.Fatalf("no %s listener in %v", network, r.a.Status().Listeners)
	return ""
}

// waitDelivered waits until the sockets producer delivered n records.
func waitDelivered(t *testing.T, r *running, n uint64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, p := r.a.Producers()
		if got := p.Stats().RecordsDelivered; got >= n {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%d of %d socket records delivered within a minute", got, n)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}

func send(t *testing.T, network, addr string, payloads ...string) {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range payloads {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
}

func decode(t *testing.T, recs []string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range recs {
		var m map[string]any
		if err := json.Unmarshal([]byte(r), &m); err != nil {
			t.Fatalf("record is not JSON: %q", r)
		}
		out = append(out, m)
	}
	return out
}

// TestIntegrationSocketsAndSyslog sends what real senders send — newline-delimited lines
// on a Unix socket and TCP, Python's SysLogHandler datagrams (UDP and Unix datagram),
// rsyslog's TCP forwarding with and without octet counting — and checks every record.
func TestIntegrationSocketsAndSyslog(t *testing.T) {
	c, stream := newStream(t, 2)
	dir := t.TempDir()
	unixSock, dgramSock, syslogStream := filepath.Join(dir, "lines.sock"), filepath.Join(dir, "log.sock"), filepath.Join(dir, "syslog.sock")
	r := start(t, c, agent.Config{Stream: stream, StateDir: t.TempDir(), Host: "h1",
		Sockets: []agent.Listener{{Listen: "unix://" + unixSock}, {Listen: "tcp://127.0.0.1:0"}},
		Syslog:  []agent.Listener{{Listen: "udp://127.0.0.1:0"}, {Listen: "unixgram://" + dgramSock}, {Listen: "unix://" + syslogStream}},
	})
	send(t, "unix", unixSock, `{"msg":"json over unix","level":"info"}`+"\n", "text over unix\r\n", "\n", "no newline at the end")
	send(t, "tcp", listenerAddr(t, r, "tcp"), "text over tcp\n")
	send(t, "udp", listenerAddr(t, r, "udp"), "<11>python udp error\x00")
	send(t, "unixgram", dgramSock, `<14>myapp: {"msg":"python json","task":"t1","level":"INFO"}`+"\x00")
	send(t, "unix", syslogStream, "<30>Dec  1 11:40:18 web1 nginx[42]: rsyslog traditional\n",
		"88 <30>1 2026-12-01T11:40:18.123456+00:00 web2 app 7 ID1 - rsyslog octet-counted rfc5424")
	waitDelivered(t, r, 8)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	byMsg := map[string]map[string]any{}
	for _, m := range decode(t, records(t, c, stream)) {
		msg, _ := m["msg"].(string)
		if msg == "" {
			msg, _ = m["message"].(string)
		}
		byMsg[msg] = m
	}
	check := func(msg string, want map[string]any) {
		t.Helper()
		m, ok := byMsg[msg]
		if !ok {
			t.Errorf("no record with message %q in %v", msg, byMsg)
			return
		}
		for k, v := range want {
			got := m[k]
			if sub, ok := v.(map[string]any); ok {
				gm, _ := got.(map[string]any)
				for sk, sv := range sub {
					if gm[sk] != sv {
						t.Errorf("%q: %s.%s = %v, want %v (record %v)", msg, k, sk, gm[sk], sv, m)
					}
				}
				continue
			}
			if got != v {
				t.Errorf("%q: %s = %v, want %v (record %v)", msg, k, got, v, m)
			}
		}
	}
	check("json over unix", map[string]any{"level": "info"})
	check("text over unix", map[string]any{"host": "h1", "origin": map[string]any{"socket": "unix://" + unixSock}})
	check("no newline at the end", map[string]any{"host": "h1"})
	check("text over tcp", map[string]any{"host": "h1"})
	check("python udp error", map[string]any{"level": "error", "facility": "user"})
	check("python json", map[string]any{"task": "t1", "level": "INFO", "syslog": map[string]any{"app": "myapp", "facility": "user", "level": "info"}})
	check("rsyslog traditional", map[string]any{"host": "web1", "app": "nginx", "pid": "42", "level": "info", "facility": "daemon"})
	check("rsyslog octet-counted rfc5424", map[string]any{"host": "web2", "app": "app", "msgid": "ID1", "time": "2026-12-01T11:40:18.123456Z"})
	if len(byMsg) != 8 {
		t.Errorf("%d records, want 8: %v", len(byMsg), byMsg)
	}
}

// TestIntegrationSocketRecordsSurviveOutageAndRestart: records sent to a socket while
// Kinesis is down stay in the agent's spool across a stop and reach the stream after the
// restart.
func TestIntegrationSocketRecordsSurviveOutageAndRestart(t *testing.T) {
	direct, stream := newStream(t, 1)
	proxy := testenv.NewFaultProxy(t, testenv.Kinesis)
	via := kinesis.NewFromConfig(testenv.AWSConfig(t), func(o *kinesis.Options) { o.BaseEndpoint = &proxy.URL })
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cfg := agent.Config{Stream: stream, StateDir: t.TempDir(), Sockets: []agent.Listener{{Listen: "unix://" + sock}}, ShutdownTimeout: time.Second,
		ProducerOptions: []producer.Option{producer.WithRetryBackoff(50*time.Millisecond, 200*time.Millisecond), producer.WithRequestTimeout(time.Second)}}
	proxy.Down()
	r := start(t, via, cfg)
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf(`{"msg":"spooled %d"}`, i))
	}
	send(t, "unix", sock, strings.Join(lines, "\n")+"\n")
	deadline := time.Now().Add(30 * time.Second)
	for _, p := r.a.Producers(); p.Stats().SpooledRecords < 50; {
		if time.Now().After(deadline) {
			t.Fatalf("records not spooled: %+v", p.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	proxy.Up()
	r = start(t, via, cfg)
	waitDelivered(t, r, 50)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, direct, stream), lines)
}

// TestIntegrationContainerLogs reads Kubernetes pod logs in both formats: CRI (partial
// lines joined) and Docker json-file; records carry the pod, namespace and container from
// the path and the stream.
func TestIntegrationContainerLogs(t *testing.T) {
	c, stream := newStream(t, 1)
	root := t.TempDir()
	cri := filepath.Join(root, "pods", "shop_web-7d9f_0b6c1e2a-1111-2222-3333-444455556666", "nginx", "0.log")
	docker := filepath.Join(root, "docker", "abc", "abc-json.log")
	appendLines(t, cri,
		`2026-12-01T11:40:18.000000001Z stdout F {"msg":"json in cri","level":"warn"}`,
		`2026-12-01T11:40:18.000000002Z stderr P part one `,
		`2026-12-01T11:40:18.000000003Z stderr F and two`,
		`not a cri line`)
	appendLines(t, docker,
		`{"log":"docker text\n","stream":"stdout","time":"2026-12-01T11:40:18.5Z"}`)
	r := start(t, c, agent.Config{Stream: stream, StateDir: t.TempDir(), Files: []agent.FileInput{
		{Paths: []string{filepath.Join(root, "pods", "*", "*", "*.log")}, Format: agent.FormatCRI},
		{Paths: []string{filepath.Join(root, "docker", "*", "*-json.log")}, Format: agent.FormatDocker},
	}})
	r.waitCaughtUp(cri, docker)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	byMsg := map[string]map[string]any{}
	for _, m := range decode(t, records(t, c, stream)) {
		msg, _ := m["msg"].(string)
		if msg == "" {
			msg, _ = m["message"].(string)
		}
		byMsg[msg] = m
	}
	if m := byMsg["json in cri"]; m == nil || m["level"] != "warn" || m["stream"] != "stdout" ||
		m["kubernetes"].(map[string]any)["pod"] != "web-7d9f" || m["kubernetes"].(map[string]any)["namespace"] != "shop" {
		t.Errorf("json in cri: %v", m)
	}
	if m := byMsg["part one and two"]; m == nil || m["stream"] != "stderr" || m["time"] != "2026-12-01T11:40:18.000000002Z" ||
		m["kubernetes"].(map[string]any)["container"] != "nginx" {
		t.Errorf("joined partial line: %v", m)
	}
	if m := byMsg["not a cri line"]; m == nil || m["parse_error"] == nil {
		t.Errorf("malformed cri line: %v", m)
	}
	if m := byMsg["docker text"]; m == nil || m["stream"] != "stdout" || m["time"] != "2026-12-01T11:40:18.5Z" {
		t.Errorf("docker line: %v", m)
	}
	if len(byMsg) != 4 {
		t.Errorf("%d records, want 4: %v", len(byMsg), byMsg)
	}
}

// TestIntegrationContainerPartialLinesHoldThePosition: a stdout line still being joined
// while stderr lines complete keeps the stored position at its first piece (a crash then
// re-reads it whole); when its final piece comes, the position moves to the end. A piece
// nobody finishes (the container exited) is shipped when the file is rotated away.
func TestIntegrationContainerPartialLinesHoldThePosition(t *testing.T) {
	c, stream := newStream(t, 1)
	dir := filepath.Join(t.TempDir(), "pods", "ns_pod_uid", "app")
	log := filepath.Join(dir, "0.log")
	first := `2026-12-01T11:40:18.000000001Z stdout F whole` + "\n"
	appendLines(t, log, strings.TrimSuffix(first, "\n"),
		`2026-12-01T11:40:18.000000002Z stdout P out part one `,
		`2026-12-01T11:40:18.000000003Z stderr F err whole`)
	r := start(t, c, agent.Config{Stream: stream, StateDir: t.TempDir(), Files: []agent.FileInput{{Paths: []string{log}, Format: agent.FormatCRI, RotateWait: 100 * time.Millisecond}}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := r.a.Status().Files
		if len(st) == 1 && st[0].InFlight == 0 && st[0].ReadOffset == st[0].Size && st[0].Size > 0 {
			if st[0].Offset != int64(len(first)) {
				t.Fatalf("stored offset %d with a stdout line half joined, want %d (its first piece)", st[0].Offset, len(first))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not read: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	appendLines(t, log, `2026-12-01T11:40:18.000000004Z stdout F and two`,
		`2026-12-01T11:40:18.000000005Z stdout P never finished`)
	deadline = time.Now().Add(30 * time.Second)
	for {
		st := r.a.Status().Files
		fi, _ := os.Stat(log)
		if len(st) == 1 && st[0].InFlight == 0 && st[0].ReadOffset == fi.Size() {
			if want := fi.Size() - int64(len(`2026-12-01T11:40:18.000000005Z stdout P never finished`)+1); st[0].Offset != want {
				t.Fatalf("stored offset %d, want %d", st[0].Offset, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not read: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Rename(log, log+".20261201-114018"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for len(r.a.Status().Files) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("rotated file not closed: %+v", r.a.Status().Files)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, m := range decode(t, records(t, c, stream)) {
		msgs = append(msgs, m["stream"].(string)+":"+m["message"].(string))
	}
	want := []string{"stdout:whole", "stdout:out part one and two", "stderr:err whole", "stdout:never finished"}
	if !slicesEqual(sorted(msgs), sorted(want)) {
		t.Fatalf("records %q, want %q", sorted(msgs), sorted(want))
	}
}

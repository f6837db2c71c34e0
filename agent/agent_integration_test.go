package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/agent"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// Integration tests run the agent against the local stack's Kinesis (kinesalite) and read
// the stream back as a KCL consumer would.

// running is an agent started by start.
type running struct {
	t      *testing.T
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, c producer.Client, cfg agent.Config) *running {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := agent.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, a: a, cancel: cancel, done: make(chan error, 1)}
	started := make(chan struct{})
	go func() { r.done <- a.Run(ctx, func() { close(started) }) }()
	select {
	case <-started:
	case err := <-r.done:
		cancel()
		t.Fatalf("agent did not start: %v", err)
	}
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends the agent gracefully and returns Run's error.
func (r *running) stop() error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(time.Minute):
		r.t.Fatal("agent did not stop within a minute")
		return nil
	}
}

// waitCaughtUp waits until every tailed file is confirmed to its end and each of paths is
// tailed and confirmed to its current size.
func (r *running) waitCaughtUp(paths ...string) {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := r.a.Status()
		ok := true
		for _, f := range st.Files {
			ok = ok && f.Offset == f.Size && f.InFlight == 0
		}
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil {
				r.t.Fatal(err)
			}
			found := false
			for _, f := range st.Files {
				found = found || (f.Path == p && f.Size == fi.Size() && !f.Rotated)
			}
			ok = ok && found
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("files not confirmed to their end within a minute: %+v", st.Files)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not waiting for an event
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// records returns every user record in the stream, as strings.
func records(t *testing.T, c *kinesis.Client, stream string) []string {
	t.Helper()
	byShard, _ := testenv.ReadStream(t, c, stream)
	var out []string
	for _, recs := range byShard {
		for _, r := range recs {
			out = append(out, string(r.Data))
		}
	}
	sort.Strings(out)
	return out
}

func newStream(t *testing.T, shards int32) (*kinesis.Client, string) {
	c := testenv.KinesisClient(t)
	name := testenv.Name(t, "agent")
	testenv.CreateStream(t, c, name, shards)
	return c, name
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := io.WriteString(f, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func jsonLines(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf(`{"level":"info","msg":"%s line %d","n":%d}`, prefix, i, i))
	}
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func diff(t *testing.T, got, want []string) {
	t.Helper()
	g, w := map[string]int{}, map[string]int{}
	for _, s := range got {
		g[s]++
	}
	for _, s := range want {
		w[s]++
	}
	var missing, extra []string
	for s, n := range w {
		if g[s] < n {
			missing = append(missing, s)
		}
	}
	for s, n := range g {
		if w[s] < n {
			extra = append(extra, s)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		sort.Strings(missing)
		sort.Strings(extra)
		t.Fatalf("stream has %d records, want %d: %d missing (first %q), %d unexpected or duplicated (first %q)",
			len(got), len(want), len(missing), first(missing), len(extra), first(extra))
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// TestIntegrationFileResumesAtStoredPosition ships a file, stops, appends and restarts:
// the second run ships only the new lines, and lines written while the agent was down are
// not lost (the seed's `tail -F` shipped 20 of 150).
func TestIntegrationFileResumesAtStoredPosition(t *testing.T) {
	c, stream := newStream(t, 2)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendLines(t, log, jsonLines("a", 0, 100)...)
	cfg := agent.Config{Stream: stream, StateDir: state, Files: []agent.FileInput{{Paths: []string{filepath.Join(dir, "*.log")}}}}
	r := start(t, c, cfg)
	r.waitCaughtUp(log)
	appendLines(t, log, jsonLines("a", 100, 120)...)
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	appendLines(t, log, jsonLines("a", 120, 150)...) // while the agent is down
	r = start(t, c, cfg)
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, c, stream), jsonLines("a", 0, 150))

	var pos struct {
		Files []struct {
			Path   string `json:"path"`
			Offset int64  `json:"offset"`
		} `json:"files"`
	}
	data, err := os.ReadFile(filepath.Join(state, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &pos); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(log)
	if len(pos.Files) != 1 || pos.Files[0].Path != log || pos.Files[0].Offset != fi.Size() {
		t.Fatalf("positions file %s, want %s at %d", data, log, fi.Size())
	}
}

// TestIntegrationStartAtEnd: with start_at end, a file present at the first start is
// shipped from its end; a file that appears later is shipped whole.
func TestIntegrationStartAtEnd(t *testing.T) {
	c, stream := newStream(t, 1)
	dir := t.TempDir()
	appendLines(t, filepath.Join(dir, "old.log"), jsonLines("old", 0, 50)...)
	r := start(t, c, agent.Config{Stream: stream, StateDir: t.TempDir(), Files: []agent.FileInput{{Paths: []string{filepath.Join(dir, "*.log")}, StartAt: "end"}}})
	appendLines(t, filepath.Join(dir, "old.log"), jsonLines("old", 50, 60)...)
	appendLines(t, filepath.Join(dir, "new.log"), jsonLines("new", 0, 10)...)
	r.waitCaughtUp(filepath.Join(dir, "old.log"), filepath.Join(dir, "new.log"))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, c, stream), append(jsonLines("old", 50, 60), jsonLines("new", 0, 10)...))
}

// TestIntegrationRotationByRename: the file is renamed and a new one created while lines
// keep coming; the old file is read to its end, the new one from its beginning, each line
// once. Then the agent stops, the file rotates again while it is down, and the restarted
// agent finds the renamed file by its inode and reads its end.
func TestIntegrationRotationByRename(t *testing.T) {
	c, stream := newStream(t, 2)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	cfg := agent.Config{Stream: stream, StateDir: state, Files: []agent.FileInput{{Paths: []string{log}, RotateWait: 200 * time.Millisecond}}}
	appendLines(t, log, jsonLines("r", 0, 100)...)
	r := start(t, c, cfg)
	r.waitCaughtUp(log)
	appendLines(t, log, jsonLines("r", 100, 150)...)
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, log+".1", jsonLines("r", 150, 160)...) // the writer has not reopened yet
	appendLines(t, log, jsonLines("r", 160, 200)...)
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// Down: more lines, then a rotation, then lines in the new file.
	appendLines(t, log, jsonLines("r", 200, 230)...)
	if err := os.Rename(log, log+".2"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, log, jsonLines("r", 230, 240)...)
	r = start(t, c, cfg)
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, c, stream), jsonLines("r", 0, 240))
}

// TestIntegrationCopyTruncate: the file is copied and truncated as logrotate's copytruncate
// does, while lines are written: lines the agent had not read yet at the copy are read from
// the copy, and the truncated file from its beginning.
func TestIntegrationCopyTruncate(t *testing.T) {
	c, stream := newStream(t, 2)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendLines(t, log, jsonLines("c", 0, 100)...)
	r := start(t, c, agent.Config{Stream: stream, StateDir: state, Files: []agent.FileInput{{Paths: []string{log}}}})
	r.waitCaughtUp(log)
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range jsonLines("c", 100, 120) {
		fmt.Fprintln(f, l)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.log.1"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	for _, l := range jsonLines("c", 120, 125) {
		fmt.Fprintln(f, l) // O_APPEND: written at the new end, 0
	}
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, c, stream), jsonLines("c", 0, 125))
}

// TestIntegrationCopyTruncateWhileDown: the file is copied and truncated while the agent is
// stopped, with lines it had not read: the restarted agent finds them in the copy.
func TestIntegrationCopyTruncateWhileDown(t *testing.T) {
	c, stream := newStream(t, 2)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	cfg := agent.Config{Stream: stream, StateDir: state, Files: []agent.FileInput{{Paths: []string{log}}}}
	appendLines(t, log, jsonLines("d", 0, 100)...)
	r := start(t, c, cfg)
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	appendLines(t, log, jsonLines("d", 100, 120)...)
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.log.1"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	appendLines(t, log, jsonLines("d", 120, 125)...)
	r = start(t, c, cfg)
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, c, stream), jsonLines("d", 0, 125))
}

// TestIntegrationCopyTruncateGlobMatchesCopies: the glob matches the copies copytruncate
// makes (app.log*): a copy is not shipped again, and the lines only it holds are.
func TestIntegrationCopyTruncateGlobMatchesCopies(t *testing.T) {
	c, stream := newStream(t, 2)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendLines(t, log, jsonLines("g", 0, 100)...)
	r := start(t, c, agent.Config{Stream: stream, StateDir: t.TempDir(), Files: []agent.FileInput{{Paths: []string{log + "*"}}}})
	r.waitCaughtUp(log)
	for round := range 3 {
		from := 100 + round*30
		appendLines(t, log, jsonLines("g", from, from+20)...)
		data, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		copyPath := fmt.Sprintf("%s.%d", log, round+1)
		if err := os.WriteFile(copyPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(log, 0); err != nil {
			t.Fatal(err)
		}
		appendLines(t, log, jsonLines("g", from+20, from+30)...)
		r.waitCaughtUp(log, copyPath)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, c, stream), jsonLines("g", 0, 190))
}

// TestIntegrationTextMultilineAndLimits: text lines become JSON objects with their origin;
// multiline records join a stack trace; a line over the limit is cut and marked; invalid
// UTF-8 and a line that is not JSON in a json input still reach the stream as valid JSON.
func TestIntegrationTextMultilineAndLimits(t *testing.T) {
	c, stream := newStream(t, 1)
	dir := t.TempDir()
	text := filepath.Join(dir, "text.log")
	ml := filepath.Join(dir, "ml.txt")
	appendLines(t, text, "plain line", "", "bad utf8 \xff\xfe", strings.Repeat("x", 300))
	appendLines(t, ml, "2026-12-01 ERROR boom", "Traceback (most recent call last):", `  File "t.py", line 1`, "2026-12-01 INFO next")
	r := start(t, c, agent.Config{Stream: stream, StateDir: t.TempDir(), Host: "h1", Files: []agent.FileInput{
		{Paths: []string{text}, Service: "svc", MaxLineBytes: 100},
		{Paths: []string{ml}, Format: agent.FormatText, Multiline: agent.Multiline{StartPattern: `^\d{4}-`, FlushTimeout: 100 * time.Millisecond}},
	}})
	r.waitCaughtUp(text, ml)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	got := records(t, c, stream)
	var msgs []string
	for _, g := range got {
		var m map[string]any
		if err := json.Unmarshal([]byte(g), &m); err != nil {
			t.Fatalf("record is not JSON: %q", g)
		}
		if m["host"] != "h1" || m["time"] == nil {
			t.Errorf("record %s lacks host or time", g)
		}
		msg := m["message"].(string)
		switch {
		case strings.HasPrefix(msg, "xxx"):
			if len(msg) != 100 || m["truncated"] != true || m["original_bytes"] != 300.0 {
				t.Errorf("long line: %s", g)
			}
			msg = "x*"
		case strings.HasPrefix(msg, "plain"):
			if m["service"] != "svc" || m["origin"].(map[string]any)["file"] != text {
				t.Errorf("text line: %s", g)
			}
		}
		msgs = append(msgs, msg)
	}
	want := []string{"plain line", "bad utf8 \ufffd\ufffd", "x*", "2026-12-01 ERROR boom\nTraceback (most recent call last):\n  File \"t.py\", line 1", "2026-12-01 INFO next"}
	if !slicesEqual(sorted(msgs), sorted(want)) {
		t.Fatalf("messages %q, want %q", sorted(msgs), sorted(want))
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestIntegrationKinesisOutage: Kinesis stops answering (toxiproxy down) while lines are
// written; positions stay where Kinesis confirmed, and when it answers again every line
// arrives.
func TestIntegrationKinesisOutage(t *testing.T) {
	direct, stream := newStream(t, 2)
	proxy := testenv.NewFaultProxy(t, testenv.Kinesis)
	via := kinesis.NewFromConfig(testenv.AWSConfig(t), func(o *kinesis.Options) { o.BaseEndpoint = &proxy.URL })
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendLines(t, log, jsonLines("o", 0, 100)...)
	r := start(t, via, agent.Config{Stream: stream, StateDir: state, Files: []agent.FileInput{{Paths: []string{log}}},
		ProducerOptions: []producer.Option{producer.WithRetryBackoff(50*time.Millisecond, 200*time.Millisecond), producer.WithRequestTimeout(2 * time.Second)}})
	r.waitCaughtUp(log)
	proxy.Down()
	appendLines(t, log, jsonLines("o", 100, 300)...)
	// Every new line is read and none is confirmed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := r.a.Status().Files[0]
		fi, _ := os.Stat(log)
		if st.ReadOffset == fi.Size() && st.InFlight > 0 {
			if st.Offset >= fi.Size() {
				t.Fatalf("position %d moved to the end during the outage", st.Offset)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines not read during the outage: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.a.Ready(); err != nil {
		t.Logf("during the outage: %v", err)
	}
	proxy.Up()
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, direct, stream), jsonLines("o", 0, 300))
}

// TestIntegrationShutdownDuringOutageKeepsPosition: SIGTERM-like stop while Kinesis is down:
// the agent gives up after its shutdown timeout, the position stays before the undelivered
// lines, and the next run ships them.
func TestIntegrationShutdownDuringOutageKeepsPosition(t *testing.T) {
	direct, stream := newStream(t, 1)
	proxy := testenv.NewFaultProxy(t, testenv.Kinesis)
	via := kinesis.NewFromConfig(testenv.AWSConfig(t), func(o *kinesis.Options) { o.BaseEndpoint = &proxy.URL })
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	cfg := agent.Config{Stream: stream, StateDir: state, Files: []agent.FileInput{{Paths: []string{log}}}, ShutdownTimeout: time.Second,
		ProducerOptions: []producer.Option{producer.WithRetryBackoff(50*time.Millisecond, 200*time.Millisecond), producer.WithRequestTimeout(time.Second)}}
	appendLines(t, log, jsonLines("s", 0, 10)...)
	r := start(t, via, cfg)
	r.waitCaughtUp(log)
	proxy.Down()
	appendLines(t, log, jsonLines("s", 10, 50)...)
	deadline := time.Now().Add(30 * time.Second)
	for st := r.a.Status().Files[0]; st.ReadOffset != fileSize(t, log); st = r.a.Status().Files[0] {
		if time.Now().After(deadline) {
			t.Fatalf("not read: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	proxy.Up()
	r = start(t, via, cfg)
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, direct, stream), jsonLines("s", 0, 50))
}

// TestIntegrationStateDirLocked: a second agent on the same state directory is refused.
func TestIntegrationStateDirLocked(t *testing.T) {
	c, stream := newStream(t, 1)
	state := t.TempDir()
	cfg := agent.Config{Stream: stream, StateDir: state, Files: []agent.FileInput{{Paths: []string{filepath.Join(t.TempDir(), "*.log")}}}}
	start(t, c, cfg)
	a, err := agent.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "in use by another kinlog agent") {
		t.Fatalf("second agent on one state dir: %v", err)
	}
}

// TestIntegrationStreamMissingThenCreated: Kinesis refuses every record (the stream does
// not exist); the agent reports not ready, keeps the position, and puts the records again
// after a backoff: once the stream exists they arrive.
func TestIntegrationStreamMissingThenCreated(t *testing.T) {
	c := testenv.KinesisClient(t)
	stream := testenv.Name(t, "agent-late")
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendLines(t, log, jsonLines("m", 0, 20)...)
	r := start(t, c, agent.Config{Stream: stream, StateDir: t.TempDir(), Files: []agent.FileInput{{Paths: []string{log}}},
		ProducerOptions: []producer.Option{producer.WithRetryBackoff(50*time.Millisecond, 200*time.Millisecond)}})
	deadline := time.Now().Add(30 * time.Second)
	for r.a.Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatal("agent ready although Kinesis refuses every record")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("not ready: %v", r.a.Ready())
	if st := r.a.Status().Files[0]; st.Offset != 0 {
		t.Fatalf("position moved to %d with every record refused", st.Offset)
	}
	testenv.CreateStream(t, c, stream, 1)
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, c, stream), jsonLines("m", 0, 20))
}

// TestIntegrationDeletedFile: a file deleted while its writer still appends is read to its
// end and closed after rotate_wait; a new file at the same path is read whole.
func TestIntegrationDeletedFile(t *testing.T) {
	c, stream := newStream(t, 1)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range jsonLines("x", 0, 10) {
		fmt.Fprintln(f, l)
	}
	r := start(t, c, agent.Config{Stream: stream, StateDir: t.TempDir(), Files: []agent.FileInput{{Paths: []string{log}, RotateWait: time.Second}}})
	r.waitCaughtUp(log)
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	for _, l := range jsonLines("x", 10, 20) {
		fmt.Fprintln(f, l) // to the deleted file, still open
	}
	appendLines(t, log, jsonLines("x", 20, 30)...)
	r.waitCaughtUp(log)
	// The deleted file is closed once read and idle.
	deadline := time.Now().Add(30 * time.Second)
	for len(r.a.Status().Files) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("deleted file still open: %+v", r.a.Status().Files)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	diff(t, records(t, c, stream), jsonLines("x", 0, 30))
}

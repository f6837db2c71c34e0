package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/agent"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/internal/testenv"
)

const (
	envCrashState  = "KINLOG_AGENT_CRASH_STATE" // set only in the helper process
	envCrashStream = "KINLOG_AGENT_CRASH_STREAM"
	envCrashGlob   = "KINLOG_AGENT_CRASH_GLOB"
)

// TestIntegrationAgentCrashHelper is the agent process of TestIntegrationAgentSIGKILL.
func TestIntegrationAgentCrashHelper(t *testing.T) {
	state := os.Getenv(envCrashState)
	if state == "" {
		t.Skip("helper process of TestIntegrationAgentSIGKILL")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	a, err := agent.New(testenv.KinesisClient(t), agent.Config{Stream: os.Getenv(envCrashStream), StateDir: state,
		PositionsInterval: 100 * time.Millisecond, Files: []agent.FileInput{{Paths: []string{os.Getenv(envCrashGlob)}, RotateWait: 300 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	started := make(chan struct{})
	go func() {
		<-started
		// Report the count of re-sent records to the test, often.
		for tick := time.NewTicker(10 * time.Millisecond); ; <-tick.C {
			fmt.Printf("resent %d\n", int(gatherCounter(reg, "kinlog_agent_records_resent_total")))
		}
	}()
	if err := a.Run(ctx, func() { fmt.Println("started"); close(started) }); err != nil {
		t.Fatal(err)
	}
}

func gatherCounter(g prometheus.Gatherer, name string) float64 {
	mfs, _ := g.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// TestIntegrationAgentSIGKILL writes lines to a log, rotating it by rename now and then,
// while the agent is SIGKILLed four times and restarted; the last run stops on SIGTERM.
// Every line must reach the stream. Duplicates are possible only for lines past the
// position stored at each kill, and are reported. Every copy of a line carries the line's
// identity (its file's origin, offset and length), and the archive sink's deduplication over
// the stream keeps exactly one copy of each line (checkCrashIdentities).
func TestIntegrationAgentSIGKILL(t *testing.T) {
	c, stream := newStream(t, 2)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendLines(t, log) // create it

	var mu sync.Mutex
	written := 0
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; {
			select {
			case <-stopWriter:
				return
			case <-tick.C:
			}
			mu.Lock()
			appendLines(t, log, jsonLines("k", i, i+10)...)
			i += 10
			written = i
			if i%3000 == 0 {
				_ = os.Rename(log, fmt.Sprintf("%s.%d", log, i))
			}
			mu.Unlock()
		}
	}()

	var resent atomic.Int64  // the running helper's count of re-sent records
	var reports atomic.Int64 // how many counts it printed
	run := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIntegrationAgentCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), envCrashState+"="+state, envCrashStream+"="+stream, envCrashGlob+"="+log)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && !strings.Contains(sc.Text(), "started") {
		}
		resent.Store(0)
		go func() {
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "resent "); ok {
					n, _ := strconv.Atoi(v)
					resent.Store(int64(n))
					reports.Add(1)
				}
			}
		}()
		return cmd
	}
	// lastResent waits for a report printed after now and returns it.
	lastResent := func() int {
		for n := reports.Load(); reports.Load() < n+2; {
			time.Sleep(5 * time.Millisecond) // polling the helper's reports
		}
		return int(resent.Load())
	}
	counted := 0 // re-sent records the agent counted, over all runs
	// A duplicate can only be a line the agent had read but whose position was not stored
	// at the kill: at most every line written after the stored position.
	maxDup := 0
	kills := 0
	for kills < 4 {
		cmd := run()
		mu.Lock()
		before := written
		mu.Unlock()
		// Let it ship for a while: until the stored position passes what was written
		// before this run started (so each run makes progress), then kill it.
		deadline := time.Now().Add(30 * time.Second)
		for committedLines(t, state) < before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // polling a condition
		}
		if kills > 0 {
			counted += lastResent()
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		kills++
		mu.Lock()
		maxDup += written - committedLines(t, state)
		mu.Unlock()
	}
	close(stopWriter)
	<-writerDone
	cmd := run()
	// Wait until the stored position reaches the end of everything written, then SIGTERM.
	deadline := time.Now().Add(time.Minute)
	for committedLines(t, state) < written {
		if time.Now().After(deadline) {
			t.Fatalf("stored position at %d of %d lines", committedLines(t, state), written)
		}
		time.Sleep(20 * time.Millisecond)
	}
	counted += lastResent()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent on SIGTERM: %v", err)
	}
	got := records(t, c, stream)
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	lost, dups := 0, 0
	for _, l := range jsonLines("k", 0, written) {
		switch n := seen[l]; {
		case n == 0:
			lost++
		case n > 1:
			dups += n - 1
		}
	}
	t.Logf("%d lines written, %d kills, rotations every 3000 lines: %d lost, %d duplicated (bound %d), %d counted as re-sent by the agent", written, kills, lost, dups, maxDup, counted)
	if lost > 0 || len(got)-dups != written {
		t.Fatalf("%d lines lost; %d records for %d lines and %d duplicates", lost, len(got), written, dups)
	}
	if dups > counted {
		t.Fatalf("%d duplicates, more than the %d the agent counted as re-sent", dups, counted)
	}
	if dups > maxDup {
		t.Fatalf("%d duplicates, more than the %d lines past the stored positions at the kills", dups, maxDup)
	}
	checkCrashIdentities(t, c, stream, filepath.Dir(log), written)
}

// checkCrashIdentities checks the identities of TestIntegrationAgentSIGKILL's lines: each
// line's copies (the first and those re-read after a kill) carry one identity, its file's
// origin with the line's offset and length; distinct lines and files have distinct ones;
// and the archive sink's deduplication (a dedup state per shard, over the stream in shard
// order) keeps exactly one copy of every line.
func checkCrashIdentities(t *testing.T, c *kinesis.Client, stream, dir string, written int) {
	t.Helper()
	// Where each line is: its file and offset (lines are numbered, each written once).
	type place struct {
		file      string
		seq, span uint64
	}
	where := make([]place, written)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		off := 0
		for _, l := range strings.SplitAfter(string(data), "\n") {
			var m struct{ N *int }
			if json.Unmarshal([]byte(l), &m) == nil && m.N != nil && *m.N < written {
				where[*m.N] = place{e.Name(), uint64(off), uint64(len(l))}
			}
			off += len(l)
		}
	}
	recs := streamRecords(t, c, stream)
	ids := make([]kpl.Identity, written)
	copies := make([]int, written)
	fileOrigin := map[string]string{} // file name → origin
	originFile := map[string]string{}
	bad := 0
	for _, u := range recs {
		var m struct{ N *int }
		if err := json.Unmarshal(u.rec.Data, &m); err != nil || m.N == nil || *m.N >= written {
			t.Fatalf("record %q is not one of the lines written", u.rec.Data)
		}
		n, id := *m.N, u.rec.ID
		p := where[n]
		if copies[n] > 0 && (id.Origin != ids[n].Origin || id.Seq != ids[n].Seq || id.Span != ids[n].Span) {
			bad++
			if bad <= 5 {
				t.Errorf("line %d: copies with identities %v and %v", n, ids[n], id)
			}
		}
		copies[n]++
		ids[n] = id
		if id.Seq != p.seq || max(id.Span, 1) != p.span || id.Floor > id.Seq {
			bad++
			if bad <= 5 {
				t.Errorf("line %d at %d+%d of %s: identity %+v", n, p.seq, p.span, p.file, id)
			}
		}
		// One origin per file, and per origin one file.
		if o, ok := fileOrigin[p.file]; ok && o != id.Origin {
			bad++
			if bad <= 5 {
				t.Errorf("line %d of %s has origin %s; the file's other lines have %s", n, p.file, id.Origin, o)
			}
		}
		if f, ok := originFile[id.Origin]; ok && f != p.file {
			bad++
			if bad <= 5 {
				t.Errorf("line %d of %s has origin %s, which is %s's", n, p.file, id.Origin, f)
			}
		}
		fileOrigin[p.file], originFile[id.Origin] = id.Origin, p.file
	}
	if bad > 0 {
		t.Fatalf("%d identities wrong", bad)
	}
	inStream := 0
	for _, n := range copies {
		inStream += max(n-1, 0)
	}
	kept, dropped := dedupStream(t, c, stream, recs)
	archived := make([]int, written)
	for _, u := range kept {
		var m struct{ N int }
		_ = json.Unmarshal(u.rec.Data, &m)
		archived[m.N]++
	}
	lost, left := 0, 0
	for _, n := range archived {
		switch {
		case n == 0:
			lost++
		case n > 1:
			left += n - 1
		}
	}
	t.Logf("identities: %d lines in %d files, %d records in the stream (%d duplicates, each copy with its line's identity); after the dedup state: %d dropped, %d duplicates left, %d lost",
		written, len(fileOrigin), len(recs), inStream, dropped, left, lost)
	if lost > 0 || left > 0 || dropped != inStream {
		t.Fatalf("the dedup state left %d duplicates and lost %d lines (dropped %d of %d duplicates)", left, lost, dropped, inStream)
	}
}

// committedLines returns how many lines of the test's log (all files) the positions file
// says are confirmed: the highest n of a line before a stored offset, plus one, taken over
// every file (lines are written in order, so that is the count shipped in order).
func committedLines(t *testing.T, state string) int {
	data, err := os.ReadFile(filepath.Join(state, "positions.json"))
	if err != nil {
		return 0
	}
	var doc struct {
		Files []struct {
			Path   string `json:"path"`
			Inode  uint64 `json:"inode"`
			Offset int64  `json:"offset"`
		} `json:"files"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("positions file: %v", err)
	}
	// The oldest file still tracked bounds what is confirmed: its line before the offset.
	lowest := -1
	for _, f := range doc.Files {
		n := lineBefore(t, filepath.Dir(f.Path), f.Inode, f.Offset)
		if lowest == -1 || n < lowest {
			lowest = n
		}
	}
	return max(lowest, 0)
}

// lineBefore finds the file with inode in dir and returns n+1 of the last line that ends
// at or before off (the count of lines confirmed if lines are numbered from 0 in order).
func lineBefore(t *testing.T, dir string, inode uint64, off int64) int {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Ino != inode {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || int64(len(data)) < off {
			return 0
		}
		lines := strings.Split(strings.TrimSuffix(string(data[:off]), "\n"), "\n")
		var m struct{ N int }
		if off == 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &m) != nil {
			// Nothing confirmed in this file: the line before its first one.
			var f struct{ N int }
			if all := strings.SplitN(string(data), "\n", 2); json.Unmarshal([]byte(all[0]), &f) == nil {
				return f.N
			}
			return 0
		}
		return m.N + 1
	}
	return 0
}

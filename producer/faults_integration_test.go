package producer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// The fault tests put a toxiproxy proxy (testenv.FaultProxy) between the producer's real SDK
// client and kinesalite, and break the network the way it breaks: a stopped server
// (connections refused), a frozen one (accepted, never answered), slow answers, resets in
// the middle of requests, and requests the server executes whose answers are lost. After
// each, the stream is read back: no accepted record may be missing; duplicates (from
// requests applied but not confirmed) are counted and reported.

// proxiedKinesis returns a fault proxy in front of kinesalite, a client through it and a
// direct client, and a new stream of shards shards.
func proxiedKinesis(t *testing.T, shards int32) (fp *testenv.FaultProxy, through, direct *kinesis.Client, stream string) {
	t.Helper()
	direct = testenv.KinesisClient(t)
	fp = testenv.NewFaultProxy(t, testenv.Kinesis)
	through = kinesis.NewFromConfig(testenv.AWSConfig(t), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(fp.URL) })
	stream = testenv.Name(t, "faults")
	testenv.CreateStream(t, direct, stream, shards)
	return fp, through, direct, stream
}

// countStream reads the stream and returns how many times each of records 0..n-1 is in it.
func countStream(t *testing.T, c *kinesis.Client, stream string, n int) []int {
	t.Helper()
	byShard, _ := testenv.ReadStream(t, c, stream)
	seen := make([]int, n)
	for _, recs := range byShard {
		for _, r := range recs {
			i, err := strconv.Atoi(string(r.Data[:8]))
			if err != nil || i < 0 || i >= n {
				t.Fatalf("unexpected record %q", r.Data)
			}
			seen[i]++
		}
	}
	return seen
}

// lostAndDuplicated counts records of accepted (indexes) missing from seen, and the extra
// copies.
func lostAndDuplicated(seen []int, accepted func(i int) bool) (lost, dups int) {
	for i, c := range seen {
		if c == 0 && accepted(i) {
			lost++
		}
		if c > 1 {
			dups += c - 1
		}
	}
	return lost, dups
}

func keyOf(i int) string { return "user-" + strconv.Itoa(i%997) }

// produceAt puts records from..to-1 at rate records per second (the pace of an app, not a
// synchronisation) and returns how many Put calls failed.
func produceAt(ctx context.Context, p *producer.Producer, from, to, rate int) (failed int, last error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := max(rate/100, 1)
	for i := from; i < to; {
		for j := 0; j < per && i < to; j, i = j+1, i+1 {
			if err := p.Put(ctx, producer.Record{PartitionKey: keyOf(i), Data: line(i)}); err != nil {
				failed++
				last = err
			}
		}
		<-tick.C
	}
	return failed, last
}

func outageSeconds() int {
	if v, err := strconv.Atoi(os.Getenv("KINLOG_OUTAGE_SECONDS")); err == nil && v > 0 {
		return v
	}
	return 60
}

// TestIntegrationKinesisOutage: 2,000 records/s while Kinesis is unreachable for 60 s — the
// first half refused (a stopped server), the second half frozen (connections accepted and
// never answered). Without a spool the memory buffer holds it all (TTL above the outage);
// with a spool, the memory buffer is made smaller than the outage and the rest waits on disk.
// Nothing accepted may be lost.
func TestIntegrationKinesisOutage(t *testing.T) {
	for _, spooled := range []bool{false, true} {
		t.Run(fmt.Sprintf("spool=%v", spooled), func(t *testing.T) {
			t.Parallel()
			fp, through, direct, stream := proxiedKinesis(t, 4)
			outage := time.Duration(outageSeconds()) * time.Second
			const rate = 2000
			n := rate * int(outage/time.Second+15)
			opts := []producer.Option{producer.WithRecordTTL(5 * time.Minute)}
			if spooled {
				opts = append(opts, producer.WithSpool(t.TempDir(), producer.SpoolOptions{}),
					producer.WithMaxBufferedBytes(1<<20))
			}
			p, err := producer.New(through, stream, opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			done := make(chan struct{})
			var putFailed int
			var putErr error
			go func() {
				defer close(done)
				putFailed, putErr = produceAt(ctx, p, 0, n, rate)
			}()
			// 5 s of normal traffic, the outage, then the rest.
			<-time.After(5 * time.Second)
			fp.Down()
			<-time.After(outage / 2)
			fp.Up()
			fp.Freeze()
			<-time.After(outage / 2)
			var peak producer.Stats = p.Stats()
			fp.Heal()
			healed := time.Now()
			// Poll the backlog down to what normal traffic keeps in flight.
			var caughtUp time.Duration
			for caughtUp == 0 && time.Since(healed) < 3*time.Minute {
				if st := p.Stats(); st.BufferedRecords+int64(st.SpooledRecords) < 2*rate {
					caughtUp = time.Since(healed)
				}
				<-time.After(50 * time.Millisecond)
			}
			<-done
			cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			if err := p.Close(cctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			st := p.Stats()
			t.Logf("%d records at %d/s, %v outage: delivered %d, failed %d, retried %d, request errors %d; "+
				"at the end of the outage %d in memory (%d bytes), %d spooled (%d bytes, oldest %v); caught up %v after the heal",
				n, rate, outage, st.RecordsDelivered, st.RecordsFailed, st.RecordsRetried, st.RequestErrors,
				peak.BufferedRecords, peak.BufferedBytes, peak.SpooledRecords, peak.SpooledBytes, peak.OldestSpooledAge.Round(time.Second),
				caughtUp.Round(50*time.Millisecond))
			if putFailed > 0 {
				t.Fatalf("%d Put calls failed, last: %v", putFailed, putErr)
			}
			if st.RecordsFailed != 0 || st.RecordsDelivered != uint64(n) {
				t.Fatalf("%d failed, %d delivered of %d", st.RecordsFailed, st.RecordsDelivered, n)
			}
			if spooled && peak.SpooledRecords <= uint64(peak.BufferedRecords) {
				t.Fatalf("the outage did not exceed the memory buffer: %d spooled, %d in memory", peak.SpooledRecords, peak.BufferedRecords)
			}
			lost, dups := lostAndDuplicated(countStream(t, direct, stream, n), func(int) bool { return true })
			t.Logf("read back: %d lost, %d duplicated", lost, dups)
			if lost > 0 {
				t.Fatalf("%d of %d accepted records are not in the stream", lost, n)
			}
		})
	}
}

// TestIntegrationBufferFullDuringOutage: with Kinesis frozen and no spool, Put blocks once the
// memory buffer is full and TryPut fails fast with ErrBufferFull; after the heal, every
// accepted record is delivered.
func TestIntegrationBufferFullDuringOutage(t *testing.T) {
	fp, through, direct, stream := proxiedKinesis(t, 2)
	p, err := producer.New(through, stream, producer.WithMaxBufferedBytes(1<<20), producer.WithRecordTTL(5*time.Minute),
		producer.WithRequestTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fp.Freeze()
	accepted := 0
	for {
		err := p.TryPut(producer.Record{PartitionKey: keyOf(accepted), Data: line(accepted)})
		if errors.Is(err, producer.ErrBufferFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err = p.Put(ctx, producer.Record{PartitionKey: keyOf(accepted), Data: line(accepted)})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < time.Second {
		t.Fatalf("Put with a full buffer returned %v after %v, want it to block until its context ended", err, time.Since(start))
	}
	blocked := make(chan error, 1)
	go func() {
		blocked <- p.Put(context.Background(), producer.Record{PartitionKey: keyOf(accepted), Data: line(accepted)})
	}()
	fp.Heal()
	if err := <-blocked; err != nil {
		t.Fatalf("blocked Put after the heal: %v", err)
	}
	accepted++
	cctx, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	if err := p.Close(cctx); err != nil {
		t.Fatal(err)
	}
	lost, dups := lostAndDuplicated(countStream(t, direct, stream, accepted), func(int) bool { return true })
	t.Logf("%d records filled the 1 MiB buffer; after the heal %d lost, %d duplicated", accepted, lost, dups)
	if lost > 0 {
		t.Fatalf("%d lost", lost)
	}
}

// TestIntegrationNetworkFaults: slow answers, resets in the middle of requests, answers cut
// short, and requests Kinesis executes whose answers never come back, each for a few seconds
// while producing. Nothing may be lost; lost answers cause duplicates, which are counted.
func TestIntegrationNetworkFaults(t *testing.T) {
	faults := []struct {
		name   string
		inject func(fp *testenv.FaultProxy)
	}{
		{"slow answers (3 s latency)", func(fp *testenv.FaultProxy) { fp.Latency(3*time.Second, 500*time.Millisecond) }},
		{"connections reset mid-request", func(fp *testenv.FaultProxy) { fp.ResetConnections() }},
		{"answers cut after 100 bytes", func(fp *testenv.FaultProxy) { fp.CutResponsesAfter(100) }},
		{"answers lost after the request was applied", func(fp *testenv.FaultProxy) { fp.LoseResponses() }},
		{"bandwidth 32 KB/s", func(fp *testenv.FaultProxy) { fp.Bandwidth(32) }},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			fp, through, direct, stream := proxiedKinesis(t, 2)
			p, err := producer.New(through, stream, producer.WithRecordTTL(5*time.Minute), producer.WithRequestTimeout(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			const n, rate = 16000, 2000
			done := make(chan int, 1)
			go func() { failed, _ := produceAt(context.Background(), p, 0, n, rate); done <- failed }()
			<-time.After(2 * time.Second)
			f.inject(fp)
			<-time.After(4 * time.Second)
			fp.Heal()
			if failed := <-done; failed > 0 {
				t.Fatalf("%d Put calls failed", failed)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := p.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			st := p.Stats()
			lost, dups := lostAndDuplicated(countStream(t, direct, stream, n), func(int) bool { return true })
			t.Logf("%s: %d records, %d request errors, %d retried; read back %d lost, %d duplicated",
				f.name, n, st.RequestErrors, st.RecordsRetried, lost, dups)
			if lost > 0 || st.RecordsFailed > 0 {
				t.Fatalf("%d lost, %d failed", lost, st.RecordsFailed)
			}
		})
	}
}

// Environment of the helper process of TestIntegrationSpoolSIGKILL.
const (
	envHelper = "KINLOG_SPOOL_HELPER" // spool directory; set only in the helper process
	envStream = "KINLOG_SPOOL_STREAM"
	envFrom   = "KINLOG_SPOOL_FROM"
	envTo     = "KINLOG_SPOOL_TO"
)

// TestIntegrationSpoolHelper is the producing process of TestIntegrationSpoolSIGKILL: it puts
// records FROM..TO-1 with a spool at 5,000 records/s, writes each accepted index to stdout
// once Put returned, and closes. It skips unless started by that test.
func TestIntegrationSpoolHelper(t *testing.T) {
	dir := os.Getenv(envHelper)
	if dir == "" {
		t.Skip("helper process of TestIntegrationSpoolSIGKILL")
	}
	from, _ := strconv.Atoi(os.Getenv(envFrom))
	to, _ := strconv.Atoi(os.Getenv(envTo))
	c := kinesis.NewFromConfig(testenv.AWSConfig(t))
	p, err := producer.New(c, os.Getenv(envStream), producer.WithSpool(dir, producer.SpoolOptions{Sync: producer.SyncWrite}))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := p.SpoolRecovery(); r.Records > 0 || len(r.Damaged) > 0 {
		fmt.Fprintf(os.Stderr, "recovered %d records from %d segments, damage %+v\n", r.Records, r.Segments, r.Damaged)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := from; i < to; {
		for j := 0; j < 50 && i < to; j, i = j+1, i+1 {
			if err := p.Put(context.Background(), producer.Record{PartitionKey: keyOf(i), Data: line(i)}); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(os.Stdout, "%d\n", i) // unbuffered: one write(2) after each accepted record
		}
		<-tick.C
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	fmt.Fprintf(os.Stderr, "done: delivered %d, replayed %d\n", st.RecordsDelivered, st.RecordsReplayed)
}

// TestIntegrationSpoolSIGKILL produces 100,000 records from a helper process with a spool and
// SIGKILLs it every 1.5-2.5 s, restarting it each time from the record after the last one it
// accepted; the last run ends normally. Every accepted record must reach the stream.
func TestIntegrationSpoolSIGKILL(t *testing.T) {
	direct := testenv.KinesisClient(t)
	stream := testenv.Name(t, "spool-kill")
	testenv.CreateStream(t, direct, stream, 4)
	dir := t.TempDir()
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("KINLOG_SPOOL_KILL_RECORDS")); err == nil && v > 0 {
		n = v
	}
	accepted := make([]bool, n)
	next, kills := 0, 0
	for run := 0; next < n; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIntegrationSpoolHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), envHelper+"="+dir, envStream+"="+stream,
			envFrom+"="+strconv.Itoa(next), envTo+"="+strconv.Itoa(n))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var timer *time.Timer
		if run < 12 {
			d := 1500*time.Millisecond + time.Duration(run%5)*250*time.Millisecond
			timer = time.AfterFunc(d, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			i, err := strconv.Atoi(sc.Text())
			if err != nil || i < 0 || i >= n {
				continue // test framework output
			}
			accepted[i] = true
			next = max(next, i+1)
		}
		_, _ = io.Copy(io.Discard, stdout)
		err = cmd.Wait()
		if timer != nil {
			timer.Stop()
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			kills++
			continue
		}
		if err != nil {
			t.Fatalf("helper run %d: %v\n%s", run, err, stderr.String())
		}
		t.Logf("last run: %s", strings.TrimSpace(stderr.String()))
		if next < n {
			t.Fatalf("the last run ended at %d of %d", next, n)
		}
	}
	acceptedCount := 0
	for _, a := range accepted {
		if a {
			acceptedCount++
		}
	}
	lost, dups := lostAndDuplicated(countStream(t, direct, stream, n), func(i int) bool { return accepted[i] })
	t.Logf("%d records, %d SIGKILLs, %d accepted (reported back before the kill); read back: %d lost, %d duplicated",
		n, kills, acceptedCount, lost, dups)
	if kills < 3 {
		t.Fatalf("only %d kills: the helper finished too fast", kills)
	}
	if lost > 0 {
		t.Fatalf("%d accepted records never reached the stream", lost)
	}
}

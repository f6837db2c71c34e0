package producer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// gatedStream is a fakeStream whose PutRecords calls wait while the gate is closed (an
// outage: each call ends with its context, as a request to a frozen server does).
type gatedStream struct {
	*fakeStream
	open atomic.Bool
	mu   sync.Mutex
	ch   chan struct{} // closed when the gate opens
}

func newGatedStream(shards int) *gatedStream {
	return &gatedStream{fakeStream: newFakeStream(shards), ch: make(chan struct{})}
}

func (g *gatedStream) openGate() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open.CompareAndSwap(false, true) {
		close(g.ch)
	}
}

func (g *gatedStream) client() *fakeClient {
	fc := g.fakeStream.client()
	fc.putRecords = func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		g.mu.Lock()
		ch := g.ch
		g.mu.Unlock()
		select {
		case <-ch:
			return g.putRecords(ctx, in)
		case <-ctx.Done():
			return nil, fmt.Errorf("request send failed: %w", ctx.Err())
		}
	}
	return fc
}

func spoolRecord(i int) Record {
	return Record{PartitionKey: fmt.Sprintf("key-%d", i%7), Data: fmt.Appendf(nil, "%08d spooled log line with some text", i)}
}

// checkAllOnceInOrder checks that the stream holds records 0..n-1, each at least once, in
// put order per partition key when ordered is set, and returns how many were there more than
// once. (Order per key holds with one request in flight and no retries; concurrent requests
// and retries can reorder, as in the KPL.)
func checkAllOnceInOrder(t *testing.T, fs *fakeStream, n int, ordered bool) (dups int) {
	t.Helper()
	seen := make([]int, n)
	last := map[string]int{}
	for _, recs := range fs.consumed(t) {
		for _, r := range recs {
			var i int
			if _, err := fmt.Sscanf(string(r.Data[:8]), "%d", &i); err != nil || i < 0 || i >= n {
				t.Fatalf("unexpected record %q", r.Data)
			}
			seen[i]++
			if seen[i] == 1 && ordered {
				if prev, ok := last[r.PartitionKey]; ok && prev > i {
					t.Fatalf("record %d of key %s arrived after record %d", i, r.PartitionKey, prev)
				}
				last[r.PartitionKey] = i
			}
		}
	}
	for i, c := range seen {
		if c == 0 {
			t.Fatalf("record %d never reached the stream", i)
		}
		dups += c - 1
	}
	return dups
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

// abortClose closes p with a context that has already ended: what a SIGTERM handler with no
// time left does. With a spool, every undelivered record stays on disk.
func abortClose(t *testing.T, p *Producer) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return p.Close(ctx)
}

func TestSpoolDeliversAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	fs := newFakeStream(2)
	for _, mode := range []SpoolSync{SyncWrite, SyncBatched, SyncFsync} {
		t.Run(mode.String(), func(t *testing.T) {
			p, err := New(fs.client(), "s", WithSpool(dir, SpoolOptions{Sync: mode, SegmentBytes: 4 << 10}))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2000 {
				if err := p.Put(context.Background(), spoolRecord(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := p.Stats()
			if st.SpooledRecords != 0 || st.RecordsDelivered != 2000 {
				t.Fatalf("after Flush: %d spooled, %d delivered", st.SpooledRecords, st.RecordsDelivered)
			}
			mustClose(t, p)
			if segs := segments(t, dir); len(segs) != 0 {
				t.Fatalf("segments left after a clean Close: %v", segs)
			}
			fs.mu.Lock()
			clear(fs.stored)
			fs.mu.Unlock()
		})
	}
}

// TestSpoolReplaysAfterAbortedClose: records put during an outage stay in the spool when
// Close gives up; the next producer on the directory sends them, in order, with the same
// producer id.
func TestSpoolReplaysAfterAbortedClose(t *testing.T) {
	dir := t.TempDir()
	gs := newGatedStream(3)
	var res results
	p, err := New(gs.client(), "s", WithSpool(dir, SpoolOptions{SegmentBytes: 8 << 10}), WithResultHandler(res.handle),
		WithRequestTimeout(50*time.Millisecond), WithRetryBackoff(10*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	rec1, _ := p.SpoolRecovery()
	const n = 3000
	for i := range n - 1 {
		if err := p.Put(context.Background(), spoolRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	syncErr := make(chan error, 1)
	go func() {
		_, err := p.PutSync(context.Background(), spoolRecord(n-1))
		syncErr <- err
	}()
	for p.Stats().RecordsPut < n { // until the PutSync record is accepted
		runtime.Gosched()
	}
	err = abortClose(t, p)
	if err := <-syncErr; !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "stays in the spool") {
		t.Fatalf("PutSync of a record kept in the spool: %v", err)
	}
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d records kept in the spool", n)) {
		t.Fatalf("Close: %v, want the %d records reported kept in the spool", err, n)
	}
	if got := len(res.snapshot()); got != 0 {
		t.Fatalf("%d results for records kept in the spool, want none (they are not lost)", got)
	}
	if len(segments(t, dir)) < 2 {
		t.Fatalf("want several segments, got %v", segments(t, dir))
	}

	gs.openGate()
	p2, err := New(gs.client(), "s", WithSpool(dir, SpoolOptions{}), WithResultHandler(res.handle), WithMaxInFlight(1))
	if err != nil {
		t.Fatal(err)
	}
	rec2, _ := p2.SpoolRecovery()
	if rec2.ProducerID != rec1.ProducerID || rec2.Records != n || len(rec2.Damaged) != 0 {
		t.Fatalf("recovery %+v, want %d records of producer %s", rec2, n, rec1.ProducerID)
	}
	if err := p2.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p2.Stats(); st.RecordsReplayed != n || st.RecordsDelivered != n {
		t.Fatalf("replayed %d, delivered %d; want %d", st.RecordsReplayed, st.RecordsDelivered, n)
	}
	mustClose(t, p2)
	if dups := checkAllOnceInOrder(t, gs.fakeStream, n, true); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}

// TestSpoolHoldsMoreThanMemory: during an outage, Put keeps accepting records beyond the
// memory buffer (they wait on disk), and all of them are delivered in order afterwards.
func TestSpoolHoldsMoreThanMemory(t *testing.T) {
	gs := newGatedStream(2)
	p := newTestProducer(t, gs.client(), WithSpool(t.TempDir(), SpoolOptions{SegmentBytes: 64 << 10}),
		WithMaxBufferedBytes(1<<20), WithMaxBufferedRecords(500),
		WithRequestTimeout(50*time.Millisecond), WithRetryBackoff(10*time.Millisecond, 20*time.Millisecond))
	const n = 20000
	for i := range n {
		if err := p.TryPut(spoolRecord(i)); err != nil {
			t.Fatalf("TryPut %d: %v (the spool has room)", i, err)
		}
	}
	st := p.Stats()
	if st.BufferedRecords > 500 || st.SpooledRecords != n {
		t.Fatalf("%d records in memory (max 500), %d spooled (want %d)", st.BufferedRecords, st.SpooledRecords, n)
	}
	if st.OldestSpooledAge <= 0 {
		t.Fatalf("OldestSpooledAge = %v", st.OldestSpooledAge)
	}
	gs.openGate()
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.RecordsDelivered != n || st.RecordsFailed != 0 {
		t.Fatalf("delivered %d, failed %d", st.RecordsDelivered, st.RecordsFailed)
	}
	if dups := checkAllOnceInOrder(t, gs.fakeStream, n, false); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}

// TestSpoolFullBlocks: when the spool is full, Put waits (until ctx ends) and TryPut fails
// with ErrBufferFull; delivery frees room and Put goes on.
func TestSpoolFullBlocks(t *testing.T) {
	gs := newGatedStream(1)
	const maxBytes = 2<<20 + 64<<10
	p := newTestProducer(t, gs.client(), WithSpool(t.TempDir(), SpoolOptions{MaxBytes: maxBytes, SegmentBytes: 128 << 10, SyncInterval: 5 * time.Millisecond}),
		WithRequestTimeout(50*time.Millisecond), WithRetryBackoff(10*time.Millisecond, 20*time.Millisecond))
	big := make([]byte, 100<<10)
	var accepted int
	for {
		err := p.TryPut(Record{PartitionKey: "k", Data: big})
		if errors.Is(err, ErrBufferFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
		if accepted > 100 {
			t.Fatal("the spool never filled")
		}
	}
	if st := p.Stats(); st.SpooledBytes > maxBytes {
		t.Fatalf("spool holds %d bytes, above its %d", st.SpooledBytes, maxBytes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := p.Put(ctx, Record{PartitionKey: "k", Data: big})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put on a full spool: %v, want it to wait until its context ends", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Put(context.Background(), Record{PartitionKey: "k", Data: big}) }()
	gs.openGate()
	if err := <-done; err != nil {
		t.Fatalf("Put after the outage: %v", err)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.RecordsDelivered != uint64(accepted+1) {
		t.Fatalf("delivered %d, want %d", st.RecordsDelivered, accepted+1)
	}
}

func TestSpoolLock(t *testing.T) {
	dir := t.TempDir()
	fs := newFakeStream(1)
	p, err := New(fs.client(), "s", WithSpool(dir, SpoolOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(fs.client(), "s", WithSpool(dir, SpoolOptions{}))
	if !errors.Is(err, ErrSpoolLocked) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("second producer on the directory: %v, want ErrSpoolLocked naming pid %d", err, os.Getpid())
	}
	mustClose(t, p)
	p2, err := New(fs.client(), "s", WithSpool(dir, SpoolOptions{}))
	if err != nil {
		t.Fatalf("after Close the directory is free: %v", err)
	}
	mustClose(t, p2)
}

// spoolLeftBehind puts records from..to-1 with Kinesis unreachable and gives up, leaving
// them in dir.
func spoolLeftBehind(t *testing.T, dir string, from, to int, o SpoolOptions) {
	t.Helper()
	gs := newGatedStream(1)
	p, err := New(gs.client(), "s", WithSpool(dir, o), WithRequestTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		if err := p.Put(context.Background(), spoolRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = abortClose(t, p)
}

// TestSpoolDamage: a torn or corrupted segment is detected by its checksum; the good
// records before the damage are kept and sent, the damage is reported and saved, and
// nothing panics.
func TestSpoolDamage(t *testing.T) {
	const n = 500
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
		reason string
		min    int // at least this many records survive
	}{
		{"torn last record", func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, size-7); err != nil {
				t.Fatal(err)
			}
		}, "truncated", n - 1},
		{"garbage appended", func(t *testing.T, path string, size int64) {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			_, _ = f.Write([]byte{0x20, 0, 0, 0, 1, 2, 3, 4, 5})
			f.Close()
		}, "truncated", n},
		{"flipped byte in the middle", func(t *testing.T, path string, size int64) {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			b := make([]byte, 1)
			_, _ = f.ReadAt(b, size/2)
			b[0] ^= 0x40
			_, _ = f.WriteAt(b, size/2)
			f.Close()
		}, "checksum", n/2 - 10},
		{"bad header", func(t *testing.T, path string, size int64) {
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			_, _ = f.WriteAt([]byte("XXXX"), 0)
			f.Close()
		}, "header", 0},
		{"huge length", func(t *testing.T, path string, size int64) {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			_, _ = f.Write([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0})
			f.Close()
		}, "out of range", n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			spoolLeftBehind(t, dir, 0, n, SpoolOptions{})
			segs := segments(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segments %v", segs)
			}
			st, _ := os.Stat(segs[0])
			tt.damage(t, segs[0], st.Size())
			fs := newFakeStream(1)
			p, err := New(fs.client(), "s", WithSpool(dir, SpoolOptions{}))
			if err != nil {
				t.Fatalf("New on a damaged spool: %v", err)
			}
			rec, _ := p.SpoolRecovery()
			if len(rec.Damaged) != 1 || !strings.Contains(rec.Damaged[0].Reason, tt.reason) {
				t.Fatalf("damage reported %+v, want one with %q", rec.Damaged, tt.reason)
			}
			if d := rec.Damaged[0]; d.Bytes > 0 {
				if b, err := os.ReadFile(d.SavedAs); err != nil || int64(len(b)) != d.Bytes {
					t.Fatalf("damaged bytes not saved: %v (%d of %d bytes)", err, len(b), d.Bytes)
				}
			}
			if err := p.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			mustClose(t, p)
			got := 0 // one shard: the records come back in the order they were put
			for _, recs := range fs.consumed(t) {
				for _, r := range recs {
					if want := spoolRecord(got); string(r.Data) != string(want.Data) {
						t.Fatalf("record %d is %q, want %q", got, r.Data, want.Data)
					}
					got++
				}
			}
			if got < tt.min || uint64(got) != rec.Records {
				t.Fatalf("%d records sent after recovery (recovery said %d), want at least %d", got, rec.Records, tt.min)
			}
		})
	}
}

// TestSpoolKeepsOrderAcrossRestarts: three runs on one directory, each leaving records
// behind, then one that delivers: every record once, in order per key, and the records of
// earlier runs before those of later ones.
func TestSpoolKeepsOrderAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	const per = 700
	for run := range 3 {
		spoolLeftBehind(t, dir, run*per, (run+1)*per, SpoolOptions{SegmentBytes: 16 << 10})
	}
	fs := newFakeStream(4)
	p, err := New(fs.client(), "s", WithSpool(dir, SpoolOptions{}), WithMaxInFlight(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustClose(t, p)
	if dups := checkAllOnceInOrder(t, fs, 3*per, true); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}

// TestSpoolPutSyncFromDisk: PutSync of a record that waits on disk (memory full) still gets
// its result.
func TestSpoolPutSyncFromDisk(t *testing.T) {
	gs := newGatedStream(1)
	p := newTestProducer(t, gs.client(), WithSpool(t.TempDir(), SpoolOptions{}), WithMaxBufferedRecords(10),
		WithRequestTimeout(20*time.Millisecond), WithRetryBackoff(5*time.Millisecond, 10*time.Millisecond))
	for i := range 50 {
		if err := p.Put(context.Background(), spoolRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.PutSync(context.Background(), spoolRecord(50))
		done <- err
	}()
	gs.openGate()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// And when Close gives up on it, the waiter hears that it stays in the spool.
	gs2 := newGatedStream(1)
	p2, err := New(gs2.client(), "s", WithSpool(t.TempDir(), SpoolOptions{}), WithMaxBufferedRecords(10), WithRequestTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := p2.Put(context.Background(), spoolRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		_, err := p2.PutSync(context.Background(), spoolRecord(50))
		done <- err
	}()
	for p2.Stats().RecordsPut < 51 {
		runtime.Gosched()
	}
	_ = abortClose(t, p2)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("PutSync of a record on disk only when Close gave up: %v, want ErrClosed", err)
	}
}

func TestSpoolOptionsValidated(t *testing.T) {
	fs := newFakeStream(1)
	for _, o := range []SpoolOptions{
		{Sync: 7},
		{SyncInterval: time.Microsecond},
		{MaxBytes: 1000},
		{MaxBytes: 64 << 20, SegmentBytes: 128 << 20},
	} {
		if _, err := New(fs.client(), "s", WithSpool(t.TempDir(), o)); err == nil {
			t.Errorf("New accepted %+v", o)
		}
	}
	if _, err := ParseSpoolSync("sometimes"); err == nil {
		t.Error("ParseSpoolSync accepted sometimes")
	}
	for _, m := range []SpoolSync{SyncWrite, SyncBatched, SyncFsync} {
		if got, err := ParseSpoolSync(m.String()); err != nil || got != m {
			t.Errorf("ParseSpoolSync(%s) = %v, %v", m, got, err)
		}
	}
}

func TestAckTracker(t *testing.T) {
	for _, start := range []uint64{0, 5, 63, 64, 1000} {
		var a ackTracker
		a.reset(start)
		const n = 50000
		order := rand.Perm(n)
		acked := make([]bool, n)
		for _, i := range order {
			if !a.ack(start + uint64(i)) {
				t.Fatalf("ack(%d) reported a repeat", i)
			}
			acked[i] = true
			want := start
			for want-start < n && acked[want-start] {
				want++
			}
			if i%97 == 0 && a.wm != want {
				t.Fatalf("watermark %d, want %d", a.wm, want)
			}
		}
		if a.wm != start+n {
			t.Fatalf("watermark %d after acking everything, want %d", a.wm, start+n)
		}
		if a.ack(start) {
			t.Fatal("a repeated ack below the watermark counted")
		}
	}
}

// TestSpoolBacklogStress puts records much faster than a slow stream takes them, with a
// small memory buffer, so the records go back and forth between memory and disk many
// times; every record must arrive, with its own data.
func TestSpoolBacklogStress(t *testing.T) {
	fs := newFakeStream(4)
	fc := fs.client()
	var calls atomic.Int64
	slow := fc.putRecords
	fc.putRecords = func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		if calls.Add(1)%3 == 0 {
			select { // an occasional slow answer
			case <-time.After(2 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return slow(ctx, in)
	}
	p := newTestProducer(t, fc, WithSpool(t.TempDir(), SpoolOptions{Sync: SyncBatched, SegmentBytes: 256 << 10, SyncInterval: 2 * time.Millisecond}),
		WithMaxBufferedBytes(1<<20), WithMaxBufferedRecords(2000), WithLinger(time.Millisecond))
	const n = 100000
	for i := range n {
		if err := p.Put(context.Background(), spoolRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		p.buf.mu.Lock()
		s := p.spool
		t.Fatalf("Flush: %v; memory %d records, spool next %d mem %d written %d pending %d wm %d lost %d, %d segments",
			err, p.buf.records, s.nextSeq, s.memSeq, s.writtenSeq, s.pending, s.acks.wm, s.lost, len(s.segs))
	}
	st := p.Stats()
	if st.SpoolLostRecords != 0 || st.RecordsDelivered != n {
		t.Fatalf("delivered %d of %d, %d lost", st.RecordsDelivered, n, st.SpoolLostRecords)
	}
	got := 0
	for _, recs := range fs.consumed(t) {
		for _, r := range recs {
			var i int
			if _, err := fmt.Sscanf(string(r.Data[:8]), "%d", &i); err != nil || string(r.Data) != string(spoolRecord(i).Data) || r.PartitionKey != spoolRecord(i).PartitionKey {
				t.Fatalf("record %q (key %s) is not one that was put", r.Data, r.PartitionKey)
			}
			got++
		}
	}
	if got != n {
		t.Fatalf("%d records in the stream, want %d", got, n)
	}
}

// TestSpoolWriteFailure: the spool's file starts failing with ENOSPC (its descriptor is
// swapped for /dev/full, which the kernel answers so). The Put whose write failed and every
// later one return ErrSpool; every record written before is still delivered (from memory,
// or read back from its file), the one whose write failed and that was on disk only is
// counted lost; Flush and Close do not hang.
func TestSpoolWriteFailure(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	gs := newGatedStream(1)
	p := newTestProducer(t, gs.client(), WithSpool(t.TempDir(), SpoolOptions{Sync: SyncWrite}), WithMaxBufferedRecords(3),
		WithRequestTimeout(20*time.Millisecond), WithRetryBackoff(5*time.Millisecond, 10*time.Millisecond))
	for i := range 5 { // 3 in memory, 2 in the file only (Kinesis is not answering)
		if err := p.Put(context.Background(), spoolRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	s := p.spool
	s.wmu.Lock()
	good := s.curFile
	s.curFile = full // the disk is now full
	s.wmu.Unlock()
	defer good.Close()
	if err := p.Put(context.Background(), spoolRecord(5)); !errors.Is(err, ErrSpool) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Put on a full disk: %v, want ErrSpool with ENOSPC", err)
	}
	if err := p.TryPut(spoolRecord(6)); !errors.Is(err, ErrSpool) {
		t.Fatalf("later TryPut: %v, want ErrSpool", err)
	}
	gs.openGate()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush after a failed spool write: %v", err)
	}
	st := p.Stats()
	if st.RecordsDelivered != 5 || st.SpoolLostRecords != 1 || st.SpooledRecords != 0 {
		t.Fatalf("delivered %d, lost %d, still spooled %d; want the 5 written delivered, the one whose write failed lost",
			st.RecordsDelivered, st.SpoolLostRecords, st.SpooledRecords)
	}
}

package consumer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// CPU benchmarks of the hot paths.

func BenchmarkUserRecords(b *testing.B) {
	// One GetRecords response: 100 aggregates of 200 log lines each.
	var in []types.Record
	var size int
	for i := range 100 {
		var a kpl.Aggregator
		for j := range 200 {
			a.Add(kpl.Record{PartitionKey: fmt.Sprint("host-", j%16), Data: logLine(i*200 + j)})
		}
		data := a.AppendEncode(nil)
		size += len(data)
		in = append(in, types.Record{SequenceNumber: aws.String(fmt.Sprintf("4959%020d", i)), PartitionKey: aws.String("host-0"), Data: data, ApproximateArrivalTimestamp: aws.Time(time.Now())})
	}
	c, err := New(newTestStream().api(), nopStore{}, "s", newProcLog(true).factory())
	if err != nil {
		b.Fatal(err)
	}
	// A range check on every aggregate (fullRange false), as on a shard of a resharded stream.
	w := &shardWorker{c: c, id: "shardId-000000000000", rng: kpl.HashKeyRange{End: kpl.MaxHashKey}, hasRange: true}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		var skip *checkpoint.Checkpoint
		recs, _ := w.userRecords(in, &skip)
		if len(recs) != 20000 {
			b.Fatalf("%d user records", len(recs))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20000), "ns/user-record")
}

func BenchmarkAckTracker(b *testing.B) {
	batch := make([]Record, 500)
	for i := range batch {
		batch[i] = Record{SequenceNumber: fmt.Sprintf("4959%020d", i)}
	}
	tr := newAckTracker(64, checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.acquire(ctx); err != nil {
			b.Fatal(err)
		}
		f := tr.add(batch, time.Time{}, 0)
		tr.ack(f, 250)
		tr.ack(f, 500)
		tr.stored(batch[499].Position())
	}
}

// nopStore satisfies checkpoint.Store for benchmarks that never call it.
type nopStore struct{ checkpoint.Store }

func logLine(i int) []byte {
	return fmt.Appendf(nil, `{"time":"2026-11-22T10:00:%02d.%06dZ","level":"INFO","msg":"request served","service":"checkout","host":"host-%d","method":"GET","path":"/api/v1/orders/%d","status":200,"duration_ms":%d,"bytes":%d}`,
		i%60, i%1000000, i%16, i, i%500, 1000+i%9000)
}

// Integration benchmarks: kinesalite and dynalite from the local stack. Run them with
//
//	make bench, or: eval "$(infra/local/stack env)" && go test -run '^$' -bench Integration -benchtime 3x ./consumer/
//
// Each reports its headline figure as a custom metric; ns/op includes per-iteration setup
// (a fresh lease table) only where noted.

var quietLog = slog.New(slog.NewTextHandler(benchLogOutput(), &slog.HandlerOptions{Level: slog.LevelWarn}))

// countingProc acknowledges every batch at once and counts user records, noting the time of
// the first.
type countingProc struct{ s *benchSink }

type benchSink struct {
	records atomic.Int64
	first   atomic.Int64 // unix nanos of the first batch
	done    chan struct{}
	want    int64
	once    sync.Once
}

func newBenchSink(want int64) *benchSink { return &benchSink{want: want, done: make(chan struct{})} }

func (s *benchSink) factory() ProcessorFactory {
	return func(string) Processor { return countingProc{s} }
}

func (p countingProc) Initialize(context.Context, InitInput) error { return nil }
func (p countingProc) ProcessRecords(_ context.Context, b *Batch) error {
	p.s.first.CompareAndSwap(0, time.Now().UnixNano())
	b.Ack()
	if p.s.records.Add(int64(len(b.Records))) >= p.s.want {
		p.s.once.Do(func() { close(p.s.done) })
	}
	return nil
}
func (countingProc) ShardEnded(context.Context) error { return nil }
func (countingProc) LeaseLost(context.Context)        {}
func (countingProc) Shutdown(context.Context) error   { return nil }

func BenchmarkIntegrationFirstRecord(b *testing.B) {
	kc := testenv.KinesisClient(b)
	stream := testenv.Name(b, "bench-first")
	testenv.CreateStream(b, kc, stream, 4)
	putAll(b, kc, stream, []types.PutRecordsRequestEntry{entry("a", "1"), entry("b", "2"), entry("c", "3"), entry("d", "4")})
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		store, _ := leaseTable(b)
		sink := newBenchSink(1)
		c, err := New(kc, store, stream, sink.factory(), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		begin := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		select {
		case <-sink.done:
		case <-time.After(30 * time.Second):
			b.Fatal("no record after 30s")
		}
		total += time.Duration(sink.first.Load() - begin.UnixNano())
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/first-record")
}

func BenchmarkIntegrationDrain100k(b *testing.B) {
	const n = 100_000
	kc := testenv.KinesisClient(b)
	stream := testenv.Name(b, "bench-drain")
	testenv.CreateStream(b, kc, stream, 4)
	ctx := context.Background()
	p, err := producer.New(kc, stream)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := p.Put(ctx, producer.Record{PartitionKey: fmt.Sprint("req-", rand.Uint64()), Data: logLine(i)}); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	var drained, checkpointed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		store, _ := leaseTable(b)
		sink := newBenchSink(n)
		c, err := New(kc, store, stream, sink.factory(), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		begin := time.Now()
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx) }()
		select {
		case <-sink.done:
		case <-time.After(60 * time.Second):
			b.Fatalf("%d of %d records after 60s", sink.records.Load(), n)
		}
		drained += time.Since(begin)
		// Then every shard's stored checkpoint covers everything delivered.
		pollUntil(b, 30*time.Second, time.Millisecond, "checkpoints of every record", func() bool {
			st := c.Status()
			ok := len(st.Shards) == 4
			for _, s := range st.Shards {
				ok = ok && s.Delivered > 0 && s.CheckpointAge == 0 && s.BatchesInFlight == 0
			}
			return ok
		})
		checkpointed += time.Since(begin)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if got := sink.records.Load(); got != n {
			b.Fatalf("%d records, want %d", got, n)
		}
	}
	b.ReportMetric(drained.Seconds()/float64(b.N), "s/drain")
	b.ReportMetric(checkpointed.Seconds()/float64(b.N), "s/drain+checkpoint")
	b.ReportMetric(float64(n*b.N)/drained.Seconds(), "records/s")
}

func BenchmarkIntegrationTake16Shards(b *testing.B) {
	kc := testenv.KinesisClient(b)
	stream := testenv.Name(b, "bench-take")
	testenv.CreateStream(b, kc, stream, 16)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		store, _ := leaseTable(b)
		c, err := New(kc, store, stream, newBenchSink(1).factory(), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		begin := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		pollUntil(b, 30*time.Second, time.Millisecond, "16 leases", func() bool { return len(c.Status().Shards) == 16 })
		total += time.Since(begin)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/16-leases")
}

// BenchmarkIntegrationFailover kills (SIGKILL) one of two workers with the default failover
// time and measures until the survivor reads the victim's shards again. Each iteration
// takes over 10s: run it with -benchtime 1x.
func BenchmarkIntegrationFailover(b *testing.B) {
	kc := testenv.KinesisClient(b)
	stream := testenv.Name(b, "bench-failover")
	testenv.CreateStream(b, kc, stream, 4)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		store, table := leaseTable(b)
		victim := startWorkerProcess(b, workerSpec{Stream: stream, Table: table, WorkerID: "victim", Failover: DefaultFailoverTime})
		waitOwners(b, store, map[string]int{"victim": 4})
		var reads sync.Map // shard -> time of the first batch
		pl := newProcLog(true)
		pl.onRecords = func(_ context.Context, shard string, _ *Batch) error {
			reads.LoadOrStore(shard, time.Now())
			return nil
		}
		c, err := New(kc, store, stream, pl.factory(), WithWorkerID("survivor"), WithLogger(quietLog))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		waitOwners(b, store, map[string]int{"victim": 2, "survivor": 2})
		var victims []string
		ls, err := store.ListLeases(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range ls {
			if l.Owner == "victim" {
				victims = append(victims, l.Key)
			}
		}
		// A record on every shard, so that "read again" is observable.
		var es []types.PutRecordsRequestEntry
		for _, l := range ls {
			es = append(es, types.PutRecordsRequestEntry{PartitionKey: aws.String("x"), ExplicitHashKey: aws.String(l.StartingHashKey), Data: []byte("after")})
		}
		b.StartTimer()
		victim.kill(b)
		killed := time.Now()
		putAll(b, kc, stream, es)
		pollUntil(b, 60*time.Second, time.Millisecond, "the victim's shards to be read again", func() bool {
			for _, s := range victims {
				if _, ok := reads.Load(s); !ok {
					return false
				}
			}
			return true
		})
		var last time.Time
		for _, s := range victims {
			v, _ := reads.Load(s)
			if at := v.(time.Time); at.After(last) {
				last = at
			}
		}
		total += last.Sub(killed)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/failover")
}

func waitOwners(b *testing.B, store checkpoint.Store, want map[string]int) {
	b.Helper()
	eventually(b, 60*time.Second, fmt.Sprint("lease owners ", want), func() bool {
		got := ownerCounts(b, store)
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	})
}

// benchLogOutput is where integration benchmarks log warnings: stderr with
// KINLOG_BENCH_LOG=1, else nowhere.
func benchLogOutput() io.Writer {
	if os.Getenv("KINLOG_BENCH_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

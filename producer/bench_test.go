package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/internal/kpl"
)

// benchClient answers PutRecords at once with success, routing entries to the shard their
// explicit hash key (or partition key) falls in, with as little work as possible so the
// benchmark measures the producer.
type benchClient struct {
	shards []fakeShard
	ids    []string       // shard ids, addressable so results can point at them
	byEHK  map[string]int // explicit hash key (a shard's start) -> shard index
	list   *kinesis.ListShardsOutput
}

func newBenchClient(n int) *benchClient {
	fs := newFakeStream(n)
	c := &benchClient{shards: fs.shards, byEHK: map[string]int{}}
	for i, s := range fs.shards {
		c.ids = append(c.ids, s.id)
		c.byEHK[s.rng.Start.String()] = i
	}
	c.list, _ = fs.listShards(context.Background(), nil)
	return c
}

func (c *benchClient) PutRecords(_ context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	out := make([]types.PutRecordsResultEntry, len(in.Records))
	seq := aws.String("49600000000000000000000000000000000000000000000000000001")
	for i, e := range in.Records {
		idx, ok := 0, false
		if e.ExplicitHashKey != nil {
			idx, ok = c.byEHK[*e.ExplicitHashKey]
		}
		if !ok {
			h := kpl.PartitionKeyHash(*e.PartitionKey)
			for j, s := range c.shards {
				if s.rng.Contains(h) {
					idx = j
				}
			}
		}
		out[i] = types.PutRecordsResultEntry{ShardId: &c.ids[idx], SequenceNumber: seq}
	}
	return &kinesis.PutRecordsOutput{Records: out, FailedRecordCount: aws.Int32(0)}, nil
}

func (c *benchClient) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return c.list, nil
}

// benchLines returns n ~230-byte JSON log lines and n random partition keys.
func benchLines(n int) ([][]byte, []string) {
	lines := make([][]byte, n)
	keys := make([]string, n)
	for i := range n {
		lines[i] = fmt.Appendf(nil, `{"time":"2026-11-22T10:00:00.%06dZ","level":"INFO","msg":"request served","method":"GET","path":"/api/v1/items/%06d","status":200,"duration_ms":12.5,"user":"user-%04d","trace":"4bf92f3577b34da6a3ce929d0e0e4736"}`, i%1000000, i, i%1000)
		var b [8]byte
		_, _ = rand.Read(b[:])
		keys[i] = hex.EncodeToString(b[:])
	}
	return lines, keys
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPut measures the producer's own path — Put, shard prediction, aggregation,
// request building, response handling — per ~230-byte log line, against a client that
// answers at once. Keys come from a pool of 1024 random partition keys, as the slog
// handler's default.
//
// The spool variants add the on-disk spool (in the test's temporary directory) with each
// sync mode; the target is measured with spool=batched (100 ms sync interval).
func BenchmarkPut(b *testing.B) {
	type variant struct {
		name  string
		agg   bool
		spool *SpoolSync
		noID  bool
	}
	mode := func(m SpoolSync) *SpoolSync { return &m }
	for _, v := range []variant{
		{"aggregation=true/identity=true", true, nil, false},
		{"aggregation=true/identity=false", true, nil, true},
		{"aggregation=false", false, nil, false},
		{"aggregation=true/spool=batched", true, mode(SyncBatched), false},
		{"aggregation=true/spool=write", true, mode(SyncWrite), false},
	} {
		agg := v.agg
		b.Run(v.name, func(b *testing.B) {
			const pool = 1024
			lines, keys := benchLines(pool)
			opts := []Option{WithAggregation(agg), WithRateLimit(0), WithIdentity(!v.noID)}
			if v.spool != nil {
				opts = append(opts, WithSpool(b.TempDir(), SpoolOptions{Sync: *v.spool}))
			}
			p, err := New(newBenchClient(4), "bench", opts...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			// Warm up buffers and free lists.
			for i := range 20000 {
				_ = p.Put(ctx, Record{PartitionKey: keys[i%pool], Data: lines[i%pool]})
			}
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(lines[0])))
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := p.Put(ctx, Record{PartitionKey: keys[i%pool], Data: lines[i%pool]}); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/record")
			if err := p.Close(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkHandler measures the slog handler: JSON encoding plus Put.
func BenchmarkHandler(b *testing.B) {
	p, err := New(newBenchClient(4), "bench", WithRateLimit(0))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	h := NewHandler(p, nil)
	rec := sampleRecord()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := h.Handle(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

func sampleRecord() slog.Record {
	r := slog.NewRecord(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), slog.LevelInfo, "request served", 0)
	r.AddAttrs(slog.String("method", "GET"), slog.String("path", "/api/v1/items/001234"), slog.Int("status", 200),
		slog.Float64("duration_ms", 12.5), slog.String("user", "user-0042"), slog.String("trace", "4bf92f3577b34da6a3ce929d0e0e4736"))
	return r
}

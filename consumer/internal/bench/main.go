// Command bench drains a Kinesis stream with kinlog's consumer and a no-op processor (each
// batch acknowledged after a delay that stands for a sink's write), checkpointing into a
// DynamoDB lease table, and prints the drain time, CPU and peak memory (VmHWM) as one JSON
// line — the figures compared with vmware-go-kcl-v2 (consumer/internal/peer/vmware).
// Endpoints and credentials come from the SDK's standard variables:
//
//	eval "$(infra/local/stack env)"
//	go run ./consumer/internal/bench -fill 500000 -shards 4     # prints the stream's name
//	go run ./consumer/internal/bench -stream NAME -records 500000
//	go run ./consumer/internal/bench -stream NAME -records 500000 -max-unacked 0   # unbounded
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/benchutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	fill := flag.Int("fill", 0, "create a stream and put this many ~230-byte JSON lines (plain records, random keys), print its name, and exit")
	shards := flag.Int("shards", 4, "shards of the stream -fill creates")
	stream := flag.String("stream", "", "stream to drain")
	records := flag.Int("records", 0, "user records to drain before stopping")
	maxUnacked := flag.Int64("max-unacked", consumer.DefaultMaxUnackedBytes, "consumer.WithMaxUnackedBytes (0: no bound)")
	ackDelay := flag.Duration("ack-delay", 50*time.Millisecond, "delay before a batch is acknowledged (a sink's write)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the drain to this file")
	memProfile := flag.String("memprofile", "", "write a heap profile (allocations over the whole drain) to this file")
	peakProfile := flag.String("peakprofile", "", "write a heap profile to this file each time the live heap after a GC reaches a new maximum")
	flag.Parse()
	if *memProfile != "" || *peakProfile != "" {
		runtime.MemProfileRate = 64 << 10
	}

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	kc := kinesis.NewFromConfig(cfg)
	if *fill > 0 {
		return fillStream(ctx, kc, *fill, *shards)
	}
	if *stream == "" || *records <= 0 {
		return errors.New("-stream and -records are required (or -fill)")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	table := "kinlog-bench-leases-" + hex.EncodeToString(b[:])
	db := dynamodb.NewFromConfig(cfg)
	store, err := ddbstore.New(db, table)
	if err != nil {
		return err
	}
	if err := store.EnsureTable(ctx); err != nil {
		return err
	}
	defer func() { _, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &table}) }()

	var got atomic.Int64
	done := make(chan struct{})
	var once atomic.Bool
	proc := func(string) consumer.Processor {
		return &noop{got: &got, want: int64(*records), done: done, once: &once, delay: *ackDelay}
	}
	c, err := consumer.New(kc, store, *stream, proc,
		consumer.WithMaxUnackedBytes(*maxUnacked),
		consumer.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *peakProfile != "" {
		stop := make(chan struct{})
		defer close(stop)
		go watchPeak(*peakProfile, stop)
	}
	start := time.Now()
	cpu0 := benchutil.CPUTime()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(rctx) }()
	select {
	case <-done:
	case err := <-errc:
		return fmt.Errorf("consumer stopped: %w", err)
	case <-time.After(*timeout):
		return fmt.Errorf("drained %d of %d records in %v", got.Load(), *records, *timeout)
	}
	elapsed := time.Since(start)
	cpu := benchutil.CPUTime() - cpu0
	gc := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(gc)
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			return err
		}
	}
	cancel()
	<-errc
	out, _ := json.Marshal(map[string]any{
		"consumer": "kinlog", "records": got.Load(), "seconds": elapsed.Seconds(),
		"peak_rss_mb": benchutil.PeakRSS() / (1 << 20), "cpu_seconds": cpu.Seconds(),
		"cpu_us_per_record": float64(cpu.Microseconds()) / float64(got.Load()), "max_unacked_bytes": *maxUnacked,
		"gc_cpu_seconds": gc[0].Value.Float64(), "gc_cycles": gc[1].Value.Uint64(),
	})
	fmt.Println(string(out))
	return nil
}

// noop acknowledges each batch after the delay, from a goroutine, as a sink does.
type noop struct {
	got   *atomic.Int64
	want  int64
	done  chan struct{}
	once  *atomic.Bool
	delay time.Duration
}

func (p *noop) Initialize(context.Context, consumer.InitInput) error { return nil }
func (p *noop) ProcessRecords(_ context.Context, b *consumer.Batch) error {
	go func() {
		time.Sleep(p.delay) // stands for the sink's write
		b.Ack()
		if p.got.Add(int64(len(b.Records))) >= p.want && p.once.CompareAndSwap(false, true) {
			close(p.done)
		}
	}()
	return nil
}
func (p *noop) ShardEnded(context.Context) error { return nil }
func (p *noop) LeaseLost(context.Context)        {}
func (p *noop) Shutdown(context.Context) error   { return nil }

func fillStream(ctx context.Context, kc *kinesis.Client, n, shards int) error {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "kinlog-drain-" + hex.EncodeToString(b[:])
	if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &name, ShardCount: aws.Int32(int32(shards))}); err != nil {
		return err
	}
	for {
		out, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var batch []types.PutRecordsRequestEntry
	flush := func() error {
		for len(batch) > 0 {
			out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: &name, Records: batch})
			if err != nil {
				return err
			}
			var retry []types.PutRecordsRequestEntry
			for i, r := range out.Records {
				if r.ErrorCode != nil {
					retry = append(retry, batch[i])
				}
			}
			batch = retry
		}
		return nil
	}
	for i := range n {
		var k [8]byte
		_, _ = rand.Read(k[:])
		line := fmt.Sprintf(`{"time":"2026-11-22T10:00:00.%06dZ","level":"INFO","msg":"request served","method":"GET","path":"/api/v1/items/%06d","status":200,"duration_ms":12.5,"user":"user-%04d","trace":"4bf92f3577b34da6a3ce929d0e0e4736"}`, i%1000000, i, i%1000)
		batch = append(batch, types.PutRecordsRequestEntry{Data: []byte(line), PartitionKey: aws.String(hex.EncodeToString(k[:]))})
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Println(name)
	return nil
}

// watchPeak writes an in-use heap profile to path whenever the live heap of the last GC
// is the largest seen so far, until stop is closed.
func watchPeak(path string, stop <-chan struct{}) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprintf(os.Stderr, "bench: peak live heap %.1f MiB\n", float64(peak)/(1<<20))
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak {
			peak = v
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

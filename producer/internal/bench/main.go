// Command bench ships synthetic ~230-byte JSON log lines to a Kinesis stream through the
// producer and prints throughput, Kinesis records sent and process CPU time per record.
// Endpoints and credentials come from the SDK's standard variables, so against the local
// stack:
//
//	eval "$(infra/local/stack env)"
//	go run ./producer/internal/bench -n 100000 -shards 4
//
// It creates a temporary stream (deleted at the end) unless -stream names one, and by
// default reads the stream back to check that every line arrived exactly once on the shard
// its partition key hashes to (not timed).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/internal/benchutil"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/producer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 100000, "log lines to send")
	shards := flag.Int("shards", 4, "shards of the temporary stream")
	stream := flag.String("stream", "", "existing stream to use instead of a temporary one")
	prefix := flag.String("stream-prefix", "kinlog-bench-", "name prefix of the temporary stream")
	aggregate := flag.Bool("aggregate", true, "KPL aggregation")
	rate := flag.Int("rate-limit", 0, "per-shard rate limit in percent of the shard limits (0 = off; kinesalite enforces none)")
	inflight := flag.Int("inflight", producer.DefaultMaxInFlight, "PutRecords requests in flight")
	keys := flag.Int("keys", 1024, "distinct random partition keys")
	buffer := flag.Int64("buffer", producer.DefaultMaxBufferedBytes, "producer buffer bound in bytes")
	spoolDir := flag.String("spool", "", "spool directory (empty: no spool; a temporary directory is a good choice)")
	spoolSync := flag.String("spool-sync", "batched", "spool sync mode: write, batched or fsync")
	verify := flag.Bool("verify", true, "read the stream back and check every line arrived once on its own shard")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured part to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile to this file")
	flag.Parse()

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	client := kinesis.NewFromConfig(cfg)
	name := *stream
	if name == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		name = *prefix + hex.EncodeToString(b[:])
		if err := createStream(ctx, client, name, int32(*shards)); err != nil {
			return err
		}
		defer func() {
			_, _ = client.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: &name})
		}()
	}

	// Prepare the input before measuring, in one pointer-free buffer so that the input
	// itself adds nothing to the garbage collector's work during the run.
	var data []byte
	ends := make([]int, *n)
	for i := range ends {
		data = fmt.Appendf(data, `{"time":"2026-11-22T10:00:00.%06dZ","level":"INFO","msg":"request served","seq":%08d,"method":"GET","path":"/api/v1/items/%06d","status":200,"duration_ms":12.5,"user":"user-%04d","trace":"4bf92f3577b34da6a3ce929d0e0e4736"}`, i%1000000, i, i%1000000, i%1000)
		ends[i] = len(data)
	}
	pks := make([]string, *keys)
	for i := range pks {
		var b [8]byte
		_, _ = rand.Read(b[:])
		pks[i] = hex.EncodeToString(b[:])
	}
	bytes := len(data)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 4096
		defer func() {
			runtime.GC() // the profile shows allocations as of the last collection
			f, err := os.Create(*memProfile)
			if err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := benchutil.CPUTime()
	start := time.Now()
	failed := 0
	opts := []producer.Option{}
	if *spoolDir != "" {
		mode, err := producer.ParseSpoolSync(*spoolSync)
		if err != nil {
			return err
		}
		opts = append(opts, producer.WithSpool(*spoolDir, producer.SpoolOptions{Sync: mode}))
	}
	p, err := producer.New(client, name, append(opts,
		producer.WithAggregation(*aggregate),
		producer.WithRateLimit(*rate),
		producer.WithMaxInFlight(*inflight),
		producer.WithMaxBufferedBytes(*buffer),
		producer.WithResultHandler(func(r producer.Result) {
			if r.Err != nil {
				failed++
			}
		}))...)
	if err != nil {
		return err
	}
	start0 := 0
	for i, end := range ends {
		if err := p.Put(ctx, producer.Record{PartitionKey: pks[i%len(pks)], Data: data[start0:end]}); err != nil {
			return err
		}
		start0 = end
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		return err
	}
	elapsed := time.Since(start)
	cpu := benchutil.CPUTime() - cpu0
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	runtime.ReadMemStats(&ms1)
	st := p.Stats()

	fmt.Printf("stream            %s (%d shards), aggregation %v, rate limit %d%%, in flight %d, buffer %d MiB\n", name, *shards, *aggregate, *rate, *inflight, *buffer>>20)
	if *spoolDir != "" {
		fmt.Printf("spool             %s, sync %s\n", *spoolDir, *spoolSync)
	}
	fmt.Printf("user records      %d (%.1f MB of data, %d partition keys)\n", *n, float64(bytes)/1e6, *keys)
	fmt.Printf("elapsed           %v\n", elapsed.Round(time.Millisecond))
	fmt.Printf("records/s         %.0f\n", float64(*n)/elapsed.Seconds())
	fmt.Printf("kinesis records   %d (%.1f user records each), %d PutRecords requests\n", st.KinesisRecords, st.RecordsPerKinesisRecord(), st.Requests)
	fmt.Printf("process CPU       %v total, %.2f µs per record\n", cpu.Round(time.Millisecond), float64(cpu.Nanoseconds())/float64(*n)/1e3)
	fmt.Printf("allocations       %.2f per record (%.0f bytes)\n", float64(ms1.Mallocs-ms0.Mallocs)/float64(*n), float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(*n))
	fmt.Printf("failed            %d; retried %d; throttled %d\n", failed, st.RecordsRetried, st.ThrottledRecords)
	if failed > 0 {
		return fmt.Errorf("%d records failed", failed)
	}
	if *verify {
		if err := verifyStream(ctx, client, name, *n); err != nil {
			return err
		}
		fmt.Printf("verified          every record once, on the shard its partition key hashes to\n")
	}
	return nil
}

func createStream(ctx context.Context, c *kinesis.Client, name string, shards int32) error {
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &name, ShardCount: &shards}); err != nil {
		return fmt.Errorf("creating stream %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		out, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for stream %s: %w", name, errors.Join(ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// verifyStream reads every shard and checks each line arrived exactly once, on a shard
// whose range holds its partition key's hash (aggregates are dropped whole when any record
// is outside, as the KCL does).
func verifyStream(ctx context.Context, c *kinesis.Client, name string, n int) error {
	seen := make([]int, n)
	in := &kinesis.ListShardsInput{StreamName: &name}
	for {
		ls, err := c.ListShards(ctx, in)
		if err != nil {
			return fmt.Errorf("listing shards: %w", err)
		}
		for _, s := range ls.Shards {
			rng, err := kpl.ParseHashKeyRange(*s.HashKeyRange.StartingHashKey, *s.HashKeyRange.EndingHashKey)
			if err != nil {
				return err
			}
			it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: &name, ShardId: s.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
			if err != nil {
				return fmt.Errorf("getting iterator: %w", err)
			}
			for iter := it.ShardIterator; iter != nil; {
				out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
				if err != nil {
					return fmt.Errorf("reading %s: %w", *s.ShardId, err)
				}
				for _, r := range out.Records {
					recs, ok := kpl.Decode(r.Data)
					if !ok {
						recs = []kpl.Record{{PartitionKey: *r.PartitionKey, Data: r.Data}}
					} else if !kpl.AllInRange(recs, rng) {
						continue
					}
					for _, u := range recs {
						if !rng.Contains(kpl.PartitionKeyHash(u.PartitionKey)) {
							return fmt.Errorf("record on %s outside its key's range", *s.ShardId)
						}
						i, err := seqOf(u.Data)
						if err != nil || i >= n {
							return fmt.Errorf("unexpected record %q", u.Data)
						}
						seen[i]++
					}
				}
				if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
					break
				}
				iter = out.NextShardIterator
			}
		}
		if ls.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: ls.NextToken}
	}
	for i, c := range seen {
		if c != 1 {
			return fmt.Errorf("record %d seen %d times", i, c)
		}
	}
	return nil
}

func seqOf(line []byte) (int, error) {
	const key = `"seq":`
	for i := 0; i+len(key)+8 <= len(line); i++ {
		if string(line[i:i+len(key)]) == key {
			return strconv.Atoi(string(line[i+len(key) : i+len(key)+8]))
		}
	}
	return 0, errors.New("no seq")
}

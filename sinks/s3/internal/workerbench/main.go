// Command workerbench measures the whole worker: kinlog's consumer reading a Kinesis stream
// and the archive sink writing it to S3, in this process, with a DynamoDB lease table — the
// path of `kinlog consume`. It prints one JSON line: records, wall time, the process's CPU
// time, CPU per record and records per second per core of CPU (records / CPU seconds), the
// figure of issue 16's targets (≥ 200k for NDJSON gzip, ≥ 150k for Parquet zstd).
//
// The stream is filled by a separate run (-fill), with kinlog's producer (KPL aggregates with
// record identities, as `kinlog produce` and the agent send them), so that the measured run
// spends its CPU on the worker alone. Endpoints and credentials come from the SDK's
// standard variables:
//
//	eval "$(infra/local/stack env)"
//	go run ./sinks/s3/internal/workerbench -fill 500000 -shards 4          # prints the stream
//	go run ./sinks/s3/internal/workerbench -stream NAME -records 500000 -encoding ndjson
//	go run ./sinks/s3/internal/workerbench -stream NAME -records 500000 -encoding parquet
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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/benchutil"
	"github.com/kinlog/kinlog/producer"
	"github.com/kinlog/kinlog/sinks/encode"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "workerbench:", err)
		os.Exit(1)
	}
}

func run() error {
	fill := flag.Int("fill", 0, "create a stream, put this many ~230-byte JSON log lines with kinlog's producer, print the stream's name and exit")
	shards := flag.Int("shards", 4, "shards of the stream -fill creates")
	stream := flag.String("stream", "", "stream to archive")
	records := flag.Int("records", 0, "records to archive before stopping")
	encoding := flag.String("encoding", "ndjson", "ndjson (gzip) or parquet (zstd)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()

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
	enc := encode.Config{Format: encode.NDJSON, Compression: encode.CompressionGzip}
	switch *encoding {
	case "ndjson":
	case "parquet":
		enc = encode.Config{Format: encode.Parquet, Compression: encode.CompressionZstd}
	default:
		return fmt.Errorf("-encoding: want ndjson or parquet, got %q", *encoding)
	}
	name := "kinlog-workerbench-" + randomHex()
	db := dynamodb.NewFromConfig(cfg)
	store, err := ddbstore.New(db, name)
	if err != nil {
		return err
	}
	if err := store.EnsureTable(ctx); err != nil {
		return err
	}
	defer func() { _, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &name}) }()
	sc := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = os.Getenv("KINLOG_S3_PATH_STYLE") == "true" })
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		return fmt.Errorf("creating bucket: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	// The worker's defaults (5 MiB or 60 s per shard), but a short interval, so that the
	// tail of the stream does not wait a minute.
	sink, err := s3sink.New(sc, name, *stream, s3sink.WithEncoding(enc), s3sink.WithBufferInterval(time.Second),
		s3sink.WithLogger(log), s3sink.WithRegisterer(reg))
	if err != nil {
		return err
	}
	c, err := consumer.New(kc, store, *stream, sink.NewProcessor, consumer.WithLogger(log), consumer.WithRegisterer(reg))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start, cpu0 := time.Now(), benchutil.CPUTime()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(rctx) }()
	deadline := time.After(*timeout)
	tick := time.NewTicker(50 * time.Millisecond) // reading the sink's counter
	defer tick.Stop()
	archived := 0.0
	for archived < float64(*records) {
		select {
		case err := <-errc:
			return fmt.Errorf("worker stopped: %w", err)
		case <-deadline:
			return fmt.Errorf("archived %.0f of %d records in %v", archived, *records, *timeout)
		case <-tick.C:
		}
		archived = counter(reg, "kinlog_sink_records_archived_total")
	}
	elapsed, cpu := time.Since(start), benchutil.CPUTime()-cpu0
	cancel()
	<-errc
	out, _ := json.Marshal(map[string]any{
		"worker": "kinlog", "encoding": *encoding, "records": int64(archived), "seconds": elapsed.Seconds(),
		"records_per_second": archived / elapsed.Seconds(), "cpu_seconds": cpu.Seconds(),
		"cpu_us_per_record":           float64(cpu.Nanoseconds()) / 1e3 / archived,
		"records_per_second_per_core": archived / cpu.Seconds(),
		"objects":                     counter(reg, "kinlog_sink_objects_written_total"),
	})
	fmt.Println(string(out))
	return nil
}

// counter sums a counter's series in the registry.
func counter(g prometheus.Gatherer, name string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func fillStream(ctx context.Context, kc *kinesis.Client, n, shards int) error {
	name := "kinlog-workerbench-" + randomHex()
	if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &name, ShardCount: aws.Int32(int32(shards))}); err != nil {
		return err
	}
	for {
		out, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling the stream's status: Kinesis has no wait call
	}
	p, err := producer.New(kc, name)
	if err != nil {
		return err
	}
	services := []string{"api", "web", "billing", "search"}
	levels := []string{"INFO", "INFO", "INFO", "WARN", "ERROR"}
	for i := range n {
		line := fmt.Sprintf(`{"time":"2026-11-22T10:%02d:%02d.%06dZ","level":%q,"service":%q,"msg":"request served","method":"GET","path":"/api/v1/items/%06d","status":200,"duration_ms":12.5,"user":"user-%04d"}`,
			(i/60000)%60, (i/1000)%60, i%1000000, levels[i%len(levels)], services[i%len(services)], i, i%1000)
		if err := p.Put(ctx, producer.Record{Data: []byte(line), PartitionKey: fmt.Sprintf("user-%04d", i%1000)}); err != nil {
			return err
		}
	}
	if err := p.Close(ctx); err != nil {
		return err
	}
	fmt.Println(name)
	return nil
}

func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dynamotypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kinlog/kinlog/internal/conf"
	"github.com/kinlog/kinlog/producer"
	"github.com/kinlog/kinlog/query"
	"github.com/kinlog/kinlog/sinks/rollup"
)

func rollupConfigFor(dim string) rollup.Config { return rollup.Config{Dimensions: []string{dim}} }

// objectsTotal counts the archive objects in the bucket (for the demo's pruning figure).
func objectsTotal(ctx context.Context, sc *s3.Client, bucket string) int {
	st, err := query.Run(ctx, sc, query.Request{Bucket: bucket, Limit: 1, Parallelism: 1}, func([]byte) error { return nil })
	if err != nil {
		return -1
	}
	return st.ObjectsListed
}

// runDemo runs the whole pipeline on whatever the AWS_ENDPOINT_URL_* variables point at
// (the local stack under `make demo`): a 4-shard stream, a lease table and a bucket; synthetic
// logs shipped through the slog handler; two workers archiving them; then queries.
func runDemo(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	records := fs.Int("records", 20000, "number of log records to produce")
	pathStyle := fs.Bool("s3-path-style", true, "path-style S3 addressing (MinIO needs it)")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	onAWS := fs.Bool("aws", false, "run against the AWS account the credentials reach (without it, every endpoint must be local: the local stack)")
	cleanup := fs.Bool("cleanup", false, "delete the stream, lease table and bucket at the end (the default with --aws)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if !*onAWS {
		if bad := nonLocalEndpoints(os.Getenv); len(bad) > 0 {
			return fmt.Errorf("%w: kinlog demo creates a stream, a lease table and a bucket, and %s: run it on the local stack (eval \"$(infra/local/stack env)\", or make demo), or pass --aws to run it in your AWS account (it then deletes what it created)", errUsage, strings.Join(bad, "; "))
		}
	}
	cleanupSet := false
	fs.Visit(func(f *flag.Flag) { cleanupSet = cleanupSet || f.Name == "cleanup" })
	if *onAWS && !cleanupSet {
		*cleanup = true
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *records < 1 {
		return fmt.Errorf("%w: --records must be positive", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	name := "kinlog-demo-" + time.Now().UTC().Format("20060102-150405")
	kc := kinesis.NewFromConfig(awsCfg)
	sc := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = *pathStyle })
	if *cleanup {
		defer func() {
			if err := deleteDemo(kc, dynamodb.NewFromConfig(awsCfg), sc, name); err != nil {
				fmt.Fprintf(stdout, "==> cleaning up: %v (delete stream %s, table %s-leases and bucket %s by hand)\n", err, name, name, name)
				return
			}
			fmt.Fprintf(stdout, "==> deleted stream %s, lease table %s-leases and bucket %s\n", name, name, name)
		}()
	}

	step := func(format string, a ...any) { fmt.Fprintf(stdout, "==> "+format+"\n", a...) }
	step("creating stream %s (4 shards) and bucket %s", name, name)
	if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(4)}); err != nil {
		return fmt.Errorf("creating stream: %w", err)
	}
	if err := kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, time.Minute); err != nil {
		return fmt.Errorf("waiting for stream: %w", err)
	}
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("creating bucket: %w", err)
	}

	// Produce through the slog handler, as an application would log.
	start := time.Now()
	p, err := producer.New(kc, name)
	if err != nil {
		return err
	}
	handler := producer.NewHandler(p, &producer.HandlerOptions{PartitionKey: "user"})
	// The synthetic records are spread over the last hour (their "time" field), and the
	// sink partitions by that field, so time-range queries have something to prune.
	r := rand.New(rand.NewPCG(uint64(start.UnixNano()), 7))
	services := []string{"api", "web", "billing"}
	for i := range *records {
		// Steady traffic over the hour, plus an incident 25 minutes ago: a 5-minute burst
		// with many more errors.
		at := start.Add(-time.Hour + time.Duration(r.Int64N(int64(time.Hour))))
		errPct := 2
		if r.IntN(5) == 0 {
			at = start.Add(-25*time.Minute + time.Duration(r.Int64N(int64(5*time.Minute))))
			errPct = 30
		}
		lvl, status := slog.LevelInfo, 200
		switch x := r.IntN(100); {
		case x < errPct:
			lvl, status = slog.LevelError, 500+r.IntN(4)
		case x < errPct+7:
			lvl, status = slog.LevelWarn, 400+r.IntN(30)
		}
		rec := slog.NewRecord(at, lvl, "request served", 0)
		rec.AddAttrs(slog.String("service", services[r.IntN(len(services))]), slog.Int("status", status),
			slog.Int("latency_ms", int(r.ExpFloat64()*80)+1), slog.String("user", fmt.Sprintf("u%d", r.IntN(500))), slog.Int("seq", i))
		if err := handler.Handle(ctx, rec); err != nil {
			return fmt.Errorf("logging: %w", err)
		}
	}
	if err := p.Close(ctx); err != nil {
		return fmt.Errorf("closing producer: %w", err)
	}
	ps := p.Stats()
	step("produced %d log records through the slog handler in %s: %d Kinesis records (KPL aggregation, %.0f per record), %d failed",
		ps.RecordsDelivered, time.Since(start).Round(time.Millisecond), ps.KinesisRecords,
		float64(ps.RecordsDelivered)/max(1, float64(ps.KinesisRecords)), ps.RecordsFailed)
	if ps.RecordsFailed > 0 || ps.RecordsDelivered != uint64(*records) {
		return fmt.Errorf("producer delivered %d of %d records", ps.RecordsDelivered, *records)
	}

	// Two workers share the shards through the lease table and archive them to S3.
	step("starting 2 workers (lease table %s-leases)", name)
	cfg := defaultConsumeConfig()
	cfg.Stream, cfg.Application = name, name
	cfg.Consumer.CreateLeaseTable = true
	cfg.Consumer.FailoverTime = conf.Duration(5 * time.Second)
	cfg.Consumer.IdleTimeBetweenReads = conf.Duration(250 * time.Millisecond)
	cfg.Sink.S3.Bucket, cfg.Sink.S3.PathStyle = name, *pathStyle
	cfg.Sink.S3.FlushInterval = conf.Duration(time.Second)
	cfg.Sink.S3.TimeField, cfg.Sink.S3.TimeFormat = "time", "rfc3339"
	cfg.Analytics.NumericFields = []string{"latency_ms"}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	workers := make([]*built, 2)
	for i := range workers {
		c := cfg
		c.Consumer.WorkerID = fmt.Sprintf("demo-worker-%d", i+1)
		b, err := build(ctx, &c, quiet)
		if err != nil {
			return err
		}
		if i == 0 {
			if err := b.store.EnsureTable(ctx); err != nil {
				return fmt.Errorf("creating lease table: %w", err)
			}
		}
		workers[i] = b
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
			}
		}()
	}
	archived := int64(0)
	for archived < int64(*records) {
		select {
		case err := <-errs:
			return fmt.Errorf("worker: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("archived %d of %d records before the timeout: %w", archived, *records, ctx.Err())
		case <-time.After(time.Second): // progress report interval
		}
		st, err := query.Run(ctx, sc, query.Request{Bucket: name}, func([]byte) error { return nil })
		if err != nil {
			return err
		}
		archived = st.RecordsMatched
		fmt.Fprintf(stdout, "    archived %d/%d records in %d objects; leases held: worker 1: %d, worker 2: %d\n",
			archived, *records, st.ObjectsListed, workers[0].leasesHeld(), workers[1].leasesHeld())
	}
	stopWorkers()
	wg.Wait()
	step("every record archived exactly once to s3://%s/logs/ (workers stopped gracefully: checkpointed and released)", name)

	// Queries, as `kinlog query` answers them.
	step("kinlog query --count-by level   (from the analytics rollups)")
	rows, _, err := query.ReadRollups(ctx, sc, name, "", time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	if err := printAggregate(stdout, rows, false, "level", "rollups", time.Time{}, time.Time{}); err != nil {
		return err
	}
	step("kinlog query --stats")
	if err := printAggregate(stdout, rows, true, "", "rollups", time.Time{}, time.Time{}); err != nil {
		return err
	}
	step("kinlog query --where level=ERROR --where 'latency_ms>100' --select time,service,status,latency_ms --output table --limit 5")
	where, err := query.ParseFilter([]string{"level=ERROR", "latency_ms>100"})
	if err != nil {
		return err
	}
	w, err := query.NewWriter(stdout, query.Table, []string{"time", "service", "status", "latency_ms"})
	if err != nil {
		return err
	}
	if _, err := query.Run(ctx, sc, query.Request{Bucket: name, Where: where, Limit: 5}, w.Write); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	step("kinlog query --count-by time --from -1h   (log volume over the hour the records span)")
	if err := printAggregate(stdout, rows, false, "time", "rollups", start.Add(-time.Hour), start); err != nil {
		return err
	}
	step("kinlog query --from -10m --time-field time --count-by service   (a time range reads only its partitions)")
	recent, qst, err := query.ScanRollup(ctx, sc, query.Request{Bucket: name, From: start.Add(-10 * time.Minute), To: start, TimeFields: []string{"time"}}, rollupConfigFor("service"))
	if err != nil {
		return err
	}
	if err := printAggregate(stdout, recent, false, "service", "scan", time.Time{}, time.Time{}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "    read %d of %d archive objects (%d prefixes listed)\n", qst.ObjectsRead, objectsTotal(ctx, sc, name), qst.Prefixes)
	step("demo ok: stream, bucket and lease table are named %s; try: kinlog query --bucket %s --s3-path-style --count-by service", name, name)
	return nil
}

// nonLocalEndpoints names the services whose endpoint is not on this machine: one not set
// (the SDK would reach AWS) or set to another host.
func nonLocalEndpoints(getenv func(string) string) []string {
	var bad []string
	for _, svc := range []string{"KINESIS", "DYNAMODB", "S3"} {
		v := getenv("AWS_ENDPOINT_URL_" + svc)
		if v == "" {
			v = getenv("AWS_ENDPOINT_URL")
		}
		if v == "" {
			bad = append(bad, "AWS_ENDPOINT_URL_"+svc+" is not set (that means AWS)")
			continue
		}
		u, err := url.Parse(v)
		if err != nil {
			bad = append(bad, fmt.Sprintf("AWS_ENDPOINT_URL_%s=%s is not a URL", svc, v))
			continue
		}
		if h := u.Hostname(); h != "localhost" && !net.ParseIP(h).IsLoopback() {
			bad = append(bad, fmt.Sprintf("AWS_ENDPOINT_URL_%s=%s is not on this machine", svc, v))
		}
	}
	return bad
}

// deleteDemo deletes what the demo created: the stream, the lease table and the bucket
// with its objects.
func deleteDemo(kc *kinesis.Client, dc *dynamodb.Client, sc *s3.Client, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	if _, err := kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name), EnforceConsumerDeletion: aws.Bool(true)}); err != nil {
		errs = append(errs, fmt.Errorf("stream: %w", err))
	}
	var nf *dynamotypes.ResourceNotFoundException
	if _, err := dc.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name + "-leases")}); err != nil && !errors.As(err, &nf) {
		errs = append(errs, fmt.Errorf("lease table: %w", err))
	}
	p := s3.NewListObjectsV2Paginator(sc, &s3.ListObjectsV2Input{Bucket: aws.String(name)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing bucket: %w", err))
			break
		}
		if len(page.Contents) == 0 {
			continue
		}
		del := &s3types.Delete{Quiet: aws.Bool(true)}
		for _, o := range page.Contents {
			del.Objects = append(del.Objects, s3types.ObjectIdentifier{Key: o.Key})
		}
		if _, err := sc.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(name), Delete: del}); err != nil {
			errs = append(errs, fmt.Errorf("emptying bucket: %w", err))
			break
		}
	}
	if _, err := sc.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)}); err != nil {
		errs = append(errs, fmt.Errorf("bucket: %w", err))
	}
	return errors.Join(errs...)
}

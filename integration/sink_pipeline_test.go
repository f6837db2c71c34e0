package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/rollup"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// Environment of the worker subprocess of TestSinkPipelineSIGKILL.
const (
	envWorker = "KINLOG_PIPELINE_WORKER" // worker id; set only in the subprocess
	envStream = "KINLOG_PIPELINE_STREAM"
	envTable  = "KINLOG_PIPELINE_TABLE"
	envBucket = "KINLOG_PIPELINE_BUCKET"
	// envDedup=off runs the sink with s3sink.WithoutDedup() (default: deduplication on).
	envDedup = "KINLOG_PIPELINE_DEDUP"
)

// workerMetricsLine starts the line a worker writes to its log when it stops gracefully:
// its sink's archived and deduplicated record counts.
const workerMetricsLine = "kinlog-pipeline-worker-metrics"

// pipelinePrefix partitions by service, so malformed records go to the error output.
const pipelinePrefix = "logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"

// TestSinkPipelineWorker is the worker process of TestSinkPipelineSIGKILL: a consumer with
// the S3 sink that runs until SIGTERM (graceful) or SIGKILL (crash). It skips unless started
// by that test.
func TestSinkPipelineWorker(t *testing.T) {
	id := os.Getenv(envWorker)
	if id == "" {
		t.Skip("helper process of TestSinkPipelineSIGKILL")
	}
	cfg := testenv.AWSConfig(t)
	kc := kinesis.NewFromConfig(cfg)
	store, err := ddbstore.New(dynamodb.NewFromConfig(cfg), os.Getenv(envTable))
	if err != nil {
		t.Fatal(err)
	}
	sc := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = os.Getenv("KINLOG_S3_PATH_STYLE") == "true" })
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", id)
	reg := prometheus.NewRegistry()
	sink, err := s3sink.New(sc, os.Getenv(envBucket), os.Getenv(envStream),
		s3sink.WithLogger(log), s3sink.WithPrefix(pipelinePrefix),
		s3sink.WithEncoding(encode.Config{Format: encode.Parquet}),
		// Small, frequent flushes, so that kills land in the middle of them.
		s3sink.WithBufferSize(96<<10), s3sink.WithBufferInterval(300*time.Millisecond),
		s3sink.WithRollups(rollup.Config{Numeric: []string{"latency_ms"}}),
		s3sink.WithRetryBackoff(50*time.Millisecond, time.Second),
		s3sink.WithRegisterer(reg), dedupWorkerOption())
	if err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(kc, store, os.Getenv(envStream), sink.NewProcessor,
		consumer.WithWorkerID(id), consumer.WithLogger(log),
		consumer.WithFailoverTime(3*time.Second), consumer.WithShardSyncInterval(time.Second),
		consumer.WithIdleTimeBetweenReads(200*time.Millisecond), consumer.WithMaxRecords(2000),
		consumer.WithShutdownTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, workerMetricsLine, dedupWorkerMetrics(t, reg))
}

type worker struct {
	cmd  *exec.Cmd
	logs *os.File
	done chan error
}

// TestSinkPipelineSIGKILL produces records with the producer, consumes them with two
// worker processes writing the S3 archive, SIGKILLs workers in the middle of flushes
// several times, and then checks the bucket: every record exactly once (no object of a
// crashed run survives beside the objects that replaced it), malformed records in the
// error output, rollup counts equal to the archived counts of every window.
func TestSinkPipelineSIGKILL(t *testing.T) {
	kc := testenv.KinesisClient(t)
	testenv.Require(t, testenv.DynamoDB)
	sc := testenv.S3Client(t)
	n := 200000
	if v := os.Getenv("KINLOG_PIPELINE_RECORDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	const malformedEvery = 997
	stream := testenv.Name(t, "pipeline")
	table := testenv.Name(t, "pipeline-leases")
	bucket := testenv.Name(t, "pipeline")
	testenv.CreateStream(t, kc, stream, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emptyBucket(t, sc, bucket) })
	t.Cleanup(func() {
		_, _ = testenv.DynamoDBClient(t).DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})

	// Produce while the workers run.
	start := func(id string) *worker {
		logs, err := os.CreateTemp(t.TempDir(), id+"-*.log")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestSinkPipelineWorker$", "-test.v")
		cmd.Env = append(os.Environ(), envWorker+"="+id, envStream+"="+stream, envTable+"="+table, envBucket+"="+bucket)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w := &worker{cmd: cmd, logs: logs, done: make(chan error, 1)}
		go func() { w.done <- cmd.Wait() }()
		return w
	}
	workers := []*worker{start("w0"), start("w1")}
	t.Cleanup(func() {
		for _, w := range workers {
			_ = w.cmd.Process.Kill()
			<-w.done
		}
	})

	p, err := producer.New(kc, stream)
	if err != nil {
		t.Fatal(err)
	}
	malformed := 0
	for i := range n {
		var data []byte
		if i%malformedEvery == 0 {
			data = fmt.Appendf(nil, "malformed record %d", i)
			malformed++
		} else {
			data = fmt.Appendf(nil, `{"time":%q,"level":%q,"service":"svc-%d","msg":"request %d","id":%d,"latency_ms":%d}`,
				time.Now().UTC().Format(time.RFC3339Nano), []string{"INFO", "WARN", "ERROR"}[i%3], i%5, i, i, i%1000)
		}
		if err := p.Put(ctx, producer.Record{PartitionKey: "pk-" + strconv.Itoa(i%257), Data: data}); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("closing producer: %v", err)
	}
	t.Logf("produced %d records (%d malformed)", n, malformed)

	// Kill a worker whenever the archive grew, several times.
	const kills = 4
	last := 0
	for k := 0; k < kills; k++ {
		grew := poll(2*time.Minute, 100*time.Millisecond, func() bool {
			c := countKeys(t, sc, bucket)
			if c > last {
				last = c
				return true
			}
			return false
		})
		if !grew {
			t.Fatalf("the archive stopped growing before kill %d; worker logs:\n%s", k, tail(workers))
		}
		victim := k % 2
		if err := workers[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-workers[victim].done
		old := workers[victim]
		workers[victim] = start(fmt.Sprintf("w%d-%d", victim, k+1))
		workers = append(workers, old) // keep its log for the re-cut count (Kill in cleanup is a no-op)
		old.done <- nil
		t.Logf("kill %d: SIGKILLed a worker with %d objects in the bucket", k+1, last)
	}

	// Wait for every record to be archived, then stop the workers gracefully.
	got := 0
	if !poll(6*time.Minute, 2*time.Second, func() bool {
		seen, _ := scanPipeline(t, sc, bucket)
		got = len(seen)
		return got >= n
	}) {
		t.Fatalf("only %d of %d records archived; worker logs:\n%s", got, n, tail(workers))
	}
	for _, w := range workers {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range workers {
		if err := <-w.done; err != nil {
			t.Errorf("worker exited with %v after SIGTERM", err)
		}
		w.done <- nil // for the cleanup
	}

	seen, res := scanPipeline(t, sc, bucket)
	dups := 0
	for id, c := range seen {
		if c != 1 {
			dups++
			if dups < 10 {
				t.Errorf("record %d stored %d times", id, c)
			}
		}
	}
	for i := range n {
		if seen[i] == 0 {
			t.Fatalf("record %d missing", i)
		}
	}
	if dups > 0 {
		t.Fatalf("%d records stored more than once", dups)
	}
	if res.errored != malformed {
		t.Errorf("%d records in the error output, want the %d malformed ones", res.errored, malformed)
	}
	if !maps.Equal(res.rollupCounts, res.archivedPerMinute) {
		t.Errorf("rollup counts per minute %v differ from archived %v", res.rollupCounts, res.archivedPerMinute)
	}
	t.Logf("%d archive objects, %d error objects, %d analytics objects, %d records exactly once", res.archiveObjects, res.errorObjects, res.analyticsObjects, len(seen))
	recuts := 0
	for _, w := range workers {
		data, _ := os.ReadFile(w.logs.Name())
		recuts += bytes.Count(data, []byte("re-cutting the pending batch"))
	}
	t.Logf("replacement workers re-cut %d pending batches", recuts)
}

// poll checks cond (a look at external state: the bucket) every interval until it holds or
// timeout passes.
func poll(timeout, every time.Duration, cond func() bool) bool {
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := time.After(timeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-end:
			return cond()
		}
	}
	return true
}

type pipelineScan struct {
	errored                                        int
	archiveObjects, errorObjects, analyticsObjects int
	archivedPerMinute, rollupCounts                map[time.Time]int64
}

// scanPipeline reads the whole bucket and counts each record id (archived rows and error
// records), and per-minute archived and rollup counts.
func scanPipeline(t *testing.T, sc *s3.Client, bucket string) (map[int]int, pipelineScan) {
	t.Helper()
	seen := map[int]int{}
	res := pipelineScan{archivedPerMinute: map[time.Time]int64{}, rollupCounts: map[time.Time]int64{}}
	var rows []rollup.Row
	for key, body := range readBucket(t, sc, bucket) {
		switch {
		case strings.HasPrefix(key, "logs/"):
			res.archiveObjects++
			prs, err := encode.ReadParquet(body)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			for _, r := range prs {
				var m struct{ ID int }
				if err := json.Unmarshal([]byte(r.Attributes), &m); err != nil {
					t.Fatalf("%s: attributes %q: %v", key, r.Attributes, err)
				}
				seen[m.ID]++
				res.archivedPerMinute[r.ArrivalTime.UTC().Truncate(time.Minute)]++
			}
		case strings.HasPrefix(key, "errors/"):
			res.errorObjects++
			raw, err := encode.Decompress(body, encode.CompressionGzip)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(raw))
			for sc.Scan() {
				var er s3sink.ErrorRecord
				if err := json.Unmarshal(sc.Bytes(), &er); err != nil {
					t.Fatal(err)
				}
				id, err := strconv.Atoi(strings.TrimPrefix(string(er.RawData), "malformed record "))
				if err != nil {
					t.Fatalf("unexpected error record %q (%s)", er.RawData, er.ErrorMessage)
				}
				seen[id]++
				res.errored++
			}
		case strings.HasPrefix(key, "analytics/"):
			res.analyticsObjects++
			r, err := rollup.DecodeObject(body)
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, r...)
		default:
			t.Errorf("unexpected object %s", key)
		}
	}
	merged, err := rollup.Merge(rows, rollup.MergeOptions{By: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range merged {
		res.rollupCounts[r.Start] = r.Count
	}
	return seen, res
}

func listKeys(t *testing.T, sc *s3.Client, bucket string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	pg := s3.NewListObjectsV2Paginator(sc, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
		}
	}
	return keys
}

func countKeys(t *testing.T, sc *s3.Client, bucket string) int { return len(listKeys(t, sc, bucket)) }

func readBucket(t *testing.T, sc *s3.Client, bucket string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := map[string][]byte{}
	for _, k := range listKeys(t, sc, bucket) {
		g, err := sc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)})
		if err != nil {
			t.Fatalf("getting %s: %v", k, err)
		}
		b, err := io.ReadAll(g.Body)
		g.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = b
	}
	return out
}

func emptyBucket(t *testing.T, sc *s3.Client, bucket string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range listKeys(t, sc, bucket) {
		_, _ = sc.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)})
	}
	_, _ = sc.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
}

func tail(ws []*worker) string {
	var b strings.Builder
	for _, w := range ws {
		data, _ := os.ReadFile(w.logs.Name())
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", w.logs.Name(), data)
	}
	return b.String()
}

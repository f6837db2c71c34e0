package lambda

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/esm"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/query"
	"github.com/kinlog/kinlog/sinks/encode"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// benchBatch is one invocation's event, as large as Lambda sends: up to 10,000 records
// (the largest batch size) of about 300 bytes of JSON log line, or fewer when the event
// would pass 6 MB; sequence numbers follow those of earlier batches (*seq).
func benchBatch(stream string, seq *int, rng *rand.Rand, rawBytes, records *int) []byte {
	var b strings.Builder
	b.WriteString(`{"Records":[`)
	arrival := time.Now().UnixMilli()
	levels := []string{"info", "info", "info", "warn", "error"}
	for i := 0; i < 10000 && b.Len() < 6_000_000-1000; i++ {
		*seq++
		*records++
		seq := fmt.Sprintf("49%054d", *seq)
		line := fmt.Sprintf(`{"time":"%s","level":%q,"service":"svc%d","msg":"request served in the usual way for a customer of the shop","path":"/api/v1/orders/%d","status":%d,"latency_ms":%d,"user":"u%06d","trace":"%016x"}`,
			time.UnixMilli(arrival).UTC().Format(time.RFC3339Nano), levels[rng.IntN(len(levels))], rng.IntN(3), rng.IntN(100000), 200+rng.IntN(4)*100, rng.IntN(900), rng.IntN(1000000), rng.Uint64())
		*rawBytes += len(line)
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"k%d","sequenceNumber":%q,"data":%q,"approximateArrivalTimestamp":%d.%03d},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000000:%s","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::000000000000:role/kinlog","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:000000000000:stream/%s"}`,
			i, seq, base64.StdEncoding.EncodeToString([]byte(line)), arrival/1000, arrival%1000, seq, stream)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// benchMemory is the function's memory size in the benchmark (MB): its garbage collector
// works to 85% of it. KINLOG_BENCH_MEMORY overrides it.
var benchMemory = func() string {
	if v := os.Getenv("KINLOG_BENCH_MEMORY"); v != "" {
		return v
	}
	return "512"
}()

// BenchmarkFunctionOnRIE runs the bootstrap under the real Lambda Runtime Interface
// Emulator, one 10,000-record batch per iteration, against MinIO and dynalite, and reports
// the function's time per MB of records archived, its init time, its peak memory and the
// objects it writes per GB; then how long query takes to count the archive, against an
// archive of the same records written in 5 MiB flushes as a worker writes them.
// Run: go test -run '^$' -bench FunctionOnRIE -benchtime 20x ./lambda/
func BenchmarkFunctionOnRIE(b *testing.B) {
	for _, format := range []string{"ndjson", "parquet"} {
		b.Run(format, func(b *testing.B) {
			testenv.Require(b, testenv.S3, testenv.DynamoDB)
			st := &stack{s3: testenv.S3Client(b), ddb: testenv.DynamoDBClient(b)}
			st.stream = testenv.Name(b, "bench")
			st.bucket = testenv.Name(b, "kinlog-bench")
			st.table = testenv.Name(b, "bench-progress")
			ctx := context.Background()
			if _, err := st.s3.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &st.bucket}); err != nil {
				b.Fatal(err)
			}
			if err := CreateProgressTable(ctx, st.ddb, st.table); err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			bootstrap := filepath.Join(dir, "bootstrap")
			build := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", bootstrap, "../cmd/kinlog-lambda")
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				b.Fatalf("building the bootstrap: %v\n%s", err, out)
			}
			env := []string{
				"AWS_ACCESS_KEY_ID=" + os.Getenv("AWS_ACCESS_KEY_ID"), "AWS_SECRET_ACCESS_KEY=" + os.Getenv("AWS_SECRET_ACCESS_KEY"),
				"AWS_ENDPOINT_URL_S3=" + os.Getenv("AWS_ENDPOINT_URL_S3"), "AWS_ENDPOINT_URL_DYNAMODB=" + os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"),
				"AWS_ENDPOINT_URL_KINESIS=" + os.Getenv("AWS_ENDPOINT_URL_KINESIS"),
				"KINLOG_SINK_S3_BUCKET=" + st.bucket, "KINLOG_SINK_S3_PATH_STYLE=true", "KINLOG_SINK_S3_ENCODING=" + format,
				"KINLOG_SINK_S3_PREFIX=logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/",
				"KINLOG_PROGRESS_TABLE=" + st.table, "KINLOG_LOG_LEVEL=warn", "AWS_LAMBDA_FUNCTION_TIMEOUT=120", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + benchMemory,
			}
			rie := esm.StartRIE(b, bootstrap, env)
			rng := rand.New(rand.NewPCG(1, 2))
			raw, seq, records := 0, 0, 0
			batches := make([][]byte, b.N)
			for i := range batches {
				batches[i] = benchBatch(st.stream, &seq, rng, &raw, &records)
			}
			var fn, initDur time.Duration
			var peak int64
			b.ResetTimer()
			for i := range b.N {
				res, err := rie.Invoke(ctx, batches[i])
				if err != nil || res.FunctionError || strings.Contains(string(res.Body), "batchItemFailures\":[{") {
					b.Fatalf("invocation %d: %v %s", i, err, res.Body)
				}
				fn += res.FunctionDuration
				initDur = max(initDur, res.InitDuration)
				peak = max(peak, res.PeakRSS)
			}
			b.StopTimer()
			mb := float64(raw) / (1 << 20)
			objects := st.objects(b)
			b.ReportMetric(float64(fn.Milliseconds())/mb, "fn-ms/MB")
			b.ReportMetric(float64(initDur.Microseconds())/1000, "init-ms")
			b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
			b.ReportMetric(float64(len(objects))/(mb/1024), "objects/GB")

			// The same records as a worker writes them: flushes of 5 MiB.
			workerBucket := st.bucket + "-w"
			if _, err := st.s3.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &workerBucket}); err != nil {
				b.Fatal(err)
			}
			f, err := encode.ParseFormat(format)
			if err != nil {
				b.Fatal(err)
			}
			sink, err := s3sink.New(st.s3, workerBucket, st.stream, s3sink.WithEncoding(encode.Config{Format: f}),
				s3sink.WithPrefix("logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"))
			if err != nil {
				b.Fatal(err)
			}
			wObjects := writeLikeWorker(b, sink, batches)
			b.ReportMetric(float64(wObjects)/(mb/1024), "worker-objects/GB")
			count := func(bucket string) time.Duration {
				start := time.Now()
				n := 0
				_, err := query.Run(ctx, st.s3, query.Request{Bucket: bucket, Prefix: "logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/", Order: query.OrderNone},
					func([]byte) error { n++; return nil })
				if err != nil || n != records {
					b.Fatalf("query of %s: %d records, %v", bucket, n, err)
				}
				return time.Since(start)
			}
			b.ReportMetric(float64(count(st.bucket).Milliseconds()), "query-ms")
			b.ReportMetric(float64(count(workerBucket).Milliseconds()), "worker-query-ms")
			for _, bk := range []string{st.bucket, workerBucket} {
				saved := st.bucket
				st.bucket = bk
				for k := range st.objects(b) {
					_, _ = st.s3.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &st.bucket, Key: aws.String(k)})
				}
				st.bucket = saved
				_, _ = st.s3.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(bk)})
			}
		})
	}
}

// writeLikeWorker archives the batches' records in runs of 5 MiB (the worker's default
// flush size) and returns how many objects that makes.
func writeLikeWorker(b *testing.B, sink *s3sink.Sink, batches [][]byte) int {
	var run []consumer.Record
	size, objects := 0, 0
	flush := func() {
		if len(run) == 0 {
			return
		}
		objs, err := sink.Build(shard0, run, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := sink.Write(context.Background(), objs); err != nil {
			b.Fatal(err)
		}
		objects += len(objs.Keys())
		run, size = nil, 0
	}
	for _, p := range batches {
		bt, err := decodeEvent(p)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range bt.records {
			run = append(run, consumer.Record{ShardID: shard0, SequenceNumber: r.seq, PartitionKey: r.partitionKey, ArrivalTime: r.arrival, Data: r.data})
			if size += len(r.data) + 1; size >= s3sink.DefaultBufferSize {
				flush()
			}
		}
	}
	flush()
	return objects
}

// BenchmarkHandle is the function in process (no RIE), for profiles: one batch as large
// as Lambda sends per iteration, against MinIO and dynalite.
func BenchmarkHandle(b *testing.B) {
	testenv.Require(b, testenv.S3, testenv.DynamoDB, testenv.Kinesis)
	st := &stack{s3: testenv.S3Client(b), ddb: testenv.DynamoDBClient(b), kin: testenv.KinesisClient(b), sinkOpts: sinkOptions}
	st.stream, st.bucket, st.table = testenv.Name(b, "bench"), testenv.Name(b, "kinlog-bench"), testenv.Name(b, "bench-progress")
	ctx := context.Background()
	if _, err := st.s3.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &st.bucket}); err != nil {
		b.Fatal(err)
	}
	if err := CreateProgressTable(ctx, st.ddb, st.table); err != nil {
		b.Fatal(err)
	}
	f := st.function(b, nil, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	raw, seq, records := 0, 0, 0
	batches := make([][]byte, b.N)
	for i := range batches {
		batches[i] = benchBatch(st.stream, &seq, rng, &raw, &records)
	}
	b.SetBytes(int64(raw / b.N))
	b.ResetTimer()
	for i := range b.N {
		if resp, err := f.Handle(ctx, batches[i]); err != nil || len(resp.BatchItemFailures) > 0 {
			b.Fatal(resp, err)
		}
	}
}

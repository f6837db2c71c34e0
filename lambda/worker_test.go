package lambda

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/checkpoint/memory"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/query"
	"github.com/kinlog/kinlog/sinks/encode"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// TestSameArchiveAsTheWorker: the worker (`kinlog consume`'s consumer and sink) and the
// function, fed the same stream, write archives that query reads identically — in NDJSON
// and in Parquet — and the same error output.
func TestSameArchiveAsTheWorker(t *testing.T) {
	for _, format := range []encode.Format{encode.NDJSON, encode.Parquet} {
		t.Run(format.String(), func(t *testing.T) {
			st := newStack(t, 2)
			opts := append(slices.Clone(sinkOptions), s3sink.WithEncoding(encode.Config{Format: format}))
			st.sinkOpts = opts
			good, bad := st.put(t, 0, 300)
			// An aggregate on shard 0 (by its explicit hash key) whose user records hash
			// anywhere: both modes write them to the error output.
			var agg kpl.Aggregator
			for i := range 8 {
				id := fmt.Sprintf("o%02d", i)
				agg.Add(kpl.Record{PartitionKey: id, Data: []byte("not json " + id)})
				bad = append(bad, id)
			}
			if _, err := st.kin.PutRecord(t.Context(), &kinesis.PutRecordInput{StreamName: &st.stream, PartitionKey: aws.String("x"),
				ExplicitHashKey: aws.String("0"), Data: agg.AppendEncode(nil)}); err != nil {
				t.Fatal(err)
			}

			// The worker, into its own bucket.
			workerBucket := testenv.Name(t, "kinlog-worker")
			if _, err := st.s3.CreateBucket(t.Context(), &awss3.CreateBucketInput{Bucket: &workerBucket}); err != nil {
				t.Fatal(err)
			}
			wopts := append(slices.Clone(opts), s3sink.WithBufferInterval(200*time.Millisecond))
			sink, err := s3sink.New(st.s3, workerBucket, st.stream, wopts...)
			if err != nil {
				t.Fatal(err)
			}
			c, err := consumer.New(st.kin, memory.New(), st.stream, sink.NewProcessor,
				consumer.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), consumer.WithIdleTimeBetweenReads(200*time.Millisecond),
				consumer.WithOutsideShardRecords()) // as kinlog consume runs it
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()

			// The function, batch by batch of varying size, per shard.
			f := st.function(t, nil, nil, WithChunkSize(4000))
			for _, shard := range []string{shard0, "shardId-000000000001"} {
				recs := st.read(t, shard)
				for i, n := 0, 1; i < len(recs); i, n = i+n, n%23+7 {
					resp, err := f.Handle(t.Context(), st.event(shard, recs[i:min(len(recs), i+n)]))
					if err != nil || len(resp.BatchItemFailures) > 0 {
						t.Fatalf("%s batch at %d: %+v %v", shard, i, resp, err)
					}
				}
			}
			fnRecords := queryAll(t, st, st.bucket)
			if len(fnRecords) != len(good) {
				t.Fatalf("the function's archive holds %d records, want %d", len(fnRecords), len(good))
			}
			// Wait for the worker to archive as much.
			deadline := time.Now().Add(60 * time.Second)
			var wRecords []string
			for {
				wRecords = queryAll(t, st, workerBucket)
				if len(wRecords) >= len(fnRecords) || time.Now().After(deadline) {
					break
				}
				select {
				case <-time.After(200 * time.Millisecond):
				case err := <-done:
					t.Fatalf("the worker stopped: %v", err)
				}
			}
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("worker: %v", err)
			}
			if !slices.Equal(wRecords, fnRecords) {
				t.Fatalf("query reads %d records from the worker's archive and %d from the function's; they differ", len(wRecords), len(fnRecords))
			}
			if p := st.archive(t).problems(good, bad); p != "" {
				t.Fatalf("the function's archive: %s", p)
			}
			if w, f := errorLines(t, st, workerBucket), errorLines(t, st, st.bucket); len(f) != len(bad) || !slices.Equal(w, f) {
				t.Fatalf("error output: %d lines from the worker, %d from the function (want %d, the same)", len(w), len(f), len(bad))
			}
			t.Cleanup(func() {
				ctx := context.Background()
				p := awss3.NewListObjectsV2Paginator(st.s3, &awss3.ListObjectsV2Input{Bucket: &workerBucket})
				for p.HasMorePages() {
					page, err := p.NextPage(ctx)
					if err != nil {
						return
					}
					for _, o := range page.Contents {
						_, _ = st.s3.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &workerBucket, Key: o.Key})
					}
				}
				_, _ = st.s3.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(workerBucket)})
			})
		})
	}
}

// queryAll returns every record query reads from the bucket's archive, sorted (the two
// archives cut objects in different places, so records of equal time may come in another
// order).
func queryAll(t *testing.T, st *stack, bucket string) []string {
	t.Helper()
	var out []string
	_, err := query.Run(t.Context(), st.s3, query.Request{Bucket: bucket, Prefix: "logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/", Order: query.OrderNone},
		func(rec []byte) error {
			out = append(out, string(rec))
			return nil
		})
	if err != nil && !strings.Contains(err.Error(), "no objects") {
		t.Fatalf("query of %s: %v", bucket, err)
	}
	slices.Sort(out)
	return out
}

// errorLines returns the error output's lines, sorted.
func errorLines(t *testing.T, st *stack, bucket string) []string {
	t.Helper()
	saved := st.bucket
	st.bucket = bucket
	objs := st.objects(t)
	st.bucket = saved
	var out []string
	for key, body := range objs {
		if !strings.HasPrefix(key, "errors/") {
			continue
		}
		lines, err := encode.Decompress(body, encode.CompressionGzip)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Split(strings.TrimSpace(string(lines)), "\n")...)
	}
	slices.Sort(out)
	return out
}

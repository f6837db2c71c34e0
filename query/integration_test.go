package query

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/sinks/encode"
)

// minioArchive writes objects of log records, encoded with cfg, into a fresh MinIO bucket,
// spread over hours partitions of the default layout, and returns the bucket, the records
// written and the stored bytes.
func minioArchive(tb testing.TB, sc *s3.Client, cfg encode.Config, hours, objectsPerHour, recordsPerObject int) (string, int, int64) {
	tb.Helper()
	ctx := context.Background()
	bucket := testenv.Name(tb, "query")
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		tb.Fatal(err)
	}
	enc, err := encode.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	levels := []string{"INFO", "INFO", "INFO", "WARN", "ERROR"}
	base := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	var stored int64
	n := 0
	for h := range hours {
		for o := range objectsPerHour {
			b := enc.NewObject()
			for i := range recordsPerObject {
				t := base.Add(time.Duration(h)*time.Hour + time.Duration(r.IntN(3600))*time.Second)
				line := fmt.Appendf(nil, `{"time":%q,"level":%q,"service":"svc-%d","msg":"GET /api/v1/items/%d served","latency_ms":%d,"status":%d,"user":"u%d","trace":"%016x"}`,
					t.Format(time.RFC3339), levels[r.IntN(len(levels))], r.IntN(8), r.IntN(100000), r.IntN(900), 200+r.IntN(4)*100, r.IntN(5000), r.Uint64())
				var d encode.Doc
				_ = d.Parse(line)
				m := encode.Meta{Shard: "shardId-000000000000", Sequence: fmt.Sprint(i + 1)}
				if err := b.Add(&m, line, &d); err != nil {
					tb.Fatal(err)
				}
				n++
			}
			body, err := b.Finish(nil)
			if err != nil {
				tb.Fatal(err)
			}
			key := fmt.Sprintf("logs/dt=2026-11-22/hour=%02d/s-shardId-000000000000-%d%s", h, o, enc.Extension())
			if _, err := sc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
				tb.Fatal(err)
			}
			stored += int64(len(body))
		}
	}
	return bucket, n, stored
}

// TestIntegrationPruning checks on MinIO that a time range reads only the objects of its
// partitions, and that an unbounded query reads them all.
func TestIntegrationPruning(t *testing.T) {
	sc := testenv.S3Client(t)
	bucket, n, _ := minioArchive(t, sc, encode.Config{Compression: encode.CompressionGzip}, 6, 2, 200)
	ctx := context.Background()
	all, err := Run(ctx, sc, Request{Bucket: bucket}, func([]byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if all.ObjectsRead != 12 || all.RecordsMatched != int64(n) {
		t.Fatalf("unbounded: %+v, want 12 objects and %d records", all, n)
	}
	from := time.Date(2026, 11, 22, 2, 30, 0, 0, time.UTC)
	some, err := Run(ctx, sc, Request{Bucket: bucket, From: from, To: from.Add(time.Hour), TimeFields: []string{"time"}}, func([]byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	// 02:30–03:30 touches hours 02 and 03: 4 of 12 objects, about a sixth of the records.
	if some.ObjectsRead != 4 || some.RecordsMatched < int64(n/6)*8/10 || some.RecordsMatched > int64(n/6)*12/10 {
		t.Fatalf("02:30-03:30: %+v", some)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIntegrationScan measures full scans of an archive on MinIO with a filter: NDJSON
// gzip (the default) and zstd, and Parquet zstd; objects read one at a time and
// [DefaultParallelism] at once. It reports stored (compressed) MB per second of wall time
// (total), stored MB per CPU second of this process (per core), records/s, and the cores
// the scan kept busy (CPU time over wall time). MinIO runs on the same machine; its CPU is
// not counted.
func BenchmarkIntegrationScan(b *testing.B) {
	sc := testenv.S3Client(b)
	for _, cfg := range []encode.Config{
		{Compression: encode.CompressionGzip},
		{Compression: encode.CompressionZstd},
		{Format: encode.Parquet, Compression: encode.CompressionZstd},
	} {
		name := cfg.Format.String() + "-" + cfg.Compression.String()
		if cfg.Format == encode.NDJSON {
			name = "ndjson-" + cfg.Compression.String() // the names of earlier runs
		}
		bucket, n, stored := minioArchive(b, sc, cfg, 4, 4, 20000)
		for _, par := range []int{1, DefaultParallelism} {
			b.Run(fmt.Sprintf("%s/parallel=%d", name, par), func(b *testing.B) {
				where, err := ParseFilter([]string{"level=ERROR", "latency_ms>500"})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				b.SetBytes(stored)
				b.ResetTimer()
				cpu0, wall0 := cpuTime(), time.Now()
				for b.Loop() {
					st, err := Run(ctx, sc, Request{Bucket: bucket, Where: where, Parallelism: par}, func([]byte) error { return nil })
					if err != nil {
						b.Fatal(err)
					}
					if st.RecordsScanned != int64(n) {
						b.Fatalf("scanned %d records, want %d", st.RecordsScanned, n)
					}
				}
				cpu, wall := cpuTime()-cpu0, time.Since(wall0)
				mb := float64(stored) * float64(b.N) / 1e6
				b.ReportMetric(mb/cpu.Seconds(), "storedMB/cpu-s")
				b.ReportMetric(mb/wall.Seconds(), "storedMB/s")
				b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
				b.ReportMetric(float64(n)*float64(b.N)/wall.Seconds(), "records/s")
				b.ReportMetric(float64(stored)/1e6, "archiveMB")
			})
		}
	}
}

//go:build unix

package s3

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/internal/testlogs"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// benchBatch is the number of records per consumer batch, as one GetRecords call of a busy
// shard would hand over.
const benchBatch = 500

// benchFlushes is how many size-triggered flushes (of DefaultBufferSize, 5 MiB of record
// data) the benchmark input makes.
const benchFlushes = 3

// benchRecords returns generated log records that end exactly at the benchFlushes-th size
// cut of DefaultBufferSize (about 67,000 records, 15 MiB), so every flush is cut by size and
// Shutdown has nothing left to write, and their total data size.
func benchRecords(b *testing.B) ([]consumer.Record, int) {
	b.Helper()
	g := testlogs.New(1)
	var recs []consumer.Record
	acc, cuts, total := 0, 0, 0
	for cuts < benchFlushes {
		for _, r := range g.Records(shard, uint64(len(recs))+1, 1000) {
			recs = append(recs, r)
			total += len(r.Data)
			if acc += recordSize(&r); acc >= DefaultBufferSize {
				acc = 0
				if cuts++; cuts == benchFlushes {
					break
				}
			}
		}
	}
	return recs, total
}

// benchStore counts what the sink writes, by kind, from the objects' metadata. It replaces
// the in-memory fake's PutObject so that the benchmark measures the sink, not the fake: the
// body is read (as an HTTP transport would) but neither copied nor kept.
type benchStore struct {
	mu                  sync.Mutex
	archived, analytics int            // records in archive and analytics objects
	errored             int            // records in error objects
	objects             map[string]int // objects by first key segment
	archiveBytes        int            // bytes of archive objects
}

func (st *benchStore) reset() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.archived, st.analytics, st.errored, st.archiveBytes = 0, 0, 0, 0
	st.objects = map[string]int{}
}

func (st *benchStore) put(_ context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
	n, err := io.Copy(io.Discard, in.Body)
	if err != nil {
		return nil, err
	}
	records, err := strconv.Atoi(in.Metadata[MetaRecords])
	if err != nil {
		return nil, err
	}
	kind := strings.SplitN(*in.Key, "/", 2)[0]
	st.mu.Lock()
	defer st.mu.Unlock()
	switch kind {
	case "logs":
		st.archived += records
		st.archiveBytes += int(n)
	case "analytics":
		st.analytics += records
	default:
		st.errored += records
	}
	st.objects[kind]++
	return &awss3.PutObjectOutput{}, nil
}

// cpuTime returns the CPU time (user and system) the process used so far, over all its
// threads: encoding and uploads run on the processor's goroutines, not the benchmark's.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSink measures the archive sink's whole path for one shard: consumer batches of
// 500 records in, classification and partitioning, size-cut flushes of 5 MiB, parsing,
// encoding and compression, rollups, the two-phase Prepare, object puts to an in-memory
// store, and the acknowledgements. One iteration is the life of a shard processor over
// about 15 MiB of log records (Initialize, every batch, Shutdown), and ends only when every
// record is acknowledged; it fails if a record is lost or lands in the error output.
//
// Besides the bytes of record data per second it reports records/s (wall clock) and
// ns/record, the process CPU time per record over every goroutine (encoding runs beside the
// goroutine that delivers the batches).
func BenchmarkSink(b *testing.B) {
	recs, total := benchRecords(b)
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"ndjson-gzip", []Option{WithEncoding(encode.Config{Format: encode.NDJSON, Compression: encode.CompressionGzip})}},
		{"ndjson-zstd", []Option{WithEncoding(encode.Config{Format: encode.NDJSON, Compression: encode.CompressionZstd})}},
		{"parquet-zstd", []Option{WithEncoding(encode.Config{Format: encode.Parquet, Compression: encode.CompressionZstd})}},
		{"ndjson-gzip-service-timefield", []Option{
			WithEncoding(encode.Config{Format: encode.NDJSON, Compression: encode.CompressionGzip}),
			WithPrefix("logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"),
			WithTimeField("time", "rfc3339"),
		}},
		// The default rollups count by dimension only; this adds a DDSketch per row.
		{"ndjson-gzip-latency-sketch", []Option{
			WithEncoding(encode.Config{Format: encode.NDJSON, Compression: encode.CompressionGzip}),
			WithRollups(rollup.Config{Numeric: []string{"latency_ms"}}),
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := &benchStore{}
			fake := newFakeS3(b)
			fake.putObject = st.put
			// A buffer interval far beyond the run: every flush is cut by size.
			opts := append([]Option{WithBufferInterval(time.Hour)}, bc.opts...)
			s := newTestSink(b, fake, realClock{}, opts...)
			start := checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}
			last := recs[len(recs)-1].Position()

			b.SetBytes(int64(total))
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				st.reset()
				h := newHarness(b, s, shard, start, nil)
				for i := 0; i < len(recs); i += benchBatch {
					h.mustDeliver(recs[i:min(i+benchBatch, len(recs))])
				}
				// Shutdown returns once every flush is written and acknowledged.
				shutdown(b, h.proc)
				if n := h.ackedCount(); n != len(recs) {
					b.Fatalf("%d of %d records acknowledged", n, len(recs))
				}
				if bs := h.prep.got(); len(bs) != benchFlushes || bs[len(bs)-1] != last {
					b.Fatalf("prepared boundaries %v, want %d ending at %v", bs, benchFlushes, last)
				}
				st.mu.Lock()
				archived, analytics, errored := st.archived, st.analytics, st.errored
				st.mu.Unlock()
				if archived != len(recs) || analytics != len(recs) || errored != 0 {
					b.Fatalf("%d records archived, %d rolled up, %d errored; want %d, %d, 0",
						archived, analytics, errored, len(recs), len(recs))
				}
			}
			cpu := cpuTime(b) - cpu0
			n := float64(b.N) * float64(len(recs))
			b.ReportMetric(n/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "ns/record")
			st.mu.Lock()
			b.ReportMetric(float64(st.objects["logs"]), "archive-objects")
			b.ReportMetric(float64(st.archiveBytes)/float64(st.objects["logs"]), "bytes/archive-object")
			b.ReportMetric(float64(total)/float64(st.archiveBytes), "ratio")
			st.mu.Unlock()
		})
	}
}

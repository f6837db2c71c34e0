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
// data) one benchmark iteration makes.
const benchFlushes = 3

// benchRecords returns generated log records that end exactly at the benchFlushes-th size
// cut of DefaultBufferSize (65,198 records, 15.7 MB), the index of the last record of each
// flush, and the records' total data size. As the input ends on a cut, every flush is cut
// by size and each iteration starts with an empty buffer.
func benchRecords(b *testing.B) (recs []consumer.Record, cuts []int, total int) {
	b.Helper()
	g := testlogs.New(1)
	acc := 0
	for len(cuts) < benchFlushes {
		for _, r := range g.Records(shard, uint64(len(recs))+1, 1000) {
			recs = append(recs, r)
			total += len(r.Data)
			if acc += recordSize(&r); acc >= DefaultBufferSize {
				acc = 0
				if cuts = append(cuts, len(recs)-1); len(cuts) == benchFlushes {
					break
				}
			}
		}
	}
	return recs, cuts, total
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

func (st *benchStore) put(_ context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
	n, err := io.Copy(io.Discard, in.Body)
	if err != nil {
		return nil, err
	}
	records, err := strconv.Atoi(in.Metadata[MetaRecords])
	if err != nil {
		return nil, err
	}
	kind, _, _ := strings.Cut(*in.Key, "/")
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

// benchWorker plays the consumer worker of one shard: it builds the batches, counts their
// acknowledgements, tells when a number of records is acknowledged, and checks at every
// Prepare that exactly the records of the previous flushes are acknowledged.
type benchWorker struct {
	b       *testing.B
	perIter int   // records per iteration
	cuts    []int // index of each flush's last record in an iteration

	mu       sync.Mutex
	acked    int // records acknowledged, over all iterations
	prepared int // Prepare calls
	target   int
	reached  chan struct{} // closed when acked reaches target
}

// ackedBefore returns how many records the flushes before the m-th (from 0) hold.
func (w *benchWorker) ackedBefore(m int) int {
	n := m / len(w.cuts) * w.perIter
	if i := m % len(w.cuts); i > 0 {
		n += w.cuts[i-1] + 1
	}
	return n
}

func (w *benchWorker) Prepare(_ context.Context, boundary checkpoint.Checkpoint) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if want := w.ackedBefore(w.prepared); w.acked != want {
		w.b.Errorf("Prepare(%v) number %d with %d records acknowledged, want %d", boundary, w.prepared, w.acked, want)
	}
	w.prepared++
	return nil
}

func (w *benchWorker) batch(recs []consumer.Record) *consumer.Batch {
	done := 0
	return consumer.NewBatch(shard, recs, func(n int) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.acked += n - done
		done = n
		if w.reached != nil && w.acked >= w.target {
			close(w.reached)
			w.reached = nil
		}
	})
}

// await returns a channel closed once n records in all are acknowledged.
func (w *benchWorker) await(n int) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if w.acked >= n {
		close(ch)
		return ch
	}
	w.target, w.reached = n, ch
	return ch
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
// store, and the acknowledgements. One processor lives through the run, as on a worker
// that holds the lease; after one untimed warm-up iteration, each iteration hands it the
// next 65,198 log records (15.7 MB, three flushes) and ends when every one of them is
// acknowledged. It fails if a record is not acknowledged, not archived, not rolled up, or
// lands in the error output.
//
// Besides the bytes of record data per second it reports records/s (wall clock) and
// ns/record, the process CPU time per record over every goroutine (the flush is built on
// the processor's goroutine, beside the one that delivers the batches).
func BenchmarkSink(b *testing.B) {
	recs, cuts, total := benchRecords(b)
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
			st := &benchStore{objects: map[string]int{}}
			fake := newFakeS3(b)
			fake.putObject = st.put
			// A buffer interval far beyond the run: every flush is cut by size.
			opts := append([]Option{WithBufferInterval(time.Hour)}, bc.opts...)
			s := newTestSink(b, fake, realClock{}, opts...)
			w := &benchWorker{b: b, perIter: len(recs), cuts: cuts}
			proc := s.NewProcessor(shard)
			ctx := context.Background()
			if err := proc.Initialize(ctx, consumer.InitInput{ShardID: shard, Start: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}, Preparer: w}); err != nil {
				b.Fatal(err)
			}
			// Stops the processor's goroutine when the benchmark fails early (a no-op after
			// Shutdown).
			b.Cleanup(func() { proc.LeaseLost(ctx) })
			// Each iteration hands over the same records under the next sequence numbers.
			// They are rewritten in place once the previous iteration's are all
			// acknowledged, when the processor no longer reads them.
			in := make([]consumer.Record, len(recs))
			copy(in, recs)

			iter := 0
			// next hands the processor the next iteration's records and returns once every
			// one is acknowledged.
			next := func() {
				for i := 0; i < len(in); i += benchBatch {
					if err := proc.ProcessRecords(ctx, w.batch(in[i:min(i+benchBatch, len(in))])); err != nil {
						b.Fatalf("ProcessRecords: %v", err)
					}
				}
				select {
				case <-w.await(iter * len(in)):
				case <-time.After(time.Minute): // a guard against a hang, not a wait
					w.mu.Lock()
					acked := w.acked
					w.mu.Unlock()
					b.Fatalf("iteration %d: %d of %d records acknowledged after a minute", iter, acked, iter*len(in))
				}
			}
			renumber := func() {
				for i := range in {
					in[i].SequenceNumber = testlogs.Seq(uint64(iter*len(in) + i + 1))
				}
				iter++
			}
			// One iteration untimed, so that the heap and the processor's buffers have
			// grown to their steady size.
			renumber()
			next()

			b.SetBytes(int64(total))
			b.ReportAllocs()
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				renumber()
				b.StartTimer()
				cpu0 := cpuTime(b)
				next()
				cpu += cpuTime(b) - cpu0
			}
			if err := proc.Shutdown(ctx); err != nil {
				b.Fatalf("Shutdown: %v", err)
			}
			w.mu.Lock()
			acked, prepared := w.acked, w.prepared
			w.mu.Unlock()
			st.mu.Lock()
			defer st.mu.Unlock()
			n := iter * len(recs) // with the warm-up
			if acked != n || prepared != iter*benchFlushes || st.archived != n || st.analytics != n || st.errored != 0 {
				b.Fatalf("%d iterations of %d records: %d acknowledged, %d archived, %d rolled up, %d errored, %d flushes; want %d, %d, %d, 0, %d",
					iter, len(recs), acked, st.archived, st.analytics, st.errored, prepared, n, n, n, iter*benchFlushes)
			}
			n = b.N * len(recs) // timed
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "ns/record")
			b.ReportMetric(float64(st.objects["logs"])/float64(iter), "archive-objects/op")
			b.ReportMetric(float64(st.archiveBytes)/float64(st.objects["logs"]), "bytes/archive-object")
			b.ReportMetric(float64(total*iter)/float64(st.archiveBytes), "ratio")
		})
	}
}

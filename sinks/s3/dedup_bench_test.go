package s3

import (
	"fmt"
	"testing"

	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/internal/testlogs"
)

// BenchmarkSinkDedup is the CPU cost of deduplication on the sink's build path: Sink.Build
// over 100,000 log records of one shard, in flushes of 10,000 (the state carried from flush
// to flush, as a processor carries it, and encoded after each, as the worker stores it with
// each checkpoint), every record with an identity from one of 100 producers — runs of 50
// records from one producer, as in an aggregate; each producer numbers its records over 4
// shards, of which this one sees a quarter; floors trail by 500 — and none a duplicate, so
// that dedup=on and dedup=off (WithoutDedup) encode the same records. It reports
// ns/record, the build's time per record on one goroutine (Build is synchronous).
func BenchmarkSinkDedup(b *testing.B) {
	const total, perFlush, producers = 100_000, 10_000, 100
	recs := testlogs.New(1).Records(shard, 1, total)
	names := make([]string, producers)
	for i := range names {
		names[i] = fmt.Sprintf("%032x", i*7919)
	}
	var next [producers]uint64
	p := 0
	for i := range recs {
		if i%50 == 0 {
			p = (p + 37) % producers
		}
		n := next[p]
		next[p] += 4
		recs[i].ID = kpl.Identity{Origin: names[p], Seq: n, Floor: n - min(n, 500)}
	}
	for _, enc := range []struct {
		name string
		cfg  encode.Config
	}{
		{"ndjson-gzip", encode.Config{}}, // the default
		{"parquet-zstd", encode.Config{Format: encode.Parquet, Compression: encode.CompressionZstd}},
	} {
		for _, dedup := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/dedup=%s", enc.name, map[bool]string{true: "on", false: "off"}[dedup]), func(b *testing.B) {
				opts := []Option{WithEncoding(enc.cfg)}
				if !dedup {
					opts = append(opts, WithoutDedup())
				}
				s := newTestSink(b, newFakeS3(b), realClock{}, opts...)
				b.ReportAllocs()
				stateBytes := 0
				for b.Loop() {
					st := s.NewState(nil, nil)
					if (st != nil) != dedup {
						b.Fatalf("NewState = %v with dedup %v", st, dedup)
					}
					for i := 0; i < total; i += perFlush {
						o, err := s.Build(shard, recs[i:i+perFlush], st)
						if err != nil {
							b.Fatal(err)
						}
						if o.Archived() != perFlush || o.Deduplicated() != 0 {
							b.Fatalf("flush at %d: %d archived, %d deduplicated, want %d and 0", i, o.Archived(), o.Deduplicated(), perFlush)
						}
						if st != nil {
							stateBytes = len(st.Encode())
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*total), "ns/record")
				if dedup {
					b.ReportMetric(float64(stateBytes), "state-bytes")
				}
			})
		}
	}
}

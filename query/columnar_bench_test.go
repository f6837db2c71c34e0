package query

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kinlog/kinlog/sinks/encode"
)

// benchArchive is an in-memory archive of hours×objects objects of n records each, the
// records of BenchmarkRunScan, each object's records in time order as a shard delivers
// them, written with cfg.
func benchArchive(tb testing.TB, cfg encode.Config, hours, objects, n int) (*fakeS3, int, int64) {
	tb.Helper()
	api := &fakeS3{objects: map[string][]byte{}}
	r := rand.New(rand.NewPCG(3, 4))
	levels := []string{"INFO", "INFO", "INFO", "WARN", "ERROR"}
	base := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	enc, err := encode.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	total := 0
	var stored int64
	for h := range hours {
		for o := range objects {
			bld := enc.NewObject()
			for i := range n {
				t := base.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Hour/time.Duration(n) + time.Duration(r.IntN(2000))*time.Millisecond)
				line := fmt.Appendf(nil, `{"time":%q,"level":%q,"service":"svc-%d","msg":"GET /api/v1/items/%d served","latency_ms":%d,"status":%d,"user":"u%d","trace":"%016x"}`,
					t.Format(time.RFC3339Nano), levels[r.IntN(len(levels))], r.IntN(8), r.IntN(100000), r.IntN(900), 200+r.IntN(4)*100, r.IntN(5000), r.Uint64())
				var d encode.Doc
				_ = d.Parse(line)
				if err := bld.Add(&encode.Meta{Shard: "shardId-000000000000", Sequence: fmt.Sprint(i + 1), ArrivalTime: t}, line, &d); err != nil {
					tb.Fatal(err)
				}
				total++
			}
			body, err := bld.Finish(nil)
			if err != nil {
				tb.Fatal(err)
			}
			api.objects[fmt.Sprintf("logs/dt=2026-11-22/hour=%02d/s-%d%s", h, o, enc.Extension())] = body
			stored += int64(len(body))
		}
	}
	return api, total, stored
}

// BenchmarkCountParquet measures filtered counts over an in-memory Parquet archive of 1M
// records (4 hours of 2 objects): rows/s per core is rows / (CPU time).
func BenchmarkCountParquet(b *testing.B) {
	api, n, stored := benchArchive(b, encode.Config{Format: encode.Parquet}, 4, 2, 125000)
	b.Logf("%d records in %d bytes of Parquet zstd", n, stored)
	from := time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)
	for _, bc := range []struct {
		name string
		req  Request
	}{
		{"level", Request{Where: mustFilter(b, "level=ERROR")}},
		{"level+service", Request{Where: mustFilter(b, "level=ERROR", "service=svc-3")}},
		{"level+latency", Request{Where: mustFilter(b, "level=ERROR", "latency_ms>500")}},
		{"time+level", Request{Where: mustFilter(b, "level=ERROR"), From: from, To: from.Add(time.Hour), TimeFields: []string{"time"}}},
		{"time 10min+level", Request{Where: mustFilter(b, "level=ERROR"), From: from, To: from.Add(10 * time.Minute), TimeFields: []string{"time"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := bc.req
			req.Bucket, req.Parallelism = "b", 1
			b.SetBytes(stored)
			b.ReportAllocs()
			cpu0 := cpuTime()
			var st Stats
			for b.Loop() {
				var err error
				if st, err = Count(context.Background(), api, req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/(cpuTime()-cpu0).Seconds()/1e6, "Mrows/cpu-s")
			b.ReportMetric(float64(st.RowGroupsPruned)/float64(max(st.RowGroups, 1)), "pruned-share")
		})
	}
	// The same filter through Run, records built for the rows that match (what printing
	// them costs beside the scan).
	b.Run("level/records", func(b *testing.B) {
		req := Request{Bucket: "b", Parallelism: 1, Order: OrderNone, Where: mustFilter(b, "level=ERROR")}
		b.SetBytes(stored)
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := Run(context.Background(), api, req, func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/(cpuTime()-cpu0).Seconds()/1e6, "Mrows/cpu-s")
	})
}

func mustFilter(tb testing.TB, conds ...string) Filter {
	tb.Helper()
	f, err := ParseFilter(conds)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

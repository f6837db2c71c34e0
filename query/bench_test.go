package query

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kinlog/kinlog/sinks/encode"
)

// BenchmarkRunScan measures a filtered scan of an in-memory archive (no network): 4 hours
// of 4 gzip NDJSON objects of 20,000 records, the filter of BenchmarkIntegrationScan.
func BenchmarkRunScan(b *testing.B) {
	api := &fakeS3{objects: map[string][]byte{}}
	r := rand.New(rand.NewPCG(3, 4))
	levels := []string{"INFO", "INFO", "INFO", "WARN", "ERROR"}
	base := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	enc, _ := encode.New(encode.Config{})
	n := 0
	var stored int64
	for h := range 4 {
		for o := range 4 {
			bld := enc.NewObject()
			for i := range 20000 {
				t := base.Add(time.Duration(h)*time.Hour + time.Duration(r.IntN(3600))*time.Second)
				line := fmt.Appendf(nil, `{"time":%q,"level":%q,"service":"svc-%d","msg":"GET /api/v1/items/%d served","latency_ms":%d,"status":%d,"user":"u%d","trace":"%016x"}`,
					t.Format(time.RFC3339), levels[r.IntN(len(levels))], r.IntN(8), r.IntN(100000), r.IntN(900), 200+r.IntN(4)*100, r.IntN(5000), r.Uint64())
				var d encode.Doc
				_ = d.Parse(line)
				_ = bld.Add(&encode.Meta{Shard: "s", Sequence: fmt.Sprint(i + 1)}, line, &d)
				n++
			}
			body, _ := bld.Finish(nil)
			api.objects[fmt.Sprintf("logs/dt=2026-11-22/hour=%02d/s-%d%s", h, o, enc.Extension())] = body
			stored += int64(len(body))
		}
	}
	where, err := ParseFilter([]string{"level=ERROR", "latency_ms>500"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(stored)
	b.ReportAllocs()
	for b.Loop() {
		api.fetched = nil
		st, err := Run(context.Background(), api, Request{Bucket: "b", Where: where}, func([]byte) error { return nil })
		if err != nil || st.RecordsScanned != int64(n) {
			b.Fatalf("%+v, %v", st, err)
		}
	}
}

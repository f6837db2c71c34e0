package rollup

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kinlog/kinlog/sinks/encode"
)

var t0 = time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)

func doc(t testing.TB, s string) *encode.Doc {
	t.Helper()
	var d encode.Doc
	_ = d.Parse([]byte(s))
	return &d
}

func TestAggregatorGroups(t *testing.T) {
	a, err := NewAggregator(Config{Numeric: []string{"latency_ms", "http.bytes"}})
	if err != nil {
		t.Fatal(err)
	}
	recs := []struct {
		at time.Duration
		s  string
	}{
		{0, `{"service":"api","level":"INFO","status":200,"latency_ms":10}`},
		{10 * time.Second, `{"service":"api","level":"INFO","status":200,"latency_ms":30,"http":{"bytes":5}}`},
		{59 * time.Second, `{"service":"api","level":"ERROR","status":500,"latency_ms":"slow"}`},
		{60 * time.Second, `{"service":"api","level":"INFO","status":200,"latency_ms":-2.5}`},
		{61 * time.Second, `{"service":"api","level":"INFO"}`},
		{62 * time.Second, `not json`},
		{63 * time.Second, `{"service":{"nested":1},"level":"INFO"}`},
	}
	for _, r := range recs {
		a.Add(t0.Add(r.at), len(r.s), doc(t, r.s))
	}
	rows := a.Rows()
	var got []string
	for _, r := range rows {
		s := fmt.Sprintf("%s %v n=%d b=%d", r.Start.Format("15:04:05"), r.Dims, r.Count, r.Bytes)
		for _, f := range r.Fields {
			s += fmt.Sprintf(" %s{n=%d sum=%g min=%g max=%g}", f.Name, f.Count, f.Sum, f.Min, f.Max)
		}
		got = append(got, s)
	}
	want := []string{
		"10:00:00 [{level ERROR} {service api} {status 500}] n=1 b=" + fmt.Sprint(len(recs[2].s)),
		"10:00:00 [{level INFO} {service api} {status 200}] n=2 b=" + fmt.Sprint(len(recs[0].s)+len(recs[1].s)) +
			" http.bytes{n=1 sum=5 min=5 max=5} latency_ms{n=2 sum=40 min=10 max=30}",
		"10:01:00 [] n=1 b=" + fmt.Sprint(len(recs[5].s)),
		"10:01:00 [{level INFO}] n=1 b=" + fmt.Sprint(len(recs[6].s)),
		"10:01:00 [{level INFO} {service api}] n=1 b=" + fmt.Sprint(len(recs[4].s)),
		"10:01:00 [{level INFO} {service api} {status 200}] n=1 b=" + fmt.Sprint(len(recs[3].s)) +
			" latency_ms{n=1 sum=-2.5 min=-2.5 max=-2.5}",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rows:\n%s\nwant:\n%s", join(got), join(want))
	}
}

// TestAggregatorKeys checks what makes two records share a row: the same text of each
// dimension (escaped or not, string or number), and only that.
func TestAggregatorKeys(t *testing.T) {
	a, err := NewAggregator(Config{Dimensions: []string{"b", "a"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`{"a":"x","b":"1"}`, `{"a":"\u0078","b":1}`, // one row: a=x b=1
		`{"a":"x\u0000b=1"}`, `{"a":"x\u0000b","b":"1"}`, // values with NUL and '=': distinct rows
		`{"b":"x"}`, `{"a":"x"}`, // the same value under different dimensions
	} {
		a.Add(t0, 1, doc(t, s))
	}
	var got []string
	for _, r := range a.Rows() {
		got = append(got, fmt.Sprintf("%q n=%d", r.Dims, r.Count))
	}
	want := []string{
		`[{"a" "x"}] n=1`,
		`[{"a" "x"} {"b" "1"}] n=2`,
		`[{"a" "x\x00b"} {"b" "1"}] n=1`,
		`[{"a" "x\x00b=1"}] n=1`,
		`[{"b" "x"}] n=1`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rows:\n%s\nwant:\n%s", join(got), join(want))
	}
}

// BenchmarkAggregatorAdd is the rollup cost per record with the default dimensions.
func BenchmarkAggregatorAdd(b *testing.B) {
	a, err := NewAggregator(Config{})
	if err != nil {
		b.Fatal(err)
	}
	docs := make([]*encode.Doc, 64)
	for i := range docs {
		docs[i] = doc(b, fmt.Sprintf(`{"time":"2026-03-14T10:00:00Z","level":"INFO","msg":"m","service":"svc-%d","status":%d,"latency_ms":12.5}`, i%4, 200+i%3))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a.Add(t0, 100, docs[i%len(docs)])
		i++
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for _, x := range s {
		b.WriteString("  " + x + "\n")
	}
	return b.String()
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{Window: 7 * time.Minute},
		{Window: 500 * time.Millisecond},
		{Window: 2 * time.Hour},
		{Dimensions: []string{"a", "a"}},
		{RelativeAccuracy: 1.5},
	} {
		if _, err := NewAggregator(c); err == nil {
			t.Errorf("NewAggregator(%+v) accepted an invalid config", c)
		}
	}
	for _, w := range []time.Duration{time.Second, 15 * time.Second, time.Minute, 5 * time.Minute, time.Hour} {
		if _, err := NewAggregator(Config{Window: w}); err != nil {
			t.Errorf("window %v: %v", w, err)
		}
	}
}

// values returns n log-normally distributed latencies (heavy tail, like real ones).
func values(seed uint64, n int) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float64, n)
	for i := range v {
		v[i] = math.Exp(r.NormFloat64()*1.2 + 3)
	}
	return v
}

func TestQuantilesWithinRelativeAccuracy(t *testing.T) {
	const n = 20000
	vals := values(1, n)
	a, _ := NewAggregator(Config{Numeric: []string{"latency_ms"}, Dimensions: []string{"service"}})
	for i, v := range vals {
		// All in one window.
		a.Add(t0.Add(time.Duration(i)*time.Millisecond), 10, doc(t, fmt.Sprintf(`{"service":"api","latency_ms":%v}`, v)))
	}
	rows := a.Rows()
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	checkQuantiles(t, rows[0].Field("latency_ms"), vals)
}

func checkQuantiles(t *testing.T, num *Numeric, vals []float64) {
	t.Helper()
	sorted := slices.Clone(vals)
	slices.Sort(sorted)
	if num.Count != int64(len(vals)) || num.Min != sorted[0] || num.Max != sorted[len(sorted)-1] {
		t.Fatalf("count/min/max = %d/%g/%g, want %d/%g/%g", num.Count, num.Min, num.Max, len(vals), sorted[0], sorted[len(sorted)-1])
	}
	var sum float64
	for _, v := range vals {
		sum += v
	}
	if math.Abs(num.Sum-sum) > 1e-9*math.Abs(sum) {
		t.Fatalf("sum = %g, want %g", num.Sum, sum)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		est, err := num.Quantile(q)
		if err != nil {
			t.Fatal(err)
		}
		rank := q * float64(len(sorted)-1)
		lo, hi := sorted[int(math.Floor(rank))], sorted[int(math.Ceil(rank))]
		acc := DefaultRelativeAccuracy
		if est < lo*(1-acc) || est > hi*(1+acc) {
			t.Errorf("p%g = %g, exact in [%g, %g]: outside relative accuracy %g", q*100, est, lo, hi, acc)
		}
	}
}

func TestMarshalRoundTripAndMerge(t *testing.T) {
	vals := values(2, 9000)
	cfg := Config{Numeric: []string{"latency_ms"}, Dimensions: []string{"service", "level"}}
	whole, _ := NewAggregator(cfg)
	parts := []*Aggregator{}
	for range 3 {
		p, _ := NewAggregator(cfg)
		parts = append(parts, p)
	}
	svcs := []string{"api", "db"}
	for i, v := range vals {
		s := fmt.Sprintf(`{"service":%q,"level":"INFO","latency_ms":%v}`, svcs[i%2], v)
		at := t0.Add(time.Duration(i) * 20 * time.Millisecond) // spans 3 minutes
		whole.Add(at, len(s), doc(t, s))
		parts[i%3].Add(at, len(s), doc(t, s))
	}
	// Each part goes through an object, as the sink writes them and the query tool reads them.
	var all []Row
	for _, p := range parts {
		obj, err := EncodeObject(p.Rows())
		if err != nil {
			t.Fatal(err)
		}
		again, _ := EncodeObject(p.Rows())
		if !bytes.Equal(obj, again) {
			t.Fatal("encoding the same rows twice gave different bytes")
		}
		rows, err := DecodeObject(obj)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, rows...)
	}
	merged, err := Merge(all, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := whole.Rows()
	if len(merged) != len(want) {
		t.Fatalf("%d merged rows, want %d", len(merged), len(want))
	}
	for i := range want {
		m, w := merged[i], want[i]
		if !m.Start.Equal(w.Start) || m.Window != w.Window || !slices.Equal(m.Dims, w.Dims) || m.Count != w.Count || m.Bytes != w.Bytes {
			t.Fatalf("row %d = %+v, want %+v", i, m, w)
		}
		mf, wf := m.Field("latency_ms"), w.Field("latency_ms")
		if mf.Count != wf.Count || mf.Min != wf.Min || mf.Max != wf.Max || math.Abs(mf.Sum-wf.Sum) > 1e-9*math.Abs(wf.Sum) {
			t.Fatalf("row %d latency = %+v, want %+v", i, mf, wf)
		}
		for _, q := range []float64{0.5, 0.9, 0.99} {
			a, _ := mf.Quantile(q)
			b, _ := wf.Quantile(q)
			if a != b {
				t.Errorf("row %d p%g: merged %g, whole %g (sketch merging must be exact)", i, q*100, a, b)
			}
		}
	}

	t.Run("coarser window and fewer dimensions", func(t *testing.T) {
		hourly, err := Merge(all, MergeOptions{Window: time.Hour, By: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		if len(hourly) != 1 || hourly[0].Count != int64(len(vals)) || len(hourly[0].Dims) != 0 || !hourly[0].Start.Equal(t0) {
			t.Fatalf("hourly = %+v", hourly)
		}
		checkQuantiles(t, hourly[0].Field("latency_ms"), vals)
		bySvc, _ := Merge(all, MergeOptions{Window: time.Hour, By: []string{"service"}})
		if len(bySvc) != 2 || bySvc[0].Count+bySvc[1].Count != int64(len(vals)) {
			t.Fatalf("by service = %+v", bySvc)
		}
	})
	t.Run("incompatible window", func(t *testing.T) {
		if _, err := Merge(all, MergeOptions{Window: 90 * time.Second}); !errors.Is(err, ErrIncompatible) {
			t.Fatalf("Merge with a 90s window over 1m rows = %v, want ErrIncompatible", err)
		}
	})
	t.Run("incompatible sketches", func(t *testing.T) {
		other, _ := NewAggregator(Config{Numeric: []string{"latency_ms"}, Dimensions: []string{"service", "level"}, RelativeAccuracy: 0.05})
		s := `{"service":"api","level":"INFO","latency_ms":3}`
		other.Add(t0, len(s), doc(t, s))
		if _, err := Merge(append(slices.Clone(all), other.Rows()...), MergeOptions{}); !errors.Is(err, ErrIncompatible) {
			t.Fatalf("Merge of sketches with different accuracies = %v, want ErrIncompatible", err)
		}
	})
}

func TestUnmarshalErrors(t *testing.T) {
	for _, in := range []string{
		`{"start":"yesterday","window_s":60,"dims":{},"count":1,"bytes":1}`,
		`{"start":"2026-03-14T10:00:00Z","window_s":0,"dims":{},"count":1,"bytes":1}`,
		`{"start":"2026-03-14T10:00:00Z","window_s":60,"dims":{},"count":1,"bytes":1,"fields":{"x":{"sketch":"!!"}}}`,
		`{"start":"2026-03-14T10:00:00Z","window_s":60,"dims":{},"count":1,"bytes":1,"fields":{"x":{"sketch":"AAAA"}}}`,
		`not json`,
	} {
		if _, err := Unmarshal(bytes.NewReader([]byte(in))); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", in)
		}
	}
	if _, err := DecodeObject([]byte("not gzip")); err == nil {
		t.Error("DecodeObject of garbage succeeded")
	}
}

func ExampleMerge() {
	cfg := Config{Dimensions: []string{"level"}}
	a, _ := NewAggregator(cfg)
	b, _ := NewAggregator(cfg)
	var d encode.Doc
	for i, line := range []string{`{"level":"INFO"}`, `{"level":"ERROR"}`, `{"level":"INFO"}`} {
		_ = d.Parse([]byte(line))
		agg := a
		if i == 2 {
			agg = b // another batch
		}
		agg.Add(time.Date(2026, 3, 14, 10, 0, i, 0, time.UTC), len(line), &d)
	}
	rows, _ := Merge(append(a.Rows(), b.Rows()...), MergeOptions{})
	for _, r := range rows {
		lvl, _ := r.Dim("level")
		fmt.Println(r.Start.Format("15:04"), lvl, r.Count)
	}
	// Output:
	// 10:00 ERROR 1
	// 10:00 INFO 2
}

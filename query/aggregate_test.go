package query

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/rollup"
)

func rollupRows(t *testing.T, recs ...string) []rollup.Row {
	t.Helper()
	agg, err := rollup.NewAggregator(rollup.Config{Numeric: []string{"latency_ms"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		var d encode.Doc
		if err := d.Parse([]byte(r)); err != nil {
			t.Fatal(err)
		}
		ts, _, ok := encode.TimeOf(&d, encode.DefaultFields.Time, encode.TimeAuto)
		if !ok {
			t.Fatalf("no time in %s", r)
		}
		agg.Add(ts, len(r), &d)
	}
	return agg.Rows()
}

func TestAggregates(t *testing.T) {
	rows := rollupRows(t,
		rec("2026-11-22T10:00:10Z", "INFO", "a", 10),
		rec("2026-11-22T10:00:20Z", "INFO", "b", 20),
		rec("2026-11-22T10:01:00Z", "ERROR", "c", 1000),
		rec("2026-11-22T10:03:00Z", "WARN", "d", 30),
		`{"time":"2026-11-22T10:03:30Z","level":"INFO","status":503,"latency_ms":40}`,
	)
	groups := CountBy(rows, "level")
	if got := fmt.Sprint(groups); !strings.HasPrefix(got, "[{INFO 3 ") || !strings.Contains(got, "{ERROR 1 ") || !strings.Contains(got, "{WARN 1 ") {
		t.Fatalf("CountBy(level) = %v", got)
	}
	if g := CountBy(rows, "status"); g[0].Value != "(none)" || g[0].Count != 4 || g[1].Value != "503" {
		t.Fatalf("CountBy(status) = %v", g)
	}
	if !HasDim(rows, "level") || HasDim(rows, "region") {
		t.Fatal("HasDim")
	}
	s, err := Summarize(rows)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 5 || s.Errors != 2 || len(s.Fields) != 1 {
		t.Fatalf("Summarize = %+v", s)
	}
	f := s.Fields[0]
	if f.Count != 5 || f.Sum != 1100 || f.Min != 10 || f.Max != 1000 {
		t.Fatalf("latency summary = %+v", f)
	}
	if p50, err := f.Quantile(0.5); err != nil || p50 < 30*0.99 || p50 > 30*1.01 {
		t.Fatalf("p50 = %v, %v; want 30 within 1%%", p50, err)
	}
	h := Histogram(rows, time.Minute)
	var counts []string
	for _, b := range h {
		counts = append(counts, fmt.Sprint(b.Count))
	}
	if strings.Join(counts, ",") != "2,1,0,2" || !h[0].Start.Equal(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("histogram = %v", h)
	}
	var buf bytes.Buffer
	RenderHistogram(&buf, h, 4)
	want := "2026-11-22 10:00  ████ 2\n2026-11-22 10:01  ██   1\n2026-11-22 10:02       0\n2026-11-22 10:03  ████ 2\n"
	if buf.String() != want {
		t.Fatalf("rendered\n%s\nwant\n%s", buf.String(), want)
	}
	if w := HistogramWidth(time.Time{}, time.Time{}.Add(3*time.Hour)); w != 15*time.Minute {
		t.Fatalf("HistogramWidth(3h) = %v, want 15m", w)
	}
}

// TestRollupsMatchScan checks that stored rollups and a scan of the same records answer a
// count the same way, and that ReadRollups keeps only windows in the range.
func TestRollupsMatchScan(t *testing.T) {
	api := testArchive(t)
	rows := rollupRows(t,
		rec("2026-11-22T09:10:00Z", "INFO", "a", 10), rec("2026-11-22T09:50:00Z", "ERROR", "b", 900),
		rec("2026-11-22T10:05:00Z", "ERROR", "c", 1200), rec("2026-11-22T10:20:00Z", "INFO", "d", 5))
	obj, err := rollup.EncodeObject(rows)
	if err != nil {
		t.Fatal(err)
	}
	api.objects["analytics/dt=2026-11-22/hour=09/s-0-1"+rollup.Extension] = obj
	from := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	to := time.Date(2026, 11, 22, 10, 10, 0, 0, time.UTC)
	stored, st, err := ReadRollups(context.Background(), api, "b", "", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if st.ObjectsRead != 1 {
		t.Fatalf("stats %+v", st)
	}
	scanned, _, err := ScanRollup(context.Background(), testArchive(t), Request{Bucket: "b", From: from, To: to}, rollup.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// The scan also sees the raw record of hour 10 (no time of its own) and record d
	// (10:20 is outside), so compare only ERROR counts, which both must give as b and c.
	if a, b := fmt.Sprint(CountBy(stored, "level")), fmt.Sprint(CountBy(scanned, "level")); !strings.Contains(a, "{ERROR 2 ") || !strings.Contains(b, "{ERROR 2 ") {
		t.Fatalf("stored %s, scanned %s", a, b)
	}
	if s, _ := Summarize(stored); s.Records != 2 {
		t.Fatalf("stored rows in range: %d records, want 2 (b and c)", s.Records)
	}
}

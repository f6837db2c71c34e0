package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// archiveObject encodes records with cfg as the sink does and returns the object's key
// (the encoder's extension after name) and bytes.
func archiveObject(t *testing.T, cfg encode.Config, name string, recs ...string) (string, []byte) {
	t.Helper()
	enc, err := encode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return name + enc.Extension(), encodeObject(t, cfg, recs...)
}

// TestQueryReadsEveryArchiveExtension checks that the query reads every object the encoder
// writes, whatever its encoding, including records-as-received objects (.raw, .raw.gz, …),
// and nothing else.
func TestQueryReadsEveryArchiveExtension(t *testing.T) {
	recs := []string{`{"time":"2026-11-22T10:00:00Z","msg":"a"}`, `{"time":"2026-11-22T10:00:01Z","msg":"b"}`}
	var cfgs []encode.Config
	for _, c := range []encode.Compression{encode.CompressionGzip, encode.CompressionZstd, encode.CompressionSnappy, encode.CompressionNone} {
		cfgs = append(cfgs,
			encode.Config{Compression: c},
			encode.Config{Compression: c, Framing: encode.FramingRaw},
			encode.Config{Format: encode.Parquet, Compression: c})
	}
	for _, cfg := range cfgs {
		enc, err := encode.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(strings.TrimPrefix(enc.Extension(), "."), func(t *testing.T) {
			data := recs
			if cfg.Framing == encode.FramingRaw {
				// Records as received, delimited by their producer.
				data = []string{recs[0] + "\n", recs[1] + "\n"}
			}
			key, body := archiveObject(t, cfg, "logs/dt=2026-11-22/hour=10/s-shardId-000000000000-1-0", data...)
			api := &fakeS3{objects: map[string][]byte{
				key: body,
				"logs/dt=2026-11-22/hour=10/s-shardId-000000000000-1-0" + rollup.Extension: []byte("not an archive object"),
				"logs/dt=2026-11-22/hour=10/notes.txt":                                     []byte("not an archive object"),
			}}
			got, st := runQuery(t, api, Request{Bucket: "b"})
			if strings.Join(got, "\n") != strings.Join(recs, "\n") {
				t.Fatalf("%s: records\n%s\nwant\n%s", key, strings.Join(got, "\n"), strings.Join(recs, "\n"))
			}
			if st.ObjectsListed != 1 {
				t.Fatalf("%s: %d objects listed, want 1 (rollups and other files are not archive objects)", key, st.ObjectsListed)
			}
		})
	}
}

// TestQueryFieldPathRule checks that filters, projections and count-by scans find a dotted
// field the way the sink's rollups and partitioning do (encode.Doc.Lookup): a member whose
// name is the whole path, or the path through nested objects.
func TestQueryFieldPathRule(t *testing.T) {
	recs := []string{
		`{"time":"2026-11-22T10:00:00Z","http.status":500,"msg":"flat"}`,
		`{"time":"2026-11-22T10:00:01Z","http":{"status":500},"msg":"nested"}`,
		`{"time":"2026-11-22T10:00:02Z","http":{"status":200},"msg":"ok"}`,
	}
	api := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.json.gz": encodeObject(t, encode.Config{}, recs...)}}
	where, err := ParseFilter([]string{"http.status=500"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := runQuery(t, api, Request{Bucket: "b", Where: where})
	if len(got) != 2 || !strings.Contains(got[0], `"flat"`) || !strings.Contains(got[1], `"nested"`) {
		t.Fatalf("--where http.status=500 matched %q, want the flat and the nested record", got)
	}
	if where, _ = ParseFilter([]string{"http.status>=500"}); len(mustRun(t, api, Request{Bucket: "b", Where: where})) != 2 {
		t.Fatal("--where http.status>=500 did not match both records")
	}
	if where, _ = ParseFilter([]string{"http.status missing"}); len(mustRun(t, api, Request{Bucket: "b", Where: where})) != 0 {
		t.Fatal("--where 'http.status missing' matched a record")
	}

	var buf bytes.Buffer
	w, err := NewWriter(&buf, NDJSON, []string{"msg", "http.status"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := `{"msg":"flat","http.status":500}` + "\n" + `{"msg":"nested","http.status":500}` + "\n" + `{"msg":"ok","http.status":200}` + "\n"
	if buf.String() != want {
		t.Fatalf("--select msg,http.status:\n%s\nwant\n%s", buf.String(), want)
	}

	// A count by the field from a scan equals what the sink's rollups count.
	cfg := rollup.Config{Dimensions: []string{"http.status"}}
	scanned, _, err := ScanRollup(context.Background(), api, Request{Bucket: "b"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	agg, _ := rollup.NewAggregator(cfg)
	for _, r := range recs {
		var d encode.Doc
		_ = d.Parse([]byte(r))
		ts, _, _ := encode.TimeOf(&d, encode.DefaultFields.Time, encode.TimeAuto)
		agg.Add(ts, len(r), &d)
	}
	if s, r := fmt.Sprint(CountBy(scanned, "http.status")), fmt.Sprint(CountBy(agg.Rows(), "http.status")); s != r || !strings.HasPrefix(s, "[{500 2 ") {
		t.Fatalf("count by http.status: scan %s, rollups %s", s, r)
	}
}

func mustRun(t *testing.T, api S3API, req Request) []string {
	t.Helper()
	got, _ := runQuery(t, api, req)
	return got
}

// sameRecords are the records TestQuerySameRecordsFromNDJSONAndParquet archives with both
// encodings: every kind of record the encoders treat differently.
var sameRecords = []string{
	`{"time":"2026-11-22T10:00:00.123Z","level":"INFO","service":"api","msg":"served","latency_ms":12.50,"big":12345678901234567890}`,
	"plain text, not JSON\n",
	"{\"level\":\"WARN\",\"msg\":\"bad \xff byte\",\"time\":\"2026-11-22T10:00:01Z\"}",
	"\xfe\xff binary, not UTF-8",
	`{"ts":1795341602000,"severity":"ERROR","http":{"status":500,"path":"/v1/x","headers":{"a":[1,2,{"b":null}]}},"message":"boom","tags":["x","y"]}`,
	`{"msg":"caf\u00e9 \"q\" \/ \u2028","time":"2026-11-22T12:00:03+02:00","n":-1.5e3}`,
	`{"a": 1, "msg": "spaced out", "b": [1, 2]}`,
	"{\n  \"time\": \"2026-11-22T10:00:04Z\",\n  \"msg\": \"pretty\"\n}\n",
	`{"level":5,"msg":{"k":[1,2]},"time":"2026-11-22T10:00:05.000000Z","ok":true}`,
	`42`,
	`"a bare string"`,
	`{"ts":1795341606.25,"msg":"float epoch seconds"}`,
	`{"time":"yesterday","timestamp":"2026-11-22T10:00:07.5Z","msg":"second time member"}`,
	`{"msg":"first","msg":"repeated","level":""}`,
	`{"kinesis":"mine","service":7,"app":"x"}`,
	`{}`,
	`{"\u0074ime":"2026-11-22T10:00:08Z","lev\u0065l":"escaped names"}`,
}

// TestQuerySameRecordsFromNDJSONAndParquet archives the same records with both encoders and
// checks that the query returns the same bytes for both, in archive order and in time
// order, with invalid UTF-8 replaced by U+FFFD and records that are not JSON objects as
// {"raw": …}.
func TestQuerySameRecordsFromNDJSONAndParquet(t *testing.T) {
	ndjson := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.json.gz": encodeObject(t, encode.Config{}, sameRecords...)}}
	parquet := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.parquet": encodeObject(t, encode.Config{Format: encode.Parquet}, sameRecords...)}}
	nd := strings.Join(mustRun(t, ndjson, Request{Bucket: "b"}), "\n")
	pq := strings.Join(mustRun(t, parquet, Request{Bucket: "b"}), "\n")
	if nd != pq {
		a, b := strings.Split(nd, "\n"), strings.Split(pq, "\n")
		for i := range max(len(a), len(b)) {
			if i >= len(a) || i >= len(b) || a[i] != b[i] {
				t.Errorf("record %d differs:\nndjson  %s\nparquet %s", i, at(a, i), at(b, i))
			}
		}
		t.FailNow()
	}
	for _, want := range []string{
		`{"time":"2026-11-22T10:00:00.123Z","level":"INFO","service":"api","msg":"served","latency_ms":12.50,"big":12345678901234567890}`,
		`{"raw":"plain text, not JSON"}`,
		`{"level":"WARN","msg":"bad ` + "\uFFFD" + ` byte","time":"2026-11-22T10:00:01Z"}`,
		`{"raw":"` + "\uFFFD\uFFFD" + ` binary, not UTF-8"}`,
		`{"msg":"café \"q\" / \u2028","time":"2026-11-22T12:00:03+02:00","n":-1.5e3}`,
		`{"a":1,"msg":"spaced out","b":[1,2]}`,
		`{"raw":"42"}`,
		`{"ts":1795341606.25,"msg":"float epoch seconds"}`,
		`{"msg":"first","msg":"repeated","level":""}`,
		`{"kinesis":"mine","service":7,"app":"x"}`,
		`{}`,
		`{"time":"2026-11-22T10:00:08Z","level":"escaped names"}`,
	} {
		if !strings.Contains("\n"+nd+"\n", "\n"+want+"\n") {
			t.Errorf("missing record %s in\n%s", want, nd)
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}

// timeOrderArchive writes records spread over four hours, three objects per hour (one of
// them Parquet), each object's records in arrival order but overlapping the others in
// time, some records timed a little before their hour (late arrivals). It returns the
// fake and the records' times in order of the records.
func timeOrderArchive(t *testing.T) (*fakeS3, []time.Time) {
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	api := &fakeS3{objects: map[string][]byte{}}
	var times []time.Time
	n := 0
	for h := range 4 {
		for o := range 3 {
			var recs []string
			for range 20 {
				ts := base.Add(time.Duration(h)*time.Hour + time.Duration(r.IntN(3600_000)-60_000)*time.Millisecond)
				if h == 0 && ts.Before(base) {
					ts = base
				}
				times = append(times, ts)
				recs = append(recs, fmt.Sprintf(`{"time":%q,"n":%d}`, ts.Format(time.RFC3339Nano), n))
				n++
			}
			cfg := encode.Config{}
			if o == 1 {
				cfg = encode.Config{Format: encode.Parquet}
			}
			key, body := archiveObject(t, cfg, fmt.Sprintf("logs/dt=2026-11-22/hour=%02d/s-shardId-00000000000%d-%d-0", 8+h, o, h*100+o), recs...)
			api.objects[key] = body
		}
	}
	return api, times
}

func recTime(t *testing.T, rec string) time.Time {
	t.Helper()
	var d encode.Doc
	if err := d.Parse([]byte(rec)); err != nil {
		t.Fatalf("%s: %v", rec, err)
	}
	ts, _, ok := encode.TimeOf(&d, []string{"time"}, encode.TimeAuto)
	if !ok {
		t.Fatalf("no time in %s", rec)
	}
	return ts
}

// TestQueryTimeOrderAscending checks that records come back in time order across objects
// and partitions by default, and that a limit gives the earliest records, reading only the
// first partitions.
func TestQueryTimeOrderAscending(t *testing.T) {
	api, times := timeOrderArchive(t)
	sorted := slices.Clone(times)
	slices.SortFunc(sorted, time.Time.Compare)
	got := mustRun(t, api, Request{Bucket: "b"})
	if len(got) != len(times) {
		t.Fatalf("%d records, want %d", len(got), len(times))
	}
	for i, rec := range got {
		if ts := recTime(t, rec); !ts.Equal(sorted[i]) {
			t.Fatalf("record %d at %v, want %v (not in time order)", i, ts, sorted[i])
		}
	}
	api.fetched = nil
	got, st := runQuery(t, api, Request{Bucket: "b", Limit: 5, Parallelism: 1})
	if len(got) != 5 {
		t.Fatalf("--limit 5: %d records", len(got))
	}
	for i, rec := range got {
		if ts := recTime(t, rec); !ts.Equal(sorted[i]) {
			t.Fatalf("--limit 5: record %d at %v, want %v", i, ts, sorted[i])
		}
	}
	if st.ObjectsRead > 6 {
		t.Errorf("--limit 5 read %d of 12 objects (%v); the earliest partition holds them", st.ObjectsRead, api.fetched)
	}
}

// TestQueryTimeOrderDescending checks newest-first order: the exact reverse of the
// default, and a limit gives the latest records, reading only the last partitions.
func TestQueryTimeOrderDescending(t *testing.T) {
	api, times := timeOrderArchive(t)
	asc := mustRun(t, api, Request{Bucket: "b"})
	desc := mustRun(t, api, Request{Bucket: "b", Order: OrderDesc})
	slices.Reverse(desc)
	if !slices.Equal(asc, desc) {
		t.Fatal("newest first is not the reverse of oldest first")
	}
	sorted := slices.Clone(times)
	slices.SortFunc(sorted, func(a, b time.Time) int { return b.Compare(a) })
	api.fetched = nil
	got, st := runQuery(t, api, Request{Bucket: "b", Order: OrderDesc, Limit: 5, Parallelism: 1})
	if len(got) != 5 {
		t.Fatalf("--order desc --limit 5: %d records", len(got))
	}
	for i, rec := range got {
		if ts := recTime(t, rec); !ts.Equal(sorted[i]) {
			t.Fatalf("--order desc --limit 5: record %d at %v, want %v", i, ts, sorted[i])
		}
	}
	if st.ObjectsRead > 6 {
		t.Errorf("--order desc --limit 5 read %d of 12 objects (%v); the latest partition holds them", st.ObjectsRead, api.fetched)
	}
	for _, k := range api.fetched[:3] {
		if !strings.Contains(k, "hour=11/") {
			t.Errorf("newest first read %s before the last hour's objects", k)
		}
	}
}

// TestQueryTiesKeepArchiveOrder checks that records with the same time come back in
// archive order (objects by key, then records in order), reversed by OrderDesc.
func TestQueryTiesKeepArchiveOrder(t *testing.T) {
	ts := "2026-11-22T10:00:00Z"
	api := &fakeS3{objects: map[string][]byte{
		"logs/dt=2026-11-22/hour=10/s-1-1.json.gz": encodeObject(t, encode.Config{}, rec(ts, "INFO", "c", 0), rec(ts, "INFO", "d", 0)),
		"logs/dt=2026-11-22/hour=10/s-0-1.parquet": encodeObject(t, encode.Config{Format: encode.Parquet}, rec(ts, "INFO", "a", 0), rec(ts, "INFO", "b", 0)),
	}}
	if got := msgs(mustRun(t, api, Request{Bucket: "b"})); got != "abcd" {
		t.Errorf("ties oldest first: %q, want abcd", got)
	}
	if got := msgs(mustRun(t, api, Request{Bucket: "b", Order: OrderDesc})); got != "dcba" {
		t.Errorf("ties newest first: %q, want dcba", got)
	}
}

// TestQuerySortBuffer checks the bound on records held for sorting: a query needing more
// fails with ErrSortBuffer, while a limit, archive order and aggregates stay within it.
func TestQuerySortBuffer(t *testing.T) {
	api, times := timeOrderArchive(t)
	_, err := Run(context.Background(), api, Request{Bucket: "b", SortBuffer: 4 << 10}, func([]byte) error { return nil })
	if !errors.Is(err, ErrSortBuffer) || !strings.Contains(err.Error(), "partitions of 2026-11-22T08:00:00Z") {
		t.Fatalf("4 KiB to sort an hour of records: err = %v", err)
	}
	if got := mustRun(t, api, Request{Bucket: "b", SortBuffer: 4 << 10, Limit: 5}); len(got) != 5 {
		t.Fatalf("--limit 5 within 4 KiB: %d records", len(got))
	}
	if got := mustRun(t, api, Request{Bucket: "b", SortBuffer: 4 << 10, Order: OrderNone}); len(got) != len(times) {
		t.Fatalf("archive order: %d records, want %d", len(got), len(times))
	}
	rows, _, err := ScanRollup(context.Background(), api, Request{Bucket: "b", SortBuffer: 4 << 10}, rollup.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := Summarize(rows); s.Records != int64(len(times)) {
		t.Fatalf("aggregate over %d records, want %d", s.Records, len(times))
	}
	// Keys that do not say their time (a template without one) are sorted all at once.
	_, err = Run(context.Background(), api, Request{Bucket: "b", Prefix: "logs/", SortBuffer: 16 << 10}, func([]byte) error { return nil })
	if !errors.Is(err, ErrSortBuffer) || !strings.Contains(err.Error(), "keys do not say their time") {
		t.Fatalf("a template without time: err = %v", err)
	}
	if got := mustRun(t, api, Request{Bucket: "b", Prefix: "logs/"}); len(got) != len(times) {
		t.Fatalf("a template without time: %d records", len(got))
	}
}

// TestPartitionTimes checks reading partition time spans back from keys.
func TestPartitionTimes(t *testing.T) {
	at := func(y, mo, d, h, mi int) time.Time { return time.Date(y, time.Month(mo), d, h, mi, 0, 0, time.UTC) }
	tests := []struct {
		tpl, key   string
		start, end time.Time
		ok         bool
	}{
		{prefix.DefaultArchive, "logs/dt=2026-11-22/hour=10/s-shardId-0-1-0.json.gz", at(2026, 11, 22, 10, 0), at(2026, 11, 22, 11, 0), true},
		{prefix.DefaultArchive, "logs/dt=2026-11-22/x.json.gz", time.Time{}, time.Time{}, false},
		{"logs/!{timestamp:yyyy/MM/dd/HH}/", "logs/2026/01/31/23/o.parquet", at(2026, 1, 31, 23, 0), at(2026, 2, 1, 0, 0), true},
		{"logs/!{partitionKeyFromQuery:service}/!{timestamp:yyyy-MM-dd}/", "logs/api-v%2F2/2026-03-01/o.json", at(2026, 3, 1, 0, 0), at(2026, 3, 2, 0, 0), true},
		{"a/!{timestamp:yyyy}/!{timestamp:MMM}/!{timestamp:'d'd}/", "a/2026/Mar/d7/o.json", at(2026, 3, 7, 0, 0), at(2026, 3, 8, 0, 0), true},
		{"a/!{timestamp:yyyy-MM}/!{timestamp:yyyy-MM-dd-HH-mm}/", "a/2026-03/2026-03-07-10-05/o", at(2026, 3, 7, 10, 5), at(2026, 3, 7, 10, 6), true},
		{"a/!{timestamp:yyyy-MM}/!{timestamp:yyyy-MM-dd}/", "a/2026-04/2026-03-07/o", time.Time{}, time.Time{}, false},
		{"a/!{timestamp:yyyy}/!{timestamp:DDD}/", "a/2026/032/o", at(2026, 2, 1, 0, 0), at(2026, 2, 2, 0, 0), true},
	}
	for _, tt := range tests {
		pt, err := newPartitionTimes(prefix.MustParse(tt.tpl, prefix.AllowTimestamp|prefix.AllowQuery))
		if err != nil {
			t.Fatalf("%s: %v", tt.tpl, err)
		}
		s, e, ok := pt.span(tt.key)
		if ok != tt.ok || !s.Equal(tt.start) || !e.Equal(tt.end) {
			t.Errorf("%s: span(%s) = %v, %v, %v; want %v, %v, %v", tt.tpl, tt.key, s, e, ok, tt.start, tt.end, tt.ok)
		}
	}
	for _, tpl := range []string{"logs/", "logs/!{timestamp:HH}/", "logs/!{timestamp:yyyy-MM-dd}/!{timestamp:EEE}/", "logs/!{timestamp:yy/MM/dd}/"} {
		if _, err := newPartitionTimes(prefix.MustParse(tpl, prefix.AllowTimestamp|prefix.AllowQuery)); err == nil {
			t.Errorf("%s: keys read back, want an error", tpl)
		}
	}
}

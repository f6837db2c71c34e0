package query

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// columnarRecords are records of every shape the columnar read must answer for as the row
// path does: other member names for the columns, values of other types, nulls and empty
// strings, escapes, nested objects and dotted names, duplicate members, text that is not
// JSON, times in every form (and none), records with an identity member of their own.
var columnarRecords = []string{
	`{"time":"2026-11-22T10:00:01Z","level":"ERROR","service":"api","msg":"boom","latency_ms":750,"status":500}`,
	`{"time":"2026-11-22T10:00:02.5Z","level":"INFO","service":"api","msg":"ok","latency_ms":12,"status":200,"http":{"status":200,"method":"GET"}}`,
	`{"time":"2026-11-22T10:00:03+01:00","severity":"WARN","app":"worker","message":"slow","latency_ms":501}`,
	`{"ts":1795341604,"lvl":"ERROR","service_name":"billing","msg":"epoch seconds","status":"503"}`,
	`{"timestamp":1795341605123,"level":30,"service":"api","msg":"numeric level","latency_ms":1.5e2}`,
	`{"time":"2026-11-22T10:00:06Z","level":true,"service":"api","msg":{"a":1,"b":[1,2]},"latency_ms":-0}`,
	`{"time":"2026-11-22T10:00:07Z","level":null,"service":"","msg":"null level, empty service"}`,
	`{"time":"2026-11-22T10:00:08Z","level":"","msg":"empty level","http.status":404,"http":{"status":500}}`,
	`{"time":"2026-11-22T10:00:09.123456789Z","level":"DEBUG","msg":"nanoseconds stay an attribute"}`,
	`{"level":"ERROR","service":"api","msg":"no time at all","latency_ms":900}`,
	`plain text line that is not JSON`,
	`{"time":"2026-11-22T10:00:11Z","level":"INFO","msg":"escapes","k":"a\"b","path":"c:\\x","u":"\u00e9t\u00e9","esc\u0061ped":"key"}`,
	`{"time":"2026-11-22T10:00:12Z","level":"INFO","level":"SHADOW","msg":"duplicate level"}`,
	`{"time":"2026-11-22T10:00:13Z","level":"ERROR","msg":"own identity","kinlog_id":"mine","kinlog_id.x":1}`,
	`{ "time" : "2026-11-22T10:00:14Z" , "level" : "WARN" , "msg" : "spaced" , "nested" : { "a" : [ 1 , 2 ] } , "status" : 404 }`,
	`{"time":"2026-11-22T10:00:15Z","level":"ERROR","msg":"invalid utf-8 ` + "\xff\xfe" + `","k":"` + "\xc3" + `"}`,
	`{"time":"2026-11-22 10:00:16","level":"INFO","msg":"custom layout time"}`,
	`{"raw":"a member called raw","level":"INFO","time":"2026-11-22T10:00:17Z"}`,
	`{"time":"2026-11-22T10:00:18Z","level":"ERROR","service":"api","msg":"line\nbreak \u2028 sep","latency_ms":"600"}`,
	`{"time":"2026-11-22T11:30:00Z","level":"INFO","service":"late","msg":"next hour","latency_ms":100}`,
	`{"time":"2026-11-22T09:59:00Z","level":"ERROR","service":"early","msg":"before the hour","latency_ms":100}`,
	`{}`,
	`[1,2,3]`,
	`"a JSON string"`,
}

// columnarConds are conditions of every kind on every kind of member.
var columnarConds = func() []string {
	fields := []string{"level", "severity", "lvl", "service", "app", "msg", "message", "time", "ts", "timestamp", "status",
		"http.status", "http", "http.method", "latency_ms", "kinlog_id", "kinlog_id.x", "raw", "k", "path", "u", "escaped",
		"nested.a", "msg.a", "level.x", "absent"}
	var out []string
	for _, f := range fields {
		out = append(out, f+" exists", f+" missing", f+"=ERROR", f+"!=500", f+"~^[A-Z]+$", f+"!~o", f+">500", f+"<=200", f+"=")
	}
	out = append(out, "level=INFO", "level=30", "level=true", "service=api", "msg=ok", `k=a"b`, "path=c:\\x", "u=été",
		"raw=plain text line that is not JSON", "raw~text", "msg~\u2028", "k=\ufffd", "time=2026-11-22T10:00:01Z", "ts=1795341604",
		"timestamp>1795341605000", "kinlog_id=mine", "kinlog_id~^p", "latency_ms>=150", "latency_ms=0", "msg={\"a\":1,\"b\":[1,2]}",
		"nested~\\[1,2\\]", "level=SHADOW")
	return out
}()

// columnarMetas gives records identities, some none.
func columnarMeta(i int) encode.Meta {
	m := encode.Meta{Shard: "shardId-000000000000", Sequence: fmt.Sprint(100 + i), ArrivalTime: time.Date(2026, 11, 22, 10, 0, i, 0, time.UTC), PartitionKey: "pk"}
	if i%3 != 0 {
		m.ID = []byte(fmt.Sprintf("prod-1/%d", i))
	}
	return m
}

func columnarObject(t *testing.T, recs []string) []byte {
	t.Helper()
	enc, err := encode.New(encode.Config{Format: encode.Parquet})
	if err != nil {
		t.Fatal(err)
	}
	b := enc.NewObject()
	for i, r := range recs {
		var d encode.Doc
		data := []byte(r)
		_ = d.Parse(encode.Trim(data))
		m := columnarMeta(i)
		if err := b.Add(&m, data, &d); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rewrite writes the rows of a Parquet object again with another writer's schema and row
// groups of groupRows rows: older layouts, plain-encoded columns, many row groups.
func rewrite[T any](t *testing.T, obj []byte, groupRows int64, conv func(encode.Row) T) []byte {
	t.Helper()
	rows, err := encode.ReadParquet(obj)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]T, len(rows))
	for i, r := range rows {
		out[i] = conv(r)
	}
	var b bytes.Buffer
	var zero T
	w := parquet.NewGenericWriter[T](&b, parquet.NewSchema("log", parquet.SchemaOf(zero)), parquet.MaxRowsPerRowGroup(groupRows))
	if _, err := w.Write(out); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rowV110 is the schema of layout 1.1.0 (no kinlog_id); rowV100 that before the layout
// column.
type rowV110 struct {
	Time         *time.Time `parquet:"time,optional,timestamp(microsecond:utc)"`
	Level        string     `parquet:"level,optional,dict"`
	Service      string     `parquet:"service,optional,dict"`
	Message      string     `parquet:"message,optional"`
	Attributes   string     `parquet:"attributes,optional"`
	Shard        string     `parquet:"shard,dict"`
	Sequence     string     `parquet:"sequence"`
	SubSequence  int64      `parquet:"sub_sequence"`
	ArrivalTime  time.Time  `parquet:"arrival_time,timestamp(millisecond:utc)"`
	PartitionKey string     `parquet:"partition_key"`
	Layout       string     `parquet:"layout,optional,dict"`
}

type rowV100 struct {
	Time         *time.Time `parquet:"time,optional,timestamp(microsecond:utc)"`
	Level        string     `parquet:"level,optional,dict"`
	Service      string     `parquet:"service,optional,dict"`
	Message      string     `parquet:"message,optional"`
	Attributes   string     `parquet:"attributes,optional"`
	Shard        string     `parquet:"shard,dict"`
	Sequence     string     `parquet:"sequence"`
	SubSequence  int64      `parquet:"sub_sequence"`
	ArrivalTime  time.Time  `parquet:"arrival_time,timestamp(millisecond:utc)"`
	PartitionKey string     `parquet:"partition_key"`
}

// columnarArchives are the same records as sink-written objects (one and several per
// partition) and as files of older layouts and other writers.
func columnarArchives(t *testing.T) map[string]*fakeS3 {
	t.Helper()
	cur := columnarObject(t, columnarRecords)
	half := len(columnarRecords) / 2
	one := func(obj []byte) *fakeS3 {
		return &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.parquet": obj}}
	}
	return map[string]*fakeS3{
		"sink": one(cur),
		"sink, two objects": {objects: map[string][]byte{
			"logs/dt=2026-11-22/hour=10/s-0-1.parquet": columnarObject(t, columnarRecords[:half]),
			"logs/dt=2026-11-22/hour=11/s-0-2.parquet": columnarObject(t, columnarRecords[half:]),
		}},
		"row groups of 3, plain columns": one(rewrite(t, cur, 3, func(r encode.Row) encode.Row { return r })),
		"layout 1.1.0": one(rewrite(t, cur, 5, func(r encode.Row) rowV110 {
			return rowV110{r.Time, r.Level, r.Service, r.Message, r.Attributes, r.Shard, r.Sequence, r.SubSequence, r.ArrivalTime, r.PartitionKey, r.Layout}
		})),
		"before the layout column": one(rewrite(t, cur, 4, func(r encode.Row) rowV100 {
			return rowV100{r.Time, r.Level, r.Service, r.Message, r.Attributes, r.Shard, r.Sequence, r.SubSequence, r.ArrivalTime, r.PartitionKey}
		})),
	}
}

// rowPath is req with the columnar read turned off: every Parquet record decoded, then
// filtered.
func rowPath(req Request) Request {
	req.rowPath = true
	return req
}

func runAll(t *testing.T, api S3API, req Request) ([]string, Stats, error) {
	t.Helper()
	var got []string
	st, err := Run(context.Background(), api, req, func(rec []byte) error {
		got = append(got, string(rec))
		return nil
	})
	return got, st, err
}

// TestColumnarSameAsRowPath checks that the columnar read of Parquet objects gives what the
// row path gives (decode every record, then filter), for every kind of condition on every
// kind of member, with and without identities, in every order, with an exact time range,
// and on files of older layouts and other writers: the same records in the same order,
// the same counts, the same rollups.
func TestColumnarSameAsRowPath(t *testing.T) {
	from, to := time.Date(2026, 11, 22, 10, 0, 3, 0, time.UTC), time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)
	variants := []struct {
		name  string
		req   Request
		count bool // compare Count too (it ignores order and limit)
	}{
		{"archive order", Request{Order: OrderNone}, true},
		{"newest first, limit 3", Request{Order: OrderDesc, Limit: 3}, false},
		{"identities, by time, exact range", Request{Order: OrderAsc, KinlogID: true, From: from, To: to, TimeFields: []string{"time", "ts"}}, true},
		{"identities, exact range", Request{Order: OrderNone, KinlogID: true, From: from, To: to, TimeFields: []string{"timestamp", "time"}}, true},
	}
	for name, api := range columnarArchives(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, v := range variants {
				for _, cond := range append([]string{""}, columnarConds...) {
					req := v.req
					req.Bucket = "b"
					if cond != "" {
						req.Where = mustFilter(t, cond)
					}
					want, wantSt, wantErr := runAll(t, api, rowPath(req))
					got, gotSt, err := runAll(t, api, req)
					if (err != nil) != (wantErr != nil) {
						t.Fatalf("%s, --where %q: error %v, row path %v", v.name, cond, err, wantErr)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("%s, --where %q: columnar\n%s\nrow path\n%s", v.name, cond, strings.Join(got, "\n"), strings.Join(want, "\n"))
					}
					if gotSt.RecordsMatched != wantSt.RecordsMatched || gotSt.RecordsScanned != wantSt.RecordsScanned {
						t.Fatalf("%s, --where %q: stats %+v, row path %+v", v.name, cond, gotSt, wantSt)
					}
					if !v.count {
						continue
					}
					wantN, wantErr := Count(context.Background(), api, rowPath(req))
					gotN, err := Count(context.Background(), api, req)
					if err != nil || wantErr != nil || gotN.RecordsMatched != wantN.RecordsMatched {
						t.Fatalf("%s, --where %q: Count %d (%v), row path %d (%v)", v.name, cond, gotN.RecordsMatched, err, wantN.RecordsMatched, wantErr)
					}
					if req.Limit == 0 && gotN.RecordsMatched != int64(len(want)) {
						t.Fatalf("%s, --where %q: Count %d, Run returned %d records", v.name, cond, gotN.RecordsMatched, len(want))
					}
				}
			}
		})
	}
}

// TestColumnarRollupSameAsRowPath checks --count-by and --stats scans: rollups from the
// columns equal rollups of the decoded records.
func TestColumnarRollupSameAsRowPath(t *testing.T) {
	cfgs := []rollup.Config{
		{},
		{Dimensions: []string{"level", "http.status", "msg.a", "kinlog_id", "raw"}, Numeric: []string{"latency_ms", "http.status", "status"}},
		{Dimensions: []string{"severity", "app"}, Numeric: []string{"ts", "timestamp"}},
	}
	for name, api := range columnarArchives(t) {
		for _, kid := range []bool{false, true} {
			for ci, cfg := range cfgs {
				for _, cond := range []string{"", "level=ERROR", "latency_ms>100", "msg.a exists"} {
					req := Request{Bucket: "b", KinlogID: kid, TimeFields: []string{"time"}, From: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
					if cond != "" {
						req.Where = mustFilter(t, cond)
					}
					want, _, wantErr := ScanRollup(context.Background(), api, rowPath(req), cfg)
					got, _, err := ScanRollup(context.Background(), api, req, cfg)
					if err != nil || wantErr != nil {
						t.Fatalf("%s: %v, row path %v", name, err, wantErr)
					}
					sortRows(got)
					sortRows(want)
					if !reflect.DeepEqual(rollupText(got), rollupText(want)) {
						t.Fatalf("%s, identities %v, config %d, --where %q: columnar\n%s\nrow path\n%s", name, kid, ci, cond, rollupText(got), rollupText(want))
					}
				}
			}
		}
	}
}

func sortRows(rows []rollup.Row) {
	key := func(r rollup.Row) string { return fmt.Sprint(r.Start.UnixNano(), r.Dims) }
	for i := 1; i < len(rows); i++ {
		for j := i; j > 0 && key(rows[j]) < key(rows[j-1]); j-- {
			rows[j], rows[j-1] = rows[j-1], rows[j]
		}
	}
}

// rollupText writes rows with what the sketches answer, for comparison.
func rollupText(rows []rollup.Row) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s %v count %d bytes %d", r.Start.Format(time.RFC3339), r.Dims, r.Count, r.Bytes)
		for _, f := range r.Fields {
			q, _ := f.Quantile(0.5)
			fmt.Fprintf(&b, " %s:%d/%g/%g/%g/%g", f.Name, f.Count, f.Sum, f.Min, f.Max, q)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TestColumnarCorruptObject checks that a truncated or damaged Parquet object fails the
// query with an error naming the object, as the row path does, rather than giving records.
func TestColumnarCorruptObject(t *testing.T) {
	obj := columnarObject(t, columnarRecords)
	damaged := bytes.Clone(obj)
	for i := len(damaged) / 3; i < len(damaged)/2; i++ {
		damaged[i] ^= 0x5a
	}
	for name, body := range map[string][]byte{
		"truncated":        obj[:len(obj)/2],
		"footer cut":       obj[:len(obj)-3],
		"no footer":        obj[:8],
		"pages damaged":    damaged,
		"not Parquet":      []byte("PAR1 this is not a Parquet file PAR1"),
		"empty":            nil,
		"footer only PAR1": []byte("PAR1"),
	} {
		t.Run(name, func(t *testing.T) {
			api := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.parquet": body}}
			req := Request{Bucket: "b", Order: OrderNone, Where: mustFilter(t, "level=ERROR")}
			_, _, err := runAll(t, api, req)
			_, _, rowErr := runAll(t, api, rowPath(req))
			if rowErr == nil {
				t.Skip("the row path reads this damage without an error") // then so may the columns
			}
			if err == nil || !strings.Contains(err.Error(), "decoding s3://b/logs/dt=2026-11-22/hour=10/s-0-1.parquet") {
				t.Fatalf("error %v, want one naming the object (row path: %v)", err, rowErr)
			}
			if _, err := Count(context.Background(), api, req); err == nil {
				t.Fatalf("Count: no error (row path: %v)", rowErr)
			}
		})
	}
}

// TestColumnarPrunes checks that row groups whose statistics rule out a time range, and
// row groups without a row of a level, are skipped without reading their other columns.
func TestColumnarPrunes(t *testing.T) {
	var recs []string
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	n := 3 * encode.ParquetRowGroupRows
	errors := 0
	for i := range n {
		lvl := "INFO"
		if i >= 2*encode.ParquetRowGroupRows && i%10 == 0 {
			lvl = "ERROR" // only in the last row group
			errors++
		}
		ts := base.Add(time.Duration(i) * 20 * time.Minute / time.Duration(encode.ParquetRowGroupRows)).Truncate(time.Millisecond)
		recs = append(recs, fmt.Sprintf(`{"time":%q,"level":%q,"msg":"m%d"}`, ts.Format(time.RFC3339Nano), lvl, i))
	}
	api := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.parquet": encodeObject(t, encode.Config{Format: encode.Parquet}, recs...)}}
	count := func(req Request) Stats {
		t.Helper()
		req.Bucket = "b"
		st, err := Count(context.Background(), api, req)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := count(Request{Where: mustFilter(t, "level=ERROR")})
	if st.RowGroups != 3 || st.RowGroupsPruned != 2 || st.RecordsMatched != int64(errors) {
		t.Errorf("level=ERROR: %+v, want 3 row groups, 2 pruned, %d matched", st, errors)
	}
	// The first 20 minutes are the first row group.
	st = count(Request{From: base, To: base.Add(20 * time.Minute), TimeFields: []string{"time"}})
	if st.RowGroups != 3 || st.RowGroupsPruned != 2 || st.RecordsMatched != int64(encode.ParquetRowGroupRows) {
		t.Errorf("first 20 minutes: %+v, want 3 row groups, 2 pruned, %d matched", st, encode.ParquetRowGroupRows)
	}
}

package encode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kinlog/kinlog/internal/testenv"
)

// The tests in this file read the encoder's objects with DuckDB (infra/local/duckdb-query.js,
// run through testenv.DuckDB), a reader that shares no code with parquet-go or this package,
// and compare what it sees with what the records say.

// logWant is what a record must look like in the Parquet log schema, worked out from the
// record itself rather than by this package's splitter.
type logWant struct {
	time                    *time.Time     // nil: NULL
	level, service, message string         // "": NULL (empty optional strings are nulls)
	attrs                   map[string]any // nil: NULL; numbers as json.Number
}

// duckCase is one record with its metadata and expected row.
type duckCase struct {
	data []byte
	meta Meta
	want logWant
}

func ptime(t time.Time) *time.Time { return &t }

// decodeJSON decodes a JSON text keeping numbers exact.
func decodeJSON(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
	return v
}

// duckEdges are records that exercise escapes, unicode, missing and empty members, other
// time forms, nesting and non-object records; they replace generated records at spread-out
// positions (across the writer's 1024-row chunks).
func duckEdges() []duckCase {
	long := strings.Repeat("long message ☃ ", 5000) // 80 KB: longer than a page
	return []duckCase{
		{data: []byte(`{"time":"2026-03-14T10:58:01.5+01:00","level":"INFO","msg":"naïve \"quoted\" back\\slash tab\t nl\n ☃ 😀 \u00e9 \u2028 \ud83d\ude00 \u0001 \/","service":"api","k":"v"}` + "\n"),
			want: logWant{time: ptime(time.Date(2026, 3, 14, 9, 58, 1, 5e8, time.UTC)), level: "INFO", service: "api",
				message: "naïve \"quoted\" back\\slash tab\t nl\n ☃ 😀 é \u2028 😀 \x01 /", attrs: map[string]any{"k": "v"}}},
		{data: []byte(`{"level":"ERROR","msg":"no time member","service":"billing","status":500}`),
			want: logWant{level: "ERROR", service: "billing", message: "no time member", attrs: map[string]any{"status": json.Number("500")}}},
		{data: []byte(`{"time":"2026-03-14T09:58:02Z","level":"","msg":"empty level","service":"auth"}`),
			want: logWant{time: ptime(time.Date(2026, 3, 14, 9, 58, 2, 0, time.UTC)), service: "auth", message: "empty level"}},
		{data: []byte(`{"ts":1773482281123,"severity":"WARN","message":"epoch millis","app":"worker"}`),
			want: logWant{time: ptime(time.UnixMilli(1773482281123).UTC()), level: "WARN", service: "worker", message: "epoch millis"}},
		// The column cannot give the nanoseconds back, so the member stays an attribute.
		{data: []byte(`{"time":"2026-03-14T09:58:03.123456789Z","msg":"nanoseconds truncated"}`),
			want: logWant{time: ptime(time.Date(2026, 3, 14, 9, 58, 3, 123456000, time.UTC)), message: "nanoseconds truncated",
				attrs: map[string]any{"time": "2026-03-14T09:58:03.123456789Z"}}},
		{data: []byte(`{"time":"1969-12-31T23:59:59.999999Z","msg":"before the epoch"}`),
			want: logWant{time: ptime(time.UnixMicro(-1).UTC()), message: "before the epoch"}},
		{data: []byte(`{"msg":"nested","http":{"path":"/x","headers":{"a":[1,2,{"b":null}]}},"big":12345678901234567890,"f":1.5e-7,"t":true,"n":null,"s":"é\"☃","k\u00e9y":"v\u00e9"}`),
			want: logWant{message: "nested", attrs: map[string]any{
				"http": map[string]any{"path": "/x", "headers": map[string]any{"a": []any{json.Number("1"), json.Number("2"), map[string]any{"b": nil}}}},
				"big":  json.Number("12345678901234567890"), "f": json.Number("1.5e-7"), "t": true, "n": nil, "s": "é\"☃", "kéy": "vé"}}},
		{data: []byte("42\n"), want: logWant{message: "42"}},
		{data: []byte(`["a",1]`), want: logWant{message: `["a",1]`}},
		{data: []byte(""), want: logWant{}},
		{data: []byte(`{"msg":{"k":1},"level":30}`), want: logWant{level: "30", message: `{"k":1}`}},
		{data: []byte("bell\a text\n"), want: logWant{message: "bell\a text"}},
		{data: []byte("日本語のログ ☃"), want: logWant{message: "日本語のログ ☃"}},
		{data: []byte(`{"msg":"` + long + `","level":"INFO"}`), want: logWant{level: "INFO", message: long}},
		{data: []byte("  {\"msg\":\"surrounded by spaces\"}  \r\n"), want: logWant{message: "surrounded by spaces"}},
	}
}

// duckCases returns n records: generated log lines (their expectations decoded from the
// line with encoding/json), the two odd records of records(), and duckEdges.
func duckCases(t testing.TB, n int) []duckCase {
	t.Helper()
	data, metas := records(n)
	cases := make([]duckCase, n)
	for i := range data {
		cases[i] = duckCase{data: data[i], meta: metas[i]}
		if i == 1 || i == 2 {
			continue // set below
		}
		m := decodeJSON(t, data[i]).(map[string]any)
		ts, err := time.Parse(time.RFC3339Nano, m["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		w := logWant{time: ptime(ts.UTC().Truncate(time.Microsecond)), level: m["level"].(string), service: m["service"].(string), message: m["msg"].(string)}
		for _, k := range []string{"time", "level", "service", "msg"} {
			delete(m, k)
		}
		w.attrs = m
		cases[i].want = w
	}
	cases[1].want = logWant{message: "kernel: oops at 0xdeadbeef"}
	cases[2].want = logWant{level: "WARN", message: "pretty"}
	edges := duckEdges()
	step := (n - 3) / len(edges)
	for k, e := range edges {
		i := 3 + k*step
		cases[i].data, cases[i].want = e.data, e.want
	}
	// Metadata edges: a partition key outside ASCII, a sub-sequence beyond 32 bits, an
	// identity with a span and an origin outside ASCII, one with a byte that is not UTF-8.
	cases[n/2].meta.PartitionKey = "pk-é☃"
	cases[n-1].meta.SubSequence = 1 << 62
	cases[n/3].meta.ID = []byte("agent:/var/log/journal-é☃.log/18446744073709551615+4096")
	cases[n/3+1].meta.ID = []byte("orig\xffin/5")
	return cases
}

// wantID is the kinlog_id a record's identity is stored as: "" (NULL) for none, a byte that
// is not UTF-8 as U+FFFD (the test identities have no two in a row).
func wantID(m Meta) string { return strings.ToValidUTF8(string(m.ID), "\uFFFD") }

// writeObject encodes the records with cfg into dir and returns the file's path.
func writeObject(t testing.TB, dir string, cfg Config, cases []duckCase) (string, []byte) {
	t.Helper()
	data := make([][]byte, len(cases))
	metas := make([]Meta, len(cases))
	for i, c := range cases {
		data[i], metas[i] = c.data, c.meta
	}
	out := build(t, cfg, data, metas)
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "object-"+e.Config().Compression.String()+e.Extension())
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, out
}

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// num returns a DuckDB integer (a json.Number) as an int64, failing the test otherwise.
func num(t testing.TB, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%#v is not a number", v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%v is not an int64: %v", n, err)
	}
	return i
}

// str returns a DuckDB VARCHAR, "" for NULL.
func str(t testing.TB, v any) string {
	t.Helper()
	if v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%#v is not a string", v)
	}
	return s
}

// rfc3339Micro is how the DuckDB script renders TIMESTAMP WITH TIME ZONE values.
const rfc3339Micro = "2006-01-02T15:04:05.000000Z"

func TestDuckDBReadsParquet(t *testing.T) {
	query := testenv.DuckDB(t)
	cases := duckCases(t, 3000)
	for _, c := range []Compression{CompressionZstd, CompressionSnappy} {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			path, out := writeObject(t, t.TempDir(), Config{Format: Parquet, Compression: c}, cases)
			ours, err := ReadParquet(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(ours) != len(cases) {
				t.Fatalf("ReadParquet read %d rows, want %d", len(ours), len(cases))
			}
			checkDuckRows(t, query, path, cases, ours)
			checkDuckAggregates(t, query, path, cases)
			checkDuckFooter(t, query, path, cases, c)
		})
	}
}

// checkDuckRows compares every row DuckDB reads with the record it came from and with
// ReadParquet's row.
func checkDuckRows(t *testing.T, query testenv.DuckDBQuery, path string, cases []duckCase, ours []Row) {
	t.Helper()
	rows := query(t, `SELECT file_row_number AS i, epoch_us("time") AS time_us, "time", level, service, message, attributes,
  json_valid(attributes) AS attributes_valid, shard, "sequence", sub_sequence, epoch_ms(arrival_time) AS arrival_ms,
  arrival_time, partition_key, kinlog_id
FROM read_parquet(`+sqlString(path)+`, file_row_number = true) ORDER BY i`)
	if len(rows) != len(cases) {
		t.Fatalf("DuckDB read %d rows, want %d", len(rows), len(cases))
	}
	bad := 0
	for i, r := range rows {
		c, o := cases[i], ours[i]
		var errs []string
		fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
		if got := num(t, r["i"]); got != int64(i) {
			fail("file_row_number %d", got)
		}
		// time: to the microsecond, as the record says and as ReadParquet reads it.
		switch {
		case c.want.time == nil:
			if r["time"] != nil || r["time_us"] != nil || o.Time != nil {
				fail("time = %v (ReadParquet %v), want NULL", r["time"], o.Time)
			}
		default:
			w := *c.want.time
			if r["time_us"] == nil || num(t, r["time_us"]) != w.UnixMicro() || r["time"] != w.Format(rfc3339Micro) {
				fail("time = %v (%v µs), want %s (%d µs)", r["time"], r["time_us"], w.Format(rfc3339Micro), w.UnixMicro())
			}
			if o.Time == nil || o.Time.UnixMicro() != w.UnixMicro() {
				fail("ReadParquet time = %v, want %v", o.Time, w)
			}
		}
		for _, col := range []struct {
			name, want, ours string
		}{
			{"level", c.want.level, o.Level}, {"service", c.want.service, o.Service}, {"message", c.want.message, o.Message},
		} {
			// "" stands for NULL: DuckDB must see a NULL, not an empty string.
			if got := r[col.name]; (col.want == "" && got != nil) || (col.want != "" && got != col.want) || col.ours != col.want {
				fail("%s = %#v (ReadParquet %q), want %q", col.name, got, col.ours, col.want)
			}
		}
		// attributes: the JSON text ReadParquet reads, parsing to the expected members.
		switch {
		case c.want.attrs == nil:
			if r["attributes"] != nil || o.Attributes != "" {
				fail("attributes = %#v (ReadParquet %q), want NULL", r["attributes"], o.Attributes)
			}
		default:
			a := str(t, r["attributes"])
			if a != o.Attributes {
				fail("attributes %q, ReadParquet %q", a, o.Attributes)
			}
			if r["attributes_valid"] != true {
				fail("DuckDB's json_valid(attributes) = %v for %q", r["attributes_valid"], a)
			} else if got := decodeJSON(t, []byte(a)); !reflect.DeepEqual(got, c.want.attrs) {
				fail("attributes %s, want members %v", a, c.want.attrs)
			}
		}
		m := c.meta
		if r["shard"] != m.Shard || o.Shard != m.Shard {
			fail("shard %v (ReadParquet %q), want %q", r["shard"], o.Shard, m.Shard)
		}
		if r["sequence"] != m.Sequence || o.Sequence != m.Sequence {
			fail("sequence %v (ReadParquet %q), want %q", r["sequence"], o.Sequence, m.Sequence)
		}
		if got := num(t, r["sub_sequence"]); got != int64(m.SubSequence) || o.SubSequence != got {
			fail("sub_sequence %d (ReadParquet %d), want %d", got, o.SubSequence, m.SubSequence)
		}
		wantArrival := m.ArrivalTime.UTC().Truncate(time.Millisecond)
		if got := num(t, r["arrival_ms"]); got != m.ArrivalTime.UnixMilli() || r["arrival_time"] != wantArrival.Format(rfc3339Micro) || !o.ArrivalTime.Equal(wantArrival) {
			fail("arrival_time %v (%d ms, ReadParquet %v), want %s", r["arrival_time"], got, o.ArrivalTime, wantArrival.Format(rfc3339Micro))
		}
		if r["partition_key"] != m.PartitionKey || o.PartitionKey != m.PartitionKey {
			fail("partition_key %v (ReadParquet %q), want %q", r["partition_key"], o.PartitionKey, m.PartitionKey)
		}
		if w := wantID(m); (w == "" && r["kinlog_id"] != nil) || (w != "" && r["kinlog_id"] != w) || o.KinlogID != w {
			fail("kinlog_id %#v (ReadParquet %q), want %q", r["kinlog_id"], o.KinlogID, w)
		}
		if len(errs) > 0 {
			t.Errorf("row %d (record %.120q):\n\t%s", i, c.data, strings.Join(errs, "\n\t"))
			if bad++; bad == 5 {
				t.Fatal("too many bad rows")
			}
		}
	}
}

// checkDuckAggregates runs aggregates and filtered counts (which DuckDB may answer with the
// help of the footer's statistics) and compares them with figures computed from the records.
func checkDuckAggregates(t *testing.T, query testenv.DuckDBQuery, path string, cases []duckCase) {
	t.Helper()
	f := "read_parquet(" + sqlString(path) + ")"
	lo, hi := time.Date(2026, 3, 14, 9, 58, 5, 0, time.UTC), time.Date(2026, 3, 14, 9, 58, 10, 0, time.UTC)
	probe := cases[len(cases)/2].meta
	rows := query(t, fmt.Sprintf(`SELECT count(*) AS n, count("time") AS n_time, epoch_us(min("time")) AS min_time,
  epoch_us(max("time")) AS max_time, sum(sub_sequence) AS sum_sub, max(sub_sequence) AS max_sub,
  count(DISTINCT level) AS levels, count(level) AS n_level, count(service) AS n_service,
  count(message) AS n_message, sum(strlen(message)) AS message_bytes, count(attributes) AS n_attributes,
  count(*) FILTER (WHERE attributes IS NOT NULL AND NOT json_valid(attributes)) AS invalid_attributes,
  sum(TRY_CAST(attributes->>'$.status' AS BIGINT)) AS sum_status,
  count(DISTINCT partition_key) AS partition_keys, min("sequence") AS min_seq, max("sequence") AS max_seq,
  epoch_ms(min(arrival_time)) AS min_arrival, epoch_ms(max(arrival_time)) AS max_arrival,
  (SELECT count(*) FROM %[1]s WHERE "time" >= '%[2]s'::TIMESTAMPTZ AND "time" < '%[3]s'::TIMESTAMPTZ) AS in_window,
  (SELECT count(*) FROM %[1]s WHERE "time" < '1970-01-01 00:00:00+00'::TIMESTAMPTZ) AS before_1970,
  (SELECT count(*) FROM %[1]s WHERE level = 'ERROR') AS errors,
  (SELECT count(*) FROM %[1]s WHERE level IS NULL) AS no_level,
  (SELECT string_agg(partition_key, ',') FROM %[1]s WHERE "sequence" = %[4]s) AS probe_key,
  (SELECT count(*) FROM %[1]s WHERE sub_sequence > 4294967296) AS big_sub
FROM %[1]s`, f, lo.Format(time.RFC3339), hi.Format(time.RFC3339), sqlString(probe.Sequence)))
	if len(rows) != 1 {
		t.Fatalf("aggregate query returned %d rows", len(rows))
	}
	got := rows[0]

	want := map[string]any{}
	var nTime, sumSub, maxSub, nLevel, nService, nMessage, msgBytes, nAttrs, sumStatus, inWindow, before, errs, noLevel, bigSub int64
	minTime, maxTime := int64(1<<63-1), int64(-1<<63)
	levels, keys := map[string]bool{}, map[string]bool{}
	minSeq, maxSeq := cases[0].meta.Sequence, cases[0].meta.Sequence
	minArr, maxArr := cases[0].meta.ArrivalTime.UnixMilli(), cases[0].meta.ArrivalTime.UnixMilli()
	for _, c := range cases {
		w, m := c.want, c.meta
		if w.time != nil {
			us := w.time.UnixMicro()
			nTime++
			minTime, maxTime = min(minTime, us), max(maxTime, us)
			if !w.time.Before(lo) && w.time.Before(hi) {
				inWindow++
			}
			if us < 0 {
				before++
			}
		}
		sumSub += int64(m.SubSequence)
		maxSub = max(maxSub, int64(m.SubSequence))
		if m.SubSequence > 1<<32 {
			bigSub++
		}
		if w.level != "" {
			nLevel++
			levels[w.level] = true
		} else {
			noLevel++
		}
		if w.level == "ERROR" {
			errs++
		}
		if w.service != "" {
			nService++
		}
		if w.message != "" {
			nMessage++
			msgBytes += int64(len(w.message))
		}
		if w.attrs != nil {
			nAttrs++
			if s, ok := w.attrs["status"].(json.Number); ok {
				v, _ := s.Int64()
				sumStatus += v
			}
		}
		keys[m.PartitionKey] = true
		minSeq, maxSeq = min(minSeq, m.Sequence), max(maxSeq, m.Sequence)
		minArr, maxArr = min(minArr, m.ArrivalTime.UnixMilli()), max(maxArr, m.ArrivalTime.UnixMilli())
	}
	ints := map[string]int64{
		"n": int64(len(cases)), "n_time": nTime, "min_time": minTime, "max_time": maxTime, "sum_sub": sumSub, "max_sub": maxSub,
		"levels": int64(len(levels)), "n_level": nLevel, "n_service": nService, "n_message": nMessage, "message_bytes": msgBytes,
		"n_attributes": nAttrs, "invalid_attributes": 0, "sum_status": sumStatus, "partition_keys": int64(len(keys)),
		"min_arrival": minArr, "max_arrival": maxArr, "in_window": inWindow, "before_1970": before, "errors": errs,
		"no_level": noLevel, "big_sub": bigSub,
	}
	for k, v := range ints {
		want[k] = json.Number(fmt.Sprint(v))
	}
	want["min_seq"], want["max_seq"], want["probe_key"] = minSeq, maxSeq, probe.PartitionKey
	// The figures must not be degenerate, or the comparisons would prove little.
	if inWindow == 0 || inWindow == nTime || before != 1 || errs == 0 || noLevel == 0 || bigSub != 1 || sumStatus == 0 {
		t.Fatalf("test data does not exercise the filters: %v", ints)
	}
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v, want %#v", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("aggregate row has %d columns, want %d", len(got), len(want))
	}
}

// checkDuckFooter checks the file's footer as DuckDB reads it: one row group of every row,
// each column's type, repetition, codec, encodings and null count, time statistics, and
// created_by.
func checkDuckFooter(t *testing.T, query testenv.DuckDBQuery, path string, cases []duckCase, c Compression) {
	t.Helper()
	f := sqlString(path)
	rows := query(t, `SELECT m.path_in_schema AS col, m.row_group_id AS rg, m.row_group_num_rows AS rg_rows, m.num_values AS num_values,
  m.compression AS codec, m.encodings AS encodings, m.stats_null_count AS nulls, s.duckdb_type AS duckdb_type,
  s.repetition_type AS repetition, s.logical_type AS logical_type,
  CASE WHEN m.path_in_schema IN ('time', 'arrival_time') THEN epoch_us(m.stats_min_value::TIMESTAMPTZ) END AS min_us,
  CASE WHEN m.path_in_schema IN ('time', 'arrival_time') THEN epoch_us(m.stats_max_value::TIMESTAMPTZ) END AS max_us,
  (SELECT created_by FROM parquet_file_metadata(`+f+`)) AS created_by,
  (SELECT num_rows FROM parquet_file_metadata(`+f+`)) AS file_rows
FROM parquet_metadata(`+f+`) m JOIN parquet_schema(`+f+`) s ON s.name = m.path_in_schema
ORDER BY m.column_id`)
	type colWant struct {
		duckType, repetition string
		// encodings of the values (levels' RLE aside), as the writer's documentation claims
		encodings []string
		nulls     func(logWant, Meta) bool
	}
	never := func(logWant, Meta) bool { return false }
	wants := []struct {
		name string
		colWant
	}{
		{"time", colWant{"TIMESTAMP WITH TIME ZONE", "OPTIONAL", []string{"DELTA_BINARY_PACKED"}, func(w logWant, _ Meta) bool { return w.time == nil }}},
		{"level", colWant{"VARCHAR", "OPTIONAL", []string{"PLAIN", "RLE_DICTIONARY"}, func(w logWant, _ Meta) bool { return w.level == "" }}},
		{"service", colWant{"VARCHAR", "OPTIONAL", []string{"PLAIN", "RLE_DICTIONARY"}, func(w logWant, _ Meta) bool { return w.service == "" }}},
		{"message", colWant{"VARCHAR", "OPTIONAL", []string{"PLAIN"}, func(w logWant, _ Meta) bool { return w.message == "" }}},
		{"attributes", colWant{"VARCHAR", "OPTIONAL", []string{"PLAIN"}, func(w logWant, _ Meta) bool { return w.attrs == nil }}},
		{"shard", colWant{"VARCHAR", "REQUIRED", []string{"PLAIN", "RLE_DICTIONARY"}, never}},
		{"sequence", colWant{"VARCHAR", "REQUIRED", []string{"DELTA_BYTE_ARRAY"}, never}},
		{"sub_sequence", colWant{"BIGINT", "REQUIRED", []string{"DELTA_BINARY_PACKED"}, never}},
		{"arrival_time", colWant{"TIMESTAMP WITH TIME ZONE", "REQUIRED", []string{"DELTA_BINARY_PACKED"}, never}},
		{"partition_key", colWant{"VARCHAR", "REQUIRED", []string{"PLAIN"}, never}},
		{"layout", colWant{"VARCHAR", "OPTIONAL", []string{"PLAIN", "RLE_DICTIONARY"}, never}},
		{"kinlog_id", colWant{"VARCHAR", "OPTIONAL", []string{"DELTA_BYTE_ARRAY"}, func(_ logWant, m Meta) bool { return len(m.ID) == 0 }}},
	}
	if len(rows) != len(wants) {
		t.Fatalf("DuckDB sees %d column chunks, want %d (one row group): %v", len(rows), len(wants), rows)
	}
	codec := map[Compression]string{CompressionZstd: "ZSTD", CompressionSnappy: "SNAPPY"}[c]
	n := int64(len(cases))
	for i, r := range rows {
		w := wants[i]
		if r["col"] != w.name {
			t.Errorf("column %d is %v, want %s", i, r["col"], w.name)
			continue
		}
		if num(t, r["rg"]) != 0 || num(t, r["rg_rows"]) != n || num(t, r["num_values"]) != n || num(t, r["file_rows"]) != n {
			t.Errorf("%s: row group %v of %v rows, %v values, file of %v rows; want one row group of %d", w.name, r["rg"], r["rg_rows"], r["num_values"], r["file_rows"], n)
		}
		if r["codec"] != codec {
			t.Errorf("%s: codec %v, want %s", w.name, r["codec"], codec)
		}
		var encs []string
		for e := range strings.SplitSeq(str(t, r["encodings"]), ", ") {
			if e != "RLE" { // the definition levels' encoding
				encs = append(encs, e)
			}
		}
		slices.Sort(encs)
		if !slices.Equal(encs, w.encodings) {
			t.Errorf("%s: encodings %v (DuckDB: %v), want %v", w.name, encs, r["encodings"], w.encodings)
		}
		if r["duckdb_type"] != w.duckType || r["repetition"] != w.repetition {
			t.Errorf("%s: DuckDB type %v %v (logical %v), want %s %s", w.name, r["duckdb_type"], r["repetition"], r["logical_type"], w.duckType, w.repetition)
		}
		var nulls int64
		for _, c := range cases {
			if w.nulls(c.want, c.meta) {
				nulls++
			}
		}
		if r["nulls"] == nil || num(t, r["nulls"]) != nulls {
			t.Errorf("%s: statistics null count %v, want %d", w.name, r["nulls"], nulls)
		}
		if !strings.HasPrefix(str(t, r["created_by"]), CreatedBy) {
			t.Errorf("created_by %v, want it to start with %q", r["created_by"], CreatedBy)
		}
	}
	// Statistics DuckDB may prune with: time's must cover the earliest and latest records.
	var minT, maxT, minA, maxA int64 = 1<<63 - 1, -1 << 63, 1<<63 - 1, -1 << 63
	for _, c := range cases {
		if c.want.time != nil {
			minT, maxT = min(minT, c.want.time.UnixMicro()), max(maxT, c.want.time.UnixMicro())
		}
		a := c.meta.ArrivalTime.UnixMilli() * 1000
		minA, maxA = min(minA, a), max(maxA, a)
	}
	for _, s := range []struct {
		row      int
		min, max int64
	}{{0, minT, maxT}, {8, minA, maxA}} {
		r := rows[s.row]
		if r["min_us"] == nil || r["max_us"] == nil || num(t, r["min_us"]) != s.min || num(t, r["max_us"]) != s.max {
			t.Errorf("%s: statistics min/max %v/%v µs, want %d/%d", r["col"], r["min_us"], r["max_us"], s.min, s.max)
		}
	}
}

// TestDuckDBReadsKinlogID reads the kinlog_id column of a file beside one written before the
// column existed (layout 1.1.0), as a table over an archive of both does: the old file's rows
// have a NULL identity, the new file's theirs, and a filter on the column finds a record.
func TestDuckDBReadsKinlogID(t *testing.T) {
	query := testenv.DuckDB(t)
	cases := duckCases(t, 2000)
	dir := t.TempDir()
	path, out := writeObject(t, dir, Config{Format: Parquet}, cases)
	rows, err := ReadParquet(out)
	if err != nil {
		t.Fatal(err)
	}
	oldPath := filepath.Join(dir, "old.parquet")
	if err := os.WriteFile(oldPath, writeV110(t, rows), 0o644); err != nil {
		t.Fatal(err)
	}
	var withID int64
	origins := map[string]bool{}
	for _, c := range cases {
		if w := wantID(c.meta); w != "" {
			withID++
			origins[w[:strings.LastIndexByte(w, '/')]] = true
		}
	}
	probe := cases[len(cases)/3]
	got := query(t, fmt.Sprintf(`SELECT count(*) AS n, count(kinlog_id) AS n_id,
  count(kinlog_id) FILTER (WHERE filename = %[2]s) AS n_id_old,
  count(DISTINCT regexp_extract(kinlog_id, '^(.*)/[0-9+]+$', 1)) AS origins,
  (SELECT string_agg(partition_key || ':' || "sequence", ',') FROM read_parquet(%[1]s) WHERE kinlog_id = %[3]s) AS probe,
  (SELECT count(*) FROM read_parquet(%[1]s) WHERE kinlog_id IS NULL) AS no_id
FROM read_parquet([%[1]s, %[2]s], union_by_name = true, filename = true)`, sqlString(path), sqlString(oldPath), sqlString(wantID(probe.meta))))
	want := map[string]any{
		"n": json.Number(fmt.Sprint(2 * len(cases))), "n_id": json.Number(fmt.Sprint(withID)), "n_id_old": json.Number("0"),
		"origins": json.Number(fmt.Sprint(len(origins))), "probe": probe.meta.PartitionKey + ":" + probe.meta.Sequence,
		"no_id": json.Number(fmt.Sprint(int64(len(cases)) - withID)),
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("DuckDB: %v, want %v", got, want)
	}
	if withID == int64(len(cases)) || len(origins) < 3 {
		t.Fatalf("test data lacks records without identity or several origins: %d of %d, origins %v", withID, len(cases), origins)
	}
}

func TestDuckDBReadsNDJSON(t *testing.T) {
	query := testenv.DuckDB(t)
	cases := duckCases(t, 3000)
	// A record that is not valid UTF-8 is kept with U+FFFD in place of the bad bytes.
	invalid := duckCase{data: []byte("{\"msg\":\"\xff\"}\n"), meta: cases[len(cases)-1].meta}
	cases = append(cases, invalid)
	for _, c := range []Compression{CompressionGzip, CompressionZstd} {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			path, _ := writeObject(t, t.TempDir(), Config{Format: NDJSON, Compression: c}, cases)
			rows := query(t, `SELECT json, json_valid(json) AS valid, json_type(json) AS type, json->>'$.msg' AS msg,
  json->>'$.raw' AS raw, json->>'$.raw_base64' AS raw_base64
FROM read_ndjson_objects(`+sqlString(path)+`)`)
			if len(rows) != len(cases) {
				t.Fatalf("DuckDB read %d lines, want %d", len(rows), len(cases))
			}
			bad := 0
			for i, r := range rows {
				c := cases[i]
				var errs []string
				fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
				in := Trim(c.data)
				var d Doc
				_ = d.Parse(in)
				line := strings.TrimSuffix(string(AppendLine(nil, c.data, &d, FramingLines)), "\n")
				text := str(t, r["json"])
				if text != line {
					fail("line %q, want the encoder's %q", text, line)
				}
				if r["valid"] != true {
					fail("DuckDB's json_valid = %v", r["valid"])
				}
				// What the line means, against the record itself.
				// A JSON object is kept; anything else is wrapped in an object.
				isObject := len(in) > 0 && in[0] == '{' && utf8.Valid(in) && json.Valid(in)
				switch {
				case isObject:
					sourceJSON := decodeJSON(t, in)
					if got := decodeJSON(t, []byte(text)); !reflect.DeepEqual(got, sourceJSON) {
						fail("line decodes to %v, record to %v", got, sourceJSON)
					}
					if r["type"] != "OBJECT" {
						fail("json_type %v, want OBJECT", r["type"])
					}
					if msg, ok := sourceJSON.(map[string]any)["msg"].(string); ok && r["msg"] != msg {
						fail("DuckDB's json->>'$.msg' = %#v, want %q", r["msg"], msg)
					}
				case bytes.Equal(c.data, invalid.data):
					if r["msg"] != "\uFFFD" || r["type"] != "OBJECT" || r["raw_base64"] != nil {
						fail("msg %#v (type %v), want U+FFFD in an object", r["msg"], r["type"])
					}
				default:
					if r["raw"] != string(in) || r["raw_base64"] != nil || r["type"] != "OBJECT" {
						fail("raw %#v (type %v), want the record's text %q", r["raw"], r["type"], in)
					}
				}
				if len(errs) > 0 {
					t.Errorf("line %d (record %.120q):\n\t%s", i, c.data, strings.Join(errs, "\n\t"))
					if bad++; bad == 5 {
						t.Fatal("too many bad lines")
					}
				}
			}
		})
	}
}

// TestDuckDBReadsNDJSONColumns reads an object of JSON-object records with read_json, as a
// table with one column per member, the way a query engine with a JSON SerDe reads the
// archive.
func TestDuckDBReadsNDJSONColumns(t *testing.T) {
	query := testenv.DuckDB(t)
	// Every line is an object: records that are not (text, bare JSON values) are wrapped.
	cases := duckCases(t, 3000)
	path, _ := writeObject(t, t.TempDir(), Config{Format: NDJSON, Compression: CompressionGzip}, cases)
	// msg holds strings and an object, so DuckDB types the column JSON; ->>'$' unquotes it.
	unicodeMsg := duckEdges()[0].want.message
	rows := query(t, `SELECT count(*) AS n, count(msg) AS n_msg, count(raw) AS n_raw, count(DISTINCT trace_id) AS traces,
  sum(status) AS sum_status, count(*) FILTER (WHERE msg->>'$' = `+sqlString(unicodeMsg)+`) AS unicode,
  max(big) AS big, max(http.path) AS http_path
FROM read_json(`+sqlString(path)+`, format = 'newline_delimited', records = true)`)
	var nMsg, nRaw, sumStatus, unicode int64
	traces := map[any]bool{}
	for _, c := range cases {
		in := Trim(c.data)
		if len(in) == 0 || !json.Valid(in) || in[0] != '{' {
			nRaw++
			continue
		}
		m := decodeJSON(t, in).(map[string]any)
		if _, ok := m["msg"].(string); ok {
			nMsg++
		} else if m["msg"] != nil {
			nMsg++ // an object msg reads as its JSON text
		}
		if s, ok := m["status"].(json.Number); ok {
			v, _ := s.Int64()
			sumStatus += v
		}
		if tr, ok := m["trace_id"]; ok {
			traces[tr] = true
		}
		if m["msg"] == unicodeMsg {
			unicode++
		}
	}
	want := map[string]any{
		"n": json.Number(fmt.Sprint(len(cases))), "n_msg": json.Number(fmt.Sprint(nMsg)), "n_raw": json.Number(fmt.Sprint(nRaw)),
		"traces": json.Number(fmt.Sprint(len(traces))), "sum_status": json.Number(fmt.Sprint(sumStatus)), "unicode": json.Number(fmt.Sprint(unicode)),
		"big": json.Number("12345678901234567890"), "http_path": "/x",
	}
	if len(rows) != 1 || !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("read_json: %v, want %v", rows, want)
	}
	if nRaw < 2 || unicode != 1 {
		t.Fatalf("test data lacks text records or the unicode record: raw %d, unicode %d", nRaw, unicode)
	}
}

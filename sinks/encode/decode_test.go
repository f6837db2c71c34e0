package encode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"

	"github.com/kinlog/kinlog/sinks/internal/testlogs"
)

// TestObjectConfig checks that every encoding's extension reads back as that encoding, and
// that other names are not archive objects.
func TestObjectConfig(t *testing.T) {
	for _, c := range []Compression{CompressionDefault, CompressionGzip, CompressionZstd, CompressionSnappy, CompressionNone} {
		for _, cfg := range []Config{{Compression: c}, {Compression: c, Framing: FramingRaw}, {Format: Parquet, Compression: c}} {
			e, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := ObjectConfig("logs/dt=2026-11-22/hour=10/s-shardId-0-1-0" + e.Extension())
			want := e.Config()
			if want.Format == Parquet {
				want.Compression = CompressionDefault
			}
			if !ok || got.Format != want.Format || got.Framing != want.Framing || got.Compression != want.Compression {
				t.Errorf("%s: ObjectConfig = %+v, %v; want %+v", e.Extension(), got, ok, want)
			}
		}
	}
	for _, key := range []string{"a.txt", "a.json.bz2", "a.parquet.tmp", "a.rawx", "a"} {
		if _, ok := ObjectConfig(key); ok {
			t.Errorf("ObjectConfig(%q) reported an archive object", key)
		}
	}
}

// decodeBoth archives data with NDJSON lines, records as received and Parquet, decodes the
// three objects and returns their records.
func decodeBoth(t testing.TB, fields Fields, data ...[]byte) (nd, raw, pq []string) {
	t.Helper()
	get := func(cfg Config) []string {
		cfg.Fields = fields
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		o := e.NewObject()
		for i, r := range data {
			rec := r
			if cfg.Framing == FramingRaw {
				rec = append(bytes.Clone(r), '\n')
			}
			if err := o.Add(&Meta{Shard: "s", Sequence: fmt.Sprint(i)}, rec, parse(t, rec)); err != nil {
				t.Fatal(err)
			}
		}
		obj, err := o.Finish(nil)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := ObjectConfig("x" + e.Extension())
		if !ok {
			t.Fatalf("no config for %s", e.Extension())
		}
		var d Decoder
		recs, err := d.Decode(obj, c)
		if err != nil {
			t.Fatalf("%s: %v", e.Extension(), err)
		}
		out := make([]string, len(recs))
		for i, r := range recs {
			out[i] = string(r)
		}
		return out
	}
	return get(Config{}), get(Config{Framing: FramingRaw, Compression: CompressionZstd}), get(Config{Format: Parquet})
}

// TestDecodeSameFromEveryEncoding checks records of every kind the encoders treat
// differently: NDJSON and Parquet give back the same bytes, in canonical form.
func TestDecodeSameFromEveryEncoding(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"time":"2026-03-14T10:00:00.123Z","level":"INFO","service":"api","msg":"ok","n":1.50}`, ``},
		{`{"ts":1773482400123,"severity":"WARN","message":"epoch ms, other names","http":{"status":500}}`, ``},
		{`{"z":1,"msg":"columns in the middle","level":"E","time":"2026-03-14T12:00:00+02:00","a":2}`, ``},
		{`{"time":"2026-03-14T10:00:00.000000000Z","msg":"nine zeros"}`, ``},
		{`{"time":"2026-03-14T10:00:00.123456789Z","msg":"nanoseconds: the time stays an attribute"}`, ``},
		{`{"ts":1773482400.5,"msg":"fractional epoch"}`, ``},
		{`{"ts":-5,"msg":"negative epoch"}`, ``},
		{`{"time":"2026-03-14T10:00:00\u005a","msg":"escaped time"}`, `{"time":"2026-03-14T10:00:00Z","msg":"escaped time"}`},
		{`{"level":true,"service":3.0,"msg":[1, {"a" : null}]}`, `{"level":true,"service":3.0,"msg":[1,{"a":null}]}`},
		{`{"msg":"","level":"","service":""}`, ``},
		{`{"msg":null,"message":"second name"}`, ``},
		{`{"msg":"a","msg":"b"}`, ``},
		{`{"m\u0073g":"escaped name","\u00e9":"\ud83d\ude00 \ud800 \/ \b\f\u0001 \u2028"}`, `{"msg":"escaped name","é":"😀 ` + "\uFFFD" + ` / \u0008\u000c\u0001 \u2028"}`},
		{"{\"msg\":\"\xff\xfe\",\"k\xc3\":1}", "{\"msg\":\"\uFFFD\uFFFD\",\"k\uFFFD\":1}"},
		{"{\n\t\"msg\" : \"pretty\" ,\n\t\"list\": [ 1 , 2 ]\n}", `{"msg":"pretty","list":[1,2]}`},
		{`  {"spaced": "out"}  `, `{"spaced":"out"}`},
		{`plain text`, `{"raw":"plain text"}`},
		{"text with \xff", "{\"raw\":\"text with \uFFFD\"}"},
		{`{"broken": `, `{"raw":"{\"broken\":"}`},
		{`12`, `{"raw":"12"}`},
		{`{}`, ``},
		{`{"kinesis":{"shard":"mine"}}`, ``},
	}
	var data [][]byte
	for _, tt := range tests {
		data = append(data, []byte(tt.in))
	}
	nd, _, pq := decodeBoth(t, Fields{}, data...)
	var dec Decoder
	for i, tt := range tests {
		if got := string(dec.Record(data[i])); got != nd[i] {
			t.Errorf("Record %q = %s, want %s (as archived)", tt.in, got, nd[i])
		}
		want := tt.want
		if want == "" {
			want = tt.in
		}
		if nd[i] != want {
			t.Errorf("NDJSON %q\n got %s\nwant %s", tt.in, nd[i], want)
		}
		if pq[i] != nd[i] {
			t.Errorf("Parquet %q\n got %s\nwant %s (as NDJSON)", tt.in, pq[i], nd[i])
		}
	}
	// Records as received are read back line by line: compare the one-line records.
	var oneLine [][]byte
	for _, r := range data {
		if !bytes.Contains(r, []byte("\n")) {
			oneLine = append(oneLine, r)
		}
	}
	nd, raw, _ := decodeBoth(t, Fields{}, oneLine...)
	for i := range nd {
		if raw[i] != nd[i] {
			t.Errorf("records as received %q\n got %s\nwant %s (as NDJSON)", oneLine[i], raw[i], nd[i])
		}
	}
}

// TestDecodeCustomFields checks that records come back the same when the Parquet columns
// were filled from configured names and time formats.
func TestDecodeCustomFields(t *testing.T) {
	f := Fields{Time: []string{"at", "meta.at"}, TimeFormat: mustTimeFormat(t, "2006-01-02 15:04:05.000"), Level: []string{"sev"}, Message: []string{"text"}}
	data := [][]byte{
		[]byte(`{"at":"2026-03-14 10:00:00.120","sev":"E","text":"custom layout"}`),
		[]byte(`{"meta":{"at":"2026-03-14 10:00:00.000"},"text":"nested time stays in place"}`),
		[]byte(`{"at":"2026-03-14 10:00:00.1","text":"not the layout"}`),
	}
	nd, _, pq := decodeBoth(t, f, data...)
	for i := range data {
		if nd[i] != string(data[i]) || pq[i] != nd[i] {
			t.Errorf("record %d: NDJSON %s, Parquet %s, want %s", i, nd[i], pq[i], data[i])
		}
	}
	for _, u := range []string{"unix", "unix_ms", "unix_us", "unix_ns"} {
		f := Fields{TimeFormat: mustTimeFormat(t, u)}
		in := []byte(`{"time":1773482400,"msg":"` + u + `"}`)
		if nd, _, pq := decodeBoth(t, f, in); nd[0] != string(in) || pq[0] != nd[0] {
			t.Errorf("%s: NDJSON %s, Parquet %s", u, nd[0], pq[0])
		}
	}
}

func mustTimeFormat(t *testing.T, s string) TimeFormat {
	t.Helper()
	f, err := ParseTimeFormat(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestDecodeGeneratedLogs compares the encodings over the generated test logs.
func TestDecodeGeneratedLogs(t *testing.T) {
	var data [][]byte
	for _, r := range testlogs.New(7).Records("shardId-000000000000", 1, 3000) {
		data = append(data, r.Data)
	}
	nd, _, pq := decodeBoth(t, Fields{}, data...)
	if !reflect.DeepEqual(nd, pq) {
		for i := range nd {
			if nd[i] != pq[i] {
				t.Fatalf("record %d: NDJSON %s, Parquet %s", i, nd[i], pq[i])
			}
		}
	}
}

// TestDecodeLegacyParquet checks files without the layout column (written before it):
// columns come back under their schema names, first.
func TestDecodeLegacyParquet(t *testing.T) {
	ts := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	var d Decoder
	got, err := d.appendRow(nil, &Row{Time: &ts, Level: "INFO", Message: "m", Attributes: `{"time":"x","n":1}`})
	if err != nil || string(got) != `{"time":"2026-03-14T10:00:00Z","level":"INFO","msg":"m","n":1}` {
		t.Fatalf("legacy row = %s, %v", got, err)
	}
	if _, err := d.appendRow(nil, &Row{Layout: `{"m":"msg","mp":3}`, Message: "x"}); err == nil {
		t.Fatal("a layout naming a position past the record's members was accepted")
	}
}

// rowV110 is the schema of layout version 1.1.0, before the kinlog_id column: writeRow as
// it was then (empty optional strings and a zero time are written as nulls).
type rowV110 struct {
	Time         int64  `parquet:"time,optional,delta,timestamp(microsecond:utc)"`
	Level        string `parquet:"level,optional,dict"`
	Service      string `parquet:"service,optional,dict"`
	Message      string `parquet:"message,optional,plain"`
	Attributes   string `parquet:"attributes,optional,plain"`
	Shard        string `parquet:"shard,dict"`
	Sequence     string `parquet:"sequence,delta"`
	SubSequence  int64  `parquet:"sub_sequence,delta"`
	ArrivalTime  int64  `parquet:"arrival_time,delta,timestamp(millisecond:utc)"`
	PartitionKey string `parquet:"partition_key,plain"`
	Layout       string `parquet:"layout,optional,dict"`
}

// writeV110 writes rows as a file of layout version 1.1.0 would hold them.
func writeV110(t testing.TB, rows []Row) []byte {
	t.Helper()
	old := make([]rowV110, len(rows))
	for i, r := range rows {
		var us int64
		if r.Time != nil {
			if us = r.Time.UnixMicro(); us == 0 {
				t.Fatalf("row %d: a time of 0 would be written as null", i)
			}
		}
		old[i] = rowV110{us, r.Level, r.Service, r.Message, r.Attributes, r.Shard, r.Sequence, r.SubSequence, r.ArrivalTime.UnixMilli(), r.PartitionKey, r.Layout}
	}
	var b bytes.Buffer
	w := parquet.NewGenericWriter[rowV110](&b, parquet.NewSchema("log", parquet.SchemaOf(rowV110{})),
		parquet.Compression(codecZstd), parquet.CreatedBy(CreatedBy, "1.1.0", "-"), parquet.DataPageVersion(1))
	if _, err := w.Write(old); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDecodeParquetV110 checks that files written before the kinlog_id column read as
// before, with no identity: [ReadParquet] gives rows with an empty KinlogID and the
// Decoder the same records as from a current file, without an ID.
func TestDecodeParquetV110(t *testing.T) {
	// The old schema is the current one without its last column.
	cur, old := ParquetSchema.Fields(), parquet.SchemaOf(rowV110{}).Fields()
	if len(old) != len(cur)-1 || cur[len(cur)-1].Name() != "kinlog_id" {
		t.Fatalf("schema has %d columns, the 1.1.0 schema %d; want one more, kinlog_id", len(cur), len(old))
	}
	for i := range old {
		if old[i].Name() != cur[i].Name() || old[i].Optional() != cur[i].Optional() || old[i].Type().String() != cur[i].Type().String() {
			t.Errorf("column %d: 1.1.0 %s %v, now %s %v", i, old[i].Name(), old[i].Type(), cur[i].Name(), cur[i].Type())
		}
	}
	data, metas := records(2*pqChunkRows + 100)
	newFile := build(t, Config{Format: Parquet}, data, metas)
	rows, err := ReadParquet(newFile)
	if err != nil {
		t.Fatal(err)
	}
	oldFile := writeV110(t, rows)
	oldRows, err := ReadParquet(oldFile)
	if err != nil {
		t.Fatalf("reading a 1.1.0 file: %v", err)
	}
	if len(oldRows) != len(rows) {
		t.Fatalf("read %d rows of the 1.1.0 file, want %d", len(oldRows), len(rows))
	}
	withID := 0
	for i := range rows {
		want := rows[i]
		if want.KinlogID != "" {
			withID++
		}
		want.KinlogID = ""
		if !reflect.DeepEqual(oldRows[i], want) {
			t.Fatalf("1.1.0 row %d = %+v, want %+v", i, oldRows[i], want)
		}
	}
	if withID == 0 {
		t.Fatal("the test records have no identity")
	}
	var dn, do Decoder
	newRecs, err := dn.Decode(newFile, Config{Format: Parquet})
	if err != nil {
		t.Fatal(err)
	}
	oldRecs, err := do.Decode(oldFile, Config{Format: Parquet})
	if err != nil {
		t.Fatal(err)
	}
	if len(oldRecs) != len(newRecs) {
		t.Fatalf("decoded %d records of the 1.1.0 file, want %d", len(oldRecs), len(newRecs))
	}
	for i := range newRecs {
		if !bytes.Equal(oldRecs[i], newRecs[i]) || do.ID(i) != "" || dn.ID(i) != string(metas[i].ID) {
			t.Fatalf("record %d: 1.1.0 %s (ID %q), current %s (ID %q, want %q)", i, oldRecs[i], do.ID(i), newRecs[i], dn.ID(i), metas[i].ID)
		}
	}
}

// FuzzDecodeSameFromEveryEncoding checks on arbitrary records that NDJSON and Parquet
// give back the same canonical JSON object, which encoding/json reads as the record.
func FuzzDecodeSameFromEveryEncoding(f *testing.F) {
	for _, s := range []string{`{"time":"2026-03-14T10:00:00.5+01:00","level":"I","msg":"m"}`, `{"ts":1773482400,"severity":1}`,
		"x\xff", `{"msg":{"a":[1,2]},"time":"2026-03-14T10:00:00Z"}`, `{"\u0074s":"\u00e9"}`, `[1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.ContainsAny(in, "\n\r") {
			// Records as received are split at newlines; the other two handle them, but
			// keep the comparison simple.
			in = bytes.ReplaceAll(bytes.ReplaceAll(in, []byte("\n"), []byte(" ")), []byte("\r"), []byte(" "))
		}
		// Beside other records, so that lines are found in a larger object.
		nd, raw, pq := decodeBoth(t, Fields{}, []byte(`{"a": "b c"}`), in, in)
		if len(nd) != 3 || len(pq) != 3 || nd[1] != nd[2] {
			t.Fatalf("records: %q / %q", nd, pq)
		}
		if nd[0] != `{"a":"b c"}` || pq[0] != nd[0] {
			t.Fatalf("neighbour of %q: NDJSON %s, Parquet %s", in, nd[0], pq[0])
		}
		if len(Trim(in)) == 0 && len(raw) == 1 {
			raw = nil
		}
		nd, pq = nd[1:2], pq[1:2]
		if len(raw) == 3 {
			raw = raw[1:2]
		}
		if nd[0] != pq[0] {
			t.Fatalf("%q: NDJSON %s, Parquet %s", in, nd[0], pq[0])
		}
		var dec Decoder
		if got := string(dec.Record(in)); got != nd[0] {
			t.Fatalf("%q: Record %s, NDJSON %s", in, got, nd[0])
		}
		if len(raw) == 1 && raw[0] != nd[0] {
			t.Fatalf("%q: records as received %s, NDJSON %s", in, raw[0], nd[0])
		}
		var d Doc
		if err := d.Parse([]byte(nd[0])); err != nil || d.Kind != Object || !d.compact || !utf8.ValidString(nd[0]) {
			t.Fatalf("%q: %s is not a compact UTF-8 JSON object", in, nd[0])
		}
		unmarshal := func(b []byte) (any, error) {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			var v any
			return v, dec.Decode(&v)
		}
		got, err := unmarshal([]byte(nd[0]))
		if err != nil {
			t.Fatalf("%s does not unmarshal: %v", nd[0], err)
		}
		if json.Valid(Trim(in)) && bytes.HasPrefix(Trim(in), []byte("{")) {
			want, _ := unmarshal(in)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q came back as %s", in, nd[0])
			}
		}
	})
}

// The same records read back from an NDJSON object and from a Parquet object give the same
// bytes: member names, order and time text as written, text wrapped as {"raw": …}, bytes
// that are not UTF-8 as U+FFFD.
func ExampleDecoder() {
	recs := []string{
		`{"ts":1773482400123,"severity":"WARN","message":"caf\u00e9","http":{"status":503}}`,
		"not JSON \xff",
	}
	for _, cfg := range []Config{{}, {Format: Parquet}} {
		e, _ := New(cfg)
		o := e.NewObject()
		for _, r := range recs {
			var d Doc
			_ = d.Parse([]byte(r))
			_ = o.Add(&Meta{}, []byte(r), &d)
		}
		obj, _ := o.Finish(nil)
		kind, _ := ObjectConfig("x" + e.Extension())
		var dec Decoder
		out, err := dec.Decode(obj, kind)
		fmt.Println(e.Extension(), err)
		for _, r := range out {
			fmt.Println(string(r))
		}
	}
	// Output:
	// .json.gz <nil>
	// {"ts":1773482400123,"severity":"WARN","message":"café","http":{"status":503}}
	// {"raw":"not JSON �"}
	// .parquet <nil>
	// {"ts":1773482400123,"severity":"WARN","message":"café","http":{"status":503}}
	// {"raw":"not JSON �"}
}

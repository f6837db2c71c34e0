package encode

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/kinlog/kinlog/sinks/internal/testlogs"
)

func parse(t testing.TB, data []byte) *Doc {
	t.Helper()
	var d Doc
	_ = d.Parse(Trim(data))
	return &d
}

func TestAppendLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"json with newline", "{\"a\":1}\n", "{\"a\":1}\n"},
		{"json without newline", `{"a":1}`, "{\"a\":1}\n"},
		{"crlf", "{\"a\":1}\r\n", "{\"a\":1}\n"},
		{"pretty json compacted", "{\n  \"a\": [1, 2],\n  \"b\": \"x y\"\n}\n", "{\"a\":[1,2],\"b\":\"x y\"}\n"},
		{"bare number wrapped", "42", "{\"raw\":\"42\"}\n"},
		{"bare array wrapped without its newline", "[1, 2]\n", "{\"raw\":\"[1, 2]\"}\n"},
		{"bare string wrapped", `"x"`, `{"raw":"\"x\""}` + "\n"},
		{"text wrapped without surrounding whitespace", " hello \"world\"\r\n", "{\"raw\":\"hello \\\"world\\\"\"}\n"},
		{"empty record wrapped", "", "{\"raw\":\"\"}\n"},
		{"broken json wrapped", `{"a":`, "{\"raw\":\"{\\\"a\\\":\"}\n"},
		{"invalid utf8 in json replaced", "{\"a\":\"\xff\",\"b\":\"\xe2\x82\"}", "{\"a\":\"\uFFFD\",\"b\":\"\uFFFD\uFFFD\"}\n"},
		{"invalid utf8 text replaced", "\xfe\xffok", "{\"raw\":\"\uFFFD\uFFFDok\"}\n"},
		{"control chars escaped", "a\x01b", "{\"raw\":\"a\\u0001b\"}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendLine(nil, []byte(tt.in), parse(t, []byte(tt.in)), FramingLines))
			if got != tt.want {
				t.Fatalf("AppendLine(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !json.Valid([]byte(strings.TrimSuffix(got, "\n"))) || strings.Count(got, "\n") != 1 {
				t.Fatalf("line %q is not one JSON value on one line", got)
			}
		})
	}
	t.Run("raw framing keeps bytes", func(t *testing.T) {
		in := []byte("not json\x00\xff")
		if got := AppendLine(nil, in, parse(t, in), FramingRaw); !bytes.Equal(got, in) {
			t.Fatalf("got %q, want %q", got, in)
		}
	})
}

func TestSplit(t *testing.T) {
	ts := time.Date(2026, 3, 14, 9, 58, 1, 123456000, time.UTC)
	tests := []struct {
		name    string
		in      string
		want    Log
		wantErr error
	}{
		{"slog line", `{"time":"2026-03-14T09:58:01.123456Z","level":"INFO","msg":"served","service":"api","status":200,"http":{"path":"/x"}}`,
			Log{Time: &ts, Level: "INFO", Message: "served", Service: "api", Attributes: []byte(`{"status":200,"http":{"path":"/x"}}`)}, nil},
		{"epoch millis and numeric level", `{"ts":1773482281123.456,"level":30,"message":"m"}`,
			Log{Time: &ts, Level: "30", Message: "m"}, nil},
		{"unparseable time stays in attributes", `{"time":"yesterday","msg":"m"}`,
			Log{Message: "m", Attributes: []byte(`{"time":"yesterday"}`)}, nil},
		{"non-string message kept as JSON", `{"msg":{"k":1}}`, Log{Message: `{"k":1}`}, nil},
		{"object level not a column", `{"level":{"n":1}}`, Log{Attributes: []byte(`{"level":{"n":1}}`)}, nil},
		{"text becomes message", "plain text line", Log{Message: "plain text line"}, nil},
		{"escaped key", `{"m\u0073g":"x"}`, Log{Message: "x"}, nil},
		{"multiline attributes compacted", "{\"a\": [1,\n 2], \"msg\":\"x\"}", Log{Message: "x", Attributes: []byte(`{"a":[1,2]}`)}, nil},
		{"unparseable time falls back to the next name", `{"time":"yesterday","ts":"2026-03-14T09:58:01.123456Z","msg":"m"}`,
			Log{Time: &ts, Message: "m", Attributes: []byte(`{"time":"yesterday"}`)}, nil},
		{"object level falls back to severity", `{"level":{"n":1},"severity":"WARN"}`,
			Log{Level: "WARN", Attributes: []byte(`{"level":{"n":1}}`)}, nil},
		{"first of repeated members", `{"msg":"a","msg":"b"}`, Log{Message: "a", Attributes: []byte(`{"msg":"b"}`)}, nil},
		{"null message is an attribute", `{"msg":null,"message":"x"}`, Log{Message: "x", Attributes: []byte(`{"msg":null}`)}, nil},
		{"names are case sensitive", `{"Level":"INFO","MSG":"x"}`, Log{Attributes: []byte(`{"Level":"INFO","MSG":"x"}`)}, nil},
		{"empty member name", `{"":"x","msg":"m"}`, Log{Message: "m", Attributes: []byte(`{"":"x"}`)}, nil},
		{"escaped time and level names", `{"\u0074ime":"2026-03-14T09:58:01.123456Z","lev\u0065l":"E"}`, Log{Time: &ts, Level: "E"}, nil},
		{"escaped values unquoted", `{"msg":"a\"b\u00e9","level":"\u0049NFO"}`, Log{Message: "a\"b\u00e9", Level: "INFO"}, nil},
		{"more than 64 members", manyMembers(70) + `,"msg":"late","level":"INFO"}`,
			Log{Message: "late", Level: "INFO", Attributes: []byte(manyMembers(70) + "}")}, nil},
		{"invalid utf8 replaced", "{\"msg\":\"\xff\"}", Log{Message: "\uFFFD"}, nil},
		{"invalid utf8 text replaced", "\xffx", Log{Message: "\uFFFDx"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Trim([]byte(tt.in))
			var l Log
			_, err := DefaultFields.Split(&l, in, parse(t, in), nil)
			if err != tt.wantErr {
				t.Fatalf("Split error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if (l.Time == nil) != (tt.want.Time == nil) || (l.Time != nil && !l.Time.Equal(*tt.want.Time)) {
				t.Errorf("Time = %v, want %v", l.Time, tt.want.Time)
			}
			if l.Level != tt.want.Level || l.Service != tt.want.Service || l.Message != tt.want.Message || string(l.Attributes) != string(tt.want.Attributes) {
				t.Errorf("got level=%q service=%q message=%q attributes=%s, want level=%q service=%q message=%q attributes=%s",
					l.Level, l.Service, l.Message, l.Attributes, tt.want.Level, tt.want.Service, tt.want.Message, tt.want.Attributes)
			}
		})
	}
}

// manyMembers returns the start of an object with n members a0..a(n-1), without its closing
// brace.
func manyMembers(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"a%d":%d`, i, i)
	}
	return b.String()
}

// TestSplitCustomFields covers configured member names: a dotted time member is read from
// its nested object and the parent stays in the attributes; names are tried in order.
func TestSplitCustomFields(t *testing.T) {
	f := Fields{Time: []string{"meta.at"}, Level: []string{"sev", "level"}, Message: []string{"text"}}
	in := []byte(`{"level":"INFO","sev":"high","meta":{"at":1773482281},"text":"t","msg":"m"}`)
	var l Log
	if _, err := f.Split(&l, in, parse(t, in), nil); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 3, 14, 9, 58, 1, 0, time.UTC)
	if l.Time == nil || !l.Time.Equal(want) || l.Level != "high" || l.Message != "t" ||
		string(l.Attributes) != `{"level":"INFO","meta":{"at":1773482281},"msg":"m"}` {
		t.Fatalf("got time=%v level=%q message=%q attributes=%s", l.Time, l.Level, l.Message, l.Attributes)
	}
	// Only the nested time: no top-level member carries a configured name.
	in = []byte(`{"meta":{"at":1773482281},"x":1}`)
	if _, err := f.Split(&l, in, parse(t, in), nil); err != nil {
		t.Fatal(err)
	}
	if l.Time == nil || !l.Time.Equal(want) || string(l.Attributes) != string(in) {
		t.Fatalf("nested time alone: got time=%v attributes=%s", l.Time, l.Attributes)
	}
}

func TestTimeFormat(t *testing.T) {
	want := time.Date(2026, 3, 14, 9, 58, 1, 0, time.UTC)
	tests := []struct {
		format, value string
		want          time.Time
	}{
		{"", `"2026-03-14T09:58:01Z"`, want},
		{"", `"2026-03-14T10:58:01+01:00"`, want},
		{"", `1773482281`, want},
		{"", `1773482281000`, want},
		{"", `1773482281000000`, want},
		{"", `1773482281000000000`, want},
		{"unix", `"1773482281.5"`, want.Add(500 * time.Millisecond)},
		{"unix_ms", `1773482281000`, want},
		{"unix_us", `1773482281000000`, want},
		{"unix_ns", `1773482281000000000`, want},
		{"rfc3339", `"2026-03-14T09:58:01.000Z"`, want},
		{"2006-01-02 15:04:05", `"2026-03-14 09:58:01"`, want},
	}
	for _, tt := range tests {
		f, err := ParseTimeFormat(tt.format)
		if err != nil {
			t.Fatal(err)
		}
		var d Doc
		if err := d.Parse([]byte(`{"t":` + tt.value + `}`)); err != nil {
			t.Fatal(err)
		}
		got, err := f.Parse(d.Field(0))
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("format %q value %s = %v, %v; want %v", tt.format, tt.value, got, err, tt.want)
		}
	}
	if _, err := ParseTimeFormat("no layout here"); err == nil {
		t.Error("ParseTimeFormat accepted a string with no layout elements")
	}
	f, _ := ParseTimeFormat("rfc3339")
	var d Doc
	_ = d.Parse([]byte(`{"t":"14/03/2026"}`))
	if _, err := f.Parse(d.Field(0)); err == nil {
		t.Error("rfc3339 accepted 14/03/2026")
	}
}

func records(n int) ([][]byte, []Meta) {
	g := testlogs.New(7)
	recs := g.Records("shardId-000000000001", 100, n)
	data := make([][]byte, n)
	metas := make([]Meta, n)
	for i, r := range recs {
		data[i] = r.Data
		metas[i] = Meta{Shard: r.ShardID, Sequence: r.SequenceNumber, SubSequence: uint64(i % 3), ArrivalTime: r.ArrivalTime, PartitionKey: r.PartitionKey}
		// Identities from two producers, and records without one (null kinlog_id).
		if i%7 != 3 {
			metas[i].ID = fmt.Appendf(nil, "p-%d/%d", i%2, i)
		}
	}
	// Odd records: text, pretty JSON, invalid UTF-8.
	data[1] = []byte("kernel: oops at 0xdeadbeef\n")
	data[2] = []byte("{\n \"msg\": \"pretty\",\n \"level\": \"WARN\"\n}\n")
	return data, metas
}

func build(t testing.TB, cfg Config, data [][]byte, metas []Meta) []byte {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o := e.NewObject()
	for i := range data {
		if err := o.Add(&metas[i], data[i], parse(t, data[i])); err != nil {
			t.Fatalf("Add record %d: %v", i, err)
		}
	}
	out, err := o.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNDJSONRoundTrip(t *testing.T) {
	data, metas := records(500)
	for _, c := range []Compression{CompressionDefault, CompressionGzip, CompressionZstd, CompressionSnappy, CompressionNone} {
		t.Run(c.String(), func(t *testing.T) {
			cfg := Config{Format: NDJSON, Compression: c}
			out := build(t, cfg, data, metas)
			if again := build(t, cfg, data, metas); !bytes.Equal(out, again) {
				t.Fatal("encoding the same records twice gave different bytes")
			}
			e, _ := New(cfg)
			body, err := Decompress(out, e.Config().Compression)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(body))
			i := 0
			for sc.Scan() {
				line := sc.Bytes()
				var got, want any
				if err := json.Unmarshal(line, &got); err != nil {
					t.Fatalf("line %d %q: %v", i, line, err)
				}
				switch i {
				case 1:
					want = map[string]any{"raw": string(Trim(data[1]))}
				default:
					if err := json.Unmarshal(data[i], &want); err != nil {
						t.Fatal(err)
					}
				}
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				if !bytes.Equal(gb, wb) {
					t.Fatalf("line %d = %s, want %s", i, gb, wb)
				}
				i++
			}
			if i != len(data) {
				t.Fatalf("read %d lines, want %d", i, len(data))
			}
		})
	}
	t.Run("extensions", func(t *testing.T) {
		for c, want := range map[Compression]string{CompressionDefault: ".json.gz", CompressionZstd: ".json.zst", CompressionSnappy: ".json.snappy", CompressionNone: ".json"} {
			e, _ := New(Config{Compression: c})
			if e.Extension() != want {
				t.Errorf("%v: extension %q, want %q", c, e.Extension(), want)
			}
		}
		e, _ := New(Config{Format: Parquet})
		if e.Extension() != ".parquet" || e.Config().Compression != CompressionZstd {
			t.Errorf("parquet: extension %q compression %v", e.Extension(), e.Config().Compression)
		}
	})
}

func TestParquetRoundTrip(t *testing.T) {
	// More rows than pqChunkRows, so that columns are written in several chunks and the
	// attributes span several pages.
	data, metas := records(2*pqChunkRows + 500)
	for _, c := range []Compression{CompressionZstd, CompressionSnappy} {
		t.Run(c.String(), func(t *testing.T) {
			cfg := Config{Format: Parquet, Compression: c}
			out := build(t, cfg, data, metas)
			if again := build(t, cfg, data, metas); !bytes.Equal(out, again) {
				t.Fatal("encoding the same records twice gave different bytes")
			}
			rows, err := ReadParquet(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != len(data) {
				t.Fatalf("read %d rows, want %d", len(rows), len(data))
			}
			for i, row := range rows {
				m := metas[i]
				if row.Shard != m.Shard || row.Sequence != m.Sequence || row.SubSequence != int64(m.SubSequence) ||
					!row.ArrivalTime.Equal(m.ArrivalTime) || row.PartitionKey != m.PartitionKey || row.KinlogID != string(m.ID) {
					t.Fatalf("row %d metadata = %+v, want %+v", i, row, m)
				}
				var want Log
				in := Trim(data[i])
				if _, err := DefaultFields.Split(&want, in, parse(t, in), nil); err != nil {
					t.Fatal(err)
				}
				if row.Level != want.Level || row.Service != want.Service || row.Message != want.Message || row.Attributes != string(want.Attributes) {
					t.Fatalf("row %d = %+v, want %+v", i, row, want)
				}
				if (row.Time == nil) != (want.Time == nil) || (row.Time != nil && !row.Time.Equal(*want.Time)) {
					t.Fatalf("row %d time = %v, want %v", i, row.Time, want.Time)
				}
			}
			if rows[1].Message != string(Trim(data[1])) || rows[1].Time != nil || rows[1].Attributes != "" {
				t.Errorf("text record row = %+v", rows[1])
			}
			if rows[2].Message != "pretty" || rows[2].Level != "WARN" {
				t.Errorf("pretty JSON row = %+v", rows[2])
			}
			checkFooter(t, out, c)
		})
	}
	t.Run("invalid UTF-8 is replaced", func(t *testing.T) {
		e, _ := New(Config{Format: Parquet})
		o := e.NewObject()
		bad := []byte("{\"msg\":\"a\xffb\"}")
		if err := o.Add(&Meta{}, bad, parse(t, bad)); err != nil {
			t.Fatalf("Add = %v", err)
		}
		out, err := o.Finish(nil)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := ReadParquet(out)
		if err != nil || len(rows) != 1 || rows[0].Message != "a\uFFFDb" {
			t.Fatalf("rows %+v, %v", rows, err)
		}
	})
	t.Run("kinlog_id", func(t *testing.T) {
		// The caller reuses the identity's bytes after Add: the encoder keeps a copy.
		ids := []string{"prod-1/0", "", "agent:/var/log/app.log/1024+88", "orig\xffin/7", "", "prod-1/1"}
		want := []string{"prod-1/0", "", "agent:/var/log/app.log/1024+88", "orig\uFFFDin/7", "", "prod-1/1"}
		e, _ := New(Config{Format: Parquet})
		o := e.NewObject()
		var buf []byte
		for i, id := range ids {
			buf = append(buf[:0], id...)
			rec := fmt.Appendf(nil, `{"msg":"m%d"}`, i)
			if err := o.Add(&Meta{ID: buf}, rec, parse(t, rec)); err != nil {
				t.Fatal(err)
			}
			copy(buf, "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
		}
		out, err := o.Finish(nil)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := ReadParquet(out)
		if err != nil || len(rows) != len(ids) {
			t.Fatalf("rows %+v, %v", rows, err)
		}
		var d Decoder
		recs, err := d.Decode(out, Config{Format: Parquet})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rows {
			if r.KinlogID != want[i] || d.ID(i) != want[i] {
				t.Errorf("row %d: kinlog_id %q, Decoder.ID %q, want %q", i, r.KinlogID, d.ID(i), want[i])
			}
			// The identity is not part of the record.
			if got := string(recs[i]); got != fmt.Sprintf(`{"msg":"m%d"}`, i) {
				t.Errorf("record %d = %s", i, got)
			}
		}
		// Nulls, not empty strings, where there is no identity.
		f, err := parquet.OpenFile(bytes.NewReader(out), int64(len(out)))
		if err != nil {
			t.Fatal(err)
		}
		cc := f.Metadata().RowGroups[0].Columns[pqKinlogID].MetaData
		if name := strings.Join(cc.PathInSchema, "."); name != "kinlog_id" || cc.Statistics.NullCount != 2 {
			t.Errorf("column %d is %s with %d nulls, want kinlog_id with 2", pqKinlogID, name, cc.Statistics.NullCount)
		}
		if _, err := d.Decode([]byte(`{"msg":"x"}`+"\n"), Config{Format: NDJSON, Compression: CompressionNone}); err != nil || d.ID(0) != "" {
			t.Errorf("NDJSON record has identity %q (%v)", d.ID(0), err)
		}
	})
}

// checkFooter inspects the file's footer as a standard reader sees it: magic bytes, column
// names, physical and logical types, the codec of every column chunk, created_by.
func checkFooter(t *testing.T, data []byte, c Compression) {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("PAR1")) || !bytes.HasSuffix(data, []byte("PAR1")) {
		t.Fatal("missing PAR1 magic")
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	md := f.Metadata()
	// The form parquet-mr's VersionParser reads (application, version, build).
	if !regexp.MustCompile(`^` + CreatedBy + `\s+version\s*` + regexp.QuoteMeta(ParquetLayoutVersion) + `\s*\(\s*build\s*[^)]*\)$`).MatchString(md.CreatedBy) {
		t.Errorf("created_by = %q", md.CreatedBy)
	}
	if name := f.Schema().Name(); name != "log" {
		t.Errorf("schema root is named %q, want log", name)
	}
	type col struct {
		typ      format.Type
		logical  string
		required bool
	}
	want := map[string]col{
		"time":          {format.Int64, "TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)", false},
		"level":         {format.ByteArray, "STRING", false},
		"service":       {format.ByteArray, "STRING", false},
		"message":       {format.ByteArray, "STRING", false},
		"attributes":    {format.ByteArray, "STRING", false},
		"shard":         {format.ByteArray, "STRING", true},
		"sequence":      {format.ByteArray, "STRING", true},
		"sub_sequence":  {format.Int64, "INT(64,true)", true},
		"arrival_time":  {format.Int64, "TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)", true},
		"partition_key": {format.ByteArray, "STRING", true},
		"layout":        {format.ByteArray, "STRING", false},
		"kinlog_id":     {format.ByteArray, "STRING", false},
	}
	seen := 0
	for _, el := range md.Schema[1:] {
		w, ok := want[el.Name]
		if !ok {
			t.Errorf("unexpected column %q", el.Name)
			continue
		}
		seen++
		if !el.Type.Valid || el.Type.V != w.typ {
			t.Errorf("column %s type %v, want %v", el.Name, el.Type, w.typ)
		}
		logical := el.LogicalType.String()
		if logical != w.logical {
			t.Errorf("column %s logical type %q, want %q", el.Name, logical, w.logical)
		}
		req := el.RepetitionType.Valid && el.RepetitionType.V == format.Required
		if req != w.required {
			t.Errorf("column %s required=%v, want %v", el.Name, req, w.required)
		}
	}
	if seen != len(want) {
		t.Errorf("footer has %d known columns, want %d", seen, len(want))
	}
	wantCodec := map[Compression]format.CompressionCodec{CompressionZstd: format.Zstd, CompressionSnappy: format.Snappy}[c]
	if len(md.RowGroups) != 1 {
		t.Errorf("%d row groups, want 1", len(md.RowGroups))
	}
	// The encodings chosen for log data (plus RLE for levels, PLAIN for dictionary pages).
	wantEnc := map[string]format.Encoding{
		"time": format.DeltaBinaryPacked, "sub_sequence": format.DeltaBinaryPacked,
		"arrival_time": format.DeltaBinaryPacked, "sequence": format.DeltaByteArray,
		"level": format.RLEDictionary, "service": format.RLEDictionary, "shard": format.RLEDictionary,
		"message": format.Plain, "attributes": format.Plain, "partition_key": format.Plain,
		"layout": format.RLEDictionary, "kinlog_id": format.DeltaByteArray,
	}
	for _, rg := range md.RowGroups {
		for _, cc := range rg.Columns {
			name := strings.Join(cc.MetaData.PathInSchema, ".")
			if cc.MetaData.Codec != wantCodec {
				t.Errorf("column %s codec %v, want %v", name, cc.MetaData.Codec, wantCodec)
			}
			if !slices.Contains(cc.MetaData.Encoding, wantEnc[name]) {
				t.Errorf("column %s encodings %v, want %v among them", name, cc.MetaData.Encoding, wantEnc[name])
			}
			if cc.MetaData.Statistics.MinValue == nil && cc.MetaData.Statistics.NullCount != rg.NumRows {
				t.Errorf("column %s has no min/max statistics", name)
			}
		}
	}
}

// TestParquetSchemaMatchesRow checks that the written schema and the reading type agree on
// every column's name, type and repetition (they differ only in encodings).
func TestParquetSchemaMatchesRow(t *testing.T) {
	read := parquet.SchemaOf(Row{})
	w, r := ParquetSchema.Fields(), read.Fields()
	if len(w) != len(r) {
		t.Fatalf("written schema has %d columns, Row %d", len(w), len(r))
	}
	// Columns are added at the end, so that readers by position of older files still work.
	if last := w[len(w)-1].Name(); last != "kinlog_id" || len(w) != pqColumns || w[pqKinlogID].Name() != last {
		t.Errorf("last column %s (of %d), want kinlog_id (column %d of %d)", last, len(w), pqKinlogID, pqColumns)
	}
	for i := range w {
		if w[i].Name() != r[i].Name() || w[i].Optional() != r[i].Optional() ||
			w[i].Type().Kind() != r[i].Type().Kind() || w[i].Type().String() != r[i].Type().String() {
			t.Errorf("column %d: written %s %v optional=%v, Row %s %v optional=%v", i,
				w[i].Name(), w[i].Type(), w[i].Optional(), r[i].Name(), r[i].Type(), r[i].Optional())
		}
	}
}

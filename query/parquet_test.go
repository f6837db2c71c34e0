package query

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/kinlog/kinlog/sinks/encode"
)

// TestParquetRecords checks the JSON records rebuilt from Parquet rows: columns first, a
// column winning over an attribute of the same name, attributes kept as written (numbers
// with every digit), and the Kinesis metadata under "kinesis".
func TestParquetRecords(t *testing.T) {
	arrival := time.Date(2026, 3, 14, 10, 0, 1, 500e6, time.UTC)
	in := []string{
		`{"time":"2026-03-14T10:00:00.123Z","level":"INFO","msg":"a \"q\" <b>","service":"api","n":12345678901234567890,"kinesis":"x"}`,
		`{"time":"yesterday","ts":1773482281,"msg":"m"}`,
		`plain text`,
		`{"level":{"x":1},"msg":null}`,
	}
	want := []string{
		`{"time":"2026-03-14T10:00:00.123Z","level":"INFO","service":"api","msg":"a \"q\" <b>","n":12345678901234567890}`,
		`{"time":"2026-03-14T09:58:01Z","msg":"m"}`,
		`{"msg":"plain text"}`,
		`{"level":{"x":1},"msg":null}`,
	}
	e, err := encode.New(encode.Config{Format: encode.Parquet})
	if err != nil {
		t.Fatal(err)
	}
	o := e.NewObject()
	for i, s := range in {
		var d encode.Doc
		_ = d.Parse([]byte(s))
		m := encode.Meta{Shard: "shardId-000000000001", Sequence: "4963" + string(rune('0'+i)), SubSequence: uint64(i), ArrivalTime: arrival, PartitionKey: "pk-\u00e9"}
		if err := o.Add(&m, []byte(s), &d); err != nil {
			t.Fatal(err)
		}
	}
	data, err := o.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := parquetRecords(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(in) {
		t.Fatalf("%d records, want %d", len(recs), len(in))
	}
	decode := func(b []byte) map[string]any {
		t.Helper()
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("%s is not one JSON object: %v", b, err)
		}
		return m
	}
	for i, rec := range recs {
		got, exp := decode(rec), decode([]byte(want[i]))
		exp["kinesis"] = map[string]any{"shard": "shardId-000000000001", "sequence": "4963" + string(rune('0'+i)),
			"sub_sequence": json.Number(string(rune('0' + i))), "arrival_time": "2026-03-14T10:00:01.5Z", "partition_key": "pk-\u00e9"}
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("record %d = %s\nwant %v", i, rec, exp)
		}
		if !bytes.HasPrefix(rec, []byte(want[i][:len(want[i])-1])) {
			t.Errorf("record %d = %s, want the columns first: %s", i, rec, want[i])
		}
	}
}

func BenchmarkParquetRecords(b *testing.B) {
	e, _ := encode.New(encode.Config{Format: encode.Parquet})
	o := e.NewObject()
	line := []byte(`{"time":"2026-03-14T10:00:00.123Z","level":"INFO","msg":"request served","service":"api","method":"GET","path":"/v1/users/3074/orders","status":200,"latency_ms":12.5,"trace_id":"e7bfd85d58c4ada68350d5f9deb1bbf2"}`)
	var d encode.Doc
	_ = d.Parse(line)
	for i := range 10000 {
		m := encode.Meta{Shard: "shardId-000000000001", Sequence: "49630000000000000000000000000000000000000000000000", SubSequence: uint64(i), ArrivalTime: time.Now(), PartitionKey: "pk"}
		_ = o.Add(&m, line, &d)
	}
	data, _ := o.Finish(nil)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parquetRecords(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10000), "ns/row")
}

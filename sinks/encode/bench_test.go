package encode

import (
	"testing"

	"github.com/parquet-go/parquet-go/compress"

	"github.com/kinlog/kinlog/sinks/internal/testlogs"
)

// benchInput is about 4 MiB of generated log lines with their metadata.
func benchInput(b *testing.B) ([][]byte, []Meta, int) {
	b.Helper()
	g := testlogs.New(1)
	recs := g.Records("shardId-000000000000", 1, 18000)
	data := make([][]byte, len(recs))
	metas := make([]Meta, len(recs))
	total := 0
	for i := range recs {
		data[i] = recs[i].Data
		metas[i] = Meta{Shard: recs[i].ShardID, Sequence: recs[i].SequenceNumber, ArrivalTime: recs[i].ArrivalTime, PartitionKey: recs[i].PartitionKey}
		total += len(recs[i].Data)
	}
	return data, metas, total
}

// encodeAll is the full encode path of one object: parse, add, compress.
func encodeAll(o *Builder, data [][]byte, metas []Meta, dst []byte) ([]byte, error) {
	o.Reset()
	var d Doc
	for i := range data {
		_ = d.Parse(Trim(data[i]))
		if err := o.Add(&metas[i], data[i], &d); err != nil {
			return nil, err
		}
	}
	return o.Finish(dst[:0])
}

func BenchmarkParse(b *testing.B) {
	data, _, total := benchInput(b)
	b.SetBytes(int64(total))
	b.ReportAllocs()
	var d Doc
	for b.Loop() {
		for _, r := range data {
			if err := d.Parse(Trim(r)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEncode measures encode+compress throughput over the input records' bytes, and
// BenchmarkCompressOnly the same codec alone over the same NDJSON bytes: the encoder's
// target is at least 0.8x the codec alone.
func BenchmarkEncode(b *testing.B) {
	data, metas, total := benchInput(b)
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"ndjson-gzip", Config{Format: NDJSON, Compression: CompressionGzip}},
		{"ndjson-zstd", Config{Format: NDJSON, Compression: CompressionZstd}},
		{"ndjson-snappy", Config{Format: NDJSON, Compression: CompressionSnappy}},
		{"ndjson-none", Config{Format: NDJSON, Compression: CompressionNone}},
		{"parquet-zstd", Config{Format: Parquet, Compression: CompressionZstd}},
		{"parquet-snappy", Config{Format: Parquet, Compression: CompressionSnappy}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := New(bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			var out []byte
			o := e.NewObject()
			b.SetBytes(int64(total))
			b.ReportAllocs()
			for b.Loop() {
				if out, err = encodeAll(o, data, metas, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(out)), "object-bytes")
			b.ReportMetric(float64(total)/float64(len(out)), "ratio")
		})
	}
}

// BenchmarkEncodeParsed measures the encoder alone on records already parsed: in the sink
// the parse is shared with partitioning and rollups, so this is the encoder's own cost.
func BenchmarkEncodeParsed(b *testing.B) {
	data, metas, total := benchInput(b)
	docs := make([]Doc, len(data))
	for i := range data {
		_ = docs[i].Parse(Trim(data[i]))
	}
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"ndjson-gzip", Config{Format: NDJSON, Compression: CompressionGzip}},
		{"ndjson-zstd", Config{Format: NDJSON, Compression: CompressionZstd}},
		{"parquet-zstd", Config{Format: Parquet, Compression: CompressionZstd}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := New(bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			o := e.NewObject()
			var out []byte
			b.SetBytes(int64(total))
			b.ReportAllocs()
			for b.Loop() {
				o.Reset()
				for i := range data {
					if err := o.Add(&metas[i], data[i], &docs[i]); err != nil {
						b.Fatal(err)
					}
				}
				if out, err = o.Finish(out[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(out)), "object-bytes")
		})
	}
}

func BenchmarkCompressOnly(b *testing.B) {
	data, _, total := benchInput(b)
	var raw []byte
	for _, r := range data {
		raw = append(raw, r...)
	}
	for _, c := range []Compression{CompressionGzip, CompressionZstd, CompressionSnappy} {
		b.Run(c.String(), func(b *testing.B) {
			var out []byte
			var err error
			b.SetBytes(int64(total))
			b.ReportAllocs()
			for b.Loop() {
				if out, err = Compress(out[:0], raw, c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(out)), "object-bytes")
			b.ReportMetric(float64(total)/float64(len(out)), "ratio")
		})
	}
}

// pageRecorder is a Parquet codec that keeps a copy of every page it compresses.
type pageRecorder struct {
	compress.Codec
	pages [][]byte
}

func (r *pageRecorder) Encode(dst, src []byte) ([]byte, error) {
	r.pages = append(r.pages, append([]byte(nil), src...))
	return r.Codec.Encode(dst, src)
}

// BenchmarkParquetPagesCompressOnly is zstd alone over exactly the page bytes the Parquet
// encoder compresses for the benchmark input (throughput still counted over the input
// records' bytes, as in BenchmarkEncode): the share of the Parquet path that is the codec.
func BenchmarkParquetPagesCompressOnly(b *testing.B) {
	data, metas, total := benchInput(b)
	e, err := New(Config{Format: Parquet})
	if err != nil {
		b.Fatal(err)
	}
	o := e.NewObject()
	var d Doc
	for i := range data {
		_ = d.Parse(Trim(data[i]))
		if err := o.Add(&metas[i], data[i], &d); err != nil {
			b.Fatal(err)
		}
	}
	rec := &pageRecorder{Codec: codecZstd}
	if _, err := writeParquetWith(nil, o.rows, rec); err != nil {
		b.Fatal(err)
	}
	pageBytes, out := 0, 0
	for _, p := range rec.pages {
		pageBytes += len(p)
	}
	var buf []byte
	b.SetBytes(int64(total))
	b.ReportAllocs()
	for b.Loop() {
		out = 0
		for _, p := range rec.pages {
			if buf, err = codecZstd.Encode(buf[:0], p); err != nil {
				b.Fatal(err)
			}
			out += len(buf)
		}
	}
	b.ReportMetric(float64(len(rec.pages)), "pages")
	b.ReportMetric(float64(pageBytes), "page-bytes")
	b.ReportMetric(float64(out), "compressed-bytes")
}

// BenchmarkDecode measures reading objects back into records (what the query does per
// object after fetching it), over the input records' bytes.
func BenchmarkDecode(b *testing.B) {
	data, metas, total := benchInput(b)
	for _, cfg := range []Config{{}, {Compression: CompressionZstd}, {Format: Parquet}} {
		e, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		obj, err := encodeAll(e.NewObject(), data, metas, nil)
		if err != nil {
			b.Fatal(err)
		}
		c, _ := ObjectConfig(e.Extension())
		b.Run(e.Extension()[1:], func(b *testing.B) {
			b.SetBytes(int64(total))
			b.ReportAllocs()
			var d Decoder
			for b.Loop() {
				recs, err := d.Decode(obj, c)
				if err != nil || len(recs) != len(data) {
					b.Fatalf("%d records, %v", len(recs), err)
				}
			}
		})
	}
}

package encode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kinlog/kinlog/internal/jsonx"
)

// Format is an object's file format.
type Format uint8

// The formats.
const (
	// NDJSON writes one record per line (see [Framing]).
	NDJSON Format = iota
	// Parquet writes a Parquet file with the log schema ([Row]).
	Parquet
)

func (f Format) String() string {
	switch f {
	case NDJSON:
		return "ndjson"
	case Parquet:
		return "parquet"
	}
	return fmt.Sprintf("format(%d)", f)
}

// ParseFormat reads a format name: ndjson (or json) or parquet.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "ndjson", "json", "jsonl":
		return NDJSON, nil
	case "parquet":
		return Parquet, nil
	}
	return 0, fmt.Errorf("encode: unknown format %q (want ndjson or parquet)", s)
}

// Framing says how NDJSON objects lay records out.
type Framing uint8

const (
	// FramingLines (the default) puts every record on its own line ending in "\n": a trailing
	// newline is not doubled, a JSON object spread over several lines is compacted onto one,
	// and a record that is not a JSON object (text, a bare JSON number, string or array) is
	// wrapped as {"raw":"<text>"}, without its surrounding whitespace, so that every line is a
	// JSON object, as table readers (Athena, DuckDB, Spark) need, and nothing is dropped.
	// Bytes that are not valid UTF-8 are replaced by U+FFFD, one per byte (as encoding/json
	// reads them), in both formats (see [Builder.Add]).
	FramingLines Framing = iota
	// FramingRaw writes each record's bytes exactly as received, with nothing added or
	// removed, for producers that delimit records themselves. Objects get the extension
	// ".raw" instead of ".json".
	FramingRaw
)

// Members of the JSON object that wraps a record that is not JSON.
const (
	RawField = "raw"
	// RawBase64Field held records that were not valid UTF-8 in archives written before
	// invalid bytes were replaced by U+FFFD. It is no longer written; readers may still
	// meet it in old objects.
	RawBase64Field = "raw_base64"
)

// Config chooses an object encoding. The zero value is NDJSON lines compressed with gzip.
type Config struct {
	// Format is the file format. Default: NDJSON.
	Format Format
	// Compression is the codec. Default: gzip for NDJSON, zstd for Parquet. Parquet accepts
	// zstd, snappy, gzip and none.
	Compression Compression
	// Framing is the NDJSON record layout. Default: [FramingLines].
	Framing Framing
	// Fields names the JSON members of the Parquet log schema. Default: [DefaultFields].
	Fields Fields
}

// Encoder builds objects of one encoding. It is safe for concurrent use.
type Encoder struct {
	cfg  Config
	pick *picker
	ext  string
	ct   string
}

// New validates cfg and returns an Encoder.
func New(cfg Config) (*Encoder, error) {
	if cfg.Compression == CompressionDefault {
		cfg.Compression = CompressionGzip
		if cfg.Format == Parquet {
			cfg.Compression = CompressionZstd
		}
	}
	if cfg.Compression > CompressionNone {
		return nil, fmt.Errorf("encode: unknown compression %v", cfg.Compression)
	}
	cfg.Fields = cfg.Fields.withDefaults()
	e := &Encoder{cfg: cfg, pick: cfg.Fields.picker()}
	switch cfg.Format {
	case NDJSON:
		if cfg.Framing > FramingRaw {
			return nil, fmt.Errorf("encode: unknown framing %d", cfg.Framing)
		}
	case Parquet:
		if _, err := parquetCodec(cfg.Compression); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("encode: unknown format %v", cfg.Format)
	}
	k, ok := kindOf(cfg)
	if !ok {
		return nil, fmt.Errorf("encode: no object extension for %v %v", cfg.Format, cfg.Compression)
	}
	e.ext, e.ct = k.ext, k.contentType
	return e, nil
}

// Config returns the encoder's configuration with defaults filled in.
func (e *Encoder) Config() Config { return e.cfg }

// Extension returns the object name suffix, such as ".json.gz" or ".parquet" (see
// [ObjectConfig] for the table).
func (e *Encoder) Extension() string { return e.ext }

// ContentType returns the MIME type of the objects (before Content-Encoding: a gzip NDJSON
// object is stored as application/x-ndjson compressed, without a Content-Encoding header so
// that clients do not decompress it on download).
func (e *Encoder) ContentType() string { return e.ct }

// NewObject starts an object.
func (e *Encoder) NewObject() *Builder {
	return &Builder{enc: e}
}

// Builder accumulates the records of one object. It is not safe for concurrent use.
type Builder struct {
	enc  *Encoder
	raw  []byte          // NDJSON body before compression
	rows *parquetColumns // Parquet rows
	n    int
}

// Reset empties the builder for reuse, keeping its buffers.
func (o *Builder) Reset() {
	o.raw = o.raw[:0]
	if o.rows != nil {
		o.rows.reset()
	}
	o.n = 0
}

// Len returns the number of records added.
func (o *Builder) Len() int { return o.n }

// Meta is a record's Kinesis metadata.
type Meta struct {
	Shard        string
	Sequence     string
	SubSequence  uint64
	ArrivalTime  time.Time
	PartitionKey string
	// ID is the record's kinlog identity as "<origin>/<seq>[+<span>]" (kpl.Identity's
	// String), or empty. Parquet stores it in the kinlog_id column (null when empty, bytes
	// that are not UTF-8 replaced by U+FFFD); NDJSON does not store it. Add copies it.
	ID []byte
}

// Add appends a record with its data and metadata. d must be the result of parsing
// [Trim](data) (the caller parses once and uses the document for other purposes too). Both
// formats store the same record: bytes that are not valid UTF-8 are replaced by U+FFFD,
// one per byte, and a record that is not a JSON object is kept as text (see
// [FramingLines]; Parquet stores it as the message). Add returns an error only for a record
// its format cannot hold; neither format refuses any record.
func (o *Builder) Add(m *Meta, data []byte, d *Doc) error {
	switch o.enc.cfg.Format {
	case NDJSON:
		o.raw = AppendLine(o.raw, data, d, o.enc.cfg.Framing)
	case Parquet:
		if o.rows == nil {
			o.rows = new(parquetColumns)
		}
		if err := o.rows.add(o.enc.pick, m, Trim(data), d); err != nil {
			return err
		}
	}
	o.n++
	return nil
}

// AppendLine appends a record's NDJSON form under framing fr to dst: see [FramingLines]. d
// must be the result of parsing [Trim](data).
func AppendLine(dst, data []byte, d *Doc, fr Framing) []byte {
	if fr == FramingRaw {
		return append(dst, data...)
	}
	t := Trim(data)
	if !splittable(t, d) {
		t, d = validUTF8(t)
	}
	switch {
	case d.Kind != Object:
		dst = append(dst, `{"`+RawField+`":`...)
		dst = jsonx.AppendString(dst, t)
		dst = append(dst, '}')
	case d.Multiline:
		b := bytes.NewBuffer(dst)
		if err := json.Compact(b, t); err != nil {
			// Unreachable: t was validated. Keep the record as text rather than lose it.
			return append(jsonx.AppendString(append(dst, `{"`+RawField+`":`...), t), '}', '\n')
		}
		dst = b.Bytes()
	default:
		dst = append(dst, t...)
	}
	return append(dst, '\n')
}

// validUTF8 returns a copy of data with every byte that is not part of a valid UTF-8
// sequence replaced by U+FFFD (one per byte, as encoding/json decodes such strings), and
// the copy parsed. Outside strings JSON is ASCII, so a JSON document stays one, with its
// strings repaired; text stays text.
func validUTF8(data []byte) ([]byte, *Doc) {
	out := appendUTF8(make([]byte, 0, len(data)+16), data)
	d := new(Doc)
	_ = d.Parse(out)
	return out, d
}

// appendUTF8 appends b to dst with every byte that is not part of a valid UTF-8 sequence
// replaced by U+FFFD, one per byte.
func appendUTF8(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, b[i:i+size]...)
		}
		i += size
	}
	return dst
}

// Finish encodes and compresses the object, appending it to dst. The bytes are a pure
// function of the records added and the configuration.
func (o *Builder) Finish(dst []byte) ([]byte, error) {
	switch o.enc.cfg.Format {
	case NDJSON:
		return Compress(dst, o.raw, o.enc.cfg.Compression)
	case Parquet:
		if o.rows == nil {
			o.rows = new(parquetColumns)
		}
		return writeParquet(dst, o.rows, o.enc.cfg.Compression)
	}
	return dst, fmt.Errorf("encode: unknown format %v", o.enc.cfg.Format)
}

// RawLen returns the size of the NDJSON body before compression (0 for Parquet).
func (o *Builder) RawLen() int { return len(o.raw) }

package encode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	pgzip "github.com/parquet-go/parquet-go/compress/gzip"
	psnappy "github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/uncompressed"
	pzstd "github.com/parquet-go/parquet-go/compress/zstd"
)

// Row is the Parquet log schema: one row per record. Strings are UTF-8; empty optional
// strings are stored as nulls. Timestamps are UTC.
//
//	time          TIMESTAMP(MICROS, UTC)  optional  the log's own timestamp
//	level         STRING (dictionary)      optional
//	service       STRING (dictionary)      optional
//	message       STRING                   optional
//	attributes    STRING (JSON object)     optional  the remaining members
//	shard         STRING (dictionary)      the Kinesis shard id
//	sequence      STRING                   the Kinesis sequence number
//	sub_sequence  INT64                    the index inside a KPL aggregate
//	arrival_time  TIMESTAMP(MILLIS, UTC)   Kinesis ApproximateArrivalTimestamp
//	partition_key STRING
//	layout        STRING (dictionary)      optional  how to rebuild the record's JSON
//	kinlog_id     STRING                   optional  the record's kinlog identity
//
// The layout column lets a reader give back the record as NDJSON archives it: the names
// and positions of the members the columns took (so "severity" comes back as "severity",
// in its place, not as "level" in front), whether a column held a string or other JSON, and
// how the time was written (a Go layout and zone offset, or an epoch unit). It is a small
// JSON object, the same for every record of a logger, so the dictionary stores it once. A
// time member whose text the time column cannot reproduce (an epoch with a fraction, more
// than microsecond digits, a zone name) stays in the attributes as well. Records that are
// not JSON objects have the layout {"r":1} and their text as the message. Files written
// before the column existed have no layout: readers then rebuild the columns under their
// schema names, first ([Decoder]).
//
// kinlog_id is the identity the producer or agent gave the record, "<origin>/<seq>" or
// "<origin>/<seq>+<span>" (see kpl.Identity), by which the archive sink drops duplicates:
// for audit, not part of the record ([Decoder.ID] gives it beside the record's JSON).
// It is null for a record without one, and in files written before the column existed
// (layout version 1.1.0 and earlier), which readers read with the column null.
//
// Files are written with row groups of [ParquetRowGroupRows] rows (a single row group
// before layout 1.3.0) and data pages v1. Timestamps and sub_sequence
// are DELTA_BINARY_PACKED, sequence and kinlog_id DELTA_BYTE_ARRAY (Parquet 2 encodings:
// Athena, Trino, DuckDB, Arrow and parquet-mr read them; Spark's vectorized reader does from
// 3.3); other strings are PLAIN or dictionary-encoded. Row is the type to read them with.
type Row struct {
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
	Layout       string     `parquet:"layout,optional"`
	KinlogID     string     `parquet:"kinlog_id,optional"`
}

// writeRow declares the schema the encoder writes: the columns of [Row], in its order, with
// encodings chosen for log data. Timestamps and sub-sequence numbers are DELTA_BINARY_PACKED
// (a few bits per row instead of eight bytes); sequence numbers, long decimal strings that
// share their leading digits, and kinlog identities, an origin and a position that differ
// from the previous row's in their last digits, are DELTA_BYTE_ARRAY; level, service and
// shard are dictionaries. Values are never written through this type: the encoder writes
// columns directly (see [parquetColumns]).
type writeRow struct {
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
	KinlogID     string `parquet:"kinlog_id,optional,delta"`
}

// ParquetSchema is the schema of the files the encoder writes. Its columns, types and
// repetition are those of [Row], which reads them.
var ParquetSchema = parquet.NewSchema("log", parquet.SchemaOf(writeRow{}))

// The columns of [ParquetSchema], in order.
const (
	pqTime = iota
	pqLevel
	pqService
	pqMessage
	pqAttributes
	pqShard
	pqSequence
	pqSubSequence
	pqArrivalTime
	pqPartitionKey
	pqLayout
	pqKinlogID
	pqColumns
)

// CreatedBy is the application named in the created_by of Parquet footers, followed by
// "version" and [ParquetLayoutVersion] as parquet-mr's parser expects (a created_by it cannot
// parse makes Spark and Hive ignore string column statistics).
const CreatedBy = "kinlog"

// ParquetLayoutVersion versions the files' layout (schema, encodings, page settings). It is
// a constant, not the build's version, so that a replay by another build writes the same
// bytes unless the layout changed. 1.2.0 added the kinlog_id column; 1.3.0 cut files into
// row groups of [ParquetRowGroupRows] rows (before, one row group per file), with the same
// schema.
const ParquetLayoutVersion = "1.3.0"

// byteColumn holds the values of a string column back to back.
type byteColumn struct {
	buf  []byte
	ends []int
}

func (c *byteColumn) add(b []byte) {
	c.buf = append(c.buf, b...)
	c.ends = append(c.ends, len(c.buf))
}

func (c *byteColumn) reset() {
	c.buf = c.buf[:0]
	c.ends = c.ends[:0]
}

// parquetColumns accumulates an object's rows column by column, copying what it keeps, so
// that a record's bytes are not retained after Add and no per-row value is allocated.
type parquetColumns struct {
	time    []int64 // microseconds; meaningful where hasTime
	hasTime []bool
	// text holds level, service and message; empty values are written as nulls.
	text                          [numTextCols]byteColumn
	attributes                    byteColumn
	shard, sequence, partitionKey byteColumn
	subSequence, arrivalTime      []int64 // arrival time in milliseconds
	layout                        byteColumn
	kinlogID                      byteColumn // empty: no identity (null)
	cols                          columns
	values                        []parquet.Value
	zones                         zones
	scratch                       []byte
}

func (p *parquetColumns) reset() {
	p.time, p.hasTime = p.time[:0], p.hasTime[:0]
	for i := range p.text {
		p.text[i].reset()
	}
	p.attributes.reset()
	p.shard.reset()
	p.sequence.reset()
	p.partitionKey.reset()
	p.subSequence, p.arrivalTime = p.subSequence[:0], p.arrivalTime[:0]
	p.layout.reset()
	p.kinlogID.reset()
}

// add appends one record, split by pk, with invalid UTF-8 replaced (see [Builder.Add]).
func (p *parquetColumns) add(pk *picker, m *Meta, data []byte, d *Doc) error {
	if !splittable(data, d) {
		data, d = validUTF8(data)
	}
	c := &p.cols
	if d.Kind == Object {
		pk.pick(d, c)
	} else {
		*c = columns{text: [numTextCols]int{-1, -1, -1}, timeIdx: -1}
	}
	var micros int64
	var form timeForm
	if c.hasTime {
		micros = c.time.UnixMicro()
		if c.timeIdx >= 0 {
			// The time member leaves the attributes only if the column gives its text back:
			// readers (parquet-go among them) go through int64 nanoseconds, so a time past
			// 2262 or before 1678 cannot come back.
			ok := micros <= math.MaxInt64/1000 && micros >= math.MinInt64/1000
			stored := time.UnixMicro(micros).UTC()
			if ok {
				form, ok = pk.f.TimeFormat.formOf(d.Field(c.timeIdx), stored, &p.zones, &p.scratch)
			}
			if !ok {
				c.unconsume(c.timeIdx)
				c.timeIdx = -1
			}
		}
	}
	p.time = append(p.time, micros)
	p.hasTime = append(p.hasTime, c.hasTime)
	for col := range p.text {
		t := &p.text[col]
		if col == colMessage && d.Kind != Object {
			t.buf = append(t.buf, data...)
		} else {
			t.buf = c.appendText(t.buf, d, col)
		}
		t.ends = append(t.ends, len(t.buf))
	}
	if d.Kind == Object {
		p.attributes.buf = c.appendAttributes(p.attributes.buf, d)
	}
	p.attributes.ends = append(p.attributes.ends, len(p.attributes.buf))
	p.layout.buf = appendLayout(p.layout.buf, d, c, form)
	p.layout.ends = append(p.layout.ends, len(p.layout.buf))
	p.shard.add([]byte(m.Shard))
	p.sequence.add([]byte(m.Sequence))
	p.partitionKey.add([]byte(m.PartitionKey))
	p.subSequence = append(p.subSequence, int64(m.SubSequence))
	p.arrivalTime = append(p.arrivalTime, m.ArrivalTime.UnixMilli())
	if utf8.Valid(m.ID) {
		p.kinlogID.add(m.ID)
	} else {
		// An origin comes off the wire as bytes: store it as the archive stores other text.
		p.kinlogID.buf = appendUTF8(p.kinlogID.buf, m.ID)
		p.kinlogID.ends = append(p.kinlogID.ends, len(p.kinlogID.buf))
	}
	return nil
}

// pqChunkRows is how many rows are handed to a column writer at a time. The writer cuts a
// page when its buffer passes the page size after a call, so this bounds pages to the page
// size plus one chunk's values.
const pqChunkRows = 1024

// ParquetRowGroupRows is how many rows a row group of the files the encoder writes holds
// (the last one fewer): small enough that a reader skips a row group by its statistics
// (a time range) or its dictionaries (a level no row of it has) without reading the other
// columns, large enough that per-row-group overhead (footer metadata, a dictionary page per
// column) stays small. An archive object of a shard's batch holds records in about arrival
// order, so its row groups cover short, mostly disjoint time spans.
const ParquetRowGroupRows = 32 << 10

// write encodes the rows column by column into w, a row group of ParquetRowGroupRows rows at
// a time.
func (p *parquetColumns) write(w *parquet.GenericWriter[writeRow]) error {
	n := len(p.time)
	for lo := 0; ; lo += ParquetRowGroupRows {
		hi := min(lo+ParquetRowGroupRows, n)
		if err := p.writeGroup(w, lo, hi); err != nil {
			return err
		}
		if hi >= n {
			return nil // Close writes the last row group
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing Parquet row group: %w", err)
		}
	}
}

// writeGroup writes rows [lo, hi) column by column into w's current row group.
func (p *parquetColumns) writeGroup(w *parquet.GenericWriter[writeRow], lo, hi int) error {
	cws := w.ColumnWriters()
	if len(cws) != pqColumns {
		return fmt.Errorf("encode: Parquet writer has %d columns, want %d", len(cws), pqColumns)
	}
	for col, cw := range cws {
		var err error
		switch col {
		case pqTime:
			err = p.writeInt64s(cw, col, p.time[lo:hi], p.hasTime[lo:hi])
		case pqLevel, pqService, pqMessage:
			err = p.writeBytes(cw, col, &p.text[col-pqLevel], lo, hi, true)
		case pqAttributes:
			err = p.writeBytes(cw, col, &p.attributes, lo, hi, true)
		case pqShard:
			err = p.writeBytes(cw, col, &p.shard, lo, hi, false)
		case pqSequence:
			err = p.writeBytes(cw, col, &p.sequence, lo, hi, false)
		case pqSubSequence:
			err = p.writeInt64s(cw, col, p.subSequence[lo:hi], nil)
		case pqArrivalTime:
			err = p.writeInt64s(cw, col, p.arrivalTime[lo:hi], nil)
		case pqPartitionKey:
			err = p.writeBytes(cw, col, &p.partitionKey, lo, hi, false)
		case pqLayout:
			err = p.writeBytes(cw, col, &p.layout, lo, hi, true)
		case pqKinlogID:
			err = p.writeBytes(cw, col, &p.kinlogID, lo, hi, true)
		}
		if err != nil {
			return fmt.Errorf("writing Parquet column %s: %w", ParquetSchema.Fields()[col].Name(), err)
		}
	}
	return nil
}

// writeBytes writes rows [from, to) of a string column; when optional, empty values are
// nulls.
func (p *parquetColumns) writeBytes(cw *parquet.ColumnWriter, col int, c *byteColumn, from, to int, optional bool) error {
	def := 0
	if optional {
		def = 1
	}
	for lo := from; lo < to; lo += pqChunkRows {
		vals := p.values[:0]
		start := 0
		if lo > 0 {
			start = c.ends[lo-1]
		}
		for _, end := range c.ends[lo:min(lo+pqChunkRows, to)] {
			var v parquet.Value
			if end > start || !optional {
				v = parquet.ByteArrayValue(c.buf[start:end:end])
				v.SetDefinitionLevel(def)
			}
			v.SetColumnIndex(col)
			vals = append(vals, v)
			start = end
		}
		p.values = vals
		if _, err := cw.WriteRowValues(vals); err != nil {
			return err
		}
	}
	return nil
}

// writeInt64s writes an INT64 column; with present, the column is optional and the values
// where present is false are nulls.
func (p *parquetColumns) writeInt64s(cw *parquet.ColumnWriter, col int, c []int64, present []bool) error {
	for lo := 0; lo < len(c); lo += pqChunkRows {
		hi := min(lo+pqChunkRows, len(c))
		vals := p.values[:0]
		for i, x := range c[lo:hi] {
			var v parquet.Value
			switch {
			case present == nil:
				v = parquet.Int64Value(x)
			case present[lo+i]:
				v = parquet.Int64Value(x)
				v.SetDefinitionLevel(1)
			}
			v.SetColumnIndex(col)
			vals = append(vals, v)
		}
		p.values = vals
		if _, err := cw.WriteRowValues(vals); err != nil {
			return err
		}
	}
	return nil
}

var (
	codecZstd   = &pzstd.Codec{Level: ZstdLevel, Concurrency: 1}
	codecSnappy = &psnappy.Codec{}
	codecGzip   = &pgzip.Codec{Level: GzipLevel}
	codecNone   = &uncompressed.Codec{}
)

func parquetCodec(c Compression) (compress.Codec, error) {
	switch c {
	case CompressionZstd, CompressionDefault:
		return codecZstd, nil
	case CompressionSnappy:
		return codecSnappy, nil
	case CompressionGzip:
		return codecGzip, nil
	case CompressionNone:
		return codecNone, nil
	}
	return nil, fmt.Errorf("encode: Parquet cannot use compression %v", c)
}

// writeParquet writes the rows as one Parquet file with row groups of ParquetRowGroupRows
// rows, data pages v1 (the most widely readable) and page statistics.
func writeParquet(dst []byte, rows *parquetColumns, c Compression) ([]byte, error) {
	codec, err := parquetCodec(c)
	if err != nil {
		return dst, err
	}
	return writeParquetWith(dst, rows, codec)
}

func writeParquetWith(dst []byte, rows *parquetColumns, codec compress.Codec) ([]byte, error) {
	b := bytes.NewBuffer(dst)
	w := parquet.NewGenericWriter[writeRow](b,
		ParquetSchema,
		parquet.Compression(codec),
		parquet.CreatedBy(CreatedBy, ParquetLayoutVersion, "-"),
		parquet.DataPageVersion(1),
		parquet.DataPageStatistics(true),
		parquet.MaxRowsPerRowGroup(math.MaxInt64),
	)
	if err := rows.write(w); err != nil {
		return dst, err
	}
	if err := w.Close(); err != nil {
		return dst, fmt.Errorf("closing Parquet file: %w", err)
	}
	return b.Bytes(), nil
}

// ReadParquet reads every row of a Parquet file written with the log schema.
func ReadParquet(data []byte) ([]Row, error) {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("opening Parquet file: %w", err)
	}
	r := parquet.NewGenericReader[Row](f)
	defer r.Close()
	rows := make([]Row, f.NumRows())
	n, err := r.Read(rows)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading Parquet rows: %w", err)
	}
	return rows[:n], nil
}

package encode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

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
}

// ParquetSchema is the schema of [Row].
var ParquetSchema = parquet.SchemaOf(Row{})

// CreatedBy is the created_by string written in Parquet footers.
const CreatedBy = "kinlog"

func makeRow(m *Meta, l *Log) Row {
	row := Row{
		Level:        l.Level,
		Service:      l.Service,
		Message:      l.Message,
		Shard:        m.Shard,
		Sequence:     m.Sequence,
		SubSequence:  int64(m.SubSequence),
		ArrivalTime:  m.ArrivalTime.UTC().Truncate(time.Millisecond),
		PartitionKey: m.PartitionKey,
	}
	if l.Time != nil {
		t := l.Time.UTC().Truncate(time.Microsecond)
		row.Time = &t
	}
	if l.Attributes != nil {
		row.Attributes = string(l.Attributes)
	}
	return row
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

// writeParquet writes rows as one Parquet file with a single row group, data pages v1 (the
// most widely readable) and page statistics.
func writeParquet(dst []byte, rows []Row, c Compression) ([]byte, error) {
	codec, err := parquetCodec(c)
	if err != nil {
		return dst, err
	}
	b := bytes.NewBuffer(dst)
	w := parquet.NewGenericWriter[Row](b,
		ParquetSchema,
		parquet.Compression(codec),
		parquet.CreatedBy(CreatedBy, "", ""),
		parquet.DataPageVersion(1),
		parquet.DataPageStatistics(true),
	)
	if _, err := w.Write(rows); err != nil {
		return dst, fmt.Errorf("writing Parquet rows: %w", err)
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

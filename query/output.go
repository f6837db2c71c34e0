package query

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/kinlog/kinlog/internal/jsonx"
	"github.com/kinlog/kinlog/sinks/encode"
)

// Format is an output format of query results.
type Format string

// Output formats.
const (
	NDJSON Format = "ndjson"
	Table  Format = "table"
	CSV    Format = "csv"
)

// ParseFormat parses an output format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case NDJSON, Table, CSV:
		return f, nil
	}
	return "", fmt.Errorf("unknown output format %q (want ndjson, table or csv)", s)
}

// DefaultColumns are the columns of table and CSV output when no fields are selected.
var DefaultColumns = []string{"time", "level", "service", "msg"}

// tableFlushRows bounds how many rows the table writer aligns before it prints them, so that
// results stream instead of waiting for the end of the query.
const tableFlushRows = 100

// Writer writes matching records in one format. It is not safe for concurrent use.
type Writer struct {
	format Format
	fields []string
	doc    encode.Doc
	bw     *bufio.Writer
	tw     *tabwriter.Writer
	cw     *csv.Writer
	rows   int
	buf    []byte
	row    []string
}

// NewWriter returns a Writer of format to w. fields selects (and orders) the fields to print,
// found as filters find them (see [Cond]); nil prints whole records as NDJSON, or
// [DefaultColumns] as a table or CSV.
func NewWriter(w io.Writer, format Format, fields []string) (*Writer, error) {
	for _, f := range fields {
		if err := checkField(f); err != nil {
			return nil, fmt.Errorf("--select: %w", err)
		}
	}
	if len(fields) == 0 && format != NDJSON {
		fields = DefaultColumns
	}
	o := &Writer{format: format, fields: fields, bw: bufio.NewWriterSize(w, 64<<10)}
	switch format {
	case NDJSON:
	case Table:
		o.tw = tabwriter.NewWriter(o.bw, 0, 8, 2, ' ', 0)
		o.writeRow(upper(fields))
	case CSV:
		o.cw = csv.NewWriter(o.bw)
		if err := o.cw.Write(fields); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown output format %q", format)
	}
	return o, nil
}

func upper(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToUpper(s)
	}
	return out
}

// Write writes one JSON record.
func (o *Writer) Write(rec []byte) error {
	switch o.format {
	case NDJSON:
		if o.fields == nil {
			o.bw.Write(rec)
			return o.bw.WriteByte('\n')
		}
		o.buf = append(o.buf[:0], '{')
		n := 0
		_ = o.doc.Parse(rec)
		for _, name := range o.fields {
			f, ok := lookup(&o.doc, name)
			if !ok {
				continue
			}
			if n > 0 {
				o.buf = append(o.buf, ',')
			}
			o.buf = jsonx.AppendString(o.buf, name)
			o.buf = append(o.buf, ':')
			o.buf = append(o.buf, f.Value...)
			n++
		}
		o.buf = append(o.buf, '}', '\n')
		_, err := o.bw.Write(o.buf)
		return err
	case Table:
		o.writeRow(o.values(rec, true))
		o.rows++
		if o.rows%tableFlushRows == 0 {
			return o.tw.Flush()
		}
		return nil
	default:
		return o.cw.Write(o.values(rec, false))
	}
}

func (o *Writer) values(rec []byte, oneLine bool) []string {
	o.row = o.row[:0]
	_ = o.doc.Parse(rec)
	for _, name := range o.fields {
		var v string
		if f, ok := lookup(&o.doc, name); ok {
			o.buf = appendScalar(o.buf[:0], &f)
			v = string(o.buf)
		}
		if oneLine {
			v = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(v)
		}
		o.row = append(o.row, v)
	}
	return o.row
}

func (o *Writer) writeRow(cells []string) {
	fmt.Fprintln(o.tw, strings.Join(cells, "\t"))
}

// Close flushes buffered output.
func (o *Writer) Close() error {
	switch o.format {
	case Table:
		if err := o.tw.Flush(); err != nil {
			return err
		}
	case CSV:
		o.cw.Flush()
		if err := o.cw.Error(); err != nil {
			return err
		}
	}
	return o.bw.Flush()
}

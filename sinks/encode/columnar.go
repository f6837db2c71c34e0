package encode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/parquet-go/parquet-go"

	"github.com/kinlog/kinlog/internal/jsonx"
)

// A Column names a column of the Parquet log schema that [ParquetObject] reads.
type Column uint8

// The columns a reader can ask for (see [Row]).
const (
	ColTime Column = iota
	ColLevel
	ColService
	ColMessage
	ColAttributes
	ColLayout
	ColKinlogID
	numReadCols
)

// Columns is a set of [Column]s.
type Columns uint16

// Has reports whether the set holds c.
func (s Columns) Has(c Column) bool { return s&(1<<c) != 0 }

// With returns the set with c added.
func (s Columns) With(c Column) Columns { return s | 1<<c }

// RecordColumns are the columns a record is rebuilt from ([RowGroup.AppendRecord]).
const RecordColumns Columns = 1<<ColTime | 1<<ColLevel | 1<<ColService | 1<<ColMessage | 1<<ColAttributes | 1<<ColLayout

var readColNames = [numReadCols]string{"time", "level", "service", "message", "attributes", "layout", "kinlog_id"}

// ParquetObject is a Parquet archive object opened to be read column by column: a row group
// at a time, only the columns asked for, with the row groups' statistics to skip what
// cannot match. Records rebuilt from it ([RowGroup.AppendRecord]) are the bytes
// [Decoder.Decode] gives. Files of every layout version are read; columns a file does not
// have (layout before 1.1.0, kinlog_id before 1.2.0) read as nulls.
type ParquetObject struct {
	f    *parquet.File
	leaf [numReadCols]int // leaf column index in the file, or -1
}

// OpenParquetObject opens an object's stored bytes. data must not change while the object
// or a [RowGroup] read from it is used.
func OpenParquetObject(data []byte) (*ParquetObject, error) {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)), parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, fmt.Errorf("opening Parquet file: %w", err)
	}
	o := &ParquetObject{f: f}
	for c, name := range readColNames {
		o.leaf[c] = -1
		if lc, ok := f.Schema().Lookup(name); ok && lc.Node.Leaf() {
			o.leaf[c] = lc.ColumnIndex
		}
	}
	if o.leaf[ColTime] >= 0 {
		if t := f.Schema().Fields()[o.leaf[ColTime]].Type(); t.Kind() != parquet.Int64 {
			return nil, fmt.Errorf("opening Parquet file: column time is %v, want INT64", t)
		}
	}
	return o, nil
}

// NumRowGroups returns the number of row groups.
func (o *ParquetObject) NumRowGroups() int { return len(o.f.RowGroups()) }

// NumRows returns the number of rows of the object.
func (o *ParquetObject) NumRows() int64 { return o.f.NumRows() }

// HasLayout reports whether the file has the layout column (every file since layout 1.1.0).
// Without it, records are rebuilt under the columns' schema names ([Decoder]).
func (o *ParquetObject) HasLayout() bool { return o.leaf[ColLayout] >= 0 }

// HasColumn reports whether the file has column c.
func (o *ParquetObject) HasColumn(c Column) bool { return o.leaf[c] >= 0 }

// TimeBounds returns the smallest and largest time (Unix microseconds) in row group g, from
// the row group's statistics, and how many rows have no time. ok is false when the file
// does not say.
func (o *ParquetObject) TimeBounds(g int) (lo, hi int64, nulls int64, ok bool) {
	if o.leaf[ColTime] < 0 {
		return 0, 0, o.f.RowGroups()[g].NumRows(), true
	}
	md := o.f.Metadata()
	if g >= len(md.RowGroups) || o.leaf[ColTime] >= len(md.RowGroups[g].Columns) {
		return 0, 0, 0, false
	}
	st := &md.RowGroups[g].Columns[o.leaf[ColTime]].MetaData.Statistics
	mn, mx := st.MinValue, st.MaxValue
	if len(mn) != 8 || len(mx) != 8 {
		if st.NullCount == md.RowGroups[g].NumRows {
			return 0, 0, st.NullCount, true
		}
		return 0, 0, 0, false
	}
	return int64(binary.LittleEndian.Uint64(mn)), int64(binary.LittleEndian.Uint64(mx)), st.NullCount, true
}

// StringColumn is a string column of a row group: each row's value is an entry of a table
// (the column chunk's dictionary, then the values of pages not dictionary-encoded).
// Nulls read as the empty string, as [Row] reads them.
type StringColumn struct {
	data []byte
	ends []uint32 // entry k is data[ends[k-1]:ends[k]]
	idx  []int32  // each row's entry, -1 for null
	dict int      // entries that come from the dictionary
}

// Entries returns the number of entries of the column's table.
func (c *StringColumn) Entries() int { return len(c.ends) }

// Entry returns entry k of the table.
func (c *StringColumn) Entry(k int) []byte {
	if k < 0 {
		return nil
	}
	start := uint32(0)
	if k > 0 {
		start = c.ends[k-1]
	}
	return c.data[start:c.ends[k]:c.ends[k]]
}

// Index returns the entry of row i, or -1 when it is null.
func (c *StringColumn) Index(i int) int32 {
	if i >= len(c.idx) {
		return -1
	}
	return c.idx[i]
}

// HasNull reports whether some row is null.
func (c *StringColumn) HasNull() bool { return slices.Contains(c.idx, -1) }

// Value returns row i's value ("" for null).
func (c *StringColumn) Value(i int) []byte { return c.Entry(int(c.Index(i))) }

// Dictionary reports whether every row's value is a dictionary entry, so that a test of
// the value can be made once per entry.
func (c *StringColumn) Dictionary() bool { return len(c.ends) == c.dict }

func (c *StringColumn) reset() {
	c.data, c.ends, c.idx, c.dict = c.data[:0], c.ends[:0], c.idx[:0], 0
}

func (c *StringColumn) add(b []byte) int32 {
	c.data = append(c.data, b...)
	c.ends = append(c.ends, uint32(len(c.data)))
	return int32(len(c.ends) - 1)
}

// RowGroup holds the columns read from one row group. Reuse one to reuse its buffers; it
// is not safe for concurrent use.
type RowGroup struct {
	// Rows is the number of rows.
	Rows int
	// Read is the set of columns read.
	Read Columns
	// times holds each row's time in Unix microseconds, valid where hasTime (both empty
	// when the file has no time column).
	times   []int64
	hasTime []bool
	// Strings holds the string columns read, by [Column] (ColTime's is unused).
	Strings [numReadCols]StringColumn

	obj       *ParquetObject
	group     int
	hasLayout bool
	layouts   []*layout // parsed layout entries, by entry index (nil: not parsed yet)
	layoutErr []error
	dec       Decoder // scratch for rebuilding records
	row       Row
	t         time.Time
	attrs     Doc
	attrsRow  int
	scratch   []byte
	canon     []byte
	tmp       []byte
}

// ReadRowGroup reads the columns cols of row group g into rg. Columns of g that rg holds
// from an earlier call are kept, not read again: a reader can read the columns a filter
// needs, then the others only for row groups where some row matched.
func (o *ParquetObject) ReadRowGroup(g int, cols Columns, rg *RowGroup) error {
	rgs := o.f.RowGroups()
	if g < 0 || g >= len(rgs) {
		return fmt.Errorf("reading Parquet row group %d: the file has %d", g, len(rgs))
	}
	grp := rgs[g]
	if rg.obj != o || rg.group != g {
		rg.obj, rg.group, rg.Read = o, g, 0
		rg.Rows, rg.hasLayout = int(grp.NumRows()), o.leaf[ColLayout] >= 0
		rg.attrsRow = -1
	}
	chunks := grp.ColumnChunks()
	for c := range numReadCols {
		if !cols.Has(c) || rg.Read.Has(c) {
			continue
		}
		var err error
		switch {
		case c == ColTime && o.leaf[c] < 0:
			rg.times, rg.hasTime = rg.times[:0], rg.hasTime[:0] // every row null
		case c == ColTime:
			err = readInt64s(chunks[o.leaf[c]], rg)
		case o.leaf[c] < 0:
			rg.Strings[c].reset() // every row null (Index says -1 past the end)
		default:
			err = readStrings(chunks[o.leaf[c]], &rg.Strings[c], rg.Rows)
		}
		if err != nil {
			rg.obj = nil // half read
			return fmt.Errorf("reading Parquet column %s of row group %d: %w", readColNames[c], g, err)
		}
		if c == ColLayout {
			n := rg.Strings[ColLayout].Entries()
			rg.layouts = append(rg.layouts[:0], make([]*layout, n)...)
			rg.layoutErr = append(rg.layoutErr[:0], make([]error, n)...)
		}
		rg.Read = rg.Read.With(c)
	}
	return nil
}

// readInt64s reads the optional INT64 time column.
func readInt64s(cc parquet.ColumnChunk, rg *RowGroup) error {
	rg.times, rg.hasTime = rg.times[:0], rg.hasTime[:0]
	pages := cc.Pages()
	defer pages.Close()
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		data := p.Data()
		vals := data.Int64()
		defs := p.DefinitionLevels()
		if len(defs) == 0 {
			rg.times = append(rg.times, vals...)
			for range vals {
				rg.hasTime = append(rg.hasTime, true)
			}
		} else {
			k := 0
			for _, d := range defs {
				if d > 0 && k < len(vals) {
					rg.times = append(rg.times, vals[k])
					rg.hasTime = append(rg.hasTime, true)
					k++
				} else {
					rg.times = append(rg.times, 0)
					rg.hasTime = append(rg.hasTime, false)
				}
			}
			if k != len(vals) {
				parquet.Release(p)
				return errors.New("definition levels do not match the values")
			}
		}
		parquet.Release(p)
	}
	if len(rg.times) != rg.Rows {
		return fmt.Errorf("read %d values for %d rows", len(rg.times), rg.Rows)
	}
	return nil
}

// readStrings reads a BYTE_ARRAY column, dictionary-encoded or not.
func readStrings(cc parquet.ColumnChunk, s *StringColumn, rows int) error {
	s.reset()
	pages := cc.Pages()
	defer pages.Close()
	var dict parquet.Dictionary
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		defs := p.DefinitionLevels()
		data := p.Data()
		var idx func(k int) int32
		nvals := 0
		if d := p.Dictionary(); d != nil {
			if dict == nil {
				if len(s.ends) > 0 {
					parquet.Release(p)
					return errors.New("a dictionary after plain pages")
				}
				dict = d
				dv := d.Page().Data()
				b, offs := dv.ByteArray()
				for k := 0; k+1 < len(offs); k++ {
					s.add(b[offs[k]:offs[k+1]])
				}
				s.dict = len(s.ends)
			} else if d != dict {
				parquet.Release(p)
				return errors.New("two dictionaries in one column chunk")
			}
			ix := data.Int32()
			nvals = len(ix)
			for _, k := range ix {
				if k < 0 || int(k) >= s.dict {
					parquet.Release(p)
					return fmt.Errorf("dictionary index %d out of range", k)
				}
			}
			idx = func(k int) int32 { return ix[k] }
		} else {
			b, offs := data.ByteArray()
			if len(offs) == 0 {
				nvals = 0
			} else {
				nvals = len(offs) - 1
			}
			first := int32(len(s.ends))
			for k := range nvals {
				s.add(b[offs[k]:offs[k+1]])
			}
			idx = func(k int) int32 { return first + int32(k) }
		}
		if len(defs) == 0 {
			for k := range nvals {
				s.idx = append(s.idx, idx(k))
			}
		} else {
			k := 0
			for _, d := range defs {
				if d > 0 && k < nvals {
					s.idx = append(s.idx, idx(k))
					k++
				} else {
					s.idx = append(s.idx, -1)
				}
			}
			if k != nvals {
				parquet.Release(p)
				return errors.New("definition levels do not match the values")
			}
		}
		parquet.Release(p)
	}
	if len(s.idx) != rows {
		return fmt.Errorf("read %d values for %d rows", len(s.idx), rows)
	}
	return nil
}

// layoutAt returns the parsed layout entry key, or nil for rows without one (key -1, or a
// file written before the layout column).
func (rg *RowGroup) layoutAt(key int32) (*layout, error) {
	if !rg.hasLayout || key < 0 || int(key) >= len(rg.layouts) {
		return nil, nil
	}
	if l := rg.layouts[key]; l != nil || rg.layoutErr[key] != nil {
		return l, rg.layoutErr[key]
	}
	l, err := rg.dec.layout(string(rg.Strings[ColLayout].Entry(int(key))))
	rg.layouts[key], rg.layoutErr[key] = l, err
	return l, err
}

// LayoutKey returns the layout column's entry of row i: rows with the same key have records
// of the same layout (the same members in the same columns), so that callers can do work
// once per key. It is -1 for a row without a layout (a file written before the layout
// column). It needs [ColLayout].
func (rg *RowGroup) LayoutKey(i int) int32 {
	if !rg.hasLayout {
		return -1
	}
	return rg.Strings[ColLayout].Index(i)
}

// LayoutKeys returns the number of layout keys of the row group (keys are 0 to n-1).
func (rg *RowGroup) LayoutKeys() int {
	if !rg.hasLayout {
		return 0
	}
	return rg.Strings[ColLayout].Entries()
}

// Place says where a field of a rebuilt record is found in the columns.
type Place uint8

// The places of a field.
const (
	// PlaceUnknown: the columns alone do not say; rebuild the record.
	PlaceUnknown Place = iota
	// PlaceMissing: no record of the layout has the field.
	PlaceMissing
	// PlaceColumn: a column holds it ([RowGroup.ColumnField]).
	PlaceColumn
	// PlaceAttributes: it is in the attributes, if anywhere ([RowGroup.AttributeField]).
	PlaceAttributes
)

// Locate says where the field path (as [Doc.Lookup] finds it) is in the records of the
// rows with layout key key, and for [PlaceColumn] which column holds it.
func (rg *RowGroup) Locate(key int32, path string) (Place, Column) {
	l, err := rg.layoutAt(key)
	if err != nil || l == nil {
		return PlaceUnknown, 0
	}
	if l.raw {
		if path == RawField {
			return PlaceColumn, ColMessage
		}
		return PlaceMissing, 0
	}
	for k := range l.cols {
		if c := &l.cols[k]; c.present && nameEq(c.name, path) {
			return PlaceColumn, Column(k)
		}
	}
	// A dotted path whose leading segments name a column: Lookup would stop at that
	// column's member; leave it to the rebuilt record.
	for j := 0; j < len(path); j++ {
		if path[j] != '.' {
			continue
		}
		for k := range l.cols {
			if c := &l.cols[k]; c.present && nameEq(c.name, path[:j]) {
				return PlaceUnknown, 0
			}
		}
	}
	return PlaceAttributes, 0
}

// nameEq reports whether the JSON string q (quotes included, as jsonx writes it) is name.
func nameEq(q []byte, name string) bool {
	if len(q) == len(name)+2 && string(q[1:len(q)-1]) == name {
		return true
	}
	if bytes.IndexByte(q, '\\') < 0 {
		return false
	}
	return unquote(q[1:len(q)-1]) == name
}

// ColumnField returns the member that column c gives row i's record, as [Doc.Lookup] on
// the rebuilt record returns it (its Value in canonical form), for a field that
// [RowGroup.Locate] placed in c. ok is false when only the rebuilt record can say. The
// Field is valid until the next call on rg.
func (rg *RowGroup) ColumnField(i int, c Column) (f Field, ok bool) {
	l, err := rg.layoutAt(rg.LayoutKey(i))
	if err != nil || l == nil {
		return f, false
	}
	switch {
	case c == ColTime:
		t, ok := rg.Time(i)
		if !ok {
			return f, false
		}
		rg.scratch = l.time.append(rg.scratch[:0], time.UnixMicro(t).UTC(), &rg.dec.zones)
		f.Value, f.Kind = rg.scratch, Number
		if l.time.unit == "" {
			f.Kind = String
		}
	case c == ColMessage && l.raw, !l.cols[c].json:
		v := rg.Strings[c].Value(i)
		if !utf8.Valid(v) {
			return f, false
		}
		rg.scratch = jsonx.AppendString(rg.scratch[:0], v)
		f.Value, f.Kind = rg.scratch, String
	default:
		v := rg.Strings[c].Value(i)
		var d Doc
		if d.Parse(v) != nil || !d.Kind.Scalar() && d.Kind != Null {
			return f, false // an object or array message: only the rebuilt record is canonical
		}
		f.Value, f.Kind = Trim(v), d.Kind
	}
	return f, true
}

// AttributeField returns the member at path of row i's attributes (see [Doc.Lookup]),
// with its Value in canonical form, for a field [RowGroup.Locate] placed there. ok is false
// when the attributes are not a JSON object (the rebuilt record fails too). The Field is
// valid until the next call on rg.
func (rg *RowGroup) AttributeField(i int, path string) (f Field, found, ok bool) {
	if rg.attrsRow != i {
		a := rg.Strings[ColAttributes].Value(i)
		if len(a) == 0 {
			rg.attrs.Kind, rg.attrs.spans = Object, rg.attrs.spans[:0]
		} else if rg.attrs.Parse(a) != nil || rg.attrs.Kind != Object {
			rg.attrsRow = -1
			return f, false, false
		}
		rg.attrsRow = i
	}
	f, found = rg.attrs.Lookup(path)
	if !found {
		return f, false, true
	}
	if f.Kind == Object || f.Kind == Array || (f.Kind == String && !plainString(f.Value) || bytes.IndexByte(f.Value, '\\') >= 0) {
		rg.canon = rg.dec.appendCanonical(rg.canon[:0], f.Value)
		f.Value = rg.canon
	}
	return f, true, true
}

// AppendRecord appends row i's record as [Decoder.Decode] gives it (canonical JSON), from
// the [RecordColumns], which rg must hold.
func (rg *RowGroup) AppendRecord(dst []byte, i int) ([]byte, error) {
	if rg.Read&RecordColumns != RecordColumns {
		return dst, errors.New("encode: the row group was read without the record's columns")
	}
	r := &rg.row
	r.Time = nil
	if t, ok := rg.Time(i); ok {
		rg.t = time.UnixMicro(t).UTC()
		r.Time = &rg.t
	}
	r.Level = bytesString(rg.Strings[ColLevel].Value(i))
	r.Service = bytesString(rg.Strings[ColService].Value(i))
	r.Message = bytesString(rg.Strings[ColMessage].Value(i))
	r.Attributes = bytesString(rg.Strings[ColAttributes].Value(i))
	r.Layout = bytesString(rg.Strings[ColLayout].Value(i))
	var err error
	if rg.tmp, err = rg.dec.appendRow(rg.tmp[:0], r); err != nil {
		return dst, err
	}
	return appendCanonicalRecord(dst, rg.tmp, &rg.dec), nil
}

// appendCanonicalRecord appends the canonical form of a rebuilt record: the record itself
// when it is canonical on its face (the common case, found without a byte-by-byte pass).
func appendCanonicalRecord(dst, rec []byte, d *Decoder) []byte {
	if canonicalLine(rec) && utf8.Valid(rec) {
		return append(dst, rec...)
	}
	return d.appendCanonical(dst, rec)
}

// Time returns row i's time in Unix microseconds, and false for a row without one; rg must
// hold [ColTime].
func (rg *RowGroup) Time(i int) (int64, bool) {
	if i >= len(rg.hasTime) || !rg.hasTime[i] {
		return 0, false
	}
	return rg.times[i], true
}

// ID returns the kinlog identity of row i ("" for none); rg must hold [ColKinlogID].
func (rg *RowGroup) ID(i int) []byte { return rg.Strings[ColKinlogID].Value(i) }

// bytesString views b as a string without copying: for reading only, while b is not
// changed.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// stringBytes views s as bytes without copying: the bytes must not be changed.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// TimeIsRFC3339 reports whether the records of layout key key have the time column as a
// member written in
// RFC 3339 (a layout "2006-01-02T15:04:05", up to nine fractional digits, "Z07:00" or
// "-07:00"): such text read back ([TimeAuto]) is the column's time, for a time between the
// years 1000 and 9999.
func (rg *RowGroup) TimeIsRFC3339(key int32) bool {
	l, err := rg.layoutAt(key)
	if err != nil || l == nil || l.raw || !l.cols[0].present || l.time.unit != "" {
		return false
	}
	s, ok := strings.CutPrefix(l.time.layout, "2006-01-02T15:04:05")
	if !ok {
		return false
	}
	if rest, ok := strings.CutPrefix(s, "."); ok {
		n := len(rest) - len(strings.TrimLeft(rest, "0"))
		if n == 0 || n > 9 {
			return false
		}
		s = rest[n:]
	}
	return s == "Z07:00" || s == "-07:00"
}

// RecordSize returns the length of row i's record as [RowGroup.AppendRecord] writes it,
// worked out from the columns without writing it: for aggregates, which count bytes. ok is
// false when only the record itself can say (a value that is not canonical as stored,
// text that is not UTF-8, a file without the layout column, ...); AppendRecord then says
// it, or the error. rg must hold the [RecordColumns].
func (rg *RowGroup) RecordSize(i int) (n int, ok bool) {
	if rg.Read&RecordColumns != RecordColumns {
		return 0, false
	}
	l, err := rg.layoutAt(rg.LayoutKey(i))
	if err != nil || l == nil {
		return 0, false
	}
	text := func(v []byte) (int, bool) {
		if !utf8.Valid(v) {
			return 0, false
		}
		rg.scratch = jsonx.AppendString(rg.scratch[:0], v)
		return len(rg.scratch), true
	}
	if l.raw {
		m, ok := text(rg.Strings[ColMessage].Value(i))
		return len(`{"`+RawField+`":}`) + m, ok
	}
	attrs := rg.Strings[ColAttributes].Value(i)
	na := 0
	if len(attrs) > 0 {
		// Canonical on its face, the attributes' members are copied as they are.
		if !canonicalLine(attrs) || !utf8.Valid(attrs) {
			return 0, false
		}
		if rg.attrsRow != i {
			if rg.attrs.Parse(attrs) != nil || rg.attrs.Kind != Object {
				rg.attrsRow = -1
				return 0, false
			}
			rg.attrsRow = i
		}
		na = rg.attrs.Len()
	}
	total := l.n + na
	for k := range l.cols {
		c := &l.cols[k]
		if !c.present {
			continue
		}
		if c.pos >= total {
			return 0, false // the layout does not fit the attributes: AppendRecord says so
		}
		for j := range k {
			if l.cols[j].present && l.cols[j].pos == c.pos {
				return 0, false
			}
		}
		n += len(c.name) + 1
		switch {
		case k == 0:
			t, ok := rg.Time(i)
			if !ok {
				return 0, false
			}
			rg.scratch = l.time.append(rg.scratch[:0], time.UnixMicro(t).UTC(), &rg.dec.zones)
			if l.time.unit == "" && (bytes.IndexByte(rg.scratch[1:len(rg.scratch)-1], '"') >= 0 || bytes.IndexByte(rg.scratch, '\\') >= 0) {
				return 0, false
			}
			n += len(rg.scratch)
		case c.json:
			v := rg.Strings[Column(k)].Value(i)
			if len(v) == 0 || v[0] == '{' || v[0] == '[' || v[0] == '"' {
				return 0, false // an object or array message may not be canonical as stored
			}
			n += len(v)
		default:
			m, ok := text(rg.Strings[Column(k)].Value(i))
			if !ok {
				return 0, false
			}
			n += m
		}
	}
	if na > 0 {
		return n + len(attrs) + l.n, true
	}
	return 2 + n + max(l.n-1, 0), true
}

package encode

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kinlog/kinlog/internal/jsonx"
)

// Decoder reads archive objects back into records: each record one JSON object on one
// line, the same bytes whichever encoding wrote it. A record comes back as an NDJSON object
// holds it ([FramingLines]: text wrapped as {"raw": …}, U+FFFD for invalid UTF-8), in
// canonical form:
//
//   - no whitespace outside strings;
//   - strings with their escapes resolved and written again as [jsonx.AppendString]
//     writes them (so "caf\u00e9" and "\/" come back as "café" and "/", U+2028 and U+2029
//     escaped), names included;
//   - numbers, literals and the order of members exactly as archived.
//
// Parquet rows are rebuilt with their layout column (see [Row]) into the same bytes: member
// names, positions and time text as the record had them. Objects written with [FramingRaw]
// are read as newline-delimited records, each as [FramingLines] would have archived it.
// Lines of [FramingLines] objects that are canonical on their face are taken as the
// encoder wrote them, without validating them again.
//
// A record's kinlog identity (Parquet's kinlog_id column) is not part of the record: read it
// with [Decoder.ID].
//
// A Decoder is not safe for concurrent use; reuse one to reuse its buffers.
type Decoder struct {
	raw   []byte // decompressed NDJSON
	out   []byte // records rewritten
	tmp   []byte
	unq   []byte
	spans []recSpan
	recs  [][]byte
	// suspects are the offsets in raw of bytes that may make a line not canonical.
	suspects []int
	doc      Doc
	attrs    Doc
	// layouts caches parsed layout column values (a file holds few distinct ones).
	layouts map[string]*layout
	zones   zones
	// ids are the kinlog identities of the records of a Parquet object ("" for none).
	ids []string
	// rg holds the columns of the Parquet row group being read.
	rg *RowGroup
}

type recSpan struct {
	out        bool // in out, else in raw
	start, end int
}

// Decode decodes obj, an object's stored bytes written with the encoding cfg (from
// [ObjectConfig]), and returns its records in object order. The records point into the
// Decoder's buffers: they are valid until the next call to Decode.
func (d *Decoder) Decode(obj []byte, cfg Config) ([][]byte, error) {
	d.spans, d.out = d.spans[:0], d.out[:0]
	clear(d.ids)
	d.ids = d.ids[:0]
	switch cfg.Format {
	case NDJSON:
		var err error
		if d.raw, err = DecompressAppend(d.raw[:0], obj, cfg.Compression); err != nil {
			return nil, err
		}
		if n := bytes.Count(d.raw, []byte{'\n'}) + 1; cap(d.spans) < n {
			d.spans = make([]recSpan, 0, n)
		}
		lines := cfg.Framing == FramingLines
		if lines {
			d.suspects = suspects(d.suspects[:0], d.raw)
		}
		k := 0 // the first suspect not before the line
		for raw, off := d.raw, 0; off < len(raw); {
			line := raw[off:]
			next := len(raw)
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				line, next = line[:i], off+i+1
			}
			t := Trim(line)
			if len(t) > 0 {
				// t is line[i:…]: its offset in raw follows from the capacities.
				start := off + cap(line) - cap(t)
				for k < len(d.suspects) && d.suspects[k] < start {
					k++
				}
				clean := lines && (k == len(d.suspects) || d.suspects[k] >= start+len(t)) && t[0] == '{' && t[len(t)-1] == '}'
				if clean {
					d.spans = append(d.spans, recSpan{start: start, end: start + len(t)})
				} else {
					d.line(t, start, lines)
				}
			}
			off = next
		}
	case Parquet:
		o, err := OpenParquetObject(obj)
		if err != nil {
			return nil, err
		}
		if d.rg == nil {
			d.rg = new(RowGroup)
		}
		row := 0
		for g := range o.NumRowGroups() {
			if err := o.ReadRowGroup(g, RecordColumns.With(ColKinlogID), d.rg); err != nil {
				return nil, err
			}
			for i := range d.rg.Rows {
				start := len(d.out)
				if d.out, err = d.rg.AppendRecord(d.out, i); err != nil {
					return nil, fmt.Errorf("row %d: %w", row, err)
				}
				d.spans = append(d.spans, recSpan{out: true, start: start, end: len(d.out)})
				d.ids = append(d.ids, string(d.rg.ID(i)))
				row++
			}
		}
	default:
		return nil, fmt.Errorf("encode: unknown format %v", cfg.Format)
	}
	d.recs = slices.Grow(d.recs[:0], len(d.spans))
	for _, s := range d.spans {
		buf := d.raw
		if s.out {
			buf = d.out
		}
		d.recs = append(d.recs, buf[s.start:s.end:s.end])
	}
	return d.recs, nil
}

// ID returns the kinlog identity of the i-th record of the last [Decoder.Decode] as
// "<origin>/<seq>" or "<origin>/<seq>+<span>" (see [Meta]), or "" when the object does not
// say it: the record had none, the object is NDJSON (which does not store identities), or
// a Parquet file written before the kinlog_id column.
func (d *Decoder) ID(i int) string {
	if i < len(d.ids) {
		return d.ids[i]
	}
	return ""
}

// Record returns one record (a Kinesis record's data) as [Decoder.Decode] gives it back
// once archived, by either encoding: for tools that show live records the way the query
// shows archived ones. The result is valid until the next call to Record or Decode.
func (d *Decoder) Record(data []byte) []byte {
	d.spans, d.out, d.ids = d.spans[:0], d.out[:0], d.ids[:0]
	d.raw = append(d.raw[:0], Trim(data)...)
	d.line(d.raw, 0, false)
	s := d.spans[0]
	if s.out {
		return d.out[s.start:s.end:s.end]
	}
	return d.raw[s.start:s.end:s.end]
}

// line adds one NDJSON line (trimmed), found at offset start of d.raw. trusted says the
// line was written by [FramingLines], hence is a valid JSON object: if it is canonical on
// its face it is taken without parsing it.
func (d *Decoder) line(t []byte, start int, trusted bool) {
	if trusted && canonicalLine(t) {
		d.spans = append(d.spans, recSpan{start: start, end: start + len(t)})
		return
	}
	err := d.doc.Parse(t)
	if err == nil && d.doc.Kind == Object && d.doc.UTF8 {
		if d.doc.compact && plainJSON(t) {
			d.spans = append(d.spans, recSpan{start: start, end: start + len(t)})
			return
		}
		s := len(d.out)
		d.out = d.appendCanonical(d.out, t)
		d.spans = append(d.spans, recSpan{out: true, start: s, end: len(d.out)})
		return
	}
	// Not a line FramingLines writes (records as received, or another writer): read it as
	// FramingLines would have archived it.
	d.tmp = AppendLine(d.tmp[:0], t, &d.doc, FramingLines)
	s := len(d.out)
	d.out = d.appendCanonical(d.out, d.tmp[:len(d.tmp)-1])
	d.spans = append(d.spans, recSpan{out: true, start: s, end: len(d.out)})
}

// canonicalLine reports, without parsing it, whether a line that [FramingLines] wrote (a
// valid JSON object, valid UTF-8: records that were not are written with U+FFFD, and were
// wrapped as base64 by earlier versions) is in canonical form: no escapes, no U+2028 or
// U+2029, no whitespace outside strings. Without escapes every quote opens or closes a
// string, so a space is outside strings when an even number of quotes precede it; only
// spaces next to a character that can be structural need the count. A tab or CR can only
// be whitespace outside strings.
func canonicalLine(b []byte) bool {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' || bytes.IndexByte(b, '\\') >= 0 ||
		bytes.IndexByte(b, '\t') >= 0 || bytes.IndexByte(b, '\r') >= 0 || !plainJSON(b) {
		return false
	}
	quotes, counted := 0, 0
	for off := 0; ; {
		j := bytes.IndexByte(b[off:], ' ')
		if j < 0 {
			return true
		}
		i := off + j
		off = i + 1
		if !structural[b[i-1]] && !structural[b[i+1]] {
			continue // between two characters of a string, a number or a literal
		}
		quotes += bytes.Count(b[counted:i], []byte{'"'})
		counted = i
		if quotes%2 == 0 {
			return false
		}
	}
}

// suspects appends to dst, in order, the offsets in b (lines that [FramingLines] wrote)
// of the bytes that may make a line not canonical (see canonicalLine): backslashes, tabs,
// CRs, the first byte of U+2028 and U+2029, and spaces beside a character that can be
// structural. A line without any is canonical. Searching the whole object once costs one
// search per such byte instead of several per line.
func suspects(dst []int, b []byte) []int {
	find := func(c byte, keep func(i int) bool) {
		for off := 0; ; {
			j := bytes.IndexByte(b[off:], c)
			if j < 0 {
				return
			}
			i := off + j
			off = i + 1
			if keep == nil || keep(i) {
				dst = append(dst, i)
			}
		}
	}
	find('\\', nil)
	find('\t', nil)
	find('\r', nil)
	find(0xE2, func(i int) bool { return i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9) })
	find(' ', func(i int) bool { return i == 0 || i == len(b)-1 || structural[b[i-1]] || structural[b[i+1]] })
	slices.Sort(dst)
	return dst
}

// structural marks the bytes beside which whitespace outside strings can stand in JSON
// (a space between two other bytes is inside a string).
var structural = func() (t [256]bool) {
	for _, c := range []byte(`{}[]:,"`) {
		t[c] = true
	}
	t[' '], t['\n'] = true, true
	return t
}()

// plainJSON reports whether valid, compact, UTF-8 JSON is already canonical: it has no
// escapes and no U+2028 or U+2029.
func plainJSON(b []byte) bool {
	if bytes.IndexByte(b, '\\') >= 0 {
		return false
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], 0xE2)
		if j < 0 {
			return true
		}
		i += j
		if i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9) {
			return false
		}
		i++
	}
}

// appendCanonical appends the canonical form (see [Decoder]) of the valid JSON v to dst.
func (d *Decoder) appendCanonical(dst, v []byte) []byte {
	for i := 0; i < len(v); {
		switch c := v[i]; {
		case isSpace(c):
			i++
		case c == '"':
			j, esc := i+1, false
			for j < len(v) && v[j] != '"' {
				if v[j] == '\\' {
					esc = true
					j++
				}
				j++
			}
			j = min(j, len(v))
			s := v[i+1 : j]
			if !esc && plainString(s) {
				dst = append(dst, '"')
				dst = append(dst, s...)
				dst = append(dst, '"')
			} else {
				d.unq = appendUnescaped(d.unq[:0], s)
				dst = jsonx.AppendString(dst, d.unq)
			}
			i = j + 1
		default:
			j := i + 1
			for j < len(v) && v[j] != '"' && !isSpace(v[j]) {
				j++
			}
			dst = append(dst, v[i:j]...)
			i = j
		}
	}
	return dst
}

// plainString reports whether the contents of a string without escapes are written as
// they are by jsonx: valid UTF-8 without U+2028 or U+2029.
func plainString(s []byte) bool {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}

// appendUnescaped appends the contents of a JSON string (between the quotes) with its
// escapes resolved as encoding/json resolves them: a surrogate pair is one rune, a lone
// surrogate and a byte that is not UTF-8 become U+FFFD.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			switch e := s[i+1]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := getu4(s[i:])
				if rr < 0 {
					dst = append(dst, s[i:i+2]...)
					break
				}
				i += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[i:])); dec != unicode.ReplacementChar {
						i += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default: // " \ /
				dst = append(dst, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// layout returns the parsed layout column value s.
func (d *Decoder) layout(s string) (*layout, error) {
	if l, ok := d.layouts[s]; ok {
		return l, nil
	}
	l, err := parseLayout(s)
	if err != nil {
		return nil, err
	}
	if d.layouts == nil || len(d.layouts) > 1024 {
		d.layouts = map[string]*layout{}
	}
	d.layouts[strings.Clone(s)] = l // s may point into a reused buffer
	return l, nil
}

// appendRow appends the JSON record a Parquet row holds (not yet canonical).
func (d *Decoder) appendRow(dst []byte, r *Row) ([]byte, error) {
	if r.Layout == "" {
		return d.appendLegacyRow(dst, r)
	}
	l, err := d.layout(r.Layout)
	if err != nil {
		return dst, err
	}
	if l.raw {
		dst = append(dst, `{"`+RawField+`":`...)
		dst = jsonx.AppendString(dst, r.Message)
		return append(dst, '}'), nil
	}
	na := 0
	if r.Attributes != "" {
		if err := d.attrs.Parse(stringBytes(r.Attributes)); err != nil || d.attrs.Kind != Object {
			return dst, fmt.Errorf("attributes are not a JSON object")
		}
		na = d.attrs.Len()
	}
	texts := [numTextCols]string{colLevel: r.Level, colService: r.Service, colMessage: r.Message}
	dst = append(dst, '{')
	ai := 0
	for p := range l.n + na {
		if p > 0 {
			dst = append(dst, ',')
		}
		k := l.at(p)
		if k < 0 {
			if ai == na {
				return dst, fmt.Errorf("layout %q does not fit the attributes", r.Layout)
			}
			sp := &d.attrs.spans[ai]
			ai++
			dst = append(dst, d.attrs.data[sp.ks-1:sp.ke+1]...)
			dst = append(dst, ':')
			dst = append(dst, d.attrs.data[sp.vs:sp.ve]...)
			continue
		}
		c := &l.cols[k]
		dst = append(dst, c.name...)
		dst = append(dst, ':')
		switch {
		case k == 0:
			if r.Time == nil {
				return dst, fmt.Errorf("layout %q names a time the row does not have", r.Layout)
			}
			dst = l.time.append(dst, r.Time.UTC(), &d.zones)
		case c.json:
			if texts[k-1] == "" {
				return dst, fmt.Errorf("layout %q names an empty JSON value", r.Layout)
			}
			dst = append(dst, texts[k-1]...)
		default:
			dst = jsonx.AppendString(dst, texts[k-1])
		}
	}
	if ai != na {
		return dst, fmt.Errorf("layout %q does not fit the attributes", r.Layout)
	}
	return append(dst, '}'), nil
}

// appendLegacyRow rebuilds a row of a file written before the layout column: the columns
// under their schema names (time as RFC 3339 in UTC), then the attributes' members. A
// record that was not a JSON object comes back as {"msg": <text>}.
func (d *Decoder) appendLegacyRow(dst []byte, r *Row) ([]byte, error) {
	dst = append(dst, '{')
	n := 0
	member := func(name string) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
	}
	if r.Time != nil {
		member("time")
		dst = append(dst, '"')
		dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	columns := [...]struct{ name, value string }{{"level", r.Level}, {"service", r.Service}, {"msg", r.Message}}
	for _, c := range columns {
		if c.value != "" {
			member(c.name)
			dst = jsonx.AppendString(dst, c.value)
		}
	}
	if r.Attributes != "" {
		if err := d.attrs.Parse(stringBytes(r.Attributes)); err != nil || d.attrs.Kind != Object {
			return dst, fmt.Errorf("attributes are not a JSON object")
		}
	attributes:
		for k := range d.attrs.Len() {
			f := d.attrs.Field(k)
			name := f.Name()
			if name == "time" && r.Time != nil {
				continue
			}
			for _, c := range columns {
				if name == c.name && c.value != "" {
					continue attributes
				}
			}
			sp := &d.attrs.spans[k]
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, d.attrs.data[sp.ks-1:sp.ke+1]...)
			dst = append(dst, ':')
			dst = append(dst, f.Value...)
		}
	}
	return append(dst, '}'), nil
}

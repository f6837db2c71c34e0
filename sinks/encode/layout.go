package encode

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kinlog/kinlog/internal/jsonx"
)

// The layout column of Parquet files (see [Row]) is a JSON object with these members:
//
//	"r":1               the record was not a JSON object: it is the message column's text
//	"t","l","s","m"     the name of the member that filled time, level, service, message
//	"tp","lp","sp","mp" its position among the record's members (0 for the first)
//	"lj","sj","mj":1    the column holds the member's JSON text, not a string's contents
//	"tf","tz"           the time was a string: a Go layout and a zone offset in seconds
//	"tu"                the time was an integer epoch: "s", "ms", "us" or "ns"
//
// Members the columns did not take are the attributes, in order, in the other positions.
const (
	layoutRaw = "r"
	layoutTF  = "tf"
	layoutTZ  = "tz"
	layoutTU  = "tu"
)

// layoutNames are the layout members naming each column's member: time, then the text
// columns in the order colLevel, colService, colMessage.
var layoutNames = [1 + numTextCols]string{"t", "l", "s", "m"}

// timeForm says how a time member was written: an epoch unit, or a Go layout in a zone.
type timeForm struct {
	unit   string // "s", "ms", "us", "ns"; "" for a layout
	layout string
	offset int // seconds east of UTC
}

// zones caches fixed zones by offset, so that formatting a time does not allocate one.
type zones map[int]*time.Location

func (z *zones) get(offset int) *time.Location {
	if offset == 0 {
		return time.UTC
	}
	if *z == nil {
		*z = zones{}
	}
	loc := (*z)[offset]
	if loc == nil {
		loc = time.FixedZone("", offset)
		(*z)[offset] = loc
	}
	return loc
}

// append appends the JSON value of t in this form.
func (f timeForm) append(dst []byte, t time.Time, z *zones) []byte {
	switch f.unit {
	case "s":
		return strconv.AppendInt(dst, t.Unix(), 10)
	case "ms":
		return strconv.AppendInt(dst, t.UnixMilli(), 10)
	case "us":
		return strconv.AppendInt(dst, t.UnixMicro(), 10)
	case "ns":
		return strconv.AppendInt(dst, t.UnixNano(), 10)
	}
	dst = append(dst, '"')
	t = t.In(z.get(f.offset))
	if out, ok := appendRFC3339(dst, t, f.layout); ok {
		dst = out
	} else {
		dst = t.AppendFormat(dst, f.layout)
	}
	return append(dst, '"')
}

// appendRFC3339 appends t as t.AppendFormat(layout) does, for a layout of the RFC 3339 forms
// rfc3339Form gives ("2006-01-02T15:04:05", up to nine fractional digits, "Z07:00" or
// "-07:00"), a year from 0 to 9999 and a zone of whole minutes; it reports false for any
// other layout or time. Formatting a time by its layout is most of the cost of writing a
// record's time back; logs write these forms.
func appendRFC3339(dst []byte, t time.Time, layout string) ([]byte, bool) {
	rest, ok := strings.CutPrefix(layout, "2006-01-02T15:04:05")
	if !ok {
		return dst, false
	}
	digits := 0
	if r, ok := strings.CutPrefix(rest, "."); ok {
		digits = len(r) - len(strings.TrimLeft(r, "0"))
		if digits == 0 || digits > 9 {
			return dst, false
		}
		rest = r[digits:]
	}
	zulu := rest == "Z07:00"
	if !zulu && rest != "-07:00" {
		return dst, false
	}
	year, month, day := t.Date()
	_, offset := t.Zone()
	if year < 0 || year > 9999 || offset%60 != 0 {
		return dst, false
	}
	hour, min, sec := t.Clock()
	two := func(dst []byte, v int) []byte { return append(dst, byte('0'+v/10), byte('0'+v%10)) }
	dst = append(dst, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	dst = two(dst, int(month))
	dst = append(dst, '-')
	dst = two(dst, day)
	dst = append(dst, 'T')
	dst = two(dst, hour)
	dst = append(dst, ':')
	dst = two(dst, min)
	dst = append(dst, ':')
	dst = two(dst, sec)
	if digits > 0 {
		dst = append(dst, '.')
		ns := t.Nanosecond()
		for div := 100_000_000; digits > 0; digits-- {
			dst = append(dst, byte('0'+ns/div%10))
			div /= 10
		}
	}
	if zulu && offset == 0 {
		return append(dst, 'Z'), true
	}
	sign := byte('+')
	if offset < 0 {
		sign, offset = '-', -offset
	}
	dst = append(dst, sign)
	dst = two(dst, offset/3600)
	dst = append(dst, ':')
	return two(dst, offset/60%60), true
}

// formOf finds a form in which t, the time as the column stores it (microseconds, UTC),
// is written exactly as the member's value v: the same RFC 3339 digits and zone, the same
// custom layout, or the same integer epoch. It reports false when there is none (a
// fraction of an epoch, digits beyond microseconds, escapes in the string, ...). *buf is
// scratch space, kept for the next call.
func (f TimeFormat) formOf(v Field, t time.Time, z *zones, buf *[]byte) (timeForm, bool) {
	var form timeForm
	switch v.Kind {
	case String:
		s := v.Value[1 : len(v.Value)-1]
		if bytes.IndexByte(s, '\\') >= 0 {
			return form, false
		}
		switch f.kind {
		case timeAuto, timeRFC3339:
			var ok bool
			if form.layout, form.offset, ok = rfc3339Form(s); !ok {
				return form, false
			}
		case timeLayout:
			pt, err := time.Parse(f.layout, string(s))
			if err != nil {
				return form, false
			}
			form.layout = f.layout
			_, form.offset = pt.Zone()
		default:
			return form, false
		}
		out := form.append((*buf)[:0], t, z)
		*buf = out
		return form, bytes.Equal(out[1:len(out)-1], s)
	case Number:
		n, err := strconv.ParseInt(string(v.Value), 10, 64)
		if err != nil {
			return form, false
		}
		switch f.kind {
		case timeUnix:
			form.unit = "s"
		case timeUnixMilli:
			form.unit = "ms"
		case timeUnixMicro:
			form.unit = "us"
		case timeUnixNano:
			form.unit = "ns"
		case timeAuto:
			a := max(n, -n)
			switch {
			case a < 1e11:
				form.unit = "s"
			case a < 1e14:
				form.unit = "ms"
			case a < 1e17:
				form.unit = "us"
			default:
				form.unit = "ns"
			}
		default:
			return form, false
		}
		*buf = form.append((*buf)[:0], t, z)
		return form, bytes.Equal(*buf, v.Value)
	}
	return form, false
}

// rfc3339Form returns the Go layout and zone offset that write an RFC 3339 time the way s
// is written: YYYY-MM-DDTHH:MM:SS, as many fractional digits, and Z or ±hh:mm.
func rfc3339Form(s []byte) (string, int, bool) {
	if len(s) < 20 || s[10] != 'T' {
		return "", 0, false
	}
	i, n := 19, 0
	if s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			n++
		}
		if n == 0 || n > 9 {
			return "", 0, false
		}
	}
	layout := "2006-01-02T15:04:05"
	if n > 0 {
		layout += "." + "000000000"[:n]
	}
	switch rest := s[i:]; {
	case len(rest) == 1 && rest[0] == 'Z':
		return layout + "Z07:00", 0, true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		h, err1 := strconv.Atoi(string(rest[1:3]))
		m, err2 := strconv.Atoi(string(rest[4:6]))
		if err1 != nil || err2 != nil {
			return "", 0, false
		}
		off := (h*60 + m) * 60
		if rest[0] == '-' {
			off = -off
		}
		return layout + "-07:00", off, true
	}
	return "", 0, false
}

// unconsume puts member i back into the attributes.
func (c *columns) unconsume(i int) {
	for k := 0; k < c.n; k++ {
		if c.consumed[k] == i {
			copy(c.consumed[k:], c.consumed[k+1:c.n])
			c.n--
			return
		}
	}
}

// appendLayout appends the layout of a record split into c (see the constants above).
func appendLayout(dst []byte, d *Doc, c *columns, tf timeForm) []byte {
	if d.Kind != Object {
		return append(dst, `{"`+layoutRaw+`":1}`...)
	}
	dst = append(dst, '{')
	first := true
	member := func(name string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
	}
	col := func(key string, i int) {
		member(key)
		sp := &d.spans[i]
		if sp.esc {
			dst = jsonx.AppendString(dst, unquote(d.data[sp.ks:sp.ke]))
		} else {
			dst = jsonx.AppendString(dst, d.data[sp.ks:sp.ke])
		}
		member(key + "p")
		dst = strconv.AppendInt(dst, int64(i), 10)
	}
	if c.timeIdx >= 0 {
		col(layoutNames[0], c.timeIdx)
		if tf.unit != "" {
			member(layoutTU)
			dst = jsonx.AppendString(dst, tf.unit)
		} else {
			member(layoutTF)
			dst = jsonx.AppendString(dst, tf.layout)
			member(layoutTZ)
			dst = strconv.AppendInt(dst, int64(tf.offset), 10)
		}
	}
	for k, i := range c.text {
		if i < 0 {
			continue
		}
		col(layoutNames[1+k], i)
		if d.spans[i].kind != String {
			member(layoutNames[1+k] + "j")
			dst = append(dst, '1')
		}
	}
	return append(dst, '}')
}

// layout is a parsed layout column value.
type layout struct {
	raw  bool
	cols [1 + numTextCols]layoutCol
	n    int // columns present
	time timeForm
}

type layoutCol struct {
	present bool
	json    bool
	pos     int
	name    []byte // the name as a JSON string
}

// parseLayout reads a layout column value.
func parseLayout(s string) (*layout, error) {
	var d Doc
	if err := d.Parse([]byte(s)); err != nil || d.Kind != Object {
		return nil, fmt.Errorf("layout %q is not a JSON object", s)
	}
	l := new(layout)
	if f, ok := d.Get(layoutRaw); ok && string(f.Value) == "1" {
		l.raw = true
		return l, nil
	}
	for k, key := range layoutNames {
		f, ok := d.Get(key)
		if !ok {
			continue
		}
		name, isText := f.Text()
		pos, okPos := d.Get(key + "p")
		p, err := strconv.Atoi(string(pos.Value))
		if f.Kind != String || !isText || !okPos || err != nil || p < 0 {
			return nil, fmt.Errorf("layout %q: bad member %q", s, key)
		}
		c := &l.cols[k]
		c.present, c.pos, c.name = true, p, jsonx.AppendString(nil, name)
		if j, ok := d.Get(key + "j"); ok && string(j.Value) == "1" {
			c.json = true
		}
		l.n++
	}
	if l.cols[0].present {
		if u, ok := d.Get(layoutTU); ok {
			l.time.unit, _ = u.Text()
			switch l.time.unit {
			case "s", "ms", "us", "ns":
			default:
				return nil, fmt.Errorf("layout %q: unknown epoch unit", s)
			}
		} else {
			tf, ok1 := d.Get(layoutTF)
			tz, ok2 := d.Get(layoutTZ)
			off, err := strconv.Atoi(string(tz.Value))
			if !ok1 || !ok2 || tf.Kind != String || err != nil {
				return nil, fmt.Errorf("layout %q: time without a form", s)
			}
			l.time.layout, _ = tf.Text()
			l.time.offset = off
		}
	}
	return l, nil
}

// at returns the column whose member is at position p, or -1.
func (l *layout) at(p int) int {
	for k := range l.cols {
		if l.cols[k].present && l.cols[k].pos == p {
			return k
		}
	}
	return -1
}

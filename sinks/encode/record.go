package encode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kinlog/kinlog/internal/timefmt"
)

// rfc3339Fast is internal/timefmt's, shared by the encoder and the agent.
var rfc3339Fast = timefmt.RFC3339Fast

// Fields names the JSON members that fill the log schema's columns. Each list is tried in
// order and the first member present (with a usable value) wins; that member then leaves
// the attributes. Dotted names descend into nested objects.
type Fields struct {
	// Time lists the members holding the log's own timestamp. Default: time, timestamp, ts,
	// @timestamp.
	Time []string
	// TimeFormat says how to read them. Default: [TimeAuto].
	TimeFormat TimeFormat
	// Level lists the members holding the severity. Default: level, severity, lvl.
	Level []string
	// Service lists the members naming the emitting service. Default: service, service_name,
	// app.
	Service []string
	// Message lists the members holding the message. Default: msg, message.
	Message []string
}

// DefaultFields is the member naming used when a [Fields] list is empty.
var DefaultFields = Fields{
	Time:    []string{"time", "timestamp", "ts", "@timestamp"},
	Level:   []string{"level", "severity", "lvl"},
	Service: []string{"service", "service_name", "app"},
	Message: []string{"msg", "message"},
}

func (f Fields) withDefaults() Fields {
	if len(f.Time) == 0 {
		f.Time = DefaultFields.Time
	}
	if len(f.Level) == 0 {
		f.Level = DefaultFields.Level
	}
	if len(f.Service) == 0 {
		f.Service = DefaultFields.Service
	}
	if len(f.Message) == 0 {
		f.Message = DefaultFields.Message
	}
	return f
}

// TimeFormat reads a timestamp from a JSON value. Build one with [ParseTimeFormat]; the zero
// value is [TimeAuto].
type TimeFormat struct {
	kind   timeKind
	layout string
}

type timeKind uint8

const (
	timeAuto timeKind = iota
	timeRFC3339
	timeUnix
	timeUnixMilli
	timeUnixMicro
	timeUnixNano
	timeLayout
)

// TimeAuto reads RFC 3339 strings and Unix epoch numbers, taking the unit from the
// magnitude: below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, else
// nanoseconds.
var TimeAuto = TimeFormat{}

// ErrTimeFormat is returned for a time value that does not match its format.
var ErrTimeFormat = errors.New("encode: time value does not match the format")

// ParseTimeFormat names a time format: "auto" (or "", see [TimeAuto]), "rfc3339" (RFC 3339
// with optional fractional seconds), "unix", "unix_ms", "unix_us", "unix_ns" (epoch numbers
// or numeric strings, "unix" may be fractional), or any other string as a Go time layout
// such as "2006-01-02 15:04:05" (read as UTC unless it has a zone).
func ParseTimeFormat(s string) (TimeFormat, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return TimeFormat{kind: timeAuto}, nil
	case "rfc3339", "rfc3339nano", "iso8601":
		return TimeFormat{kind: timeRFC3339}, nil
	case "unix", "epoch", "unix_s":
		return TimeFormat{kind: timeUnix}, nil
	case "unix_ms", "unix_milli", "epoch_millis":
		return TimeFormat{kind: timeUnixMilli}, nil
	case "unix_us", "unix_micro":
		return TimeFormat{kind: timeUnixMicro}, nil
	case "unix_ns", "unix_nano":
		return TimeFormat{kind: timeUnixNano}, nil
	}
	ref := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if _, err := time.Parse(s, ref.Format(s)); err != nil || ref.Format(s) == s {
		return TimeFormat{}, fmt.Errorf("encode: time format %q is neither a named format nor a Go layout", s)
	}
	return TimeFormat{kind: timeLayout, layout: s}, nil
}

// Parse reads the time in a JSON value (a string or a number).
func (f TimeFormat) Parse(v Field) (time.Time, error) {
	if v.Kind == String && (f.kind == timeAuto || f.kind == timeRFC3339) {
		if t, ok := rfc3339Fast(v.Value[1 : len(v.Value)-1]); ok {
			return t, nil
		}
	}
	var text string
	switch v.Kind {
	case String:
		text, _ = v.Text()
	case Number:
		text = string(v.Value)
	default:
		return time.Time{}, fmt.Errorf("%w: %s value", ErrTimeFormat, v.Kind)
	}
	switch f.kind {
	case timeAuto:
		if v.Kind == Number {
			return epochAuto(text)
		}
		return parseRFC3339(text)
	case timeRFC3339:
		return parseRFC3339(text)
	case timeUnix:
		return epoch(text, 1e9)
	case timeUnixMilli:
		return epoch(text, 1e6)
	case timeUnixMicro:
		return epoch(text, 1e3)
	case timeUnixNano:
		return epoch(text, 1)
	}
	t, err := time.Parse(f.layout, text)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %q against layout %q", ErrTimeFormat, text, f.layout)
	}
	return t.UTC(), nil
}

func parseRFC3339(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %q is not RFC 3339", ErrTimeFormat, s)
	}
	return t.UTC(), nil
}

func epochAuto(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("%w: %q is not an epoch number", ErrTimeFormat, s)
	}
	a := math.Abs(f)
	switch {
	case a < 1e11:
		return epoch(s, 1e9)
	case a < 1e14:
		return epoch(s, 1e6)
	case a < 1e17:
		return epoch(s, 1e3)
	}
	return epoch(s, 1)
}

// epoch reads a decimal number of units of nsPerUnit nanoseconds. Integers are exact;
// fractions are rounded to the nanosecond.
func epoch(s string, nsPerUnit int64) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if nsPerUnit == 1 {
			return time.Unix(0, n).UTC(), nil
		}
		per := int64(1e9) / nsPerUnit
		sec, rem := n/per, n%per
		return time.Unix(sec, rem*nsPerUnit).UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("%w: %q is not an epoch number", ErrTimeFormat, s)
	}
	ns := f * float64(nsPerUnit)
	if math.Abs(ns) > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("%w: %q is out of range", ErrTimeFormat, s)
	}
	return time.Unix(0, int64(math.Round(ns))).UTC(), nil
}

// TimeOf returns the first of the candidate members that holds a time in format f.
func TimeOf(d *Doc, candidates []string, f TimeFormat) (t time.Time, member string, ok bool) {
	for _, name := range candidates {
		v, found := d.Lookup(name)
		if !found {
			continue
		}
		if t, err := f.Parse(v); err == nil {
			return t, name, true
		}
	}
	return time.Time{}, "", false
}

// Trim removes surrounding JSON whitespace (so a record's trailing newline is dropped).
func Trim(data []byte) []byte {
	i, j := 0, len(data)
	for i < j && isSpace(data[i]) {
		i++
	}
	for j > i && isSpace(data[j-1]) {
		j--
	}
	return data[i:j]
}

// ErrInvalidUTF8 was returned for records that were not valid UTF-8. Such records are now
// stored with U+FFFD in place of the invalid bytes (see [Builder.Add]) and nothing returns
// it; it is kept so that code matching it still compiles.
var ErrInvalidUTF8 = errors.New("encode: record is not valid UTF-8")

// Log is a record split into the log schema's columns.
type Log struct {
	// Time is the log's own timestamp, or nil when no time member was found.
	Time *time.Time
	// Level, Service and Message are "" when absent.
	Level, Service, Message string
	// Attributes is a JSON object of the remaining members, in input order, or nil when none
	// remain.
	Attributes []byte
}

// Split fills l from a parsed record (d parsed from data, after [Trim]). A JSON object gives
// its schema members; any other JSON value or non-JSON text becomes the message. Bytes that
// are not valid UTF-8 are replaced by U+FFFD first, as [Builder.Add] does. The scratch
// buffer buf is reused for the attributes and returned; the error is always nil.
func (f Fields) Split(l *Log, data []byte, d *Doc, buf []byte) ([]byte, error) {
	*l = Log{}
	if !splittable(data, d) {
		data, d = validUTF8(data)
	}
	if d.Kind != Object {
		l.Message = string(data)
		return buf, nil
	}
	p := f.picker()
	var c columns
	p.pick(d, &c)
	if c.hasTime {
		t := c.time
		l.Time = &t
	}
	l.Level = string(c.appendText(nil, d, colLevel))
	l.Service = string(c.appendText(nil, d, colService))
	l.Message = string(c.appendText(nil, d, colMessage))
	buf = c.appendAttributes(buf[:0], d)
	if len(buf) > 0 {
		l.Attributes = buf
	}
	return buf, nil
}

// splittable reports whether a record is valid UTF-8 (Parquet strings must be), so that it
// can be stored without repair.
func splittable(data []byte, d *Doc) bool {
	if d.Kind != Invalid {
		return d.UTF8
	}
	return utf8.Valid(data)
}

// The text columns of the log schema.
const (
	colLevel = iota
	colService
	colMessage
	numTextCols
)

// picker finds the members of a document that fill the log schema's columns. It is built
// once per configuration: first[c] has bit n set when some candidate name starts with byte c
// and is n bytes long (63 standing for 63 or more), so that most members are ruled out by a
// single table lookup.
type picker struct {
	f      Fields
	lists  [numTextCols][]string
	first  [256]uint64
	dotted bool // some time member is a dotted path, which may match no top-level name
}

func (f Fields) picker() *picker {
	f = f.withDefaults()
	p := &picker{f: f, lists: [numTextCols][]string{colLevel: f.Level, colService: f.Service, colMessage: f.Message}}
	for _, name := range f.Time {
		p.dotted = p.dotted || strings.Contains(name, ".")
	}
	for _, list := range [][]string{f.Time, f.Level, f.Service, f.Message} {
		for _, name := range list {
			if name != "" {
				p.first[name[0]] |= 1 << min(len(name), 63)
			}
		}
	}
	return p
}

// columns is the outcome of a pick: which member fills each column (-1 for none), and the
// members it consumed.
type columns struct {
	time     time.Time
	hasTime  bool
	timeIdx  int // the member that gave the time, when consumed; else -1
	text     [numTextCols]int
	consumed [numTextCols + 1]int
	n        int
}

// candidate reports whether member i may carry one of the picker's names.
func (p *picker) candidate(d *Doc, i int) bool {
	sp := &d.spans[i]
	if sp.esc {
		return true
	}
	if sp.ke == sp.ks {
		return p.first[0]&1 != 0
	}
	return p.first[d.data[sp.ks]]&(1<<min(int(sp.ke-sp.ks), 63)) != 0
}

// pick fills c from the object d, with the rules of [Fields]: for each column the first
// candidate name present with a usable value wins, and its member leaves the attributes.
func (p *picker) pick(d *Doc, c *columns) {
	*c = columns{text: [numTextCols]int{-1, -1, -1}, timeIdx: -1}
	var cand uint64 // members that may match, for objects of up to 64 members
	all := len(d.spans) > 64
	for i := range d.spans {
		if !all && p.candidate(d, i) {
			cand |= 1 << i
		}
	}
	if cand == 0 && !all && !p.dotted {
		return
	}
	// first returns the first member called name, or -1.
	first := func(name string) int {
		for i := range d.spans {
			if (all || cand&(1<<i) != 0) && d.nameIs(i, name) {
				return i
			}
		}
		return -1
	}
	for _, name := range p.f.Time {
		i := first(name)
		var v Field
		switch {
		case i >= 0:
			v = d.Field(i)
		case strings.Contains(name, "."):
			var ok bool
			if v, ok = d.Lookup(name); !ok {
				continue
			}
		default:
			continue
		}
		if t, err := p.f.TimeFormat.Parse(v); err == nil {
			c.time, c.hasTime = t, true
			if i >= 0 {
				c.consumed[c.n] = i
				c.n++
				c.timeIdx = i
			}
			break
		}
	}
	for col, names := range p.lists {
		for _, name := range names {
			i := first(name)
			if i < 0 {
				continue
			}
			k := d.spans[i].kind
			if (col == colMessage && k != Null) || k.Scalar() {
				c.text[col] = i
				c.consumed[c.n] = i
				c.n++
				break
			}
		}
	}
}

// appendText appends the text of a column: a string unquoted, any other value (numbers and
// booleans, and for the message objects and arrays) as its JSON text.
func (c *columns) appendText(dst []byte, d *Doc, col int) []byte {
	i := c.text[col]
	if i < 0 {
		return dst
	}
	f := d.Field(i)
	if out, ok := f.AppendText(dst); ok {
		return out
	}
	return append(dst, f.Value...) // a message that is an object or array: its JSON
}

func (c *columns) isConsumed(i int) bool {
	for _, k := range c.consumed[:c.n] {
		if k == i {
			return true
		}
	}
	return false
}

// appendAttributes appends a JSON object of the members no column consumed, in input order,
// on one line; it appends nothing when none remain.
func (c *columns) appendAttributes(dst []byte, d *Doc) []byte {
	if c.n == len(d.spans) {
		return dst
	}
	start := len(dst)
	dst = append(dst, '{')
	first := true
	if d.compact {
		// Runs of kept members are copied as they are: in a compact document they read
		// exactly as the member-by-member form below.
		for i := 0; i < len(d.spans); {
			if c.isConsumed(i) {
				i++
				continue
			}
			j := i
			for j+1 < len(d.spans) && !c.isConsumed(j+1) {
				j++
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(dst, d.data[d.spans[i].ks-1:d.spans[j].ve]...)
			i = j + 1
		}
		return append(dst, '}')
	}
	for i := range d.spans {
		if c.isConsumed(i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		sp := &d.spans[i]
		dst = append(dst, d.data[sp.ks-1:sp.ke+1]...) // the key with its quotes
		dst = append(dst, ':')
		dst = append(dst, d.data[sp.vs:sp.ve]...)
	}
	dst = append(dst, '}')
	if d.Multiline {
		var b bytes.Buffer
		if err := json.Compact(&b, dst[start:]); err == nil {
			dst = append(dst[:start], b.Bytes()...)
		}
	}
	return dst
}

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
)

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

// ErrInvalidUTF8 is returned when a record cannot be encoded because it is not valid UTF-8
// (Parquet strings must be).
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
// its schema members; any other JSON value or non-JSON text becomes the message. It fails
// with [ErrInvalidUTF8] unless data is valid UTF-8. The scratch buffer buf is reused for
// the attributes and returned.
func (f Fields) Split(l *Log, data []byte, d *Doc, buf []byte) ([]byte, error) {
	*l = Log{}
	if (d.Kind != Invalid && !d.UTF8) || (d.Kind == Invalid && !utf8.Valid(data)) {
		return buf, ErrInvalidUTF8
	}
	if d.Kind != Object {
		l.Message = string(data)
		return buf, nil
	}
	f = f.withDefaults()
	// consumed marks top-level members taken by a column (dotted members stay in the
	// attributes, inside their parent).
	var consumed [4]int
	n := 0
	take := func(names []string, text func(Field) (string, bool)) string {
		for _, name := range names {
			for i := range d.spans {
				if !d.nameIs(i, name) {
					continue
				}
				if s, ok := text(d.Field(i)); ok {
					consumed[n] = i
					n++
					return s
				}
				break
			}
		}
		return ""
	}
	if t, member, ok := TimeOf(d, f.Time, f.TimeFormat); ok {
		tt := t
		l.Time = &tt
		for i := range d.spans {
			if d.nameIs(i, member) {
				consumed[n] = i
				n++
				break
			}
		}
	}
	l.Level = take(f.Level, scalarText)
	l.Service = take(f.Service, scalarText)
	l.Message = take(f.Message, func(v Field) (string, bool) {
		if s, ok := v.Text(); ok {
			return s, true
		}
		if v.Kind == Null {
			return "", false
		}
		return string(v.Value), true
	})
	if n == len(d.spans) {
		return buf, nil
	}
	buf = append(buf[:0], '{')
	first := true
	for i := range d.spans {
		skip := false
		for _, c := range consumed[:n] {
			if c == i {
				skip = true
			}
		}
		if skip {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, '"')
		f := d.Field(i)
		buf = append(buf, f.Key...)
		buf = append(buf, '"', ':')
		buf = append(buf, f.Value...)
	}
	buf = append(buf, '}')
	if d.Multiline {
		var c bytes.Buffer
		if err := json.Compact(&c, buf); err == nil {
			buf = append(buf[:0], c.Bytes()...)
		}
	}
	l.Attributes = buf
	return buf, nil
}

func scalarText(v Field) (string, bool) {
	if !v.Kind.Scalar() {
		return "", false
	}
	return v.Text()
}

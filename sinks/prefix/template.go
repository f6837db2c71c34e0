package prefix

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Expression namespaces, as Firehose spells them.
const (
	nsTimestamp    = "timestamp"
	nsQuery        = "partitionKeyFromQuery"
	nsFirehose     = "firehose"
	nsKinlog       = "kinlog"
	errorOutputArg = "error-output-type"
)

// StreamExpression is kinlog's expression for the name of the stream a sink archives, so
// that the streams of a multi-stream worker can keep their archives under prefixes of their
// own. A sink binds it with [BindStream] before it parses its templates; a reader of the
// archive binds it with the stream it reads.
const StreamExpression = "!{kinlog:stream}"

// BindStream returns the template source s with every [StreamExpression] replaced by the
// stream's name (the part after "stream/" of an ARN), escaped as partition values are.
func BindStream(s, stream string) string {
	if !strings.Contains(s, StreamExpression) {
		return s
	}
	if i := strings.LastIndex(stream, ":stream/"); strings.HasPrefix(stream, "arn:") && i >= 0 {
		stream = stream[i+len(":stream/"):]
	}
	return strings.ReplaceAll(s, StreamExpression, string(EscapeValue(nil, stream)))
}

// UsesStream reports whether the template source s holds [StreamExpression].
func UsesStream(s string) bool { return strings.Contains(s, StreamExpression) }

// Namespaces a [Template] may be allowed to use.
type Namespaces uint8

const (
	// AllowTimestamp allows !{timestamp:pattern}.
	AllowTimestamp Namespaces = 1 << iota
	// AllowQuery allows !{partitionKeyFromQuery:field}.
	AllowQuery
	// AllowErrorType allows !{firehose:error-output-type}.
	AllowErrorType
)

// ErrUnknownExpression is wrapped by errors about expressions a template may not use.
var ErrUnknownExpression = errors.New("prefix: unsupported expression")

// Template is a compiled key prefix template: literal text with Firehose expressions.
//
//	!{timestamp:PATTERN}              the record's time in UTC, PATTERN a DateTimeFormatter
//	                                  pattern (see DateTimeFormat)
//	!{partitionKeyFromQuery:FIELD}    a member of the JSON record (dotted for nested members)
//	!{firehose:error-output-type}     the error class, in error-output prefixes only
//	!{kinlog:stream}                  the stream's name: bound by [BindStream] before Parse
//
// !{firehose:random-string} is refused: an object's key must be a pure function of its
// records, so that a replay overwrites instead of duplicating.
type Template struct {
	src    string
	parts  []part
	fields []string
	ns     Namespaces
}

type part struct {
	kind  uint8 // 0 literal, 1 timestamp, 2 field, 3 error type
	lit   string
	ts    *DateTimeFormat
	field int
}

// Parse compiles a template that may use the namespaces in allow.
func Parse(s string, allow Namespaces) (*Template, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: template is not valid UTF-8", ErrPattern)
	}
	t := &Template{src: s}
	rest := s
	for rest != "" {
		i := strings.Index(rest, "!{")
		if i < 0 {
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("%w: unterminated expression in %q", ErrPattern, s)
		}
		expr := rest[i+2 : i+end]
		rest = rest[i+end+1:]
		ns, arg, ok := strings.Cut(expr, ":")
		if !ok {
			return nil, fmt.Errorf("%w: expression !{%s} has no namespace (want namespace:argument)", ErrUnknownExpression, expr)
		}
		switch ns {
		case nsTimestamp:
			if allow&AllowTimestamp == 0 {
				return nil, fmt.Errorf("%w: !{%s} is not allowed here", ErrUnknownExpression, expr)
			}
			if arg == "" {
				return nil, fmt.Errorf("%w: !{timestamp:} needs a pattern", ErrPattern)
			}
			f, err := ParseDateTimeFormat(arg)
			if err != nil {
				return nil, err
			}
			t.parts = append(t.parts, part{kind: 1, ts: f})
			t.ns |= AllowTimestamp
		case nsQuery:
			if allow&AllowQuery == 0 {
				return nil, fmt.Errorf("%w: !{%s} is not allowed here", ErrUnknownExpression, expr)
			}
			if err := checkField(arg); err != nil {
				return nil, err
			}
			idx := -1
			for j, f := range t.fields {
				if f == arg {
					idx = j
				}
			}
			if idx < 0 {
				idx = len(t.fields)
				t.fields = append(t.fields, arg)
			}
			t.parts = append(t.parts, part{kind: 2, field: idx})
			t.ns |= AllowQuery
		case nsFirehose:
			switch arg {
			case errorOutputArg:
				if allow&AllowErrorType == 0 {
					return nil, fmt.Errorf("%w: !{firehose:error-output-type} is only allowed in the error prefix", ErrUnknownExpression)
				}
				t.parts = append(t.parts, part{kind: 3})
				t.ns |= AllowErrorType
			case "random-string":
				return nil, fmt.Errorf("%w: !{firehose:random-string} would make keys differ on replay (kinlog's keys are deterministic)", ErrUnknownExpression)
			default:
				return nil, fmt.Errorf("%w: !{%s}", ErrUnknownExpression, expr)
			}
		case nsKinlog:
			if arg == "stream" {
				return nil, fmt.Errorf("%w: %s stands for a stream's name and must be bound to one first (the sink does it; to read the archive of one stream, put its name in the prefix)", ErrUnknownExpression, StreamExpression)
			}
			return nil, fmt.Errorf("%w: !{%s} (kinlog's namespace has only !{kinlog:stream})", ErrUnknownExpression, expr)
		default:
			return nil, fmt.Errorf("%w: namespace %q in !{%s} (want timestamp, partitionKeyFromQuery, firehose or kinlog)", ErrUnknownExpression, ns, expr)
		}
	}
	return t, nil
}

func checkField(f string) error {
	f = strings.TrimPrefix(f, ".") // jq style .a.b
	if f == "" {
		return fmt.Errorf("%w: !{partitionKeyFromQuery:} needs a field name", ErrPattern)
	}
	for _, seg := range strings.Split(f, ".") {
		if seg == "" {
			return fmt.Errorf("%w: empty segment in field %q", ErrPattern, f)
		}
	}
	return nil
}

// MustParse is like [Parse] but panics on error; for templates known at compile time.
func MustParse(s string, allow Namespaces) *Template {
	t, err := Parse(s, allow)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// Fields returns the JSON member paths named by !{partitionKeyFromQuery:...}, in order of
// first use, without a leading dot. [Values.Fields] must follow this order.
func (t *Template) Fields() []string {
	out := make([]string, len(t.fields))
	for i, f := range t.fields {
		out[i] = strings.TrimPrefix(f, ".")
	}
	return out
}

// Uses reports which namespaces the template uses.
func (t *Template) Uses() Namespaces { return t.ns }

// LiteralPrefix returns the text before the first expression: every key the template makes
// starts with it.
func (t *Template) LiteralPrefix() string {
	if len(t.parts) > 0 && t.parts[0].kind == 0 {
		return t.parts[0].lit
	}
	return ""
}

// Values are what a template is evaluated with.
type Values struct {
	// Time is the record's time.
	Time time.Time
	// Fields are the values of [Template.Fields], in that order.
	Fields []string
	// ErrorType is the error class for !{firehose:error-output-type}.
	ErrorType string
}

// Resolution returns the coarsest duration r such that records whose times have the same
// t.Truncate(r) and the same field values get the same result (see
// [DateTimeFormat.Resolution]); a day when the template uses no timestamp.
func (t *Template) Resolution() time.Duration {
	r := 24 * time.Hour
	for _, p := range t.parts {
		if p.kind == 1 {
			r = min(r, p.ts.Resolution())
		}
	}
	return r
}

// Append evaluates the template and appends the result to dst. Field values are escaped
// with [EscapeValue] so that a value cannot add path segments.
func (t *Template) Append(dst []byte, v *Values) []byte {
	for _, p := range t.parts {
		switch p.kind {
		case 0:
			dst = append(dst, p.lit...)
		case 1:
			dst = p.ts.Append(dst, v.Time)
		case 2:
			if p.field < len(v.Fields) {
				dst = EscapeValue(dst, v.Fields[p.field])
			}
		case 3:
			dst = EscapeValue(dst, v.ErrorType)
		}
	}
	return dst
}

// EscapeValue appends a partition value to dst, percent-encoding every byte outside
// [A-Za-z0-9-_.~], so that a value cannot add path segments or characters that S3 or
// Hive-style readers treat specially; "." and ".." are encoded whole.
func EscapeValue(dst []byte, s string) []byte {
	if s == "." || s == ".." {
		for range s {
			dst = append(dst, "%2E"...)
		}
		return dst
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

// UnescapeValue reverses [EscapeValue].
func UnescapeValue(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("%w: truncated escape in %q", ErrPattern, s)
		}
		h, ok1 := unhex(s[i+1])
		l, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: bad escape in %q", ErrPattern, s)
		}
		b = append(b, h<<4|l)
		i += 2
	}
	return string(b), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Default templates.
const (
	// DefaultArchive is the default archive prefix: Hive-style date and hour partitions.
	DefaultArchive = "logs/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
	// DefaultError is the default error-output prefix.
	DefaultError = "errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
	// DefaultAnalytics is the default prefix of rollup objects.
	DefaultAnalytics = "analytics/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
)

// PartKind says what a [Part] of a template is.
type PartKind uint8

// The kinds of template parts.
const (
	PartLiteral   PartKind = iota // literal text
	PartTimestamp                 // !{timestamp:Pattern}
	PartField                     // !{partitionKeyFromQuery:Field}
	PartErrorType                 // !{firehose:error-output-type}
)

// Part is one piece of a template, for tools that map the layout onto other systems (for
// example Athena partition projection).
type Part struct {
	Kind    PartKind
	Literal string // PartLiteral: the text
	Pattern string // PartTimestamp: the DateTimeFormatter pattern
	Field   string // PartField: the JSON member path, without a leading dot
}

// Parts returns the template's pieces in order.
func (t *Template) Parts() []Part {
	out := make([]Part, len(t.parts))
	for i, p := range t.parts {
		switch p.kind {
		case 0:
			out[i] = Part{Kind: PartLiteral, Literal: p.lit}
		case 1:
			out[i] = Part{Kind: PartTimestamp, Pattern: p.ts.String()}
		case 2:
			out[i] = Part{Kind: PartField, Field: strings.TrimPrefix(t.fields[p.field], ".")}
		case 3:
			out[i] = Part{Kind: PartErrorType}
		}
	}
	return out
}

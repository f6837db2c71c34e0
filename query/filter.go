package query

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/kinlog/kinlog/sinks/encode"
)

// Op is a comparison in a filter condition.
type Op int

// The operators of a condition, as written in `--where`.
const (
	OpEq       Op = iota // field=value
	OpNe                 // field!=value
	OpMatch              // field~regex
	OpNotMatch           // field!~regex
	OpLt                 // field<number
	OpLe                 // field<=number
	OpGt                 // field>number
	OpGe                 // field>=number
	OpExists             // field exists
	OpMissing            // field missing
)

var opText = map[Op]string{
	OpEq: "=", OpNe: "!=", OpMatch: "~", OpNotMatch: "!~", OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">=",
	OpExists: " exists", OpMissing: " missing",
}

// ErrBadFilter is wrapped by every error ParseCond returns.
var ErrBadFilter = errors.New("bad filter")

// Limits on filters, so that hostile input is refused with a clear error.
const (
	MaxFieldLen = 256
	MaxValueLen = 4096
)

// Cond is one condition on a record's JSON field. A field is found as the archive sink
// finds partition and rollup members ([encode.Doc.Lookup]): a member whose name is the
// whole field (`{"http.status":500}`), else a dotted path into nested objects
// (`{"http":{"status":500}}`); every other character of a field name is literal.
type Cond struct {
	Field string
	Op    Op
	Value string

	re     *regexp.Regexp
	num    float64
	isNum  bool
	needle []byte // bytes every matching record contains (for a fast pre-check), or nil
}

func (c Cond) String() string {
	if c.Op == OpExists || c.Op == OpMissing {
		return c.Field + opText[c.Op]
	}
	return c.Field + opText[c.Op] + c.Value
}

// ParseCond parses one condition: `field=value`, `field!=value`, `field~regex`,
// `field!~regex`, `field<n`, `field<=n`, `field>n`, `field>=n`, `field exists` or
// `field missing`.
func ParseCond(s string) (Cond, error) {
	s = strings.TrimSpace(s)
	bad := func(format string, args ...any) (Cond, error) {
		return Cond{}, fmt.Errorf("%w %q: %s", ErrBadFilter, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return bad("empty condition")
	}
	var c Cond
	if f, ok := strings.CutSuffix(s, " exists"); ok {
		c = Cond{Field: strings.TrimSpace(f), Op: OpExists}
	} else if f, ok := strings.CutSuffix(s, " missing"); ok {
		c = Cond{Field: strings.TrimSpace(f), Op: OpMissing}
	} else {
		i := strings.IndexAny(s, "=!~<>")
		if i < 0 {
			return bad("no operator; use one of = != ~ !~ < <= > >= or `field exists` / `field missing`")
		}
		c.Field = strings.TrimSpace(s[:i])
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "!="):
			c.Op, c.Value = OpNe, rest[2:]
		case strings.HasPrefix(rest, "!~"):
			c.Op, c.Value = OpNotMatch, rest[2:]
		case strings.HasPrefix(rest, "<="):
			c.Op, c.Value = OpLe, rest[2:]
		case strings.HasPrefix(rest, ">="):
			c.Op, c.Value = OpGe, rest[2:]
		case rest[0] == '=':
			c.Op, c.Value = OpEq, rest[1:]
		case rest[0] == '~':
			c.Op, c.Value = OpMatch, rest[1:]
		case rest[0] == '<':
			c.Op, c.Value = OpLt, rest[1:]
		case rest[0] == '>':
			c.Op, c.Value = OpGt, rest[1:]
		default:
			return bad("unknown operator at %q", rest)
		}
		c.Value = strings.TrimSpace(c.Value)
	}
	if err := checkField(c.Field); err != nil {
		return bad("%v", err)
	}
	if len(c.Value) > MaxValueLen {
		return bad("value longer than %d bytes", MaxValueLen)
	}
	switch c.Op {
	case OpMatch, OpNotMatch:
		re, err := regexp.Compile(c.Value)
		if err != nil {
			return bad("invalid regular expression: %v", err)
		}
		c.re = re
	case OpLt, OpLe, OpGt, OpGe:
		n, err := strconv.ParseFloat(c.Value, 64)
		if err != nil {
			return bad("%s needs a number, got %q", opText[c.Op], c.Value)
		}
		c.num = n
	case OpEq, OpNe:
		if n, err := strconv.ParseFloat(c.Value, 64); err == nil {
			c.num, c.isNum = n, true
		}
		if c.Op == OpEq && c.Value != "" && !c.isNum && jsonPlain(c.Value) {
			c.needle = []byte(c.Value)
		}
	}
	return c, nil
}

func checkField(f string) error {
	if f == "" {
		return errors.New("empty field name")
	}
	if len(f) > MaxFieldLen {
		return fmt.Errorf("field name longer than %d bytes", MaxFieldLen)
	}
	for _, part := range strings.Split(f, ".") {
		if part == "" {
			return fmt.Errorf("field %q has an empty path segment", f)
		}
	}
	for _, r := range f {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("field %q contains a control character", f)
		}
	}
	return nil
}

// jsonPlain reports whether s holds no character a JSON encoder must escape, so that an
// escape-free record whose field equals s contains s's bytes.
func jsonPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

// Match reports whether the JSON record satisfies the condition.
func (c *Cond) Match(rec []byte) bool {
	if c.skip(rec) {
		return false
	}
	var d encode.Doc
	_ = d.Parse(rec)
	return c.matchDoc(&d)
}

// skip reports whether rec cannot match, without parsing it: a record without
// backslashes has no JSON escapes, so if it lacks the value's bytes the field cannot equal
// the value.
func (c *Cond) skip(rec []byte) bool {
	return c.needle != nil && !bytes.Contains(rec, c.needle) && bytes.IndexByte(rec, '\\') < 0
}

// lookup finds a field in a parsed record.
func lookup(d *encode.Doc, field string) (encode.Field, bool) {
	if d.Kind != encode.Object {
		return encode.Field{}, false
	}
	return d.Lookup(field)
}

func (c *Cond) matchDoc(d *encode.Doc) bool {
	f, ok := lookup(d, c.Field)
	return c.matchField(&f, ok)
}

// matchField reports whether the condition holds for a record whose field is f (ok), or
// that does not have the field (!ok).
func (c *Cond) matchField(f *encode.Field, ok bool) bool {
	switch c.Op {
	case OpExists:
		return ok
	case OpMissing:
		return !ok
	}
	if !ok {
		return c.Op == OpNe || c.Op == OpNotMatch
	}
	text := scalarText(f)
	switch c.Op {
	case OpEq, OpNe:
		eq := false
		if c.isNum && f.Kind == encode.Number {
			n, err := strconv.ParseFloat(string(f.Value), 64)
			eq = err == nil && n == c.num
		} else {
			eq = string(text) == c.Value
		}
		return eq == (c.Op == OpEq)
	case OpMatch:
		return c.re.Match(text)
	case OpNotMatch:
		return !c.re.Match(text)
	}
	if f.Kind != encode.Number && f.Kind != encode.String {
		return false
	}
	n, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return false
	}
	switch c.Op {
	case OpLt:
		return n < c.num
	case OpLe:
		return n <= c.num
	case OpGt:
		return n > c.num
	case OpGe:
		return n >= c.num
	}
	return false
}

// scalarText is a field's value as text: a string unquoted, anything else as its JSON. It
// allocates only for a string with escapes.
func scalarText(f *encode.Field) []byte {
	if f.Kind == encode.String && bytes.IndexByte(f.Value, '\\') < 0 {
		return f.Value[1 : len(f.Value)-1]
	}
	if f.Kind == encode.String {
		return appendScalar(nil, f)
	}
	return f.Value
}

// appendScalar appends a field's value as text: a string unquoted, anything else as its
// JSON.
func appendScalar(dst []byte, f *encode.Field) []byte {
	if out, ok := f.AppendText(dst); ok {
		return out
	}
	return append(dst, f.Value...)
}

// Filter is a conjunction of conditions; the empty Filter matches every record.
type Filter []Cond

// ParseFilter parses each `--where` argument as a condition; all must hold.
func ParseFilter(conds []string) (Filter, error) {
	f := make(Filter, 0, len(conds))
	for _, s := range conds {
		c, err := ParseCond(s)
		if err != nil {
			return nil, err
		}
		f = append(f, c)
	}
	return f, nil
}

// Match reports whether the JSON record satisfies every condition.
func (f Filter) Match(rec []byte) bool {
	var d encode.Doc
	_ = d.Parse(rec)
	return f.matchDoc(rec, &d)
}

// skip reports whether rec cannot match, from its bytes alone (see [Cond]).
func (f Filter) skip(rec []byte) bool {
	for i := range f {
		if f[i].skip(rec) {
			return true
		}
	}
	return false
}

// matchDoc is Match for a record already parsed into d.
func (f Filter) matchDoc(rec []byte, d *encode.Doc) bool {
	for i := range f {
		if f[i].skip(rec) || !f[i].matchDoc(d) {
			return false
		}
	}
	return true
}

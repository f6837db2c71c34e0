package encode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// Kind is the kind of a JSON value.
type Kind uint8

// The kinds of JSON values. Invalid marks input that is not JSON.
const (
	Invalid Kind = iota
	Null
	Bool
	Number
	String
	Object
	Array
)

var kindNames = [...]string{"invalid", "null", "bool", "number", "string", "object", "array"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Scalar reports whether values of kind k can be used as partition values or dimensions:
// strings, numbers and booleans.
func (k Kind) Scalar() bool { return k == String || k == Number || k == Bool }

// maxDepth bounds nesting like encoding/json does.
const maxDepth = 10000

// Field is one member of a JSON object, pointing into the parsed input.
type Field struct {
	// Key is the member name as written between the quotes: still escaped when it contains
	// backslash escapes (see [Field.Name]).
	Key []byte
	// Value is the raw JSON text of the member's value.
	Value []byte
	Kind  Kind
	// escaped reports whether Key contains escapes.
	escaped bool
}

// Name returns the member name with escapes resolved.
func (f *Field) Name() string {
	if !f.escaped {
		return string(f.Key)
	}
	return unquote(f.Key)
}

// Text returns a scalar value as text: a string unquoted, a number or boolean as written.
// Other kinds return "", false.
func (f *Field) Text() (string, bool) {
	switch f.Kind {
	case String:
		return unquote(f.Value[1 : len(f.Value)-1]), true
	case Number, Bool:
		return string(f.Value), true
	}
	return "", false
}

// AppendText is [Field.Text] appending to dst; it does not allocate unless the string has
// escapes.
func (f *Field) AppendText(dst []byte) ([]byte, bool) {
	switch f.Kind {
	case String:
		return appendUnquoted(dst, f.Value[1:len(f.Value)-1]), true
	case Number, Bool:
		return append(dst, f.Value...), true
	}
	return dst, false
}

// appendUnquoted appends the contents of a string (between the quotes) with its escapes
// resolved. The input was validated by the scanner.
func appendUnquoted(dst, b []byte) []byte {
	if bytes.IndexByte(b, '\\') < 0 {
		return append(dst, b...)
	}
	return append(dst, unquote(b)...)
}

// unquote resolves the escapes of a string's contents (between the quotes). The input was
// validated by the scanner.
func unquote(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	var s string
	q := make([]byte, 0, len(b)+2)
	q = append(q, '"')
	q = append(q, b...)
	q = append(q, '"')
	if err := json.Unmarshal(q, &s); err != nil {
		return string(b)
	}
	return s
}

// errSyntax is returned for input that is not valid JSON.
var errSyntax = errors.New("invalid JSON")

// Doc is a parsed JSON document: its kind and, for an object, its top-level members in input
// order. A Doc points into the input; it is reused across calls to [Doc.Parse] to avoid
// allocations.
type Doc struct {
	Kind Kind
	// Multiline reports whether the document contains a line break (CR or LF) outside
	// strings, i.e. it must be compacted to fit on one line.
	Multiline bool
	// UTF8 reports whether every string is valid UTF-8 (JSON outside strings is ASCII), so
	// that the whole document is.
	UTF8 bool
	// compact reports that the document has no whitespace outside strings: members are
	// separated by exactly "," and names from values by exactly ":".
	compact bool

	data  []byte
	spans []span // top-level members of an object
}

// span locates one member in Doc.data without pointers (cheap to append).
type span struct {
	ks, ke, vs, ve int32 // key contents (between the quotes) and value
	kind           Kind
	esc            bool
}

// Len returns the number of top-level members of an object.
func (d *Doc) Len() int { return len(d.spans) }

// Field returns the i-th top-level member, in input order.
func (d *Doc) Field(i int) Field {
	sp := &d.spans[i]
	return Field{Key: d.data[sp.ks:sp.ke], Value: d.data[sp.vs:sp.ve], Kind: sp.kind, escaped: sp.esc}
}

// nameIs reports whether the i-th member is called name.
func (d *Doc) nameIs(i int, name string) bool {
	sp := &d.spans[i]
	if !sp.esc {
		return string(d.data[sp.ks:sp.ke]) == name
	}
	return unquote(d.data[sp.ks:sp.ke]) == name
}

// Parse validates data as one JSON value (surrounding whitespace allowed) with the grammar
// encoding/json accepts, and records the top-level members of an object. On invalid input it
// returns an error and d.Kind is Invalid. Like encoding/json it accepts strings that are
// not valid UTF-8, and reports them through d.UTF8.
func (d *Doc) Parse(data []byte) error {
	d.Kind = Invalid
	d.spans = d.spans[:0]
	d.data = data
	d.Multiline = false
	d.UTF8 = false
	d.compact = false
	st := scanState{utf8OK: true}
	i := st.skip(data, 0)
	if i >= len(data) {
		return errSyntax
	}
	var k Kind
	if data[i] == '{' {
		k, i = Object, scanObject(data, i, d, 1, &st)
	} else {
		k, i = scanValue(data, i, 1, &st)
	}
	if i < 0 || st.skip(data, i) != len(data) {
		d.spans = d.spans[:0]
		return errSyntax
	}
	d.Kind = k
	d.UTF8 = st.utf8OK
	d.compact = !st.space
	// Raw CR and LF are invalid inside strings, so in valid JSON any is whitespace: a
	// document without whitespace outside its strings (what loggers write) has none.
	d.Multiline = st.space && (bytes.IndexByte(data, '\n') >= 0 || bytes.IndexByte(data, '\r') >= 0)
	return nil
}

// Get returns the top-level member called name (the first one if repeated).
func (d *Doc) Get(name string) (Field, bool) {
	for i := range d.spans {
		if d.nameIs(i, name) {
			return d.Field(i), true
		}
	}
	return Field{}, false
}

// Lookup returns the member at a dotted path: a top-level member whose name is the whole
// path wins; otherwise each dot descends into a nested object ("http.status" is the member
// "status" of the object "http").
func (d *Doc) Lookup(path string) (Field, bool) {
	if f, ok := d.Get(path); ok {
		return f, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		f, ok := d.Get(path[:i])
		if !ok || f.Kind != Object {
			continue
		}
		var sub Doc
		if sub.Parse(f.Value) != nil {
			return Field{}, false
		}
		if g, ok := sub.Lookup(path[i+1:]); ok {
			return g, true
		}
	}
	return Field{}, false
}

// The scanning functions take the input and the index where a token starts, and return
// the index just past it, or -1 when the input is invalid.

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// scanState is what the scanner learns on its way through a document.
type scanState struct {
	utf8OK bool // every string is valid UTF-8
	space  bool // whitespace was skipped somewhere outside strings
}

// skip returns the index of the first byte at or after i that is not whitespace.
func (st *scanState) skip(d []byte, i int) int {
	if i < len(d) && isSpace(d[i]) {
		st.space = true
		for i++; i < len(d) && isSpace(d[i]); i++ {
		}
	}
	return i
}

// scanValue scans any value and returns its kind.
func scanValue(d []byte, i, depth int, u *scanState) (Kind, int) {
	switch c := d[i]; {
	case c == '"':
		i, _ = scanString(d, i, u)
		return String, i
	case c == '{':
		return Object, scanObject(d, i, nil, depth, u)
	case c == '[':
		return Array, scanArray(d, i, depth, u)
	case c == 't':
		return Bool, scanLit(d, i, "true")
	case c == 'f':
		return Bool, scanLit(d, i, "false")
	case c == 'n':
		return Null, scanLit(d, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return Number, scanNumber(d, i)
	}
	return Invalid, -1
}

func scanLit(d []byte, i int, w string) int {
	if len(d)-i < len(w) || string(d[i:i+len(w)]) != w {
		return -1
	}
	return i + len(w)
}

func scanNumber(d []byte, i int) int {
	if d[i] == '-' {
		i++
	}
	switch {
	case i >= len(d):
		return -1
	case d[i] == '0':
		i++
	case d[i] >= '1' && d[i] <= '9':
		for i++; i < len(d) && d[i] >= '0' && d[i] <= '9'; i++ {
		}
	default:
		return -1
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return -1
		}
		for i++; i < len(d) && d[i] >= '0' && d[i] <= '9'; i++ {
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return -1
		}
		for i++; i < len(d) && d[i] >= '0' && d[i] <= '9'; i++ {
		}
	}
	return i
}

// strSpecial marks bytes that end the fast path inside a string: the quote, the backslash,
// control characters and non-ASCII bytes (checked for valid UTF-8).
var strSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	return t
}()

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialMask sets the high bit of every special byte (see strSpecial) of the 8-byte
// little-endian word w. Borrows only run towards later bytes, so the lowest set bit always
// marks the first special byte exactly (later ones may be false positives).
func specialMask(w uint64) uint64 {
	q := w ^ (lsb * '"')
	b := w ^ (lsb * '\\')
	return ((q-lsb)&^q | (b-lsb)&^b | (w-lsb*0x20)&^w | w) & msb
}

// hasSpecial reports whether any byte of w is special.
func hasSpecial(w uint64) bool { return specialMask(w) != 0 }

// scanString scans a string starting at its opening quote and reports whether it contains
// escapes. It clears st.utf8OK when the string holds invalid UTF-8.
func scanString(d []byte, i int, st *scanState) (int, bool) {
	escaped := false
	i++
	for {
		for {
			if i+8 > len(d) {
				for i < len(d) && !strSpecial[d[i]] {
					i++
				}
				break
			}
			if m := specialMask(binary.LittleEndian.Uint64(d[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(d) {
			return -1, escaped
		}
		switch c := d[i]; {
		case c == '"':
			return i + 1, escaped
		case c < 0x20:
			return -1, escaped
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				st.utf8OK = false
			}
			i += size
			continue
		}
		// Backslash escape.
		escaped = true
		i++
		if i >= len(d) {
			return -1, escaped
		}
		switch d[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i++
		case 'u':
			if len(d)-i < 5 || !isHex(d[i+1]) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) {
				return -1, escaped
			}
			i += 5
		default:
			return -1, escaped
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// scanObject scans an object starting at '{'. When doc is not nil, its members are
// recorded in doc.
func scanObject(d []byte, i int, doc *Doc, depth int, u *scanState) int {
	if depth > maxDepth {
		return -1
	}
	i = u.skip(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return -1
		}
		ks := i
		ke, esc := scanString(d, i, u)
		if ke < 0 {
			return -1
		}
		i = ke
		if i < len(d) && d[i] != ':' {
			i = u.skip(d, i)
		}
		if i >= len(d) || d[i] != ':' {
			return -1
		}
		i++
		if i < len(d) && isSpace(d[i]) {
			i = u.skip(d, i)
		}
		if i >= len(d) {
			return -1
		}
		vs := i
		var k Kind
		if k, i = scanValue(d, i, depth+1, u); i < 0 {
			return -1
		}
		if doc != nil {
			n := len(doc.spans)
			if n == cap(doc.spans) {
				doc.spans = append(doc.spans, span{})
			} else {
				doc.spans = doc.spans[:n+1]
			}
			sp := &doc.spans[n]
			sp.ks, sp.ke, sp.vs, sp.ve, sp.kind, sp.esc = int32(ks+1), int32(ke-1), int32(vs), int32(i), k, esc
		}
		if i < len(d) && isSpace(d[i]) {
			i = u.skip(d, i)
		}
		if i >= len(d) {
			return -1
		}
		switch d[i] {
		case ',':
			i = u.skip(d, i+1)
		case '}':
			return i + 1
		default:
			return -1
		}
	}
}

func scanArray(d []byte, i, depth int, u *scanState) int {
	if depth > maxDepth {
		return -1
	}
	i = u.skip(d, i+1)
	if i < len(d) && d[i] == ']' {
		return i + 1
	}
	for {
		i = u.skip(d, i)
		if i >= len(d) {
			return -1
		}
		if _, i = scanValue(d, i, depth+1, u); i < 0 {
			return -1
		}
		i = u.skip(d, i)
		if i >= len(d) {
			return -1
		}
		switch d[i] {
		case ',':
			i++
		case ']':
			return i + 1
		default:
			return -1
		}
	}
}

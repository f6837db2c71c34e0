package container

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

var (
	errDockerJSON   = syntaxError("Docker: not a JSON object")
	errDockerLog    = syntaxError(`Docker: no "log" string`)
	errDockerStream = syntaxError(`Docker: "stream" is not "stdout" or "stderr"`)
	errDockerTime   = syntaxError(`Docker: "time" is not an RFC 3339 time`)
)

// ParseDocker parses one line of Docker's json-file log driver
// (/var/lib/docker/containers/<id>/<id>-json.log):
//
//	{"log":"content\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}
//
// The line must be one JSON object with the string members "log", "stream" ("stdout" or
// "stderr") and "time" (RFC 3339); other members, such as the "attrs" of --log-opt labels,
// are checked for syntax and skipped. As with encoding/json, a repeated member counts with
// its last value, and whitespace around the object (a trailing "\n") is allowed.
//
// Docker cuts output lines longer than 16 KiB into pieces; every piece but the last lacks
// the final newline, so a "log" that does not end in "\n" is Partial. The "\n" is not part of
// Log.
//
// Log aliases b when the JSON string holds no escape but the final \n — the usual case for
// text output. Otherwise the string is unescaped (\" \\ \/ \b \f \n \r \t and \uXXXX, with
// UTF-16 surrogate pairs combined and a lone surrogate becoming U+FFFD, as encoding/json
// does) into a new slice; b is never modified. Bytes that are not valid UTF-8 are kept as
// they are.
//
// Errors wrap [ErrSyntax].
func ParseDocker(b []byte) (Line, error) {
	var (
		logRaw, streamRaw, timeRaw    []byte
		logEsc, streamEsc, timeEsc    int // index of the first backslash in the raw string, or -1
		haveLog, haveStream, haveTime bool
	)
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return Line{}, errDockerJSON
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return Line{}, errDockerJSON
			}
			key, keyEsc, end, ok := scanString(b, i)
			if !ok {
				return Line{}, errDockerJSON
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return Line{}, errDockerJSON
			}
			i = skipSpace(b, i+1)
			if keyEsc >= 0 {
				key = unescape(key, keyEsc)
			}
			var (
				raw *[]byte
				esc *int
			)
			switch string(key) {
			case "log":
				raw, esc, haveLog = &logRaw, &logEsc, true
			case "stream":
				raw, esc, haveStream = &streamRaw, &streamEsc, true
			case "time":
				raw, esc, haveTime = &timeRaw, &timeEsc, true
			}
			switch {
			case raw == nil:
				end, ok = skipValue(b, i)
			case i < len(b) && b[i] == '"':
				*raw, *esc, end, ok = scanString(b, i)
			default:
				// A known member that is not a string: invalid for Docker, but checked
				// only once the object is read, since a later duplicate would replace it.
				*raw, *esc = nil, -2
				end, ok = skipValue(b, i)
			}
			if !ok {
				return Line{}, errDockerJSON
			}
			i = skipSpace(b, end)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return Line{}, errDockerJSON
		}
	}
	if skipSpace(b, i) != len(b) {
		return Line{}, errDockerJSON
	}

	var l Line
	if !haveStream || streamEsc == -2 {
		return Line{}, errDockerStream
	}
	if streamEsc >= 0 {
		streamRaw = unescape(streamRaw, streamEsc)
	}
	switch string(streamRaw) {
	case "stdout":
		l.Stream = Stdout
	case "stderr":
		l.Stream = Stderr
	default:
		return Line{}, errDockerStream
	}
	if !haveTime || timeEsc == -2 {
		return Line{}, errDockerTime
	}
	if timeEsc >= 0 {
		timeRaw = unescape(timeRaw, timeEsc)
	}
	t, ok := parseTime(timeRaw)
	if !ok {
		return Line{}, errDockerTime
	}
	l.Time = t
	if !haveLog || logEsc == -2 {
		return Line{}, errDockerLog
	}
	n := len(logRaw)
	switch {
	case logEsc < 0:
		// No escape, so no newline either: a piece of a longer line.
		l.Log, l.Partial = logRaw, true
	case logEsc == n-2 && logRaw[n-1] == 'n':
		l.Log = logRaw[:n-2]
	default:
		l.Log = unescape(logRaw, logEsc)
		if m := len(l.Log); m > 0 && l.Log[m-1] == '\n' {
			l.Log = l.Log[:m-1]
		} else {
			l.Partial = true
		}
	}
	return l, nil
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// The word-at-a-time tests below look at 8 bytes at once (bit hacks "haszero" and
// "hasless"): for each byte of x that matches, the high bit of that byte is set in the
// result, and the lowest set bit is always a true match (borrows only run upwards), so
// bits.TrailingZeros64(m)/8 is the index of the first matching byte.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// stringSpecial marks the bytes of x that end a run of plain string content: '"', '\\' and
// control characters.
func stringSpecial(x uint64) uint64 {
	q, bs := x^(lsb*'"'), x^(lsb*'\\')
	return ((q-lsb)&^q | (bs-lsb)&^bs | (x-lsb*0x20)&^x) & msb
}

// scanString reads the JSON string that starts with the quote at b[i]. It returns the raw
// bytes between the quotes, the index in raw of the first backslash (-1 when there is none),
// and the index after the closing quote. ok is false when the string is not valid JSON:
// unterminated, holding a control character, or with an unknown or short escape.
func scanString(b []byte, i int) (raw []byte, firstEsc, end int, ok bool) {
	start := i + 1
	firstEsc = -1
	for j := start; ; {
		for j+8 <= len(b) {
			if m := stringSpecial(binary.LittleEndian.Uint64(b[j:])); m != 0 {
				j += bits.TrailingZeros64(m) >> 3
				break
			}
			j += 8
		}
		if j >= len(b) {
			return nil, 0, 0, false
		}
		switch c := b[j]; {
		case c == '"':
			return b[start:j], firstEsc, j + 1, true
		case c < 0x20:
			return nil, 0, 0, false
		case c != '\\':
			j++
			continue
		}
		if firstEsc < 0 {
			firstEsc = j - start
		}
		if j+1 >= len(b) {
			return nil, 0, 0, false
		}
		switch b[j+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			j += 2
		case 'u':
			if j+6 > len(b) || hex4(b[j+2:j+6]) < 0 {
				return nil, 0, 0, false
			}
			j += 6
		default:
			return nil, 0, 0, false
		}
	}
}

// indexBackslash returns the index of the first '\\' in b, or len(b).
func indexBackslash(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:]) ^ (lsb * '\\')
		if m := (x - lsb) &^ x & msb; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b) && b[i] != '\\'; i++ {
	}
	return i
}

// hex4 decodes 4 hex digits, or returns -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unescape decodes the raw bytes of a string that scanString accepted, whose first
// backslash is at first, into a new slice. The result is never longer than raw.
func unescape(raw []byte, first int) []byte {
	out := make([]byte, first, len(raw))
	copy(out, raw[:first])
	for i := first; i < len(raw); {
		if raw[i] != '\\' {
			n := indexBackslash(raw[i:])
			out = append(out, raw[i:i+n]...)
			i += n
			continue
		}
		c := raw[i+1]
		i += 2
		switch c {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(raw[i : i+4])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hex4(raw[i+2 : i+6])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					out = utf8.AppendRune(out, d)
					i += 6
					continue
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, c)
		}
	}
	return out
}

// skipValue returns the index after the JSON value that starts at b[i], and whether it is
// valid JSON. Only the members Docker does not define take this path (such as "attrs").
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	start := i
	switch b[i] {
	case '"':
		_, _, end, ok := scanString(b, i)
		return end, ok
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				_, _, end, ok := scanString(b, i)
				if !ok {
					return 0, false
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					i++
					// The brackets balance; encoding/json decides the rest (their kinds,
					// commas, colons, nesting depth).
					return i, json.Valid(b[start:i])
				}
			}
			i++
		}
		return 0, false
	default:
	scalar:
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				break scalar
			}
		}
		return i, i > start && json.Valid(b[start:i])
	}
}

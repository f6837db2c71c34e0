package prefix

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// DateTimeFormat formats times like a java.time.format.DateTimeFormatter pattern, always in
// UTC and the English locale (what Firehose does for !{timestamp:...}). Build one with
// [ParseDateTimeFormat].
//
// Supported pattern letters (count = how many times the letter repeats):
//
//	G       era                 AD
//	y u     year                y, yyy, yyyy: 2026 (padded to the count); yy: 26
//	D       day of year         D: 73; DDD: 073
//	M L     month               M: 3; MM: 03; MMM: Mar; MMMM: March; MMMMM: M
//	d       day of month        d: 7; dd: 07
//	Q q     quarter             Q: 1; QQ: 01; QQQ: Q1; QQQQ: 1st quarter
//	E       day of week         E, EE, EEE: Sat; EEEE: Saturday; EEEEE: S
//	a       AM/PM               PM
//	H       hour (0-23)         H, HH
//	k       hour (1-24)         k, kk
//	K       hour of AM/PM (0-11)
//	h       clock hour of AM/PM (1-12)
//	m       minute              m, mm
//	s       second              s, ss
//	S       fraction of second  S...S: that many digits, truncated
//	n       nano of second      n: 123456789 (padded to the count)
//	A       milli of day
//	X       zone offset         X, XX, XXX, ...: Z (always UTC)
//	x       zone offset         x: +00; xx: +0000; xxx: +00:00
//	Z       zone offset         Z, ZZ, ZZZ: +0000; ZZZZ: GMT; ZZZZZ: Z
//	z       zone name           UTC
//	'text'  literal text; '' is a single quote
//
// Letters that depend on a locale's week rules (Y, w, W, e, c), optional sections ([ ])
// and the reserved characters #, { and } are rejected with an error. Any other character is
// copied as is.
type DateTimeFormat struct {
	pattern string
	ops     []dtOp
}

type dtOp struct {
	letter byte // 0 for literal text
	count  int
	lit    string
}

// ErrPattern is wrapped by errors about invalid date-time patterns and templates.
var ErrPattern = errors.New("prefix: invalid pattern")

// ParseDateTimeFormat compiles a DateTimeFormatter pattern such as "yyyy/MM/dd/HH".
func ParseDateTimeFormat(pattern string) (*DateTimeFormat, error) {
	f := &DateTimeFormat{pattern: pattern}
	lit := func(s string) {
		if n := len(f.ops); n > 0 && f.ops[n-1].letter == 0 {
			f.ops[n-1].lit += s
			return
		}
		f.ops = append(f.ops, dtOp{lit: s})
	}
	for i := 0; i < len(pattern); {
		c := pattern[i]
		switch {
		case c == '\'':
			j := i + 1
			var text []byte
			for {
				if j >= len(pattern) {
					return nil, fmt.Errorf("%w: unterminated quote in %q", ErrPattern, pattern)
				}
				if pattern[j] == '\'' {
					if j+1 < len(pattern) && pattern[j+1] == '\'' {
						text = append(text, '\'')
						j += 2
						continue
					}
					break
				}
				text = append(text, pattern[j])
				j++
			}
			if j == i+1 {
				lit("'") // '' outside text
			} else {
				lit(string(text))
			}
			i = j + 1
		case c == '[' || c == ']' || c == '#' || c == '{' || c == '}':
			return nil, fmt.Errorf("%w: %q is reserved or unsupported in %q", ErrPattern, c, pattern)
		case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			j := i
			for j < len(pattern) && pattern[j] == c {
				j++
			}
			n := j - i
			if err := checkLetter(c, n); err != nil {
				return nil, fmt.Errorf("%w in %q", err, pattern)
			}
			f.ops = append(f.ops, dtOp{letter: c, count: n})
			i = j
		default:
			lit(string(c))
			i++
		}
	}
	return f, nil
}

// maxCount is the largest repeat count each supported letter accepts.
var maxCount = map[byte]int{
	'G': 5, 'y': 19, 'u': 19, 'D': 3, 'M': 5, 'L': 5, 'd': 2, 'Q': 5, 'q': 5, 'E': 5,
	'a': 1, 'H': 2, 'k': 2, 'K': 2, 'h': 2, 'm': 2, 's': 2, 'S': 9, 'n': 19, 'A': 19,
	'X': 5, 'x': 5, 'Z': 5, 'z': 4,
}

func checkLetter(c byte, n int) error {
	max, ok := maxCount[c]
	if !ok {
		return fmt.Errorf("%w: pattern letter %q is not supported", ErrPattern, c)
	}
	if n > max {
		return fmt.Errorf("%w: too many pattern letters %q", ErrPattern, c)
	}
	return nil
}

// String returns the pattern.
func (f *DateTimeFormat) String() string { return f.pattern }

// Append formats t (converted to UTC) and appends it to dst.
func (f *DateTimeFormat) Append(dst []byte, t time.Time) []byte {
	t = t.UTC()
	for _, op := range f.ops {
		n := op.count
		switch op.letter {
		case 0:
			dst = append(dst, op.lit...)
		case 'G':
			if n == 4 {
				dst = append(dst, "Anno Domini"...)
			} else if n == 5 {
				dst = append(dst, 'A')
			} else {
				dst = append(dst, "AD"...)
			}
		case 'y', 'u':
			y := t.Year()
			if n == 2 {
				dst = pad(dst, ((y%100)+100)%100, 2)
			} else {
				dst = pad(dst, y, n)
			}
		case 'D':
			dst = pad(dst, t.YearDay(), n)
		case 'M', 'L':
			switch {
			case n <= 2:
				dst = pad(dst, int(t.Month()), n)
			case n == 3:
				dst = append(dst, t.Month().String()[:3]...)
			case n == 4:
				dst = append(dst, t.Month().String()...)
			default:
				dst = append(dst, t.Month().String()[0])
			}
		case 'd':
			dst = pad(dst, t.Day(), n)
		case 'Q', 'q':
			q := (int(t.Month())-1)/3 + 1
			switch {
			case n <= 2:
				dst = pad(dst, q, n)
			case n == 3:
				dst = append(dst, 'Q')
				dst = strconv.AppendInt(dst, int64(q), 10)
			case n == 4:
				dst = append(dst, [...]string{"1st", "2nd", "3rd", "4th"}[q-1]...)
				dst = append(dst, " quarter"...)
			default:
				dst = strconv.AppendInt(dst, int64(q), 10)
			}
		case 'E':
			wd := t.Weekday().String()
			switch {
			case n <= 3:
				dst = append(dst, wd[:3]...)
			case n == 4:
				dst = append(dst, wd...)
			default:
				dst = append(dst, wd[0])
			}
		case 'a':
			if t.Hour() < 12 {
				dst = append(dst, "AM"...)
			} else {
				dst = append(dst, "PM"...)
			}
		case 'H':
			dst = pad(dst, t.Hour(), n)
		case 'k':
			h := t.Hour()
			if h == 0 {
				h = 24
			}
			dst = pad(dst, h, n)
		case 'K':
			dst = pad(dst, t.Hour()%12, n)
		case 'h':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			dst = pad(dst, h, n)
		case 'm':
			dst = pad(dst, t.Minute(), n)
		case 's':
			dst = pad(dst, t.Second(), n)
		case 'S':
			frac := t.Nanosecond()
			for i := n; i < 9; i++ {
				frac /= 10
			}
			dst = pad(dst, frac, n)
		case 'n':
			dst = pad(dst, t.Nanosecond(), n)
		case 'A':
			ms := ((t.Hour()*60+t.Minute())*60+t.Second())*1000 + t.Nanosecond()/1e6
			dst = pad(dst, ms, n)
		case 'X':
			dst = append(dst, 'Z')
		case 'x':
			dst = append(dst, [...]string{"+00", "+0000", "+00:00", "+0000", "+00:00"}[n-1]...)
		case 'Z':
			dst = append(dst, [...]string{"+0000", "+0000", "+0000", "GMT", "Z"}[n-1]...)
		case 'z':
			if n == 4 {
				dst = append(dst, "Coordinated Universal Time"...)
			} else {
				dst = append(dst, "UTC"...)
			}
		}
	}
	return dst
}

// pad appends v in decimal, zero-padded to width digits (a minus sign precedes the digits).
// Resolution returns the coarsest duration r such that two times with the same
// t.Truncate(r) always format the same: an hour for "yyyy/MM/dd/HH", a day (the coarsest it
// reports) for a pattern without hours.
func (f *DateTimeFormat) Resolution() time.Duration {
	r := 24 * time.Hour
	for _, op := range f.ops {
		switch op.letter {
		case 'a', 'H', 'k', 'K', 'h':
			r = min(r, time.Hour)
		case 'm':
			r = min(r, time.Minute)
		case 's':
			r = min(r, time.Second)
		case 'A':
			r = min(r, time.Millisecond)
		case 'S', 'n':
			r = min(r, time.Nanosecond)
		}
	}
	return r
}

func pad(dst []byte, v, width int) []byte {
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

package container

import (
	"errors"
	"strconv"
	"time"
)

// Stream is the output stream a line was written to.
type Stream uint8

// The streams. The zero value is Stdout.
const (
	Stdout Stream = iota
	Stderr
)

// String returns "stdout" or "stderr" (and "Stream(N)" for other values).
func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return "Stream(" + strconv.Itoa(int(s)) + ")"
}

// Line is one entry of a container log file.
type Line struct {
	// Time is when the runtime read the output, in UTC.
	Time time.Time
	// Stream is the stream the container wrote the output to.
	Stream Stream
	// Partial reports that the line continues in the next entry of the same stream: the
	// runtime cut a long output line into pieces. [Joiner] joins them.
	Partial bool
	// Log is the content, without the newline that ended it. It aliases the parsed input
	// (see [ParseDocker] for the exception).
	Log []byte
}

// ErrSyntax is the error every parse failure wraps: the input is not a line of the format.
var ErrSyntax = errors.New("container: invalid log line")

// The parse errors are values, not built per call: with format detection most lines of a
// file of the other format fail, and failing must stay cheap.
func syntaxError(msg string) error { return &syntaxErr{msg} }

type syntaxErr struct{ msg string }

func (e *syntaxErr) Error() string { return "container: invalid log line: " + e.msg }
func (e *syntaxErr) Unwrap() error { return ErrSyntax }

// parseTime reads an RFC 3339 time as time.Parse(time.RFC3339Nano, ...) does, returning it
// in UTC. The common forms are read without allocating.
func parseTime(b []byte) (time.Time, bool) {
	if t, ok := rfc3339Fast(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// rfc3339Fast reads YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM) without allocating. It reports
// false for anything else, including valid forms it does not handle, which time.Parse then
// decides. (The same reader as sinks/encode's; FuzzRFC3339Fast holds it to time.Parse.)
func rfc3339Fast(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range b[i : i+n] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	i, nsec := 19, 0
	if b[i] == '.' {
		j := i + 1
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		n := j - i - 1
		if n < 1 || n > 9 {
			return time.Time{}, false
		}
		nsec = num(i+1, n)
		for ; n < 9; n++ {
			nsec *= 10
		}
		i = j
	}
	offset := 0
	switch rest := b[i:]; {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, om := num(i+1, 2), num(i+4, 2)
		if oh < 0 || oh > 23 || om < 0 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int((m-1)%7%2)
}

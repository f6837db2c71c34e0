package query

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kinlog/kinlog/sinks/prefix"
)

// partitionTimes reads back, from an object's key, the time span of the partition the
// archive template put it in: logs/dt=2026-11-22/hour=10/… is [10:00, 11:00) on that day.
// It understands the numeric pattern letters (y u M L d D H m s), month names (MMM,
// MMMM) and literal text; a template using others has no partitionTimes and its keys are
// read as one span.
type partitionTimes struct {
	re     *regexp.Regexp
	fields []byte // the pattern letter of each submatch, normalized (u→y, L→M)
	unit   byte   // the finest letter: the span's length
}

var monthNames = []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}

// newPartitionTimes compiles the key parser of a template, or returns an error saying
// why keys cannot be read back.
func newPartitionTimes(tpl *prefix.Template) (*partitionTimes, error) {
	var re strings.Builder
	re.WriteString("^")
	pt := &partitionTimes{}
	for _, p := range tpl.Parts() {
		switch p.Kind {
		case prefix.PartLiteral:
			re.WriteString(regexp.QuoteMeta(p.Literal))
		case prefix.PartField, prefix.PartErrorType:
			// Partition values are percent-encoded (prefix.EscapeValue).
			re.WriteString(`[A-Za-z0-9._~%-]+?`)
		case prefix.PartTimestamp:
			if err := pt.pattern(&re, p.Pattern); err != nil {
				return nil, err
			}
		}
	}
	if pt.unit == 0 {
		return nil, fmt.Errorf("the template has no time")
	}
	has := func(c byte) bool { return strings.IndexByte(string(pt.fields), c) >= 0 }
	// Every coarser field must be there for the span to be one interval.
	day := has('D') || (has('M') && has('d'))
	ok := has('y')
	switch pt.unit {
	case 'd':
		ok = ok && has('M')
	case 'H':
		ok = ok && day
	case 'm':
		ok = ok && day && has('H')
	case 's':
		ok = ok && day && has('H') && has('m')
	}
	if !ok {
		return nil, fmt.Errorf("the template's time down to %q lacks a coarser field", pt.unit)
	}
	var err error
	if pt.re, err = regexp.Compile(re.String()); err != nil {
		return nil, err
	}
	return pt, nil
}

// finer orders pattern letters from the coarsest.
const finer = "yMdDHms"

// pattern adds the regular expression of a DateTimeFormatter pattern.
func (pt *partitionTimes) pattern(re *strings.Builder, pat string) error {
	for i := 0; i < len(pat); {
		c := pat[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(pat[i+1:], '\'')
			if j < 0 {
				return fmt.Errorf("unterminated quote in %q", pat)
			}
			if j == 0 {
				re.WriteString("'")
			} else {
				re.WriteString(regexp.QuoteMeta(pat[i+1 : i+1+j]))
			}
			i += j + 2
		case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			n := 1
			for i+n < len(pat) && pat[i+n] == c {
				n++
			}
			i += n
			letter := map[byte]byte{'u': 'y', 'L': 'M'}[c]
			if letter == 0 {
				letter = c
			}
			var expr string
			switch {
			case letter == 'y' && n != 2:
				expr = `(\d{` + strconv.Itoa(max(n, 4)) + `})`
			case letter == 'M' && n == 3:
				expr = "(" + names(3) + ")"
			case letter == 'M' && n == 4:
				expr = "(" + names(0) + ")"
			case strings.IndexByte("MdHms", letter) >= 0 && n == 1:
				expr = `(\d{1,2})`
			case strings.IndexByte("MdHms", letter) >= 0 && n == 2:
				expr = `(\d{2})`
			case letter == 'D' && n <= 3:
				expr = `(\d{` + strconv.Itoa(n) + `,3})`
			default:
				return fmt.Errorf("pattern letter %q (%d) is not read back", c, n)
			}
			re.WriteString(expr)
			pt.fields = append(pt.fields, letter)
			if pt.unit == 0 || strings.IndexByte(finer, letter) > strings.IndexByte(finer, pt.unit) {
				pt.unit = letter
			}
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
			i++
		}
	}
	return nil
}

// names is the alternation of the month names, cut to n letters (0: whole).
func names(n int) string {
	out := make([]string, len(monthNames))
	for i, m := range monthNames {
		if n > 0 {
			m = m[:n]
		}
		out[i] = m
	}
	return strings.Join(out, "|")
}

// span returns the partition time span of a key, or false when the key does not follow
// the template.
func (pt *partitionTimes) span(key string) (start, end time.Time, ok bool) {
	m := pt.re.FindStringSubmatch(key)
	if m == nil {
		return start, end, false
	}
	v := map[byte]int{'M': 1, 'd': 1}
	seen := map[byte]bool{}
	for i, letter := range pt.fields {
		s := m[i+1]
		n, err := strconv.Atoi(s)
		if err != nil {
			for k, name := range monthNames {
				if s == name || s == name[:3] {
					n, err = k+1, nil
				}
			}
			if err != nil {
				return start, end, false
			}
		}
		if seen[letter] && v[letter] != n {
			return start, end, false // the same field twice, differently
		}
		seen[letter], v[letter] = true, n
	}
	start = time.Date(v['y'], time.Month(v['M']), v['d'], v['H'], v['m'], v['s'], 0, time.UTC)
	if seen['D'] {
		start = time.Date(v['y'], 1, v['D'], v['H'], v['m'], v['s'], 0, time.UTC)
	}
	switch pt.unit {
	case 'y':
		end = start.AddDate(1, 0, 0)
	case 'M':
		end = start.AddDate(0, 1, 0)
	case 'd', 'D':
		end = start.AddDate(0, 0, 1)
	case 'H':
		end = start.Add(time.Hour)
	case 'm':
		end = start.Add(time.Minute)
	default:
		end = start.Add(time.Second)
	}
	return start, end, true
}

package syslog

import (
	"errors"
	"time"
)

// Format is the header format a message was recognised as.
type Format uint8

const (
	// FormatBare is a priority followed directly by the message, with at most a leading
	// "tag: " (what Python's logging.handlers.SysLogHandler sends), or any message after a
	// valid priority whose header fits neither RFC.
	FormatBare Format = iota
	// FormatRFC3164 is the BSD format: "<PRI>Mmm dd hh:mm:ss host tag[pid]: msg", also with
	// an RFC 3339 timestamp in place of the BSD one (rsyslog's RSYSLOG_ForwardFormat) and
	// without the host (what glibc's syslog(3) writes to /dev/log).
	FormatRFC3164
	// FormatRFC5424 is "<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]".
	FormatRFC5424
)

// String returns "bare", "rfc3164" or "rfc5424".
func (f Format) String() string {
	switch f {
	case FormatBare:
		return "bare"
	case FormatRFC3164:
		return "rfc3164"
	case FormatRFC5424:
		return "rfc5424"
	}
	return "unknown"
}

// ErrNoPriority is returned by [Parse] for input that does not start with a valid
// "<PRI>" (one to three digits, at most 191). Such input is not syslog; callers ship it as
// text.
var ErrNoPriority = errors.New("syslog: message does not start with a valid <PRI>")

// Message is one parsed syslog message. The string fields are "" when the message does
// not carry them (or carries the RFC 5424 NILVALUE "-").
type Message struct {
	// Format is the header format the message was recognised as.
	Format Format
	// Facility is the facility code, 0 to 23; see [FacilityName].
	Facility int
	// Severity is the severity code, 0 (emerg) to 7 (debug); see [SeverityName].
	Severity int
	// Time is the message's timestamp, zero when it carries none (FormatBare, or the RFC
	// 5424 NILVALUE). RFC 3164 timestamps and RFC 3339 ones without an offset are in the
	// location of the now passed to [Parse].
	Time time.Time
	// Hostname is the HOSTNAME header field.
	Hostname string
	// AppName is the RFC 5424 APP-NAME, or the program name of an RFC 3164 tag
	// ("sshd" of "sshd[42]:").
	AppName string
	// ProcID is the RFC 5424 PROCID, or the pid of an RFC 3164 tag ("42" of "sshd[42]:").
	ProcID string
	// MsgID is the RFC 5424 MSGID.
	MsgID string
	// StructuredData is the raw RFC 5424 STRUCTURED-DATA text, such as
	// `[exampleSDID@32473 iut="3"]`; "" for the NILVALUE.
	StructuredData string
	// Msg is the MSG part, without a leading UTF-8 byte order mark and without trailing
	// NUL, CR and LF bytes. It aliases the slice given to [Parse].
	Msg []byte
}

// Parse parses one syslog message: a datagram, or a frame returned by [Reader.Next]. now
// supplies the year of RFC 3164 timestamps (which have none) and the location of
// timestamps without an offset: the year is the one that puts the timestamp no more than a
// day after now, so "Dec 31 23:59:59" read on January 1st is from the year before.
//
// Parse is lenient the way rsyslog is. Input that does not start with a valid "<PRI>" is
// an error, [ErrNoPriority]. After a valid priority, a header that fits neither RFC 5424
// nor RFC 3164 is not an error: the message is [FormatBare] and everything after the
// priority is the Msg, except a leading "tag: " or "tag[pid]: " (Python's SysLogHandler
// with ident set, for instance) which fills AppName and ProcID. A malformed RFC 5424
// STRUCTURED-DATA element is taken as the start of the Msg. In RFC 3164, a first word
// after the timestamp that can be a host name and is followed by a space is the Hostname
// (what rsyslog assumes too), so the first word of a message with neither host nor tag
// ends up there. Trailing NUL, CR and LF bytes are dropped before parsing.
//
// The returned Message's Msg aliases b: it is valid as long as b is, and changes when b
// does. The string fields are copies (short ones are interned, so Parse does not allocate
// for the host, tag and pid values a sender repeats).
func Parse(b []byte, now time.Time) (Message, error) {
	for len(b) > 0 {
		if c := b[len(b)-1]; c != 0 && c != '\r' && c != '\n' {
			break
		}
		b = b[:len(b)-1]
	}
	pri, n := parsePRI(b)
	if n == 0 {
		return Message{}, ErrNoPriority
	}
	m := Message{Facility: pri >> 3, Severity: pri & 7}
	rest := b[n:]
	if !parse5424(&m, rest, now) && !parse3164(&m, rest, now) {
		m.Format = FormatBare
		if app, pid, after, ok := parseTag(rest, true); ok {
			m.AppName, m.ProcID = intern(app), intern(pid)
			rest = after
		}
		m.Msg = rest
	}
	if len(m.Msg) >= 3 && m.Msg[0] == 0xEF && m.Msg[1] == 0xBB && m.Msg[2] == 0xBF {
		m.Msg = m.Msg[3:]
	}
	return m, nil
}

// parsePRI reads "<PRI>" at the start of b and returns its value and length, or length 0
// when b does not start with one.
func parsePRI(b []byte) (pri, n int) {
	if len(b) < 3 || b[0] != '<' {
		return 0, 0
	}
	i := 1
	for ; i < len(b) && i <= 4 && isDigit(b[i]); i++ {
		pri = pri*10 + int(b[i]-'0')
	}
	if i == 1 || i > 4 || i >= len(b) || b[i] != '>' || pri > 191 {
		return 0, 0
	}
	return pri, i + 1
}

// parse5424 fills m from the RFC 5424 header in b (the bytes after PRI) and reports
// whether b has one; it leaves m unchanged when not.
func parse5424(m *Message, b []byte, now time.Time) bool {
	if len(b) < 2 || b[0] != '1' || b[1] != ' ' {
		return false
	}
	b = b[2:]
	var t time.Time
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	} else {
		var n int
		var ok bool
		if t, n, ok = parseRFC3339(b, now.Location()); !ok {
			return false
		}
		b = b[n:]
	}
	if len(b) == 0 || b[0] != ' ' {
		return false
	}
	b = b[1:]
	var fields [4][]byte // HOSTNAME APP-NAME PROCID MSGID
	for i := range fields {
		j := 0
		for j < len(b) && b[j] > ' ' && b[j] < 0x7f {
			j++
		}
		if j == 0 || j == len(b) || b[j] != ' ' {
			return false
		}
		if j != 1 || b[0] != '-' {
			fields[i] = b[:j]
		}
		b = b[j+1:]
	}
	var sd []byte
	switch {
	case len(b) > 0 && b[0] == '-' && (len(b) == 1 || b[1] == ' '):
		b = b[1:]
	case len(b) > 0 && b[0] == '[':
		if n := sdLen(b); n > 0 && (n == len(b) || b[n] == ' ') {
			sd, b = b[:n], b[n:]
		}
	}
	if len(b) > 0 && b[0] == ' ' {
		b = b[1:] // the SP before MSG
	}
	*m = Message{
		Format:         FormatRFC5424,
		Facility:       m.Facility,
		Severity:       m.Severity,
		Time:           t,
		Hostname:       intern(fields[0]),
		AppName:        intern(fields[1]),
		ProcID:         intern(fields[2]),
		MsgID:          intern(fields[3]),
		StructuredData: intern(sd),
		Msg:            b,
	}
	return true
}

// sdLen returns the length of the run of SD-ELEMENTs at the start of b, or 0 when one of
// them is malformed. PARAM-VALUEs end at the first '"' not escaped by a backslash; an
// unescaped ']' in them, which RFC 5424 forbids but senders write, is accepted.
func sdLen(b []byte) int {
	i := 0
	for i < len(b) && b[i] == '[' {
		i++
		n := sdName(b[i:])
		if n == 0 {
			return 0
		}
		i += n
		for {
			if i >= len(b) {
				return 0
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ' ' {
				return 0
			}
			i++
			n := sdName(b[i:])
			if n == 0 {
				return 0
			}
			i += n
			if i+1 >= len(b) || b[i] != '=' || b[i+1] != '"' {
				return 0
			}
			i += 2
			for {
				if i >= len(b) {
					return 0
				}
				if b[i] == '\\' {
					i += 2
					continue
				}
				i++
				if b[i-1] == '"' {
					break
				}
			}
		}
	}
	return i
}

// sdName returns the length of the SD-NAME (SD-ID or PARAM-NAME) at the start of b.
func sdName(b []byte) int {
	i := 0
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f && b[i] != '=' && b[i] != ']' && b[i] != '"' {
		i++
	}
	return i
}

// parse3164 fills m from the RFC 3164 header in b (the bytes after PRI) and reports
// whether b has one; it leaves m unchanged when not.
func parse3164(m *Message, b []byte, now time.Time) bool {
	var t time.Time
	var n int
	var ok bool
	if len(b) > 0 && isDigit(b[0]) {
		t, n, ok = parseRFC3339(b, now.Location())
	} else {
		t, n, ok = parseBSDTime(b, now)
	}
	if !ok || (n < len(b) && b[n] != ' ') {
		return false
	}
	b = b[min(n+1, len(b)):]
	var host []byte
	if n := hostLen(b); n > 0 && n < len(b) && b[n] == ' ' {
		host, b = b[:n], b[n+1:]
	}
	app, pid, after, ok := parseTag(b, false)
	if ok {
		b = after
	}
	*m = Message{
		Format:   FormatRFC3164,
		Facility: m.Facility,
		Severity: m.Severity,
		Time:     t,
		Hostname: intern(host),
		AppName:  intern(app),
		ProcID:   intern(pid),
		Msg:      b,
	}
	return true
}

// hostLen returns the length of the host name (or IP address) at the start of b: letters,
// digits, '.', '-', '_' and, not last, ':'.
func hostLen(b []byte) int {
	i := 0
	for i < len(b) && i < 255 {
		c := b[i]
		if chars[c]&hostChar == 0 {
			break
		}
		i++
	}
	if i > 0 && b[i-1] == ':' {
		return 0
	}
	return i
}

// parseTag reads the RFC 3164 tag at the start of b: "name:", "name[pid]:" or, unless
// colon is set, "name[pid]", followed by a space or the end. The name is letters, digits
// and "._-/", at most 48 of them. after is what follows the tag and its space.
func parseTag(b []byte, colon bool) (app, pid, after []byte, ok bool) {
	i := 0
	for i < len(b) && i < 48 && chars[b[i]]&tagChar != 0 {
		i++
	}
	if i == 0 {
		return nil, nil, nil, false
	}
	app = b[:i]
	if i < len(b) && b[i] == '[' {
		j := i + 1
		for j < len(b) && j-i <= 128 && b[j] > ' ' && b[j] < 0x7f && b[j] != ']' && b[j] != '[' {
			j++
		}
		if j == i+1 || j >= len(b) || b[j] != ']' {
			return nil, nil, nil, false
		}
		pid = b[i+1 : j]
		i = j + 1
	}
	switch {
	case i < len(b) && b[i] == ':':
		i++
	case colon || pid == nil:
		return nil, nil, nil, false
	}
	if i < len(b) {
		if b[i] != ' ' {
			return nil, nil, nil, false
		}
		i++
	}
	return app, pid, b[i:], true
}

var months = [12]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// parseBSDTime reads an RFC 3164 timestamp, "Mmm dd hh:mm:ss" with the day padded by a
// space or a zero (or not at all), and optional fractional seconds. The year is the
// latest that puts it no more than a day after now.
func parseBSDTime(b []byte, now time.Time) (time.Time, int, bool) {
	if len(b) < 14 || b[3] != ' ' {
		return time.Time{}, 0, false
	}
	month := 0
	for i, name := range months {
		if b[0]|0x20 == name[0] && b[1]|0x20 == name[1] && b[2]|0x20 == name[2] {
			month = i + 1
			break
		}
	}
	if month == 0 {
		return time.Time{}, 0, false
	}
	i := 4
	if b[i] == ' ' {
		i++
	}
	day, ok := 0, false
	if isDigit(b[i]) && isDigit(b[i+1]) && b[i+2] == ' ' {
		day, ok = num(b[i:i+2]), true
		i += 3
	} else if isDigit(b[i]) && b[i+1] == ' ' {
		day, ok = int(b[i]-'0'), true
		i += 2
	}
	if !ok || day == 0 || day > daysIn(month, 2000) || len(b) < i+8 {
		return time.Time{}, 0, false
	}
	hh, mm, ss, ok := clock(b[i : i+8])
	if !ok {
		return time.Time{}, 0, false
	}
	i += 8
	nsec, n := fraction(b[i:])
	i += n
	loc := now.Location()
	year, nowMonth, _ := now.Date()
	if month == 1 && nowMonth == 12 {
		year++
	}
	limit := now.Add(24 * time.Hour)
	t := time.Date(year, time.Month(month), day, hh, mm, ss, nsec, loc)
	for t.After(limit) {
		year--
		t = time.Date(year, time.Month(month), day, hh, mm, ss, nsec, loc)
	}
	return t, i, true
}

// parseRFC3339 reads "YYYY-MM-DDThh:mm:ss[.frac][Z|±hh:mm]" at the start of b; without an
// offset the time is in loc.
func parseRFC3339(b []byte, loc *time.Location) (time.Time, int, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') {
		return time.Time{}, 0, false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9} {
		if !isDigit(b[i]) {
			return time.Time{}, 0, false
		}
	}
	year, month, day := num(b[0:4]), num(b[5:7]), num(b[8:10])
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) {
		return time.Time{}, 0, false
	}
	hh, mm, ss, ok := clock(b[11:19])
	if !ok {
		return time.Time{}, 0, false
	}
	i := 19
	nsec, n := fraction(b[i:])
	i += n
	if i < len(b) {
		switch c := b[i]; {
		case c == 'Z' || c == 'z':
			loc = time.UTC
			i++
		case c == '+' || c == '-':
			z := b[i+1:]
			var oh, om int
			switch {
			case len(z) >= 5 && isDigit(z[0]) && isDigit(z[1]) && z[2] == ':' && isDigit(z[3]) && isDigit(z[4]):
				oh, om = num(z[0:2]), num(z[3:5])
				i += 6
			case len(z) >= 4 && isDigit(z[0]) && isDigit(z[1]) && isDigit(z[2]) && isDigit(z[3]):
				oh, om = num(z[0:2]), num(z[2:4])
				i += 5
			default:
				return time.Time{}, 0, false
			}
			if oh > 23 || om > 59 {
				return time.Time{}, 0, false
			}
			off := oh*60 + om
			if c == '-' {
				off = -off
			}
			loc = fixedZone(off)
		}
	}
	return time.Date(year, time.Month(month), day, hh, mm, ss, nsec, loc), i, true
}

// clock reads "hh:mm:ss" (b has 8 bytes); ss may be 60, a leap second.
func clock(b []byte) (hh, mm, ss int, ok bool) {
	if b[2] != ':' || b[5] != ':' {
		return 0, 0, 0, false
	}
	for _, i := range [...]int{0, 1, 3, 4, 6, 7} {
		if !isDigit(b[i]) {
			return 0, 0, 0, false
		}
	}
	hh, mm, ss = num(b[0:2]), num(b[3:5]), num(b[6:8])
	return hh, mm, ss, hh < 24 && mm < 60 && ss <= 60
}

// fraction reads ".digits" at the start of b into nanoseconds (digits past the ninth are
// read and dropped) and returns its length, 0 when b does not start with one.
func fraction(b []byte) (nsec, n int) {
	if len(b) < 2 || b[0] != '.' || !isDigit(b[1]) {
		return 0, 0
	}
	scale := 100_000_000
	i := 1
	for ; i < len(b) && isDigit(b[i]); i++ {
		nsec += int(b[i]-'0') * scale
		scale /= 10
	}
	return nsec, i
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// num reads the decimal digits of b (the caller checked them).
func num(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Character classes, bits of chars.
const (
	hostChar = 1 << iota // in a host name or IP address: letters, digits and ".-_:"
	tagChar              // in an RFC 3164 tag's program name: letters, digits and "._-/"
)

var chars = func() (t [256]uint8) {
	for c := range 256 {
		alnum := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if alnum || c == '.' || c == '-' || c == '_' || c == ':' {
			t[c] |= hostChar
		}
		if alnum || c == '.' || c == '-' || c == '_' || c == '/' {
			t[c] |= tagChar
		}
	}
	return t
}()

var severityNames = [8]string{"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"}

var facilityNames = [24]string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// SeverityName returns the name of severity s as the archive's "level" holds it: emerg,
// alert, crit, error, warning, notice, info or debug; "" when s is not 0 to 7.
func SeverityName(s int) string {
	if s < 0 || s >= len(severityNames) {
		return ""
	}
	return severityNames[s]
}

// FacilityName returns the name of facility f: kern, user, mail, daemon, auth, syslog,
// lpr, news, uucp, cron, authpriv, ftp, ntp, security, console, solaris-cron, local0 to
// local7; "" when f is not 0 to 23.
func FacilityName(f int) string {
	if f < 0 || f >= len(facilityNames) {
		return ""
	}
	return facilityNames[f]
}

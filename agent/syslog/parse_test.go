package syslog

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// agentZone is the agent's local zone in the tests: times without an offset are in it.
var agentZone = time.FixedZone("CET", 3600)

// testNow is the agent's clock in the tests: 2026-12-01 12:00 local.
var testNow = time.Date(2026, 12, 1, 12, 0, 0, 0, agentZone)

const bom = "\xEF\xBB\xBF"

func TestParse(t *testing.T) {
	utcMinus7 := time.FixedZone("", -7*3600)
	tests := []struct {
		name string
		in   string
		now  time.Time // testNow when zero
		want Message
	}{
		// Python 3.11 logging.handlers.SysLogHandler: no timestamp, no host, a NUL at the end.
		{
			name: "python default",
			in:   "<14>hello world\x00",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("hello world")},
		},
		{
			name: "python user.error",
			in:   "<11>disk full on /var\x00",
			want: Message{Format: FormatBare, Facility: 1, Severity: 3, Msg: []byte("disk full on /var")},
		},
		{
			name: "python ident",
			in:   "<14>myapp: started in 3 ms\x00",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, AppName: "myapp", Msg: []byte("started in 3 ms")},
		},
		{
			name: "python ident and JSON",
			in:   `<134>myapp: {"msg": "x", "level": "INFO", "task": "a1"}` + "\x00",
			want: Message{Format: FormatBare, Facility: 16, Severity: 6, AppName: "myapp", Msg: []byte(`{"msg": "x", "level": "INFO", "task": "a1"}`)},
		},
		{
			name: "python JSON without ident",
			in:   `<14>{"msg": "x", "n": 1}` + "\x00",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte(`{"msg": "x", "n": 1}`)},
		},
		{
			name: "bare colon without space is not a tag",
			in:   "<14>see http://example.com/",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("see http://example.com/")},
		},
		{
			name: "bare url is not a tag",
			in:   "<14>http://example.com/ is down",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("http://example.com/ is down")},
		},
		// rsyslog "*.* @@127.0.0.1:5514", traditional RFC 3164 template.
		{
			name: "rsyslog traditional",
			in:   "<30>Dec  1 11:40:18 myhost myapp[1234]: message\n",
			want: Message{
				Format: FormatRFC3164, Facility: 3, Severity: 6,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 0, agentZone),
				Hostname: "myhost", AppName: "myapp", ProcID: "1234", Msg: []byte("message"),
			},
		},
		// rsyslog RSYSLOG_SyslogProtocol23Format.
		{
			name: "rsyslog protocol23",
			in:   "<30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - message\n",
			want: Message{
				Format: FormatRFC5424, Facility: 3, Severity: 6,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 123456000, time.UTC),
				Hostname: "myhost", AppName: "myapp", ProcID: "1234", Msg: []byte("message"),
			},
		},
		// rsyslog RSYSLOG_ForwardFormat: RFC 3164 with an RFC 3339 timestamp.
		{
			name: "rsyslog forward format",
			in:   "<30>2026-12-01T11:40:18.123+02:00 myhost myapp[1234]: message",
			want: Message{
				Format: FormatRFC3164, Facility: 3, Severity: 6,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 123000000, time.FixedZone("", 7200)),
				Hostname: "myhost", AppName: "myapp", ProcID: "1234", Msg: []byte("message"),
			},
		},
		// RFC 5424 section 6.5, examples 1 to 4.
		{
			name: "rfc5424 example 1 BOM",
			in:   "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - " + bom + "'su root' failed for lonvick on /dev/pts/8",
			want: Message{
				Format: FormatRFC5424, Facility: 4, Severity: 2,
				Time:     time.Date(2003, 10, 11, 22, 14, 15, 3000000, time.UTC),
				Hostname: "mymachine.example.com", AppName: "su", MsgID: "ID47",
				Msg: []byte("'su root' failed for lonvick on /dev/pts/8"),
			},
		},
		{
			name: "rfc5424 example 2",
			in:   "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
			want: Message{
				Format: FormatRFC5424, Facility: 20, Severity: 5,
				Time:     time.Date(2003, 8, 24, 5, 14, 15, 3000, utcMinus7),
				Hostname: "192.0.2.1", AppName: "myproc", ProcID: "8710",
				Msg: []byte("%% It's time to make the do-nuts."),
			},
		},
		{
			name: "rfc5424 example 3 structured data",
			in:   `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] ` + bom + "An application event log entry...",
			want: Message{
				Format: FormatRFC5424, Facility: 20, Severity: 5,
				Time:     time.Date(2003, 10, 11, 22, 14, 15, 3000000, time.UTC),
				Hostname: "mymachine.example.com", AppName: "evntslog", MsgID: "ID47",
				StructuredData: `[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]`,
				Msg:            []byte("An application event log entry..."),
			},
		},
		{
			name: "rfc5424 example 4 no MSG",
			in:   `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
			want: Message{
				Format: FormatRFC5424, Facility: 20, Severity: 5,
				Time:     time.Date(2003, 10, 11, 22, 14, 15, 3000000, time.UTC),
				Hostname: "mymachine.example.com", AppName: "evntslog", MsgID: "ID47",
				StructuredData: `[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
			},
		},
		{
			name: "rfc5424 escapes in SD",
			in:   `<14>1 2026-12-01T11:40:18Z h a - - [x@1 v="a \"quoted\] value\\"] msg`,
			want: Message{
				Format: FormatRFC5424, Facility: 1, Severity: 6,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 0, time.UTC),
				Hostname: "h", AppName: "a", StructuredData: `[x@1 v="a \"quoted\] value\\"]`, Msg: []byte("msg"),
			},
		},
		{
			name: "rfc5424 all NILVALUE",
			in:   "<14>1 - - - - - -",
			want: Message{Format: FormatRFC5424, Facility: 1, Severity: 6},
		},
		{
			name: "rfc5424 NILVALUE time with MSG",
			in:   "<14>1 - host app - - - the msg",
			want: Message{Format: FormatRFC5424, Facility: 1, Severity: 6, Hostname: "host", AppName: "app", Msg: []byte("the msg")},
		},
		{
			name: "rfc5424 time without offset is agent local",
			in:   "<14>1 2026-12-01T11:40:18 h a - - - m",
			want: Message{
				Format: FormatRFC5424, Facility: 1, Severity: 6,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 0, agentZone),
				Hostname: "h", AppName: "a", Msg: []byte("m"),
			},
		},
		{
			name: "rfc5424 malformed SD starts the MSG",
			in:   "<14>1 2026-12-01T11:40:18Z h a p m [broken sd] msg",
			want: Message{
				Format: FormatRFC5424, Facility: 1, Severity: 6,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 0, time.UTC),
				Hostname: "h", AppName: "a", ProcID: "p", MsgID: "m", Msg: []byte("[broken sd] msg"),
			},
		},
		{
			name: "rfc5424 missing SD starts the MSG",
			in:   "<14>1 2026-12-01T11:40:18Z h a p m hello",
			want: Message{
				Format: FormatRFC5424, Facility: 1, Severity: 6,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 0, time.UTC),
				Hostname: "h", AppName: "a", ProcID: "p", MsgID: "m", Msg: []byte("hello"),
			},
		},
		{
			name: "rfc5424 bad timestamp is bare",
			in:   "<14>1 yesterday h a p m - msg",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("1 yesterday h a p m - msg")},
		},
		{
			name: "rfc5424 bad date is bare",
			in:   "<14>1 2026-02-30T11:40:18Z h a p m - msg",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("1 2026-02-30T11:40:18Z h a p m - msg")},
		},
		{
			name: "rfc5424 header cut short is bare",
			in:   "<14>1 2026-12-01T11:40:18Z h a",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("1 2026-12-01T11:40:18Z h a")},
		},
		// RFC 3164 section 5.4 examples and variants.
		{
			name: "rfc3164 example",
			in:   "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
			want: Message{
				Format: FormatRFC3164, Facility: 4, Severity: 2,
				Time:     time.Date(2026, 10, 11, 22, 14, 15, 0, agentZone),
				Hostname: "mymachine", AppName: "su", Msg: []byte("'su root' failed for lonvick on /dev/pts/8"),
			},
		},
		{
			name: "rfc3164 missing tag",
			in:   "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
			want: Message{
				Format: FormatRFC3164, Facility: 1, Severity: 5,
				Time:     time.Date(2026, 2, 5, 17, 32, 18, 0, agentZone),
				Hostname: "10.0.0.99", Msg: []byte("Use the BFG!"),
			},
		},
		{
			name: "rfc3164 glibc syslog(3) without host",
			in:   "<38>Dec  1 11:40:18 sshd[4242]: Accepted publickey for root",
			want: Message{
				Format: FormatRFC3164, Facility: 4, Severity: 6,
				Time:    time.Date(2026, 12, 1, 11, 40, 18, 0, agentZone),
				AppName: "sshd", ProcID: "4242", Msg: []byte("Accepted publickey for root"),
			},
		},
		{
			name: "rfc3164 logger(1) without host or pid",
			in:   "<13>Dec  1 11:40:18 root: hello",
			want: Message{
				Format: FormatRFC3164, Facility: 1, Severity: 5,
				Time:    time.Date(2026, 12, 1, 11, 40, 18, 0, agentZone),
				AppName: "root", Msg: []byte("hello"),
			},
		},
		{
			name: "rfc3164 tag with slash, pid without colon",
			in:   "<22>Dec 01 11:40:18 mx1 postfix/smtpd[77] connect from x",
			want: Message{
				Format: FormatRFC3164, Facility: 2, Severity: 6,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 0, agentZone),
				Hostname: "mx1", AppName: "postfix/smtpd", ProcID: "77", Msg: []byte("connect from x"),
			},
		},
		{
			name: "rfc3164 IPv6 host, fractional seconds",
			in:   "<13>Dec  1 11:40:18.250 fe80::1 app: x",
			want: Message{
				Format: FormatRFC3164, Facility: 1, Severity: 5,
				Time:     time.Date(2026, 12, 1, 11, 40, 18, 250000000, agentZone),
				Hostname: "fe80::1", AppName: "app", Msg: []byte("x"),
			},
		},
		{
			name: "rfc3164 timestamp only",
			in:   "<13>Dec  1 11:40:18",
			want: Message{Format: FormatRFC3164, Facility: 1, Severity: 5, Time: time.Date(2026, 12, 1, 11, 40, 18, 0, agentZone)},
		},
		{
			name: "rfc3164 host only",
			in:   "<13>Dec  1 11:40:18 myhost",
			want: Message{Format: FormatRFC3164, Facility: 1, Severity: 5, Time: time.Date(2026, 12, 1, 11, 40, 18, 0, agentZone), Msg: []byte("myhost")},
		},
		{
			name: "rfc3164 Dec 31 seen on Jan 1 is last year",
			in:   "<13>Dec 31 23:59:59 h a: late",
			now:  time.Date(2027, 1, 1, 0, 0, 5, 0, agentZone),
			want: Message{
				Format: FormatRFC3164, Facility: 1, Severity: 5,
				Time:     time.Date(2026, 12, 31, 23, 59, 59, 0, agentZone),
				Hostname: "h", AppName: "a", Msg: []byte("late"),
			},
		},
		{
			name: "rfc3164 Jan 1 seen on Dec 31 is next year",
			in:   "<13>Jan  1 00:00:01 h a: early",
			now:  time.Date(2026, 12, 31, 23, 59, 50, 0, agentZone),
			want: Message{
				Format: FormatRFC3164, Facility: 1, Severity: 5,
				Time:     time.Date(2027, 1, 1, 0, 0, 1, 0, agentZone),
				Hostname: "h", AppName: "a", Msg: []byte("early"),
			},
		},
		{
			name: "rfc3164 up to a day ahead is this year",
			in:   "<13>Dec  2 11:00:00 h a: skewed",
			want: Message{
				Format: FormatRFC3164, Facility: 1, Severity: 5,
				Time:     time.Date(2026, 12, 2, 11, 0, 0, 0, agentZone),
				Hostname: "h", AppName: "a", Msg: []byte("skewed"),
			},
		},
		{
			name: "rfc3164 more than a day ahead is last year",
			in:   "<13>Dec  3 11:00:00 h a: old",
			want: Message{
				Format: FormatRFC3164, Facility: 1, Severity: 5,
				Time:     time.Date(2025, 12, 3, 11, 0, 0, 0, agentZone),
				Hostname: "h", AppName: "a", Msg: []byte("old"),
			},
		},
		{
			name: "rfc3164 bad time is bare",
			in:   "<13>Dec  1 25:40:18 h a: x",
			want: Message{Format: FormatBare, Facility: 1, Severity: 5, Msg: []byte("Dec  1 25:40:18 h a: x")},
		},
		{
			name: "rfc3164 bad month is bare",
			in:   "<13>Dex  1 11:40:18 h a: x",
			want: Message{Format: FormatBare, Facility: 1, Severity: 5, Msg: []byte("Dex  1 11:40:18 h a: x")},
		},
		// Priority edge cases and trailers.
		{
			name: "PRI only",
			in:   "<14>",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6},
		},
		{
			name: "PRI 0",
			in:   "<0>kernel panic",
			want: Message{Format: FormatBare, Msg: []byte("kernel panic")},
		},
		{
			name: "PRI 191",
			in:   "<191>x",
			want: Message{Format: FormatBare, Facility: 23, Severity: 7, Msg: []byte("x")},
		},
		{
			name: "leading zeros",
			in:   "<014>x",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("x")},
		},
		{
			name: "CRLF and NULs trimmed",
			in:   "<14>line\r\n\x00",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("line")},
		},
		{
			name: "invalid UTF-8 kept",
			in:   "<14>bad \xff\xfe bytes",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("bad \xff\xfe bytes")},
		},
		{
			name: "BOM stripped in bare and RFC 3164 too",
			in:   "<14>Dec  1 11:40:18 h a: " + bom + "x",
			want: Message{Format: FormatRFC3164, Facility: 1, Severity: 6, Time: time.Date(2026, 12, 1, 11, 40, 18, 0, agentZone), Hostname: "h", AppName: "a", Msg: []byte("x")},
		},
		{
			name: "BOM stripped in bare",
			in:   "<14>" + bom + "x",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte("x")},
		},
		{
			name: "rfc5424 unescaped ] in a PARAM-VALUE",
			in:   `<14>1 - h a - - [x@1 path="/a[0]"] m`,
			want: Message{Format: FormatRFC5424, Facility: 1, Severity: 6, Hostname: "h", AppName: "a", StructuredData: `[x@1 path="/a[0]"]`, Msg: []byte("m")},
		},
		{
			name: "leading space kept",
			in:   "<14> indented",
			want: Message{Format: FormatBare, Facility: 1, Severity: 6, Msg: []byte(" indented")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = testNow
			}
			got, err := Parse([]byte(tt.in), now)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if diff := diffMessage(got, tt.want); diff != "" {
				t.Errorf("Parse(%q):\n%s", tt.in, diff)
			}
		})
	}
}

// diffMessage describes how got differs from want, "" when it does not. Times compare
// by instant and by offset.
func diffMessage(got, want Message) string {
	var d string
	field := func(name string, g, w any) {
		if g != w {
			d += fmt.Sprintf("  %s = %#v, want %#v\n", name, g, w)
		}
	}
	field("Format", got.Format, want.Format)
	field("Facility", got.Facility, want.Facility)
	field("Severity", got.Severity, want.Severity)
	_, goff := got.Time.Zone()
	_, woff := want.Time.Zone()
	if !got.Time.Equal(want.Time) || goff != woff || got.Time.IsZero() != want.Time.IsZero() {
		d += fmt.Sprintf("  Time = %v, want %v\n", got.Time, want.Time)
	}
	field("Hostname", got.Hostname, want.Hostname)
	field("AppName", got.AppName, want.AppName)
	field("ProcID", got.ProcID, want.ProcID)
	field("MsgID", got.MsgID, want.MsgID)
	field("StructuredData", got.StructuredData, want.StructuredData)
	if !bytes.Equal(got.Msg, want.Msg) {
		d += fmt.Sprintf("  Msg = %q, want %q\n", got.Msg, want.Msg)
	}
	return d
}

func TestParseNoPriority(t *testing.T) {
	for _, in := range []string{
		"",
		"hello",
		"<>x",
		"<999>x",
		"<192>x",
		"<1234>x",
		"<14",
		"<14 no closing bracket",
		"<a>x",
		"<-1>x",
		"14>x",
		" <14>x",
		"\x00\n",
	} {
		m, err := Parse([]byte(in), testNow)
		if !errors.Is(err, ErrNoPriority) {
			t.Errorf("Parse(%q) = %+v, %v; want ErrNoPriority", in, m, err)
		}
	}
}

func TestParseMsgAliasesInput(t *testing.T) {
	b := []byte("<14>Dec  1 11:40:18 h a: hello")
	m, err := Parse(b, testNow)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = '!'
	if string(m.Msg) != "hell!" {
		t.Fatalf("Msg = %q after changing the input; Msg is documented to alias it", m.Msg)
	}
	if m.Hostname != "h" || m.AppName != "a" {
		t.Fatalf("string fields changed with the input: %+v", m)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	for _, in := range []string{
		"<30>Dec  1 11:40:18 myhost myapp[1234]: message\n",
		"<30>1 2026-12-01T11:40:18.123456+02:00 myhost myapp 1234 ID7 [a@1 b=\"c\"] message\n",
		"<14>myapp: message\x00",
	} {
		b := []byte(in)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := Parse(b, testNow); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Parse(%q): %v allocations", in, n)
		}
	}
}

func TestIntern(t *testing.T) {
	a := intern([]byte("myhost"))
	if b := intern([]byte("myhost")); a != b || a != "myhost" {
		t.Fatalf("intern: %q, %q", a, b)
	}
	// Many distinct values: every answer is still right.
	for i := range 5000 {
		v := fmt.Sprintf("host-%d", i%1500)
		if got := intern([]byte(v)); got != v {
			t.Fatalf("intern(%q) = %q", v, got)
		}
	}
	long := bytes.Repeat([]byte("x"), internMax+1)
	if got := intern(long); got != string(long) {
		t.Fatalf("intern(long) = %q", got)
	}
}

func TestNames(t *testing.T) {
	wantSev := []string{"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"}
	for s, w := range wantSev {
		if got := SeverityName(s); got != w {
			t.Errorf("SeverityName(%d) = %q, want %q", s, got, w)
		}
	}
	wantFac := map[int]string{0: "kern", 1: "user", 3: "daemon", 4: "auth", 10: "authpriv", 13: "security", 14: "console", 15: "solaris-cron", 16: "local0", 23: "local7"}
	for f, w := range wantFac {
		if got := FacilityName(f); got != w {
			t.Errorf("FacilityName(%d) = %q, want %q", f, got, w)
		}
	}
	for _, bad := range []int{-1, 8} {
		if got := SeverityName(bad); got != "" {
			t.Errorf("SeverityName(%d) = %q, want \"\"", bad, got)
		}
	}
	for _, bad := range []int{-1, 24} {
		if got := FacilityName(bad); got != "" {
			t.Errorf("FacilityName(%d) = %q, want \"\"", bad, got)
		}
	}
	for f, w := range map[Format]string{FormatBare: "bare", FormatRFC3164: "rfc3164", FormatRFC5424: "rfc5424", 9: "unknown"} {
		if got := f.String(); got != w {
			t.Errorf("Format(%d).String() = %q, want %q", f, got, w)
		}
	}
}

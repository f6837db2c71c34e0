package syslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

var fuzzSeeds = []string{
	"<14>hello world\x00",
	"<11>myapp: disk full\x00",
	`<14>myapp: {"msg": "x", "level": "INFO", "task": "a1"}` + "\x00",
	"<14>{ }",
	`<14>{"a":1}`,
	"<30>Dec  1 11:40:18 myhost myapp[1234]: message\n",
	"<30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - message\n",
	"<30>2026-12-01T11:40:18.123+02:00 myhost myapp[1234]: message",
	"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - " + bom + "'su root' failed",
	`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
	`<14>1 2026-12-01T11:40:18Z h a - - [x@1 v="a \"q\] \\"] msg`,
	"<14>1 - - - - - -",
	"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
	"<13>Dec 31 23:59:59 h a: late",
	"<38>Dec  1 11:40:18 sshd[4242]: Accepted",
	"<14>bad \xff\xfe bytes",
	"<999>x", "<>", "<14", "", "<14>",
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), int64(0))
	}
	f.Add([]byte("<13>Jan  1 00:00:01 h a: x"), int64(-86400*365))
	f.Fuzz(func(t *testing.T, b []byte, shift int64) {
		now := testNow.Add(time.Duration(shift%(86400*365*10)) * time.Second)
		in := bytes.Clone(b)
		m, err := Parse(b, now)
		if !bytes.Equal(b, in) {
			t.Fatalf("Parse changed its input")
		}
		if err != nil {
			if !errors.Is(err, ErrNoPriority) {
				t.Fatalf("Parse(%q): unexpected error %v", b, err)
			}
			return
		}
		if m.Facility < 0 || m.Facility > 23 || m.Severity < 0 || m.Severity > 7 {
			t.Fatalf("Parse(%q): facility %d severity %d", b, m.Facility, m.Severity)
		}
		if len(m.Msg) > 0 && !bytes.Contains(b, m.Msg) {
			t.Fatalf("Parse(%q): Msg %q is not part of the input", b, m.Msg)
		}
		bsdTime := bytes.IndexByte(b, '>') < len(b)-1 && !isDigit(b[bytes.IndexByte(b, '>')+1])
		if m.Format == FormatRFC3164 && bsdTime && m.Time.After(now.Add(24*time.Hour)) {
			t.Fatalf("Parse(%q): RFC 3164 time %v more than a day after %v", b, m.Time, now)
		}
		out := m.AppendJSON(nil, "agent\xff", "tcp://x", now)
		var obj map[string]any
		if err := json.Unmarshal(out, &obj); err != nil || !json.Valid(out) {
			t.Fatalf("Parse(%q).AppendJSON = %s: invalid JSON object: %v", b, out, err)
		}
	})
}

func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s+"\n"+octets(s)+s+"\x00"), uint16(0))
	}
	f.Add([]byte("<14>0123456789\n12 <14>0123456789<14>a\r\n"), uint16(8))
	f.Add([]byte("999999999 <14>abc\n"), uint16(3))
	f.Fuzz(func(t *testing.T, b []byte, max uint16) {
		limit := int(max % 300)
		if limit == 0 {
			limit = DefaultMaxFrame
		}
		whole := readAll(t, bytes.NewReader(b), int(max%300))
		for _, fr := range whole[:len(whole)-1] {
			if len(fr.data) == 0 || len(fr.data) > limit {
				t.Fatalf("frame of %d bytes (max %d): %q", len(fr.data), limit, fr.data)
			}
			if (fr.err == nil) == (errors.Is(fr.err, ErrTooLong)) {
				t.Fatalf("unexpected error %v", fr.err)
			}
		}
		if last := whole[len(whole)-1]; last.err != io.EOF || last.data != "" {
			t.Fatalf("last result %v, want io.EOF", last)
		}
		// Framing does not depend on how the stream arrives.
		bytewise := readAll(t, iotest.OneByteReader(bytes.NewReader(b)), int(max%300))
		if fmt.Sprint(whole) != fmt.Sprint(bytewise) {
			t.Fatalf("frames differ when read byte by byte:\n%v\n%v", whole, bytewise)
		}
	})
}

package container

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParseCRI checks that ParseCRI never panics, that what it accepts aliases the input and
// that writing an accepted line out again reads back the same.
func FuzzParseCRI(f *testing.F) {
	for _, s := range []string{
		"2016-10-06T00:17:09.669794202Z stdout F log content 1\n",
		"2016-10-06T00:17:09.669794202Z stderr P part\n",
		"2024-03-14T10:58:00.25+01:00 stdout F:x:y {\"a\":1}\n",
		"2016-10-06T00:17:09Z stdout F",
		"2016-10-06T00:17:09Z stdout  F x",
		"2016-10-06T00:17:09,5Z stdout F x",
		"x stdout F y",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseCRI(b)
		if err != nil {
			return
		}
		if len(l.Log) > 0 && !aliases(b, l.Log) {
			t.Fatalf("Log %q does not alias the input %q", l.Log, b)
		}
		if l.Time.Location() != time.UTC || (l.Stream != Stdout && l.Stream != Stderr) {
			t.Fatalf("ParseCRI(%q) = %+v", b, l)
		}
		if y := l.Time.Year(); y < 0 || y > 9999 {
			return // an offset moved it out of the years RFC 3339 can write
		}
		tag := map[bool]string{false: "F", true: "P"}[l.Partial]
		out := l.Time.Format(time.RFC3339Nano) + " " + l.Stream.String() + " " + tag + " " + string(l.Log) + "\n"
		back, err := ParseCRI([]byte(out))
		if err != nil {
			t.Fatalf("ParseCRI(%q) = %+v, but its line %q does not parse: %v", b, l, out, err)
		}
		requireLine(t, back, l)
	})
}

// FuzzParseDocker checks ParseDocker against encoding/json: on valid UTF-8 (encoding/json
// replaces invalid bytes, ParseDocker keeps them), it accepts exactly the JSON objects whose
// "log" and "stream" and "time" are strings of the right form, and reads the same values.
func FuzzParseDocker(f *testing.F) {
	for _, s := range []string{
		`{"log":"hello world\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
		`{"log":"{\"a\":\"\u00e9\ud83d\ude00\\\/\b\f\r\t\"}\n","stream":"stderr","time":"2019-01-01T11:11:11Z"}`,
		`{"log":"piece","stream":"stdout","time":"2019-01-01T11:11:11.1+01:00"}`,
		`{"log":"\ud800\udc00\ud800x\udfff\n","stream":"stdout","time":"2019-01-01T11:11:11Z"}`,
		`{"log":"x\n","stream":"stdout","attrs":{"a":[1,2.5e3,true,null,{"b":"}"}]},"time":"2019-01-01T11:11:11Z"}`,
		`{"log":"a\n","log":1,"stream":"stdout","time":"2019-01-01T11:11:11Z"}`,
		`{"\u006cog":"x\n","stream":"std\u006fut","time":"2019-01-01T11:11:11\u005a"}`,
		` { "log" : "x" , "stream" : "stdout" , "time" : "2019-01-01T11:11:11Z" } ` + "\n",
		`{"log":"x\n","stream":"stdout","time":"2019-01-01T11:11:11Z","n":1e400}`,
		`{}`, `null`, `[]`, `{"log":"\u12"}`, `{"log":"x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		l, err := ParseDocker(b)
		if !bytes.Equal(b, orig) {
			t.Fatalf("ParseDocker modified its input")
		}
		if err == nil && (l.Time.Location() != time.UTC || (l.Stream != Stdout && l.Stream != Stderr)) {
			t.Fatalf("ParseDocker(%q) = %+v", b, l)
		}
		if !utf8.Valid(b) {
			return
		}
		var (
			m                 map[string]json.RawMessage
			log, stream, when string
		)
		jerr := json.Unmarshal(b, &m)
		valid := jerr == nil && m != nil &&
			json.Unmarshal(m["log"], &log) == nil && json.Unmarshal(m["stream"], &stream) == nil && json.Unmarshal(m["time"], &when) == nil &&
			m["log"][0] == '"' && m["stream"][0] == '"' && m["time"][0] == '"' &&
			(stream == "stdout" || stream == "stderr")
		var want time.Time
		if valid {
			want, err = time.Parse(time.RFC3339Nano, when)
			valid = err == nil
		}
		if (err == nil) != valid {
			t.Fatalf("ParseDocker(%q) = %+v, %v; encoding/json: %v, valid Docker line %v", b, l, err, jerr, valid)
		}
		if !valid {
			return
		}
		got := string(l.Log)
		if !l.Partial {
			got += "\n"
		}
		if got != log || l.Stream.String() != stream || !l.Time.Equal(want) || strings.HasSuffix(log, "\n") == l.Partial {
			t.Fatalf("ParseDocker(%q) = %q %s %v partial=%v; encoding/json reads %q %s %v", b, l.Log, l.Stream, l.Time, l.Partial, log, stream, want)
		}
	})
}

// FuzzMetaFromPath checks that MetaFromPath never panics, that what it accepts has the
// fields of its layout, and that AppendJSON always writes valid JSON.
func FuzzMetaFromPath(f *testing.F) {
	for _, s := range []string{
		"/var/log/pods/default_web-0_uid/app/0.log",
		"/var/log/pods/default_web-0_uid/app/0.log.20240314-095800.gz",
		"/var/log/containers/web-0_default_nginx-" + cid + ".log",
		"/var/lib/docker/containers/" + cid + "/" + cid + "-json.log.1",
		"pods/a_b_c/d/1.log", "containers/a_b_c-.log", "/", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		m, ok := MetaFromPath(p)
		if !ok {
			if m != (Meta{}) {
				t.Fatalf("MetaFromPath(%q) = %+v with ok false", p, m)
			}
			return
		}
		switch {
		case m.Pod == "" && m.Namespace == "" && m.Container == "" && m.PodUID == "":
			if !isContainerID(m.ContainerID) {
				t.Fatalf("MetaFromPath(%q) = %+v", p, m)
			}
		case m.Namespace == "" || m.Pod == "" || m.Container == "" || (m.PodUID == "") == (m.ContainerID == ""):
			t.Fatalf("MetaFromPath(%q) = %+v: a field is missing", p, m)
		}
		if obj := append(m.AppendJSON([]byte("{")), '}'); !json.Valid(obj) {
			t.Fatalf("AppendJSON(%+v) = %s", m, obj)
		}
	})
}

// FuzzJoiner feeds a Joiner pieces made from the input and checks each record against the
// pieces given: whole when not truncated, a prefix of at most max bytes (at least max-3)
// when truncated.
func FuzzJoiner(f *testing.F) {
	f.Add(uint8(10), []byte("\x03abc\x83def\x01g\x00\x07hijklmn\x02op"))
	f.Add(uint8(1), []byte("\x84\xf0\x9f\x98\x80\x00"))
	f.Fuzz(func(t *testing.T, max uint8, data []byte) {
		j := NewJoiner(int(max) + 1)
		var pending [2][]byte
		var dropping, started [2]bool
		// Each piece: a header byte (bit 7 partial, bit 6 stderr, low bits length), content.
		for len(data) > 0 {
			h := data[0]
			n := min(int(h&0x3f), len(data)-1)
			l := Line{Partial: h&0x80 != 0, Stream: Stream(h >> 6 & 1), Log: data[1 : 1+n]}
			data = data[1+n:]
			s := l.Stream
			rec, first, truncated, done := j.Add(l)
			if dropping[s] {
				dropping[s] = l.Partial
				if done {
					t.Fatal("a dropped piece completed a record")
				}
				continue
			}
			all := append(bytes.Clone(pending[s]), l.Log...)
			switch {
			case len(all) > j.max:
				if !done || !truncated || len(rec) > j.max || len(rec) < j.max-3 || !bytes.HasPrefix(all, rec) {
					t.Fatalf("over the limit %d: %q truncated %v done %v, from %q", j.max, rec, truncated, done, all)
				}
				pending[s], started[s], dropping[s] = nil, false, l.Partial
			case l.Partial:
				if done {
					t.Fatal("a partial piece completed a record")
				}
				pending[s], started[s] = all, true
			default:
				if !done || truncated || !bytes.Equal(rec, all) {
					t.Fatalf("record %q truncated %v done %v, want %q", rec, truncated, done, all)
				}
				pending[s], started[s] = nil, false
			}
			if done && (first.Stream != s || !bytes.Equal(first.Log, rec)) {
				t.Fatalf("first = %+v", first)
			}
			if j.Pending() != (started[0] || started[1]) {
				t.Fatalf("Pending() = %v", j.Pending())
			}
		}
	})
}

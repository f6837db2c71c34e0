package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const dockerTime = "2019-01-01T11:11:11.111111111Z"

var dockerTS = time.Date(2019, 1, 1, 11, 11, 11, 111111111, time.UTC)

func TestParseDocker(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    Line
		alias   bool // Log aliases the input
		wantErr bool
	}{
		{"text", `{"log":"hello world\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}` + "\n",
			Line{Time: dockerTS, Log: []byte("hello world")}, true, false},
		{"stderr", `{"log":"warning: low disk\n","stream":"stderr","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Stream: Stderr, Log: []byte("warning: low disk")}, true, false},
		{"partial", `{"log":"first 16 KiB","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Partial: true, Log: []byte("first 16 KiB")}, true, false},
		{"empty line", `{"log":"\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Log: []byte{}}, false, false},
		// Docker escapes like encoding/json with HTML escaping: <, >, & and U+2028/9 too.
		{"json app log", `{"log":"{\"level\":\"info\",\"msg\":\"GET /a?b=1\u0026c=\u003cd\u003e\"}\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Log: []byte(`{"level":"info","msg":"GET /a?b=1&c=<d>"}`)}, false, false},
		{"escapes", `{"log":"tab\there \"q\" back\\slash \/ \b\f\r caf\u00e9 \u65e5\u672c \ud83d\ude00 \u2028\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Log: []byte("tab\there \"q\" back\\slash / \b\f\r café 日本 😀 \u2028")}, false, false},
		{"upper case hex", `{"log":"\u00E9\uD83D\uDE00\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Log: []byte("é😀")}, false, false},
		{"lone surrogates", `{"log":"a\ud800b\udc00c\ud83d\u0041\ud83d","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Partial: true, Log: []byte("a\uFFFDb\uFFFDc\uFFFDA\uFFFD")}, false, false},
		{"escaped backslash before n", `{"log":"C:\\new\\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Partial: true, Log: []byte(`C:\new\n`)}, false, false},
		{"escaped newline inside", `{"log":"a\nb\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Log: []byte("a\nb")}, false, false},
		{"utf-8 kept", `{"log":"grüße ` + "\xff" + `\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Log: []byte("grüße \xff")}, true, false},
		// --log-opt labels=... and env=... add "attrs".
		{"attrs", `{"log":"x\n","stream":"stdout","attrs":{"tag":"web","n":[1,2.5e3,true,null,{"a":"}"}]},"time":"2019-01-01T11:11:11.111111111Z"}`,
			Line{Time: dockerTS, Log: []byte("x")}, true, false},
		{"other order and spaces", " { \"time\" : \"2019-01-01T11:11:11.111111111Z\" ,\t\"stream\":\"stderr\" , \"log\" : \"x\\n\" } \r\n",
			Line{Time: dockerTS, Stream: Stderr, Log: []byte("x")}, true, false},
		{"duplicate member: last wins", `{"log":"a\n","stream":"stdin","time":"2019-01-01T11:11:11.111111111Z","stream":"stderr","log":"b\n"}`,
			Line{Time: dockerTS, Stream: Stderr, Log: []byte("b")}, true, false},
		{"escaped names", `{"\u006cog":"x\n","str\u0065am":"std\u006fut","time":"2019-01-01T11:11:11.111111111\u005a"}`,
			Line{Time: dockerTS, Log: []byte("x")}, true, false},
		{"offset time", `{"log":"x\n","stream":"stdout","time":"2019-01-01T12:11:11.111111111+01:00"}`,
			Line{Time: dockerTS, Log: []byte("x")}, true, false},

		{"empty", "", Line{}, false, true},
		{"empty object", "{}", Line{}, false, true},
		{"cri line", "2016-10-06T00:17:09.669794202Z stdout F x\n", Line{}, false, true},
		{"array", `["log"]`, Line{}, false, true},
		{"no log", `{"stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"no stream", `{"log":"x\n","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"no time", `{"log":"x\n","stream":"stdout"}`, Line{}, false, true},
		{"bad stream", `{"log":"x\n","stream":"stdin","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"bad time", `{"log":"x\n","stream":"stdout","time":"yesterday"}`, Line{}, false, true},
		{"log not a string", `{"log":1,"stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"null log", `{"log":null,"stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"cut off mid-write", `{"log":"hello world\n","stream":"stdout","time":"2019-01-01T11:1`, Line{}, false, true},
		{"unterminated string", `{"log":"x\"}`, Line{}, false, true},
		{"bad escape", `{"log":"\x41\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"short unicode escape", `{"log":"\u12\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"raw newline in string", "{\"log\":\"x\n\",\"stream\":\"stdout\",\"time\":\"2019-01-01T11:11:11.111111111Z\"}", Line{}, false, true},
		{"trailing garbage", `{"log":"x\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}x`, Line{}, false, true},
		{"two objects", `{"log":"x\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}{}`, Line{}, false, true},
		{"trailing comma", `{"log":"x\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z",}`, Line{}, false, true},
		{"missing colon", `{"log" "x\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"bad attrs", `{"log":"x\n","stream":"stdout","attrs":{"a":},"time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"bad scalar", `{"log":"x\n","stream":"stdout","n":tru,"time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
		{"unbalanced", `{"log":"x\n","stream":"stdout","a":[1,"time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			orig := bytes.Clone(in)
			got, err := ParseDocker(in)
			if !bytes.Equal(in, orig) {
				t.Fatalf("ParseDocker modified its input")
			}
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrSyntax) {
					t.Fatalf("ParseDocker(%q) = %+v, %v; want an ErrSyntax error", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDocker(%q): %v", tc.in, err)
			}
			requireLine(t, got, tc.want)
			if a := aliases(in, got.Log); a != tc.alias {
				t.Errorf("Log aliases the input: %v, want %v", a, tc.alias)
			}
		})
	}
}

// dockerLines writes content the way Docker's json-file driver does: pieces of at most 16 KiB,
// only the last ending in a newline, each encoded with encoding/json (HTML-escaped, as
// Docker's encoder is).
func dockerLines(t testing.TB, stream, content string) [][]byte {
	t.Helper()
	const piece = 16 << 10
	var out [][]byte
	rest := content + "\n"
	for rest != "" {
		n := min(len(rest), piece)
		b, err := json.Marshal(map[string]string{"log": rest[:n], "stream": stream, "time": dockerTime})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		rest = rest[n:]
	}
	return out
}

func TestParseDockerSplitLine(t *testing.T) {
	content := strings.Repeat(`{"msg":"<élan> & \"quotes\"", "n":12345}`, 1200) // about 50 KiB
	lines := dockerLines(t, "stderr", content)
	if len(lines) != 4 {
		t.Fatalf("%d pieces, want 4", len(lines))
	}
	j := NewJoiner(1 << 20)
	for i, b := range lines {
		l, err := ParseDocker(b)
		if err != nil {
			t.Fatal(err)
		}
		if l.Partial != (i < len(lines)-1) || l.Stream != Stderr {
			t.Fatalf("piece %d: partial %v stream %s", i, l.Partial, l.Stream)
		}
		rec, first, truncated, done := j.Add(l)
		if done != (i == len(lines)-1) {
			t.Fatalf("piece %d: done %v", i, done)
		}
		if done && (string(rec) != content || truncated || !first.Time.Equal(dockerTS) || first.Stream != Stderr) {
			t.Fatalf("joined record of %d bytes (truncated %v), want the %d bytes written", len(rec), truncated, len(content))
		}
	}
}

func TestParseDockerAllocations(t *testing.T) {
	text := []byte(`{"log":"hello world\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`)
	cri := []byte("2016-10-06T00:17:09.669794202Z stdout F x")
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseDocker(text); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseDocker(cri); err == nil {
			t.Fatal("accepted a CRI line")
		}
	}); n != 0 {
		t.Errorf("ParseDocker of a text line allocates %v times", n)
	}
	escaped := []byte(`{"log":"{\"level\":\"info\"}\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseDocker(escaped); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("ParseDocker of an escaped line allocates %v times, want 1 (the unescaped content)", n)
	}
}

package jsonx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "tab\tnl\ncr\r\x00\x1f", "é ü 日本", "\u2028\u2029", "bad\xffutf8", "<&>"} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		w := strings.TrimSuffix(want.String(), "\n")
		if got := string(AppendString(nil, s)); got != w {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, w)
		}
		if got := string(AppendString(nil, []byte(s))); got != w {
			t.Errorf("AppendString([]byte %q) = %s, want %s", s, got, w)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("a\"b\\c\n\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, out, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("%q round-trips to %q", s, back)
		}
	})
}

func TestAppendStringDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 256)
	b := []byte("héllo \u2028 wörld \"quoted\"\n")
	if n := testing.AllocsPerRun(100, func() { buf = AppendString(buf[:0], b) }); n != 0 {
		t.Fatalf("[]byte: %v allocations", n)
	}
	s := string(b)
	if n := testing.AllocsPerRun(100, func() { buf = AppendString(buf[:0], s) }); n != 0 {
		t.Fatalf("string: %v allocations", n)
	}
}

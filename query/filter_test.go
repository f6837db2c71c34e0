package query

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCondErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty condition"},
		{"level", "no operator"},
		{"=ERROR", "empty field name"},
		{"a..b=1", "empty path segment"},
		{"latency_ms>fast", "needs a number"},
		{"msg~(unclosed", "invalid regular expression"},
		{"msg~" + strings.Repeat("a", MaxValueLen+1), "longer than"},
		{strings.Repeat("f", MaxFieldLen+1) + "=1", "longer than"},
		{"a\x01b=1", "control character"},
		{"a=>1", ""}, // parses: field a, value ">1" — not an error
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseCond(tt.in)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ParseCond(%q): %v", tt.in, err)
				}
				return
			}
			if !errors.Is(err, ErrBadFilter) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseCond(%q) = %v, want ErrBadFilter mentioning %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	rec := []byte(`{"time":"2026-11-22T10:00:00Z","level":"ERROR","msg":"upstream timeout after 3 retries","latency_ms":812.5,"status":"503","ok":false,"http":{"method":"GET","path":"/a/b"},"user*id":7,"esc":"a\/b"}`)
	tests := []struct {
		cond string
		want bool
	}{
		{"level=ERROR", true},
		{"level=INFO", false},
		{"level!=INFO", true},
		{"level!=ERROR", false},
		{"msg~time(out)?", true},
		{"msg~^upstream", true},
		{"msg!~^upstream", false},
		{"latency_ms>800", true},
		{"latency_ms>=812.5", true},
		{"latency_ms<812.5", false},
		{"latency_ms<=812.5", true},
		{"latency_ms=812.5", true},
		{"status>500", true}, // numeric string compared as a number
		{"status=503", true},
		{"ok=false", true},
		{"http.method=GET", true},
		{"http.path=/a/b", true},
		{"http.method exists", true},
		{"http.verb exists", false},
		{"http.verb missing", true},
		{"missing=x", false},
		{"missing!=x", true}, // absent field differs from every value
		{"user*id=7", true},  // special gjson characters are literal
		{"esc=a/b", true},    // escaped solidus in the record still matches
		{"msg>1", false},     // non-numeric field never satisfies a numeric comparison
	}
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			c, err := ParseCond(tt.cond)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Match(rec); got != tt.want {
				t.Fatalf("%s on %s = %v, want %v", tt.cond, rec, got, tt.want)
			}
		})
	}
}

func TestFilterConjunction(t *testing.T) {
	f, err := ParseFilter([]string{"level=ERROR", "latency_ms>100"})
	if err != nil {
		t.Fatal(err)
	}
	for rec, want := range map[string]bool{
		`{"level":"ERROR","latency_ms":200}`: true,
		`{"level":"ERROR","latency_ms":50}`:  false,
		`{"level":"INFO","latency_ms":200}`:  false,
		`not json at all`:                    false,
	} {
		if got := f.Match([]byte(rec)); got != want {
			t.Errorf("Match(%s) = %v, want %v", rec, got, want)
		}
	}
	if !(Filter{}).Match([]byte(`{}`)) {
		t.Error("empty filter must match every record")
	}
}

func FuzzParseCond(f *testing.F) {
	for _, s := range []string{"level=ERROR", "a.b!~x+", "n>=1e3", "x exists", "y missing", "=", "~(", "a.b.c<=-1"} {
		f.Add(s, []byte(`{"level":"ERROR","a":{"b":"x"},"n":1000}`))
	}
	f.Fuzz(func(t *testing.T, s string, rec []byte) {
		c, err := ParseCond(s)
		if err != nil {
			if !errors.Is(err, ErrBadFilter) {
				t.Fatalf("error %v does not wrap ErrBadFilter", err)
			}
			return
		}
		c.Match(rec) // must not panic on any record
		// A parsed condition prints back to an equivalent one.
		c2, err := ParseCond(c.String())
		if err != nil {
			t.Fatalf("ParseCond(%q) printed %q which does not parse: %v", s, c.String(), err)
		}
		if c2.Field != c.Field || c2.Op != c.Op || c2.Value != c.Value {
			t.Fatalf("round trip %q → %q changed the condition", s, c.String())
		}
	})
}

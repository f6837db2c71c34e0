package prefix

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var when = time.Date(2026, 3, 7, 14, 5, 9, 123456789, time.FixedZone("CET", 3600)) // 13:05:09 UTC

func TestDateTimeFormat(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"yyyy/MM/dd/HH", "2026/03/07/13"},
		{"yyyy-MM-dd", "2026-03-07"},
		{"HH", "13"},
		{"yy", "26"},
		{"y", "2026"},
		{"yyyyy", "02026"},
		{"uuuu-M-d H:m:s", "2026-3-7 13:5:9"},
		{"D DDD", "66 066"},
		{"MMM MMMM MMMMM", "Mar March M"},
		{"E EEEE EEEEE", "Sat Saturday S"},
		{"h a K k", "1 PM 1 13"},
		{"ss.SSS", "09.123"},
		{"S SSSSSSSSS", "1 123456789"},
		{"n", "123456789"},
		{"Q QQ QQQ QQQQ", "1 01 Q1 1st quarter"},
		{"X x xx xxx Z ZZZZ ZZZZZ z", "Z +00 +0000 +00:00 +0000 GMT Z UTC"},
		{"'year='yyyy'/month='MM", "year=2026/month=03"},
		{"'o''clock' HH''", "o'clock 13'"},
		{"G", "AD"},
		{"A", fmt.Sprint((13*3600+5*60+9)*1000 + 123)},
		{"-_/ .:", "-_/ .:"},
	}
	for _, tt := range tests {
		f, err := ParseDateTimeFormat(tt.pattern)
		if err != nil {
			t.Fatalf("ParseDateTimeFormat(%q): %v", tt.pattern, err)
		}
		if got := string(f.Append(nil, when)); got != tt.want {
			t.Errorf("%q formats %q, want %q", tt.pattern, got, tt.want)
		}
	}
	t.Run("midnight and noon", func(t *testing.T) {
		f, _ := ParseDateTimeFormat("h a k K")
		if got := string(f.Append(nil, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))); got != "12 AM 24 0" {
			t.Errorf("midnight = %q", got)
		}
		if got := string(f.Append(nil, time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))); got != "12 PM 12 0" {
			t.Errorf("noon = %q", got)
		}
	})
	for _, bad := range []string{"YYYY", "ww", "'open", "[HH]", "yyyy#", "HHH", "{", "e", "SSSSSSSSSS"} {
		if _, err := ParseDateTimeFormat(bad); !errors.Is(err, ErrPattern) {
			t.Errorf("ParseDateTimeFormat(%q) = %v, want ErrPattern", bad, err)
		}
	}
}

func TestTemplate(t *testing.T) {
	all := AllowTimestamp | AllowQuery | AllowErrorType
	tests := []struct {
		tmpl   string
		fields []string
		errTyp string
		want   string
	}{
		{DefaultArchive, nil, "", "logs/dt=2026-03-07/hour=13/"},
		{"!{timestamp:yyyy/MM/dd/HH}/", nil, "", "2026/03/07/13/"},
		{"svc=!{partitionKeyFromQuery:service}/lvl=!{partitionKeyFromQuery:.level}/", []string{"api", "ERROR"}, "", "svc=api/lvl=ERROR/"},
		{"a/!{partitionKeyFromQuery:http.status}/!{partitionKeyFromQuery:http.status}", []string{"503"}, "", "a/503/503"},
		{"x/!{partitionKeyFromQuery:k}/", []string{"a/b c%"}, "", "x/a%2Fb%20c%25/"},
		{"x/!{partitionKeyFromQuery:k}/", []string{".."}, "", "x/%2E%2E/"},
		{DefaultError, nil, "partitioning-failed", "errors/partitioning-failed/dt=2026-03-07/hour=13/"},
		{"plain/", nil, "", "plain/"},
		{"", nil, "", ""},
		{"bang!/{brace}/", nil, "", "bang!/{brace}/"},
	}
	for _, tt := range tests {
		tp, err := Parse(tt.tmpl, all)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.tmpl, err)
		}
		if len(tp.Fields()) != len(tt.fields) {
			t.Fatalf("Parse(%q).Fields() = %q, want %d fields", tt.tmpl, tp.Fields(), len(tt.fields))
		}
		got := string(tp.Append(nil, &Values{Time: when, Fields: tt.fields, ErrorType: tt.errTyp}))
		if got != tt.want {
			t.Errorf("%q = %q, want %q", tt.tmpl, got, tt.want)
		}
		if !strings.HasPrefix(got, tp.LiteralPrefix()) {
			t.Errorf("%q: %q does not start with LiteralPrefix %q", tt.tmpl, got, tp.LiteralPrefix())
		}
	}
	t.Run("field order", func(t *testing.T) {
		tp := MustParse("!{partitionKeyFromQuery:.b}/!{partitionKeyFromQuery:a.c}", AllowQuery)
		if got := strings.Join(tp.Fields(), ","); got != "b,a.c" {
			t.Errorf("Fields = %q", got)
		}
	})
	bad := []struct {
		tmpl  string
		allow Namespaces
		want  error
	}{
		{"!{firehose:random-string}/", all, ErrUnknownExpression},
		{"!{firehose:error-output-type}/", AllowTimestamp | AllowQuery, ErrUnknownExpression},
		{"!{partitionKeyFromQuery:a}/", AllowTimestamp | AllowErrorType, ErrUnknownExpression},
		{"!{timestamp:yyyy}/", AllowQuery, ErrUnknownExpression},
		{"!{partitionKeyFromLambda:a}/", all, ErrUnknownExpression},
		{"!{timestamp}/", all, ErrUnknownExpression},
		{"!{timestamp:yyyy/", all, ErrPattern},
		{"!{timestamp:}/", all, ErrPattern},
		{"!{timestamp:YYYY}/", all, ErrPattern},
		{"!{partitionKeyFromQuery:a..b}/", all, ErrPattern},
		{"!{partitionKeyFromQuery:}/", all, ErrPattern},
		{"\xff", all, ErrPattern},
	}
	for _, b := range bad {
		if _, err := Parse(b.tmpl, b.allow); !errors.Is(err, b.want) {
			t.Errorf("Parse(%q) = %v, want %v", b.tmpl, err, b.want)
		}
	}
}

func TestEscapeValue(t *testing.T) {
	for _, s := range []string{"", "api", "a/b", "ünïcode", "100%", "..", ".", "a b\x00\n", "~._-"} {
		e := string(EscapeValue(nil, s))
		if strings.ContainsAny(e, "/ \x00\n") || e == ".." || e == "." {
			t.Errorf("EscapeValue(%q) = %q keeps a special character", s, e)
		}
		back, err := UnescapeValue(e)
		if err != nil || back != s {
			t.Errorf("UnescapeValue(%q) = %q, %v; want %q", e, back, err, s)
		}
	}
	for _, bad := range []string{"%", "%4", "%zz"} {
		if _, err := UnescapeValue(bad); err == nil {
			t.Errorf("UnescapeValue(%q) succeeded", bad)
		}
	}
}

// FuzzTemplate parses arbitrary templates: Parse never panics, and a template that parses
// evaluates deterministically to valid UTF-8 starting with its literal prefix, where field
// values never add a path segment.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{DefaultArchive, DefaultError, "!{timestamp:yyyy/MM/dd/HH}/", "k=!{partitionKeyFromQuery:a.b}/",
		"!{timestamp:'q''uote'yy}", "!{", "!{}", "!{x:y}", "!{timestamp:[", "a!{timestamp:SSS}b!{firehose:error-output-type}"} {
		f.Add(s, "v/al", int64(1773482281))
	}
	f.Fuzz(func(t *testing.T, tmpl, value string, unix int64) {
		tp, err := Parse(tmpl, AllowTimestamp|AllowQuery|AllowErrorType)
		if err != nil {
			if !errors.Is(err, ErrPattern) && !errors.Is(err, ErrUnknownExpression) {
				t.Fatalf("Parse(%q) error %v wraps neither sentinel", tmpl, err)
			}
			return
		}
		fields := make([]string, len(tp.Fields()))
		for i := range fields {
			fields[i] = value
		}
		v := &Values{Time: time.Unix(unix%(1<<35), 0), Fields: fields, ErrorType: "partitioning-failed"}
		a := tp.Append(nil, v)
		b := tp.Append(nil, v)
		if string(a) != string(b) {
			t.Fatalf("evaluation is not deterministic: %q vs %q", a, b)
		}
		if !utf8.Valid(a) {
			t.Fatalf("%q evaluates to invalid UTF-8 %q", tmpl, a)
		}
		if !strings.HasPrefix(string(a), tp.LiteralPrefix()) {
			t.Fatalf("%q does not start with %q", a, tp.LiteralPrefix())
		}
		// Field values are escaped: the slashes in the output are the template's own.
		v.Fields = make([]string, len(fields))
		for i := range v.Fields {
			v.Fields[i] = "x"
		}
		if strings.Count(string(a), "/") != strings.Count(string(tp.Append(nil, v)), "/") {
			t.Fatalf("value %q changed the number of path segments of %q", value, tmpl)
		}
	})
}

func ExampleTemplate_Append() {
	tp, err := Parse("logs/service=!{partitionKeyFromQuery:service}/!{timestamp:yyyy/MM/dd/HH}/", AllowTimestamp|AllowQuery)
	if err != nil {
		panic(err)
	}
	key := tp.Append(nil, &Values{Time: time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC), Fields: []string{"api"}})
	fmt.Println(string(key))
	// Output: logs/service=api/2026/11/22/10/
}

func TestParts(t *testing.T) {
	tpl := MustParse("logs/!{partitionKeyFromQuery:.app.name}/dt=!{timestamp:yyyy-MM-dd}/", AllowTimestamp|AllowQuery)
	got := tpl.Parts()
	want := []Part{
		{Kind: PartLiteral, Literal: "logs/"},
		{Kind: PartField, Field: "app.name"},
		{Kind: PartLiteral, Literal: "/dt="},
		{Kind: PartTimestamp, Pattern: "yyyy-MM-dd"},
		{Kind: PartLiteral, Literal: "/"},
	}
	if len(got) != len(want) {
		t.Fatalf("Parts() = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("part %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if p := MustParse(DefaultError, AllowTimestamp|AllowErrorType).Parts(); p[1].Kind != PartErrorType {
		t.Errorf("error prefix parts = %+v", p)
	}
}

// TestResolution checks the property callers rely on: times that truncate to the same
// instant at the reported resolution format the same, and the resolution is not finer than
// it needs to be for the common patterns.
func TestResolution(t *testing.T) {
	want := map[string]time.Duration{
		"yyyy/MM/dd/HH": time.Hour, "yyyy-MM-dd": 24 * time.Hour, "HH:mm": time.Minute,
		"uuuu-M-d H:m:s": time.Second, "h a": time.Hour, "A": time.Millisecond, "ss.SSS": time.Nanosecond,
		"E QQQ G D": 24 * time.Hour, "'literal' X": 24 * time.Hour,
	}
	for pattern, res := range want {
		f, err := ParseDateTimeFormat(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Resolution(); got != res {
			t.Errorf("%q: resolution %v, want %v", pattern, got, res)
		}
		// Times spread over several years, each against the start of its resolution step
		// and a time just before the next step.
		for i := range 2000 {
			t1 := time.Unix(1700000000+int64(i)*7919*61, int64(i)*104729).UTC()
			lo := t1.Truncate(f.Resolution())
			hi := lo.Add(f.Resolution() - time.Nanosecond)
			a, b, c := f.Append(nil, t1), f.Append(nil, lo), f.Append(nil, hi)
			if string(a) != string(b) || string(a) != string(c) {
				t.Fatalf("%q: %v formats %q, %v formats %q, %v formats %q", pattern, t1, a, lo, b, hi, c)
			}
		}
	}
	tpl := MustParse("logs/!{timestamp:yyyy}/x=!{partitionKeyFromQuery:svc}/!{timestamp:HH}/", AllowTimestamp|AllowQuery)
	if got := tpl.Resolution(); got != time.Hour {
		t.Errorf("template resolution %v, want 1h", got)
	}
	if got := MustParse("fixed/", 0).Resolution(); got != 24*time.Hour {
		t.Errorf("template without timestamps: resolution %v, want 24h", got)
	}
}

func TestBindStream(t *testing.T) {
	for _, c := range []struct{ src, stream, want string }{
		{"logs/!{kinlog:stream}/dt=!{timestamp:yyyy}/", "app-logs", "logs/app-logs/dt=!{timestamp:yyyy}/"},
		{"!{kinlog:stream}/a/!{kinlog:stream}/", "arn:aws:kinesis:eu-west-1:123456789012:stream/web.v2", "web.v2/a/web.v2/"},
		{"logs/", "s", "logs/"},
		{"x/!{kinlog:stream}/", "we/ird", "x/we%2Fird/"},
	} {
		got := BindStream(c.src, c.stream)
		if got != c.want {
			t.Errorf("BindStream(%q, %q) = %q, want %q", c.src, c.stream, got, c.want)
		}
		if _, err := Parse(got, AllowTimestamp); err != nil {
			t.Errorf("bound template %q does not parse: %v", got, err)
		}
		if UsesStream(got) || UsesStream(c.src) != strings.Contains(c.src, "kinlog:stream") {
			t.Errorf("UsesStream wrong for %q / %q", c.src, got)
		}
	}
	for _, src := range []string{"logs/!{kinlog:stream}/", "logs/!{kinlog:shard}/"} {
		if _, err := Parse(src, AllowTimestamp|AllowQuery); !errors.Is(err, ErrUnknownExpression) {
			t.Errorf("Parse(%q) = %v, want ErrUnknownExpression", src, err)
		}
	}
}

package encode

import (
	"strconv"
	"testing"
	"time"
)

// TestRFC3339FastCoversCommonForms makes sure the fast path is the one taken for the forms
// loggers write (slog, zap, logrus, Java), and that odd but valid forms still parse through
// the fallback.
func TestRFC3339FastCoversCommonForms(t *testing.T) {
	for _, s := range []string{
		"2026-03-14T09:58:00.007Z", "2026-03-14T09:58:00Z", "2026-03-14T09:58:00.007123+01:00",
		"2026-03-14T09:58:00.123456789-05:00",
	} {
		if _, ok := rfc3339Fast([]byte(s)); !ok {
			t.Errorf("rfc3339Fast(%q) fell back", s)
		}
	}
	var d Doc
	for _, s := range []string{`"2026-03-14T09:58:00,5Z"`, `"2026-03-14T09:58:00.5\u005a"`} {
		if err := d.Parse([]byte(`{"t":` + s + `}`)); err != nil {
			t.Fatal(err)
		}
		v, _ := d.Get("t")
		got, err := TimeAuto.Parse(v)
		want := time.Date(2026, 3, 14, 9, 58, 0, 5e8, time.UTC)
		if err != nil || !got.Equal(want) {
			t.Errorf("Parse(%s) = %v, %v; want %v", s, got, err, want)
		}
	}
}

func BenchmarkTimeParse(b *testing.B) {
	var d Doc
	_ = d.Parse([]byte(`{"time":"2026-03-14T09:58:00.007Z","ts":` + strconv.Itoa(1773482281123) + `}`))
	for _, name := range []string{"time", "ts"} {
		v, _ := d.Get(name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := TimeAuto.Parse(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAttributesCompactCopy checks that copying runs of members from a compact document
// gives exactly the member-by-member form.
func TestAttributesCompactCopy(t *testing.T) {
	data, _ := records(3000)
	for _, s := range []string{
		`{"a":1,"time":"2026-03-14T09:58:01Z","b":{"c":[1,2]},"msg":"m","d\u0065":"x","level":"I"}`,
		`{"msg":"m","a":"\"q\"","level":"E"}`,
		`{"x":1}`,
		`{"msg":"only"}`,
	} {
		data = append(data, []byte(s))
	}
	p := DefaultFields.picker()
	for _, r := range data {
		var d Doc
		if d.Parse(Trim(r)) != nil || d.Kind != Object || !d.compact {
			continue
		}
		var c columns
		p.pick(&d, &c)
		fast := string(c.appendAttributes(nil, &d))
		d.compact = false
		slow := string(c.appendAttributes(nil, &d))
		if fast != slow {
			t.Fatalf("record %q: run copy %q, member by member %q", r, fast, slow)
		}
	}
}

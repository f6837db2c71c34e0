package encode

import (
	"strconv"
	"testing"
	"time"
)

// FuzzRFC3339Fast checks the allocation-free RFC 3339 reader against time.Parse: wherever it
// accepts a value, time.Parse accepts it too and gives the same instant.
func FuzzRFC3339Fast(f *testing.F) {
	for _, s := range []string{
		"2026-03-14T09:58:00.007Z", "2026-03-14T09:58:00Z", "2026-03-14T10:58:00.123456789+01:00",
		"2024-02-29T23:59:59-07:30", "2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
		"2026-03-14T24:00:00Z", "2026-03-14T09:58:60Z", "2026-03-14T09:58:00.Z",
		"2026-03-14T09:58:00.1234567891Z", "2026-03-14t09:58:00Z", "2026-03-14T09:58:00+24:00",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2026-03-14T09:58:00,5Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := rfc3339Fast([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("rfc3339Fast(%q) = %v, but time.Parse fails: %v", s, got, err)
		}
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("rfc3339Fast(%q) = %v, time.Parse = %v", s, got, want)
		}
	})
}

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

func TestDaysIn(t *testing.T) {
	for _, year := range []int{1900, 2000, 2023, 2024} {
		for m := time.January; m <= time.December; m++ {
			want := time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
			if got := daysIn(m, year); got != want {
				t.Errorf("daysIn(%v, %d) = %d, want %d", m, year, got, want)
			}
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

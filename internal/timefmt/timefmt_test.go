package timefmt

import (
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
		got, ok := RFC3339Fast([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("RFC3339Fast(%q) = %v, but time.Parse fails: %v", s, got, err)
		}
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("RFC3339Fast(%q) = %v, time.Parse = %v", s, got, want)
		}
	})
}

func TestDaysIn(t *testing.T) {
	for _, year := range []int{1900, 2000, 2023, 2024} {
		for m := time.January; m <= time.December; m++ {
			want := time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
			if got := DaysIn(m, year); got != want {
				t.Errorf("DaysIn(%v, %d) = %d, want %d", m, year, got, want)
			}
		}
	}
}

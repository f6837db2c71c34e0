package query

import (
	"bytes"
	"testing"
	"time"
)

func TestWriterFormats(t *testing.T) {
	recs := []string{
		`{"time":"2026-11-22T10:00:00Z","level":"ERROR","service":"api","msg":"boom\nsecond line","http":{"status":500}}`,
		`{"time":"2026-11-22T10:00:01Z","level":"INFO","msg":"ok, \"quoted\""}`,
	}
	tests := []struct {
		name   string
		format Format
		fields []string
		want   string
	}{
		{"ndjson whole records", NDJSON, nil, recs[0] + "\n" + recs[1] + "\n"},
		{"ndjson projection keeps raw JSON values and skips absent fields", NDJSON, []string{"level", "http.status"},
			`{"level":"ERROR","http.status":500}` + "\n" + `{"level":"INFO"}` + "\n"},
		{"csv quotes and keeps newlines", CSV, []string{"level", "msg"},
			"level,msg\nERROR,\"boom\nsecond line\"\nINFO,\"ok, \"\"quoted\"\"\"\n"},
		{"table aligns default columns on one line each", Table, nil,
			"TIME                  LEVEL  SERVICE  MSG\n" +
				"2026-11-22T10:00:00Z  ERROR  api      boom second line\n" +
				"2026-11-22T10:00:01Z  INFO            ok, \"quoted\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, tt.format, tt.fields)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if err := w.Write([]byte(r)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	if _, err := NewWriter(&bytes.Buffer{}, CSV, []string{"a..b"}); err == nil {
		t.Error("NewWriter accepted a field with an empty segment")
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat accepted xml")
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"now", now},
		{"-1h", now.Add(-time.Hour)},
		{"15m", now.Add(-15 * time.Minute)},
		{"-2d", now.Add(-48 * time.Hour)},
		{"-1w", now.Add(-7 * 24 * time.Hour)},
		{"2026-11-21", time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)},
		{"2026-11-22T10:30:00+01:00", time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "-1x", "yesterday", "-h", "2026-13-01"} {
		if _, err := ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

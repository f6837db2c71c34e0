package container

import (
	"errors"
	"testing"
	"time"
)

func TestParseCRI(t *testing.T) {
	ts := time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC)
	for _, tc := range []struct {
		name    string
		in      string
		want    Line
		wantErr bool
	}{
		{"full stdout", "2016-10-06T00:17:09.669794202Z stdout F log content 1\n",
			Line{Time: ts, Stream: Stdout, Log: []byte("log content 1")}, false},
		{"no newline", "2016-10-06T00:17:09.669794202Z stdout F log content 1",
			Line{Time: ts, Stream: Stdout, Log: []byte("log content 1")}, false},
		{"stderr", "2016-10-06T00:17:09.669794202Z stderr F panic: runtime error: index out of range [3] with length 3\n",
			Line{Time: ts, Stream: Stderr, Log: []byte("panic: runtime error: index out of range [3] with length 3")}, false},
		{"partial", "2016-10-06T00:17:09.669794202Z stdout P log content 1\n",
			Line{Time: ts, Stream: Stdout, Partial: true, Log: []byte("log content 1")}, false},
		{"json content", `2024-03-14T09:58:00.5Z stdout F {"level":"info","msg":"listening","addr":":8080"}` + "\n",
			Line{Time: time.Date(2024, 3, 14, 9, 58, 0, 5e8, time.UTC), Log: []byte(`{"level":"info","msg":"listening","addr":":8080"}`)}, false},
		// RFC3339Nano drops trailing zeros, down to no fraction at all.
		{"whole second", "2024-03-14T09:58:00Z stdout F x\n",
			Line{Time: time.Date(2024, 3, 14, 9, 58, 0, 0, time.UTC), Log: []byte("x")}, false},
		// CRI-O writes the node's local time with its offset.
		{"offset", "2024-03-14T10:58:00.25+01:00 stdout F x\n",
			Line{Time: time.Date(2024, 3, 14, 9, 58, 0, 25e7, time.UTC), Log: []byte("x")}, false},
		{"extra tags", "2016-10-06T00:17:09.669794202Z stdout P:x:y a\n",
			Line{Time: ts, Partial: true, Log: []byte("a")}, false},
		{"spaces kept", "2016-10-06T00:17:09.669794202Z stdout F   indented  \n",
			Line{Time: ts, Log: []byte("  indented  ")}, false},
		{"carriage return kept", "2016-10-06T00:17:09.669794202Z stdout F dos\r\n",
			Line{Time: ts, Log: []byte("dos\r")}, false},
		{"empty line", "2016-10-06T00:17:09.669794202Z stdout F \n",
			Line{Time: ts, Log: []byte{}}, false},
		{"no space after tag", "2016-10-06T00:17:09.669794202Z stderr F",
			Line{Time: ts, Stream: Stderr, Log: []byte{}}, false},

		{"empty", "", Line{}, true},
		{"newline only", "\n", Line{}, true},
		{"plain text", "hello world\n", Line{}, true},
		{"docker json", `{"log":"x\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`, Line{}, true},
		{"bad time", "2016-13-06T00:17:09Z stdout F x\n", Line{}, true},
		{"time only", "2016-10-06T00:17:09Z\n", Line{}, true},
		{"no tag", "2016-10-06T00:17:09Z stdout\n", Line{}, true},
		{"stdin", "2016-10-06T00:17:09Z stdin F x\n", Line{}, true},
		{"upper case stream", "2016-10-06T00:17:09Z STDOUT F x\n", Line{}, true},
		{"unknown tag", "2016-10-06T00:17:09Z stdout X x\n", Line{}, true},
		{"long tag", "2016-10-06T00:17:09Z stdout FP x\n", Line{}, true},
		{"empty tag", "2016-10-06T00:17:09Z stdout  F x\n", Line{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			got, err := ParseCRI(in)
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrSyntax) {
					t.Fatalf("ParseCRI(%q) = %+v, %v; want an ErrSyntax error", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCRI(%q): %v", tc.in, err)
			}
			requireLine(t, got, tc.want)
			if len(got.Log) > 0 && !aliases(in, got.Log) {
				t.Errorf("Log does not alias the input")
			}
		})
	}
}

func TestParseCRIDoesNotAllocate(t *testing.T) {
	in := []byte("2016-10-06T00:17:09.669794202Z stdout F log content 1\n")
	bad := []byte(`{"log":"x\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseCRI(in); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseCRI(bad); err == nil {
			t.Fatal("accepted a Docker line")
		}
	}); n != 0 {
		t.Errorf("ParseCRI allocates %v times per call", n)
	}
}

func requireLine(t *testing.T, got, want Line) {
	t.Helper()
	if !got.Time.Equal(want.Time) || got.Time.Location() != time.UTC || got.Stream != want.Stream ||
		got.Partial != want.Partial || string(got.Log) != string(want.Log) || (got.Log == nil) != (want.Log == nil) {
		t.Errorf("got  %v %s partial=%v %q (nil %v)\nwant %v %s partial=%v %q (nil %v)",
			got.Time, got.Stream, got.Partial, got.Log, got.Log == nil,
			want.Time, want.Stream, want.Partial, want.Log, want.Log == nil)
	}
}

// aliases reports whether sub lies inside b's memory.
func aliases(b, sub []byte) bool {
	if len(sub) == 0 {
		return false
	}
	for i := range b {
		if &b[i] == &sub[0] {
			return len(b)-i >= len(sub)
		}
	}
	return false
}

func TestStreamString(t *testing.T) {
	for s, want := range map[Stream]string{Stdout: "stdout", Stderr: "stderr", 7: "Stream(7)"} {
		if got := s.String(); got != want {
			t.Errorf("Stream(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
}

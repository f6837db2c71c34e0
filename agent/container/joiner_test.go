package container

import (
	"strings"
	"testing"
	"time"
)

// step is one line given to a Joiner and what Add must return.
type step struct {
	in        Line
	rec       string
	truncated bool
	done      bool
}

func runJoiner(t *testing.T, j *Joiner, steps []step) {
	t.Helper()
	for i, s := range steps {
		rec, first, truncated, done := j.Add(s.in)
		if done != s.done || truncated != s.truncated || string(rec) != s.rec {
			t.Fatalf("step %d: Add(%q partial=%v) = %q, truncated %v, done %v; want %q, %v, %v",
				i, s.in.Log, s.in.Partial, rec, truncated, done, s.rec, s.truncated, s.done)
		}
		if done && (string(first.Log) != string(rec) || first.Partial) {
			t.Fatalf("step %d: first = %+v, want Log = rec and Partial false", i, first)
		}
	}
}

func at(sec int) time.Time { return time.Date(2024, 3, 14, 9, 58, sec, 0, time.UTC) }

func piece(sec int, s Stream, partial bool, log string) Line {
	return Line{Time: at(sec), Stream: s, Partial: partial, Log: []byte(log)}
}

func TestJoinerCRIPartials(t *testing.T) {
	// What containerd writes for a 40 KiB line: P, P, F.
	var lines []Line
	var want strings.Builder
	for i, n := range []int{16384, 16384, 8000} {
		s := strings.Repeat(string(rune('a'+i)), n)
		want.WriteString(s)
		b := []byte(at(i).Format(time.RFC3339Nano) + " stdout " + map[bool]string{true: "P", false: "F"}[i < 2] + " " + s + "\n")
		l, err := ParseCRI(b)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	j := NewJoiner(1 << 20)
	for i, l := range lines {
		rec, first, truncated, done := j.Add(l)
		if i < 2 {
			if done || !j.Pending() {
				t.Fatalf("piece %d: done %v, pending %v", i, done, j.Pending())
			}
			continue
		}
		if !done || truncated || string(rec) != want.String() || !first.Time.Equal(at(0)) || first.Stream != Stdout {
			t.Fatalf("final piece: %d bytes, truncated %v, done %v, first time %v", len(rec), truncated, done, first.Time)
		}
	}
	if j.Pending() {
		t.Fatal("pending after the final piece")
	}
}

func TestJoinerStreamsInterleave(t *testing.T) {
	j := NewJoiner(100)
	runJoiner(t, j, []step{
		{piece(0, Stdout, true, "out-1 "), "", false, false},
		{piece(1, Stderr, true, "err-1 "), "", false, false},
		{piece(2, Stderr, false, "err-2"), "err-1 err-2", false, true},
		{piece(3, Stderr, false, "whole"), "whole", false, true},
		{piece(4, Stdout, false, "out-2"), "out-1 out-2", false, true},
	})
	// first is the first piece of the record's own stream.
	j.Add(piece(5, Stdout, true, "a"))
	j.Add(piece(6, Stderr, false, "b"))
	_, first, _, _ := j.Add(piece(7, Stdout, false, "c"))
	if !first.Time.Equal(at(5)) || first.Stream != Stdout {
		t.Errorf("first = %v %s, want %v stdout", first.Time, first.Stream, at(5))
	}
}

func TestJoinerWholeLineAliasesInput(t *testing.T) {
	l := piece(0, Stdout, false, "whole line")
	rec, first, _, done := NewJoiner(100).Add(l)
	if !done || &rec[0] != &l.Log[0] || !first.Time.Equal(l.Time) {
		t.Errorf("a whole line was copied or changed: %q %v", rec, first)
	}
}

func TestJoinerBounds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		max   int
		steps []step
	}{
		{"pieces exceed: rest dropped", 10, []step{
			{piece(0, Stdout, true, "abcdef"), "", false, false},
			{piece(1, Stdout, true, "ghijkl"), "abcdefghij", true, true},
			{piece(2, Stdout, true, "mno"), "", false, false},
			{piece(3, Stdout, false, "pq"), "", false, false},
			{piece(4, Stdout, false, "next"), "next", false, true},
		}},
		{"final piece exceeds: nothing dropped after", 10, []step{
			{piece(0, Stdout, true, "abcdef"), "", false, false},
			{piece(1, Stdout, false, "ghijkl"), "abcdefghij", true, true},
			{piece(2, Stdout, false, "next"), "next", false, true},
		}},
		{"exactly the limit", 10, []step{
			{piece(0, Stdout, true, "abcde"), "", false, false},
			{piece(1, Stdout, true, "fghij"), "", false, false},
			{piece(2, Stdout, false, ""), "abcdefghij", false, true},
		}},
		{"whole line too long", 4, []step{
			{piece(0, Stdout, false, "abcdefgh"), "abcd", true, true},
			{piece(1, Stdout, false, "ok"), "ok", false, true},
		}},
		{"dropping one stream leaves the other", 5, []step{
			{piece(0, Stdout, true, "abcdefg"), "abcde", true, true},
			{piece(1, Stderr, false, "err"), "err", false, true},
			{piece(2, Stdout, false, "rest"), "", false, false},
		}},
		// A character is never split: é is 2 bytes, 😀 4.
		{"cut before a character", 5, []step{
			{piece(0, Stdout, true, "abcd"), "", false, false},
			{piece(1, Stdout, true, "éfg"), "abcd", true, true},
		}},
		{"cut inside a 4-byte character", 6, []step{
			{piece(0, Stdout, false, "abcd😀"), "abcd", true, true},
			{piece(1, Stdout, false, "ab😀cd"), "ab😀", true, true},
		}},
		{"invalid UTF-8 cut at the limit", 3, []step{
			{piece(0, Stdout, false, "ab\x80\x80\x80"), "ab\x80", true, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { runJoiner(t, NewJoiner(tc.max), tc.steps) })
	}
}

func TestJoinerFlush(t *testing.T) {
	j := NewJoiner(100)
	if _, _, ok := j.Flush(); ok {
		t.Fatal("Flush of an empty Joiner returned a record")
	}
	j.Add(piece(2, Stdout, true, "out"))
	j.Add(piece(1, Stderr, true, "err"))
	j.Add(piece(3, Stdout, true, "+"))
	for _, want := range []struct {
		rec    string
		stream Stream
	}{{"err", Stderr}, {"out+", Stdout}} {
		rec, first, ok := j.Flush()
		if !ok || string(rec) != want.rec || first.Stream != want.stream || string(first.Log) != want.rec {
			t.Fatalf("Flush = %q, %v, %v; want %q on %s", rec, first, ok, want.rec, want.stream)
		}
	}
	if _, _, ok := j.Flush(); ok || j.Pending() {
		t.Fatal("still pending after flushing both streams")
	}
	// What follows a flush is a new record.
	runJoiner(t, j, []step{{piece(4, Stdout, false, "tail"), "tail", false, true}})
}

func TestJoinerReleasesLargeBuffers(t *testing.T) {
	j := NewJoiner(1 << 20)
	big := strings.Repeat("x", 200<<10)
	j.Add(piece(0, Stdout, true, big))
	rec, _, _, _ := j.Add(piece(1, Stdout, false, "!"))
	j.Add(piece(2, Stdout, true, "small"))
	if cap(j.streams[Stdout].buf) >= 200<<10 {
		t.Errorf("the Joiner kept a %d-byte buffer", cap(j.streams[Stdout].buf))
	}
	if len(rec) != len(big)+1 || rec[0] != 'x' {
		t.Error("the previous record changed")
	}
}

func TestNewJoinerPanicsOnZeroLimit(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewJoiner(0) did not panic")
		}
	}()
	NewJoiner(0)
}

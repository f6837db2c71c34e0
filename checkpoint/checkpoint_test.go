package checkpoint_test

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/kinlog/kinlog/checkpoint"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		seq   string
		valid bool
	}{
		{"0", true},
		{"1", true},
		{"49590338271490256608559692538361571095921575989136588898", true},
		{strings.Repeat("9", 128), true},
		{checkpoint.TrimHorizon, true},
		{checkpoint.Latest, true},
		{checkpoint.AtTimestamp, true},
		{checkpoint.ShardEnd, true},
		{"", false},
		{"00", false},
		{"0123", false},
		{strings.Repeat("9", 129), false},
		{"-1", false},
		{"+1", false},
		{"1.0", false},
		{"1e3", false},
		{" 1", false},
		{"1 ", false},
		{"abc", false},
		{"trim_horizon", false},
		{"SHARD_END ", false},
		{"١٢٣", false}, // Arabic-Indic digits
	}
	for _, tc := range tests {
		t.Run(tc.seq, func(t *testing.T) {
			err := checkpoint.Checkpoint{Sequence: tc.seq, SubSequence: 7}.Validate()
			if tc.valid && err != nil {
				t.Fatalf("Validate(%q) = %v, want nil", tc.seq, err)
			}
			if !tc.valid && !errors.Is(err, checkpoint.ErrInvalidSequence) {
				t.Fatalf("Validate(%q) = %v, want ErrInvalidSequence", tc.seq, err)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	cp := func(seq string, sub uint64) checkpoint.Checkpoint {
		return checkpoint.Checkpoint{Sequence: seq, SubSequence: sub}
	}
	const (
		s1 = "49590338271490256608559692538361571095921575989136588801"
		s2 = "49590338271490256608559692538361571095921575989136588802"
	)
	tests := []struct {
		name string
		a, b checkpoint.Checkpoint
		want int
	}{
		{"equal", cp(s1, 0), cp(s1, 0), 0},
		{"sequence below", cp(s1, 9), cp(s2, 0), -1},
		{"sequence above", cp(s2, 0), cp(s1, 9), 1},
		{"sub-sequence below", cp(s1, 1), cp(s1, 2), -1},
		{"sub-sequence above", cp(s1, 3), cp(s1, 2), 1},
		{"shorter is smaller", cp("99", 0), cp("100", 0), -1},
		{"zero", cp("0", 0), cp("1", 0), -1},
		{"TRIM_HORIZON before a sequence", cp(checkpoint.TrimHorizon, 0), cp("0", 0), -1},
		{"LATEST before a sequence", cp(checkpoint.Latest, 0), cp(s1, 0), -1},
		{"AT_TIMESTAMP before a sequence", cp(checkpoint.AtTimestamp, 0), cp(s1, 0), -1},
		{"unset before a sequence", cp("", 0), cp("0", 0), -1},
		{"starting sentinels equal", cp(checkpoint.TrimHorizon, 0), cp(checkpoint.Latest, 0), 0},
		{"unset equals TRIM_HORIZON", cp("", 0), cp(checkpoint.TrimHorizon, 0), 0},
		{"SHARD_END after a sequence", cp(checkpoint.ShardEnd, 0), cp(strings.Repeat("9", 128), 99), 1},
		{"SHARD_END after TRIM_HORIZON", cp(checkpoint.ShardEnd, 0), cp(checkpoint.TrimHorizon, 0), 1},
		{"SHARD_END equal", cp(checkpoint.ShardEnd, 0), cp(checkpoint.ShardEnd, 0), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Compare(tc.b); got != tc.want {
				t.Fatalf("%s.Compare(%s) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := tc.b.Compare(tc.a); got != -tc.want {
				t.Fatalf("%s.Compare(%s) = %d, want %d", tc.b, tc.a, got, -tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		c    checkpoint.Checkpoint
		want string
	}{
		{checkpoint.Checkpoint{Sequence: "123"}, "123"},
		{checkpoint.Checkpoint{Sequence: "123", SubSequence: 4}, "123/4"},
		{checkpoint.Checkpoint{Sequence: checkpoint.ShardEnd}, "SHARD_END"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	if !(checkpoint.Checkpoint{}).IsZero() || (checkpoint.Checkpoint{SubSequence: 1}).IsZero() {
		t.Error("IsZero wrong")
	}
}

// reference orders valid checkpoints with math/big, independently of Compare.
func reference(a, b checkpoint.Checkpoint) int {
	rank := func(c checkpoint.Checkpoint) int {
		switch c.Sequence {
		case "", checkpoint.TrimHorizon, checkpoint.Latest, checkpoint.AtTimestamp:
			return 0
		case checkpoint.ShardEnd:
			return 2
		}
		return 1
	}
	ra, rb := rank(a), rank(b)
	switch {
	case ra < rb:
		return -1
	case ra > rb:
		return 1
	case ra != 1:
		return 0
	}
	x, _ := new(big.Int).SetString(a.Sequence, 10)
	y, _ := new(big.Int).SetString(b.Sequence, 10)
	if c := x.Cmp(y); c != 0 {
		return c
	}
	switch {
	case a.SubSequence < b.SubSequence:
		return -1
	case a.SubSequence > b.SubSequence:
		return 1
	}
	return 0
}

func FuzzCompare(f *testing.F) {
	f.Add("1", uint64(0), "2", uint64(0))
	f.Add("49590338271490256608559692538361571095921575989136588801", uint64(3), "49590338271490256608559692538361571095921575989136588801", uint64(2))
	f.Add(checkpoint.TrimHorizon, uint64(0), "0", uint64(0))
	f.Add(checkpoint.ShardEnd, uint64(0), "999", uint64(1))
	f.Add("99", uint64(0), "100", uint64(0))
	f.Add("00", uint64(0), "0", uint64(0))
	f.Fuzz(func(t *testing.T, sa string, suba uint64, sb string, subb uint64) {
		a := checkpoint.Checkpoint{Sequence: sa, SubSequence: suba}
		b := checkpoint.Checkpoint{Sequence: sb, SubSequence: subb}
		if a.Validate() != nil || b.Validate() != nil {
			return
		}
		ab, ba := a.Compare(b), b.Compare(a)
		if ab != -ba {
			t.Fatalf("not antisymmetric: %s.Compare(%s) = %d, reverse = %d", a, b, ab, ba)
		}
		if ab < -1 || ab > 1 {
			t.Fatalf("Compare returned %d", ab)
		}
		if a.Compare(a) != 0 {
			t.Fatalf("%s.Compare(itself) = %d", a, a.Compare(a))
		}
		if want := reference(a, b); ab != want {
			t.Fatalf("%s.Compare(%s) = %d, reference (math/big) says %d", a, b, ab, want)
		}
	})
}

func TestLeaseEqual(t *testing.T) {
	p1, p2 := checkpoint.Checkpoint{Sequence: "5"}, checkpoint.Checkpoint{Sequence: "5"}
	a := checkpoint.Lease{Key: "s", Owner: "w", Counter: 3, Pending: &p1, ParentShardIDs: []string{"a", "b"}}
	b := checkpoint.Lease{Key: "s", Owner: "w", Counter: 3, Pending: &p2, ParentShardIDs: []string{"b", "a"}}
	if !a.Equal(b) {
		t.Fatal("leases differing only in set order and pending pointer are not Equal")
	}
	for _, mod := range []func(*checkpoint.Lease){
		func(l *checkpoint.Lease) { l.Counter++ },
		func(l *checkpoint.Lease) { l.Pending = nil },
		func(l *checkpoint.Lease) { l.ParentShardIDs = []string{"a"} },
		func(l *checkpoint.Lease) { l.Owner = "" },
		func(l *checkpoint.Lease) { l.Checkpoint.SubSequence = 1 },
	} {
		c := b
		mod(&c)
		if a.Equal(c) {
			t.Errorf("Equal ignores a difference: %+v vs %+v", a, c)
		}
	}
}

func TestParseIsStringsInverse(t *testing.T) {
	for _, c := range []checkpoint.Checkpoint{{Sequence: "49590338271490256608559692538361571095921575989136588898"}, {Sequence: "1", SubSequence: 7}, {Sequence: "12", SubSequence: checkpoint.WholeRecord}} {
		got, err := checkpoint.Parse(c.String())
		if err != nil || got != c {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	for _, bad := range []string{"", "x", "1/x", "01", "1/-1"} {
		if _, err := checkpoint.Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

package dedup

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kinlog/kinlog/internal/kpl"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func id(origin string, seq, floor uint64) kpl.Identity {
	return kpl.Identity{Origin: origin, Seq: seq, Floor: floor}
}

func TestObserveResendsAndFloor(t *testing.T) {
	s := New(Limits{})
	steps := []struct {
		id  kpl.Identity
		dup bool
	}{
		{id("p", 0, 0), false},
		{id("p", 1, 0), false},
		{id("p", 3, 0), false}, // 2 went to another shard, or is late
		{id("p", 1, 0), true},  // re-sent
		{id("p", 2, 0), false}, // late, first copy
		{id("q", 1, 0), false}, // another origin, same number
		{id("p", 2, 0), true},
		{id("p", 5, 4), false}, // floor 4: 0..3 acknowledged
		{id("p", 3, 0), true},  // below the floor: seen, and forgotten
		{id("p", 4, 0), false}, // at the floor, never seen
		{id("p", 4, 4), true},
		{kpl.Identity{}, false}, // no identity
		{kpl.Identity{}, false},
	}
	for i, st := range steps {
		if got := s.Observe(st.id, t0); got != st.dup {
			t.Fatalf("step %d %+v: dup=%v, want %v", i, st.id, got, st.dup)
		}
	}
	// p keeps [4,6) above its floor: one interval; q one.
	if s.Origins() != 2 || s.Intervals() != 2 {
		t.Fatalf("origins %d intervals %d, want 2 and 2", s.Origins(), s.Intervals())
	}
}

func TestSpans(t *testing.T) {
	s := New(Limits{})
	line := func(off, n uint64) kpl.Identity { return kpl.Identity{Origin: "f", Seq: off, Span: n} }
	if s.Observe(line(0, 10), t0) || s.Observe(line(10, 5), t0) || s.Observe(line(30, 5), t0) {
		t.Fatal("first copies called duplicates")
	}
	if !s.Observe(line(10, 5), t0) || !s.Observe(line(0, 10), t0) {
		t.Fatal("re-read lines not called duplicates")
	}
	if s.Observe(line(15, 15), t0) { // fills the gap
		t.Fatal("gap line called a duplicate")
	}
	if s.Intervals() != 1 {
		t.Fatalf("%d intervals after filling the gap, want 1", s.Intervals())
	}
}

// model is the obvious, unbounded implementation: every (origin, seq) seen, and a record
// below its origin's floor is a copy of one acknowledged earlier.
type model struct {
	seen  map[kpl.Identity]bool
	floor map[string]uint64
}

// TestMatchesModel drives a state with random producers whose floors are honest — each
// record's floor is at most the lowest sequence number not yet delivered once — re-sending
// at random, across encode/decode round trips at random batch ends, and checks every
// decision of the interval sets against the model's plain sets.
func TestMatchesModel(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		s := New(Limits{})
		m := model{seen: map[kpl.Identity]bool{}, floor: map[string]uint64{}}
		type prod struct {
			next      uint64
			delivered map[uint64]bool
			floor     uint64
		}
		prods := map[string]*prod{}
		for i := range 5 {
			prods[fmt.Sprintf("p%d", i)] = &prod{delivered: map[uint64]bool{}}
		}
		names := []string{"p0", "p1", "p2", "p3", "p4"}
		for step := range 5000 {
			name := names[rng.IntN(len(names))]
			p := prods[name]
			var seq uint64
			if p.next > 0 && rng.IntN(4) == 0 {
				// A re-send of something recent (possibly delivered already).
				seq = p.next - 1 - uint64(rng.IntN(int(min(p.next, 50))))
			} else {
				seq = p.next
				p.next++
				if rng.IntN(3) == 0 {
					p.delivered[seq] = true // delivered to another shard
					continue
				}
			}
			p.delivered[seq] = true
			for p.delivered[p.floor] {
				p.floor++
			}
			// Honest floor: every number below it was delivered (somewhere) before.
			floor := p.floor
			if rng.IntN(2) == 0 {
				floor = floor / 2
			}
			rid := kpl.Identity{Origin: name, Seq: seq, Floor: floor}
			key := kpl.Identity{Origin: name, Seq: seq}
			got := s.Observe(rid, t0.Add(time.Duration(step)*time.Millisecond))
			wantDup := m.seen[key] || seq < m.floor[name]
			if got != wantDup {
				t.Fatalf("seed %d step %d %+v: dup=%v, model %v", seed, step, rid, got, wantDup)
			}
			m.seen[key] = true
			m.floor[name] = max(m.floor[name], floor)
			if rng.IntN(100) == 0 {
				enc := s.Encode()
				d, err := Decode(enc, Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(d.Encode(), enc) {
					t.Fatal("decode/encode is not the identity")
				}
				s = d
			}
		}
	}
}

func TestEncodingIsDeterministic(t *testing.T) {
	build := func(order []int) []byte {
		s := New(Limits{})
		for _, i := range order {
			s.Observe(id(fmt.Sprintf("o%d", i%7), uint64(i), 0), t0)
		}
		return s.Encode()
	}
	a := build([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14})
	b := build([]int{14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1})
	if !bytes.Equal(a, b) {
		t.Fatal("the same contents encode differently")
	}
	for _, bad := range [][]byte{{2}, {1, 5}, {1, 0, 1, 3, 'a'}, append(append([]byte{}, a...), 0)} {
		if _, err := Decode(bad, Limits{}); err == nil {
			t.Fatalf("Decode(% x) accepted corrupt input", bad)
		}
	}
}

func TestMerge(t *testing.T) {
	a, b := New(Limits{}), New(Limits{})
	a.Observe(id("p", 10, 5), t0)
	a.Observe(id("p", 12, 5), t0)
	b.Observe(id("p", 11, 8), t0)
	b.Observe(id("q", 1, 0), t0)
	a.Merge(b)
	for _, c := range []struct {
		id  kpl.Identity
		dup bool
	}{{id("p", 7, 0), true}, {id("p", 10, 0), true}, {id("p", 11, 0), true}, {id("p", 12, 0), true}, {id("p", 13, 0), false}, {id("q", 1, 0), true}, {id("q", 2, 0), false}} {
		if got := a.Clone().Observe(c.id, t0); got != c.dup {
			t.Errorf("after merge %+v: dup=%v, want %v", c.id, got, c.dup)
		}
	}
}

// TestLimitsOnlyForget checks each bound: what it forgets is archived again (a duplicate
// passes), and nothing not seen is ever called a duplicate.
func TestLimitsOnlyForget(t *testing.T) {
	t.Run("horizon", func(t *testing.T) {
		s := New(Limits{Horizon: time.Minute})
		s.Observe(id("old", 1, 0), t0)
		s.Observe(id("new", 1, 0), t0.Add(2*time.Minute))
		s.Prune()
		if s.Origins() != 1 || s.Evicted().Horizon != 1 {
			t.Fatalf("origins %d, evicted %+v", s.Origins(), s.Evicted())
		}
		if s.Observe(id("old", 1, 0), t0.Add(2*time.Minute)) {
			t.Fatal("a forgotten origin's re-send was dropped; it must be archived (at-least-once)")
		}
	})
	t.Run("origins", func(t *testing.T) {
		s := New(Limits{MaxOrigins: 3})
		for i := range 5 {
			s.Observe(id(fmt.Sprint(i), 1, 0), t0.Add(time.Duration(i)*time.Second))
		}
		s.Prune()
		if s.Origins() != 3 || s.Evicted().Origins != 2 {
			t.Fatalf("origins %d, evicted %+v", s.Origins(), s.Evicted())
		}
		if s.Observe(id("0", 1, 0), t0) || !s.Observe(id("4", 1, 0), t0) {
			t.Fatal("the least recently seen origins were not the ones forgotten")
		}
	})
	t.Run("intervals", func(t *testing.T) {
		s := New(Limits{MaxIntervals: 10})
		for i := range 40 {
			s.Observe(id("sparse", uint64(2*i), 0), t0) // every other number: one interval each
		}
		s.Prune()
		if s.Intervals() != 10 || s.Evicted().Intervals != 30 {
			t.Fatalf("intervals %d, evicted %+v", s.Intervals(), s.Evicted())
		}
		if s.Observe(id("sparse", 0, 0), t0) {
			t.Fatal("a forgotten low interval's re-send was dropped")
		}
		if !s.Observe(id("sparse", 78, 0), t0) {
			t.Fatal("the highest intervals were forgotten instead of the lowest")
		}
	})
}

// BenchmarkObserve is the sink's per-record cost: 100 producers' records, in runs of 50
// per aggregate, each producer numbering its records over 4 shards (this one sees a
// quarter), floors trailing by 500.
func BenchmarkObserve(b *testing.B) {
	s := New(Limits{})
	var next [100]uint64
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("%032x", i*7919)
	}
	b.ReportAllocs()
	p := 0
	for i := range b.N {
		if i%50 == 0 {
			p = (p + 37) % 100
		}
		n := next[p]
		next[p] += 4
		s.Observe(kpl.Identity{Origin: names[p], Seq: n, Floor: n - min(n, 500)}, t0)
		if i%5000 == 4999 {
			s.Prune()
		}
	}
}

// TestStateSize reports the encoded size of one shard's state after 1M records from 100
// producers over 4 shards (this shard gets a quarter of each producer's numbers), with
// floors trailing each producer's newest number by 200 records (about 100 ms in flight at
// 2,000 records/s) and by 2,000 (a slow stream): the seen sets hold what is in flight.
func TestStateSize(t *testing.T) {
	if testing.Short() {
		t.Skip("1M records")
	}
	for _, lag := range []uint64{200, 2000} {
		s := New(Limits{})
		rng := rand.New(rand.NewPCG(1, 2))
		var next [100]uint64
		for i := range 1_000_000 {
			p := rng.IntN(100)
			n := next[p]
			next[p]++
			if rng.IntN(4) != 0 {
				continue // another shard's
			}
			s.Observe(kpl.Identity{Origin: fmt.Sprintf("%032x", p), Seq: n, Floor: n - min(n, lag)}, t0.Add(time.Duration(i)*time.Microsecond))
			if i%10000 == 0 {
				s.Prune()
			}
		}
		s.Prune()
		enc := s.Encode()
		t.Logf("floors %d behind: state after 1M records from 100 producers: %d origins, %d intervals (evicted %d), %d bytes encoded",
			lag, s.Origins(), s.Intervals(), s.Evicted().Intervals, len(enc))
		if len(enc) > 350_000 {
			t.Fatalf("state of %d bytes would not fit a DynamoDB item", len(enc))
		}
	}
}

// TestBitmapEncoding: a sparse seen set (a shard sees every fourth number) is encoded as a
// bitmap, a dense one as spans; both decode to the same decisions.
func TestBitmapEncoding(t *testing.T) {
	sparse, dense := New(Limits{}), New(Limits{})
	for i := range uint64(4000) {
		sparse.Observe(id("p", 1000+4*i, 1000), t0)
		dense.Observe(id("p", 1000+i, 1000), t0)
	}
	for _, c := range []struct {
		name string
		s    *State
		max  int
	}{{"sparse", sparse, 4000/2 + 64}, {"dense", dense, 64}} {
		enc := c.s.Encode()
		if len(enc) != c.s.EncodedSize() || len(enc) > c.max {
			t.Fatalf("%s: %d bytes encoded (EncodedSize %d), want at most %d", c.name, len(enc), c.s.EncodedSize(), c.max)
		}
		d, err := Decode(enc, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(d.Encode(), enc) || d.Intervals() != c.s.Intervals() {
			t.Fatalf("%s: round trip changed the state", c.name)
		}
		for x := uint64(990); x < 1000+4*4000+10; x++ {
			if a, b := c.s.Clone().Observe(id("p", x, 0), t0), d.Clone().Observe(id("p", x, 0), t0); a != b {
				t.Fatalf("%s: %d decided %v before encoding, %v after", c.name, x, a, b)
			}
		}
	}
}

// TestMaxBytes: a state over its byte bound forgets its lowest intervals until it fits.
func TestMaxBytes(t *testing.T) {
	s := New(Limits{MaxBytes: 600})
	for i := range uint64(20000) {
		s.Observe(id("p", 7*i, 0), t0) // every seventh: neither encoding is small
	}
	s.Prune()
	if n := len(s.Encode()); n > 600 || s.Evicted().Intervals == 0 {
		t.Fatalf("%d bytes after pruning to 600 (evicted %d)", n, s.Evicted().Intervals)
	}
	if !s.Observe(id("p", 7*19999, 0), t0) || s.Observe(id("p", 0, 0), t0) {
		t.Fatal("the newest intervals should stay, the oldest go")
	}
}

package checkpointtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/kinlog/kinlog/checkpoint"
)

// Sequence numbers shaped like Kinesis's (56 decimal digits), in increasing order.
const (
	seq1 = "49590338271490256608559692538361571095921575989136588801"
	seq2 = "49590338271490256608559692538361571095921575989136588802"
	seq3 = "49590338271490256608559692540925702759324208523137515618"
	// seqShort is shorter, so it orders before every 56-digit number.
	seqShort = "999999"
)

// Run runs the acceptance suite against the stores newStore returns. newStore is called once
// per subtest and must return an empty store whose table is ready (or will be made ready by
// EnsureTable, which the suite calls first); it should register its own cleanup.
func Run(t *testing.T, newStore func(t *testing.T) checkpoint.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s checkpoint.Store)
	}{
		{"EnsureTableIdempotent", testEnsureTableIdempotent},
		{"CreateRoundTrip", testCreateRoundTrip},
		{"CreateIfMissingIdempotent", testCreateIdempotent},
		{"ZeroCheckpoint", testZeroCheckpoint},
		{"NotFound", testNotFound},
		{"ListLeases", testListLeases},
		{"TakeRace", testTakeRace},
		{"TakeStaleObservation", testTakeStale},
		{"ZombieFenced", testZombieFenced},
		{"RestartedOwnerFencedByCounter", testSameOwnerStaleCounter},
		{"CountersOnlyGrow", testCountersGrow},
		{"OwnerSwitches", testOwnerSwitches},
		{"RegressionRefused", testRegression},
		{"ResetMovesBack", testReset},
		{"PrepareThenCheckpoint", testPrepareThenCheckpoint},
		{"PrepareRegression", testPrepareRegression},
		{"SubSequenceRoundTrip", testSubSequence},
		{"ShardEnd", testShardEnd},
		{"Release", testRelease},
		{"Delete", testDelete},
		{"InvalidSequence", testInvalidSequence},
		{"ReturnedLeaseIsStored", testReturnedIsStored},
		{"CopiesNotShared", testCopies},
		{"EmptyOwnerRefused", testEmptyOwner},
		{"RepeatIsIdempotent", testRepeat},
		{"StateWithCheckpoint", testState},
		{"ChildShards", testChildShards},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if err := s.EnsureTable(t.Context()); err != nil {
				t.Fatalf("EnsureTable: %v", err)
			}
			tc.fn(t, s)
		})
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func cp(seq string, sub uint64) checkpoint.Checkpoint {
	return checkpoint.Checkpoint{Sequence: seq, SubSequence: sub}
}

// create creates a lease and fails the test unless it was created.
func create(t *testing.T, s checkpoint.Store, l checkpoint.Lease) checkpoint.Lease {
	t.Helper()
	created, err := s.CreateLease(ctx(t), l)
	if err != nil {
		t.Fatalf("CreateLease(%s): %v", l.Key, err)
	}
	if !created {
		t.Fatalf("CreateLease(%s): created = false for a new key", l.Key)
	}
	return get(t, s, l.Key)
}

func get(t *testing.T, s checkpoint.Store, key string) checkpoint.Lease {
	t.Helper()
	l, err := s.GetLease(ctx(t), key)
	if err != nil {
		t.Fatalf("GetLease(%s): %v", key, err)
	}
	return l
}

func take(t *testing.T, s checkpoint.Store, observed checkpoint.Lease, owner string) checkpoint.Lease {
	t.Helper()
	l, err := s.TakeLease(ctx(t), observed, owner)
	if err != nil {
		t.Fatalf("TakeLease(%s, %s): %v", observed.Key, owner, err)
	}
	return l
}

// newHeld creates lease key at TRIM_HORIZON and takes it for owner.
func newHeld(t *testing.T, s checkpoint.Store, key, owner string) checkpoint.Lease {
	t.Helper()
	l := create(t, s, checkpoint.Lease{Key: key, Checkpoint: cp(checkpoint.TrimHorizon, 0)})
	return take(t, s, l, owner)
}

func mustCheckpoint(t *testing.T, s checkpoint.Store, held checkpoint.Lease, c checkpoint.Checkpoint) checkpoint.Lease {
	t.Helper()
	l, err := s.Checkpoint(ctx(t), held, c)
	if err != nil {
		t.Fatalf("Checkpoint(%s, %s): %v", held.Key, c, err)
	}
	return l
}

func wantErr(t *testing.T, op string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", op, err, want)
	}
}

func show(l checkpoint.Lease) string {
	p := "nil"
	if l.Pending != nil {
		p = l.Pending.String()
	}
	return fmt.Sprintf("{Key:%s Owner:%q Counter:%d Checkpoint:%q Pending:%s Switches:%d Parents:%v Children:%v Hash:[%s,%s]}",
		l.Key, l.Owner, l.Counter, l.Checkpoint, p, l.OwnerSwitchesSinceCheckpoint,
		l.ParentShardIDs, l.ChildShardIDs, l.StartingHashKey, l.EndingHashKey)
}

func wantLease(t *testing.T, what string, got, want checkpoint.Lease) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s:\n got  %s\n want %s", what, show(got), show(want))
	}
}

func testEnsureTableIdempotent(t *testing.T, s checkpoint.Store) {
	if err := s.EnsureTable(ctx(t)); err != nil {
		t.Fatalf("second EnsureTable: %v", err)
	}
	ls, err := s.ListLeases(ctx(t))
	if err != nil {
		t.Fatalf("ListLeases: %v", err)
	}
	if len(ls) != 0 {
		t.Fatalf("new store lists %d leases, want 0", len(ls))
	}
}

func testCreateRoundTrip(t *testing.T, s checkpoint.Store) {
	in := checkpoint.Lease{
		Key: "shardId-000000000002",
		// Fields CreateLease must ignore:
		Owner: "someone", Counter: 41, Pending: &checkpoint.Checkpoint{Sequence: seq2},
		OwnerSwitchesSinceCheckpoint: 7,
		// Fields it stores:
		Checkpoint:      cp(seq1, 3),
		ParentShardIDs:  []string{"shardId-000000000000", "shardId-000000000001"},
		ChildShardIDs:   []string{"shardId-000000000005"},
		StartingHashKey: "0",
		EndingHashKey:   "340282366920938463463374607431768211455",
	}
	got := create(t, s, in)
	want := checkpoint.Lease{
		Key:             in.Key,
		Checkpoint:      in.Checkpoint,
		ParentShardIDs:  in.ParentShardIDs,
		ChildShardIDs:   in.ChildShardIDs,
		StartingHashKey: in.StartingHashKey,
		EndingHashKey:   in.EndingHashKey,
	}
	wantLease(t, "created lease", got, want)
}

func testCreateIdempotent(t *testing.T, s checkpoint.Store) {
	l := create(t, s, checkpoint.Lease{Key: "s", Checkpoint: cp(checkpoint.TrimHorizon, 0), ParentShardIDs: []string{"p"}})
	l = take(t, s, l, "w1")
	l = mustCheckpoint(t, s, l, cp(seq1, 1))
	before := get(t, s, "s")
	created, err := s.CreateLease(ctx(t), checkpoint.Lease{Key: "s", Checkpoint: cp(checkpoint.Latest, 0), ParentShardIDs: []string{"q"}})
	if err != nil {
		t.Fatalf("second CreateLease: %v", err)
	}
	if created {
		t.Fatal("second CreateLease: created = true, want false")
	}
	wantLease(t, "lease after second CreateLease", get(t, s, "s"), before)
	// The holder still holds it: nothing changed.
	if _, err := s.RenewLease(ctx(t), l); err != nil {
		t.Fatalf("RenewLease after second CreateLease: %v", err)
	}
}

func testZeroCheckpoint(t *testing.T, s checkpoint.Store) {
	l := create(t, s, checkpoint.Lease{Key: "z"})
	if !l.Checkpoint.IsZero() {
		t.Fatalf("Checkpoint = %q, want zero", l.Checkpoint)
	}
	l = take(t, s, l, "w")
	l = mustCheckpoint(t, s, l, cp(seq1, 0))
	if l.Checkpoint != cp(seq1, 0) {
		t.Fatalf("Checkpoint = %q, want %s", l.Checkpoint, seq1)
	}
}

func testNotFound(t *testing.T, s checkpoint.Store) {
	_, err := s.GetLease(ctx(t), "missing")
	wantErr(t, "GetLease(missing)", err, checkpoint.ErrNotFound)
	_, err = s.TakeLease(ctx(t), checkpoint.Lease{Key: "missing"}, "w")
	wantErr(t, "TakeLease(missing)", err, checkpoint.ErrNotFound)
	err = s.ResetCheckpoint(ctx(t), "missing", cp(seq1, 0))
	wantErr(t, "ResetCheckpoint(missing)", err, checkpoint.ErrNotFound)
	ghost := checkpoint.Lease{Key: "missing", Owner: "w", Counter: 1}
	_, err = s.RenewLease(ctx(t), ghost)
	wantErr(t, "RenewLease(missing)", err, checkpoint.ErrLeaseLost)
	_, err = s.Checkpoint(ctx(t), ghost, cp(seq1, 0))
	wantErr(t, "Checkpoint(missing)", err, checkpoint.ErrLeaseLost)
	_, err = s.PrepareCheckpoint(ctx(t), ghost, cp(seq1, 0))
	wantErr(t, "PrepareCheckpoint(missing)", err, checkpoint.ErrLeaseLost)
	err = s.ReleaseLease(ctx(t), ghost)
	wantErr(t, "ReleaseLease(missing)", err, checkpoint.ErrLeaseLost)
	// None of these created the lease.
	_, err = s.GetLease(ctx(t), "missing")
	wantErr(t, "GetLease(missing) afterwards", err, checkpoint.ErrNotFound)
}

func testListLeases(t *testing.T, s checkpoint.Store) {
	want := map[string]checkpoint.Lease{}
	for i := range 5 {
		key := fmt.Sprintf("shardId-%012d", i)
		l := create(t, s, checkpoint.Lease{Key: key, Checkpoint: cp(checkpoint.TrimHorizon, 0), ParentShardIDs: []string{"parent"}})
		if i%2 == 0 {
			l = take(t, s, l, "w")
			l = mustCheckpoint(t, s, l, cp(seq1, uint64(i)))
		}
		want[key] = l
	}
	got, err := s.ListLeases(ctx(t))
	if err != nil {
		t.Fatalf("ListLeases: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListLeases returned %d leases, want %d", len(got), len(want))
	}
	for _, l := range got {
		w, ok := want[l.Key]
		if !ok {
			t.Fatalf("ListLeases returned unknown lease %s", l.Key)
		}
		wantLease(t, "listed lease "+l.Key, l, w)
	}
}

func testTakeRace(t *testing.T, s checkpoint.Store) {
	const n = 8
	observed := create(t, s, checkpoint.Lease{Key: "contended", Checkpoint: cp(checkpoint.TrimHorizon, 0)})
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]error, n)
		leases  = make([]checkpoint.Lease, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			leases[i], results[i] = s.TakeLease(ctx(t), observed, fmt.Sprintf("worker-%d", i))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("workers %d and %d both took the lease", winner, i)
			}
			winner = i
		case errors.Is(err, checkpoint.ErrConflict):
		default:
			t.Fatalf("worker %d: err = %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no worker took the lease")
	}
	got := get(t, s, "contended")
	if want := fmt.Sprintf("worker-%d", winner); got.Owner != want || got.Counter != observed.Counter+1 {
		t.Fatalf("stored lease %s, want owner %s counter %d", show(got), want, observed.Counter+1)
	}
	wantLease(t, "winner's returned lease", leases[winner], got)
}

func testTakeStale(t *testing.T, s checkpoint.Store) {
	observed := create(t, s, checkpoint.Lease{Key: "k", Checkpoint: cp(checkpoint.TrimHorizon, 0)})
	a := take(t, s, observed, "a")
	if _, err := s.RenewLease(ctx(t), a); err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	// b observed the lease when it was unowned; it has moved since.
	_, err := s.TakeLease(ctx(t), observed, "b")
	wantErr(t, "TakeLease with a stale observation (owner changed)", err, checkpoint.ErrConflict)
	// b observed a's take but not the renewal: same owner, old counter.
	_, err = s.TakeLease(ctx(t), a, "b")
	wantErr(t, "TakeLease with a stale observation (counter changed)", err, checkpoint.ErrConflict)
	if got := get(t, s, "k"); got.Owner != "a" || got.Counter != a.Counter+1 {
		t.Fatalf("lease after refused takes: %s", show(got))
	}
}

func testZombieFenced(t *testing.T, s checkpoint.Store) {
	zombie := newHeld(t, s, "k", "zombie")
	zombie = mustCheckpoint(t, s, zombie, cp(seq1, 0))
	// The zombie pauses; another worker steals the lease and checkpoints further.
	observed := get(t, s, "k")
	thief := take(t, s, observed, "thief")
	thief = mustCheckpoint(t, s, thief, cp(seq2, 4))
	thief, err := s.PrepareCheckpoint(ctx(t), thief, cp(seq3, 0))
	if err != nil {
		t.Fatalf("thief PrepareCheckpoint: %v", err)
	}
	before := get(t, s, "k")

	// The zombie wakes up. Every holder write fails, including one that would move the
	// checkpoint backwards and one that would move it forwards.
	_, err = s.Checkpoint(ctx(t), zombie, cp(seq1, 9))
	wantErr(t, "zombie Checkpoint (backwards)", err, checkpoint.ErrLeaseLost)
	_, err = s.Checkpoint(ctx(t), zombie, cp(seq3, 9))
	wantErr(t, "zombie Checkpoint (forwards)", err, checkpoint.ErrLeaseLost)
	_, err = s.Checkpoint(ctx(t), zombie, cp(checkpoint.ShardEnd, 0))
	wantErr(t, "zombie Checkpoint (SHARD_END)", err, checkpoint.ErrLeaseLost)
	_, err = s.RenewLease(ctx(t), zombie)
	wantErr(t, "zombie RenewLease", err, checkpoint.ErrLeaseLost)
	_, err = s.PrepareCheckpoint(ctx(t), zombie, cp(seq2, 0))
	wantErr(t, "zombie PrepareCheckpoint", err, checkpoint.ErrLeaseLost)
	err = s.ReleaseLease(ctx(t), zombie)
	wantErr(t, "zombie ReleaseLease", err, checkpoint.ErrLeaseLost)
	// A zombie that lies about the counter (claims the thief's) is still refused by owner.
	liar := thief
	liar.Owner = "zombie"
	_, err = s.Checkpoint(ctx(t), liar, cp(seq3, 9))
	wantErr(t, "zombie Checkpoint with the thief's counter", err, checkpoint.ErrLeaseLost)

	wantLease(t, "thief's lease after the zombie's attempts", get(t, s, "k"), before)
	// And the thief carries on.
	thief = mustCheckpoint(t, s, thief, cp(seq3, 0))
	if thief.Owner != "thief" || thief.Pending != nil {
		t.Fatalf("thief's lease after its checkpoint: %s", show(thief))
	}
}

func testCountersGrow(t *testing.T, s checkpoint.Store) {
	l := create(t, s, checkpoint.Lease{Key: "k", Checkpoint: cp(checkpoint.TrimHorizon, 0)})
	if l.Counter != 0 {
		t.Fatalf("new lease Counter = %d, want 0", l.Counter)
	}
	last := l.Counter
	step := func(what string, l checkpoint.Lease) checkpoint.Lease {
		t.Helper()
		if l.Counter <= last {
			t.Fatalf("%s: Counter = %d, want > %d", what, l.Counter, last)
		}
		if stored := get(t, s, l.Key); stored.Counter != l.Counter {
			t.Fatalf("%s: returned Counter %d, stored %d", what, l.Counter, stored.Counter)
		}
		last = l.Counter
		return l
	}
	l = step("take", take(t, s, l, "a"))
	for i := range 3 {
		r, err := s.RenewLease(ctx(t), l)
		if err != nil {
			t.Fatalf("renew %d: %v", i, err)
		}
		l = step("renew", r)
	}
	p, err := s.PrepareCheckpoint(ctx(t), l, cp(seq1, 0))
	if err != nil {
		t.Fatalf("PrepareCheckpoint: %v", err)
	}
	l = step("prepare", p)
	l = step("checkpoint", mustCheckpoint(t, s, l, cp(seq1, 0)))
	if err := s.ReleaseLease(ctx(t), l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	l = step("release", get(t, s, "k"))
	l = step("take after release", take(t, s, l, "b"))
	if err := s.ResetCheckpoint(ctx(t), "k", cp(checkpoint.TrimHorizon, 0)); err != nil {
		t.Fatalf("ResetCheckpoint: %v", err)
	}
	step("reset", get(t, s, "k"))
}

func testOwnerSwitches(t *testing.T, s checkpoint.Store) {
	l := create(t, s, checkpoint.Lease{Key: "k", Checkpoint: cp(checkpoint.TrimHorizon, 0)})
	steps := []struct {
		owner string
		want  int64
	}{
		{"a", 0}, // unowned → a: not a switch (KCL counts only owner-to-other-owner)
		{"a", 0}, // a re-takes its own lease
		{"b", 1},
		{"c", 2},
	}
	for _, st := range steps {
		l = take(t, s, l, st.owner)
		if l.OwnerSwitchesSinceCheckpoint != st.want {
			t.Fatalf("after take by %s: OwnerSwitchesSinceCheckpoint = %d, want %d", st.owner, l.OwnerSwitchesSinceCheckpoint, st.want)
		}
	}
	l = mustCheckpoint(t, s, l, cp(seq1, 0))
	if l.OwnerSwitchesSinceCheckpoint != 0 {
		t.Fatalf("after checkpoint: OwnerSwitchesSinceCheckpoint = %d, want 0", l.OwnerSwitchesSinceCheckpoint)
	}
	if got := get(t, s, "k").OwnerSwitchesSinceCheckpoint; got != 0 {
		t.Fatalf("stored OwnerSwitchesSinceCheckpoint = %d, want 0", got)
	}
}

func testRegression(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "k", "w")
	l = mustCheckpoint(t, s, l, cp(seq2, 5))
	for _, c := range []checkpoint.Checkpoint{
		cp(seq2, 4),                   // lower sub-sequence
		cp(seq1, 9),                   // lower sequence
		cp(seqShort, 0),               // shorter, so lower
		cp(checkpoint.TrimHorizon, 0), // starting sentinel
		cp(checkpoint.Latest, 0),      // starting sentinel
		cp(checkpoint.AtTimestamp, 0), // starting sentinel
	} {
		_, err := s.Checkpoint(ctx(t), l, c)
		wantErr(t, fmt.Sprintf("Checkpoint(%s) after %s/5", c, seq2), err, checkpoint.ErrRegression)
	}
	if got := get(t, s, "k"); got.Checkpoint != cp(seq2, 5) || got.Counter != l.Counter {
		t.Fatalf("lease after refused regressions: %s", show(got))
	}
	// The same position again is not a regression, and the lease is still held.
	l = mustCheckpoint(t, s, l, cp(seq2, 5))
	l = mustCheckpoint(t, s, l, cp(seq3, 0))
	l = mustCheckpoint(t, s, l, cp(checkpoint.ShardEnd, 0))
	_, err := s.Checkpoint(ctx(t), l, cp(seq3, 1))
	wantErr(t, "Checkpoint after SHARD_END", err, checkpoint.ErrRegression)
}

func testReset(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "k", "w")
	l = mustCheckpoint(t, s, l, cp(seq3, 2))
	l, err := s.PrepareCheckpoint(ctx(t), l, cp(seq3, 9))
	if err != nil {
		t.Fatalf("PrepareCheckpoint: %v", err)
	}
	if err := s.ResetCheckpoint(ctx(t), "k", cp(seq1, 1)); err != nil {
		t.Fatalf("ResetCheckpoint backwards: %v", err)
	}
	got := get(t, s, "k")
	if got.Checkpoint != cp(seq1, 1) || got.Pending != nil || got.Counter <= l.Counter || got.OwnerSwitchesSinceCheckpoint != 0 {
		t.Fatalf("lease after ResetCheckpoint: %s", show(got))
	}
	// The holder lost the lease: its counter is stale.
	_, err = s.Checkpoint(ctx(t), l, cp(seq3, 3))
	wantErr(t, "holder's Checkpoint after ResetCheckpoint", err, checkpoint.ErrLeaseLost)
	if err := s.ResetCheckpoint(ctx(t), "k", cp(checkpoint.TrimHorizon, 0)); err != nil {
		t.Fatalf("ResetCheckpoint to TRIM_HORIZON: %v", err)
	}
	if got := get(t, s, "k").Checkpoint; got != cp(checkpoint.TrimHorizon, 0) {
		t.Fatalf("Checkpoint after reset = %q, want TRIM_HORIZON", got)
	}
}

func testPrepareThenCheckpoint(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "k", "w")
	l = mustCheckpoint(t, s, l, cp(seq1, 0))
	p, err := s.PrepareCheckpoint(ctx(t), l, cp(seq2, 3))
	if err != nil {
		t.Fatalf("PrepareCheckpoint: %v", err)
	}
	if p.Pending == nil || *p.Pending != cp(seq2, 3) || p.Checkpoint != cp(seq1, 0) {
		t.Fatalf("returned lease after prepare: %s", show(p))
	}
	// A worker taking over reads the pending boundary back.
	got := get(t, s, "k")
	if got.Pending == nil || *got.Pending != cp(seq2, 3) {
		t.Fatalf("stored lease after prepare: %s", show(got))
	}
	// Preparing again (a re-cut of the same batch, or the next one) replaces it.
	p, err = s.PrepareCheckpoint(ctx(t), p, cp(seq2, 3))
	if err != nil {
		t.Fatalf("second PrepareCheckpoint: %v", err)
	}
	c := mustCheckpoint(t, s, p, cp(seq2, 3))
	if c.Pending != nil || c.Checkpoint != cp(seq2, 3) {
		t.Fatalf("returned lease after checkpoint: %s", show(c))
	}
	if got := get(t, s, "k"); got.Pending != nil {
		t.Fatalf("stored lease after checkpoint still has Pending: %s", show(got))
	}
}

func testPrepareRegression(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "k", "w")
	l = mustCheckpoint(t, s, l, cp(seq2, 0))
	_, err := s.PrepareCheckpoint(ctx(t), l, cp(seq1, 0))
	wantErr(t, "PrepareCheckpoint before the checkpoint", err, checkpoint.ErrRegression)
	if got := get(t, s, "k"); got.Pending != nil || got.Counter != l.Counter {
		t.Fatalf("lease after refused prepare: %s", show(got))
	}
}

func testSubSequence(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "k", "w")
	for _, sub := range []uint64{0, 1, 499, 1 << 40, math.MaxUint64} {
		c := cp(seq1, sub)
		p, err := s.PrepareCheckpoint(ctx(t), l, c)
		if err != nil {
			t.Fatalf("PrepareCheckpoint(%s): %v", c, err)
		}
		if got := get(t, s, "k"); got.Pending == nil || *got.Pending != c {
			t.Fatalf("stored Pending after PrepareCheckpoint(%s): %s", c, show(got))
		}
		l = mustCheckpoint(t, s, p, c)
		ls, err := s.ListLeases(ctx(t))
		if err != nil {
			t.Fatalf("ListLeases: %v", err)
		}
		if len(ls) != 1 || ls[0].Checkpoint != c {
			t.Fatalf("listed lease after Checkpoint(%s): %v", c, ls)
		}
		if got := get(t, s, "k"); got.Checkpoint != c {
			t.Fatalf("stored checkpoint %q, want %q", got.Checkpoint, c)
		}
	}
	// Created leases keep their sub-sequence too.
	c := create(t, s, checkpoint.Lease{Key: "k2", Checkpoint: cp(seq2, math.MaxUint64-1)})
	if c.Checkpoint != cp(seq2, math.MaxUint64-1) {
		t.Fatalf("created lease checkpoint %q", c.Checkpoint)
	}
}

func testShardEnd(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "parent", "w")
	l = mustCheckpoint(t, s, l, cp(seq1, 0))
	l = mustCheckpoint(t, s, l, cp(checkpoint.ShardEnd, 0))
	if got := get(t, s, "parent").Checkpoint; got != cp(checkpoint.ShardEnd, 0) {
		t.Fatalf("checkpoint = %q, want SHARD_END", got)
	}
	// SHARD_END is final but idempotent.
	mustCheckpoint(t, s, l, cp(checkpoint.ShardEnd, 0))
}

func testRelease(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "k", "w")
	l = mustCheckpoint(t, s, l, cp(seq1, 0))
	if err := s.ReleaseLease(ctx(t), l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	got := get(t, s, "k")
	if got.Owner != "" || got.Counter <= l.Counter || got.Checkpoint != cp(seq1, 0) {
		t.Fatalf("lease after release: %s", show(got))
	}
	// The releaser no longer holds it.
	_, err := s.RenewLease(ctx(t), l)
	wantErr(t, "RenewLease after release", err, checkpoint.ErrLeaseLost)
	// Repeating the release is an idempotent repeat: no error, no change.
	if err := s.ReleaseLease(ctx(t), l); err != nil {
		t.Fatalf("repeated ReleaseLease: %v", err)
	}
	wantLease(t, "lease after repeated release", get(t, s, "k"), got)
	// A holder that is not the owner is refused too (an unowned lease is held by no one).
	_, err = s.RenewLease(ctx(t), got)
	wantErr(t, "RenewLease of an unowned lease", err, checkpoint.ErrLeaseLost)
	// Anyone may take it, and doing so is not an owner switch.
	n := take(t, s, got, "other")
	if n.Owner != "other" || n.OwnerSwitchesSinceCheckpoint != 0 {
		t.Fatalf("lease taken after release: %s", show(n))
	}
}

func testDelete(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "gone", "w")
	create(t, s, checkpoint.Lease{Key: "kept", Checkpoint: cp(checkpoint.TrimHorizon, 0)})
	if err := s.DeleteLease(ctx(t), "gone"); err != nil {
		t.Fatalf("DeleteLease: %v", err)
	}
	_, err := s.GetLease(ctx(t), "gone")
	wantErr(t, "GetLease after DeleteLease", err, checkpoint.ErrNotFound)
	if err := s.DeleteLease(ctx(t), "gone"); err != nil {
		t.Fatalf("DeleteLease of a missing lease: %v", err)
	}
	ls, err := s.ListLeases(ctx(t))
	if err != nil {
		t.Fatalf("ListLeases: %v", err)
	}
	if len(ls) != 1 || ls[0].Key != "kept" {
		t.Fatalf("ListLeases after delete: %v", ls)
	}
	// The former holder cannot resurrect it.
	_, err = s.Checkpoint(ctx(t), l, cp(seq1, 0))
	wantErr(t, "Checkpoint of a deleted lease", err, checkpoint.ErrLeaseLost)
	_, err = s.GetLease(ctx(t), "gone")
	wantErr(t, "GetLease after the holder's checkpoint", err, checkpoint.ErrNotFound)
}

func testInvalidSequence(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "k", "w")
	l = mustCheckpoint(t, s, l, cp(seq1, 0))
	for _, seq := range []string{"", "abc", "0123", "-1", "12 3", "1e10", "trim_horizon", string(make([]byte, 129))} {
		c := cp(seq, 0)
		_, err := s.Checkpoint(ctx(t), l, c)
		wantErr(t, fmt.Sprintf("Checkpoint(%q)", seq), err, checkpoint.ErrInvalidSequence)
		_, err = s.PrepareCheckpoint(ctx(t), l, c)
		wantErr(t, fmt.Sprintf("PrepareCheckpoint(%q)", seq), err, checkpoint.ErrInvalidSequence)
		err = s.ResetCheckpoint(ctx(t), "k", c)
		wantErr(t, fmt.Sprintf("ResetCheckpoint(%q)", seq), err, checkpoint.ErrInvalidSequence)
		if seq != "" { // a zero checkpoint is allowed at creation
			_, err = s.CreateLease(ctx(t), checkpoint.Lease{Key: "new", Checkpoint: c})
			wantErr(t, fmt.Sprintf("CreateLease(%q)", seq), err, checkpoint.ErrInvalidSequence)
		}
	}
	if got := get(t, s, "k"); got.Checkpoint != cp(seq1, 0) || got.Counter != l.Counter || got.Pending != nil {
		t.Fatalf("lease after invalid writes: %s", show(got))
	}
	_, err := s.GetLease(ctx(t), "new")
	wantErr(t, "GetLease of a lease whose creation was refused", err, checkpoint.ErrNotFound)
}

func testReturnedIsStored(t *testing.T, s checkpoint.Store) {
	l := newHeld(t, s, "k", "w")
	wantLease(t, "after take", l, get(t, s, "k"))
	l, err := s.RenewLease(ctx(t), l)
	if err != nil {
		t.Fatal(err)
	}
	wantLease(t, "after renew", l, get(t, s, "k"))
	l, err = s.PrepareCheckpoint(ctx(t), l, cp(seq1, 1))
	if err != nil {
		t.Fatal(err)
	}
	wantLease(t, "after prepare", l, get(t, s, "k"))
	l = mustCheckpoint(t, s, l, cp(seq1, 1))
	wantLease(t, "after checkpoint", l, get(t, s, "k"))
}

func testCopies(t *testing.T, s checkpoint.Store) {
	in := checkpoint.Lease{Key: "k", Checkpoint: cp(checkpoint.TrimHorizon, 0), ParentShardIDs: []string{"p1", "p2"}}
	if _, err := s.CreateLease(ctx(t), in); err != nil {
		t.Fatal(err)
	}
	in.ParentShardIDs[0] = "mutated-in"
	l := get(t, s, "k")
	l.ParentShardIDs[1] = "mutated-out"
	l, err := s.PrepareCheckpoint(ctx(t), take(t, s, get(t, s, "k"), "w"), cp(seq1, 0))
	if err != nil {
		t.Fatal(err)
	}
	l.Pending.Sequence = seq3
	got := get(t, s, "k")
	if !(checkpoint.Lease{ParentShardIDs: got.ParentShardIDs}).Equal(checkpoint.Lease{ParentShardIDs: []string{"p1", "p2"}}) || got.Pending == nil || *got.Pending != cp(seq1, 0) {
		t.Fatalf("store shares memory with callers: %s", show(got))
	}
}

func testEmptyOwner(t *testing.T, s checkpoint.Store) {
	l := create(t, s, checkpoint.Lease{Key: "k", Checkpoint: cp(checkpoint.TrimHorizon, 0)})
	if _, err := s.TakeLease(ctx(t), l, ""); err == nil {
		t.Fatal("TakeLease with an empty owner succeeded")
	}
	if got := get(t, s, "k"); got.Owner != "" || got.Counter != 0 {
		t.Fatalf("lease after refused take: %s", show(got))
	}
}

// testRepeat checks idempotent repeats: a write repeated with the same arguments after it
// succeeded (its outcome hidden by a timeout) succeeds without a change; a different write
// from the same stale lease is refused.
func testRepeat(t *testing.T, s checkpoint.Store) {
	observed := create(t, s, checkpoint.Lease{Key: "k", Checkpoint: cp(checkpoint.TrimHorizon, 0)})
	held := take(t, s, observed, "w")
	again := take(t, s, observed, "w")
	wantLease(t, "repeated take", again, held)
	_, err := s.TakeLease(ctx(t), observed, "other")
	wantErr(t, "take by another worker from the same observation", err, checkpoint.ErrConflict)

	renewed, err := s.RenewLease(ctx(t), held)
	if err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	again, err = s.RenewLease(ctx(t), held)
	if err != nil {
		t.Fatalf("repeated RenewLease: %v", err)
	}
	wantLease(t, "repeated renew", again, renewed)
	wantLease(t, "stored after repeated renew", get(t, s, "k"), renewed)

	prepared, err := s.PrepareCheckpoint(ctx(t), renewed, cp(seq2, 0))
	if err != nil {
		t.Fatalf("PrepareCheckpoint: %v", err)
	}
	again, err = s.PrepareCheckpoint(ctx(t), renewed, cp(seq2, 0))
	if err != nil {
		t.Fatalf("repeated PrepareCheckpoint: %v", err)
	}
	wantLease(t, "repeated prepare", again, prepared)
	_, err = s.PrepareCheckpoint(ctx(t), renewed, cp(seq3, 0))
	wantErr(t, "different prepare from the same stale lease", err, checkpoint.ErrLeaseLost)
	_, err = s.RenewLease(ctx(t), renewed)
	wantErr(t, "renew from a lease older than the last write", err, checkpoint.ErrLeaseLost)

	done := mustCheckpoint(t, s, prepared, cp(seq2, 0))
	again = mustCheckpoint(t, s, prepared, cp(seq2, 0))
	wantLease(t, "repeated checkpoint", again, done)
	_, err = s.Checkpoint(ctx(t), prepared, cp(seq2, 1))
	wantErr(t, "different checkpoint from the same stale lease", err, checkpoint.ErrLeaseLost)
	wantLease(t, "stored after the refused writes", get(t, s, "k"), done)
}

// testSameOwnerStaleCounter: a worker restarts under the same id and takes its own lease
// back; the old incarnation, still running, is fenced off by the counter alone.
func testSameOwnerStaleCounter(t *testing.T, s checkpoint.Store) {
	old := newHeld(t, s, "k", "w")
	old = mustCheckpoint(t, s, old, cp(seq1, 0))
	restarted := take(t, s, get(t, s, "k"), "w")
	restarted = mustCheckpoint(t, s, restarted, cp(seq2, 0))
	_, err := s.Checkpoint(ctx(t), old, cp(seq3, 0))
	wantErr(t, "old incarnation's Checkpoint", err, checkpoint.ErrLeaseLost)
	_, err = s.RenewLease(ctx(t), old)
	wantErr(t, "old incarnation's RenewLease", err, checkpoint.ErrLeaseLost)
	_, err = s.PrepareCheckpoint(ctx(t), old, cp(seq3, 0))
	wantErr(t, "old incarnation's PrepareCheckpoint", err, checkpoint.ErrLeaseLost)
	wantLease(t, "lease after the old incarnation's writes", get(t, s, "k"), restarted)
}

// testState checks the processor state kept with the checkpoint: stored and read back with
// it, replaced by the next CheckpointWithState, kept by plain Checkpoint, prepare and renew,
// fenced like a checkpoint, repeated idempotently, and cleared by ResetCheckpoint.
func testState(t *testing.T, s checkpoint.Store) {
	sc, ok := s.(checkpoint.StateCheckpointer)
	if !ok {
		t.Fatalf("%T does not implement checkpoint.StateCheckpointer", s)
	}
	l := newHeld(t, s, "k", "w")
	st := []byte{1, 0, 2, 0xff, 'x'}
	l, err := sc.CheckpointWithState(ctx(t), l, cp(seq1, 4), st)
	if err != nil {
		t.Fatalf("CheckpointWithState: %v", err)
	}
	if got := get(t, s, "k"); !bytes.Equal(got.State, st) || got.Checkpoint != cp(seq1, 4) || !bytes.Equal(l.State, st) {
		t.Fatalf("state after CheckpointWithState: stored %x returned %x at %s", got.State, l.State, got.Checkpoint)
	}
	// The same write again (a retried request) succeeds and changes nothing.
	again, err := sc.CheckpointWithState(ctx(t), l, cp(seq1, 4), st)
	if err != nil {
		t.Fatalf("repeated CheckpointWithState: %v", err)
	}
	l = again
	if l, err = s.PrepareCheckpoint(ctx(t), l, cp(seq2, 0)); err != nil {
		t.Fatalf("PrepareCheckpoint: %v", err)
	}
	if l, err = s.RenewLease(ctx(t), l); err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	if got := get(t, s, "k"); !bytes.Equal(got.State, st) {
		t.Fatalf("prepare or renew changed the state: %x", got.State)
	}
	st2 := []byte{9, 9}
	if l, err = sc.CheckpointWithState(ctx(t), l, cp(seq2, 0), st2); err != nil {
		t.Fatalf("second CheckpointWithState: %v", err)
	}
	if got := get(t, s, "k"); !bytes.Equal(got.State, st2) || got.Pending != nil {
		t.Fatalf("state after the second checkpoint: %x (pending %v)", got.State, got.Pending)
	}
	// A stale holder cannot write a state.
	stolen := take(t, s, get(t, s, "k"), "thief")
	_, err = sc.CheckpointWithState(ctx(t), l, cp(seq3, 0), []byte{7})
	wantErr(t, "CheckpointWithState by the previous holder", err, checkpoint.ErrLeaseLost)
	if got := get(t, s, "k"); !bytes.Equal(got.State, st2) {
		t.Fatalf("a fenced write changed the state: %x", got.State)
	}
	// An empty state removes it.
	if _, err = sc.CheckpointWithState(ctx(t), stolen, cp(seq3, 0), nil); err != nil {
		t.Fatalf("CheckpointWithState(nil): %v", err)
	}
	if got := get(t, s, "k"); got.State != nil {
		t.Fatalf("state after an empty one: %x", got.State)
	}
	l = newHeld(t, s, "r", "w")
	if _, err = sc.CheckpointWithState(ctx(t), l, cp(seq3, 0), st); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetCheckpoint(ctx(t), "r", cp(seq1, 0)); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "r"); got.State != nil {
		t.Fatalf("ResetCheckpoint kept the state %x", got.State)
	}
}

// testChildShards records a finished shard's children (the KCL's childShardIds): stored
// and read back as a set, fenced, repeated idempotently, and kept by later writes.
func testChildShards(t *testing.T, s checkpoint.Store) {
	cr, ok := s.(checkpoint.ChildRecorder)
	if !ok {
		t.Fatalf("%T does not implement checkpoint.ChildRecorder", s)
	}
	l := newHeld(t, s, "parent", "w")
	children := []string{"shardId-000000000003", "shardId-000000000002"}
	l2, err := cr.SetChildShards(ctx(t), l, children)
	if err != nil {
		t.Fatalf("SetChildShards: %v", err)
	}
	want := []string{"shardId-000000000002", "shardId-000000000003"}
	if got := get(t, s, "parent"); !slices.Equal(got.ChildShardIDs, want) || got.Counter != l.Counter+1 || !slices.Equal(l2.ChildShardIDs, want) {
		t.Fatalf("after SetChildShards: stored %s, returned %s", show(got), show(l2))
	}
	if again, err := cr.SetChildShards(ctx(t), l, children); err != nil || !again.Equal(l2) {
		t.Fatalf("repeated SetChildShards: %v (%s)", err, show(again))
	}
	l3 := mustCheckpoint(t, s, l2, cp(checkpoint.ShardEnd, 0))
	if got := get(t, s, "parent"); !slices.Equal(got.ChildShardIDs, want) || !slices.Equal(l3.ChildShardIDs, want) {
		t.Fatalf("SHARD_END dropped the children: %s", show(got))
	}
	_, err = cr.SetChildShards(ctx(t), l2, []string{"x"})
	wantErr(t, "SetChildShards with a stale lease", err, checkpoint.ErrLeaseLost)
}

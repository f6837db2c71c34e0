package checkpoint_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
)

type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func lease(key, owner string, counter int64) checkpoint.Lease {
	return checkpoint.Lease{Key: key, Owner: owner, Counter: counter}
}

func TestTracker(t *testing.T) {
	const failover = 10 * time.Second
	type step struct {
		advance time.Duration
		observe []checkpoint.Lease // nil: no listing at this step
		ask     checkpoint.Lease
		want    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"unowned is available without observation", []step{
			{ask: lease("a", "", 3), want: true},
		}},
		{"owned and never observed is not available", []step{
			{advance: time.Hour, ask: lease("a", "w", 3), want: false},
		}},
		{"expires exactly at the failover time", []step{
			{observe: []checkpoint.Lease{lease("a", "w", 3)}, ask: lease("a", "w", 3), want: false},
			{advance: failover - time.Nanosecond, ask: lease("a", "w", 3), want: false},
			{advance: time.Nanosecond, ask: lease("a", "w", 3), want: true},
		}},
		{"a renewal restarts the wait", []step{
			{observe: []checkpoint.Lease{lease("a", "w", 3)}},
			{advance: 9 * time.Second, observe: []checkpoint.Lease{lease("a", "w", 4)}, ask: lease("a", "w", 4), want: false},
			{advance: 9 * time.Second, observe: []checkpoint.Lease{lease("a", "w", 4)}, ask: lease("a", "w", 4), want: false},
			{advance: time.Second, ask: lease("a", "w", 4), want: true},
		}},
		{"repeated listings of an unchanged lease keep the first sighting", []step{
			{observe: []checkpoint.Lease{lease("a", "w", 3)}},
			{advance: 5 * time.Second, observe: []checkpoint.Lease{lease("a", "w", 3)}},
			{advance: 5 * time.Second, observe: []checkpoint.Lease{lease("a", "w", 3)}, ask: lease("a", "w", 3), want: true},
		}},
		{"a new owner at the same counter restarts the wait", []step{
			{observe: []checkpoint.Lease{lease("a", "w", 3)}},
			{advance: 9 * time.Second, observe: []checkpoint.Lease{lease("a", "v", 3)}},
			{advance: 9 * time.Second, ask: lease("a", "v", 3), want: false},
			{advance: time.Second, ask: lease("a", "v", 3), want: true},
		}},
		{"a lease other than the one observed is not available", []step{
			{observe: []checkpoint.Lease{lease("a", "w", 3)}},
			{advance: time.Minute, ask: lease("a", "w", 4), want: false},
			{ask: lease("a", "v", 3), want: false},
		}},
		{"leases absent from a listing are forgotten", []step{
			{observe: []checkpoint.Lease{lease("a", "w", 3), lease("b", "w", 1)}},
			{advance: 9 * time.Second, observe: []checkpoint.Lease{lease("b", "w", 1)}},
			{advance: time.Second, ask: lease("a", "w", 3), want: false},
			{ask: lease("b", "w", 1), want: true},
			{observe: []checkpoint.Lease{lease("a", "w", 3), lease("b", "w", 1)}, ask: lease("a", "w", 3), want: false},
			{advance: failover, ask: lease("a", "w", 3), want: true},
		}},
		{"leases are independent", []step{
			{observe: []checkpoint.Lease{lease("a", "w", 3), lease("b", "w", 1)}},
			{advance: 5 * time.Second, observe: []checkpoint.Lease{lease("a", "w", 3), lease("b", "w", 2)}},
			{advance: 5 * time.Second, ask: lease("a", "w", 3), want: true},
			{ask: lease("b", "w", 2), want: false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			tr := checkpoint.NewTracker(failover, clock.Now)
			for i, st := range tc.steps {
				clock.Advance(st.advance)
				if st.observe != nil {
					tr.Observe(st.observe)
				}
				if st.ask.Key == "" {
					continue
				}
				if got := tr.Available(st.ask); got != st.want {
					t.Fatalf("step %d: Available(%s owner %q counter %d) = %v, want %v", i, st.ask.Key, st.ask.Owner, st.ask.Counter, got, st.want)
				}
			}
		})
	}
}

// TestTrackerClockJump: the tracker measures on the observer's clock only; a lease's
// liveness does not depend on any timestamp in the lease, and a clock that jumps backwards
// only delays expiry.
func TestTrackerClockJump(t *testing.T) {
	clock := &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tr := checkpoint.NewTracker(10*time.Second, clock.Now)
	tr.Observe([]checkpoint.Lease{lease("a", "w", 1)})
	clock.Advance(-time.Hour)
	if tr.Available(lease("a", "w", 1)) {
		t.Fatal("available after the clock went backwards")
	}
	clock.Advance(time.Hour + 10*time.Second)
	if !tr.Available(lease("a", "w", 1)) {
		t.Fatal("not available 10s after the first sighting")
	}
}

func TestTrackerDefaultClock(t *testing.T) {
	tr := checkpoint.NewTracker(time.Hour, nil)
	tr.Observe([]checkpoint.Lease{lease("a", "w", 1)})
	if tr.Available(lease("a", "w", 1)) {
		t.Fatal("available right after the first sighting with a 1h failover")
	}
	tr = checkpoint.NewTracker(0, nil)
	tr.Observe([]checkpoint.Lease{lease("a", "w", 1)})
	if !tr.Available(lease("a", "w", 1)) {
		t.Fatal("not available with a zero failover")
	}
}

func TestTrackerConcurrent(t *testing.T) {
	clock := &manualClock{now: time.Unix(0, 0)}
	tr := checkpoint.NewTracker(time.Second, clock.Now)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				ls := []checkpoint.Lease{lease(fmt.Sprint(w), "o", int64(i)), lease("shared", "o", 1)}
				tr.Observe(ls)
				tr.Available(ls[0])
				clock.Advance(time.Millisecond)
			}
		})
	}
	wg.Wait()
	clock.Advance(time.Second)
	// Every Observe above listed "shared" unchanged, so it was never forgotten and its first
	// sighting is more than a second ago.
	if !tr.Available(lease("shared", "o", 1)) {
		t.Fatal("shared lease not available after concurrent observations")
	}
}

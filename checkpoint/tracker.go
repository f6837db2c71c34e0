package checkpoint

import (
	"sync"
	"time"
)

// Tracker judges lease liveness the way the KCL does, without comparing clocks across
// machines: a lease is expired when its Counter has not changed for the failover time, as
// measured on the observer's own clock since the observer first saw that Counter value.
// An unowned lease is always available. A Tracker is safe for concurrent use.
type Tracker struct {
	failover time.Duration
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]observation
}

type observation struct {
	owner   string
	counter int64
	since   time.Time
}

// NewTracker returns a Tracker with the given failover time. now is the clock (time.Now when
// nil); tests pass a fake.
func NewTracker(failover time.Duration, now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{failover: failover, now: now, seen: make(map[string]observation)}
}

// Observe records one listing of the lease table and forgets leases absent from it. Call it
// after every ListLeases.
func (t *Tracker) Observe(leases []Lease) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := make(map[string]observation, len(leases))
	for _, l := range leases {
		o, ok := t.seen[l.Key]
		if !ok || o.counter != l.Counter || o.owner != l.Owner {
			o = observation{owner: l.Owner, counter: l.Counter, since: now}
		}
		keep[l.Key] = o
	}
	t.seen = keep
}

// Available reports whether l may be taken: it is unowned, or its Counter has not moved for
// the failover time since this Tracker first observed it. A lease never observed is not
// available unless unowned.
func (t *Tracker) Available(l Lease) bool {
	if l.Owner == "" {
		return true
	}
	t.mu.Lock()
	o, ok := t.seen[l.Key]
	t.mu.Unlock()
	if !ok || o.counter != l.Counter || o.owner != l.Owner {
		return false
	}
	return t.now().Sub(o.since) >= t.failover
}

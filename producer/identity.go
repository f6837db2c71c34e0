package producer

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/kinlog/kinlog/internal/kpl"
)

// Origin gives a record its identity in place of the producer's own: the agent names a
// line of a file by the file and the line's byte span, so that a line read twice keeps the
// identity it had. ID names the sequence (at most 128 bytes); Seq and Span are the record's
// position and length in it; Floor promises that everything of ID below it was delivered
// before (0 promises nothing). See docs/identity.md.
type Origin struct {
	ID               string
	Seq, Span, Floor uint64
}

// newProducerID returns a random producer id: 32 hex digits, like the spool's.
func newProducerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// floorTracker knows the smallest sequence number of the producer's own records not yet
// delivered: the floor each aggregate promises. Records enter in sequence order (the
// buffer hands them over in Put order, the spool in its order); a record is resolved when
// Kinesis confirmed it, or when it failed without any attempt whose outcome is unknown. A
// record that failed after an attempt that may have been applied (a request that timed
// out, say) never resolves: its late copy must not look like a duplicate.
type floorTracker struct {
	base  uint64 // sequence number of ring[head]
	ring  []bool // resolved?, for base … base+n-1
	head  int
	n     int
	next  uint64              // the sequence number after the last added
	extra map[uint64]struct{} // unresolved numbers added out of order (none in practice)
}

func (t *floorTracker) add(seq uint64) {
	if t.n == 0 && len(t.extra) == 0 && seq >= t.next {
		t.base, t.head = seq, 0
	} else if seq < t.next {
		if t.extra == nil {
			t.extra = map[uint64]struct{}{}
		}
		t.extra[seq] = struct{}{}
		return
	}
	for t.base+uint64(t.n) < seq { // numbers never handed over (lost in the spool): resolved
		t.push(true)
	}
	t.push(false)
	t.next = seq + 1
	t.advance()
}

func (t *floorTracker) push(v bool) {
	if t.n == len(t.ring) {
		grown := make([]bool, max(64, 2*len(t.ring)))
		for i := range t.n {
			grown[i] = t.ring[(t.head+i)%len(t.ring)]
		}
		t.ring, t.head = grown, 0
	}
	t.ring[(t.head+t.n)%len(t.ring)] = v
	t.n++
}

func (t *floorTracker) resolve(seq uint64) {
	if _, ok := t.extra[seq]; ok {
		delete(t.extra, seq)
		return
	}
	if seq < t.base || seq >= t.base+uint64(t.n) {
		return
	}
	t.ring[(t.head+int(seq-t.base))%len(t.ring)] = true
	t.advance()
}

func (t *floorTracker) advance() {
	for t.n > 0 && t.ring[t.head] {
		t.ring[t.head] = false
		t.head = (t.head + 1) % len(t.ring)
		t.base++
		t.n--
	}
}

// floor returns the smallest unresolved sequence number (the next one when none is).
func (t *floorTracker) floor() uint64 {
	f := t.next
	if t.n > 0 {
		f = t.base
	}
	for s := range t.extra {
		f = min(f, s)
	}
	return f
}

// identity is the kinlog identity the pipeline gives e in an aggregate.
func (pl *pipeline) identity(e *entry) kpl.Identity {
	if !pl.cfg.identity {
		return kpl.Identity{}
	}
	if !e.own() {
		o := e.rec.Origin
		return kpl.Identity{Origin: o.ID, Seq: o.Seq, Span: o.Span, Floor: o.Floor}
	}
	return kpl.Identity{Origin: pl.p.id, Seq: e.seq, Floor: pl.floors.floor()}
}

// own reports whether e has the producer's identity: it has no Origin, or it is spooled
// (the spool does not keep origins, so a spooled record always has the spool's identity,
// before and after a restart alike).
func (e *entry) own() bool { return e.rec.Origin == nil || e.spooled }

package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
)

// ackTracker computes a shard's capped checkpoint: the highest position below which every
// delivered record is acknowledged. Batches are queued in delivery order; acknowledgements
// may arrive in any order and from any goroutine, but only the head of the queue moves the
// position, so an acknowledged later batch waits for every earlier one. The queue length is
// bounded by a semaphore: a reader that finds it full waits (backpressure).
type ackTracker struct {
	slots chan struct{} // one token per batch in flight
	dirty chan struct{} // signalled when the position moves (capacity 1)

	mu        sync.Mutex
	queue     []*inflight
	pos       checkpoint.Checkpoint // capped acknowledged position
	last      checkpoint.Checkpoint // position of the last delivered record
	delivered int64                 // records delivered
	changed   chan struct{}         // closed and replaced on every change
	closed    bool                  // no further acknowledgement counts
	unstored  []delivery            // batches not yet covered by a stored checkpoint
	marked    bool                  // the processor marks boundaries: checkpoint only at them
	bound     durable               // the last marked boundary within pos
	budget    *byteBudget           // the worker's, or nil
}

// durable is a position to checkpoint and the processor's state there (nil for none).
type durable struct {
	pos   checkpoint.Checkpoint
	state []byte
}

type delivery struct {
	last checkpoint.Checkpoint
	at   time.Time
}

type inflight struct {
	records []Record
	acked   int
	at      time.Time
	bytes   int64  // counted against the worker's byte budget until fully acknowledged
	markN   int    // records up to the last marked boundary in this batch (0: none)
	markSt  []byte // the state marked there
}

func newAckTracker(maxInFlight int, start checkpoint.Checkpoint, state []byte) *ackTracker {
	return &ackTracker{
		slots:   make(chan struct{}, maxInFlight),
		dirty:   make(chan struct{}, 1),
		pos:     start,
		last:    start,
		changed: make(chan struct{}),
		bound:   durable{pos: start, state: state},
	}
}

// acquire waits for room for one more batch, or until ctx ends.
func (t *ackTracker) acquire(ctx context.Context) error {
	select {
	case t.slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case t.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// add queues a non-empty batch of records delivered at time at; the caller holds a slot
// and, with a budget, bytes of it that the tracker gives back.
func (t *ackTracker) add(records []Record, at time.Time, bytes int64) *inflight {
	f := &inflight{records: records, at: at, bytes: bytes}
	t.mu.Lock()
	t.queue = append(t.queue, f)
	t.last = records[len(records)-1].Position()
	t.delivered += int64(len(records))
	t.unstored = append(t.unstored, delivery{last: t.last, at: at})
	t.broadcastLocked()
	t.mu.Unlock()
	return f
}

// ack records that the first n records of f are acknowledged (n only grows: [Batch]
// guarantees it) and advances the capped position.
func (t *ackTracker) ack(f *inflight, n int) { t.mark(f, n, false, nil) }

// mark is ack that, when isMark, also marks record n-1 of f as a processor boundary with
// its state.
func (t *ackTracker) mark(f *inflight, n int, isMark bool, state []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	f.acked = n
	if isMark {
		t.marked = true
		f.markN, f.markSt = n, state
	}
	moved := false
	for len(t.queue) > 0 {
		h := t.queue[0]
		if h.acked == 0 {
			break
		}
		p := h.records[h.acked-1].Position()
		if p.Compare(t.pos) > 0 {
			t.pos = p
			moved = true
		}
		if h.markN > 0 {
			if mp := h.records[h.markN-1].Position(); mp.Compare(t.bound.pos) > 0 {
				t.bound = durable{pos: mp, state: h.markSt}
			}
		}
		if h.acked < len(h.records) {
			break
		}
		t.queue[0] = nil
		t.queue = t.queue[1:]
		<-t.slots
		t.budget.release(h.bytes)
		moved = true
	}
	if moved {
		select {
		case t.dirty <- struct{}{}:
		default:
		}
		t.broadcastLocked()
	}
}

func (t *ackTracker) broadcastLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// close makes later acknowledgements no-ops (the lease is gone or the shard finished) and
// gives the bytes of the batches still queued back to the budget.
func (t *ackTracker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	for _, f := range t.queue {
		t.budget.release(f.bytes)
		f.bytes = 0
	}
}

// position returns the capped acknowledged position.
func (t *ackTracker) position() checkpoint.Checkpoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pos
}

// durable returns what to checkpoint: the capped position, or — once the processor marks
// boundaries — the last marked boundary within it, with its state.
func (t *ackTracker) durable() durable {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.marked {
		return t.bound
	}
	return durable{pos: t.pos}
}

// finalState is the state of the last marked boundary, which SHARD_END keeps once every
// record is acknowledged.
func (t *ackTracker) finalState() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bound.state
}

// stored records that a checkpoint at cp is stored.
func (t *ackTracker) stored(cp checkpoint.Checkpoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := 0
	for i < len(t.unstored) && t.unstored[i].last.Compare(cp) <= 0 {
		i++
	}
	t.unstored = t.unstored[i:]
}

type ackState struct {
	pos, last      checkpoint.Checkpoint
	inFlight       int
	delivered      int64
	oldestUnstored time.Time // delivery time of the oldest batch not covered by a stored checkpoint
}

func (t *ackTracker) state() ackState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := ackState{pos: t.pos, last: t.last, inFlight: len(t.queue), delivered: t.delivered}
	if len(t.unstored) > 0 {
		s.oldestUnstored = t.unstored[0].at
	}
	return s
}

// waitAllAcked waits until every delivered record is acknowledged, or ctx ends.
func (t *ackTracker) waitAllAcked(ctx context.Context) error {
	for {
		t.mu.Lock()
		empty, ch := len(t.queue) == 0, t.changed
		t.mu.Unlock()
		if empty {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

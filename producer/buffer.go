package producer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// buffer is the hand-off between Put and the pipeline: the records accepted and not yet
// reported, their accounting against the memory bounds, the waiters for room, and — when
// the producer has one — the on-disk spool that holds every accepted record until Kinesis
// confirmed it. Put calls put; the pipeline calls take, recycle and release. Its methods
// are safe for concurrent use.
//
// Without a spool, a record is accepted when it is queued in memory, and Put waits while
// the memory bounds are reached. With a spool, a record is accepted when it is appended to
// the spool, and Put waits only while the spool is full: a record that finds memory full
// stays on disk only (the backlog) and the spool's loader queues it later, in order, when
// the pipeline has released room.
type buffer struct {
	maxBytes, maxRecords int64

	mu         sync.Mutex
	qHead      *block // records queued for the pipeline, in order
	qTail      *block
	freeBlocks *block // drained blocks for reuse
	nFree      int
	arena      []byte // current chunk that put copies small records into
	bytes      int64  // bytes of records in memory (queued or in the pipeline)
	records    int64  // records in memory
	putCount   uint64 // records accepted
	closed     bool
	changed    chan struct{} // closed when room is freed or records reported; nil when nobody waits
	failed     uint64        // records reported failed so far
	lastErr    error         // most recent failure
	spool      *spool        // nil without a spool; its counters are guarded by mu

	wakeFlag atomic.Bool
	wake     chan struct{} // wakes the pipeline
}

func newBuffer(cfg *config) *buffer {
	return &buffer{maxBytes: cfg.maxBufferedBytes, maxRecords: cfg.maxBufferedRecords, wake: make(chan struct{}, 1)}
}

// roomLocked reports whether size more bytes fit in memory.
func (b *buffer) roomLocked(size int) bool {
	return b.bytes+int64(size) <= b.maxBytes && b.records < b.maxRecords
}

// waitLocked waits for the next change of the buffer, with b.mu held (and held again on
// return). It returns ErrClosed when closing is closed, or ctx's error.
func (b *buffer) waitLocked(ctx context.Context, closing <-chan struct{}) error {
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	ch := b.changed
	b.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-closing:
		err = ErrClosed
	case <-ctx.Done():
		err = fmt.Errorf("waiting for buffer room: %w", ctx.Err())
	}
	b.mu.Lock()
	return err
}

// notifyLocked wakes everybody waiting for a change.
func (b *buffer) notifyLocked() {
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}

// put accepts e (whose rec.Data is the caller's) when there is room: in memory without a
// spool, in the spool with one. block says whether to wait for room (until ctx ends or
// closing is closed) or fail with ErrBufferFull.
func (b *buffer) put(ctx context.Context, e entry, block bool, closing <-chan struct{}) error {
	b.mu.Lock()
	for {
		if b.closed {
			b.mu.Unlock()
			return ErrClosed
		}
		if b.spool != nil {
			if err := b.spool.errLocked(); err != nil {
				b.mu.Unlock()
				return err
			}
			if b.spool.roomLocked(&e.rec) {
				break
			}
		} else if b.roomLocked(int(e.size)) {
			break
		}
		if !block {
			b.mu.Unlock()
			return ErrBufferFull
		}
		if err := b.waitLocked(ctx, closing); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	s := b.spool
	if s == nil {
		e.seq = b.putCount
	}
	b.putCount++
	if s == nil {
		b.queueLocked(e)
		b.mu.Unlock()
		b.signal()
		return nil
	}
	caughtUp := !s.backlogLocked()
	e.seq = s.appendLocked(&e.rec)
	e.spooled = true
	queued := false
	if caughtUp && b.roomLocked(int(e.size)) {
		s.memSeq++
		b.queueLocked(e)
		queued = true
	} else {
		if e.sync != nil {
			s.syncWaiters[e.seq] = e.sync
		}
		s.wantLoad()
	}
	end := s.appended
	early := len(s.wbuf) >= spoolWriteChunk
	b.mu.Unlock()
	if queued {
		b.signal()
	}
	if early {
		s.writeEarly()
	}
	return s.commit(end)
}

// queueLocked copies e's data and queues it for the pipeline.
func (b *buffer) queueLocked(e entry) {
	e.rec.Data = b.copyLocked(e.rec.Data)
	b.queueOwnedLocked(e)
}

// queueOwnedLocked queues e, whose data is the producer's own copy.
func (b *buffer) queueOwnedLocked(e entry) {
	bl := b.qTail
	if bl == nil || bl.n == len(bl.entries) {
		bl = b.newBlockLocked()
	}
	bl.entries[bl.n] = e
	bl.n++
	b.bytes += int64(e.size)
	b.records++
}

// take returns the records queued since the last call, in order; the caller gives the
// blocks back with recycle.
func (b *buffer) take() *block {
	b.mu.Lock()
	head := b.qHead
	b.qHead, b.qTail = nil, nil
	b.mu.Unlock()
	return head
}

// recycle keeps drained blocks for reuse.
func (b *buffer) recycle(head *block) {
	b.mu.Lock()
	for bl := head; bl != nil && b.nFree < maxFreeBlocks; {
		next := bl.next
		bl.next = b.freeBlocks
		b.freeBlocks = bl
		b.nFree++
		bl = next
	}
	b.mu.Unlock()
}

// release returns the memory of reported records and wakes waiters. failed of them failed,
// the last with lastErr. recs are the records themselves: with a spool, those that were
// reported (done is true) are removed from it; records that Close gave up on (done is
// false) stay in it for the next start.
func (b *buffer) release(recs []entry, bytes int64, failed uint64, lastErr error, done bool) {
	b.mu.Lock()
	b.records -= int64(len(recs))
	b.bytes -= bytes
	if failed > 0 {
		b.failed += failed
		b.lastErr = lastErr
	}
	if s := b.spool; s != nil {
		if done {
			for i := range recs {
				if recs[i].spooled {
					s.ackLocked(recs[i].seq)
				}
			}
		}
		if s.backlogLocked() {
			s.wantLoad()
		}
	}
	b.notifyLocked()
	b.mu.Unlock()
}

// empty reports whether every accepted record was reported (or, after an aborted Close,
// given up on).
func (b *buffer) emptyLocked() bool {
	return b.records == 0 && (b.spool == nil || b.spool.pendingLocked() == 0)
}

// waitEmpty waits until every record accepted so far is reported, stopped closes
// (ErrClosed) or ctx ends.
func (b *buffer) waitEmpty(ctx context.Context, stopped <-chan struct{}) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.emptyLocked() {
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-stopped:
			b.mu.Lock()
			return ErrClosed
		case <-ctx.Done():
			b.mu.Lock()
			return fmt.Errorf("flushing producer: %w", ctx.Err())
		}
		b.mu.Lock()
	}
	return nil
}

// close stops accepting records.
func (b *buffer) close() {
	b.mu.Lock()
	b.closed = true
	b.notifyLocked()
	b.mu.Unlock()
}

// signal wakes the pipeline.
func (b *buffer) signal() {
	// Load first: while the pipeline has a wake-up pending, Puts only read the flag.
	if !b.wakeFlag.Load() && b.wakeFlag.CompareAndSwap(false, true) {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// forceSignal wakes the pipeline even if a wake-up is pending.
func (b *buffer) forceSignal() {
	b.wakeFlag.Store(true)
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// block is a fixed-size chunk of the queue from Put to the pipeline; blocks are reused, so
// the queue never reallocates and copies as it grows.
const maxFreeBlocks = 64

type block struct {
	entries [256]entry
	n       int
	next    *block
}

func (b *buffer) newBlockLocked() *block {
	bl := b.freeBlocks
	if bl != nil {
		b.freeBlocks = bl.next
		b.nFree--
		bl.next = nil
	} else {
		bl = new(block)
	}
	if b.qTail == nil {
		b.qHead = bl
	} else {
		b.qTail.next = bl
	}
	b.qTail = bl
	return bl
}

// copyLocked copies d into the arena (small records) or a fresh slice.
func (b *buffer) copyLocked(d []byte) []byte {
	n := len(d)
	if n > arenaMax {
		c := make([]byte, n)
		copy(c, d)
		return c
	}
	if cap(b.arena)-len(b.arena) < n {
		b.arena = make([]byte, 0, arenaChunk)
	}
	start := len(b.arena)
	b.arena = append(b.arena, d...)
	return b.arena[start:len(b.arena):len(b.arena)]
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
)

// ErrPendingUnacked is returned by Prepare when a previous prepared boundary is not yet
// acknowledged and the new boundary differs from it: a processor must acknowledge the
// records of a prepared batch before it prepares the next one.
var ErrPendingUnacked = errors.New("consumer: previous prepared boundary not acknowledged")

// errReleased is returned by writes on a lease this worker released.
var errReleased = errors.New("consumer: lease released")

// holder owns the state of one lease this worker holds. Every write on the lease — renewal,
// checkpoint, prepared boundary, release — goes through it, serialized by wmu, and passes
// the lease returned by the previous write, as the store's fencing requires.
//
// Two mutexes keep a slow or unanswered write from stalling readers: wmu is held across a
// write's store calls, each bounded by the lease call timeout (see [holder.callCtx]), and
// serializes writers only; mu guards the fields below it and is never held across a call,
// so Status, the lease scan and the metrics endpoint never wait for DynamoDB. Renewal does
// not queue behind another write either (see [holder.renew]).
type holder struct {
	c   *Consumer
	key string

	lost     atomic.Bool
	gone     atomic.Bool // released: a later change of the lease is not a loss
	lostOnce sync.Once
	onLost   func(reason string)
	onStored func(cp checkpoint.Checkpoint) // called, under wmu, after every stored checkpoint

	wmu sync.Mutex // held by the write in flight

	mu        sync.Mutex
	lease     checkpoint.Lease
	released  bool
	renewedAt time.Time
	written   checkpoint.Checkpoint  // last checkpoint stored
	pending   *checkpoint.Checkpoint // prepared boundary not yet covered by a checkpoint
}

func newHolder(c *Consumer, l checkpoint.Lease, onLost func(string)) *holder {
	h := &holder{c: c, key: l.Key, lease: l, onLost: onLost, renewedAt: c.cfg.clock.Now(), written: l.Checkpoint}
	if l.Pending != nil {
		p := *l.Pending
		h.pending = &p
	}
	return h
}

func isLeaseGone(err error) bool {
	return errors.Is(err, checkpoint.ErrLeaseLost) || errors.Is(err, checkpoint.ErrNotFound)
}

// markLost records that the lease is no longer this worker's; it stops the shard (once).
func (h *holder) markLost(reason string) {
	if h.gone.Load() {
		return
	}
	h.lost.Store(true)
	h.lostOnce.Do(func() {
		h.c.met.leaseLosses.Inc()
		h.c.log.Warn("lease lost", "shard", h.key, "reason", reason)
		if h.onLost != nil {
			h.onLost(reason)
		}
	})
}

// usableLocked reports why no write may be made, or nil. It needs mu.
func (h *holder) usableLocked() error {
	if h.lost.Load() {
		return fmt.Errorf("lease %s: %w", h.key, checkpoint.ErrLeaseLost)
	}
	if h.released {
		return fmt.Errorf("lease %s: %w", h.key, errReleased)
	}
	return nil
}

// callCtx bounds one call to the store made by a holder write: a request on a connection
// that never answers (packets dropped, nothing closed) is abandoned after the lease call
// timeout, so that the write can be retried on a new connection and wmu is released in
// time for the lease's renewal.
func (h *holder) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.c.cfg.leaseCallTimeout())
}

// counter returns the lease counter last written.
func (h *holder) counter() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease.Counter
}

func (h *holder) snapshot() (written checkpoint.Checkpoint, pending *checkpoint.Checkpoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending != nil {
		p := *h.pending
		pending = &p
	}
	return h.written, pending
}

// begin starts a write: it takes wmu and returns the lease to write from, or why no write
// may be made (then wmu is not held).
func (h *holder) begin() (checkpoint.Lease, error) {
	h.wmu.Lock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usableLocked(); err != nil {
		h.wmu.Unlock()
		return checkpoint.Lease{}, err
	}
	return h.lease, nil
}

// renew increments the lease counter. A refused renewal loses the lease; so does a lease
// that will not have been renewed for the failover time by the next renewal, since other
// workers may consider it expired by then.
//
// While another write on the lease is in flight (a checkpoint or a prepared boundary, which
// renew the lease too when they succeed), renew does not wait for it: it only checks that
// the lease is not about to expire. Waiting would hold up the renewal of every other lease
// of the worker.
func (h *holder) renew(ctx context.Context) {
	if !h.wmu.TryLock() {
		h.mu.Lock()
		h.expireLocked(h.c.cfg.clock.Now(), "a write on the lease is in flight")
		h.mu.Unlock()
		return
	}
	defer h.wmu.Unlock()
	h.mu.Lock()
	held, err := h.lease, h.usableLocked()
	h.mu.Unlock()
	if err != nil {
		return
	}
	cctx, cancel := h.callCtx(ctx)
	l, err := h.c.store.RenewLease(cctx, held)
	cancel()
	now := h.c.cfg.clock.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil:
		h.lease = l
		h.renewedAt = now
	case isLeaseGone(err):
		h.markLost("renewal refused: " + err.Error())
	default:
		h.c.log.Warn("renewing lease", "shard", h.key, "err", err)
		h.expireLocked(now, "")
	}
}

// expireLocked loses the lease when it will not have been renewed for the failover time by
// the next renewal. It needs mu.
func (h *holder) expireLocked(now time.Time, why string) {
	if h.usableLocked() != nil {
		return
	}
	// Stop before other workers may consider the lease expired: they count the failover
	// time from when they saw the last renewal, so never before h.renewedAt.
	if now.Add(h.c.cfg.renewInterval).Sub(h.renewedAt) >= h.c.cfg.failover {
		reason := "not renewed within the failover time"
		if why != "" {
			reason += " (" + why + ")"
		}
		h.markLost(reason)
	}
}

// checkpoint stores cp if it is beyond the last checkpoint written. While a prepared
// boundary is pending, checkpoints before it are held back: storing one would clear the
// boundary before the batch it guards is durable.
func (h *holder) checkpoint(ctx context.Context, d durable) error {
	cp := d.pos
	held, err := h.begin()
	if err != nil {
		return err
	}
	defer h.wmu.Unlock()
	h.mu.Lock()
	skip := cp.Compare(h.written) <= 0 || (h.pending != nil && cp.Compare(*h.pending) < 0)
	h.mu.Unlock()
	if skip {
		return nil
	}
	_, err = h.writeCheckpoint(ctx, held, d)
	return err
}

// recordChildren writes the shard's children on its lease, when the store can and there
// are any.
func (h *holder) recordChildren(ctx context.Context, children []string) error {
	cr, ok := h.c.store.(checkpoint.ChildRecorder)
	if !ok || len(children) == 0 {
		return nil
	}
	held, err := h.begin()
	if err != nil {
		return err
	}
	defer h.wmu.Unlock()
	cctx, cancel := h.callCtx(ctx)
	l, err := cr.SetChildShards(cctx, held, children)
	cancel()
	if err != nil {
		if isLeaseGone(err) {
			h.markLost("recording children refused: " + err.Error())
		}
		return fmt.Errorf("recording the children of shard %s: %w", h.key, err)
	}
	h.mu.Lock()
	h.lease = l
	h.renewedAt = h.c.cfg.clock.Now()
	h.mu.Unlock()
	return nil
}

// writeCheckpoint stores d from held and returns the lease as stored. It needs wmu.
func (h *holder) writeCheckpoint(ctx context.Context, held checkpoint.Lease, d durable) (checkpoint.Lease, error) {
	cp := d.pos
	cctx, cancel := h.callCtx(ctx)
	var (
		l   checkpoint.Lease
		err error
	)
	if d.state != nil {
		sc, ok := h.c.store.(checkpoint.StateCheckpointer)
		if !ok {
			cancel()
			return checkpoint.Lease{}, fmt.Errorf("checkpointing shard %s at %s: the processor keeps a state and the store %T cannot store it", h.key, cp, h.c.store)
		}
		l, err = sc.CheckpointWithState(cctx, held, cp, d.state)
	} else {
		l, err = h.c.store.Checkpoint(cctx, held, cp)
	}
	cancel()
	if err != nil {
		if isLeaseGone(err) {
			h.markLost("checkpoint refused: " + err.Error())
		}
		return checkpoint.Lease{}, fmt.Errorf("checkpointing shard %s at %s: %w", h.key, cp, err)
	}
	h.mu.Lock()
	h.lease = l
	h.written = cp
	h.pending = nil
	h.renewedAt = h.c.cfg.clock.Now()
	h.mu.Unlock()
	h.c.met.checkpoints.Inc()
	if h.onStored != nil {
		h.onStored(cp)
	}
	return l, nil
}

// prepare checkpoints acked (everything acknowledged so far) and then stores boundary as
// the pending checkpoint, both under the lease. Each of the two writes is bounded by the
// lease call timeout; a write that timed out returns an error and may be retried.
func (h *holder) prepare(ctx context.Context, ackedD durable, boundary checkpoint.Checkpoint) error {
	acked := ackedD.pos
	if err := boundary.Validate(); err != nil {
		return fmt.Errorf("preparing shard %s at %s: %w", h.key, boundary, err)
	}
	held, err := h.begin()
	if err != nil {
		return err
	}
	defer h.wmu.Unlock()
	h.mu.Lock()
	written, pending := h.written, h.pending
	h.mu.Unlock()
	if pending != nil && acked.Compare(*pending) < 0 {
		// The pending boundary is not durable yet: only re-preparing the same one is allowed,
		// and the checkpoint must not clear it.
		if boundary.Compare(*pending) != 0 {
			return fmt.Errorf("preparing shard %s at %s while %s is pending: %w", h.key, boundary, *pending, ErrPendingUnacked)
		}
	} else if acked.Compare(written) > 0 {
		if held, err = h.writeCheckpoint(ctx, held, ackedD); err != nil {
			return err
		}
	}
	cctx, cancel := h.callCtx(ctx)
	l, err := h.c.store.PrepareCheckpoint(cctx, held, boundary)
	cancel()
	if err != nil {
		if isLeaseGone(err) {
			h.markLost("prepare refused: " + err.Error())
		}
		return fmt.Errorf("preparing shard %s at %s: %w", h.key, boundary, err)
	}
	h.mu.Lock()
	h.lease = l
	b := boundary
	h.pending = &b
	h.renewedAt = h.c.cfg.clock.Now()
	h.mu.Unlock()
	return nil
}

// release gives the lease up so that any worker can take it at once. Afterwards the holder
// makes no write.
func (h *holder) release(ctx context.Context) error {
	held, err := h.begin()
	if err != nil {
		return err
	}
	defer h.wmu.Unlock()
	h.mu.Lock()
	h.released = true
	h.gone.Store(true)
	h.mu.Unlock()
	cctx, cancel := h.callCtx(ctx)
	defer cancel()
	if err := h.c.store.ReleaseLease(cctx, held); err != nil {
		if isLeaseGone(err) {
			h.lost.Store(true)
		}
		return fmt.Errorf("releasing lease %s: %w", h.key, err)
	}
	return nil
}

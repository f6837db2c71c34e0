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
// checkpoint, prepared boundary, release — goes through it, serialized by its mutex, and
// passes the lease returned by the previous write, as the store's fencing requires.
type holder struct {
	c   *Consumer
	key string

	lost     atomic.Bool
	gone     atomic.Bool // released: a later change of the lease is not a loss
	lostOnce sync.Once
	onLost   func(reason string)
	onStored func(cp checkpoint.Checkpoint) // called, under mu, after every stored checkpoint

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

// usableLocked reports why no write may be made, or nil.
func (h *holder) usableLocked() error {
	if h.lost.Load() {
		return fmt.Errorf("lease %s: %w", h.key, checkpoint.ErrLeaseLost)
	}
	if h.released {
		return fmt.Errorf("lease %s: %w", h.key, errReleased)
	}
	return nil
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

// renew increments the lease counter. A refused renewal loses the lease; so does a lease
// that will not have been renewed for the failover time by the next renewal, since other
// workers may consider it expired by then.
func (h *holder) renew(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.usableLocked() != nil {
		return
	}
	l, err := h.c.store.RenewLease(ctx, h.lease)
	now := h.c.cfg.clock.Now()
	switch {
	case err == nil:
		h.lease = l
		h.renewedAt = now
	case isLeaseGone(err):
		h.markLost("renewal refused: " + err.Error())
	default:
		h.c.log.Warn("renewing lease", "shard", h.key, "err", err)
		// Stop before other workers may consider the lease expired: they count the failover
		// time from when they saw the last renewal, so never before h.renewedAt.
		if now.Add(h.c.cfg.renewInterval).Sub(h.renewedAt) >= h.c.cfg.failover {
			h.markLost("not renewed within the failover time")
		}
	}
}

// checkpoint stores cp if it is beyond the last checkpoint written. While a prepared
// boundary is pending, checkpoints before it are held back: storing one would clear the
// boundary before the batch it guards is durable.
func (h *holder) checkpoint(ctx context.Context, cp checkpoint.Checkpoint) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usableLocked(); err != nil {
		return err
	}
	if cp.Compare(h.written) <= 0 || (h.pending != nil && cp.Compare(*h.pending) < 0) {
		return nil
	}
	return h.writeCheckpointLocked(ctx, cp)
}

func (h *holder) writeCheckpointLocked(ctx context.Context, cp checkpoint.Checkpoint) error {
	l, err := h.c.store.Checkpoint(ctx, h.lease, cp)
	if err != nil {
		if isLeaseGone(err) {
			h.markLost("checkpoint refused: " + err.Error())
		}
		return fmt.Errorf("checkpointing shard %s at %s: %w", h.key, cp, err)
	}
	h.lease = l
	h.written = cp
	h.pending = nil
	h.renewedAt = h.c.cfg.clock.Now()
	h.c.met.checkpoints.Inc()
	if h.onStored != nil {
		h.onStored(cp)
	}
	return nil
}

// prepare checkpoints acked (everything acknowledged so far) and then stores boundary as
// the pending checkpoint, both under the lease.
func (h *holder) prepare(ctx context.Context, acked, boundary checkpoint.Checkpoint) error {
	if err := boundary.Validate(); err != nil {
		return fmt.Errorf("preparing shard %s at %s: %w", h.key, boundary, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usableLocked(); err != nil {
		return err
	}
	if h.pending != nil && acked.Compare(*h.pending) < 0 {
		// The pending boundary is not durable yet: only re-preparing the same one is allowed,
		// and the checkpoint must not clear it.
		if boundary.Compare(*h.pending) != 0 {
			return fmt.Errorf("preparing shard %s at %s while %s is pending: %w", h.key, boundary, *h.pending, ErrPendingUnacked)
		}
	} else if acked.Compare(h.written) > 0 {
		if err := h.writeCheckpointLocked(ctx, acked); err != nil {
			return err
		}
	}
	l, err := h.c.store.PrepareCheckpoint(ctx, h.lease, boundary)
	if err != nil {
		if isLeaseGone(err) {
			h.markLost("prepare refused: " + err.Error())
		}
		return fmt.Errorf("preparing shard %s at %s: %w", h.key, boundary, err)
	}
	h.lease = l
	b := boundary
	h.pending = &b
	h.renewedAt = h.c.cfg.clock.Now()
	return nil
}

// release gives the lease up so that any worker can take it at once. Afterwards the holder
// makes no write.
func (h *holder) release(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usableLocked(); err != nil {
		return err
	}
	h.released = true
	h.gone.Store(true)
	if err := h.c.store.ReleaseLease(ctx, h.lease); err != nil {
		if isLeaseGone(err) {
			h.lost.Store(true)
		}
		return fmt.Errorf("releasing lease %s: %w", h.key, err)
	}
	return nil
}

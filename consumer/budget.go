package consumer

import (
	"context"
	"sync"
)

// recordOverhead is what a delivered record costs in memory beyond its data: the Record
// value and its strings' headers, as the budget counts it.
const recordOverhead = 160

// byteBudget bounds the bytes of records the worker read and the processors have not
// acknowledged yet, over all its shards: a reader waits for room before it hands a batch
// over (backpressure), and a batch's bytes come back when it is fully acknowledged, or when
// its shard stops. A batch larger than the whole budget is let through alone, so that a
// single large response cannot stall a shard for good.
type byteBudget struct {
	max int64

	mu      sync.Mutex
	used    int64
	changed chan struct{} // closed and replaced when bytes come back
	waiting int           // readers waiting for room
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max, changed: make(chan struct{})}
}

// acquire waits until n bytes fit (or nothing is in use), or until ctx ends.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	for b.used > 0 && b.used+n > b.max {
		ch := b.changed
		b.waiting++
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			b.mu.Lock()
			b.waiting--
			b.mu.Unlock()
			return context.Cause(ctx)
		}
		b.mu.Lock()
		b.waiting--
	}
	b.used += n
	b.mu.Unlock()
	return nil
}

// release gives n bytes back.
func (b *byteBudget) release(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// inUse returns the bytes held and the readers waiting.
func (b *byteBudget) inUse() (int64, int) {
	if b == nil {
		return 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.waiting
}

// batchBytes is what a batch counts against the budget.
func batchBytes(recs []Record, size int) int64 {
	return int64(size) + int64(len(recs))*recordOverhead
}

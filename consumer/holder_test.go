package consumer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

// blackHoleStore is a lease table whose PrepareCheckpoint and Checkpoint calls on one lease
// are never answered while hole is open: they wait for their context, as a request on a
// black-holed connection does.
type blackHoleStore struct {
	checkpoint.Store
	key     string
	hole    chan struct{} // closed: calls are answered again
	entered chan struct{} // receives when a call enters the hole
}

func (s *blackHoleStore) wait(ctx context.Context, key string) error {
	if key != s.key {
		return nil
	}
	select {
	case <-s.hole:
		return nil
	default:
	}
	select {
	case s.entered <- struct{}{}:
	default:
	}
	select {
	case <-s.hole:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *blackHoleStore) PrepareCheckpoint(ctx context.Context, held checkpoint.Lease, p checkpoint.Checkpoint) (checkpoint.Lease, error) {
	if err := s.wait(ctx, held.Key); err != nil {
		return checkpoint.Lease{}, err
	}
	return s.Store.PrepareCheckpoint(ctx, held, p)
}

func (s *blackHoleStore) Checkpoint(ctx context.Context, held checkpoint.Lease, cp checkpoint.Checkpoint) (checkpoint.Lease, error) {
	if err := s.wait(ctx, held.Key); err != nil {
		return checkpoint.Lease{}, err
	}
	return s.Store.Checkpoint(ctx, held, cp)
}

// TestUnansweredPrepareIsBounded: a Prepare whose request is never answered returns at the
// lease call timeout (failover/3) even when the caller's context has no deadline; while it
// waits, Status, the lease counter and the renewal of the worker's other lease do not wait
// for it, and a retry once the table answers again succeeds.
func TestUnansweredPrepareIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		ids := s.addShards(2)
		stuck, other := ids[0], ids[1]
		s.put(stuck, "k", []byte("a"))
		store := &blackHoleStore{Store: memory.New(), key: stuck, hole: make(chan struct{}), entered: make(chan struct{}, 1)}
		pl := newProcLog(false)
		var (
			mu        sync.Mutex
			preparers = map[string]Preparer{}
		)
		preparer := func(shard string) Preparer { mu.Lock(); defer mu.Unlock(); return preparers[shard] }
		pl.onInit = func(_ context.Context, in InitInput) error {
			mu.Lock()
			preparers[in.ShardID] = in.Preparer
			mu.Unlock()
			return nil
		}
		prepared := make(chan error, 1)
		pl.onRecords = func(_ context.Context, shard string, b *Batch) error {
			if shard == stuck {
				go func() { prepared <- preparer(stuck).Prepare(context.Background(), b.Records[0].Position()) }()
			}
			return nil
		}
		const failover = 3 * time.Second
		c := newTestConsumer(t, s.api(), store, pl, WithFailoverTime(failover))
		stop := started(t, c)
		synctest.Wait()
		<-store.entered
		start := time.Now()
		otherBefore := lease(t, store, other).Counter

		// Readers answer at once although the write lock of the stuck lease is held.
		if st := c.Status(); len(st.Shards) != 2 {
			t.Fatalf("Status lists %d shards, want 2", len(st.Shards))
		}
		time.Sleep(failover / 3 / 2)
		synctest.Wait()
		if st := c.Status(); len(st.Shards) != 2 {
			t.Fatalf("Status during the unanswered prepare lists %d shards, want 2", len(st.Shards))
		}

		var err error
		select {
		case err = <-prepared:
		case <-time.After(time.Minute):
			t.Fatal("Prepare did not return within a minute of an unanswered request")
		}
		if waited := time.Since(start); waited > failover/3 {
			t.Errorf("Prepare returned after %v, want at most the lease call timeout %v", waited, failover/3)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Prepare returned %v, want a deadline error", err)
		}
		time.Sleep(failover / 3) // a renewal round
		synctest.Wait()
		if got := lease(t, store, other).Counter; got <= otherBefore {
			t.Errorf("the other lease's counter stayed at %d while a prepare on %s was unanswered", got, stuck)
		}
		if counterValue(c.met.leaseLosses) != 0 {
			t.Errorf("%v leases lost, want none", counterValue(c.met.leaseLosses))
		}

		// The table answers again: the retry succeeds and the boundary is stored.
		close(store.hole)
		boundary := pl.records(stuck)[0].Position()
		if err := preparer(stuck).Prepare(context.Background(), boundary); err != nil {
			t.Fatalf("Prepare after the table answers again: %v", err)
		}
		if got := lease(t, store, stuck); got.Pending == nil || *got.Pending != boundary {
			t.Fatalf("lease %+v, want pending %s", got, boundary)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRenewalDoesNotWaitForAStuckWrite: while a checkpoint write is unanswered, renewal of
// that lease does not block on it; the lease is given up before the failover time passes
// without a successful write, never later.
func TestRenewalDoesNotWaitForAStuckWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestConsumer(t, newTestStream().api(), memory.New(), newProcLog(true), WithFailoverTime(3*time.Second))
		store := &blackHoleStore{Store: c.store, key: "s", hole: make(chan struct{}), entered: make(chan struct{}, 1)}
		defer close(store.hole)
		c.store = store
		ctx := context.Background()
		if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: "s", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
			t.Fatal(err)
		}
		l, err := store.TakeLease(ctx, lease(t, store, "s"), "w1")
		if err != nil {
			t.Fatal(err)
		}
		lost := make(chan string, 1)
		h := newHolder(c, l, func(r string) { lost <- r })
		go func() { _ = h.checkpoint(context.Background(), durable{pos: checkpoint.Checkpoint{Sequence: "1"}}) }()
		<-store.entered
		start := time.Now()
		h.renew(ctx) // returns at once: a write is in flight, the lease is not expiring yet
		if time.Since(start) != 0 || h.lost.Load() {
			t.Fatalf("renew waited %v for the stuck write (lost %v)", time.Since(start), h.lost.Load())
		}
		// The checkpoint gives up after 1s; a renewal then gets through.
		time.Sleep(1500 * time.Millisecond)
		h.renew(ctx)
		if h.lost.Load() {
			t.Fatal("lease lost although renewed in time")
		}
		if got := lease(t, store, "s").Counter; got != l.Counter+1 {
			t.Fatalf("counter %d after the renewal, want %d", got, l.Counter+1)
		}
		// A write stuck again, and a renewal skipped when the next one would come too late:
		// the lease is given up.
		go func() { _ = h.checkpoint(context.Background(), durable{pos: checkpoint.Checkpoint{Sequence: "2"}}) }()
		<-store.entered
		time.Sleep(900 * time.Millisecond)
		h.renew(ctx) // 0.9s + 1s < 3s since the last renewal: kept
		if h.lost.Load() {
			t.Fatal("lease given up early")
		}
		h.mu.Lock()
		h.renewedAt = time.Now().Add(-2500 * time.Millisecond)
		h.mu.Unlock()
		h.renew(ctx)
		select {
		case r := <-lost:
			t.Logf("lost: %s", r)
		default:
			t.Fatal("the lease was kept although a write in flight kept it from being renewed in time")
		}
	})
}

package consumer

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kinlog/kinlog/checkpoint/memory"
)

func TestByteBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newByteBudget(100)
		ctx := context.Background()
		if err := b.acquire(ctx, 60); err != nil {
			t.Fatal(err)
		}
		got := make(chan struct{})
		go func() {
			_ = b.acquire(ctx, 60) // waits: 120 > 100
			close(got)
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("acquired past the budget")
		default:
		}
		if used, waiting := b.inUse(); used != 60 || waiting != 1 {
			t.Fatalf("in use %d, waiting %d", used, waiting)
		}
		b.release(60)
		synctest.Wait()
		<-got
		b.release(60)
		// A batch larger than the whole budget goes through alone.
		if err := b.acquire(ctx, 500); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- b.acquire(cctx, 1) }()
		synctest.Wait()
		cancel()
		if err := <-errc; err == nil {
			t.Fatal("a cancelled wait acquired")
		}
		if _, waiting := b.inUse(); waiting != 0 {
			t.Fatalf("%d waiting after the cancel", waiting)
		}
	})
}

// TestUnackedBytesBoundReaders runs two shards of 100 KiB records under a 1 MiB bound with
// a processor that acknowledges nothing until told: the readers stop once about 1 MiB is
// delivered over both shards (backpressure), whatever the batch cap; once it acknowledges,
// everything is read. A shard whose lease is lost gives its bytes back.
func TestUnackedBytesBoundReaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		ids := s.addShards(2)
		rec := bytes.Repeat([]byte("r"), 100<<10)
		for _, id := range ids {
			for range 40 {
				s.put(id, "k", rec)
			}
		}
		store := memory.New()
		pl := newProcLog(false)
		var mu sync.Mutex
		var held []*Batch
		pl.onRecords = func(_ context.Context, _ string, b *Batch) error {
			mu.Lock()
			held = append(held, b)
			mu.Unlock()
			return nil
		}
		const bound = 1 << 20
		c := newTestConsumer(t, s.api(), store, pl, WithMaxUnackedBytes(bound), WithMaxRecords(2))
		stop := started(t, c)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		delivered := len(pl.records(""))
		used, waiting := c.budget.inUse()
		perRecord := int64(len(rec) + recordOverhead)
		if delivered == 80 || int64(delivered)*perRecord > bound+2*perRecord || used > bound || waiting != 2 {
			t.Fatalf("%d of 80 records delivered (%d bytes in use, %d readers waiting) under a %d-byte bound", delivered, used, waiting, bound)
		}
		// Acknowledge as they come: everything is read.
		for i := 0; i < 100 && len(pl.records("")) < 80; i++ {
			mu.Lock()
			for _, b := range held {
				b.Ack()
			}
			held = nil
			mu.Unlock()
			time.Sleep(time.Second)
			synctest.Wait()
		}
		if got := len(pl.records("")); got != 80 {
			t.Fatalf("%d of 80 records delivered after acknowledging", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if used, _ := c.budget.inUse(); used != 0 {
			t.Fatalf("%d bytes still counted after the shards stopped", used)
		}
	})
}

// TestUnackedBytesReleasedAtShutdown stops a worker whose processor acknowledged nothing:
// the bytes of its shards' unacknowledged batches come back to the bound.
func TestUnackedBytesReleasedAtShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		for range 10 {
			s.put(id, "k", bytes.Repeat([]byte("r"), 10<<10))
		}
		pl := newProcLog(false)
		c := newTestConsumer(t, s.api(), memory.New(), pl, WithMaxUnackedBytes(1<<20), WithShutdownTimeout(time.Second))
		stop := started(t, c)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if used, _ := c.budget.inUse(); used == 0 || len(pl.records(id)) != 10 {
			t.Fatalf("%d bytes in use with %d records delivered and none acknowledged", used, len(pl.records(id)))
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if used, _ := c.budget.inUse(); used != 0 {
			t.Fatalf("%d bytes still counted after shutdown", used)
		}
	})
}

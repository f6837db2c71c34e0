package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/goleak"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

func TestMain(m *testing.M) {
	if maybeRunWorkerProcess() {
		return
	}
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of the AWS SDK's HTTP client (integration tests).
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

// These tests run inside testing/synctest bubbles: time is virtual, synctest.Wait returns
// once every goroutine of the consumer is blocked, and time.Sleep advances the virtual
// clock by exactly the given duration (it stands in for the passing of time, never for
// synchronisation).

const testStreamName = "test-stream"

func newTestConsumer(t *testing.T, api KinesisAPI, store checkpoint.Store, pl *procLog, opts ...Option) *Consumer {
	t.Helper()
	base := []Option{
		WithWorkerID("w1"),
		WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}
	c, err := New(api, store, testStreamName, pl.factory(), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seqs(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Position().String()
	}
	return out
}

func kinds(evs []event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.kind
	}
	return out
}

func TestGracefulShutdownCheckpointsAndReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		ids := s.addShards(2)
		want := map[string][]string{}
		for i := range 5 {
			for _, id := range ids {
				want[id] = append(want[id], s.put(id, fmt.Sprint("k", i), []byte("x")))
			}
		}
		store := memory.New()
		pl := newProcLog(true)
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		synctest.Wait()
		if got := len(c.Status().Shards); got != 2 {
			t.Fatalf("holding %d leases, want 2", got)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
		for _, id := range ids {
			if got := seqs(pl.records(id)); !slices.Equal(got, want[id]) {
				t.Errorf("shard %s delivered %v, want %v", id, got, want[id])
			}
			l := lease(t, store, id)
			if l.Owner != "" {
				t.Errorf("shard %s still owned by %q after shutdown", id, l.Owner)
			}
			if l.Checkpoint.Sequence != want[id][4] {
				t.Errorf("shard %s checkpoint %v, want the last record %s", id, l.Checkpoint, want[id][4])
			}
			if got := kinds(pl.of(id, "")); !slices.Equal(got, []string{"init", "records", "shutdown"}) {
				t.Errorf("shard %s callbacks %v, want init, records, shutdown", id, got)
			}
		}
		if len(c.Status().Shards) != 0 {
			t.Errorf("Status lists shards after Run returned")
		}
	})
}

func TestShutdownWaitsForProcessorAndCheckpointsItsAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		var last string
		for i := range 3 {
			last = s.put(id, "k", []byte{byte(i)})
		}
		store := memory.New()
		pl := newProcLog(false)
		var held []*Batch
		pl.onRecords = func(_ context.Context, _ string, b *Batch) error {
			held = append(held, b)
			return nil
		}
		// The processor makes its buffer durable in Shutdown, taking 5s, and acks it.
		pl.onShutdown = func(ctx context.Context, _ string) error {
			select {
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
			for _, b := range held {
				b.Ack()
			}
			return nil
		}
		c := newTestConsumer(t, s.api(), store, pl, WithCheckpointInterval(time.Hour))
		stop := started(t, c)
		synctest.Wait()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		l := lease(t, store, id)
		if l.Checkpoint.Sequence != last || l.Owner != "" {
			t.Fatalf("after shutdown lease is %+v, want checkpoint %s and no owner", l, last)
		}
	})
}

func TestShutdownTimeoutBoundsProcessor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("x"))
		store := memory.New()
		pl := newProcLog(false)
		pl.onShutdown = func(ctx context.Context, _ string) error {
			<-ctx.Done() // never finishes by itself
			return ctx.Err()
		}
		c := newTestConsumer(t, s.api(), store, pl, WithShutdownTimeout(7*time.Second))
		stop := started(t, c)
		synctest.Wait()
		begin := time.Now()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(begin); took != 7*time.Second {
			t.Fatalf("shutdown took %v, want the 7s shutdown timeout", took)
		}
		if l := lease(t, store, id); l.Owner != "" || l.Checkpoint.Sequence != checkpoint.TrimHorizon {
			t.Fatalf("lease after timed-out shutdown: %+v, want released at TRIM_HORIZON", l)
		}
	})
}

func TestCappedCheckpointWithOutOfOrderAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		var put []string
		for i := range 6 {
			put = append(put, s.put(id, "k", []byte{byte(i)}))
		}
		store := memory.New()
		pl := newProcLog(false)
		c := newTestConsumer(t, s.api(), store, pl, WithMaxRecords(2))
		stop := started(t, c)
		time.Sleep(time.Second) // three reads, 200ms apart
		synctest.Wait()
		batches := pl.of(id, "records")
		if len(batches) != 3 {
			t.Fatalf("%d batches delivered, want 3", len(batches))
		}
		checkpointAfter := func(step string, want string) {
			t.Helper()
			time.Sleep(DefaultCheckpointInterval)
			synctest.Wait()
			if got := lease(t, store, id).Checkpoint.Sequence; got != want {
				t.Fatalf("%s: checkpoint %s, want %s", step, got, want)
			}
		}
		batches[2].batch.Ack()
		checkpointAfter("third batch acked", checkpoint.TrimHorizon)
		batches[1].batch.AckThrough(1)
		checkpointAfter("second batch partly acked", checkpoint.TrimHorizon)
		batches[0].batch.AckThrough(1)
		checkpointAfter("first record acked", put[0])
		batches[0].batch.Ack()
		checkpointAfter("first batch acked", put[2]) // through the acked record of batch 2
		batches[1].batch.Ack()
		checkpointAfter("everything acked", put[5])
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBackpressureStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		for i := range 5 {
			s.put(id, "k", []byte{byte(i)})
		}
		api := s.api()
		pl := newProcLog(false)
		c := newTestConsumer(t, api, memory.New(), pl, WithMaxRecords(1), WithMaxBatchesInFlight(2))
		stop := started(t, c)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		batches := pl.of(id, "records")
		if len(batches) != 2 {
			t.Fatalf("%d batches delivered with a cap of 2 and no acks, want 2", len(batches))
		}
		if n := len(api.callsOf("GetRecords", id)); n != 3 {
			// Two delivered; the third read is held until there is room.
			t.Fatalf("%d GetRecords calls while full, want 3", n)
		}
		batches[1].batch.Ack() // a later batch: frees nothing
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(pl.of(id, "records")); n != 2 {
			t.Fatalf("%d batches after acking the second, want still 2", n)
		}
		batches[0].batch.Ack()
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(pl.of(id, "records")); n != 4 {
			t.Fatalf("%d batches after acking the first, want 4", n)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLeaseLostMidBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		for i := range 3 {
			s.put(id, "k", []byte{byte(i)})
		}
		store := memory.New()
		pl := newProcLog(false)
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		synctest.Wait()
		batches := pl.of(id, "records")
		if len(batches) != 1 {
			t.Fatalf("%d batches, want 1", len(batches))
		}
		// Another worker steals the lease while the batch is in flight.
		l := lease(t, store, id)
		if _, err := store.TakeLease(context.Background(), l, "thief"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(c.cfg.renewInterval)
		synctest.Wait()
		if got := kinds(pl.of(id, "")); !slices.Equal(got, []string{"init", "records", "lost"}) {
			t.Fatalf("callbacks %v, want init, records, lost", got)
		}
		// The processor acknowledges after losing the lease: nothing may be checkpointed.
		batches[0].batch.Ack()
		time.Sleep(2 * DefaultCheckpointInterval)
		synctest.Wait()
		after := lease(t, store, id)
		if after.Owner != "thief" || after.Checkpoint.Sequence != checkpoint.TrimHorizon || after.Counter != l.Counter+1 {
			t.Fatalf("lease after the loss: %+v, want thief's, untouched since its take", after)
		}
		if len(c.Status().Shards) != 0 {
			t.Fatalf("Status still lists the lost shard")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := lease(t, store, id); got.Owner != "thief" {
			t.Fatalf("shutdown released a lease it lost: %+v", got)
		}
	})
}

func TestRenewalIndependentOfSlowProcessor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("x"))
		store := memory.New()
		pl := newProcLog(true)
		release := make(chan struct{})
		pl.onRecords = func(ctx context.Context, _ string, _ *Batch) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		synctest.Wait()
		before := lease(t, store, id)
		time.Sleep(5 * DefaultFailoverTime)
		synctest.Wait()
		after := lease(t, store, id)
		if after.Owner != "w1" || after.Counter < before.Counter+10 {
			t.Fatalf("lease after 5 failover times of a blocked processor: %+v (before %+v), want renewed ~15 times", after, before)
		}
		if n := len(pl.of(id, "lost")); n != 0 {
			t.Fatalf("lease lost while the processor was slow")
		}
		close(release)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTakesAllAvailableLeasesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		s.addShards(16)
		store := memory.New()
		c := newTestConsumer(t, s.api(), store, newProcLog(true))
		begin := time.Now()
		stop := started(t, c)
		synctest.Wait()
		if got := len(c.Status().Shards); got != 16 || time.Since(begin) != 0 {
			t.Fatalf("holding %d leases after %v, want all 16 in the first lease cycle", got, time.Since(begin))
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestExpiredLeaseTakenAfterFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		store := memory.New()
		ctx := context.Background()
		if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: id, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.TakeLease(ctx, lease(t, store, id), "dead-worker"); err != nil {
			t.Fatal(err)
		}
		c := newTestConsumer(t, s.api(), store, newProcLog(true))
		stop := started(t, c)
		time.Sleep(DefaultFailoverTime - time.Second)
		synctest.Wait()
		if got := lease(t, store, id).Owner; got != "dead-worker" {
			t.Fatalf("lease taken from %q before the failover time", got)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := lease(t, store, id).Owner; got != "w1" {
			t.Fatalf("lease owned by %q a second after it expired, want w1", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// leaseCounts returns how many leases each owner holds.
func leaseCounts(t *testing.T, store checkpoint.Store) map[string]int {
	t.Helper()
	ls, err := store.ListLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, l := range ls {
		m[l.Owner]++
	}
	return m
}

func TestBalancesTwoThenThreeWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		s.addShards(16)
		store := memory.New()
		pl := newProcLog(true)
		var cs []*Consumer
		var stops []func() error
		start := func(id string) {
			c := newTestConsumer(t, s.api(), store, pl, WithWorkerID(id))
			cs = append(cs, c)
			stops = append(stops, started(t, c))
		}
		waitBalanced := func(want map[string]int) {
			t.Helper()
			for range 60 {
				time.Sleep(time.Second)
				synctest.Wait()
				got := leaseCounts(t, store)
				if fmt.Sprint(got) == fmt.Sprint(want) {
					return
				}
			}
			t.Fatalf("leases %v after 60s, want %v", leaseCounts(t, store), want)
		}
		takes := func() float64 {
			var n float64
			for _, c := range cs {
				n += counterValue(c.met.leaseTakes)
			}
			return n
		}

		start("w1")
		synctest.Wait()
		if got := leaseCounts(t, store); got["w1"] != 16 {
			t.Fatalf("single worker holds %v, want all 16", got)
		}
		start("w2")
		waitBalanced(map[string]int{"w1": 8, "w2": 8})
		if got := counterValue(cs[1].met.leaseSteals); got != 8 {
			t.Errorf("w2 stole %v leases, want exactly 8", got)
		}
		// Balanced: no lease moves any more.
		before := takes()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if after := takes(); after != before {
			t.Fatalf("%v more takes after balancing: thrashing", after-before)
		}

		start("w3")
		var got map[string]int
		for range 60 {
			time.Sleep(time.Second)
			synctest.Wait()
			got = leaseCounts(t, store)
			if got["w3"] == 5 || got["w3"] == 6 {
				break
			}
		}
		counts := []int{got["w1"], got["w2"], got["w3"]}
		if slices.Max(counts)-slices.Min(counts) > 1 || counts[0]+counts[1]+counts[2] != 16 {
			t.Fatalf("three workers hold %v, want an even spread of 16", got)
		}
		before = takes()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if after := takes(); after != before {
			t.Fatalf("%v more takes after balancing three workers: thrashing", after-before)
		}
		for _, stop := range stops {
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}
		if got := leaseCounts(t, store); got[""] != 16 {
			t.Fatalf("after shutting every worker down: %v, want 16 released", got)
		}
	})
}

func TestReleasedLeasesTakenByPeerAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		s.addShards(4)
		store := memory.New()
		pl := newProcLog(true)
		c1 := newTestConsumer(t, s.api(), store, pl, WithWorkerID("w1"))
		stop1 := started(t, c1)
		synctest.Wait()
		c2 := newTestConsumer(t, s.api(), store, pl, WithWorkerID("w2"))
		stop2 := started(t, c2)
		for range 10 {
			time.Sleep(time.Second)
		}
		synctest.Wait()
		if got := leaseCounts(t, store); got["w1"] != 2 || got["w2"] != 2 {
			t.Fatalf("leases %v, want 2 each", got)
		}
		if err := stop1(); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		time.Sleep(c2.cfg.takeInterval)
		synctest.Wait()
		if got := leaseCounts(t, store); got["w2"] != 4 {
			t.Fatalf("%v after w1 shut down, want w2 to hold all 4 within one lease cycle (%v)", got, time.Since(begin))
		}
		if err := stop2(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestExpiredIteratorRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		var put []string
		for i := range 4 {
			put = append(put, s.put(id, "k", []byte{byte(i)}))
		}
		api := s.api()
		n := 0
		api.getRecords = func(ctx context.Context, in *kinesis.GetRecordsInput) (*kinesis.GetRecordsOutput, error) {
			n++
			if n == 2 {
				return nil, &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
			}
			return s.getRecords(ctx, in)
		}
		pl := newProcLog(true)
		c := newTestConsumer(t, api, memory.New(), pl, WithMaxRecords(2))
		stop := started(t, c)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := seqs(pl.records(id)); !slices.Equal(got, put) {
			t.Fatalf("delivered %v, want each record once: %v", got, put)
		}
		its := api.callsOf("GetShardIterator", id)
		if len(its) != 2 {
			t.Fatalf("%d GetShardIterator calls, want 2", len(its))
		}
		second := its[1].in.(*kinesis.GetShardIteratorInput)
		if second.ShardIteratorType != types.ShardIteratorTypeAfterSequenceNumber || aws.ToString(second.StartingSequenceNumber) != put[1] {
			t.Fatalf("new iterator %s %s, want AFTER_SEQUENCE_NUMBER %s (the last record delivered)", second.ShardIteratorType, aws.ToString(second.StartingSequenceNumber), put[1])
		}
		if got := counterVecValue(c.met.readErrors, "expired_iterator"); got != 1 {
			t.Fatalf("expired_iterator errors = %v, want 1", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestThrottlingBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		want := []string{s.put(id, "k", []byte("a")), s.put(id, "k", []byte("b"))}
		api := s.api()
		var at []time.Time
		api.getRecords = func(ctx context.Context, in *kinesis.GetRecordsInput) (*kinesis.GetRecordsOutput, error) {
			at = append(at, time.Now())
			if len(at) <= 4 {
				return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded")}
			}
			return s.getRecords(ctx, in)
		}
		pl := newProcLog(true)
		c := newTestConsumer(t, api, memory.New(), pl)
		stop := started(t, c)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := seqs(pl.records(id)); !slices.Equal(got, want) {
			t.Fatalf("delivered %v, want %v once", got, want)
		}
		// Waits are jittered in [d/2, d) with d = 200ms, 400ms, 800ms, 1.6s.
		for i := 1; i <= 4; i++ {
			gap := at[i].Sub(at[i-1])
			lo := MinGetRecordsInterval << (i - 1) / 2
			if gap < lo || gap >= 2*lo {
				t.Errorf("wait %d after throttling: %v, want in [%v, %v)", i, gap, lo, 2*lo)
			}
		}
		if n := len(api.callsOf("GetShardIterator", id)); n != 1 {
			t.Errorf("%d GetShardIterator calls: a throttled iterator is still valid, want 1", n)
		}
		if got := counterVecValue(c.met.readErrors, "throttled"); got != 4 {
			t.Errorf("throttled errors = %v, want 4", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAdaptiveIdleTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		api := s.api()
		c := newTestConsumer(t, api, memory.New(), newProcLog(true))
		begin := time.Now()
		stop := started(t, c)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		var offsets []time.Duration
		for _, cl := range api.callsOf("GetRecords", id) {
			offsets = append(offsets, cl.at.Sub(begin))
		}
		// First read at once, then 200ms, 400ms, 800ms, and the 1s idle time from then on.
		want := []time.Duration{0, 200 * time.Millisecond, 600 * time.Millisecond, 1400 * time.Millisecond, 2400 * time.Millisecond, 3400 * time.Millisecond, 4400 * time.Millisecond}
		if !slices.Equal(offsets, want) {
			t.Fatalf("GetRecords at %v, want %v", offsets, want)
		}
		// A record resets the wait to 200ms.
		s.put(id, "k", []byte("x"))
		time.Sleep(time.Second)
		synctest.Wait()
		calls := api.callsOf("GetRecords", id)
		last := calls[len(calls)-1].at.Sub(calls[len(calls)-2].at)
		if last != 200*time.Millisecond {
			t.Fatalf("read after a non-empty read came %v later, want 200ms", last)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProcessorErrorReleasesLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		first := s.put(id, "k", []byte("a"))
		s.put(id, "k", []byte("b"))
		store := memory.New()
		pl := newProcLog(false)
		fail := true
		pl.onRecords = func(_ context.Context, _ string, b *Batch) error {
			if fail {
				b.AckThrough(1) // the first record is durable, then the sink fails
				return errors.New("sink unavailable")
			}
			b.Ack()
			return nil
		}
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		synctest.Wait()
		if got := kinds(pl.of(id, "")); !slices.Equal(got, []string{"init", "records", "shutdown"}) {
			t.Fatalf("callbacks %v, want init, records, shutdown", got)
		}
		l := lease(t, store, id)
		if l.Owner != "" || l.Checkpoint.Sequence != first {
			t.Fatalf("lease after a processor error: %+v, want released at %s", l, first)
		}
		if got := counterValue(c.met.processorErrors); got != 1 {
			t.Fatalf("processor errors = %v, want 1", got)
		}
		// The worker leaves the shard alone for the failover time, then retries.
		fail = false
		time.Sleep(DefaultFailoverTime - time.Second)
		synctest.Wait()
		if n := len(pl.of(id, "init")); n != 1 {
			t.Fatalf("shard retried after %v, want a cool-down of the failover time", DefaultFailoverTime-time.Second)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		inits := pl.of(id, "init")
		if len(inits) != 2 || inits[1].start.Sequence != first {
			t.Fatalf("after the cool-down: inits %+v, want a second one starting at %s", inits, first)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNewValidates(t *testing.T) {
	s := newTestStream()
	pl := newProcLog(true)
	tests := []struct {
		name string
		fn   func() error
	}{
		{"nil client", func() error { _, err := New(nil, memory.New(), "s", pl.factory()); return err }},
		{"nil store", func() error { _, err := New(s.api(), nil, "s", pl.factory()); return err }},
		{"empty stream", func() error { _, err := New(s.api(), memory.New(), "", pl.factory()); return err }},
		{"nil factory", func() error { _, err := New(s.api(), memory.New(), "s", nil); return err }},
		{"max records", func() error {
			_, err := New(s.api(), memory.New(), "s", pl.factory(), WithMaxRecords(10001))
			return err
		}},
		{"failover", func() error { _, err := New(s.api(), memory.New(), "s", pl.factory(), WithFailoverTime(0)); return err }},
		{"in flight", func() error {
			_, err := New(s.api(), memory.New(), "s", pl.factory(), WithMaxBatchesInFlight(0))
			return err
		}},
		{"timestamp", func() error {
			_, err := New(s.api(), memory.New(), "s", pl.factory(), WithInitialPosition(AtTimestamp(time.Time{})))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("New: %v, want ErrInvalidOption", err)
			}
		})
	}
	c, err := New(s.api(), memory.New(), "s", pl.factory())
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerID() == "" {
		t.Fatal("default worker id is empty")
	}
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		s.addShards(1)
		c := newTestConsumer(t, s.api(), memory.New(), newProcLog(true))
		stop := started(t, c)
		synctest.Wait()
		if err := c.Run(context.Background()); !errors.Is(err, ErrRunning) {
			t.Fatalf("second Run: %v, want ErrRunning", err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMissingStreamFailsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := newTestStream().api()
		api.listShards = func(context.Context, *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
			return nil, &types.ResourceNotFoundException{Message: aws.String("Stream test-stream not found")}
		}
		c := newTestConsumer(t, api, memory.New(), newProcLog(true))
		var rnf *types.ResourceNotFoundException
		if err := c.Run(context.Background()); !errors.As(err, &rnf) {
			t.Fatalf("Run on a missing stream: %v, want ResourceNotFoundException", err)
		}
	})
}

// flakyStore fails every call while broken is set, as an unreachable table would.
type flakyStore struct {
	*memory.Store
	broken atomic.Bool
}

var errUnreachable = errors.New("connection refused")

func (f *flakyStore) RenewLease(ctx context.Context, l checkpoint.Lease) (checkpoint.Lease, error) {
	if f.broken.Load() {
		return checkpoint.Lease{}, errUnreachable
	}
	return f.Store.RenewLease(ctx, l)
}

func (f *flakyStore) TakeLease(ctx context.Context, l checkpoint.Lease, owner string) (checkpoint.Lease, error) {
	if f.broken.Load() {
		return checkpoint.Lease{}, errUnreachable
	}
	return f.Store.TakeLease(ctx, l, owner)
}

func (f *flakyStore) ListLeases(ctx context.Context) ([]checkpoint.Lease, error) {
	if f.broken.Load() {
		return nil, errUnreachable
	}
	return f.Store.ListLeases(ctx)
}

func TestUnrenewableLeaseDroppedBeforeOthersMayTakeIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("x"))
		store := &flakyStore{Store: memory.New()}
		pl := newProcLog(false)
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		synctest.Wait()
		store.broken.Store(true)
		time.Sleep(DefaultFailoverTime - c.cfg.renewInterval - time.Second)
		synctest.Wait()
		if n := len(pl.of(id, "lost")); n != 0 {
			t.Fatalf("lease dropped after failed renewals well within the failover time")
		}
		time.Sleep(c.cfg.renewInterval + time.Second)
		synctest.Wait()
		if got := kinds(pl.of(id, "")); !slices.Equal(got, []string{"init", "records", "lost"}) {
			t.Fatalf("callbacks %v by the failover time, want init, records, lost", got)
		}
		store.broken.Store(false)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// manualClock is a Clock that moves only when the test advances it.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []manualWaiter
}

type manualWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, manualWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

func TestInjectedClockGovernsLeaseExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		store := memory.New()
		ctx := context.Background()
		if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: id, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.TakeLease(ctx, lease(t, store, id), "dead-worker"); err != nil {
			t.Fatal(err)
		}
		clk := &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		c := newTestConsumer(t, s.api(), store, newProcLog(true), WithClock(clk))
		begin := time.Now()
		stop := started(t, c)
		synctest.Wait()
		for range 9 { // 9 lease cycles of the injected clock: 9s, not yet expired
			clk.Advance(c.cfg.takeInterval)
			synctest.Wait()
		}
		if got := lease(t, store, id).Owner; got != "dead-worker" {
			t.Fatalf("lease taken by %q before the injected clock passed the failover time", got)
		}
		clk.Advance(c.cfg.takeInterval)
		synctest.Wait()
		if got := lease(t, store, id).Owner; got != "w1" {
			t.Fatalf("lease owned by %q once the injected clock passed the failover time, want w1", got)
		}
		if d := time.Since(begin); d != 0 {
			t.Fatalf("the consumer waited %v on the system clock", d)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReleasedLeaseChangingIsNotALoss(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: "s", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
		t.Fatal(err)
	}
	l, err := store.TakeLease(ctx, lease(t, store, "s"), "w1")
	if err != nil {
		t.Fatal(err)
	}
	c := newTestConsumer(t, newTestStream().api(), store, newProcLog(true))
	stopped := false
	h := newHolder(c, l, func(string) { stopped = true })
	if err := h.release(ctx); err != nil {
		t.Fatal(err)
	}
	// A lease cycle then sees the lease unowned at a higher counter.
	h.markLost("changed after release")
	if stopped || counterValue(c.met.leaseLosses) != 0 {
		t.Fatal("a released lease counted as lost")
	}
	if err := h.checkpoint(ctx, durable{pos: checkpoint.Checkpoint{Sequence: "5"}}); !errors.Is(err, errReleased) {
		t.Fatalf("checkpoint after release: %v, want errReleased", err)
	}
}

// lostResponseStore applies a take, then reports the caller's context error if that context
// ended meanwhile — what a real store does when shutdown cancels a request whose write
// DynamoDB already applied. onTake runs before the write.
type lostResponseStore struct {
	*memory.Store
	onTake func()
}

func (s *lostResponseStore) TakeLease(ctx context.Context, l checkpoint.Lease, owner string) (checkpoint.Lease, error) {
	s.onTake()
	got, err := s.Store.TakeLease(context.Background(), l, owner)
	if ctx.Err() != nil {
		return checkpoint.Lease{}, ctx.Err()
	}
	return got, err
}

// TestShutdownDuringTakeReleasesTheLease checks that a shutdown arriving while a take is in
// flight leaves no lease owned by the stopped worker: the take's outcome is awaited, and a
// lease won is released like the others.
func TestShutdownDuringTakeReleasesTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		store := &lostResponseStore{Store: memory.New(), onTake: cancel}
		c := newTestConsumer(t, s.api(), store, newProcLog(true))
		if err := c.Run(ctx); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if l := lease(t, store, id); l.Owner != "" {
			t.Fatalf("lease still owned by %q after a shutdown during its take", l.Owner)
		}
	})
}

// countingStore counts the lease table scans.
type countingStore struct {
	*memory.Store
	scans atomic.Int64
}

func (c *countingStore) ListLeases(ctx context.Context) ([]checkpoint.Lease, error) {
	c.scans.Add(1)
	return c.Store.ListLeases(ctx)
}

// TestLeaseScanInterval checks how often a worker scans the lease table: every failover/10
// by default, every WithLeaseScanInterval when set, and that a dead worker's lease is still
// taken, within the failover time plus the interval.
func TestLeaseScanInterval(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []Option
		interval time.Duration
	}{
		{"default", nil, DefaultFailoverTime / 10},
		{"set", []Option{WithLeaseScanInterval(5 * time.Second)}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newTestStream()
				id := s.addShards(1)[0]
				store := &countingStore{Store: memory.New()}
				// A dead worker's lease, expired once it has not moved for the failover time.
				if _, err := store.CreateLease(context.Background(), checkpoint.Lease{Key: id, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
					t.Fatal(err)
				}
				if _, err := store.TakeLease(context.Background(), lease(t, store, id), "dead"); err != nil {
					t.Fatal(err)
				}
				c := newTestConsumer(t, s.api(), store, newProcLog(true), tc.opts...)
				stop := started(t, c)
				synctest.Wait()
				before := store.scans.Load()
				const window = 60 * time.Second
				time.Sleep(window)
				synctest.Wait()
				if got, want := store.scans.Load()-before, int64(window/tc.interval); got < want-1 || got > want+1 {
					t.Errorf("%d scans in %v, want %d (one every %v)", got, window, want, tc.interval)
				}
				if l := lease(t, store, id); l.Owner != "w1" {
					t.Errorf("the dead worker's lease is owned by %q after %v, want w1", l.Owner, window)
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
	if _, err := New(newTestStream().api(), memory.New(), testStreamName, newProcLog(true).factory(), WithLeaseScanInterval(-time.Second)); err == nil {
		t.Error("a negative lease scan interval was accepted")
	}
}

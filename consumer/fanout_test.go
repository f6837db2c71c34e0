package consumer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
	"github.com/kinlog/kinlog/internal/kpl"
)

// Unit tests of enhanced fan-out retrieval, on fanOutFake inside synctest bubbles (see
// consumer_test.go).

func newFanOutConsumer(t *testing.T, f *fanOutFake, store checkpoint.Store, pl *procLog, opts ...Option) *Consumer {
	t.Helper()
	return newTestConsumer(t, f, store, pl, append([]Option{WithRetrieval(FanOut), WithStreamConsumerName("app")}, opts...)...)
}

func datas(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Data)
	}
	return out
}

func TestFanOutDeliversAndCheckpoints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		for _, d := range []string{"r0", "r1", "r2"} {
			s.put(id, "k", []byte(d))
		}
		s.putAggregate(id, []kpl.Record{{PartitionKey: "k", Data: []byte("a0")}, {PartitionKey: "k", Data: []byte("a1")}})
		f := newFanOutFake(s)
		f.activeAfter = 3 // CREATING for a few describes
		store := memory.New()
		pl := newProcLog(true)
		c := newFanOutConsumer(t, f, store, pl)
		stop := started(t, c)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := datas(pl.records(id)); !slices.Equal(got, []string{"r0", "r1", "r2", "a0", "a1"}) {
			t.Fatalf("delivered %v", got)
		}
		if n := len(f.callsOf("RegisterStreamConsumer", "")); n != 1 {
			t.Fatalf("%d RegisterStreamConsumer calls, want 1", n)
		}
		ins, _ := f.subscribeCalls()
		if len(ins) != 1 {
			t.Fatalf("%d subscriptions, want 1", len(ins))
		}
		if p := ins[0].StartingPosition; p.Type != types.ShardIteratorTypeTrimHorizon || aws.ToString(ins[0].ConsumerARN) != testStreamARN+"/consumer/app:1" {
			t.Fatalf("subscribed %+v with %s, want TRIM_HORIZON with the registered consumer", p, aws.ToString(ins[0].ConsumerARN))
		}
		if n := len(f.callsOf("GetRecords", "")) + len(f.callsOf("GetShardIterator", "")); n != 0 {
			t.Fatalf("%d polling calls with fan-out retrieval", n)
		}
		// Records put later arrive on the same subscription.
		s.put(id, "k", []byte("r3"))
		time.Sleep(time.Second)
		synctest.Wait()
		if got := datas(pl.records(id)); len(got) != 6 || got[5] != "r3" {
			t.Fatalf("after a later put: %v", got)
		}
		if st := c.Status(); len(st.Shards) != 1 || st.Shards[0].MillisBehindLatest != 0 {
			t.Fatalf("status %+v, want the shard caught up (lag 0 from the events)", st)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		rs := pl.records(id)
		if l := lease(t, store, id); l.Checkpoint != rs[len(rs)-1].Position() || l.Owner != "" {
			t.Fatalf("lease after shutdown %+v, want checkpoint %v and released", l, rs[len(rs)-1].Position())
		}
		for _, sub := range f.subscriptions() {
			if _, closed, _ := sub.state(); !closed {
				t.Fatal("a subscription was left open")
			}
		}
	})
}

func TestFanOutResubscribesFromContinuation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("r0"))
		last := s.put(id, "k", []byte("r1"))
		f := newFanOutFake(s)
		f.lifetime = 3 * time.Second // Kinesis: 5 minutes
		pl := newProcLog(true)
		c := newFanOutConsumer(t, f, memory.New(), pl)
		stop := started(t, c)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		time.Sleep(2 * time.Second) // the first subscription has ended and a second begun
		synctest.Wait()
		s.put(id, "k", []byte("r2"))
		s.put(id, "k", []byte("r3"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := datas(pl.records(id)); !slices.Equal(got, []string{"r0", "r1", "r2", "r3"}) {
			t.Fatalf("delivered %v, want each record once, in order", got)
		}
		ins, at := f.subscribeCalls()
		if len(ins) < 2 {
			t.Fatalf("%d subscriptions, want a second after the first ended", len(ins))
		}
		if p := ins[1].StartingPosition; p.Type != types.ShardIteratorTypeAfterSequenceNumber || aws.ToString(p.SequenceNumber) != last {
			t.Fatalf("second subscription at %s %s, want AFTER_SEQUENCE_NUMBER %s (the continuation)", p.Type, aws.ToString(p.SequenceNumber), last)
		}
		if gap := at[1].Sub(at[0]); gap < MinSubscribeInterval {
			t.Fatalf("subscriptions %v apart, want at least %v", gap, MinSubscribeInterval)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// A subscription Kinesis does not end (it should, after 5 minutes) is renewed by the reader.
func TestFanOutRenewsAnOverdueSubscription(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("r0"))
		f := newFanOutFake(s)
		f.lifetime = time.Hour
		pl := newProcLog(true)
		c := newFanOutConsumer(t, f, memory.New(), pl)
		stop := started(t, c)
		time.Sleep(SubscriptionLifetime + subscriptionGrace + 2*time.Second)
		synctest.Wait()
		subs := f.subscriptions()
		if len(subs) != 2 {
			t.Fatalf("%d subscriptions after %v, want the first replaced", len(subs), SubscriptionLifetime+subscriptionGrace)
		}
		if _, closed, _ := subs[0].state(); !closed {
			t.Fatal("the overdue subscription is still open")
		}
		if got := datas(pl.records(id)); !slices.Equal(got, []string{"r0"}) {
			t.Fatalf("delivered %v", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFanOutShardEndWithChildren(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		parent := s.addShards(1)[0]
		for _, d := range []string{"p0", "p1", "p2"} {
			s.put(parent, "k", []byte(d))
		}
		s.close(parent)
		lo := s.addChild("0", hashStr(halfHash, -1), parent)
		hi := s.addChild(halfHash.String(), maxHash.String(), parent)
		s.put(lo, "k", []byte("lo0"))
		s.put(hi, "k", []byte("hi0"))
		f := newFanOutFake(s)
		store := memory.New()
		gate := &gateChecker{store: store, parents: map[string][]string{lo: {parent}, hi: {parent}}}
		pl := newProcLog(true)
		pl.onInit = gate.check
		c := newFanOutConsumer(t, f, store, pl)
		stop := started(t, c)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := kinds(pl.of(parent, "")); !slices.Equal(got, []string{"init", "records", "ended"}) {
			t.Fatalf("parent callbacks %v", got)
		}
		l := lease(t, store, parent)
		if l.Checkpoint.Sequence != checkpoint.ShardEnd || !slices.Equal(l.ChildShardIDs, []string{lo, hi}) {
			t.Fatalf("parent lease %+v, want SHARD_END naming children %v (from the last event)", l, []string{lo, hi})
		}
		if got := append(datas(pl.records(lo)), datas(pl.records(hi))...); !slices.Equal(got, []string{"lo0", "hi0"}) {
			t.Fatalf("children delivered %v", got)
		}
		if len(gate.violations) > 0 {
			t.Fatal(gate.violations)
		}
		if n := len(f.callsOf("GetRecords", "")); n != 0 {
			t.Fatalf("%d GetRecords calls: the end event should have ended the shard", n)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// kinesis-mock never ends a closed shard's subscription: once the shard sync has seen the
// shard closed, the reader finishes it with GetRecords and gets the children there.
func TestFanOutClosedShardWithoutEndEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		parent := s.addShards(1)[0]
		s.put(parent, "k", []byte("p0"))
		f := newFanOutFake(s)
		f.noEndEvent = true
		store := memory.New()
		pl := newProcLog(true)
		c := newFanOutConsumer(t, f, store, pl, WithShardSyncInterval(5*time.Second))
		stop := started(t, c)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		last := s.put(parent, "k", []byte("p1"))
		s.close(parent) // split while it is read
		child := s.addChild("0", maxHash.String(), parent)
		s.put(child, "k", []byte("c0"))
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got := append(datas(pl.records(parent)), datas(pl.records(child))...); !slices.Equal(got, []string{"p0", "p1", "c0"}) {
			t.Fatalf("delivered %v, want each record once, in order", got)
		}
		its := f.callsOf("GetShardIterator", parent)
		if len(its) != 1 {
			t.Fatalf("%d GetShardIterator calls on the parent, want 1", len(its))
		}
		if in := its[0].in.(*kinesis.GetShardIteratorInput); in.ShardIteratorType != types.ShardIteratorTypeAfterSequenceNumber || aws.ToString(in.StartingSequenceNumber) != last {
			t.Fatalf("polled the rest from %s %s, want AFTER_SEQUENCE_NUMBER %s", in.ShardIteratorType, aws.ToString(in.StartingSequenceNumber), last)
		}
		if l := lease(t, store, parent); l.Checkpoint.Sequence != checkpoint.ShardEnd || !slices.Equal(l.ChildShardIDs, []string{child}) {
			t.Fatalf("parent lease %+v, want SHARD_END naming %s", l, child)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFanOutResourceInUseBacksOff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inStream bool // kinesis-mock: the call succeeds and the stream fails at once
	}{{"call", false}, {"in-stream", true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newTestStream()
				id := s.addShards(1)[0]
				s.put(id, "k", []byte("r0"))
				f := newFanOutFake(s)
				inUse := &types.ResourceInUseException{Message: aws.String("Another active subscription exists")}
				f.onSubscribe = func(_ *kinesis.SubscribeToShardInput, n int) (error, int, error) {
					if n >= 2 {
						return nil, 0, nil
					}
					if tc.inStream {
						return nil, 0, inUse
					}
					return inUse, 0, nil
				}
				pl := newProcLog(true)
				c := newFanOutConsumer(t, f, memory.New(), pl)
				stop := started(t, c)
				time.Sleep(30 * time.Second)
				synctest.Wait()
				_, at := f.subscribeCalls()
				if len(at) != 3 {
					t.Fatalf("%d SubscribeToShard calls, want 3", len(at))
				}
				// Backoff from resourceInUseBackoff: [2s, 4s), then [4s, 8s).
				if g1, g2 := at[1].Sub(at[0]), at[2].Sub(at[1]); g1 < resourceInUseBackoff/2 || g2 < resourceInUseBackoff {
					t.Fatalf("retries after %v and %v, want at least %v and %v", g1, g2, resourceInUseBackoff/2, resourceInUseBackoff)
				}
				if got := datas(pl.records(id)); !slices.Equal(got, []string{"r0"}) {
					t.Fatalf("delivered %v", got)
				}
				if n := counterVecValue(c.met.readErrors, "subscription_in_use"); n != 2 {
					t.Fatalf("subscription_in_use errors %v, want 2", n)
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestFanOutThrottledSubscribeBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("r0"))
		f := newFanOutFake(s)
		f.onSubscribe = func(_ *kinesis.SubscribeToShardInput, n int) (error, int, error) {
			if n < 3 {
				return &types.LimitExceededException{Message: aws.String("Rate exceeded")}, 0, nil
			}
			return nil, 0, nil
		}
		pl := newProcLog(true)
		c := newFanOutConsumer(t, f, memory.New(), pl)
		stop := started(t, c)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		_, at := f.subscribeCalls()
		if len(at) != 4 {
			t.Fatalf("%d calls, want 4", len(at))
		}
		for i := 1; i < len(at); i++ {
			if g := at[i].Sub(at[i-1]); g < MinSubscribeInterval {
				t.Fatalf("call %d %v after the previous one, want at least %v", i, g, MinSubscribeInterval)
			}
		}
		if n := counterVecValue(c.met.readErrors, "throttled"); n != 3 {
			t.Fatalf("throttled %v, want 3", n)
		}
		if got := datas(pl.records(id)); !slices.Equal(got, []string{"r0"}) {
			t.Fatalf("delivered %v", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFanOutRecoversFromBrokenStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("r0"))
		last := s.put(id, "k", []byte("r1"))
		f := newFanOutFake(s)
		f.onSubscribe = func(_ *kinesis.SubscribeToShardInput, n int) (error, int, error) {
			if n == 0 {
				return nil, 1, errors.New("http2: response body closed") // after the first event
			}
			return nil, 0, nil
		}
		pl := newProcLog(true)
		c := newFanOutConsumer(t, f, memory.New(), pl)
		stop := started(t, c)
		time.Sleep(time.Second)
		synctest.Wait()
		s.put(id, "k", []byte("r2"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := datas(pl.records(id)); !slices.Equal(got, []string{"r0", "r1", "r2"}) {
			t.Fatalf("delivered %v, want each record once, in order", got)
		}
		ins, at := f.subscribeCalls()
		if len(ins) != 2 {
			t.Fatalf("%d subscriptions, want 2", len(ins))
		}
		if p := ins[1].StartingPosition; p.Type != types.ShardIteratorTypeAfterSequenceNumber || aws.ToString(p.SequenceNumber) != last {
			t.Fatalf("resubscribed at %s %s, want AFTER_SEQUENCE_NUMBER %s", p.Type, aws.ToString(p.SequenceNumber), last)
		}
		if g := at[1].Sub(at[0]); g < MinSubscribeInterval {
			t.Fatalf("resubscribed %v after the first subscription, want at least %v", g, MinSubscribeInterval)
		}
		if n := counterVecValue(c.met.readErrors, "stream"); n != 1 {
			t.Fatalf("stream errors %v, want 1", n)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// A stream that breaks before any event (e.g. at once, again and again) backs off
// exponentially instead of resubscribing every second.
func TestFanOutBrokenStreamBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		s.addShards(1)
		f := newFanOutFake(s)
		f.onSubscribe = func(*kinesis.SubscribeToShardInput, int) (error, int, error) {
			return nil, 0, errors.New("unexpected EOF")
		}
		c := newFanOutConsumer(t, f, memory.New(), newProcLog(true))
		stop := started(t, c)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		_, at := f.subscribeCalls()
		// Waits from [0.5s, 1s) doubling up to the failover time (10s), at least 1s apart:
		// about 1+1+2+4+8+10 s in 30 s.
		if len(at) < 4 || len(at) > 9 {
			t.Fatalf("%d subscriptions in 30s of failures, want backoff (4..9)", len(at))
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFanOutLeaseLostStopsSubscription(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("r0"))
		f := newFanOutFake(s)
		store := memory.New()
		pl := newProcLog(false)
		c := newFanOutConsumer(t, f, store, pl)
		stop := started(t, c)
		time.Sleep(time.Second)
		synctest.Wait()
		batches := pl.of(id, "records")
		if len(batches) != 1 {
			t.Fatalf("%d batches, want 1", len(batches))
		}
		l := lease(t, store, id)
		if _, err := store.TakeLease(context.Background(), l, "thief"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(c.cfg.renewInterval)
		synctest.Wait()
		if got := kinds(pl.of(id, "")); !slices.Equal(got, []string{"init", "records", "lost"}) {
			t.Fatalf("callbacks %v, want init, records, lost", got)
		}
		subs := f.subscriptions()
		if len(subs) != 1 {
			t.Fatalf("%d subscriptions, want 1", len(subs))
		}
		if _, closed, _ := subs[0].state(); !closed {
			t.Fatal("the subscription is still open after the lease was lost")
		}
		batches[0].batch.Ack()
		s.put(id, "k", []byte("r1"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := len(f.subscriptions()); n != 1 {
			t.Fatalf("%d subscriptions after the loss, want no new one", n)
		}
		if after := lease(t, store, id); after.Owner != "thief" || after.Checkpoint.Sequence != checkpoint.TrimHorizon {
			t.Fatalf("lease after the loss %+v, want thief's, untouched", after)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// While deliver waits for room, the reader does not take further events from the stream.
func TestFanOutBackpressureStopsReadingTheStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		for i := range 5 {
			s.put(id, "k", []byte{byte('0' + i)})
		}
		f := newFanOutFake(s)
		f.perEvent = 1
		pl := newProcLog(false)
		c := newFanOutConsumer(t, f, memory.New(), pl, WithMaxBatchesInFlight(2))
		stop := started(t, c)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		batches := pl.of(id, "records")
		if len(batches) != 2 {
			t.Fatalf("%d batches delivered with a cap of 2 and no acks, want 2", len(batches))
		}
		sub := f.subscriptions()[0]
		if sent, _, _ := sub.state(); sent != 3 {
			// Two delivered, the third taken and held until there is room; the fourth not read.
			t.Fatalf("%d events taken from the stream while full, want 3", sent)
		}
		batches[0].batch.Ack()
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(pl.of(id, "records")); n != 3 {
			t.Fatalf("%d batches after acking the first, want 3", n)
		}
		for _, e := range pl.of(id, "records") {
			e.batch.Ack()
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		for _, e := range pl.of(id, "records") {
			e.batch.Ack()
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := datas(pl.records(id)); !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
			t.Fatalf("delivered %v", got)
		}
		if len(f.subscriptions()) != 1 {
			t.Fatal("backpressure replaced the subscription; it should only stop reading it")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// A checkpoint inside a KPL aggregate resumes AT its sequence number and skips the user
// records at or before it, as polling does.
func TestFanOutResumesInsideAggregate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("before"))
		var users []kpl.Record
		for _, d := range []string{"u0", "u1", "u2", "u3"} {
			users = append(users, kpl.Record{PartitionKey: "k", Data: []byte(d)})
		}
		seq := s.putAggregate(id, users)
		s.put(id, "k", []byte("after"))
		store := memory.New()
		if _, err := store.CreateLease(context.Background(), checkpoint.Lease{Key: id, Checkpoint: checkpoint.Checkpoint{Sequence: seq, SubSequence: 1}}); err != nil {
			t.Fatal(err)
		}
		f := newFanOutFake(s)
		pl := newProcLog(true)
		c := newFanOutConsumer(t, f, store, pl)
		stop := started(t, c)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if got := datas(pl.records(id)); !slices.Equal(got, []string{"u2", "u3", "after"}) {
			t.Fatalf("delivered %v, want the rest of the aggregate and what follows", got)
		}
		ins, _ := f.subscribeCalls()
		if p := ins[0].StartingPosition; p.Type != types.ShardIteratorTypeAtSequenceNumber || aws.ToString(p.SequenceNumber) != seq {
			t.Fatalf("subscribed at %s %s, want AT_SEQUENCE_NUMBER %s", p.Type, aws.ToString(p.SequenceNumber), seq)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFanOutStartingPositions(t *testing.T) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		initial InitialPosition
		want    types.ShardIteratorType
	}{
		{TrimHorizon, types.ShardIteratorTypeTrimHorizon},
		{Latest, types.ShardIteratorTypeLatest},
		{AtTimestamp(at), types.ShardIteratorTypeAtTimestamp},
	} {
		t.Run(tc.initial.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newTestStream()
				s.addShards(1)
				f := newFanOutFake(s)
				c := newFanOutConsumer(t, f, memory.New(), newProcLog(true), WithInitialPosition(tc.initial))
				stop := started(t, c)
				time.Sleep(time.Second)
				synctest.Wait()
				ins, _ := f.subscribeCalls()
				if len(ins) == 0 {
					t.Fatal("no subscription")
				}
				p := ins[0].StartingPosition
				if p.Type != tc.want || (tc.want == types.ShardIteratorTypeAtTimestamp && !aws.ToTime(p.Timestamp).Equal(at)) {
					t.Fatalf("subscribed at %+v, want %s", p, tc.want)
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestFanOutRegistration(t *testing.T) {
	t.Run("concurrent workers register once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newTestStream()
			s.addShards(2)
			f := newFanOutFake(s)
			f.activeAfter = 2
			store := memory.New()
			pl := newProcLog(true)
			var stops []func() error
			for _, id := range []string{"w1", "w2"} {
				stops = append(stops, started(t, newFanOutConsumer(t, f, store, pl, WithWorkerID(id))))
			}
			time.Sleep(20 * time.Second)
			synctest.Wait()
			f.mu.Lock()
			registers := f.registers
			f.mu.Unlock()
			if registers != 1 {
				t.Fatalf("%d consumers registered, want 1", registers)
			}
			if m := leaseCounts(t, store); m["w1"] != 1 || m["w2"] != 1 {
				t.Fatalf("leases %v, want one each", m)
			}
			for _, stop := range stops {
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			}
		})
	})
	t.Run("already registered", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newTestStream()
			s.addShards(1)
			f := newFanOutFake(s)
			if _, err := f.RegisterStreamConsumer(context.Background(), &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(testStreamARN), ConsumerName: aws.String("app")}); err != nil {
				t.Fatal(err)
			}
			// The stream given by ARN: no DescribeStreamSummary needed.
			c, err := New(f, memory.New(), testStreamARN, newProcLog(true).factory(), WithRetrieval(FanOut), WithStreamConsumerName("app"), WithWorkerID("w1"))
			if err != nil {
				t.Fatal(err)
			}
			stop := started(t, c)
			time.Sleep(5 * time.Second)
			synctest.Wait()
			if n := len(f.callsOf("RegisterStreamConsumer", "")); n != 1 {
				t.Fatalf("%d RegisterStreamConsumer calls, want only the test's", n)
			}
			if n := len(f.callsOf("DescribeStreamSummary", "")); n != 0 {
				t.Fatalf("%d DescribeStreamSummary calls for a stream given by ARN", n)
			}
			if ins, _ := f.subscribeCalls(); len(ins) != 1 {
				t.Fatalf("%d subscriptions, want 1", len(ins))
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("never active", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newTestStream()
			s.addShards(1)
			f := newFanOutFake(s)
			f.activeAfter = 1 << 30
			c := newFanOutConsumer(t, f, memory.New(), newProcLog(true))
			err := c.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), "not ACTIVE after "+streamConsumerActiveTimeout.String()) {
				t.Fatalf("Run: %v, want a timeout naming the wait", err)
			}
			if n := len(f.callsOf("ListShards", "")); n == 0 {
				t.Fatal("the shards were not synced before registering")
			}
		})
	})
	t.Run("deregistered while running", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newTestStream()
			id := s.addShards(1)[0]
			s.put(id, "k", []byte("r0"))
			f := newFanOutFake(s)
			f.lifetime = 3 * time.Second
			pl := newProcLog(true)
			c := newFanOutConsumer(t, f, memory.New(), pl)
			stop := started(t, c)
			time.Sleep(time.Second)
			synctest.Wait()
			if err := DeregisterStreamConsumer(context.Background(), f, testStreamARN, "app"); err != nil {
				t.Fatal(err)
			}
			s.put(id, "k", []byte("r1"))
			time.Sleep(10 * time.Second)
			synctest.Wait()
			if got := datas(pl.records(id)); !slices.Equal(got, []string{"r0", "r1"}) {
				t.Fatalf("delivered %v", got)
			}
			f.mu.Lock()
			registers := f.registers
			f.mu.Unlock()
			if registers != 2 {
				t.Fatalf("%d registrations, want the consumer registered again", registers)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	})
}

func TestNewValidatesFanOut(t *testing.T) {
	s := newTestStream()
	pl := newProcLog(true)
	if _, err := New(s.api(), memory.New(), "s", pl.factory(), WithRetrieval(FanOut), WithStreamConsumerName("app")); !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "FanOutAPI") {
		t.Fatalf("fan-out with a polling-only client: %v, want ErrInvalidOption naming FanOutAPI", err)
	}
	f := newFanOutFake(s)
	if _, err := New(f, memory.New(), "s", pl.factory(), WithRetrieval(FanOut)); !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "WithStreamConsumerName") {
		t.Fatalf("fan-out without a consumer name or a store that names a table: %v", err)
	}
	if _, err := New(f, memory.New(), "s", pl.factory(), WithRetrieval(FanOut), WithStreamConsumerName("bad name")); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("invalid consumer name: %v", err)
	}
	if _, err := New(f, memory.New(), "s", pl.factory(), WithRetrieval(Retrieval(7))); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("unknown retrieval: %v", err)
	}
	c, err := New(f, tableStore{memory.New(), "orders-app"}, "s", pl.factory(), WithRetrieval(FanOut))
	if err != nil {
		t.Fatal(err)
	}
	if c.consumerName != "orders-app" {
		t.Fatalf("default consumer name %q, want the lease table's", c.consumerName)
	}
	// Polling needs none of it.
	if _, err := New(s.api(), memory.New(), "s", pl.factory(), WithRetrieval(Polling)); err != nil {
		t.Fatal(err)
	}
}

// tableStore is a store that reports a table name, as checkpoint/dynamodb does.
type tableStore struct {
	*memory.Store
	table string
}

func (s tableStore) Table() string { return s.table }

func TestDeregisterStreamConsumer(t *testing.T) {
	f := newFanOutFake(newTestStream())
	ctx := context.Background()
	if _, err := f.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(testStreamARN), ConsumerName: aws.String("app")}); err != nil {
		t.Fatal(err)
	}
	f.consumers["app"].status = types.ConsumerStatusActive
	if err := DeregisterStreamConsumer(ctx, f, testStreamARN, "app"); err != nil {
		t.Fatal(err)
	}
	if len(f.consumers) != 0 {
		t.Fatal("consumer still registered")
	}
	if err := DeregisterStreamConsumer(ctx, f, testStreamARN, "app"); err != nil {
		t.Fatalf("deregistering a consumer already gone: %v, want nil", err)
	}
	// Being deleted already (kinesis-mock: ResourceInUseException "not in an ACTIVE
	// state"): done. Still CREATING: an error naming the status.
	f.activeAfter = 1 << 30
	for status, ok := range map[types.ConsumerStatus]bool{types.ConsumerStatusDeleting: true, types.ConsumerStatusCreating: false} {
		if _, err := f.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(testStreamARN), ConsumerName: aws.String("app")}); err != nil {
			t.Fatal(err)
		}
		f.consumers["app"].status = status
		err := DeregisterStreamConsumer(ctx, f, testStreamARN, "app")
		if ok && err != nil || !ok && (err == nil || !strings.Contains(err.Error(), "status CREATING")) {
			t.Fatalf("deregistering a %s consumer: %v", status, err)
		}
		delete(f.consumers, "app")
	}
	failing := deregisterFunc(func() error { return errors.New("AccessDenied") })
	if err := DeregisterStreamConsumer(ctx, failing, testStreamARN, "app"); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("a failing call: %v", err)
	}
}

type deregisterFunc func() error

func (f deregisterFunc) DeregisterStreamConsumer(context.Context, *kinesis.DeregisterStreamConsumerInput, ...func(*kinesis.Options)) (*kinesis.DeregisterStreamConsumerOutput, error) {
	return nil, f()
}

func (f deregisterFunc) DescribeStreamConsumer(context.Context, *kinesis.DescribeStreamConsumerInput, ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	return nil, f()
}

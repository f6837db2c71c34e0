package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
	"github.com/kinlog/kinlog/internal/kpl"
)

var halfHash = new(big.Int).Lsh(big.NewInt(1), 127) // first hash key of the upper half

func hashStr(x *big.Int, delta int64) string {
	return new(big.Int).Add(x, big.NewInt(delta)).String()
}

// gateChecker records, at each child's Initialize, whether all its parents had a SHARD_END
// checkpoint in the store.
type gateChecker struct {
	mu         sync.Mutex
	store      checkpoint.Store
	parents    map[string][]string
	violations []string
}

func (g *gateChecker) check(ctx context.Context, in InitInput) error {
	for _, p := range g.parents[in.ShardID] {
		l, err := g.store.GetLease(ctx, p)
		if err != nil || l.Checkpoint.Sequence != checkpoint.ShardEnd {
			g.mu.Lock()
			g.violations = append(g.violations, fmt.Sprintf("%s started while parent %s is at %v (%v)", in.ShardID, p, l.Checkpoint, err))
			g.mu.Unlock()
		}
	}
	return nil
}

func TestChildWaitsForParentAfterSplit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		parent := s.addShards(1)[0]
		var want []string
		for i := range 3 {
			want = append(want, s.put(parent, "k", []byte{byte(i)}))
		}
		s.close(parent)
		lo := s.addChild("0", hashStr(halfHash, -1), parent)
		hi := s.addChild(halfHash.String(), maxHash.String(), parent)
		for i := range 2 {
			want = append(want, s.put(lo, "k", []byte{byte(10 + i)}))
			s.put(hi, "other", []byte{byte(20 + i)})
		}
		store := memory.New()
		gate := &gateChecker{store: store, parents: map[string][]string{lo: {parent}, hi: {parent}}}
		pl := newProcLog(false)
		pl.onInit = gate.check
		var parentBatches []*Batch
		pl.onRecords = func(_ context.Context, shard string, b *Batch) error {
			if shard == parent {
				parentBatches = append(parentBatches, b) // acknowledged later by the test
				return nil
			}
			b.Ack()
			return nil
		}
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := len(pl.of(lo, "init")) + len(pl.of(hi, "init")); n != 0 {
			t.Fatalf("%d children started while the parent's records are unacknowledged", n)
		}
		if got := kinds(pl.of(parent, "")); !slices.Equal(got, []string{"init", "records", "ended"}) {
			t.Fatalf("parent callbacks %v, want init, records, ended", got)
		}
		if l := lease(t, store, parent); l.Checkpoint.Sequence != checkpoint.TrimHorizon {
			t.Fatalf("parent checkpoint %v before any ack, want TRIM_HORIZON", l.Checkpoint)
		}
		for _, b := range parentBatches {
			b.Ack()
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if l := lease(t, store, parent); l.Checkpoint.Sequence != checkpoint.ShardEnd || l.Owner != "" {
			t.Fatalf("parent lease %+v, want SHARD_END and released", l)
		}
		// Like the KCL, the finished parent names its children (childShardIds).
		if l := lease(t, store, parent); !slices.Equal(l.ChildShardIDs, []string{lo, hi}) {
			t.Fatalf("parent's childShardIds %v, want %v", l.ChildShardIDs, []string{lo, hi})
		}
		if len(pl.records(hi)) != 2 {
			t.Fatalf("high child delivered %d records, want 2", len(pl.records(hi)))
		}
		// Key "k" went to the parent, then to the low child: its order holds.
		var gotK []string
		for _, r := range append(pl.records(parent), pl.records(lo)...) {
			gotK = append(gotK, r.SequenceNumber)
		}
		var order []string
		for _, e := range pl.of("", "records") {
			if e.shard == parent || e.shard == lo {
				order = append(order, seqs(e.batch.Records)...)
			}
		}
		if !slices.Equal(order, want) || !slices.Equal(gotK, want) {
			t.Fatalf("key k delivered in order %v, want %v", order, want)
		}
		if len(gate.violations) > 0 {
			t.Fatal(gate.violations)
		}
		if n := counterValue(c.met.leaseLosses); n != 0 {
			t.Fatalf("%v lease losses counted: releasing a finished parent is not a loss", n)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestChildWaitsForBothParentsAfterMerge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		ids := s.addShards(2)
		a, b := ids[0], ids[1]
		s.put(a, "ka", []byte("a1"))
		s.put(b, "kb", []byte("b1"))
		s.close(a)
		s.close(b)
		child := s.addChild("0", maxHash.String(), a, b)
		s.put(child, "ka", []byte("a2"))
		s.put(child, "kb", []byte("b2"))

		store := memory.New()
		gate := &gateChecker{store: store, parents: map[string][]string{child: {a, b}}}
		pl := newProcLog(false)
		pl.onInit = gate.check
		var slow []*Batch
		pl.onRecords = func(_ context.Context, shard string, batch *Batch) error {
			if shard == b {
				slow = append(slow, batch)
				return nil
			}
			batch.Ack()
			return nil
		}
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if l := lease(t, store, a); l.Checkpoint.Sequence != checkpoint.ShardEnd {
			t.Fatalf("parent %s at %v, want SHARD_END", a, l.Checkpoint)
		}
		if n := len(pl.of(child, "init")); n != 0 {
			t.Fatalf("merged child started while parent %s is unfinished", b)
		}
		for _, batch := range slow {
			batch.Ack()
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := len(pl.records(child)); got != 2 {
			t.Fatalf("child delivered %d records, want 2", got)
		}
		for _, p := range []string{a, b} {
			if l := lease(t, store, p); !slices.Equal(l.ChildShardIDs, []string{child}) {
				t.Fatalf("parent %s's childShardIds %v, want [%s]", p, l.ChildShardIDs, child)
			}
		}
		if len(gate.violations) > 0 {
			t.Fatal(gate.violations)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func userRecords(pks ...string) []kpl.Record {
	out := make([]kpl.Record, len(pks))
	for i, pk := range pks {
		out[i] = kpl.Record{PartitionKey: pk, Data: []byte("data-" + pk)}
	}
	return out
}

func TestResumeInsideAggregate(t *testing.T) {
	tests := []struct {
		name string
		at   func(p1, agg, p3 string) checkpoint.Checkpoint
		want func(p1, agg, p3 string) []string
	}{
		{
			"sub-sequence 2 of the aggregate",
			func(p1, agg, p3 string) checkpoint.Checkpoint {
				return checkpoint.Checkpoint{Sequence: agg, SubSequence: 2}
			},
			func(p1, agg, p3 string) []string { return []string{agg + "/3", agg + "/4", p3} },
		},
		{
			"first user record of the aggregate",
			func(p1, agg, p3 string) checkpoint.Checkpoint { return checkpoint.Checkpoint{Sequence: agg} },
			func(p1, agg, p3 string) []string { return []string{agg + "/1", agg + "/2", agg + "/3", agg + "/4", p3} },
		},
		{
			"last user record of the aggregate",
			func(p1, agg, p3 string) checkpoint.Checkpoint {
				return checkpoint.Checkpoint{Sequence: agg, SubSequence: 4}
			},
			func(p1, agg, p3 string) []string { return []string{p3} },
		},
		{
			"the whole aggregate (a vmware-go-kcl-v2 checkpoint, imported)",
			func(p1, agg, p3 string) checkpoint.Checkpoint {
				return checkpoint.Checkpoint{Sequence: agg, SubSequence: checkpoint.WholeRecord}
			},
			func(p1, agg, p3 string) []string { return []string{p3} },
		},
		{
			"plain record before it",
			func(p1, agg, p3 string) checkpoint.Checkpoint { return checkpoint.Checkpoint{Sequence: p1} },
			func(p1, agg, p3 string) []string {
				return []string{agg, agg + "/1", agg + "/2", agg + "/3", agg + "/4", p3}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newTestStream()
				id := s.addShards(1)[0]
				p1 := s.put(id, "a", []byte("plain1"))
				agg := s.putAggregate(id, userRecords("u0", "u1", "u2", "u3", "u4"))
				p3 := s.put(id, "b", []byte("plain3"))
				store := memory.New()
				start := tt.at(p1, agg, p3)
				sh := s.shard(id)
				if _, err := store.CreateLease(context.Background(), checkpoint.Lease{Key: id, Checkpoint: start, StartingHashKey: sh.startHash, EndingHashKey: sh.endHash}); err != nil {
					t.Fatal(err)
				}
				api := s.api()
				pl := newProcLog(true)
				c := newTestConsumer(t, api, store, pl)
				stop := started(t, c)
				synctest.Wait()
				if got, want := seqs(pl.records(id)), tt.want(p1, agg, p3); !slices.Equal(got, want) {
					t.Fatalf("resuming after %v delivered %v, want %v", start, got, want)
				}
				it := api.callsOf("GetShardIterator", id)[0].in.(*kinesis.GetShardIteratorInput)
				if it.ShardIteratorType != types.ShardIteratorTypeAtSequenceNumber || aws.ToString(it.StartingSequenceNumber) != start.Sequence {
					t.Fatalf("iterator %s %s, want AT_SEQUENCE_NUMBER %s", it.ShardIteratorType, aws.ToString(it.StartingSequenceNumber), start.Sequence)
				}
				if inits := pl.of(id, "init"); inits[0].start != start {
					t.Fatalf("Initialize got start %v, want %v", inits[0].start, start)
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				if got := lease(t, store, id).Checkpoint; got.Sequence != p3 {
					t.Fatalf("checkpoint %v after acking everything, want %s", got, p3)
				}
			})
		})
	}
}

func TestCheckpointsAtSubSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		agg := s.putAggregate(id, userRecords("u0", "u1", "u2", "u3"))
		store := memory.New()
		pl := newProcLog(false)
		pl.onRecords = func(_ context.Context, _ string, b *Batch) error {
			b.AckThrough(3)
			return nil
		}
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		synctest.Wait()
		if got := lease(t, store, id).Checkpoint; got != (checkpoint.Checkpoint{Sequence: agg, SubSequence: 2}) {
			t.Fatalf("checkpoint %v after acking 3 of 4 user records, want %s/2", got, agg)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeaggregation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(2)[0] // lower half of the hash space
		in := []kpl.Record{
			{PartitionKey: "p0", ExplicitHashKey: "1", Data: []byte("a")},
			{PartitionKey: "p1", ExplicitHashKey: hashStr(halfHash, -1), Data: []byte("b")},
		}
		inAgg := s.putAggregate(id, in)
		// One user record routed to the upper half: the KCL drops the whole aggregate.
		s.putAggregate(id, []kpl.Record{
			{PartitionKey: "p2", ExplicitHashKey: "5", Data: []byte("c")},
			{PartitionKey: "p3", ExplicitHashKey: halfHash.String(), Data: []byte("d")},
		})
		var ag kpl.Aggregator
		ag.Add(kpl.Record{PartitionKey: "p4", Data: []byte("e")})
		corrupt := ag.AppendEncode(nil)
		corrupt[len(corrupt)-1] ^= 0xff // MD5 mismatch: a plain record
		corruptSeq := s.put(id, "raw", corrupt)
		plainSeq := s.put(id, "plain", []byte("hello"))

		pl := newProcLog(true)
		c := newTestConsumer(t, s.api(), memory.New(), pl)
		stop := started(t, c)
		synctest.Wait()
		got := pl.records(id)
		want := []Record{
			{ShardID: id, SequenceNumber: inAgg, SubSequenceNumber: 0, Aggregated: true, PartitionKey: "p0", ExplicitHashKey: "1", Data: []byte("a")},
			{ShardID: id, SequenceNumber: inAgg, SubSequenceNumber: 1, Aggregated: true, PartitionKey: "p1", ExplicitHashKey: in[1].ExplicitHashKey, Data: []byte("b")},
			{ShardID: id, SequenceNumber: corruptSeq, PartitionKey: "raw", Data: corrupt},
			{ShardID: id, SequenceNumber: plainSeq, PartitionKey: "plain", Data: []byte("hello")},
		}
		if len(got) != len(want) {
			t.Fatalf("delivered %v, want %v", seqs(got), seqs(want))
		}
		for i := range want {
			g := got[i]
			if g.ArrivalTime.IsZero() {
				t.Errorf("record %d has no arrival time", i)
			}
			g.ArrivalTime = time.Time{}
			if fmt.Sprint(g) != fmt.Sprint(want[i]) {
				t.Errorf("record %d = %+v, want %+v", i, g, want[i])
			}
		}
		if got := counterValue(c.met.dropped); got != 2 {
			t.Errorf("dropped %v user records, want 2", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestInitialPositions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		s.put(id, "k", []byte("old"))
		time.Sleep(time.Minute)
		cut := time.Now()
		mid := s.put(id, "k", []byte("mid"))

		// AT_TIMESTAMP starts at the first record at or after the time.
		pl := newProcLog(true)
		c := newTestConsumer(t, s.api(), memory.New(), pl, WithInitialPosition(AtTimestamp(cut)))
		stop := started(t, c)
		synctest.Wait()
		if got := seqs(pl.records(id)); !slices.Equal(got, []string{mid}) {
			t.Fatalf("AT_TIMESTAMP delivered %v, want [%s]", got, mid)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}

		// LATEST reads only what arrives after the lease was created.
		pl = newProcLog(true)
		c = newTestConsumer(t, s.api(), memory.New(), pl, WithInitialPosition(Latest))
		stop = started(t, c)
		synctest.Wait()
		if got := pl.records(id); len(got) != 0 {
			t.Fatalf("LATEST delivered old records %v", seqs(got))
		}
		fresh := s.put(id, "k", []byte("new"))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := seqs(pl.records(id)); !slices.Equal(got, []string{fresh}) {
			t.Fatalf("LATEST delivered %v, want [%s]", got, fresh)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPrepareWritesTwoPhaseBoundary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		var put []string
		for i := range 6 {
			put = append(put, s.put(id, "k", []byte{byte(i)}))
		}
		store := memory.New()
		pl := newProcLog(false)
		var pre Preparer
		pl.onInit = func(_ context.Context, in InitInput) error { pre = in.Preparer; return nil }
		c := newTestConsumer(t, s.api(), store, pl, WithMaxRecords(3))
		stop := started(t, c)
		time.Sleep(time.Second)
		synctest.Wait()
		batches := pl.of(id, "records")
		if len(batches) != 2 {
			t.Fatalf("%d batches, want 2", len(batches))
		}
		ctx := context.Background()
		batches[0].batch.Ack()
		boundary := batches[1].batch.Records[2].Position()
		if err := pre.Prepare(ctx, boundary); err != nil {
			t.Fatal(err)
		}
		l := lease(t, store, id)
		if l.Checkpoint.Sequence != put[2] || l.Pending == nil || *l.Pending != boundary {
			t.Fatalf("after Prepare: checkpoint %v pending %v, want %s and %v", l.Checkpoint, l.Pending, put[2], boundary)
		}
		if err := pre.Prepare(ctx, batches[1].batch.Records[1].Position()); !errors.Is(err, ErrPendingUnacked) {
			t.Fatalf("Prepare of another boundary while one is pending: %v, want ErrPendingUnacked", err)
		}
		// Acks short of the boundary must not clear it.
		batches[1].batch.AckThrough(2)
		time.Sleep(2 * DefaultCheckpointInterval)
		synctest.Wait()
		l = lease(t, store, id)
		if l.Checkpoint.Sequence != put[2] || l.Pending == nil {
			t.Fatalf("after a partial ack below the boundary: checkpoint %v pending %v, want %s with the boundary kept", l.Checkpoint, l.Pending, put[2])
		}
		if st := c.Status().Shards[0]; st.Pending == nil || *st.Pending != boundary || st.Acknowledged.Sequence != put[4] {
			t.Fatalf("status %+v, want pending %v and acknowledged %s", st, boundary, put[4])
		}
		batches[1].batch.Ack()
		time.Sleep(DefaultCheckpointInterval)
		synctest.Wait()
		l = lease(t, store, id)
		if l.Checkpoint.Sequence != put[5] || l.Pending != nil {
			t.Fatalf("after acking the prepared batch: checkpoint %v pending %v, want %s and none", l.Checkpoint, l.Pending, put[5])
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if err := pre.Prepare(ctx, checkpoint.Checkpoint{Sequence: put[5]}); !errors.Is(err, errReleased) && !errors.Is(err, checkpoint.ErrLeaseLost) {
			t.Fatalf("Prepare after shutdown: %v, want an error", err)
		}
	})
}

func TestPendingBoundaryHandedToNextHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		var put []string
		for i := range 4 {
			put = append(put, s.put(id, "k", []byte{byte(i)}))
		}
		store := memory.New()
		ctx := context.Background()
		// A previous holder checkpointed the first record, prepared the third, and died.
		if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: id, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
			t.Fatal(err)
		}
		l, err := store.TakeLease(ctx, lease(t, store, id), "dead")
		if err == nil {
			l, err = store.Checkpoint(ctx, l, checkpoint.Checkpoint{Sequence: put[0]})
		}
		boundary := checkpoint.Checkpoint{Sequence: put[2]}
		if err == nil {
			l, err = store.PrepareCheckpoint(ctx, l, boundary)
		}
		if err == nil {
			err = store.ReleaseLease(ctx, l)
		}
		if err != nil {
			t.Fatal(err)
		}
		pl := newProcLog(false)
		var pre Preparer
		pl.onInit = func(_ context.Context, in InitInput) error { pre = in.Preparer; return nil }
		// The processor re-cuts its first batch at the boundary: it prepares it again and
		// acknowledges through it.
		pl.onRecords = func(ctx context.Context, _ string, b *Batch) error {
			if err := pre.Prepare(ctx, boundary); err != nil {
				return err
			}
			b.AckThrough(2)
			return nil
		}
		c := newTestConsumer(t, s.api(), store, pl)
		stop := started(t, c)
		synctest.Wait()
		inits := pl.of(id, "init")
		if len(inits) != 1 || inits[0].pending == nil || *inits[0].pending != boundary || inits[0].start.Sequence != put[0] {
			t.Fatalf("Initialize got start %v pending %v, want %s and %v", inits[0].start, inits[0].pending, put[0], boundary)
		}
		if got := lease(t, store, id); got.Checkpoint != boundary || got.Pending != nil {
			t.Fatalf("lease %+v, want checkpoint at the boundary and nothing pending", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMetricsAndStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		var put []string
		for range 3 {
			put = append(put, s.put(id, "k", []byte("abcd")))
		}
		reg := prometheus.NewPedanticRegistry()
		pl := newProcLog(false)
		c := newTestConsumer(t, s.api(), memory.New(), pl, WithRegisterer(reg))
		stop := started(t, c)
		synctest.Wait()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		got := gather(t, reg)
		for name, want := range map[string]float64{
			`kinlog_consumer_leases_held{stream="test-stream"}`:                                         1,
			`kinlog_consumer_records_processed_total{stream="test-stream"}`:                             3,
			`kinlog_consumer_bytes_processed_total{stream="test-stream"}`:                               12,
			`kinlog_consumer_lease_takes_total{stream="test-stream"}`:                                   1,
			`kinlog_consumer_millis_behind_latest{shard="shardId-000000000000",stream="test-stream"}`:   0,
			`kinlog_consumer_batches_in_flight{shard="shardId-000000000000",stream="test-stream"}`:      1,
			`kinlog_consumer_checkpoint_age_seconds{shard="shardId-000000000000",stream="test-stream"}`: 5,
		} {
			if got[name] != want {
				t.Errorf("%s = %v, want %v", name, got[name], want)
			}
		}
		st := c.Status()
		if st.WorkerID != "w1" || len(st.Shards) != 1 || st.Shards[0].Delivered != 3 || st.Shards[0].Checkpoint.Sequence != checkpoint.TrimHorizon {
			t.Fatalf("status %+v", st)
		}
		pl.of(id, "records")[0].batch.Ack()
		time.Sleep(DefaultCheckpointInterval)
		synctest.Wait()
		got = gather(t, reg)
		if v := got[`kinlog_consumer_checkpoint_age_seconds{shard="shardId-000000000000",stream="test-stream"}`]; v != 0 {
			t.Errorf("checkpoint age %v after the checkpoint, want 0", v)
		}
		if v := got[`kinlog_consumer_checkpoints_total{stream="test-stream"}`]; v != 1 {
			t.Errorf("checkpoints_total %v, want 1", v)
		}
		if st := c.Status().Shards[0]; st.Checkpoint.Sequence != put[2] || st.BatchesInFlight != 0 {
			t.Errorf("status after ack %+v", st)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if v := gather(t, reg)[`kinlog_consumer_leases_held{stream="test-stream"}`]; v != 0 {
			t.Errorf("leases_held %v after shutdown, want 0", v)
		}
	})
}

// gather returns every sample of reg by its name and labels.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName() + "{"
			for i, lp := range m.GetLabel() {
				if i > 0 {
					name += ","
				}
				name += fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue())
			}
			name += "}"
			switch {
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestOutsideShardRecordsDelivered: with WithOutsideShardRecords, the user records of an
// aggregate outside the shard's range are delivered, marked, instead of dropped.
func TestOutsideShardRecordsDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(2)[0] // lower half of the hash space
		outside := s.putAggregate(id, []kpl.Record{
			{PartitionKey: "p2", ExplicitHashKey: "5", Data: []byte("c")},
			{PartitionKey: "p3", ExplicitHashKey: halfHash.String(), Data: []byte("d")},
		})
		plain := s.put(id, "plain", []byte("hello"))
		pl := newProcLog(true)
		c := newTestConsumer(t, s.api(), memory.New(), pl, WithOutsideShardRecords())
		stop := started(t, c)
		synctest.Wait()
		got := pl.records(id)
		if len(got) != 3 {
			t.Fatalf("delivered %v, want the aggregate's 2 records and the plain one", seqs(got))
		}
		for i, g := range got {
			wantOutside := g.SequenceNumber == outside
			if g.OutsideShard != wantOutside || (i == 2 && g.SequenceNumber != plain) {
				t.Errorf("record %d: %+v, want OutsideShard %v", i, g, wantOutside)
			}
		}
		if got := counterValue(c.met.dropped); got != 0 {
			t.Errorf("dropped %v user records, want 0", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

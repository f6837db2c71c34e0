package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/checkpoint"
	ckdynamo "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// Integration tests: kinesalite and dynalite from the local stack, the DynamoDB lease store.

// leaseTable returns a lease store on a fresh dynalite table, deleted when the test ends.
func leaseTable(t testing.TB, opts ...ckdynamo.Option) (*ckdynamo.Store, string) {
	t.Helper()
	return leaseTableNamed(t, testenv.Name(t, "leases"), opts...)
}

// leaseTableNamed is leaseTable with the table's name.
func leaseTableNamed(t testing.TB, table string, opts ...ckdynamo.Option) (*ckdynamo.Store, string) {
	t.Helper()
	client := testenv.DynamoDBClient(t)
	s, err := ckdynamo.New(client, table, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureTable(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTable(context.Background(), &ddb.DeleteTableInput{TableName: aws.String(table)})
	})
	return s, table
}

// eventually polls cond every 20ms until it holds, failing the test after timeout. It waits
// for state in external services, which offer nothing to block on.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	pollUntil(t, timeout, 20*time.Millisecond, what, cond)
}

// pollUntil polls cond every interval until it holds, failing the test after timeout.
func pollUntil(t testing.TB, timeout, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// putAll puts the records with PutRecords, 500 at a time, retrying failed entries.
func putAll(t testing.TB, kc *kinesis.Client, stream string, entries []ktypes.PutRecordsRequestEntry) {
	t.Helper()
	ctx := context.Background()
	for len(entries) > 0 {
		n := min(500, len(entries))
		out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries[:n]})
		if err != nil {
			t.Fatalf("putting records: %v", err)
		}
		var retry []ktypes.PutRecordsRequestEntry
		for i, r := range out.Records {
			if r.ErrorCode != nil {
				retry = append(retry, entries[i])
			}
		}
		entries = append(retry, entries[n:]...)
	}
}

func entry(pk, data string) ktypes.PutRecordsRequestEntry {
	return ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(pk), Data: []byte(data)}
}

func integrationLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func ownerCounts(t testing.TB, store checkpoint.Store) map[string]int {
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

func TestIntegrationBalance16Shards(t *testing.T) {
	kc := testenv.KinesisClient(t)
	store, _ := leaseTable(t)
	stream := testenv.Name(t, "balance")
	testenv.CreateStream(t, kc, stream, 16)
	const failover = time.Second
	pl := newProcLog(true)
	var workers []*Consumer
	var stops []func() error
	start := func(id string) {
		c, err := New(kc, store, stream, pl.factory(), WithWorkerID(id), WithFailoverTime(failover), WithLogger(integrationLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, c)
		stops = append(stops, started(t, c))
	}
	takes := func() (n float64) {
		for _, c := range workers {
			n += counterValue(c.met.leaseTakes)
		}
		return n
	}
	// settled wraps a condition on the table's owner counts: it holds once every worker's own
	// view agrees with the table too. A take is counted before its shard worker starts, so
	// then every take behind the counts has been counted and stable compares like with like.
	settled := func(ok func(m map[string]int) bool) func() bool {
		return func() bool {
			m := ownerCounts(t, store)
			if !ok(m) {
				return false
			}
			for _, c := range workers {
				if st := c.Status(); len(st.Shards) != m[st.WorkerID] {
					return false
				}
			}
			return true
		}
	}
	stable := func() {
		t.Helper()
		before, counts := takes(), ownerCounts(t, store)
		<-time.After(3 * failover) // an observation window: nothing may move in it
		if after := takes(); after != before {
			t.Fatalf("%v takes in %v after balancing (%v -> %v): thrashing", after-before, 3*failover, counts, ownerCounts(t, store))
		}
	}

	start("w1")
	eventually(t, 10*time.Second, "w1 to take all 16 shards", func() bool { return len(workers[0].Status().Shards) == 16 })
	start("w2")
	eventually(t, 30*time.Second, "8 shards each on 2 workers", settled(func(m map[string]int) bool {
		return m["w1"] == 8 && m["w2"] == 8
	}))
	stable()
	start("w3")
	eventually(t, 30*time.Second, "16 shards spread 6/5/5 on 3 workers", settled(func(m map[string]int) bool {
		n := []int{m["w1"], m["w2"], m["w3"]}
		return n[0]+n[1]+n[2] == 16 && slices.Max(n)-slices.Min(n) <= 1
	}))
	stable()
	t.Logf("leases: %v", ownerCounts(t, store))
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if m := ownerCounts(t, store); m[""] != 16 {
		t.Fatalf("after graceful shutdown: %v, want all 16 released", m)
	}
}

// streamFeeder puts numbered records with a few partition keys until stopped, in order per
// key, and remembers them.
type streamFeeder struct {
	t      testing.TB
	kc     *kinesis.Client
	stream string
	keys   int
	stop   chan struct{}
	done   chan struct{}

	mu   sync.Mutex
	sent map[string]bool
	next map[string]int
}

func feed(t testing.TB, kc *kinesis.Client, stream string, keys int, every time.Duration) *streamFeeder {
	f := &streamFeeder{t: t, kc: kc, stream: stream, keys: keys, stop: make(chan struct{}), done: make(chan struct{}), sent: map[string]bool{}, next: map[string]int{}}
	go func() {
		defer close(f.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			f.putRound()
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return f
}

// putRound puts one record per key, each carrying "key:n".
func (f *streamFeeder) putRound() {
	f.mu.Lock()
	var es []ktypes.PutRecordsRequestEntry
	var data []string
	for k := range f.keys {
		key := fmt.Sprint("key-", k)
		d := fmt.Sprintf("%s:%d", key, f.next[key])
		f.next[key]++
		es = append(es, entry(key, d))
		data = append(data, d)
	}
	f.mu.Unlock()
	putAll(f.t, f.kc, f.stream, es)
	f.mu.Lock()
	for _, d := range data {
		f.sent[d] = true
	}
	f.mu.Unlock()
}

func (f *streamFeeder) finish() map[string]bool {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.sent)
}

func TestIntegrationSIGKILLFailover(t *testing.T) { sigkillFailover(t, pollingKinesalite) }

// TestIntegrationSIGKILLFailoverLeaderAssignment: the same with leader assignment on
// dynalite's owner index. The killed worker is the leader (it started first): the other
// takes the leadership and the dead leader's shards within the same bound.
func TestIntegrationSIGKILLFailoverLeaderAssignment(t *testing.T) {
	sigkillFailover(t, pollingLeader)
}

func sigkillFailover(t *testing.T, rt retrieval) {
	kc := rt.client(t)
	var (
		store *ckdynamo.Store
		table string
	)
	if rt.leader {
		store, table = leaseTable(t, ckdynamo.WithOwnerIndex())
		coord, _ := leaseTableNamed(t, table+"-coordinator")
		rt.opts = append(slices.Clip(rt.opts), WithLeaderAssignment(coord))
	} else {
		store, table = leaseTable(t)
	}
	stream := testenv.Name(t, "failover")
	testenv.CreateStream(t, kc, stream, 4)
	const failover = 3 * time.Second
	f := feed(t, kc, stream, 16, 20*time.Millisecond)

	// a checkpoints every 2s, so that it dies with records processed after its last
	// checkpoint: those, and only those, must be delivered again.
	a := startWorkerProcess(t, workerSpec{Stream: stream, Table: table, WorkerID: "a", Failover: failover, CheckpointInterval: 2 * time.Second, FanOut: rt.name == fanOutMock.name, Leader: rt.leader})
	eventually(t, 20*time.Second, "worker a to hold and checkpoint all 4 shards", func() bool {
		ls, err := store.ListLeases(context.Background())
		if err != nil || len(ls) != 4 {
			return false
		}
		for _, l := range ls {
			if l.Owner != "a" || l.Checkpoint.Sequence == checkpoint.TrimHorizon {
				return false
			}
		}
		return true
	})
	pl := newProcLog(true)
	b, err := New(kc, store, stream, pl.factory(), append([]Option{WithWorkerID("b"), WithFailoverTime(failover), WithLogger(integrationLogger(t))}, rt.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	stopB := started(t, b)
	eventually(t, 20*time.Second, "2 shards each", func() bool {
		m := ownerCounts(t, store)
		return m["a"] == 2 && m["b"] == 2
	})
	<-time.After(time.Second) // let both work on their shards for a while

	a.kill(t)
	killedAt := time.Now()
	ls, err := store.ListLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	atKill := map[string]checkpoint.Checkpoint{} // a's shards and their last checkpoints
	for _, l := range ls {
		if l.Owner == "a" {
			atKill[l.Key] = l.Checkpoint
		}
	}
	if len(atKill) != 2 {
		t.Fatalf("a held %d shards when killed, want 2", len(atKill))
	}
	readAgain := func() bool {
		for shard, cp := range atKill {
			rs := pl.records(shard)
			if !slices.ContainsFunc(rs, func(r Record) bool { return r.Position().Compare(cp) > 0 }) {
				return false
			}
		}
		return true
	}
	eventually(t, failover+10*time.Second+rt.takeoverSlack, "b to read a's shards again", readAgain)
	took := time.Since(killedAt)
	t.Logf("a's shards read again by b %v after SIGKILL (failover time %v)", took, failover)
	if limit := failover + 2*time.Second + rt.takeoverSlack; took > limit {
		t.Errorf("takeover took %v, want within failover time + 2s (+ %v with %s: %v)", took, rt.takeoverSlack, rt.name, limit)
	}

	sent := f.finish()
	seen := func() map[string]int {
		m := map[string]int{}
		for _, r := range a.processed(t) {
			m[string(r.Data)]++
		}
		for _, r := range pl.records("") {
			m[string(r.Data)]++
		}
		return m
	}
	eventually(t, 30*time.Second, "every record sent to be processed", func() bool {
		got := seen()
		for d := range sent {
			if got[d] == 0 {
				return false
			}
		}
		return true
	})
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	// b restarted each of a's shards right after a's last checkpoint: nothing at or before
	// it was delivered again.
	for shard, cp := range atKill {
		var first *Record
		for _, r := range pl.records(shard) {
			if r.Position().Compare(cp) <= 0 {
				t.Errorf("shard %s: b redelivered %s, at or before a's last checkpoint %s", shard, r.Position(), cp)
			}
			if first == nil {
				first = &r
			}
		}
		var fromA []Record
		for _, r := range a.processed(t) {
			if r.ShardID == shard && r.Position().Compare(cp) > 0 {
				fromA = append(fromA, r)
			}
		}
		if len(fromA) == 0 {
			t.Errorf("shard %s: a processed nothing after its last checkpoint: the test proves nothing about redelivery", shard)
		} else if first == nil || first.Position() != fromA[0].Position() {
			t.Errorf("shard %s: b started at %v, want the first record after the checkpoint, %s", shard, first, fromA[0].Position())
		}
		t.Logf("shard %s: a's checkpoint %s, %d records a processed after it (redelivered by b)", shard, cp, len(fromA))
	}
	var dups int
	for _, n := range seen() {
		if n > 1 {
			dups++
		}
	}
	t.Logf("%d records sent, %d processed twice", len(sent), dups)
}

// reshardGate records, at each shard's Initialize, any parent lease not at SHARD_END.
type reshardGate struct {
	store      checkpoint.Store
	mu         sync.Mutex
	violations []string
}

func (g *reshardGate) check(ctx context.Context, in InitInput) error {
	l, err := g.store.GetLease(ctx, in.ShardID)
	if err != nil {
		return err
	}
	for _, p := range l.ParentShardIDs {
		pl, err := g.store.GetLease(ctx, p)
		if err == nil && pl.Checkpoint.Sequence != checkpoint.ShardEnd {
			g.mu.Lock()
			g.violations = append(g.violations, fmt.Sprintf("%s started while parent %s was at %s", in.ShardID, p, pl.Checkpoint))
			g.mu.Unlock()
		}
	}
	return nil
}

func waitActive(t testing.TB, kc *kinesis.Client, stream string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testenv.WaitStreamActive(ctx, kc, stream); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationSplitAndMergeDuringConsumption(t *testing.T) {
	splitAndMergeDuringConsumption(t, pollingKinesalite)
}

func splitAndMergeDuringConsumption(t *testing.T, rt retrieval) {
	kc := rt.client(t)
	store, _ := leaseTable(t)
	stream := testenv.Name(t, "reshard")
	testenv.CreateStream(t, kc, stream, 2)
	const failover = 3 * time.Second
	pl := newProcLog(true)
	gate := &reshardGate{store: store}
	pl.onInit = gate.check
	for _, id := range []string{"w1", "w2"} {
		c, err := New(kc, store, stream, pl.factory(), append([]Option{WithWorkerID(id), WithFailoverTime(failover), WithLogger(integrationLogger(t))}, rt.opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		started(t, c)
	}
	f := feed(t, kc, stream, 20, 20*time.Millisecond)
	ctx := context.Background()
	eventually(t, 10*time.Second, "records from both shards", func() bool {
		return len(pl.records("shardId-000000000000")) > 0 && len(pl.records("shardId-000000000001")) > 0
	})

	// Split shard 0 at a quarter of the hash space: children 2 (lower) and 3 (upper).
	quarter := new(big.Int).Lsh(big.NewInt(1), 126)
	if _, err := kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(stream), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String(quarter.String())}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, kc, stream)
	eventually(t, 20*time.Second, "records from both children of the split", func() bool {
		return len(pl.records("shardId-000000000002")) > 0 && len(pl.records("shardId-000000000003")) > 0
	})
	// Merge child 3 with its neighbour, shard 1: child 4.
	if _, err := kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String(stream), ShardToMerge: aws.String("shardId-000000000003"), AdjacentShardToMerge: aws.String("shardId-000000000001")}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, kc, stream)
	eventually(t, 20*time.Second, "records from the merged shard", func() bool { return len(pl.records("shardId-000000000004")) > 0 })
	<-time.After(500 * time.Millisecond) // a little more traffic on the merged shard
	sent := f.finish()

	eventually(t, 30*time.Second, "every record sent to be delivered", func() bool {
		got := map[string]bool{}
		for _, r := range pl.records("") {
			got[string(r.Data)] = true
		}
		for d := range sent {
			if !got[d] {
				return false
			}
		}
		return true
	})
	// Per key, records arrive in the order they were put, across the split and the merge.
	// (A lease moved between the workers replays from its checkpoint: redeliveries of
	// records already seen are at-least-once duplicates, not reordering.)
	last := map[string]int{}
	delivered := map[string]bool{}
	dups := 0
	for _, r := range pl.records("") {
		if delivered[string(r.Data)] {
			dups++
			continue
		}
		delivered[string(r.Data)] = true
		key, n, _ := strings.Cut(string(r.Data), ":")
		i, _ := strconv.Atoi(n)
		if prev, ok := last[key]; ok && i <= prev {
			t.Fatalf("key %s: record %d delivered after %d", key, i, prev)
		}
		last[key] = i
	}
	children := map[string][]string{
		"shardId-000000000000": {"shardId-000000000002", "shardId-000000000003"},
		"shardId-000000000001": {"shardId-000000000004"},
		"shardId-000000000003": {"shardId-000000000004"},
	}
	for p, want := range children {
		l, err := store.GetLease(ctx, p)
		if err != nil || l.Checkpoint.Sequence != checkpoint.ShardEnd {
			t.Errorf("parent %s: %+v %v, want SHARD_END", p, l, err)
		}
		// Like the KCL, a finished parent names its children.
		if !slices.Equal(l.ChildShardIDs, want) {
			t.Errorf("parent %s: childShardIds %v, want %v", p, l.ChildShardIDs, want)
		}
	}
	if len(gate.violations) > 0 {
		t.Fatal(gate.violations)
	}
	t.Logf("%d records across the split and merge, per-key order kept; %d redelivered", len(sent), dups)
}

func TestIntegrationKPLSubSequenceCheckpoint(t *testing.T) {
	kplSubSequenceCheckpoint(t, pollingKinesalite)
}

func kplSubSequenceCheckpoint(t *testing.T, rt retrieval) {
	kc := rt.client(t)
	store, _ := leaseTable(t)
	stream := testenv.Name(t, "kpl")
	testenv.CreateStream(t, kc, stream, 1)
	ctx := context.Background()
	p, err := producer.New(kc, stream, producer.WithAggregation(true))
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if err := p.Put(ctx, producer.Record{PartitionKey: "same-key", Data: []byte(fmt.Sprintf("user-record-%02d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The first worker makes 20 user records durable and stops.
	const durable = 20
	first := newProcLog(false)
	first.onRecords = func(_ context.Context, _ string, b *Batch) error {
		b.AckThrough(durable)
		return nil
	}
	c1, err := New(kc, store, stream, first.factory(), append([]Option{WithWorkerID("w1"), WithLogger(integrationLogger(t))}, rt.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := started(t, c1)
	eventually(t, 10*time.Second, "the first delivery", func() bool { return len(first.records("")) >= durable })
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	got := first.records("")
	want := got[durable-1].Position()
	if !got[durable-1].Aggregated || want.SubSequence == 0 {
		t.Fatalf("record %d is %+v: the producer did not aggregate", durable-1, got[durable-1])
	}
	l, err := store.GetLease(ctx, "shardId-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	if l.Checkpoint != want {
		t.Fatalf("checkpoint %v, want the 20th user record %v", l.Checkpoint, want)
	}

	// The next worker resumes inside the aggregate.
	second := newProcLog(true)
	c2, err := New(kc, store, stream, second.factory(), append([]Option{WithWorkerID("w2"), WithLogger(integrationLogger(t))}, rt.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := started(t, c2)
	eventually(t, 10*time.Second, "the rest of the records", func() bool { return len(second.records("")) >= n-durable })
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	rest := second.records("")
	if len(rest) != n-durable {
		t.Fatalf("second worker got %d records, want %d", len(rest), n-durable)
	}
	for i, r := range rest {
		if wantData := fmt.Sprintf("user-record-%02d", durable+i); string(r.Data) != wantData {
			t.Fatalf("second worker's record %d is %q at %v, want %q", i, r.Data, r.Position(), wantData)
		}
	}
	t.Logf("checkpoint %v inside an aggregate; resumed at %v", l.Checkpoint, rest[0].Position())
}

// TestIntegrationLeavesForeignItemsAlone: a lease table shared with the KCL holds items
// that are not this stream's shard leases — a KCL 3.x entity item and a multi-stream lease
// (key account:stream:epoch:shardId). The worker takes and deletes only its shard leases;
// it used to delete both foreign items at its first shard sync.
func TestIntegrationLeavesForeignItemsAlone(t *testing.T) {
	kc := testenv.KinesisClient(t)
	store, table := leaseTable(t)
	stream := testenv.Name(t, "foreign")
	testenv.CreateStream(t, kc, stream, 1)
	dc := testenv.DynamoDBClient(t)
	foreign := []map[string]ddbtypes.AttributeValue{
		{"leaseKey": &ddbtypes.AttributeValueMemberS{Value: "Migration3.0"}, "entityType": &ddbtypes.AttributeValueMemberS{Value: "MIGRATION"},
			"leaseCounter": &ddbtypes.AttributeValueMemberN{Value: "0"}, "checkpoint": &ddbtypes.AttributeValueMemberS{Value: "TRIM_HORIZON"}},
		{"leaseKey": &ddbtypes.AttributeValueMemberS{Value: "123456789012:other-stream:1700000000:shardId-000000000000"},
			"leaseCounter": &ddbtypes.AttributeValueMemberN{Value: "7"}, "checkpoint": &ddbtypes.AttributeValueMemberS{Value: "TRIM_HORIZON"},
			"leaseOwner": &ddbtypes.AttributeValueMemberS{Value: "kcl-worker"}},
	}
	for _, item := range foreign {
		if _, err := dc.PutItem(context.Background(), &ddb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	pl := newProcLog(true)
	counted := &listCounter{Client: kc}
	c, err := New(counted, store, stream, pl.factory(), WithWorkerID("w"), WithFailoverTime(time.Second), WithShardSyncInterval(100*time.Millisecond), WithLogger(integrationLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	stop := started(t, c)
	eventually(t, 30*time.Second, "the stream's shard leased by w", func() bool { return ownerCounts(t, store)["w"] == 1 })
	// Several shard syncs (each lists the shards, then deletes leases of shards gone) pass.
	syncs := counted.n.Load()
	eventually(t, 30*time.Second, "three more shard syncs", func() bool { return counted.n.Load() >= syncs+3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, item := range foreign {
		key := item["leaseKey"].(*ddbtypes.AttributeValueMemberS).Value
		out, err := dc.GetItem(context.Background(), &ddb.GetItemInput{TableName: aws.String(table), Key: map[string]ddbtypes.AttributeValue{"leaseKey": item["leaseKey"]}, ConsistentRead: aws.Bool(true)})
		if err != nil || out.Item == nil {
			t.Fatalf("foreign item %s deleted (%v)", key, err)
		}
		if got, want := out.Item["leaseCounter"].(*ddbtypes.AttributeValueMemberN).Value, item["leaseCounter"].(*ddbtypes.AttributeValueMemberN).Value; got != want {
			t.Errorf("foreign item %s changed: leaseCounter %s, was %s", key, got, want)
		}
	}
}

// listCounter counts ListShards calls of a real client: each shard sync makes one.
type listCounter struct {
	*kinesis.Client
	n atomic.Int64
}

func (l *listCounter) ListShards(ctx context.Context, in *kinesis.ListShardsInput, opts ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	l.n.Add(1)
	return l.Client.ListShards(ctx, in, opts...)
}

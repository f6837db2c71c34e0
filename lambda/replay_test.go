package lambda

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// cutAfterUpdates cancels the invocation once n progress writes have succeeded: the
// function dies there, between two chunks.
type cutAfterUpdates struct {
	DynamoDBAPI
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (c *cutAfterUpdates) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := c.DynamoDBAPI.UpdateItem(ctx, in, opts...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.cancel != nil {
		if c.n--; c.n == 0 {
			c.cancel()
		}
	}
	return out, err
}

func (c *cutAfterUpdates) arm(n int, cancel context.CancelFunc) {
	c.mu.Lock()
	c.n, c.cancel = n, cancel
	c.mu.Unlock()
}

// TestReplayRestoresDiscardedBatches: Lambda discards a batch whose first chunk was
// committed and whose second died after writing objects; the next batch's invocation
// removes those. Replay (from the payload, then from the stream) re-archives exactly the
// records that went missing, and again finds nothing to do. A discarded last batch, after
// which nothing was committed, is replayed through the protocol.
func TestReplayRestoresDiscardedBatches(t *testing.T) {
	st := newStack(t, 1)
	good, bad := st.put(t, 0, 150)
	recs := st.read(t, shard0)
	n := len(recs)
	a, b, c := recs[:n/3], recs[n/3:2*n/3], recs[2*n/3:n-5]
	last := recs[n-5:]
	cut := &cutAfterUpdates{DynamoDBAPI: st.ddb}
	f := st.function(t, nil, cut, WithChunkSize(800), WithReserve(0))
	deliver := func(name string, batch []byte, dieAfter int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if dieAfter > 0 {
			cut.arm(dieAfter, cancel)
		} else {
			cut.arm(0, nil)
		}
		resp, err := f.Handle(ctx, batch)
		if dieAfter == 0 && (err != nil || len(resp.BatchItemFailures) > 0) {
			t.Fatalf("batch %s: %+v %v", name, resp, err)
		}
		if dieAfter > 0 && ctx.Err() == nil {
			t.Fatalf("batch %s was to die after %d progress writes but did not", name, dieAfter)
		}
	}
	deliver("a", st.event(shard0, a), 0)
	deliver("b", st.event(shard0, b), 3) // chunk 1 committed, chunk 2 pending: then discarded
	deliver("c", st.event(shard0, c), 0) // removes b's uncommitted objects
	deliver("last", st.event(shard0, last), 1)
	if p := st.archive(t).problems(good, bad); p == "" {
		t.Fatal("the discarded batches left nothing missing: the test does not exercise replay")
	}
	res, err := f.Replay(t.Context(), Discarded{Stream: st.stream, Shard: shard0, Start: *b[0].SequenceNumber, End: *b[len(b)-1].SequenceNumber, Payload: st.event(shard0, b)}, st.kin, st.s3)
	if err != nil {
		t.Fatal(err)
	}
	if res.Archived == 0 || res.Rearchived == 0 || res.Archived+res.Rearchived != res.Records {
		t.Fatalf("replay of b: %+v: want some records already archived (chunk 1) and the rest rearchived", res)
	}
	res, err = f.Replay(t.Context(), Discarded{Stream: st.stream, Shard: shard0, Start: *last[0].SequenceNumber, End: *last[len(last)-1].SequenceNumber}, st.kin, st.s3)
	if err != nil || res.Rearchived == 0 {
		t.Fatalf("replay of the last batch, from the stream: %+v %v", res, err)
	}
	if p := st.archive(t).problems(good, bad); p != "" {
		t.Fatalf("after replay: %s", p)
	}
	before := len(st.objects(t))
	for _, r := range [][2]string{{*a[0].SequenceNumber, *a[len(a)-1].SequenceNumber}, {*b[0].SequenceNumber, *b[len(b)-1].SequenceNumber}, {*last[0].SequenceNumber, *last[len(last)-1].SequenceNumber}} {
		res, err := f.Replay(t.Context(), Discarded{Stream: st.stream, Shard: shard0, Start: r[0], End: r[1]}, st.kin, st.s3)
		if err != nil || res.Rearchived != 0 || res.Archived != res.Records {
			t.Fatalf("replaying %s..%s again: %+v %v, want everything found archived", r[0], r[1], res, err)
		}
	}
	if after := len(st.objects(t)); after != before {
		t.Fatalf("replays of archived batches wrote objects: %d, were %d", after, before)
	}
}

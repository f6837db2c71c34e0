package checkpoint_test

import (
	"testing"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/checkpointtest"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

// foreign are items of a shared multi-stream table that a view of stream 111:logs:100 must
// never show or change: a single-stream lease, another stream's lease, the same stream name
// with another creation time (deleted and created again) and a KCL 3.x entity item.
var foreign = []checkpoint.Lease{
	{Key: "shardId-000000000000", Owner: "kcl", Counter: 3, Checkpoint: checkpoint.Checkpoint{Sequence: "7"}},
	{Key: "111:other:100:shardId-000000000000", Owner: "kcl", Counter: 5, Checkpoint: checkpoint.Checkpoint{Sequence: "9"}},
	{Key: "111:logs:99:shardId-000000000000", Counter: 1, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.ShardEnd}},
	{Key: "Migration3.0", Counter: 2},
}

func withForeign(t *testing.T) *memory.Store {
	t.Helper()
	s := memory.New()
	for _, l := range foreign {
		if _, err := s.CreateLease(t.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestStreamViewIsAStore: a view passes the store acceptance suite, on a table that also
// holds foreign items (the suite's listings see none of them).
func TestStreamViewIsAStore(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) checkpoint.Store {
		return checkpoint.StreamView(withForeign(t), checkpoint.StreamID("111", "logs", 100))
	})
}

// TestStreamViewLeavesOthersAlone: every write through the view lands on the stream's own
// key, and the foreign items keep their values.
func TestStreamViewLeavesOthersAlone(t *testing.T) {
	ctx := t.Context()
	inner := withForeign(t)
	before := map[string]checkpoint.Lease{}
	for _, l := range foreign {
		got, err := inner.GetLease(ctx, l.Key)
		if err != nil {
			t.Fatal(err)
		}
		before[l.Key] = got
	}
	v := checkpoint.StreamView(inner, "111:logs:100")
	if got := v.StreamID(); got != "111:logs:100" {
		t.Fatalf("StreamID = %q", got)
	}
	if ls, err := v.ListLeases(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("a fresh view lists %v (%v), want nothing", ls, err)
	}
	const shard = "shardId-000000000000"
	if _, err := v.CreateLease(ctx, checkpoint.Lease{Key: shard, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}, ParentShardIDs: []string{"shardId-000000000009"}}); err != nil {
		t.Fatal(err)
	}
	ls, err := v.ListLeases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Key != shard || ls[0].ParentShardIDs[0] != "shardId-000000000009" {
		t.Fatalf("view lists %+v (%v), want the one lease under its plain shard id with its plain parent", ls, err)
	}
	held, err := v.TakeLease(ctx, ls[0], "w")
	if err != nil || held.Key != shard {
		t.Fatalf("take: %+v, %v", held, err)
	}
	if held, err = v.RenewLease(ctx, held); err != nil {
		t.Fatal(err)
	}
	if held, err = v.PrepareCheckpoint(ctx, held, checkpoint.Checkpoint{Sequence: "20"}); err != nil {
		t.Fatal(err)
	}
	if held, err = v.CheckpointWithState(ctx, held, checkpoint.Checkpoint{Sequence: "20"}, []byte("st")); err != nil {
		t.Fatal(err)
	}
	if held, err = v.Checkpoint(ctx, held, checkpoint.Checkpoint{Sequence: checkpoint.ShardEnd}); err != nil {
		t.Fatal(err)
	}
	if held, err = v.SetChildShards(ctx, held, []string{"shardId-000000000001"}); err != nil {
		t.Fatal(err)
	}
	stored, err := inner.GetLease(ctx, "111:logs:100:"+shard)
	if err != nil {
		t.Fatalf("the view's lease is not under its multi-stream key: %v", err)
	}
	stored.Key = shard
	if !stored.Equal(held) {
		t.Fatalf("stored %+v, the view returned %+v", stored, held)
	}
	if err := v.ReleaseLease(ctx, held); err != nil {
		t.Fatal(err)
	}
	if err := v.ResetCheckpoint(ctx, shard, checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}); err != nil {
		t.Fatal(err)
	}
	if err := v.DeleteLease(ctx, shard); err != nil {
		t.Fatal(err)
	}
	if _, err := inner.GetLease(ctx, "111:logs:100:"+shard); err == nil {
		t.Fatal("the view's delete left its lease")
	}
	for _, l := range foreign {
		got, err := inner.GetLease(ctx, l.Key)
		if err != nil {
			t.Fatalf("foreign item %s: %v", l.Key, err)
		}
		if !got.Equal(before[l.Key]) {
			t.Errorf("foreign item %s changed: %+v, was %+v", l.Key, got, before[l.Key])
		}
	}
	all, err := inner.ListLeases(ctx)
	if err != nil || len(all) != len(foreign) {
		t.Fatalf("table holds %d items (%v), want the %d foreign ones", len(all), err, len(foreign))
	}
}

func TestParseMultiStreamKey(t *testing.T) {
	for _, c := range []struct {
		key, stream, shard string
		ok                 bool
	}{
		{"123456789012:logs:1700000000:shardId-000000000001", "123456789012:logs:1700000000", "shardId-000000000001", true},
		{checkpoint.StreamID("000000000000", "a.b-c_d", 5) + ":shardId-000000000000", "000000000000:a.b-c_d:5", "shardId-000000000000", true},
		{"shardId-000000000001", "", "", false},
		{"Migration3.0", "", "", false},
		{"123:logs:notanumber:shardId-1", "", "", false},
		{"123:logs:5:", "", "", false},
		{":logs:5:shardId-1", "", "", false},
		{"a:b:c:d:5:shardId-1", "", "", false},
	} {
		stream, shard, ok := checkpoint.ParseMultiStreamKey(c.key)
		if stream != c.stream || shard != c.shard || ok != c.ok {
			t.Errorf("ParseMultiStreamKey(%q) = %q, %q, %v; want %q, %q, %v", c.key, stream, shard, ok, c.stream, c.shard, c.ok)
		}
	}
}

package consumer

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

// reshardedStream has shards 0-3 open and shard 4 closed, split into 5 and 6.
func reshardedStream() *testStream {
	s := newTestStream()
	s.addShards(5)
	s.close("shardId-000000000004")
	p := s.shard("shardId-000000000004")
	s.addChild(p.startHash, hashStr(halfHash, 100), p.id)
	s.addChild(hashStr(halfHash, 101), p.endHash, p.id)
	s.pageSize = 2
	return s
}

func checkpointsOf(t *testing.T, store checkpoint.Store) map[string]string {
	t.Helper()
	ls, err := store.ListLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range ls {
		m[l.Key] = l.Checkpoint.Sequence
	}
	return m
}

func TestSyncCreatesLeasesWithParentsAndRanges(t *testing.T) {
	s := reshardedStream()
	api := s.api()
	store := memory.New()
	ctx := context.Background()
	// A lease of a shard no longer in the stream.
	if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: "shardId-000000000099", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.ShardEnd}}); err != nil {
		t.Fatal(err)
	}
	c := newTestConsumer(t, api, store, newProcLog(true))
	if err := c.syncShards(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(api.callsOf("ListShards", "")); n != 4 {
		t.Errorf("%d ListShards calls for 7 shards in pages of 2, want 4", n)
	}
	for i, cl := range api.callsOf("ListShards", "") {
		in := cl.in.(*kinesis.ListShardsInput)
		if (i == 0) != (in.NextToken == nil) || (i == 0) != (in.StreamName != nil) {
			t.Errorf("ListShards call %d: StreamName %v NextToken %v; want the name first, then only tokens", i, aws.ToString(in.StreamName), aws.ToString(in.NextToken))
		}
	}
	ls, err := store.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 7 {
		t.Fatalf("%d leases, want 7 (the gone shard's deleted)", len(ls))
	}
	for _, l := range ls {
		sh := s.shard(l.Key)
		if l.Checkpoint.Sequence != checkpoint.TrimHorizon || l.StartingHashKey != sh.startHash || l.EndingHashKey != sh.endHash || !slices.Equal(l.ParentShardIDs, sh.parents) || l.Owner != "" {
			t.Errorf("lease %+v does not match shard %+v", l, sh)
		}
	}
	// A second sync changes nothing.
	before := checkpointsOf(t, store)
	if err := c.syncShards(ctx); err != nil {
		t.Fatal(err)
	}
	if after := checkpointsOf(t, store); len(after) != len(before) {
		t.Fatalf("second sync changed leases: %v -> %v", before, after)
	}
}

func TestSyncInitialPositions(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		pos      InitialPosition
		existing map[string]string // leases before the sync
		want     map[string]string
	}{
		{
			name: "LATEST skips closed shards; their children start at LATEST",
			pos:  Latest,
			want: map[string]string{
				"shardId-000000000000": "LATEST", "shardId-000000000001": "LATEST", "shardId-000000000002": "LATEST",
				"shardId-000000000003": "LATEST", "shardId-000000000005": "LATEST", "shardId-000000000006": "LATEST",
			},
		},
		{
			name:     "children of a leased parent start at TRIM_HORIZON",
			pos:      Latest,
			existing: map[string]string{"shardId-000000000004": "4959000001"},
			want: map[string]string{
				"shardId-000000000000": "LATEST", "shardId-000000000001": "LATEST", "shardId-000000000002": "LATEST",
				"shardId-000000000003": "LATEST", "shardId-000000000004": "4959000001",
				"shardId-000000000005": "TRIM_HORIZON", "shardId-000000000006": "TRIM_HORIZON",
			},
		},
		{
			name: "AT_TIMESTAMP everywhere",
			pos:  AtTimestamp(time.Unix(1e9, 0)),
			want: map[string]string{
				"shardId-000000000000": "AT_TIMESTAMP", "shardId-000000000001": "AT_TIMESTAMP", "shardId-000000000002": "AT_TIMESTAMP",
				"shardId-000000000003": "AT_TIMESTAMP", "shardId-000000000004": "AT_TIMESTAMP",
				"shardId-000000000005": "AT_TIMESTAMP", "shardId-000000000006": "AT_TIMESTAMP",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := memory.New()
			for k, cp := range tt.existing {
				if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: k, Checkpoint: checkpoint.Checkpoint{Sequence: cp}}); err != nil {
					t.Fatal(err)
				}
			}
			c := newTestConsumer(t, reshardedStream().api(), store, newProcLog(true), WithInitialPosition(tt.pos))
			if err := c.syncShards(ctx); err != nil {
				t.Fatal(err)
			}
			got := checkpointsOf(t, store)
			if len(got) != len(tt.want) {
				t.Fatalf("leases %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("lease %s at %s, want %s", k, got[k], v)
				}
			}
		})
	}
}

func TestSyncIgnoresEmptyListing(t *testing.T) {
	store := memory.New()
	ctx := context.Background()
	if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: "shardId-000000000000", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
		t.Fatal(err)
	}
	c := newTestConsumer(t, newTestStream().api(), store, newProcLog(true))
	if err := c.syncShards(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetLease(ctx, "shardId-000000000000"); err != nil {
		t.Fatalf("an empty shard listing deleted a lease: %v", err)
	}
}

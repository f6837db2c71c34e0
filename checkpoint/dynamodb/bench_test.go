package dynamodb_test

import (
	"fmt"
	"testing"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/testenv"
)

// benchLease creates a table with one lease held by "w" and returns the store and lease.
func benchLease(b *testing.B) (checkpoint.Store, checkpoint.Lease) {
	b.Helper()
	client := testenv.DynamoDBClient(b)
	s := newTable(b, client)
	ctx := b.Context()
	if err := s.EnsureTable(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreateLease(ctx, checkpoint.Lease{Key: "shardId-000000000000", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
		b.Fatal(err)
	}
	l, err := s.GetLease(ctx, "shardId-000000000000")
	if err != nil {
		b.Fatal(err)
	}
	if l, err = s.TakeLease(ctx, l, "w"); err != nil {
		b.Fatal(err)
	}
	return s, l
}

// BenchmarkTake measures one take: two workers steal the lease from each other in turn.
func BenchmarkTake(b *testing.B) {
	s, l := benchLease(b)
	owners := [2]string{"a", "b"}
	var err error
	i := 0
	for b.Loop() {
		if l, err = s.TakeLease(b.Context(), l, owners[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRenew(b *testing.B) {
	s, l := benchLease(b)
	var err error
	for b.Loop() {
		if l, err = s.RenewLease(b.Context(), l); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckpoint measures one checkpoint at an increasing position.
func BenchmarkCheckpoint(b *testing.B) {
	s, l := benchLease(b)
	var err error
	i := 0
	for b.Loop() {
		cp := checkpoint.Checkpoint{Sequence: fmt.Sprintf("4959033827149025660855969253836157109592157598%010d", i)}
		if l, err = s.Checkpoint(b.Context(), l, cp); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPrepareCheckpoint measures one two-phase boundary: prepare, then checkpoint.
func BenchmarkPrepareCheckpoint(b *testing.B) {
	s, l := benchLease(b)
	var err error
	i := 0
	for b.Loop() {
		cp := checkpoint.Checkpoint{Sequence: fmt.Sprintf("4959033827149025660855969253836157109592157598%010d", i), SubSequence: 3}
		if l, err = s.PrepareCheckpoint(b.Context(), l, cp); err != nil {
			b.Fatal(err)
		}
		if l, err = s.Checkpoint(b.Context(), l, cp); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkListLeases100 measures a listing of a 100-lease table (one per shard).
func BenchmarkListLeases100(b *testing.B) {
	s, _ := benchLease(b)
	for i := 1; i < 100; i++ {
		if _, err := s.CreateLease(b.Context(), checkpoint.Lease{Key: fmt.Sprintf("shardId-%012d", i), Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		ls, err := s.ListLeases(b.Context())
		if err != nil || len(ls) != 100 {
			b.Fatalf("ListLeases: %d leases, %v", len(ls), err)
		}
	}
}

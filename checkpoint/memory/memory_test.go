package memory_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/checkpointtest"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

func TestStore(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) checkpoint.Store { return memory.New() })
}

func TestEndedContext(t *testing.T) {
	s := memory.New()
	if _, err := s.CreateLease(t.Context(), checkpoint.Lease{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	held, err := s.TakeLease(t.Context(), checkpoint.Lease{Key: "k"}, "w")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	cp := checkpoint.Checkpoint{Sequence: "5"}
	calls := map[string]error{
		"EnsureTable":     s.EnsureTable(ctx),
		"ResetCheckpoint": s.ResetCheckpoint(ctx, "k", cp),
		"DeleteLease":     s.DeleteLease(ctx, "k"),
		"ReleaseLease":    s.ReleaseLease(ctx, held),
	}
	_, calls["ListLeases"] = s.ListLeases(ctx)
	_, calls["GetLease"] = s.GetLease(ctx, "k")
	_, calls["CreateLease"] = s.CreateLease(ctx, checkpoint.Lease{Key: "k2"})
	_, calls["TakeLease"] = s.TakeLease(ctx, held, "v")
	_, calls["RenewLease"] = s.RenewLease(ctx, held)
	_, calls["Checkpoint"] = s.Checkpoint(ctx, held, cp)
	_, calls["PrepareCheckpoint"] = s.PrepareCheckpoint(ctx, held, cp)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with an ended context: %v, want context.Canceled", name, err)
		}
	}
	// Nothing changed.
	got, err := s.GetLease(t.Context(), "k")
	if err != nil || got.Counter != held.Counter || got.Owner != "w" || !got.Checkpoint.IsZero() {
		t.Fatalf("lease after calls with an ended context: %+v, %v", got, err)
	}
}

func ExampleStore() {
	ctx := context.Background()
	s := memory.New()
	_, _ = s.CreateLease(ctx, checkpoint.Lease{Key: "shardId-000000000000", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}})

	observed, _ := s.GetLease(ctx, "shardId-000000000000")
	a, _ := s.TakeLease(ctx, observed, "worker-a")
	a, _ = s.Checkpoint(ctx, a, checkpoint.Checkpoint{Sequence: "100", SubSequence: 2})

	// worker-b steals the lease; worker-a's next write is fenced off.
	observed, _ = s.GetLease(ctx, "shardId-000000000000")
	b, _ := s.TakeLease(ctx, observed, "worker-b")
	_, err := s.Checkpoint(ctx, a, checkpoint.Checkpoint{Sequence: "200"})
	fmt.Println(errors.Is(err, checkpoint.ErrLeaseLost))
	fmt.Println(b.Owner, b.Counter, b.Checkpoint, b.OwnerSwitchesSinceCheckpoint)
	// Output:
	// true
	// worker-b 3 100/2 1
}

package memory_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

// The life of one lease as a worker drives it: create, take, the two-phase checkpoint of a
// batch (prepare its boundary, make it durable, checkpoint it), release. Every write
// increments the counter and returns the lease to pass to the next write.
func ExampleStore_PrepareCheckpoint() {
	ctx := context.Background()
	s := memory.New()
	created, _ := s.CreateLease(ctx, checkpoint.Lease{Key: "shardId-000000000000", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}})
	fmt.Println("created:", created)

	observed, _ := s.GetLease(ctx, "shardId-000000000000")
	held, _ := s.TakeLease(ctx, observed, "worker-a")
	fmt.Println("taken:", held.Owner, held.Counter, held.Checkpoint)

	held, _ = s.PrepareCheckpoint(ctx, held, checkpoint.Checkpoint{Sequence: "300"})
	fmt.Println("prepared:", held.Counter, held.Checkpoint, "pending", *held.Pending)

	// ... the batch up to 300 is written ...
	held, _ = s.Checkpoint(ctx, held, checkpoint.Checkpoint{Sequence: "300"})
	fmt.Println("checkpointed:", held.Counter, held.Checkpoint, "pending", held.Pending)

	_, err := s.Checkpoint(ctx, held, checkpoint.Checkpoint{Sequence: "200"})
	fmt.Println("backwards:", errors.Is(err, checkpoint.ErrRegression))

	_ = s.ReleaseLease(ctx, held)
	l, _ := s.GetLease(ctx, "shardId-000000000000")
	fmt.Printf("released: owner %q, counter %d, checkpoint %s\n", l.Owner, l.Counter, l.Checkpoint)
	// Output:
	// created: true
	// taken: worker-a 1 TRIM_HORIZON
	// prepared: 2 TRIM_HORIZON pending 300
	// checkpointed: 3 300 pending <nil>
	// backwards: true
	// released: owner "", counter 4, checkpoint 300
}

// An operator moves a checkpoint back to replay a shard (what `kinlog checkpoint reset`
// does); the holder's next write is fenced off, since the counter moved.
func ExampleStore_ResetCheckpoint() {
	ctx := context.Background()
	s := memory.New()
	_, _ = s.CreateLease(ctx, checkpoint.Lease{Key: "shardId-000000000000"})
	observed, _ := s.GetLease(ctx, "shardId-000000000000")
	held, _ := s.TakeLease(ctx, observed, "worker-a")
	held, _ = s.Checkpoint(ctx, held, checkpoint.Checkpoint{Sequence: "500", SubSequence: 3})

	_ = s.ResetCheckpoint(ctx, "shardId-000000000000", checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon})
	_, err := s.RenewLease(ctx, held)
	fmt.Println("holder's renewal:", errors.Is(err, checkpoint.ErrLeaseLost))
	l, _ := s.GetLease(ctx, "shardId-000000000000")
	fmt.Println(l.Owner, l.Counter, l.Checkpoint)
	// Output:
	// holder's renewal: true
	// worker-a 3 TRIM_HORIZON
}

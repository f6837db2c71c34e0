package checkpoint_test

import (
	"fmt"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
)

func ExampleCheckpoint_Compare() {
	a := checkpoint.Checkpoint{Sequence: "49590338271490256608559692538361571095921575989136588801", SubSequence: 4}
	b := checkpoint.Checkpoint{Sequence: "49590338271490256608559692538361571095921575989136588801", SubSequence: 5}
	end := checkpoint.Checkpoint{Sequence: checkpoint.ShardEnd}
	start := checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}
	fmt.Println(a.Compare(b), b.Compare(a), end.Compare(b), start.Compare(a))
	// Output: -1 1 1 -1
}

func ExampleTracker() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := checkpoint.NewTracker(10*time.Second, func() time.Time { return now })

	l := checkpoint.Lease{Key: "shardId-000000000000", Owner: "worker-a", Counter: 41}
	tr.Observe([]checkpoint.Lease{l}) // after each ListLeases
	fmt.Println("at 0s:", tr.Available(l))

	now = now.Add(10 * time.Second) // the counter did not move for the failover time
	tr.Observe([]checkpoint.Lease{l})
	fmt.Println("at 10s:", tr.Available(l))
	// Output:
	// at 0s: false
	// at 10s: true
}

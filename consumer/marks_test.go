package consumer

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

// TestMarkedBoundariesAndStates runs a processor that marks a boundary every third record
// (after acknowledging the two before it without a mark) with the state "state@<n>": the
// worker checkpoints only at marks, each with its state; a restarted worker gives the next
// processor the stored state; at the shard's end SHARD_END keeps the last state and the
// children get it as their parents' state.
func TestMarkedBoundariesAndStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		parent := s.addShards(1)[0]
		var seqs []string
		for i := range 8 {
			seqs = append(seqs, s.put(parent, "k", []byte{byte(i)}))
		}
		store := memory.New()
		var mu sync.Mutex
		delivered := 0
		inits := map[string]InitInput{}
		pl := newProcLog(false)
		pl.onInit = func(_ context.Context, in InitInput) error {
			mu.Lock()
			inits[in.ShardID] = in
			mu.Unlock()
			return nil
		}
		pl.onRecords = func(_ context.Context, shard string, b *Batch) error {
			for i := range b.Records {
				mu.Lock()
				delivered++
				n := delivered
				mu.Unlock()
				if n%3 == 0 {
					b.AckThroughState(i+1, []byte(fmt.Sprintf("state@%d", n)))
				} else {
					b.AckThrough(i + 1)
				}
			}
			return nil
		}
		c := newTestConsumer(t, s.api(), store, pl, WithCheckpointInterval(0))
		stop := started(t, c)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		// 8 records: marks after the 3rd and the 6th; the 7th and 8th are acknowledged
		// past the last mark, so the checkpoint stays at the 6th.
		l := lease(t, store, parent)
		if l.Checkpoint.Sequence != seqs[5] || string(l.State) != "state@6" {
			t.Fatalf("checkpoint %v with state %q, want %s with state@6", l.Checkpoint, l.State, seqs[5])
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if l := lease(t, store, parent); l.Checkpoint.Sequence != seqs[5] {
			t.Fatalf("shutdown checkpointed %v past the last mark", l.Checkpoint)
		}

		// A restart resumes after the mark with its state; one more record makes a mark.
		mu.Lock()
		delivered = 8
		mu.Unlock()
		s.put(parent, "k", []byte{9})
		s.close(parent)
		child := s.addChild("0", maxHash.String(), parent)
		s.put(child, "k", []byte{10})
		c2 := newTestConsumer(t, s.api(), store, pl, WithCheckpointInterval(0))
		stop2 := started(t, c2)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		mu.Lock()
		pin, cin := inits[parent], inits[child]
		mu.Unlock()
		if pin.Start.Sequence != seqs[5] || string(pin.State) != "state@6" {
			t.Fatalf("restarted processor got start %v state %q", pin.Start, pin.State)
		}
		if l := lease(t, store, parent); l.Checkpoint.Sequence != checkpoint.ShardEnd || string(l.State) != "state@9" {
			t.Fatalf("parent at %v with state %q, want SHARD_END with state@9", l.Checkpoint, l.State)
		}
		if cin.State != nil || len(cin.ParentStates) != 1 || !bytes.Equal(cin.ParentStates[0], []byte("state@9")) {
			t.Fatalf("child got state %q and parents' states %q", cin.State, cin.ParentStates)
		}
		if err := stop2(); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(kinds(pl.of(parent, "")), "ended") {
			t.Fatal("the parent never ended")
		}
	})
}

package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
)

func recs(seqs ...string) []Record {
	out := make([]Record, len(seqs))
	for i, s := range seqs {
		seq, sub, _ := cutSub(s)
		out[i] = Record{SequenceNumber: seq, SubSequenceNumber: sub}
	}
	return out
}

// cutSub splits "seq/sub".
func cutSub(s string) (string, uint64, bool) {
	for i := range len(s) {
		if s[i] == '/' {
			var sub uint64
			fmt.Sscan(s[i+1:], &sub)
			return s[:i], sub, true
		}
	}
	return s, 0, false
}

func cp(s string) checkpoint.Checkpoint {
	seq, sub, _ := cutSub(s)
	return checkpoint.Checkpoint{Sequence: seq, SubSequence: sub}
}

func TestAckTrackerCapsAtContiguousAcks(t *testing.T) {
	tr := newAckTracker(10, cp(checkpoint.TrimHorizon), nil)
	ctx := context.Background()
	add := func(r []Record) *inflight {
		if err := tr.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		return tr.add(r, time.Time{}, 0)
	}
	b1 := add(recs("11", "12", "13"))
	b2 := add(recs("21/0", "21/1", "21/2"))
	b3 := add(recs("31", "32"))

	steps := []struct {
		name     string
		f        *inflight
		n        int
		want     string
		inFlight int
	}{
		{"third batch acked first: nothing moves", b3, 2, checkpoint.TrimHorizon, 3},
		{"second batch partly: nothing moves", b2, 2, checkpoint.TrimHorizon, 3},
		{"first batch partly: moves inside it", b1, 1, "11", 3},
		{"first batch whole: runs through the acked prefix of the second", b1, 3, "21/1", 2},
		{"second batch whole: runs through the third", b2, 3, "32", 0},
	}
	for _, s := range steps {
		tr.ack(s.f, s.n)
		st := tr.state()
		if got := st.pos; got != cp(s.want) {
			t.Fatalf("%s: position %v, want %s", s.name, got, s.want)
		}
		if st.inFlight != s.inFlight {
			t.Fatalf("%s: %d batches in flight, want %d", s.name, st.inFlight, s.inFlight)
		}
	}
	if err := tr.waitAllAcked(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAckTrackerBackpressure(t *testing.T) {
	tr := newAckTracker(2, cp(checkpoint.TrimHorizon), nil)
	ctx := context.Background()
	var fs []*inflight
	for i := range 2 {
		if err := tr.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, tr.add(recs(fmt.Sprint(10+i)), time.Time{}, 0))
	}
	full, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if err := tr.acquire(full); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire with 2 of 2 in flight: %v, want deadline exceeded", err)
	}
	// Acknowledging the second batch frees nothing: the first still holds the cap.
	tr.ack(fs[1], 1)
	again, cancel2 := context.WithTimeout(ctx, time.Millisecond)
	defer cancel2()
	if err := tr.acquire(again); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire after acking a later batch: %v, want deadline exceeded", err)
	}
	tr.ack(fs[0], 1)
	for range 2 {
		if err := tr.acquire(ctx); err != nil {
			t.Fatalf("acquire after acking everything: %v", err)
		}
	}
}

func TestAckTrackerIgnoresAcksAfterClose(t *testing.T) {
	tr := newAckTracker(2, cp("5"), nil)
	_ = tr.acquire(context.Background())
	f := tr.add(recs("10"), time.Time{}, 0)
	tr.close()
	tr.ack(f, 1)
	if got := tr.position(); got != cp("5") {
		t.Fatalf("position after ack on a closed tracker = %v, want 5", got)
	}
}

// TestStatusJSON: /status shows snake_case names, positions as strings and the checkpoint
// age in milliseconds (it showed Go field names and nanoseconds).
func TestStatusJSON(t *testing.T) {
	p := checkpoint.Checkpoint{Sequence: "12", SubSequence: 1}
	st := Status{WorkerID: "w", Stream: "s", Shards: []ShardStatus{{ShardID: "shardId-0", MillisBehindLatest: 5,
		Checkpoint: checkpoint.Checkpoint{Sequence: "10"}, Acknowledged: checkpoint.Checkpoint{Sequence: "11"}, Pending: &p,
		Delivered: 3, BatchesInFlight: 1, CheckpointAge: 1500 * time.Millisecond}}}
	got, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"worker_id":"w","stream":"s","shards":[{"shard_id":"shardId-0","millis_behind_latest":5,"checkpoint":"10","acknowledged":"11","pending_checkpoint":"12/1","records_delivered":3,"batches_in_flight":1,"checkpoint_age_ms":1500}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

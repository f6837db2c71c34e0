package s3

import (
	"bytes"
	"maps"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/sinks/dedup"
	"github.com/kinlog/kinlog/sinks/encode"
)

// resent returns 100 records of one shard in which a producer "p" numbered 0..79 its 80
// lines and sent some twice — 40..44 again after 49, 10 again after 79, 79 again at the very
// end — plus 5 records of a producer without identity. Every re-sent copy is a new Kinesis
// record (its own position) with the first copy's data and identity. It also returns the
// number of re-sent copies.
func resent() ([]consumer.Record, int) {
	recs := gen(9, 100)
	order := []int{}
	for i := range 50 {
		order = append(order, i)
	}
	order = append(order, 40, 41, 42, 43, 44)
	for i := 50; i < 80; i++ {
		order = append(order, i)
	}
	order = append(order, 10)
	for i := 80; i < 88; i++ {
		order = append(order, -1) // no identity
	}
	order = append(order, 79)
	lines := gen(9, 80)
	for j, i := range order {
		r := &recs[j]
		if i < 0 {
			continue
		}
		r.Data = lines[i].Data
		r.Aggregated = true
		r.ID = kpl.Identity{Origin: "p", Seq: uint64(i), Floor: uint64(i / 10)}
	}
	return recs[:len(order)], 7
}

// archivedLines returns every NDJSON line of the archive objects, counted.
func archivedLines(t *testing.T, objs map[string][]byte) map[string]int {
	t.Helper()
	out := map[string]int{}
	for k, body := range objs {
		if !strings.HasSuffix(k, ".json.gz") || strings.Contains(k, "errors/") || strings.Contains(k, "analytics/") {
			continue
		}
		for _, l := range readNDJSON(t, body, encode.CompressionGzip) {
			out[string(bytes.TrimSpace(l))]++
		}
	}
	return out
}

// TestDedupArchivesEachIdentityOnce delivers re-sent records in batches: each line is
// archived once and the copies are counted; with WithoutDedup they are archived again.
func TestDedupArchivesEachIdentityOnce(t *testing.T) {
	recs, copies := resent()
	for _, on := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			opts := []Option{WithBufferSize(2 << 10), WithoutRollups()}
			if !on {
				opts = append(opts, WithoutDedup())
			}
			s := newTestSink(t, fake, newFakeClock(), opts...)
			h := newHarness(t, s, shard, checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}, nil)
			for i := 0; i < len(recs); i += 7 {
				h.mustDeliver(recs[i:min(i+7, len(recs))])
			}
			shutdown(t, h.proc)
			lines := archivedLines(t, fake.snapshot())
			total, dups := 0, 0
			for _, n := range lines {
				total += n
				dups += n - 1
			}
			wantDups := 0
			if !on {
				wantDups = copies
			}
			if dups != wantDups || total != len(recs)-copies+wantDups {
				t.Fatalf("dedup %v: %d lines archived, %d duplicated; want %d and %d", on, total, dups, len(recs)-copies+wantDups, wantDups)
			}
			if got := counterValue(t, s.met.dedup); got != float64(copies-wantDups) {
				t.Fatalf("dedup %v: kinlog_sink_records_deduplicated_total = %v", on, got)
			}
			if h.ackedCount() != len(recs) {
				t.Fatalf("%d of %d records acknowledged", h.ackedCount(), len(recs))
			}
			marks := h.gotMarks()
			if len(marks) < 3 || marks[len(marks)-1].pos != recs[len(recs)-1].Position() {
				t.Fatalf("marks %v", marks)
			}
			for _, m := range marks {
				if (m.state != nil) != on {
					t.Fatalf("dedup %v: a mark with state %x", on, m.state)
				}
			}
		})
	}
}

// TestDedupReplayIsByteIdentical is the worker dying after each flush in turn: a new holder
// starts from that flush's mark with the state marked there and replays the rest. Its
// objects are exactly the uninterrupted run's objects, byte for byte, and it drops the same
// copies.
func TestDedupReplayIsByteIdentical(t *testing.T) {
	recs, _ := resent()
	opts := []Option{WithBufferSize(2 << 10)}
	run := func(t *testing.T, in consumer.InitInput, from int) (map[string][]byte, []mark) {
		var objs map[string][]byte
		var marks []mark
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			s := newTestSink(t, fake, newFakeClock(), opts...)
			in.ShardID = shard
			h := newHarnessFrom(t, s, in)
			for i := from; i < len(recs); i += 7 {
				h.mustDeliver(recs[i:min(i+7, len(recs))])
			}
			shutdown(t, h.proc)
			objs, marks = fake.snapshot(), h.gotMarks()
		})
		return objs, marks
	}
	whole, marks := run(t, consumer.InitInput{Start: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}, 0)
	if len(marks) < 3 {
		t.Fatalf("%d flushes; the test wants several", len(marks))
	}
	for _, m := range marks[:len(marks)-1] {
		from := 0
		for recs[from].Position() != m.pos {
			from++
		}
		from++
		rest, _ := run(t, consumer.InitInput{Start: m.pos, State: m.state}, from)
		for k, v := range rest {
			if !bytes.Equal(whole[k], v) {
				t.Fatalf("replay from %s: object %s differs from the uninterrupted run's", m.pos, k)
			}
		}
		if len(rest) == 0 {
			t.Fatalf("replay from %s wrote nothing", m.pos)
		}
	}
	// Without the state, the replay archives the copies of what came before it again.
	m := marks[1]
	from := 0
	for recs[from].Position() != m.pos {
		from++
	}
	rest, _ := run(t, consumer.InitInput{Start: m.pos}, from+1)
	same := maps.EqualFunc(rest, filterKeys(whole, rest), bytes.Equal)
	if same {
		t.Fatal("a replay without the state wrote the same objects: the state does not matter to the test")
	}
}

func filterKeys(m, keys map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k := range keys {
		out[k] = m[k]
	}
	return out
}

// TestDedupChildStartsFromParents gives a child shard its parents' final states: a copy
// the producer re-sent after the reshard (it lands on the child) is dropped.
func TestDedupChildStartsFromParents(t *testing.T) {
	recs, _ := resent()
	parent := dedup.New(dedup.Limits{})
	for _, r := range recs[:30] {
		parent.Observe(r.ID, r.ArrivalTime)
	}
	other := dedup.New(dedup.Limits{})
	other.Observe(kpl.Identity{Origin: "q", Seq: 5}, recs[0].ArrivalTime)
	child := "shardId-000000000009"
	copies := []consumer.Record{recs[12], recs[40], {Data: []byte(`{"q":5}`), ID: kpl.Identity{Origin: "q", Seq: 5}}, {Data: []byte(`{"q":6}`), ID: kpl.Identity{Origin: "q", Seq: 6}}}
	for i := range copies {
		copies[i].ShardID, copies[i].SequenceNumber, copies[i].ArrivalTime = child, "4950000000000000000000000"+string(rune('0'+i)), recs[0].ArrivalTime
	}
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithoutRollups())
		h := newHarnessFrom(t, s, consumer.InitInput{ShardID: child, Start: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon},
			ParentStates: [][]byte{parent.Encode(), other.Encode()}})
		h.mustDeliver(copies)
		shutdown(t, h.proc)
		lines := archivedLines(t, fake.snapshot())
		// recs[12] is the parent's; recs[40] was never on it; q/5 was on the other parent.
		if len(lines) != 2 || lines[string(bytes.TrimSpace(recs[40].Data))] != 1 || lines[`{"q":6}`] != 1 {
			t.Fatalf("child archived %v", lines)
		}
	})
}

// TestDedupUnreadableStateArchivesEverything: a corrupt stored state is replaced by an
// empty one — duplicates may pass, nothing is dropped.
func TestDedupUnreadableStateArchivesEverything(t *testing.T) {
	recs, copies := resent()
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithoutRollups())
		h := newHarnessFrom(t, s, consumer.InitInput{ShardID: shard, Start: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}, State: []byte{0xde, 0xad}})
		h.mustDeliver(recs)
		shutdown(t, h.proc)
		total := 0
		for _, n := range archivedLines(t, fake.snapshot()) {
			total += n
		}
		if total != len(recs)-copies {
			t.Fatalf("%d lines archived after a corrupt state, want %d", total, len(recs)-copies)
		}
	})
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

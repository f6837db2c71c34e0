package producer

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/internal/kpl"
)

func TestFloorTracker(t *testing.T) {
	var ft floorTracker
	if ft.floor() != 0 {
		t.Fatalf("empty floor %d", ft.floor())
	}
	for s := range uint64(200) {
		ft.add(s)
	}
	ft.add(205) // 200..204 never handed over (lost in a spool): they do not hold the floor
	for _, s := range []uint64{3, 1, 2} {
		ft.resolve(s)
	}
	if f := ft.floor(); f != 0 {
		t.Fatalf("floor %d with 0 unresolved", f)
	}
	ft.resolve(0)
	if f := ft.floor(); f != 4 {
		t.Fatalf("floor %d after resolving 0..3, want 4", f)
	}
	for s := uint64(4); s < 200; s++ {
		ft.resolve(s)
	}
	if f := ft.floor(); f != 205 {
		t.Fatalf("floor %d with only 205 unresolved", f)
	}
	ft.add(150) // out of order: holds the floor until resolved
	if f := ft.floor(); f != 150 {
		t.Fatalf("floor %d with 150 added late", f)
	}
	ft.resolve(150)
	ft.resolve(205)
	if f := ft.floor(); f != 206 {
		t.Fatalf("floor %d with everything resolved, want the next number 206", f)
	}
	ft.resolve(999) // unknown: ignored
	if f := ft.floor(); f != 206 {
		t.Fatalf("floor %d", f)
	}
}

// TestRecordsCarryIdentity puts records on a 4-shard stream and reads the aggregates
// back: every user record carries the producer id and a distinct sequence number in Put
// order, and each floor is honest — below it, every record was confirmed by an earlier
// PutRecords call.
func TestRecordsCarryIdentity(t *testing.T) {
	fs := newFakeStream(4)
	fc := fs.client()
	p := newTestProducer(t, fc, WithLinger(0))
	const n = 3000
	for i := range n {
		if err := p.Put(context.Background(), Record{PartitionKey: fmt.Sprint(i % 97), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 {
			if err := p.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustClose(t, p)
	if len(p.ID()) != 32 {
		t.Fatalf("producer id %q", p.ID())
	}
	seen := map[uint64]bool{}
	confirmed := map[uint64]bool{} // by calls before the current one
	maxFloor := uint64(0)
	for _, call := range fc.putCalls() {
		var inCall []uint64
		for _, e := range call.Records {
			recs, ok := kpl.Decode(e.Data)
			if !ok {
				t.Fatal("a record went out without an aggregate")
			}
			for _, r := range recs {
				id := r.ID
				if id.Origin != p.ID() || seen[id.Seq] {
					t.Fatalf("identity %+v (producer %s), seen before: %v", id, p.ID(), seen[id.Seq])
				}
				if string(r.Data) != fmt.Sprintf(`{"n":%d}`, id.Seq) {
					t.Fatalf("record %q has sequence number %d", r.Data, id.Seq)
				}
				for s := range id.Floor {
					if !confirmed[s] {
						t.Fatalf("floor %d of record %d, but %d was not confirmed before", id.Floor, id.Seq, s)
					}
				}
				maxFloor = max(maxFloor, id.Floor)
				seen[id.Seq] = true
				inCall = append(inCall, id.Seq)
			}
		}
		for _, s := range inCall {
			confirmed[s] = true
		}
	}
	if len(seen) != n || maxFloor < n/2 {
		t.Fatalf("%d records seen, largest floor %d", len(seen), maxFloor)
	}
}

// TestIdentityOff sends KPL-identical output: no tags.
func TestIdentityOff(t *testing.T) {
	fs := newFakeStream(1)
	fc := fs.client()
	p := newTestProducer(t, fc, WithIdentity(false))
	for i := range 10 {
		if err := p.Put(context.Background(), Record{PartitionKey: "k", Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, p)
	for _, recs := range fs.consumed(t) {
		for _, r := range recs {
			if !r.ID.IsZero() {
				t.Fatalf("identity %+v sent with WithIdentity(false)", r.ID)
			}
		}
	}
}

// TestSpoolKeepsIdentity restarts a producer on its spool: the id is the same, and the
// records the first one left in the spool go out with the sequence numbers they got then.
func TestSpoolKeepsIdentity(t *testing.T) {
	dir := t.TempDir()
	fs := newFakeStream(1)
	hang := fs.client()
	hang.putRecords = func(ctx context.Context, _ *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	first, err := New(hang, "s", WithSpool(dir, SpoolOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := first.Put(context.Background(), Record{PartitionKey: "k", Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = first.Close(ctx) // gives up: the records stay in the spool
	second := newTestProducer(t, fs.client(), WithSpool(dir, SpoolOptions{}))
	if second.ID() != first.ID() {
		t.Fatalf("restarted producer id %s, was %s", second.ID(), first.ID())
	}
	if err := second.Put(context.Background(), Record{PartitionKey: "k", Data: []byte("5")}); err != nil {
		t.Fatal(err)
	}
	mustClose(t, second)
	var got []string
	for _, recs := range fs.consumed(t) {
		for _, r := range recs {
			if r.ID.Origin != first.ID() {
				t.Fatalf("origin %q", r.ID.Origin)
			}
			got = append(got, fmt.Sprintf("%s=%d", r.Data, r.ID.Seq))
		}
	}
	slices.Sort(got)
	if fmt.Sprint(got) != "[0=0 1=1 2=2 3=3 4=4 5=5]" {
		t.Fatalf("records and sequence numbers %v", got)
	}
}

package consumer

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

// describingFake is the test stream's fake with a DescribeStreamSummary that is never
// reached by these tests (New does not call it).
type describingFake struct{ *fakeKinesis }

func (describingFake) DescribeStreamSummary(context.Context, *kinesis.DescribeStreamSummaryInput, ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	return nil, errors.ErrUnsupported
}

func TestNewMultiStreamRefuses(t *testing.T) {
	api := newTestStream().api()
	client := describingFake{api}
	pl := newProcLog(true)
	for name, streams := range map[string][]Stream{
		"no streams":     nil,
		"a stream twice": {{Name: "s", Factory: pl.factory()}, {Name: "arn:aws:kinesis:us-east-1:1:stream/s", Factory: pl.factory()}},
		"no factory":     {{Name: "s"}},
		"empty name":     {{Name: "", Factory: pl.factory()}},
	} {
		if _, err := NewMultiStream(&client, memory.New(), streams); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: err = %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := NewMultiStream(&client, memory.New(), []Stream{{Name: "s", Factory: pl.factory()}}, WithFailoverTime(0)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("bad option: err = %v, want ErrInvalidOption", err)
	}
	m, err := NewMultiStream(&client, memory.New(), []Stream{{Name: "s", Factory: pl.factory()}, {Name: "t", Factory: pl.factory()}})
	if err != nil {
		t.Fatal(err)
	}
	if m.consumers[0].WorkerID() != m.consumers[1].WorkerID() {
		t.Errorf("streams got worker ids %q and %q, want one", m.consumers[0].WorkerID(), m.consumers[1].WorkerID())
	}
	if m.consumers[0].budget == nil || m.consumers[0].budget != m.consumers[1].budget {
		t.Error("streams do not share one byte budget")
	}
}

func TestStreamNameOf(t *testing.T) {
	for in, want := range map[string]string{
		"logs": "logs", "arn:aws:kinesis:eu-west-1:123456789012:stream/logs": "logs", "arn:aws-cn:kinesis:cn-north-1:1:stream/a.b": "a.b",
	} {
		if got := streamNameOf(in); got != want {
			t.Errorf("streamNameOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// blockingLister is a store whose ListLeases counts its calls and, while gate is set,
// signals entered and waits for gate to close.
type blockingLister struct {
	checkpoint.Store
	calls   atomic.Int64
	gate    chan struct{}
	entered chan struct{}
}

func (b *blockingLister) ListLeases(ctx context.Context) ([]checkpoint.Lease, error) {
	b.calls.Add(1)
	if b.gate != nil {
		b.entered <- struct{}{}
		<-b.gate
	}
	return b.Store.ListLeases(ctx)
}

// TestSharedListing: a listing asked for while one is in flight joins it (one Scan for
// both), each caller gets its own slice, and a listing that has returned is never reused.
func TestSharedListing(t *testing.T) {
	inner := memory.New()
	if _, err := inner.CreateLease(t.Context(), checkpoint.Lease{Key: "shardId-000000000000"}); err != nil {
		t.Fatal(err)
	}
	bl := &blockingLister{Store: inner, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	s := &sharedListing{Store: bl}
	type result struct {
		ls  []checkpoint.Lease
		err error
	}
	first, second := make(chan result, 1), make(chan result, 1)
	go func() { ls, err := s.ListLeases(t.Context()); first <- result{ls, err} }()
	<-bl.entered
	go func() { ls, err := s.ListLeases(t.Context()); second <- result{ls, err} }()
	eventually(t, 5e9, "the second listing joining the first", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.inFlight != nil && s.inFlight.joiners == 1
	})
	close(bl.gate)
	r1, r2 := <-first, <-second
	if r1.err != nil || r2.err != nil || len(r1.ls) != 1 || len(r2.ls) != 1 {
		t.Fatalf("listings: %v %v / %v %v", r1.ls, r1.err, r2.ls, r2.err)
	}
	if &r1.ls[0] == &r2.ls[0] {
		t.Error("the callers share one slice")
	}
	if n := bl.calls.Load(); n != 1 {
		t.Fatalf("%d listings of the store for two concurrent calls, want 1", n)
	}
	bl.gate = nil
	if _, err := inner.CreateLease(t.Context(), checkpoint.Lease{Key: "shardId-000000000001"}); err != nil {
		t.Fatal(err)
	}
	ls, err := s.ListLeases(t.Context())
	if err != nil || len(ls) != 2 || bl.calls.Load() != 2 {
		t.Fatalf("a later listing got %d leases (%v) after %d store listings, want a fresh listing of 2", len(ls), err, bl.calls.Load())
	}
}

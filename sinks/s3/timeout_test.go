package s3

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/checkpoint"
)

// TestUnansweredUploadIsRetried: a PUT on a connection that never answers (the fake waits
// for its context, as an HTTP request on a black-holed connection does) is abandoned at the
// request timeout and retried; the retry writes the object and the records are acknowledged.
func TestUnansweredUploadIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		store := fake.putObject
		var (
			mu        sync.Mutex
			calls     int
			deadlines []time.Duration
		)
		fake.putObject = func(ctx context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
			mu.Lock()
			calls++
			first := calls == 1
			if dl, ok := ctx.Deadline(); ok {
				deadlines = append(deadlines, time.Until(dl))
			}
			mu.Unlock()
			if first {
				<-ctx.Done() // never answered
				return nil, ctx.Err()
			}
			return store(ctx, in)
		}
		s := newTestSink(t, fake, realClock{}, WithBufferInterval(0), WithoutRollups(),
			WithRequestTimeout(5*time.Second), WithRetryBackoff(100*time.Millisecond, time.Second))
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		h.mustDeliver(gen(9, 10))
		time.Sleep(4900 * time.Millisecond)
		synctest.Wait()
		if n := h.ackedCount(); n != 0 {
			t.Fatalf("%d records acknowledged before the unanswered PUT timed out", n)
		}
		time.Sleep(2 * time.Second) // past the timeout and the backoff
		synctest.Wait()
		if n := h.ackedCount(); n != 10 {
			t.Fatalf("%d of 10 records acknowledged 7s after an unanswered PUT with a 5s request timeout", n)
		}
		mu.Lock()
		if calls != 2 {
			t.Errorf("%d PutObject calls, want 2 (the unanswered one and its retry)", calls)
		}
		for _, d := range deadlines {
			if d < 5*time.Second || d > 6*time.Second {
				t.Errorf("attempt deadline %v, want 5s plus a little for the object's size", d)
			}
		}
		if len(deadlines) != calls {
			t.Errorf("%d of %d attempts had a deadline", len(deadlines), calls)
		}
		mu.Unlock()
		if len(fake.snapshot()) != 1 {
			t.Errorf("objects %v, want 1", fake.putKeys())
		}
		shutdown(t, h.proc)
	})
}

// TestUnansweredPrepareIsRetried: the sink retries a Prepare that failed because its
// deadline (set by the consumer) passed, then writes the flush.
func TestUnansweredPrepareIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, realClock{}, WithBufferInterval(0), WithoutRollups(),
			WithRetryBackoff(100*time.Millisecond, time.Second))
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		var mu sync.Mutex
		calls := 0
		h.prep.prepare = func(ctx context.Context, _ checkpoint.Checkpoint) error {
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			if first {
				ctx, cancel := context.WithTimeout(ctx, time.Second) // the consumer's lease call timeout
				defer cancel()
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}
		h.mustDeliver(gen(10, 10))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := h.ackedCount(); n != 10 {
			t.Fatalf("%d of 10 records acknowledged after a timed-out Prepare", n)
		}
		mu.Lock()
		if calls != 2 {
			t.Errorf("%d Prepare calls, want 2", calls)
		}
		mu.Unlock()
		if len(fake.snapshot()) != 1 {
			t.Errorf("objects %v, want 1", fake.putKeys())
		}
		shutdown(t, h.proc)
	})
}

func TestAttemptTimeoutScalesWithSize(t *testing.T) {
	c := defaults()
	if got := c.attemptTimeout(0); got != DefaultRequestTimeout {
		t.Errorf("empty object: %v, want %v", got, DefaultRequestTimeout)
	}
	if got := c.attemptTimeout(16 << 20); got != DefaultRequestTimeout+16*time.Second {
		t.Errorf("16 MiB object: %v, want %v", got, DefaultRequestTimeout+16*time.Second)
	}
	c.reqTimeout = 0
	if got := c.attemptTimeout(16 << 20); got != 0 {
		t.Errorf("without a request timeout: %v, want 0 (no deadline)", got)
	}
}

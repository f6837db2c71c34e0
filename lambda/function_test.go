package lambda

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	s3sink "github.com/kinlog/kinlog/sinks/s3"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/testenv"
)

const shard0 = "shardId-000000000000"

// killer passes every call to the real S3 client and, once a chosen number of PutObject
// calls have succeeded, cancels the invocation: the function is cut off there, as Lambda's
// timeout cuts it off, with some objects of the attempt written.
type killer struct {
	S3API
	mu     sync.Mutex
	after  int // puts before the kill; < 0 for none
	puts   int
	cancel context.CancelFunc
}

func (k *killer) PutObject(ctx context.Context, in *awss3.PutObjectInput, opts ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	out, err := k.S3API.PutObject(ctx, in, opts...)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		k.puts++
		if k.after >= 0 && k.puts >= k.after && k.cancel != nil {
			k.cancel()
		}
	}
	return out, err
}

// arm makes the next invocation die after n successful puts (never for n < 0).
func (k *killer) arm(n int, cancel context.CancelFunc) {
	k.mu.Lock()
	k.after, k.puts, k.cancel = n, 0, cancel
	k.mu.Unlock()
}

// runLikeLambda delivers the shard's records to f as an event source mapping does when
// things go wrong: batches of varying size; after a partial failure the retry starts at the
// reported record, after a function error (or a kill) at the batch's start with another
// size (the same, grown or bisected); now and then a batch is delivered again from an
// earlier record (at-least-once). Some attempts are killed after a few S3 writes. It
// returns how many attempts failed.
func runLikeLambda(t *testing.T, st *stack, f *Function, k *killer, recs []ktypes.Record, seed uint64) (failed int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	index := map[string]int{}
	for i, r := range recs {
		index[*r.SequenceNumber] = i
	}
	pos := 0
	for attempt := 0; pos < len(recs); attempt++ {
		if attempt > 2000 {
			t.Fatalf("no progress after %d attempts (at record %d of %d)", attempt, pos, len(recs))
		}
		start := pos
		if rng.IntN(8) == 0 {
			start = max(0, pos-1-rng.IntN(10)) // a duplicate delivery of committed records
		}
		end := min(len(recs), start+1+rng.IntN(16))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		kill := -1
		if rng.IntN(2) == 0 {
			kill = rng.IntN(6)
		}
		k.arm(kill, cancel)
		resp, err := f.Handle(ctx, st.event(shard0, recs[start:end]))
		killed := ctx.Err() != nil
		cancel()
		switch {
		case killed || err != nil:
			if err != nil && !killed {
				t.Fatalf("attempt %d: %v", attempt, err)
			}
			failed++
			pos = start // the whole batch again
		case len(resp.BatchItemFailures) > 0:
			failed++
			i, ok := index[resp.BatchItemFailures[0].ItemIdentifier]
			if !ok || i < start || i >= end {
				t.Fatalf("attempt %d: reported failure %q is not a record of the batch", attempt, resp.BatchItemFailures[0].ItemIdentifier)
			}
			pos = i
		default:
			pos = max(pos, end)
		}
	}
	return failed
}

// TestExactlyOnceUnderMovingBatchBoundaries is the protocol's main property: whatever the
// batches, retries, duplicate deliveries and kills between S3 writes, every record is
// archived once, bad records are in the error output once, and the rollups agree. The
// same run with the protocol turned off (deterministic names only) must duplicate records:
// the test can fail.
func TestExactlyOnceUnderMovingBatchBoundaries(t *testing.T) {
	for _, tt := range []struct {
		name       string
		noProgress bool
	}{{"protocol", false}, {"non-idempotent variant", true}} {
		t.Run(tt.name, func(t *testing.T) {
			st := newStack(t, 1)
			good, bad := st.put(t, 0, 400)
			recs := st.read(t, shard0)
			k := &killer{S3API: st.s3, after: -1}
			f := st.function(t, k, nil, WithChunkSize(1500), WithReserve(0), WithWriteGrace(250*time.Millisecond))
			f.noProgress = tt.noProgress
			failed := runLikeLambda(t, st, f, k, recs, 7)
			if failed < 10 {
				t.Fatalf("only %d attempts failed: the run does not exercise retries", failed)
			}
			problems := st.archive(t).problems(good, bad)
			if tt.noProgress {
				if problems == "" {
					t.Fatal("without the progress protocol the archive is still exactly-once: the test cannot tell the protocol works")
				}
				t.Logf("without the protocol, as expected: %s", problems)
				return
			}
			if problems != "" {
				t.Fatalf("after %d failed attempts: %s", failed, problems)
			}
			// The progress item is committed through the last record, nothing pending.
			p, err := f.progress.load(t.Context(), st.stream+"/"+shard0)
			if err != nil {
				t.Fatal(err)
			}
			last := checkpoint.Checkpoint{Sequence: *recs[len(recs)-1].SequenceNumber, SubSequence: checkpoint.WholeRecord}
			if p.Committed != last || len(p.Pending) != 0 {
				t.Fatalf("progress %+v, want committed %s and nothing pending", p, last)
			}
			// A redelivery of the whole shard changes nothing.
			before := st.objects(t)
			if resp, err := f.Handle(t.Context(), st.event(shard0, recs)); err != nil || len(resp.BatchItemFailures) > 0 {
				t.Fatalf("redelivery: %v %v", resp, err)
			}
			if after := st.objects(t); len(after) != len(before) {
				t.Fatalf("a redelivery of committed records changed the archive: %d objects, was %d", len(after), len(before))
			}
		})
	}
}

// TestParallelBatchesAreRefused: with ParallelizationFactor above 1, Lambda sends batches of
// one shard holding interleaved records (by partition key). The function must say so
// instead of skipping records as if archived.
func TestParallelBatchesAreRefused(t *testing.T) {
	st := newStack(t, 1)
	st.put(t, 0, 12)
	recs := st.read(t, shard0)
	var odd, even []ktypes.Record
	for i, r := range recs {
		if i%2 == 0 {
			even = append(even, r)
		} else {
			odd = append(odd, r)
		}
	}
	f := st.function(t, nil, nil)
	if resp, err := f.Handle(t.Context(), st.event(shard0, even)); err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("first batch: %v %v", resp, err)
	}
	_, err := f.Handle(t.Context(), st.event(shard0, odd))
	if !errors.Is(err, ErrNotContiguous) {
		t.Fatalf("interleaved batch: got %v, want ErrNotContiguous", err)
	}
}

// interleaving runs another invocation of the same shard to completion before the first
// conditional write of this one: two invocations of one shard at once.
type interleaving struct {
	DynamoDBAPI
	once  sync.Once
	other func()
}

func (d *interleaving) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	d.once.Do(d.other)
	return d.DynamoDBAPI.UpdateItem(ctx, in, opts...)
}

func TestConcurrentInvocationsConflict(t *testing.T) {
	st := newStack(t, 1)
	good, bad := st.put(t, 0, 20)
	recs := st.read(t, shard0)
	other := st.function(t, nil, nil)
	d := &interleaving{DynamoDBAPI: st.ddb}
	d.other = func() {
		if resp, err := other.Handle(t.Context(), st.event(shard0, recs)); err != nil || len(resp.BatchItemFailures) > 0 {
			t.Errorf("the other invocation: %v %v", resp, err)
		}
	}
	f := st.function(t, nil, d)
	_, err := f.Handle(t.Context(), st.event(shard0, recs))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("got %v, want ErrConflict", err)
	}
	if p := st.archive(t).problems(good, bad); p != "" {
		t.Fatalf("after the conflict: %s", p)
	}
}

func TestMalformedEventsWriteNothing(t *testing.T) {
	st := newStack(t, 1)
	st.put(t, 0, 6)
	recs := st.read(t, shard0)
	good := string(st.event(shard0, recs[:2]))
	for _, tt := range []struct{ name, payload string }{
		{"not JSON", "{"},
		{"eventID without a shard", replaceFirst(good, shard0+":", "nope:")},
		{"two shards", replaceLast(good, shard0+":", "shardId-000000000001:")},
		{"not base64", replaceFirst(good, `"data":"`, `"data":"%%%`)},
		{"no arrival time", replaceFirst(good, `"approximateArrivalTimestamp":`, `"x":`)},
		{"not a stream ARN", replaceFirst(good, `"eventSourceARN":"arn:aws:kinesis`, `"eventSourceARN":"arn:aws:sqs`)},
		{"out of order", string(st.event(shard0, []ktypes.Record{recs[1], recs[0]}))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := st.function(t, nil, nil)
			_, err := f.Handle(t.Context(), []byte(tt.payload))
			if !errors.Is(err, ErrMalformedEvent) {
				t.Fatalf("got %v, want ErrMalformedEvent", err)
			}
		})
	}
	if n := len(st.objects(t)); n != 0 {
		t.Fatalf("malformed events wrote %d objects", n)
	}
	out, err := st.ddb.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: &st.table, Key: map[string]dtypes.AttributeValue{attrShard: &dtypes.AttributeValueMemberS{Value: st.stream + "/" + shard0}}})
	if err != nil || len(out.Item) != 0 {
		t.Fatalf("malformed events wrote progress: %v %v", out.Item, err)
	}
}

func replaceFirst(s, old, repl string) string {
	i := indexOf(s, old)
	return s[:i] + repl + s[i+len(old):]
}

func replaceLast(s, old, repl string) string {
	i := lastIndexOf(s, old)
	return s[:i] + repl + s[i+len(old):]
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	panic("no " + sub)
}

func lastIndexOf(s, sub string) int {
	for i := len(s) - len(sub); i >= 0; i-- {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	panic("no " + sub)
}

// TestDynamoDBUnavailable: with DynamoDB stopped (its proxy refuses connections) nothing is
// written and the whole batch is reported failed; once it is back, the retry archives it.
func TestDynamoDBUnavailable(t *testing.T) {
	st := newStack(t, 1)
	good, bad := st.put(t, 0, 30)
	recs := st.read(t, shard0)
	fp := testenv.NewFaultProxy(t, testenv.DynamoDB)
	cfg := testenv.AWSConfig(t)
	ddb := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(fp.URL)
		o.RetryMaxAttempts = 2
	})
	f := st.function(t, nil, ddb)
	fp.Down()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	resp, err := f.Handle(ctx, st.event(shard0, recs))
	cancel()
	if err != nil || len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != *recs[0].SequenceNumber {
		t.Fatalf("with DynamoDB down: %+v %v, want a failure at the first record", resp, err)
	}
	if n := len(st.objects(t)); n != 0 {
		t.Fatalf("with DynamoDB down the function wrote %d objects", n)
	}
	fp.Up()
	if resp, err := f.Handle(t.Context(), st.event(shard0, recs)); err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("after DynamoDB is back: %+v %v", resp, err)
	}
	if p := st.archive(t).problems(good, bad); p != "" {
		t.Fatal(p)
	}
}

// stopAfterFirst stops S3 (its proxy refuses connections) once the first object is written.
type stopAfterFirst struct {
	S3API
	once sync.Once
	stop func()
}

func (s *stopAfterFirst) PutObject(ctx context.Context, in *awss3.PutObjectInput, opts ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	out, err := s.S3API.PutObject(ctx, in, opts...)
	if err == nil {
		s.once.Do(s.stop)
	}
	return out, err
}

// TestS3FailsOnSecondObject: S3 stops after the first object of a batch of several chunks
// of one object each; the function reports the first chunk not committed, and the retry
// from there, with S3 back, completes the archive exactly once.
func TestS3FailsOnSecondObject(t *testing.T) {
	st := newStack(t, 1)
	st.sinkOpts = []s3sink.Option{s3sink.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), s3sink.WithoutRollups()}
	good, bad := st.put(t, 0, 60)
	good, bad = append(good, bad...), nil // without partitioning every record is archived
	recs := st.read(t, shard0)
	fp := testenv.NewFaultProxy(t, testenv.S3)
	cfg := testenv.AWSConfig(t)
	s3c := awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		o.BaseEndpoint = aws.String(fp.URL)
		o.UsePathStyle = true
		o.RetryMaxAttempts = 1
	})
	f := st.function(t, &stopAfterFirst{S3API: s3c, stop: fp.Down}, nil, WithChunkSize(1000), WithReserve(0))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	resp, err := f.Handle(ctx, st.event(shard0, recs))
	cancel()
	if err != nil || len(resp.BatchItemFailures) != 1 {
		t.Fatalf("with S3 stopped: %+v %v, want a partial failure", resp, err)
	}
	at := slices.IndexFunc(recs, func(r ktypes.Record) bool { return *r.SequenceNumber == resp.BatchItemFailures[0].ItemIdentifier })
	if at <= 0 {
		t.Fatalf("failure reported at record %d: the first chunk should have committed", at)
	}
	fp.Up()
	if resp, err := f.Handle(t.Context(), st.event(shard0, recs[at:])); err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("retry: %+v %v", resp, err)
	}
	a := st.archive(t)
	a.noRollups = true
	if p := a.problems(good, bad); p != "" {
		t.Fatal(p)
	}
}

func TestArrivalTimeIsExact(t *testing.T) {
	for in, want := range map[string]int64{
		"1545084650.987": 1545084650987, "1545084650": 1545084650000, "1545084650.9": 1545084650900,
		"1545084650.98765": 1545084650987, "1.545084650987E9": 1545084650987,
	} {
		got, err := arrivalTime(json.Number(in))
		if err != nil || got.UnixMilli() != want {
			t.Errorf("%s → %v %v, want %d ms", in, got.UnixMilli(), err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.2.3", "12.a"} {
		if _, err := arrivalTime(json.Number(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

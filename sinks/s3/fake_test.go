package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
)

// fakeS3 is an in-memory object store behind the sink's API: a struct of function fields
// (tests replace them to inject failures) whose defaults store objects and record calls.
type fakeS3 struct {
	putObject       func(context.Context, *awss3.PutObjectInput) (*awss3.PutObjectOutput, error)
	createMultipart func(context.Context, *awss3.CreateMultipartUploadInput) (*awss3.CreateMultipartUploadOutput, error)
	uploadPart      func(context.Context, *awss3.UploadPartInput) (*awss3.UploadPartOutput, error)
	complete        func(context.Context, *awss3.CompleteMultipartUploadInput) (*awss3.CompleteMultipartUploadOutput, error)
	abort           func(context.Context, *awss3.AbortMultipartUploadInput) (*awss3.AbortMultipartUploadOutput, error)

	mu      sync.Mutex
	objects map[string][]byte
	inputs  map[string]*awss3.PutObjectInput // last PutObject (or CreateMultipartUpload) input per key
	puts    []string                         // keys of successful writes, in order
	calls   map[string]int
	parts   map[string]map[int32][]byte // upload id -> part number -> body
}

func newFakeS3(t testing.TB) *fakeS3 {
	f := &fakeS3{objects: map[string][]byte{}, inputs: map[string]*awss3.PutObjectInput{}, calls: map[string]int{}, parts: map[string]map[int32][]byte{}}
	f.putObject = func(_ context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
		body, err := io.ReadAll(in.Body)
		if err != nil {
			return nil, err
		}
		if in.ChecksumCRC32C != nil && *in.ChecksumCRC32C != crc(body, crc32.MakeTable(crc32.Castagnoli)) {
			return nil, errors.New("fake s3: BadDigest: CRC32C mismatch")
		}
		f.store(*in.Key, body, in)
		return &awss3.PutObjectOutput{}, nil
	}
	f.createMultipart = func(_ context.Context, in *awss3.CreateMultipartUploadInput) (*awss3.CreateMultipartUploadOutput, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		id := fmt.Sprintf("upload-%d", len(f.parts))
		f.parts[id] = map[int32][]byte{}
		f.inputs[*in.Key] = &awss3.PutObjectInput{Key: in.Key, ContentType: in.ContentType, Metadata: in.Metadata,
			ServerSideEncryption: in.ServerSideEncryption, SSEKMSKeyId: in.SSEKMSKeyId, StorageClass: in.StorageClass, ChecksumAlgorithm: in.ChecksumAlgorithm}
		return &awss3.CreateMultipartUploadOutput{UploadId: aws.String(id)}, nil
	}
	f.uploadPart = func(_ context.Context, in *awss3.UploadPartInput) (*awss3.UploadPartOutput, error) {
		body, err := io.ReadAll(in.Body)
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.parts[*in.UploadId][*in.PartNumber] = body
		return &awss3.UploadPartOutput{ETag: aws.String(strconv.Itoa(int(*in.PartNumber)))}, nil
	}
	f.complete = func(_ context.Context, in *awss3.CompleteMultipartUploadInput) (*awss3.CompleteMultipartUploadOutput, error) {
		f.mu.Lock()
		parts := f.parts[*in.UploadId]
		var nums []int
		for n := range parts {
			nums = append(nums, int(n))
		}
		sort.Ints(nums)
		var body []byte
		for _, n := range nums {
			body = append(body, parts[int32(n)]...)
		}
		in0 := f.inputs[*in.Key]
		f.mu.Unlock()
		f.store(*in.Key, body, in0)
		return &awss3.CompleteMultipartUploadOutput{}, nil
	}
	f.abort = func(context.Context, *awss3.AbortMultipartUploadInput) (*awss3.AbortMultipartUploadOutput, error) {
		return &awss3.AbortMultipartUploadOutput{}, nil
	}
	return f
}

func (f *fakeS3) store(key string, body []byte, in *awss3.PutObjectInput) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[key] = body
	f.inputs[key] = in
	f.puts = append(f.puts, key)
}

func (f *fakeS3) count(op string) {
	f.mu.Lock()
	f.calls[op]++
	f.mu.Unlock()
}

func (f *fakeS3) PutObject(ctx context.Context, in *awss3.PutObjectInput, _ ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	f.count("PutObject")
	return f.putObject(ctx, in)
}

func (f *fakeS3) CreateMultipartUpload(ctx context.Context, in *awss3.CreateMultipartUploadInput, _ ...func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error) {
	f.count("CreateMultipartUpload")
	return f.createMultipart(ctx, in)
}

func (f *fakeS3) UploadPart(ctx context.Context, in *awss3.UploadPartInput, _ ...func(*awss3.Options)) (*awss3.UploadPartOutput, error) {
	f.count("UploadPart")
	return f.uploadPart(ctx, in)
}

func (f *fakeS3) CompleteMultipartUpload(ctx context.Context, in *awss3.CompleteMultipartUploadInput, _ ...func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error) {
	f.count("CompleteMultipartUpload")
	return f.complete(ctx, in)
}

func (f *fakeS3) AbortMultipartUpload(ctx context.Context, in *awss3.AbortMultipartUploadInput, _ ...func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error) {
	f.count("AbortMultipartUpload")
	return f.abort(ctx, in)
}

// snapshot returns a copy of the stored objects.
func (f *fakeS3) snapshot() map[string][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]byte, len(f.objects))
	for k, v := range f.objects {
		out[k] = bytes.Clone(v)
	}
	return out
}

func (f *fakeS3) calledTimes(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeS3) putKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.puts...)
}

// fakeClock is a manual clock: After channels fire when Advance passes their time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
}

// fakePreparer records boundaries and checks the Preparer contract: the records of a
// prepared boundary are acknowledged before the next Prepare.
type fakePreparer struct {
	t       testing.TB
	h       *harness
	prepare func(ctx context.Context, b checkpoint.Checkpoint) error // optional override

	mu         sync.Mutex
	boundaries []checkpoint.Checkpoint
}

func (f *fakePreparer) Prepare(ctx context.Context, b checkpoint.Checkpoint) error {
	f.mu.Lock()
	if n := len(f.boundaries); n > 0 {
		prev := f.boundaries[n-1]
		if acked := f.h.ackedThrough(); acked.Compare(prev) < 0 {
			f.t.Errorf("Prepare(%s) while the previous boundary %s is not acknowledged (acked through %s)", b, prev, acked)
		}
	}
	f.mu.Unlock()
	if f.prepare != nil {
		if err := f.prepare(ctx, b); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.boundaries = append(f.boundaries, b)
	f.mu.Unlock()
	return nil
}

func (f *fakePreparer) got() []checkpoint.Checkpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]checkpoint.Checkpoint(nil), f.boundaries...)
}

// harness plays the consumer worker for one shard: it delivers batches built with
// consumer.NewBatch and tracks acknowledgements like the worker's capped checkpointer.
type harness struct {
	t    testing.TB
	proc consumer.Processor
	prep *fakePreparer

	mu      sync.Mutex
	batches []*consumer.Batch
	acked   []int
	ackLog  []int // total acknowledged records after each ack
	marks   []mark
}

// mark is a boundary the processor marked, with its state.
type mark struct {
	pos   checkpoint.Checkpoint
	state []byte
}

func newHarness(t testing.TB, s *Sink, shard string, start checkpoint.Checkpoint, pending *checkpoint.Checkpoint) *harness {
	t.Helper()
	return newHarnessFrom(t, s, consumer.InitInput{ShardID: shard, Start: start, Pending: pending})
}

// newHarnessFrom is newHarness with the whole InitInput (state, parents' states).
func newHarnessFrom(t testing.TB, s *Sink, in consumer.InitInput) *harness {
	t.Helper()
	h := &harness{t: t, proc: s.NewProcessor(in.ShardID)}
	h.prep = &fakePreparer{t: t, h: h}
	in.Preparer = h.prep
	if err := h.proc.Initialize(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// Stops the processor's goroutine when a test fails early (a no-op after Shutdown).
	t.Cleanup(func() { h.proc.LeaseLost(context.Background()) })
	return h
}

func (h *harness) deliver(ctx context.Context, recs []consumer.Record) error {
	h.mu.Lock()
	i := len(h.batches)
	h.acked = append(h.acked, 0)
	onAck := func(n int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if n < h.acked[i] {
			h.t.Errorf("batch %d acknowledgement went back from %d to %d", i, h.acked[i], n)
		}
		h.acked[i] = n
		total := 0
		for _, a := range h.acked {
			total += a
		}
		h.ackLog = append(h.ackLog, total)
	}
	b := consumer.NewBatchWithMarks(recs[0].ShardID, recs, onAck, func(n int, state []byte) {
		onAck(n)
		h.mu.Lock()
		h.marks = append(h.marks, mark{pos: recs[n-1].Position(), state: state})
		h.mu.Unlock()
	})
	h.batches = append(h.batches, b)
	h.mu.Unlock()
	return h.proc.ProcessRecords(ctx, b)
}

func (h *harness) mustDeliver(recs []consumer.Record) {
	h.t.Helper()
	if err := h.deliver(context.Background(), recs); err != nil {
		h.t.Fatalf("ProcessRecords: %v", err)
	}
}

// ackedCount returns the number of leading records acknowledged (capped: a batch counts
// only when every earlier batch is fully acknowledged).
func (h *harness) ackedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for i, b := range h.batches {
		n += h.acked[i]
		if h.acked[i] < len(b.Records) {
			break
		}
	}
	return n
}

// ackedThrough returns the position of the last record of the capped acknowledged prefix.
func (h *harness) ackedThrough() checkpoint.Checkpoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	var last checkpoint.Checkpoint
	for i, b := range h.batches {
		if h.acked[i] > 0 {
			last = b.Records[h.acked[i]-1].Position()
		}
		if h.acked[i] < len(b.Records) {
			break
		}
	}
	return last
}

func (h *harness) gotMarks() []mark {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]mark(nil), h.marks...)
}

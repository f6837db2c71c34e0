package consumer

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/kpl"
)

// fakeKinesis is a KinesisAPI made of function fields; it records every call. Tests set the
// fields (usually from a testStream) and wrap them to inject failures.
type fakeKinesis struct {
	listShards       func(context.Context, *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error)
	getShardIterator func(context.Context, *kinesis.GetShardIteratorInput) (*kinesis.GetShardIteratorOutput, error)
	getRecords       func(context.Context, *kinesis.GetRecordsInput) (*kinesis.GetRecordsOutput, error)

	mu    sync.Mutex
	calls []call
}

type call struct {
	op   string
	at   time.Time
	in   any
	err  error
	shrd string
}

func (f *fakeKinesis) record(op, shard string, in any, err error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{op: op, at: time.Now(), in: in, err: err, shrd: shard})
	f.mu.Unlock()
}

func (f *fakeKinesis) callsOf(op, shard string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.op == op && (shard == "" || c.shrd == shard) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeKinesis) ListShards(ctx context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	out, err := f.listShards(ctx, in)
	f.record("ListShards", "", in, err)
	return out, err
}

func (f *fakeKinesis) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	out, err := f.getShardIterator(ctx, in)
	f.record("GetShardIterator", aws.ToString(in.ShardId), in, err)
	return out, err
}

func (f *fakeKinesis) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	out, err := f.getRecords(ctx, in)
	shard, _, _ := strings.Cut(aws.ToString(in.ShardIterator), "#")
	f.record("GetRecords", shard, in, err)
	return out, err
}

// testShard is the test data behind a fake shard: its records in order, and whether it is
// closed (then reading past its last record ends the shard).
type testShard struct {
	id        string
	parents   []string
	startHash string
	endHash   string
	records   []types.Record
	closed    bool
}

// testStream serves test data through the function fields of a fakeKinesis. Iterators are
// "shardId#index".
type testStream struct {
	mu       sync.Mutex
	shards   []*testShard
	seq      int64
	pageSize int // ListShards page size (0: all at once)
}

func newTestStream() *testStream { return &testStream{seq: 1000} }

var maxHash = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))

// addShards adds n open shards splitting the hash space evenly; ids shardId-00000000000k.
func (s *testStream) addShards(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	step := new(big.Int).Div(new(big.Int).Add(maxHash, big.NewInt(1)), big.NewInt(int64(n)))
	for i := 0; i < n; i++ {
		lo := new(big.Int).Mul(step, big.NewInt(int64(i)))
		hi := new(big.Int).Sub(new(big.Int).Mul(step, big.NewInt(int64(i+1))), big.NewInt(1))
		if i == n-1 {
			hi = maxHash
		}
		id := fmt.Sprintf("shardId-%012d", len(s.shards))
		s.shards = append(s.shards, &testShard{id: id, startHash: lo.String(), endHash: hi.String()})
		ids = append(ids, id)
	}
	return ids
}

// addChild adds an open shard with the given parents and hash range.
func (s *testStream) addChild(startHash, endHash string, parents ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("shardId-%012d", len(s.shards))
	s.shards = append(s.shards, &testShard{id: id, parents: parents, startHash: startHash, endHash: endHash})
	return id
}

func (s *testStream) shard(id string) *testShard {
	for _, sh := range s.shards {
		if sh.id == id {
			return sh
		}
	}
	return nil
}

func (s *testStream) close(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shard(id).closed = true
}

func (s *testStream) nextSeq() string {
	s.seq++
	return fmt.Sprintf("4959%020d", s.seq)
}

// put appends a plain record and returns its sequence number.
func (s *testStream) put(id, pk string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.nextSeq()
	sh := s.shard(id)
	sh.records = append(sh.records, types.Record{SequenceNumber: aws.String(seq), PartitionKey: aws.String(pk), Data: data, ApproximateArrivalTimestamp: aws.Time(time.Now())})
	return seq
}

// putAggregate appends a KPL aggregate of the given user records.
func (s *testStream) putAggregate(id string, users []kpl.Record) string {
	var a kpl.Aggregator
	for _, u := range users {
		a.Add(u)
	}
	return s.put(id, users[0].PartitionKey, a.AppendEncode(nil))
}

func (s *testStream) listShards(_ context.Context, in *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := 0
	if in.NextToken != nil {
		if in.StreamName != nil {
			return nil, &types.InvalidArgumentException{Message: aws.String("NextToken and StreamName")}
		}
		from, _ = strconv.Atoi(*in.NextToken)
	}
	to := len(s.shards)
	if s.pageSize > 0 && from+s.pageSize < to {
		to = from + s.pageSize
	}
	out := &kinesis.ListShardsOutput{}
	for _, sh := range s.shards[from:to] {
		ts := types.Shard{
			ShardId:             aws.String(sh.id),
			HashKeyRange:        &types.HashKeyRange{StartingHashKey: aws.String(sh.startHash), EndingHashKey: aws.String(sh.endHash)},
			SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String("0")},
		}
		if len(sh.parents) > 0 {
			ts.ParentShardId = aws.String(sh.parents[0])
		}
		if len(sh.parents) > 1 {
			ts.AdjacentParentShardId = aws.String(sh.parents[1])
		}
		if sh.closed {
			ts.SequenceNumberRange.EndingSequenceNumber = aws.String("99999999999999999999999999")
		}
		out.Shards = append(out.Shards, ts)
	}
	if to < len(s.shards) {
		out.NextToken = aws.String(strconv.Itoa(to))
	}
	return out, nil
}

func seqLess(a, b string) bool {
	return checkpoint.Checkpoint{Sequence: a}.Compare(checkpoint.Checkpoint{Sequence: b}) < 0
}

func (s *testStream) getShardIterator(_ context.Context, in *kinesis.GetShardIteratorInput) (*kinesis.GetShardIteratorOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shard(aws.ToString(in.ShardId))
	if sh == nil {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no shard " + aws.ToString(in.ShardId))}
	}
	var i int
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeTrimHorizon:
		i = 0
	case types.ShardIteratorTypeLatest:
		i = len(sh.records)
	case types.ShardIteratorTypeAtTimestamp:
		i = slices.IndexFunc(sh.records, func(r types.Record) bool { return !r.ApproximateArrivalTimestamp.Before(*in.Timestamp) })
		if i < 0 {
			i = len(sh.records)
		}
	case types.ShardIteratorTypeAtSequenceNumber, types.ShardIteratorTypeAfterSequenceNumber:
		seq := aws.ToString(in.StartingSequenceNumber)
		i = slices.IndexFunc(sh.records, func(r types.Record) bool { return !seqLess(*r.SequenceNumber, seq) })
		if i < 0 {
			i = len(sh.records)
		} else if in.ShardIteratorType == types.ShardIteratorTypeAfterSequenceNumber && *sh.records[i].SequenceNumber == seq {
			i++
		}
	default:
		return nil, &types.InvalidArgumentException{Message: aws.String("bad iterator type")}
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(fmt.Sprintf("%s#%d", sh.id, i))}, nil
}

func (s *testStream) getRecords(_ context.Context, in *kinesis.GetRecordsInput) (*kinesis.GetRecordsOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, idx, ok := strings.Cut(aws.ToString(in.ShardIterator), "#")
	i, err := strconv.Atoi(idx)
	sh := s.shard(id)
	if !ok || err != nil || sh == nil {
		return nil, &types.InvalidArgumentException{Message: aws.String("bad iterator")}
	}
	end := min(len(sh.records), i+int(aws.ToInt32(in.Limit)))
	out := &kinesis.GetRecordsOutput{Records: slices.Clone(sh.records[i:end]), MillisBehindLatest: aws.Int64(0)}
	if end < len(sh.records) {
		out.MillisBehindLatest = aws.Int64(1000)
	}
	if !(sh.closed && end == len(sh.records)) {
		out.NextShardIterator = aws.String(fmt.Sprintf("%s#%d", sh.id, end))
	} else {
		for _, c := range s.shards { // Kinesis names the children at a shard's end
			if slices.Contains(c.parents, sh.id) {
				out.ChildShards = append(out.ChildShards, types.ChildShard{ShardId: aws.String(c.id), ParentShards: c.parents})
			}
		}
	}
	return out, nil
}

// api returns a fakeKinesis serving this stream.
func (s *testStream) api() *fakeKinesis {
	return &fakeKinesis{listShards: s.listShards, getShardIterator: s.getShardIterator, getRecords: s.getRecords}
}

// event is one processor callback, as seen by the test.
type event struct {
	shard   string
	kind    string // init, records, ended, lost, shutdown
	start   checkpoint.Checkpoint
	pending *checkpoint.Checkpoint
	batch   *Batch
}

// procLog collects processor events of every shard, and lets tests react to them.
type procLog struct {
	mu     sync.Mutex
	events []event
	// autoAck acknowledges every batch inside ProcessRecords.
	autoAck bool
	// onRecords, if set, runs inside ProcessRecords (after autoAck).
	onRecords func(ctx context.Context, shard string, b *Batch) error
	// onInit, if set, runs inside Initialize.
	onInit func(ctx context.Context, in InitInput) error
	// onShutdown, if set, runs inside Shutdown.
	onShutdown func(ctx context.Context, shard string) error
	// onEnded, if set, runs inside ShardEnded.
	onEnded func(ctx context.Context, shard string) error
	notify  chan struct{}
}

func newProcLog(autoAck bool) *procLog {
	return &procLog{autoAck: autoAck, notify: make(chan struct{}, 1)}
}

func (p *procLog) add(e event) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

func (p *procLog) snapshot() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *procLog) of(shard, kind string) []event {
	var out []event
	for _, e := range p.snapshot() {
		if (shard == "" || e.shard == shard) && (kind == "" || e.kind == kind) {
			out = append(out, e)
		}
	}
	return out
}

// records returns the data of every record delivered for shard ("" for all), in order.
func (p *procLog) records(shard string) []Record {
	var out []Record
	for _, e := range p.of(shard, "records") {
		out = append(out, e.batch.Records...)
	}
	return out
}

func (p *procLog) factory() ProcessorFactory {
	return func(shard string) Processor { return &testProc{shard: shard, log: p} }
}

type testProc struct {
	shard string
	log   *procLog
	pre   Preparer
}

func (t *testProc) Initialize(ctx context.Context, in InitInput) error {
	t.pre = in.Preparer
	t.log.add(event{shard: t.shard, kind: "init", start: in.Start, pending: in.Pending})
	if t.log.onInit != nil {
		return t.log.onInit(ctx, in)
	}
	return nil
}

func (t *testProc) ProcessRecords(ctx context.Context, b *Batch) error {
	t.log.add(event{shard: t.shard, kind: "records", batch: b})
	if t.log.autoAck {
		b.Ack()
	}
	if t.log.onRecords != nil {
		return t.log.onRecords(ctx, t.shard, b)
	}
	return nil
}

func (t *testProc) ShardEnded(ctx context.Context) error {
	t.log.add(event{shard: t.shard, kind: "ended"})
	if t.log.onEnded != nil {
		return t.log.onEnded(ctx, t.shard)
	}
	return nil
}

func (t *testProc) LeaseLost(context.Context) { t.log.add(event{shard: t.shard, kind: "lost"}) }

func (t *testProc) Shutdown(ctx context.Context) error {
	t.log.add(event{shard: t.shard, kind: "shutdown"})
	if t.log.onShutdown != nil {
		return t.log.onShutdown(ctx, t.shard)
	}
	return nil
}

// started runs c (a Consumer or a MultiStream) in the background and returns a function
// that stops it and returns Run's error.
func started(t testing.TB, c interface{ Run(context.Context) error }) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func lease(t *testing.T, s checkpoint.Store, key string) checkpoint.Lease {
	t.Helper()
	l, err := s.GetLease(context.Background(), key)
	if err != nil {
		t.Fatalf("getting lease %s: %v", key, err)
	}
	return l
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func counterVecValue(v *prometheus.CounterVec, label string) float64 {
	return counterValue(v.WithLabelValues(label))
}

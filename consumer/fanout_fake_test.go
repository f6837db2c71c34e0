package consumer

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// fanOutFake serves a testStream through enhanced fan-out as well as polling: the stream
// consumer calls, and subscriptions whose events come from the stream's shards. Each
// subscription is a fakeSubscription — the SDK's event stream reader interface — wrapped in
// the SDK's own SubscribeToShardEventStream, as SubscribeToShardOutput.GetStream returns it.
type fanOutFake struct {
	*fakeKinesis
	s *testStream

	// every is the interval between events of a subscription (default 200ms); each event
	// carries up to perEvent records (default 100).
	every    time.Duration
	perEvent int
	// lifetime is how long a subscription lasts before it ends cleanly (default
	// SubscriptionLifetime).
	lifetime time.Duration
	// noEndEvent keeps subscriptions of a closed shard sending empty events at its end
	// instead of the last event with the children, as kinesis-mock does.
	noEndEvent bool
	// activeAfter is how many DescribeStreamConsumer calls see a new consumer CREATING.
	activeAfter int
	// onSubscribe, if set, runs at each SubscribeToShard (n counts earlier calls): a fail
	// error fails the call; a non-nil breakErr makes the subscription fail with it after
	// breakAfter events.
	onSubscribe func(in *kinesis.SubscribeToShardInput, n int) (fail error, breakAfter int, breakErr error)

	mu        sync.Mutex
	consumers map[string]*consumerEntry
	subs      []*fakeSubscription
	inputs    []*kinesis.SubscribeToShardInput
	calls     []time.Time // when each SubscribeToShard was made
	registers int
}

type consumerEntry struct {
	arn       string
	status    types.ConsumerStatus
	describes int
}

const testStreamARN = "arn:aws:kinesis:us-east-1:123456789012:stream/" + testStreamName

func newFanOutFake(s *testStream) *fanOutFake {
	return &fanOutFake{fakeKinesis: s.api(), s: s, consumers: map[string]*consumerEntry{}}
}

func (f *fanOutFake) DescribeStreamSummary(_ context.Context, in *kinesis.DescribeStreamSummaryInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	f.record("DescribeStreamSummary", "", in, nil)
	if aws.ToString(in.StreamName) != testStreamName {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no stream " + aws.ToString(in.StreamName))}
	}
	return &kinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &types.StreamDescriptionSummary{
		StreamName: aws.String(testStreamName), StreamARN: aws.String(testStreamARN), StreamStatus: types.StreamStatusActive,
	}}, nil
}

func (f *fanOutFake) DescribeStreamConsumer(_ context.Context, in *kinesis.DescribeStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	f.record("DescribeStreamConsumer", "", in, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.consumers[aws.ToString(in.ConsumerName)]
	if !ok || aws.ToString(in.StreamARN) != testStreamARN {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no consumer " + aws.ToString(in.ConsumerName))}
	}
	if e.status == types.ConsumerStatusCreating {
		if e.describes >= f.activeAfter {
			e.status = types.ConsumerStatusActive
		}
		e.describes++
	}
	return &kinesis.DescribeStreamConsumerOutput{ConsumerDescription: &types.ConsumerDescription{
		ConsumerARN: aws.String(e.arn), ConsumerName: in.ConsumerName, ConsumerStatus: e.status, StreamARN: in.StreamARN,
	}}, nil
}

func (f *fanOutFake) RegisterStreamConsumer(_ context.Context, in *kinesis.RegisterStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error) {
	f.record("RegisterStreamConsumer", "", in, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	name := aws.ToString(in.ConsumerName)
	if _, ok := f.consumers[name]; ok {
		return nil, &types.ResourceInUseException{Message: aws.String("consumer " + name + " exists")}
	}
	f.registers++
	e := &consumerEntry{arn: testStreamARN + "/consumer/" + name + ":" + strconv.Itoa(f.registers), status: types.ConsumerStatusCreating}
	f.consumers[name] = e
	return &kinesis.RegisterStreamConsumerOutput{Consumer: &types.Consumer{ConsumerARN: aws.String(e.arn), ConsumerName: in.ConsumerName, ConsumerStatus: e.status}}, nil
}

func (f *fanOutFake) DeregisterStreamConsumer(_ context.Context, in *kinesis.DeregisterStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.DeregisterStreamConsumerOutput, error) {
	f.record("DeregisterStreamConsumer", "", in, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	name := aws.ToString(in.ConsumerName)
	e, ok := f.consumers[name]
	switch {
	case !ok:
		return nil, &types.ResourceNotFoundException{Message: aws.String("no consumer " + name)}
	case e.status != types.ConsumerStatusActive:
		return nil, &types.ResourceInUseException{Message: aws.String("Consumer " + name + " is not in an ACTIVE state")}
	}
	delete(f.consumers, name)
	return &kinesis.DeregisterStreamConsumerOutput{}, nil
}

// SubscribeToShard is never called: the consumer uses subscribeStream when the client has it.
func (f *fanOutFake) SubscribeToShard(context.Context, *kinesis.SubscribeToShardInput, ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error) {
	return nil, errors.New("fanOutFake: SubscribeToShard is not used; subscribeStream is")
}

func (f *fanOutFake) subscribeStream(ctx context.Context, in *kinesis.SubscribeToShardInput) (eventStream, error) {
	f.mu.Lock()
	n := len(f.inputs)
	f.inputs = append(f.inputs, in)
	f.calls = append(f.calls, time.Now())
	active := false
	for _, e := range f.consumers {
		if e.arn == aws.ToString(in.ConsumerARN) && e.status == types.ConsumerStatusActive {
			active = true
		}
	}
	hook := f.onSubscribe
	f.mu.Unlock()
	if !active {
		err := &types.ResourceNotFoundException{Message: aws.String("no active consumer " + aws.ToString(in.ConsumerARN))}
		f.record("SubscribeToShard", aws.ToString(in.ShardId), in, err)
		return nil, err
	}
	var (
		breakAfter int
		breakErr   error
	)
	if hook != nil {
		var fail error
		if fail, breakAfter, breakErr = hook(in, n); fail != nil {
			f.record("SubscribeToShard", aws.ToString(in.ShardId), in, fail)
			return nil, fail
		}
	}
	p := in.StartingPosition
	it, err := f.s.getShardIterator(ctx, &kinesis.GetShardIteratorInput{
		ShardId: in.ShardId, ShardIteratorType: p.Type, StartingSequenceNumber: p.SequenceNumber, Timestamp: p.Timestamp,
	})
	f.record("SubscribeToShard", aws.ToString(in.ShardId), in, err)
	if err != nil {
		return nil, err
	}
	_, idx, _ := strings.Cut(aws.ToString(it.ShardIterator), "#")
	i, _ := strconv.Atoi(idx)
	sub := &fakeSubscription{
		shard: aws.ToString(in.ShardId), pos: *p, ch: make(chan types.SubscribeToShardEventStream),
		done: make(chan struct{}), breakAfter: breakAfter, breakErr: breakErr,
	}
	f.mu.Lock()
	f.subs = append(f.subs, sub)
	f.mu.Unlock()
	go sub.run(f, i)
	return kinesis.NewSubscribeToShardEventStream(func(es *kinesis.SubscribeToShardEventStream) { es.Reader = sub }), nil
}

func (f *fanOutFake) subscriptions() []*fakeSubscription {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.subs)
}

func (f *fanOutFake) subscribeCalls() ([]*kinesis.SubscribeToShardInput, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.inputs), slices.Clone(f.calls)
}

// fakeSubscription is one subscription: kinesis.SubscribeToShardEventStreamReader.
type fakeSubscription struct {
	shard      string
	pos        types.StartingPosition
	ch         chan types.SubscribeToShardEventStream
	done       chan struct{}
	closeOnce  sync.Once
	breakAfter int
	breakErr   error

	mu     sync.Mutex
	err    error
	sent   int  // events sent
	closed bool // Close was called
	ended  bool // the events channel is closed
}

var _ kinesis.SubscribeToShardEventStreamReader = (*fakeSubscription)(nil)

func (s *fakeSubscription) Events() <-chan types.SubscribeToShardEventStream { return s.ch }

func (s *fakeSubscription) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
	})
	return s.Err()
}

func (s *fakeSubscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *fakeSubscription) state() (sent int, closed, ended bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.closed, s.ended
}

// run sends the shard's records from index i, one event every f.every, until the
// subscription is closed, its lifetime is up, it breaks or the shard ends.
func (s *fakeSubscription) run(f *fanOutFake, i int) {
	defer func() {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		close(s.ch)
	}()
	every, perEvent, lifetime := f.every, f.perEvent, f.lifetime
	if every == 0 {
		every = 200 * time.Millisecond
	}
	if perEvent == 0 {
		perEvent = 100
	}
	if lifetime == 0 {
		lifetime = SubscriptionLifetime
	}
	endAt := time.Now().Add(lifetime)
	cont := ""
	for {
		s.mu.Lock()
		if s.breakErr != nil && s.sent >= s.breakAfter {
			s.err = s.breakErr
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		ev, end := f.s.event(s.shard, &i, &cont, perEvent, f.noEndEvent)
		select {
		case s.ch <- ev:
		case <-s.done:
			return
		}
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		if end {
			return
		}
		select {
		case <-time.After(every):
		case <-s.done:
			return
		}
		if !time.Now().Before(endAt) {
			return
		}
	}
}

// event is the next event of a subscription of shard id at record index *i: up to max
// records. At a closed shard's end the event has no continuation and names the children
// (unless noEnd); it reports whether it was that last event.
func (s *testStream) event(id string, i *int, cont *string, max int, noEnd bool) (types.SubscribeToShardEventStream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shard(id)
	end := min(len(sh.records), *i+max)
	e := types.SubscribeToShardEvent{Records: slices.Clone(sh.records[*i:end]), MillisBehindLatest: aws.Int64(0)}
	*i = end
	if end < len(sh.records) {
		e.MillisBehindLatest = aws.Int64(1000)
	}
	switch {
	case end > 0:
		*cont = aws.ToString(sh.records[end-1].SequenceNumber)
	case *cont == "":
		*cont = "0"
	}
	if sh.closed && end == len(sh.records) && !noEnd {
		for _, c := range s.shards {
			if slices.Contains(c.parents, sh.id) {
				e.ChildShards = append(e.ChildShards, types.ChildShard{ShardId: aws.String(c.id), ParentShards: c.parents})
			}
		}
		return &types.SubscribeToShardEventStreamMemberSubscribeToShardEvent{Value: e}, true
	}
	e.ContinuationSequenceNumber = aws.String(*cont)
	return &types.SubscribeToShardEventStreamMemberSubscribeToShardEvent{Value: e}, false
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/backoff"
)

// MultiStreamAPI is the part of the Kinesis client a [MultiStream] worker uses: a
// [KinesisAPI] that can describe a stream (for its account and creation time, which name its
// leases). *kinesis.Client implements it; with [FanOut] it must implement [FanOutAPI] too.
type MultiStreamAPI interface {
	KinesisAPI
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
}

var _ MultiStreamAPI = (*kinesis.Client)(nil)

// Stream is one stream of a [MultiStream] worker.
type Stream struct {
	// Name is the stream's name or ARN.
	Name string
	// Factory makes the processors of the stream's shards.
	Factory ProcessorFactory
}

// MultiStream is one worker of a fleet reading several streams through one lease table, in
// the KCL's multi-stream layout: each lease is keyed account:stream:creationEpoch:shardId
// and carries the KCL's streamName and shardId attributes. Create it with [NewMultiStream]
// and start it with [MultiStream.Run].
//
// Each stream is consumed as by a [Consumer] of its own (shard sync, lease taking and
// balancing, readers, checkpoints), through a view of the table that holds only that
// stream's leases ([checkpoint.StreamView]): a worker never takes, changes or deletes a
// lease of a stream it does not consume, a single-stream lease or any other item of the
// table. Streams may be added to and removed from the list between restarts; the leases of a
// removed stream stay in the table, untouched, with their checkpoints. A stream deleted and
// created again under the same name has a new creation time and so starts with new leases.
//
// The streams share the worker's id, its byte budget ([WithMaxUnackedBytes] bounds the
// bytes read and not yet acknowledged over every shard of every stream), its logger and its
// metrics registerer (every series carries a stream label). Leases are balanced per stream:
// each stream's shards are spread evenly over the workers that consume it. Every shard
// sync and lease scan of each stream lists the table; concurrent listings by the streams of
// one worker share one Scan.
type MultiStream struct {
	client    MultiStreamAPI
	consumers []*Consumer
	views     []*checkpoint.View
	shared    *sharedListing
	started   bool
	mu        sync.Mutex
}

// NewMultiStream returns a worker for streams that keeps their leases and checkpoints in
// store. Options apply to every stream. A stream may appear once.
func NewMultiStream(client MultiStreamAPI, store checkpoint.Store, streams []Stream, opts ...Option) (*MultiStream, error) {
	var errs []error
	if len(streams) == 0 {
		errs = append(errs, fmt.Errorf("%w: no streams", ErrInvalidOption))
	}
	seen := map[string]bool{}
	for _, s := range streams {
		name := streamNameOf(s.Name)
		if seen[name] {
			errs = append(errs, fmt.Errorf("%w: stream %s listed twice", ErrInvalidOption, name))
		}
		seen[name] = true
	}
	if client == nil {
		errs = append(errs, fmt.Errorf("%w: nil Kinesis client", ErrInvalidOption))
	}
	if store == nil {
		errs = append(errs, fmt.Errorf("%w: nil checkpoint store", ErrInvalidOption))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating multi-stream consumer: %w", err)
	}
	cfg, err := newConfig(opts)
	if err == nil && cfg.coordinator != nil {
		err = fmt.Errorf("%w: leader assignment is not available for a multi-stream worker", ErrInvalidOption)
	}
	if err != nil {
		return nil, fmt.Errorf("creating multi-stream consumer: %w", err)
	}
	// One worker id for every stream, even when the caller left it to the default.
	opts = append(opts[:len(opts):len(opts)], WithWorkerID(cfg.workerID))
	shared := &sharedListing{Store: store}
	m := &MultiStream{client: client, shared: shared}
	var budget *byteBudget
	if cfg.maxUnackedBytes > 0 {
		budget = newByteBudget(cfg.maxUnackedBytes)
	}
	for _, s := range streams {
		// The view's stream identifier is known once the stream is described (Run).
		v := checkpoint.StreamView(shared, "")
		c, err := New(client, v, s.Name, s.Factory, opts...)
		if err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", s.Name, err))
			continue
		}
		c.budget = budget
		m.consumers = append(m.consumers, c)
		m.views = append(m.views, v)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating multi-stream consumer: %w", err)
	}
	return m, nil
}

// WorkerID returns the id this worker writes as lease owner.
func (m *MultiStream) WorkerID() string { return m.consumers[0].WorkerID() }

// Streams returns the streams' names or ARNs, as given.
func (m *MultiStream) Streams() []string {
	out := make([]string, len(m.consumers))
	for i, c := range m.consumers {
		out[i] = c.stream
	}
	return out
}

// Status returns a snapshot of each stream's held leases, in the order the streams were
// given.
func (m *MultiStream) Status() []Status {
	out := make([]Status, len(m.consumers))
	for i, c := range m.consumers {
		out[i] = c.Status()
	}
	return out
}

// Run describes every stream (for the identifiers that key its leases), then runs every
// stream as [Consumer.Run] does until ctx ends, and shuts them all down gracefully. A stream
// that cannot be described is retried with backoff, as a shard sync is; Run returns early
// with an error when a stream does not exist, or when a stream's consumer fails to start
// (the others are then shut down). Run may be called once.
func (m *MultiStream) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return ErrRunning
	}
	m.started = true
	m.mu.Unlock()
	for i, c := range m.consumers {
		id, err := m.describe(ctx, c)
		if err != nil || ctx.Err() != nil {
			return err
		}
		*m.views[i] = *checkpoint.StreamView(m.shared, id)
		c.log.Info("multi-stream leases", "stream_id", id)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(m.consumers))
	var wg sync.WaitGroup
	for i, c := range m.consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(runCtx); err != nil {
				errs[i] = fmt.Errorf("stream %s: %w", c.stream, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// describe returns a stream's identifier, retrying failures other than a missing stream;
// ("", nil) when ctx ends first.
func (m *MultiStream) describe(ctx context.Context, c *Consumer) (string, error) {
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: c.cfg.failover}
	for {
		dctx, cancel := context.WithTimeout(ctx, c.cfg.listTimeout())
		id, err := DescribeStreamID(dctx, m.client, c.stream)
		cancel()
		if err == nil || ctx.Err() != nil {
			return id, nil
		}
		var rnf *types.ResourceNotFoundException
		if errors.As(err, &rnf) {
			return "", fmt.Errorf("starting consumer of stream %s: %w", c.stream, err)
		}
		c.log.Warn("describing stream", "err", err)
		if c.sleepUntil(ctx, c.cfg.clock.Now().Add(bo.Next())) != nil {
			return "", nil
		}
	}
}

// DescribeStreamID returns the KCL's identifier of a stream (a name or an ARN) in a
// multi-stream lease table, account:name:creationEpoch ([checkpoint.StreamID]), from
// DescribeStreamSummary: the account and name from the stream's ARN, the epoch from its
// creation time.
func DescribeStreamID(ctx context.Context, client MultiStreamAPI, stream string) (string, error) {
	in := &kinesis.DescribeStreamSummaryInput{}
	if strings.HasPrefix(stream, "arn:") {
		in.StreamARN = aws.String(stream)
	} else {
		in.StreamName = aws.String(stream)
	}
	out, err := client.DescribeStreamSummary(ctx, in)
	if err != nil {
		return "", fmt.Errorf("describing stream %s: %w", stream, err)
	}
	d := out.StreamDescriptionSummary
	if d == nil || d.StreamARN == nil || d.StreamCreationTimestamp == nil {
		return "", fmt.Errorf("describing stream %s: the answer has no stream ARN or creation time", stream)
	}
	a, err := arn.Parse(aws.ToString(d.StreamARN))
	if err != nil || a.AccountID == "" {
		return "", fmt.Errorf("describing stream %s: stream ARN %q has no account", stream, aws.ToString(d.StreamARN))
	}
	name := aws.ToString(d.StreamName)
	if name == "" {
		name = streamNameOf(aws.ToString(d.StreamARN))
	}
	return checkpoint.StreamID(a.AccountID, name, d.StreamCreationTimestamp.Unix()), nil
}

// streamNameOf returns the name of a stream given by name or ARN
// (arn:aws:kinesis:region:account:stream/name).
func streamNameOf(s string) string {
	if !strings.HasPrefix(s, "arn:") {
		return s
	}
	if i := strings.LastIndex(s, ":stream/"); i >= 0 {
		return s[i+len(":stream/"):]
	}
	return s
}

// sharedListing is a store whose concurrent ListLeases calls share one listing: a call made
// while a listing is in flight waits for it and gets its result. A listing is never reused
// once it has returned, so every caller sees the table as it was at some point after the
// shared call began — as good as a listing of its own for the shard sync (which lists the
// table before the shards) and for taking leases (takes are conditional). The shared call
// runs under its first caller's context: its error, a deadline included, is every joiner's,
// who retries at its next cycle.
//
// It forwards the optional interfaces [checkpoint.StreamView] looks for.
type sharedListing struct {
	checkpoint.Store

	mu       sync.Mutex
	inFlight *listing
}

type listing struct {
	done    chan struct{}
	leases  []checkpoint.Lease
	err     error
	joiners int // callers that joined it (under sharedListing.mu)
}

// ListLeases implements checkpoint.Store.
func (s *sharedListing) ListLeases(ctx context.Context) ([]checkpoint.Lease, error) {
	s.mu.Lock()
	l := s.inFlight
	if l == nil {
		l = &listing{done: make(chan struct{})}
		s.inFlight = l
		s.mu.Unlock()
		l.leases, l.err = s.Store.ListLeases(ctx)
		s.mu.Lock()
		s.inFlight = nil
		s.mu.Unlock()
		close(l.done)
	} else {
		l.joiners++
		s.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	if l.err != nil {
		return nil, l.err
	}
	// Each caller gets its own slice: the consumer filters it in place.
	return slices.Clone(l.leases), nil
}

// Table returns the store's table name, if it has one.
func (s *sharedListing) Table() string {
	if t, ok := s.Store.(interface{ Table() string }); ok {
		return t.Table()
	}
	return ""
}

// CheckTable implements checkpoint.TableChecker (EnsureTable for a store without one).
func (s *sharedListing) CheckTable(ctx context.Context) error {
	if tc, ok := s.Store.(checkpoint.TableChecker); ok {
		return tc.CheckTable(ctx)
	}
	return s.Store.EnsureTable(ctx)
}

// SetChildShards implements checkpoint.ChildRecorder.
func (s *sharedListing) SetChildShards(ctx context.Context, held checkpoint.Lease, children []string) (checkpoint.Lease, error) {
	cr, ok := s.Store.(checkpoint.ChildRecorder)
	if !ok {
		return checkpoint.Lease{}, fmt.Errorf("recording child shards: %T: %w", s.Store, errors.ErrUnsupported)
	}
	return cr.SetChildShards(ctx, held, children)
}

// CheckpointWithState implements checkpoint.StateCheckpointer.
func (s *sharedListing) CheckpointWithState(ctx context.Context, held checkpoint.Lease, cp checkpoint.Checkpoint, state []byte) (checkpoint.Lease, error) {
	sc, ok := s.Store.(checkpoint.StateCheckpointer)
	if !ok {
		return checkpoint.Lease{}, fmt.Errorf("checkpointing with state: %T: %w", s.Store, errors.ErrUnsupported)
	}
	return sc.CheckpointWithState(ctx, held, cp, state)
}

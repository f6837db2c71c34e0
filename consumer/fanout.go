package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/backoff"
)

// FanOutAPI is the part of the Kinesis client that [FanOut] retrieval uses besides
// [KinesisAPI]: the stream consumer's registration and SubscribeToShard. *kinesis.Client
// implements it.
type FanOutAPI interface {
	KinesisAPI
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
	DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error)
	RegisterStreamConsumer(ctx context.Context, in *kinesis.RegisterStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error)
	SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, optFns ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error)
}

var _ FanOutAPI = (*kinesis.Client)(nil)

// Enhanced fan-out limits the reader honours.
const (
	// SubscriptionLifetime is how long Kinesis keeps a SubscribeToShard subscription open;
	// the reader then subscribes again from where the subscription ended.
	SubscriptionLifetime = 5 * time.Minute
	// MinSubscribeInterval spaces SubscribeToShard calls on one shard: 1 call per second
	// per stream consumer and shard.
	MinSubscribeInterval = time.Second
)

const (
	// streamConsumerActiveTimeout bounds the registration of the stream consumer at start:
	// until it is ACTIVE (Kinesis takes seconds).
	streamConsumerActiveTimeout = 2 * time.Minute
	// subscriptionGrace is how long past SubscriptionLifetime the reader waits for
	// Kinesis to end a subscription before it closes the subscription itself.
	subscriptionGrace = 30 * time.Second
	// subscriptionStallTimeout: a subscription that delivers no event for this long while
	// the reader waits for one is taken as broken (Kinesis sends events while the shard
	// is idle too) and replaced.
	subscriptionStallTimeout = time.Minute
	// resourceInUseBackoff is the first wait after ResourceInUseException: another
	// subscription of this consumer to the shard is open (a previous owner's, after a
	// failover); a new one takes over once the other is 5 seconds old.
	resourceInUseBackoff = 4 * time.Second
)

var (
	errSubscriptionStalled = errors.New("no event for " + subscriptionStallTimeout.String())
	errSubscriptionEmpty   = errors.New("the subscription ended without an event")
)

// ensureStreamConsumer finds the stream consumer, registering it if it is missing, waits
// until it is ACTIVE, and stores its ARN for the shard workers.
func (c *Consumer) ensureStreamConsumer(ctx context.Context) (string, error) {
	c.consumerMu.Lock()
	defer c.consumerMu.Unlock()
	return c.ensureStreamConsumerLocked(ctx)
}

func (c *Consumer) ensureStreamConsumerLocked(ctx context.Context) (string, error) {
	streamARN := c.stream
	if !strings.HasPrefix(streamARN, "arn:") {
		out, err := c.fanout.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(c.stream)})
		if err != nil {
			return "", fmt.Errorf("describing stream %s for its ARN: %w", c.stream, err)
		}
		if out.StreamDescriptionSummary == nil || aws.ToString(out.StreamDescriptionSummary.StreamARN) == "" {
			return "", fmt.Errorf("describing stream %s: no stream ARN in the response", c.stream)
		}
		streamARN = *out.StreamDescriptionSummary.StreamARN
	}
	arn, err := registerStreamConsumer(ctx, c.fanout, streamARN, c.consumerName, c.cfg.clock, c.log)
	if err != nil {
		return "", err
	}
	if old := c.consumerARN.Load(); old == nil || *old != arn {
		c.log.Info("stream consumer active", "consumer", c.consumerName, "consumer_arn", arn)
	}
	c.consumerARN.Store(&arn)
	return arn, nil
}

// refreshStreamConsumer registers the stream consumer again after a subscription of stale
// (its ARN) found it gone, unless another shard worker has done so since.
func (c *Consumer) refreshStreamConsumer(ctx context.Context, stale string) error {
	c.consumerMu.Lock()
	defer c.consumerMu.Unlock()
	if cur := c.consumerARN.Load(); cur != nil && *cur != stale {
		return nil
	}
	_, err := c.ensureStreamConsumerLocked(ctx)
	return err
}

// registerStreamConsumer returns the ARN of the stream's consumer called name once it is
// ACTIVE, registering it if it is missing. Registering is idempotent across workers: a
// worker that loses the race (ResourceInUseException) describes the consumer again. The
// whole wait is bounded by streamConsumerActiveTimeout.
func registerStreamConsumer(ctx context.Context, api FanOutAPI, streamARN, name string, clk Clock, log *slog.Logger) (string, error) {
	deadline := clk.Now().Add(streamConsumerActiveTimeout)
	// DescribeStreamConsumer allows 20 calls per second per stream: one a second or two
	// per starting worker leaves room for a fleet.
	bo := backoff.Backoff{Min: time.Second, Max: 2 * time.Second}
	state := "not described yet"
	for {
		out, err := api.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: aws.String(streamARN), ConsumerName: aws.String(name)})
		var (
			notFound *types.ResourceNotFoundException
			inUse    *types.ResourceInUseException
			limit    *types.LimitExceededException
		)
		switch {
		case err == nil && out.ConsumerDescription != nil:
			d := out.ConsumerDescription
			if d.ConsumerStatus == types.ConsumerStatusActive {
				return aws.ToString(d.ConsumerARN), nil
			}
			state = "status " + string(d.ConsumerStatus) // CREATING, or DELETING: then it is registered again
		case errors.As(err, &notFound):
			_, rerr := api.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(streamARN), ConsumerName: aws.String(name)})
			switch {
			case rerr == nil:
				log.Info("registered stream consumer for enhanced fan-out", "consumer", name, "stream_arn", streamARN)
				state = "registered, status CREATING"
			case errors.As(rerr, &inUse):
				state = "registered concurrently" // by another worker: describe it again
			case errors.As(rerr, &limit):
				state = "RegisterStreamConsumer throttled: " + rerr.Error()
			default:
				return "", fmt.Errorf("registering stream consumer %s of %s: %w", name, streamARN, rerr)
			}
		case errors.As(err, &limit):
			state = "DescribeStreamConsumer throttled: " + err.Error()
		case err == nil:
			state = "described without a description"
		default:
			return "", fmt.Errorf("describing stream consumer %s of %s: %w", name, streamARN, err)
		}
		if ctx.Err() != nil {
			return "", context.Cause(ctx)
		}
		if !clk.Now().Before(deadline) {
			return "", fmt.Errorf("stream consumer %s of %s is not ACTIVE after %v (%s)", name, streamARN, streamConsumerActiveTimeout, state)
		}
		select {
		case <-clk.After(bo.Next()):
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	}
}

// StreamConsumerDeregisterer is the calls [DeregisterStreamConsumer] makes.
// *kinesis.Client implements it.
type StreamConsumerDeregisterer interface {
	DeregisterStreamConsumer(ctx context.Context, in *kinesis.DeregisterStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.DeregisterStreamConsumerOutput, error)
	DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error)
}

// DeregisterStreamConsumer deregisters the stream consumer called name of the stream
// streamARN — the one [FanOut] registered — so that it stops being billed; its
// subscriptions end. Stop the application's workers first: a running FanOut worker
// registers the consumer again when its subscriptions find it gone. Deregistration
// completes in the background (the consumer is DELETING for a few seconds). It returns
// nil when no such consumer is registered or it is being deleted already.
func DeregisterStreamConsumer(ctx context.Context, client StreamConsumerDeregisterer, streamARN, name string) error {
	_, err := client.DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{StreamARN: aws.String(streamARN), ConsumerName: aws.String(name)})
	var (
		notFound *types.ResourceNotFoundException
		inUse    *types.ResourceInUseException
	)
	switch {
	case err == nil, errors.As(err, &notFound):
		return nil
	case errors.As(err, &inUse): // not ACTIVE: CREATING, or DELETING already
		out, derr := client.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{StreamARN: aws.String(streamARN), ConsumerName: aws.String(name)})
		if errors.As(derr, &notFound) || derr == nil && out.ConsumerDescription != nil && out.ConsumerDescription.ConsumerStatus == types.ConsumerStatusDeleting {
			return nil
		}
		if derr == nil && out.ConsumerDescription != nil {
			return fmt.Errorf("deregistering stream consumer %s of %s (status %s; retry once it is ACTIVE): %w", name, streamARN, out.ConsumerDescription.ConsumerStatus, err)
		}
	}
	return fmt.Errorf("deregistering stream consumer %s of %s: %w", name, streamARN, err)
}

// eventStream is a subscription's stream of events: what SubscribeToShardOutput.GetStream
// returns.
type eventStream = kinesis.SubscribeToShardEventStreamReader

func (c *Consumer) subscribe(ctx context.Context, in *kinesis.SubscribeToShardInput) (eventStream, error) {
	// The tests' fake client returns the stream itself: a SubscribeToShardOutput that carries
	// an event stream cannot be made outside the SDK. (Not a named interface: it is no AWS
	// client, and the IAM derivation in infra/deploytest lists named ones.)
	if s, ok := c.client.(interface {
		subscribeStream(ctx context.Context, in *kinesis.SubscribeToShardInput) (eventStream, error)
	}); ok {
		return s.subscribeStream(ctx, in)
	}
	out, err := c.fanout.SubscribeToShard(ctx, in, ownEventStreamCodec)
	if err != nil {
		return nil, err
	}
	return out.GetStream(), nil
}

// ownEventStreamCodec gives one SubscribeToShard call a protocol of its own. The SDK's
// protocol holds one event-stream codec per client, with unsynchronized scratch state that
// each new subscription and the reader of each open one write (aws/smithy-go#714: harmless
// in this version, but a data race), and fan-out keeps a subscription per held shard open
// on one client.
func ownEventStreamCodec(o *kinesis.Options) {
	if _, ok := o.Protocol.(*awsjson.Protocol); ok {
		o.Protocol = awsjson.New11(schemas.Kinesis_20131202)
	}
}

// fanOutReader reads with SubscribeToShard ([FanOut]).
type fanOutReader struct{}

func (fanOutReader) read(w *shardWorker, proc Processor, start checkpoint.Checkpoint) error {
	return w.fanOut(proc, start)
}

// fanOutState is where a shard's fan-out reading is, across its subscriptions.
type fanOutState struct {
	start   checkpoint.Checkpoint
	cont    string // ContinuationSequenceNumber of the last event handled; "" before the first
	lastSeq string // sequence number of the last Kinesis record handled
	skip    *checkpoint.Checkpoint
}

// position is where the next subscription starts: after the last continuation, else at the
// start checkpoint (AT its sequence number: userRecords skips the user records at or
// before it, as polling does) or the initial position.
func (st *fanOutState) position(c *Consumer) *types.StartingPosition {
	start := st.start
	switch {
	case st.cont != "":
		return &types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(st.cont)}
	case start.Sequence == checkpoint.Latest:
		return &types.StartingPosition{Type: types.ShardIteratorTypeLatest}
	case start.Sequence == checkpoint.AtTimestamp && c.cfg.initial.kind == checkpoint.AtTimestamp:
		return &types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(c.cfg.initial.at)}
	case isSequence(start.Sequence):
		return &types.StartingPosition{Type: types.ShardIteratorTypeAtSequenceNumber, SequenceNumber: aws.String(start.Sequence)}
	default: // TRIM_HORIZON, or AT_TIMESTAMP without a configured time
		return &types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
	}
}

// How one subscription ended.
type subscriptionEnd int

const (
	subscriptionFatal       subscriptionEnd = iota // the read context ended or the processor failed
	subscriptionExpired                            // ended cleanly (its 5 minutes are up): subscribe again
	subscriptionBroken                             // failed, stalled or ended without an event: again, with backoff
	subscriptionShardEnd                           // the shard ended
	subscriptionClosedShard                        // caught up on a closed shard whose end it does not report
)

// fanOut reads the shard through a chain of subscriptions from start until it ends (nil),
// the read context ends (its cause) or the processor fails (*processorError).
//
// Each subscription's events are handled one at a time: while deliver waits for room (the
// batches-in-flight cap or the byte budget) the stream is not read, so the SDK holds at most
// an event or two more, HTTP/2 flow control stops the transfer and Kinesis keeps the rest.
// If the wait outlasts the subscription, Kinesis ends it and the reader subscribes again
// from the continuation. A subscription that ends cleanly is renewed at once (after
// [SubscriptionLifetime], or earlier); one that fails is renewed with backoff, from the
// last event's continuation, after the last record handled.
func (w *shardWorker) fanOut(proc Processor, start checkpoint.Checkpoint) error {
	c := w.c
	clk := c.cfg.clock
	ctx := w.readCtx
	st := &fanOutState{start: start}
	if start.Validate() == nil && isSequence(start.Sequence) {
		s := start
		st.skip = &s
	}
	var (
		next  time.Time
		bo    = backoff.Backoff{Min: MinSubscribeInterval, Max: max(c.cfg.failover, 2*MinSubscribeInterval)}
		inUse = backoff.Backoff{Min: resourceInUseBackoff, Max: 4 * resourceInUseBackoff}
	)
	for {
		if err := c.sleepUntil(ctx, next); err != nil {
			return err
		}
		arnp := c.consumerARN.Load()
		if arnp == nil { // registered at start; reached only if a worker started before
			if _, err := c.ensureStreamConsumer(ctx); err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				c.log.Warn("registering the stream consumer", "err", err)
				next = clk.Now().Add(bo.Next())
				continue
			}
			arnp = c.consumerARN.Load()
		}
		arn := *arnp
		at := clk.Now()
		next = at.Add(MinSubscribeInterval)
		pos := st.position(c)
		es, err := c.subscribe(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: aws.String(arn), ShardId: aws.String(w.id), StartingPosition: pos})
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if d := w.subscribeFailed(ctx, err, arn, &bo, &inUse); clk.Now().Add(d).After(next) {
				next = clk.Now().Add(d)
			}
			continue
		}
		c.log.Debug("subscribed to shard", "shard", w.id, "position", string(pos.Type), "sequence", aws.ToString(pos.SequenceNumber))
		end, events, err := w.readSubscription(ctx, proc, es, st)
		if events > 0 {
			bo.Reset()
			inUse.Reset()
		}
		switch end {
		case subscriptionFatal:
			return err
		case subscriptionShardEnd:
			return nil
		case subscriptionClosedShard:
			c.log.Info("fan-out subscription caught up on a closed shard without reporting its end; reading the rest with GetRecords", "shard", w.id, "after", st.lastSeq)
			return w.poll(proc, start, st.lastSeq)
		case subscriptionExpired:
			c.log.Debug("subscription ended; subscribing again", "shard", w.id, "continuation", st.cont)
		case subscriptionBroken:
			var d time.Duration
			var riu *types.ResourceInUseException
			if errors.As(err, &riu) {
				// Another subscription took over the shard: a new owner's, most likely; the
				// lease scan will tell. Or this worker's previous one, still open.
				c.met.readErrors.WithLabelValues("subscription_in_use").Inc()
				d = inUse.Next()
				c.log.Info("shard subscription in use by another subscription; retrying", "shard", w.id, "err", err, "backoff", d.String())
			} else {
				c.met.readErrors.WithLabelValues("stream").Inc()
				d = bo.Next()
				c.log.Warn("shard subscription failed; subscribing again from its continuation", "shard", w.id, "events", events, "err", err, "backoff", d.String())
			}
			if t := clk.Now().Add(d); t.After(next) {
				next = t
			}
		}
	}
}

// subscribeFailed counts and logs a failed SubscribeToShard call and returns the wait before
// the next one.
func (w *shardWorker) subscribeFailed(ctx context.Context, err error, arn string, bo, inUse *backoff.Backoff) time.Duration {
	c := w.c
	var (
		riu      *types.ResourceInUseException
		limit    *types.LimitExceededException
		notFound *types.ResourceNotFoundException
	)
	switch {
	case errors.As(err, &riu):
		c.met.readErrors.WithLabelValues("subscription_in_use").Inc()
		d := inUse.Next()
		c.log.Info("another subscription to the shard is still open; retrying", "shard", w.id, "backoff", d.String())
		return d
	case errors.As(err, &limit):
		c.met.readErrors.WithLabelValues("throttled").Inc()
		d := bo.Next()
		c.log.Debug("SubscribeToShard throttled", "shard", w.id, "backoff", d.String())
		return d
	case errors.As(err, &notFound):
		c.met.readErrors.WithLabelValues("subscribe").Inc()
		c.log.Warn("subscribing to shard: not found; checking the stream consumer", "shard", w.id, "err", err)
		if rerr := c.refreshStreamConsumer(ctx, arn); rerr != nil && ctx.Err() == nil {
			c.log.Warn("registering the stream consumer again", "err", rerr)
		}
		return bo.Next()
	default:
		c.met.readErrors.WithLabelValues("subscribe").Inc()
		d := bo.Next()
		c.log.Warn("subscribing to shard", "shard", w.id, "err", err, "backoff", d.String())
		return d
	}
}

// readSubscription handles the events of one subscription until it ends, and closes it. It
// returns how it ended, the number of events handled and, for subscriptionFatal and
// subscriptionBroken, the error.
func (w *shardWorker) readSubscription(ctx context.Context, proc Processor, es eventStream, st *fanOutState) (subscriptionEnd, int, error) {
	defer es.Close()
	c := w.c
	clk := c.cfg.clock
	expire := clk.After(SubscriptionLifetime + subscriptionGrace)
	events := 0
	for {
		var (
			ev types.SubscribeToShardEventStream
			ok bool
		)
		select {
		case <-ctx.Done():
			return subscriptionFatal, events, context.Cause(ctx)
		case <-expire:
			return subscriptionExpired, events, nil
		case <-clk.After(subscriptionStallTimeout):
			return subscriptionBroken, events, errSubscriptionStalled
		case ev, ok = <-es.Events():
		}
		if !ok {
			if err := es.Err(); err != nil {
				if ctx.Err() != nil {
					return subscriptionFatal, events, context.Cause(ctx)
				}
				return subscriptionBroken, events, err
			}
			if events == 0 {
				return subscriptionBroken, events, errSubscriptionEmpty
			}
			return subscriptionExpired, events, nil
		}
		member, isEvent := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
		if !isEvent {
			continue // an event type newer than this client
		}
		events++
		e := &member.Value
		lag := aws.ToInt64(e.MillisBehindLatest)
		w.lag.Store(lag)
		recs, size := w.userRecords(e.Records, &st.skip)
		if n := len(e.Records); n > 0 {
			st.lastSeq = aws.ToString(e.Records[n-1].SequenceNumber)
		}
		if len(recs) > 0 {
			if err := w.deliver(ctx, proc, recs, lag, size); err != nil {
				return subscriptionFatal, events, err
			}
		}
		if e.ContinuationSequenceNumber == nil || len(e.ChildShards) > 0 {
			for _, ch := range e.ChildShards {
				if id := aws.ToString(ch.ShardId); id != "" {
					w.children = append(w.children, id)
				}
			}
			return subscriptionShardEnd, events, nil
		}
		st.cont = *e.ContinuationSequenceNumber
		// Kinesis ends a closed shard's subscription with a last event that names the
		// children. An emulator that does not (kinesis-mock) keeps sending empty events:
		// once the shard sync has seen the shard closed, finish it by polling.
		if len(e.Records) == 0 && lag == 0 && c.shardClosed(w.id) {
			return subscriptionClosedShard, events, nil
		}
	}
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/backoff"
	"github.com/kinlog/kinlog/internal/kpl"
)

// Causes of a shard worker's contexts ending.
var (
	errShutdown        = errors.New("consumer: shutting down")
	errShutdownTimeout = errors.New("consumer: shutdown timeout")
	errLeaseLostCause  = fmt.Errorf("consumer: %w", checkpoint.ErrLeaseLost)
)

// processorError wraps an error returned by a Processor method.
type processorError struct {
	op  string
	err error
}

func (e *processorError) Error() string { return "processor " + e.op + ": " + e.err.Error() }
func (e *processorError) Unwrap() error { return e.err }

// shardWorker reads one shard for as long as this worker holds its lease. It calls the
// processor from its own goroutine; a second goroutine writes checkpoints as
// acknowledgements arrive.
type shardWorker struct {
	c    *Consumer
	id   string
	h    *holder
	acks *ackTracker

	rng       kpl.HashKeyRange
	hasRange  bool
	fullRange bool // the whole hash space: every key is inside

	// workCtx ends when the lease is lost or the shutdown timeout passes; processor
	// callbacks get it. readCtx, its child, also ends when shutdown begins; reads and
	// ProcessRecords get it.
	workCtx    context.Context
	cancelWork context.CancelCauseFunc
	readCtx    context.Context
	cancelRead context.CancelCauseFunc

	lag      atomic.Int64 // MillisBehindLatest of the last read (GetRecords or event); -1 before the first
	stopping atomic.Bool
	done     chan struct{}
	scratch  []kpl.Record
	children []string // the shard's children, from the GetRecords response or event at its end
}

func newShardWorker(c *Consumer, life context.Context, l checkpoint.Lease) *shardWorker {
	w := &shardWorker{c: c, id: l.Key, done: make(chan struct{})}
	w.workCtx, w.cancelWork = context.WithCancelCause(life)
	w.readCtx, w.cancelRead = context.WithCancelCause(w.workCtx)
	w.h = newHolder(c, l, func(string) { w.cancelWork(errLeaseLostCause) })
	start := l.Checkpoint
	if start.IsZero() {
		start = checkpoint.Checkpoint{Sequence: c.cfg.initial.kind}
	}
	w.acks = newAckTracker(c.cfg.maxInFlight, start, l.State)
	w.acks.budget = c.budget
	w.h.onStored = w.acks.stored
	w.lag.Store(-1)
	if l.StartingHashKey != "" && l.EndingHashKey != "" {
		rng, err := kpl.ParseHashKeyRange(l.StartingHashKey, l.EndingHashKey)
		if err != nil {
			c.log.Warn("ignoring unparseable hash key range of lease", "shard", l.Key, "err", err)
		} else {
			w.rng, w.hasRange = rng, true
			w.fullRange = rng == kpl.HashKeyRange{End: kpl.MaxHashKey}
		}
	}
	return w
}

// beginShutdown stops reading; processor callbacks get until sctx ends.
func (w *shardWorker) beginShutdown(sctx context.Context) (stop func() bool) {
	w.stopping.Store(true)
	w.cancelRead(errShutdown)
	return context.AfterFunc(sctx, func() { w.cancelWork(errShutdownTimeout) })
}

func (w *shardWorker) lost() bool { return w.h.lost.Load() }

// finalCtx bounds the last writes of a shard: they run after the processor's callbacks,
// even when those used up the shutdown timeout.
func (w *shardWorker) finalCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(w.workCtx), w.c.cfg.failover)
}

func (w *shardWorker) run() {
	defer close(w.done)
	defer w.cancelWork(nil)
	c := w.c
	w.h.mu.Lock()
	lease := w.h.lease
	w.h.mu.Unlock()
	start := w.acks.position()
	state, parents := lease.State, [][]byte(nil)
	if state == nil && start.Compare(checkpoint.Checkpoint{}) == 0 && len(lease.ParentShardIDs) > 0 {
		parents = w.parentStates(lease.ParentShardIDs)
	}

	proc := c.factory(w.id)
	if proc == nil {
		c.log.Error("processor factory returned nil", "shard", w.id)
		w.failed()
		return
	}
	var pending *checkpoint.Checkpoint
	if lease.Pending != nil {
		p := *lease.Pending
		pending = &p
	}
	err := proc.Initialize(w.workCtx, InitInput{Stream: c.stream, ShardID: w.id, Start: start, Pending: pending, Preparer: preparer{w},
		State: state, ParentStates: parents})
	if err != nil {
		if w.lost() {
			return
		}
		c.met.processorErrors.Inc()
		c.log.Error("initializing processor", "shard", w.id, "err", err)
		w.failed()
		return
	}
	c.log.Debug("shard started", "shard", w.id, "start", start.String())

	stopCP := make(chan struct{})
	cpDone := make(chan struct{})
	go func() {
		defer close(cpDone)
		w.checkpointLoop(stopCP)
	}()
	stopCheckpointer := func() { close(stopCP); <-cpDone }

	err = w.c.reader.read(w, proc, start)
	var perr *processorError
	switch {
	case err == nil:
		w.shardEnded(proc, stopCheckpointer)
	case errors.Is(err, errLeaseLostCause) || w.lost():
		stopCheckpointer()
		w.acks.close()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.workCtx), c.cfg.shutdownTimeout)
		proc.LeaseLost(ctx)
		cancel()
	case errors.As(err, &perr):
		c.met.processorErrors.Inc()
		c.log.Error("processing records", "shard", w.id, "err", err)
		w.shutdown(proc, stopCheckpointer)
		c.coolDown(w.id)
	default: // shutdown
		w.shutdown(proc, stopCheckpointer)
	}
}

// failed gives the lease back after the processor could not start, and keeps this worker
// from taking it again for a while.
func (w *shardWorker) failed() {
	ctx, cancel := w.finalCtx()
	defer cancel()
	if err := w.h.release(ctx); err != nil && !w.lost() {
		w.c.log.Warn("releasing lease", "shard", w.id, "err", err)
	}
	w.c.coolDown(w.id)
}

// shutdown runs the processor's Shutdown, then checkpoints what it acknowledged and
// releases the lease.
func (w *shardWorker) shutdown(proc Processor, stopCheckpointer func()) {
	if err := proc.Shutdown(w.workCtx); err != nil {
		w.c.met.processorErrors.Inc()
		w.c.log.Warn("processor shutdown", "shard", w.id, "err", err)
	}
	stopCheckpointer()
	w.finish()
}

// finish writes the final checkpoint and releases the lease, unless it was lost.
func (w *shardWorker) finish() {
	d := w.acks.durable()
	w.acks.close()
	if w.lost() {
		return
	}
	ctx, cancel := w.finalCtx()
	defer cancel()
	if err := w.h.checkpoint(ctx, d); err != nil && !w.lost() {
		w.c.log.Warn("final checkpoint", "shard", w.id, "err", err)
	}
	if err := w.h.release(ctx); err != nil && !w.lost() {
		w.c.log.Warn("releasing lease", "shard", w.id, "err", err)
	}
}

// shardEnded lets the processor finish the shard, waits for every acknowledgement, writes
// SHARD_END and releases the lease so that the children can start.
func (w *shardWorker) shardEnded(proc Processor, stopCheckpointer func()) {
	c := w.c
	if err := proc.ShardEnded(w.workCtx); err != nil {
		c.met.processorErrors.Inc()
		c.log.Error("processor shard ended", "shard", w.id, "err", err)
		stopCheckpointer()
		w.finish()
		c.coolDown(w.id)
		return
	}
	if err := w.acks.waitAllAcked(w.workCtx); err != nil {
		stopCheckpointer()
		w.finish()
		return
	}
	stopCheckpointer()
	final := w.acks.finalState()
	w.acks.close()
	ctx, cancel := w.finalCtx()
	defer cancel()
	// The KCL records a finished shard's children on its lease (childShardIds) before
	// SHARD_END; a failure here costs only that record.
	if err := w.h.recordChildren(ctx, w.childShards(ctx)); err != nil && !w.lost() {
		c.log.Warn("recording the shard's children on its lease", "shard", w.id, "err", err)
	}
	if err := w.h.checkpoint(ctx, durable{pos: checkpoint.Checkpoint{Sequence: checkpoint.ShardEnd}, state: final}); err != nil {
		if !w.lost() {
			c.log.Warn("checkpointing shard end", "shard", w.id, "err", err)
			_ = w.h.release(ctx)
		}
		return
	}
	c.log.Info("shard ended", "shard", w.id)
	if err := w.h.release(ctx); err != nil && !w.lost() {
		c.log.Warn("releasing lease", "shard", w.id, "err", err)
	}
	c.kickNow()
}

// checkpointLoop writes the capped position whenever it moves, at most once per
// checkpoint interval.
func (w *shardWorker) checkpointLoop(stop <-chan struct{}) {
	cfg := &w.c.cfg
	for {
		select {
		case <-stop:
			return
		case <-w.acks.dirty:
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.workCtx), cfg.failover)
		err := w.h.checkpoint(ctx, w.acks.durable())
		cancel()
		if err != nil && !w.lost() {
			w.c.log.Warn("checkpointing", "shard", w.id, "err", err)
		}
		if cfg.checkpointInterval > 0 {
			select {
			case <-stop:
				return
			case <-cfg.clock.After(cfg.checkpointInterval):
			}
		}
	}
}

// preparer is the [Preparer] a shard's processor gets.
type preparer struct{ w *shardWorker }

func (p preparer) Prepare(ctx context.Context, boundary checkpoint.Checkpoint) error {
	return p.w.h.prepare(ctx, p.w.acks.durable(), boundary)
}

// sleep waits until t on the consumer's clock, or until ctx ends.
func (c *Consumer) sleepUntil(ctx context.Context, t time.Time) error {
	d := t.Sub(c.cfg.clock.Now())
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-c.cfg.clock.After(d):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// poll reads the shard with GetRecords from start — or, when after is set, from after the
// Kinesis record with that sequence number (the last one an earlier reader of this worker
// received) — until it ends (nil), the read context ends (its cause) or the processor fails
// (*processorError).
func (w *shardWorker) poll(proc Processor, start checkpoint.Checkpoint, after string) error {
	c := w.c
	cfg := &c.cfg
	clk := cfg.clock
	ctx := w.readCtx
	var (
		iter    string
		lastSeq = after // sequence number of the last Kinesis record received
		skip    *checkpoint.Checkpoint
		idle    time.Duration
		next    time.Time
		bo      = backoff.Backoff{Min: MinGetRecordsInterval, Max: cfg.failover}
		limit   = min(cfg.maxRecords, firstLimit)
	)
	if start.Validate() == nil && isSequence(start.Sequence) {
		s := start
		skip = &s
	}
	for {
		if err := c.sleepUntil(ctx, next); err != nil {
			return err
		}
		if iter == "" {
			it, err := w.iterator(ctx, start, lastSeq)
			if err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				c.met.readErrors.WithLabelValues("iterator").Inc()
				c.log.Warn("getting shard iterator", "shard", w.id, "err", err)
				next = clk.Now().Add(bo.Next())
				continue
			}
			if it == "" {
				return nil // a closed shard with nothing left
			}
			iter = it
		}
		callAt := clk.Now()
		out, err := c.client.GetRecords(ctx, &kinesis.GetRecordsInput{
			ShardIterator: aws.String(iter),
			Limit:         aws.Int32(limit),
			StreamARN:     c.streamARN(),
		}, recordsDecoder)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			var expired *types.ExpiredIteratorException
			var throttled *types.ProvisionedThroughputExceededException
			switch {
			case errors.As(err, &expired):
				c.met.readErrors.WithLabelValues("expired_iterator").Inc()
				c.log.Info("shard iterator expired; getting a new one", "shard", w.id)
				iter = ""
				next = callAt.Add(MinGetRecordsInterval)
			case errors.As(err, &throttled):
				c.met.readErrors.WithLabelValues("throttled").Inc()
				d := bo.Next()
				c.log.Debug("GetRecords throttled", "shard", w.id, "backoff", d.String())
				next = clk.Now().Add(d)
			default:
				c.met.readErrors.WithLabelValues("other").Inc()
				c.log.Warn("getting records", "shard", w.id, "err", err)
				iter = ""
				next = clk.Now().Add(bo.Next())
			}
			continue
		}
		bo.Reset()
		lag := aws.ToInt64(out.MillisBehindLatest)
		w.lag.Store(lag)
		recs, size := w.userRecords(out.Records, &skip)
		if n := len(out.Records); n > 0 {
			lastSeq = aws.ToString(out.Records[n-1].SequenceNumber)
			limit = readLimit(size, n, cfg.maxRecords)
		}
		if len(recs) > 0 {
			if err := w.deliver(ctx, proc, recs, lag, size); err != nil {
				return err
			}
		}
		if out.NextShardIterator == nil || *out.NextShardIterator == "" {
			for _, ch := range out.ChildShards {
				if id := aws.ToString(ch.ShardId); id != "" {
					w.children = append(w.children, id)
				}
			}
			return nil
		}
		iter = *out.NextShardIterator
		gap := MinGetRecordsInterval
		if g := time.Duration(int64(size) * int64(time.Second) / ReadBytesPerSecond); g > gap {
			gap = g // stay within the shard's 2 MB/s
		}
		if len(out.Records) == 0 && lag == 0 {
			// Caught up: back off from 200ms toward the idle time.
			if idle == 0 {
				idle = MinGetRecordsInterval
			} else {
				idle = min(2*idle, max(cfg.idle, MinGetRecordsInterval))
			}
			gap = max(gap, idle)
		} else {
			idle = 0
		}
		next = callAt.Add(gap)
	}
}

// A GetRecords call asks for the records that the shard serves in readWindow at its read
// throughput (ReadBytesPerSecond), judged by the size of the records of the last response,
// and at most WithMaxRecords. The shard's throughput caps a reader anyway (the calls are
// paced by the bytes they return), so this costs no throughput while the calls stay under
// the shard's 5 per second: a reader that is behind makes about 1/readWindow calls per
// second. What it saves is memory: a response of 10,000 records of 230 bytes is 2.3 MB of
// data (and 4.7 MB of JSON) where half a second of the shard is 1 MiB, and every held shard
// has one response in memory at a time. The first call, before any size is known, asks for
// firstLimit.
const (
	readWindow = 500 * time.Millisecond
	firstLimit = 1000
)

// readLimit is the Limit of the next GetRecords call after a response of n Kinesis records
// with size bytes of data.
func readLimit(size, n int, maxRecords int32) int32 {
	avg := max(size/n, 1)
	want := int64(ReadBytesPerSecond) * int64(readWindow) / int64(time.Second) / int64(avg)
	return int32(min(max(want, 1), int64(maxRecords)))
}

// isSequence reports whether s is a sequence number rather than a sentinel.
func isSequence(s string) bool {
	switch s {
	case "", checkpoint.TrimHorizon, checkpoint.Latest, checkpoint.AtTimestamp, checkpoint.ShardEnd:
		return false
	}
	return true
}

// iterator gets a shard iterator: after the last record received if there is one, else at
// the start position. A checkpoint is resumed AT its sequence number, and the user records at
// or before it are skipped by userRecords — as the KCL does, so that a checkpoint inside a
// KPL aggregate replays only the rest of the aggregate.
func (w *shardWorker) iterator(ctx context.Context, start checkpoint.Checkpoint, lastSeq string) (string, error) {
	c := w.c
	in := &kinesis.GetShardIteratorInput{ShardId: aws.String(w.id), StreamARN: c.streamARN(), StreamName: c.streamName()}
	switch {
	case lastSeq != "":
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(lastSeq)
	case start.Sequence == checkpoint.Latest:
		in.ShardIteratorType = types.ShardIteratorTypeLatest
	case start.Sequence == checkpoint.AtTimestamp && c.cfg.initial.kind == checkpoint.AtTimestamp:
		in.ShardIteratorType = types.ShardIteratorTypeAtTimestamp
		in.Timestamp = aws.Time(c.cfg.initial.at)
	case isSequence(start.Sequence):
		in.ShardIteratorType = types.ShardIteratorTypeAtSequenceNumber
		in.StartingSequenceNumber = aws.String(start.Sequence)
	default: // TRIM_HORIZON, or AT_TIMESTAMP without a configured time
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	}
	out, err := c.client.GetShardIterator(ctx, in)
	if err != nil {
		return "", fmt.Errorf("getting %s iterator of shard %s: %w", in.ShardIteratorType, w.id, err)
	}
	return aws.ToString(out.ShardIterator), nil
}

// userRecords deaggregates Kinesis records into user records. Records at or before *skip
// (the checkpoint reading resumed from) are dropped; *skip is cleared once passed. KPL
// aggregates whose user records are not all inside the shard's hash-key range are dropped
// whole, as the KCL does after a reshard. It also returns the records' total data size.
//
// All aggregates are decoded first into the worker's reusable scratch slice, so that the
// result is allocated once, at its exact size.
func (w *shardWorker) userRecords(in []types.Record, skip **checkpoint.Checkpoint) ([]Record, int) {
	type span struct {
		floor      int64 // user records with a sub-sequence number up to floor are skipped
		start, end int   // decoded user records in w.scratch; start < 0 for a plain record
		drop       bool
		outside    bool // an aggregate outside the shard's range, delivered marked
	}
	spans := make([]span, len(in))
	scratch := w.scratch[:0]
	size, total := 0, 0
	for i := range in {
		r := &in[i]
		size += len(r.Data)
		sp := &spans[i]
		sp.floor = -1
		if s := *skip; s != nil {
			switch (checkpoint.Checkpoint{Sequence: aws.ToString(r.SequenceNumber)}).Compare(checkpoint.Checkpoint{Sequence: s.Sequence}) {
			case -1:
				sp.drop = true
				continue
			case 0:
				sp.floor = int64(s.SubSequence)
			default:
				*skip = nil
			}
		}
		start := len(scratch)
		var ok bool
		scratch, ok = kpl.AppendDecode(scratch, r.Data)
		if !ok {
			sp.start = -1
			if sp.floor >= 0 {
				sp.drop = true // the plain record the checkpoint names
			} else {
				total++
			}
			continue
		}
		sp.start, sp.end = start, len(scratch)
		users := scratch[start:]
		if w.hasRange && !w.fullRange && !kpl.AllInRange(users, w.rng) {
			if w.c.cfg.outsideShard {
				sp.outside = true
			} else {
				w.c.met.dropped.Add(float64(len(users)))
				// The KPL re-sends such an aggregate to the right shard, and the KCL drops it
				// the same way; another aggregator may not, so it is said at warning level.
				w.c.log.Warn("dropping a KPL aggregate whose user records lie outside the shard's hash-key range (the KPL re-sends them to the right shard; other aggregators may not)",
					"shard", w.id, "sequence", aws.ToString(r.SequenceNumber), "records", len(users))
				sp.drop = true
				continue
			}
		}
		total += len(users) - int(min(max(sp.floor+1, 0), int64(len(users))))
	}
	out := make([]Record, 0, total)
	for i := range in {
		r, sp := &in[i], &spans[i]
		if sp.drop {
			continue
		}
		seq := aws.ToString(r.SequenceNumber)
		arrival := aws.ToTime(r.ApproximateArrivalTimestamp)
		if sp.start < 0 {
			out = append(out, Record{
				ShardID:        w.id,
				SequenceNumber: seq,
				PartitionKey:   aws.ToString(r.PartitionKey),
				ArrivalTime:    arrival,
				Data:           r.Data,
			})
			continue
		}
		for j, u := range scratch[sp.start:sp.end] {
			if int64(j) <= sp.floor {
				continue
			}
			out = append(out, Record{
				ShardID:           w.id,
				SequenceNumber:    seq,
				SubSequenceNumber: uint64(j),
				Aggregated:        true,
				PartitionKey:      u.PartitionKey,
				ExplicitHashKey:   u.ExplicitHashKey,
				ArrivalTime:       arrival,
				Data:              u.Data,
				OutsideShard:      sp.outside,
				ID:                u.ID,
			})
		}
	}
	clear(scratch) // drop references to this response's data
	w.scratch = scratch[:0]
	return out, size
}

// childShards returns the shard's children: those the last GetRecords response (or fan-out
// event) named, or — when the shard ended without one (an iterator that was already at its
// end, or an end event without them) — the shards ListShards gives this one as parent.
func (w *shardWorker) childShards(ctx context.Context) []string {
	if len(w.children) > 0 {
		return w.children
	}
	shards, err := w.c.listShards(ctx)
	if err != nil {
		w.c.log.Warn("listing shards for the children of a finished shard", "shard", w.id, "err", err)
		return nil
	}
	var out []string
	for i := range shards {
		if slices.Contains(shardParents(&shards[i]), w.id) {
			out = append(out, aws.ToString(shards[i].ShardId))
		}
	}
	return out
}

// parentStates reads the states the shard's parents stored with their last checkpoint, for
// a child that starts from scratch.
func (w *shardWorker) parentStates(parents []string) [][]byte {
	var out [][]byte
	for _, p := range parents {
		ctx, cancel := context.WithTimeout(w.workCtx, w.c.cfg.failover)
		l, err := w.c.store.GetLease(ctx, p)
		cancel()
		switch {
		case err != nil:
			w.c.log.Warn("reading a parent's lease for its processor state; the child starts without it", "shard", w.id, "parent", p, "err", err)
		case l.State != nil:
			out = append(out, l.State)
		}
	}
	return out
}

// deliver hands one batch to the processor once there is room for it in flight.
func (w *shardWorker) deliver(ctx context.Context, proc Processor, recs []Record, lag int64, size int) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := w.acks.acquire(ctx); err != nil {
		return err
	}
	bytes := batchBytes(recs, size)
	if err := w.c.budget.acquire(ctx, bytes); err != nil {
		<-w.acks.slots
		return err
	}
	f := w.acks.add(recs, w.c.cfg.clock.Now(), bytes)
	b := NewBatchWithMarks(w.id, recs, func(n int) { w.acks.ack(f, n) }, func(n int, state []byte) { w.acks.mark(f, n, true, state) })
	b.MillisBehindLatest = lag
	w.c.met.records.Add(float64(len(recs)))
	w.c.met.bytes.Add(float64(size))
	if err := proc.ProcessRecords(ctx, b); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return &processorError{op: "ProcessRecords", err: err}
	}
	return nil
}

package s3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/sinks/dedup"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
)

// Errors a processor returns.
var (
	// ErrClosed is returned by ProcessRecords after the processor was shut down.
	ErrClosed = errors.New("s3 sink: processor closed")
	// ErrNotInitialized is returned when ProcessRecords comes before Initialize.
	ErrNotInitialized = errors.New("s3 sink: processor not initialized")
)

// Error output types (the value of !{firehose:error-output-type}).
const (
	ErrorPartitioning = "partitioning-failed"
	ErrorFormat       = "format-conversion-failed"
	// ErrorOutsideShard is the output of the user records of a KPL aggregate that lies
	// outside the hash-key range of the shard it was read from (consumer.Record.OutsideShard):
	// the KPL sends such an aggregate again to the right shard, another aggregator may not.
	ErrorOutsideShard = "outside-shard-range"
)

// entry is one buffered record.
type entry struct {
	batch *consumer.Batch
	idx   int
	part  *partition // archive partition; nil when the record goes to the error output
	at    time.Time  // the record's time (arrival or field)
	// errType and reason are set when partitioning failed.
	errType, reason string
}

func (e *entry) rec() *consumer.Record { return &e.batch.Records[e.idx] }

type partition struct{ prefix string }

// flush is a sealed run of consecutive records, written as one set of objects.
type flush struct {
	entries  []entry
	boundary checkpoint.Checkpoint // position of the last record
}

// processor archives one shard. The worker calls its methods from one goroutine; a second
// goroutine (run) cuts flushes when the interval passes and writes them in order.
type processor struct {
	s     *Sink
	shard string
	log   *slog.Logger

	prep consumer.Preparer
	// life is the processor's lifecycle context, created by Initialize and cancelled by
	// LeaseLost, a Shutdown that times out, or a fatal error. Uploads and Prepare use it.
	life   context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when run returns

	// Parsing scratch, used by the worker's goroutine only.
	doc      encode.Doc
	keyBuf   []byte
	keyAt    time.Time // the step of the template's resolution keyBuf was rendered for
	keyValid bool      // keyBuf holds the prefix of keyAt (templates without fields)
	vals     prefix.Values

	mu       sync.Mutex
	entries  []entry // the open buffer
	lastLen  int     // records in the last sealed flush, to size the next buffer
	parts    map[string]*partition
	size     int
	firstAt  time.Time              // clock time the open buffer got its first record
	replayTo *checkpoint.Checkpoint // pending boundary to re-cut, or nil
	dd       *dedup.State           // deduplication state after the last flush built; nil when off
	queue    []*flush               // sealed, not started
	inFlight *flush                 // being written
	closing  bool                   // Shutdown or ShardEnded began: drain, then stop
	err      error                  // fatal error; the processor stopped
	kick     chan struct{}          // wakes run (cap 1)
	popped   chan struct{}          // closed and replaced when run takes a flush
}

func newProcessor(s *Sink, shard string) *processor {
	return &processor{
		s:      s,
		shard:  shard,
		log:    s.log.With("shard", shard),
		parts:  map[string]*partition{},
		kick:   make(chan struct{}, 1),
		popped: make(chan struct{}),
		vals:   prefix.Values{Fields: make([]string, len(s.pfx.Fields()))},
	}
}

// Initialize implements consumer.Processor. A pending boundary after the start position
// makes the first flush end exactly there.
func (p *processor) Initialize(ctx context.Context, in consumer.InitInput) error {
	if in.Preparer == nil {
		return errors.New("s3 sink: initializing without a Preparer")
	}
	if p.life != nil {
		return errors.New("s3 sink: processor initialized twice")
	}
	p.prep = in.Preparer
	if in.Pending != nil && in.Pending.Validate() == nil && in.Pending.Compare(in.Start) > 0 &&
		in.Pending.Sequence != checkpoint.ShardEnd {
		b := *in.Pending
		p.replayTo = &b
		p.log.Info("re-cutting the pending batch of the previous holder", "start", in.Start.String(), "pending", b.String())
	}
	if p.s.cfg.dedup {
		p.dd = p.s.initialState(p.log, in.State, in.ParentStates)
	}
	// The lifecycle context must outlive Initialize's ctx but keep its values.
	p.life, p.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	p.done = make(chan struct{})
	p.s.register(p)
	go p.run()
	return nil
}

// ProcessRecords implements consumer.Processor: it buffers the batch, cutting flushes as
// triggers fire, and returns; records are acknowledged once written. It blocks while two
// flushes wait for S3 (backpressure), until ctx ends.
func (p *processor) ProcessRecords(ctx context.Context, b *consumer.Batch) error {
	if p.life == nil {
		return ErrNotInitialized
	}
	for i := range b.Records {
		e := p.classify(b, i)
		if err := p.add(ctx, e); err != nil {
			return err
		}
	}
	if p.s.cfg.bufferInterval == 0 {
		p.mu.Lock()
		if p.replayTo == nil {
			p.sealLocked()
		}
		p.mu.Unlock()
	}
	return p.wait(ctx)
}

// classify computes a record's time and archive prefix (a pure function of the record and
// the configuration).
func (p *processor) classify(b *consumer.Batch, i int) entry {
	s := p.s
	r := &b.Records[i]
	e := entry{batch: b, idx: i, at: r.ArrivalTime.UTC()}
	if r.OutsideShard {
		e.errType, e.reason = ErrorOutsideShard, "a KPL aggregate whose user records lie outside the hash-key range of shard "+r.ShardID+
			" (the KPL sends such an aggregate again to the right shard, where it is archived; another aggregator may not)"
		return e
	}
	fields := s.pfx.Fields()
	if s.cfg.timeField != "" || len(fields) > 0 {
		if err := p.doc.Parse(encode.Trim(r.Data)); err != nil || p.doc.Kind != encode.Object {
			e.errType, e.reason = ErrorPartitioning, "record is not a JSON object"
			return e
		}
	}
	if s.cfg.timeField != "" {
		t, _, ok := encode.TimeOf(&p.doc, []string{s.cfg.timeField}, s.timeFm)
		if !ok {
			e.errType, e.reason = ErrorPartitioning, fmt.Sprintf("time member %q is missing or not a time in format %q", s.cfg.timeField, s.cfg.timeFormat)
			return e
		}
		e.at = t
	}
	for j, name := range fields {
		f, ok := p.doc.Lookup(name)
		if !ok || !f.Kind.Scalar() {
			why := "missing"
			if ok {
				why = "not a string, number or boolean but " + f.Kind.String()
			}
			e.errType, e.reason = ErrorPartitioning, fmt.Sprintf("partition member %q is %s", name, why)
			return e
		}
		v, _ := f.Text()
		if v == "" {
			e.errType, e.reason = ErrorPartitioning, fmt.Sprintf("partition member %q is empty", name)
			return e
		}
		p.vals.Fields[j] = v
	}
	p.vals.Time = e.at
	// Records come mostly in time order: without fields in the template, a record in the
	// same step of the template's resolution as the last one has the prefix in keyBuf.
	if step := e.at.Truncate(s.pfxRes); len(fields) > 0 || !p.keyValid || !step.Equal(p.keyAt) {
		p.keyBuf = s.pfx.Append(p.keyBuf[:0], &p.vals)
		p.keyAt, p.keyValid = step, len(fields) == 0
	}
	if len(p.keyBuf)+s.maxNameLen(p.shard) > MaxKeyLength {
		e.errType, e.reason = ErrorPartitioning, fmt.Sprintf("key prefix of %d bytes makes keys longer than %d bytes", len(p.keyBuf), MaxKeyLength)
		return e
	}
	p.mu.Lock()
	part := p.parts[string(p.keyBuf)]
	p.mu.Unlock()
	if part == nil {
		part = &partition{prefix: string(p.keyBuf)}
	}
	e.part = part
	return e
}

// maxNameLen bounds the length of an object name after its prefix.
func (s *Sink) maxNameLen(shard string) int {
	// <stream>-<shard>-<seq up to 128 digits>-<subseq up to 20 digits><ext>
	return len(s.stream) + len(shard) + 128 + 20 + 3 + 16
}

// recordSize is what a record counts toward the buffer size.
func recordSize(r *consumer.Record) int {
	n := len(r.Data)
	if n == 0 || r.Data[n-1] != '\n' {
		n++
	}
	return n
}

// add appends one record to the open buffer, cutting flushes before it (partition limit,
// a pending boundary passed) or after it (size, pending boundary reached).
func (p *processor) add(ctx context.Context, e entry) error {
	p.mu.Lock()
	if err := p.usableLocked(); err != nil {
		p.mu.Unlock()
		return err
	}
	pos := e.rec().Position()
	if p.replayTo != nil && pos.Compare(*p.replayTo) > 0 {
		p.log.Warn("the pending boundary's record never came; cutting before the next one", "pending", p.replayTo.String(), "next", pos.String())
		p.replayTo = nil
		p.sealLocked()
	}
	if e.part != nil {
		if existing := p.parts[e.part.prefix]; existing != nil {
			e.part = existing
		} else {
			if p.replayTo == nil && len(p.parts) >= p.s.cfg.maxPartitions {
				p.sealLocked()
			}
			p.parts[e.part.prefix] = e.part
		}
	}
	if len(p.entries) == 0 {
		p.firstAt = p.s.cfg.clock.Now()
		p.kickLocked() // arm the interval timer
		if cap(p.entries) == 0 {
			p.entries = make([]entry, 0, p.lastLen) // sized like the last flush
		}
	}
	p.entries = append(p.entries, e)
	p.size += recordSize(e.rec())
	switch {
	case p.replayTo != nil:
		if pos.Compare(*p.replayTo) == 0 {
			p.replayTo = nil
			p.sealLocked()
		}
	case p.size >= p.s.cfg.bufferSize:
		p.sealLocked()
	}
	full := len(p.queue) > 1
	p.mu.Unlock()
	if full {
		return p.wait(ctx)
	}
	return nil
}

// wait blocks while more than one sealed flush waits to be written.
func (p *processor) wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		if err := p.usableLocked(); err != nil {
			p.mu.Unlock()
			return err
		}
		if len(p.queue) <= 1 {
			p.mu.Unlock()
			return nil
		}
		popped := p.popped
		p.mu.Unlock()
		select {
		case <-popped:
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *processor) usableLocked() error {
	switch {
	case p.err != nil:
		return p.err
	case p.closing:
		return ErrClosed
	}
	return nil
}

func (p *processor) kickLocked() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// sealLocked moves the open buffer, if any, to the write queue.
func (p *processor) sealLocked() {
	if len(p.entries) == 0 {
		return
	}
	f := &flush{entries: p.entries, boundary: p.entries[len(p.entries)-1].rec().Position()}
	p.queue = append(p.queue, f)
	p.lastLen = len(p.entries)
	p.entries = nil
	p.parts = map[string]*partition{}
	p.size = 0
	p.kickLocked()
}

// dropLocked forgets everything not yet written.
func (p *processor) dropLocked() {
	p.entries = nil
	p.parts = map[string]*partition{}
	p.size = 0
	p.queue = nil
	p.replayTo = nil
}

// run writes sealed flushes in order and cuts the open buffer when its interval passes.
func (p *processor) run() {
	defer close(p.done)
	defer p.s.unregister(p)
	clk := p.s.cfg.clock
	for {
		p.mu.Lock()
		for len(p.queue) == 0 {
			if p.closing || p.err != nil {
				p.mu.Unlock()
				return
			}
			var timer <-chan time.Time
			if len(p.entries) > 0 && p.replayTo == nil && p.s.cfg.bufferInterval > 0 {
				d := p.firstAt.Add(p.s.cfg.bufferInterval).Sub(clk.Now())
				if d <= 0 {
					p.sealLocked()
					continue
				}
				timer = clk.After(d)
			}
			p.mu.Unlock()
			select {
			case <-p.kick:
			case <-timer:
			case <-p.life.Done():
				p.mu.Lock()
				p.failLocked(context.Cause(p.life))
				p.mu.Unlock()
				return
			}
			p.mu.Lock()
		}
		f := p.queue[0]
		p.queue = p.queue[1:]
		p.inFlight = f
		close(p.popped)
		p.popped = make(chan struct{})
		p.mu.Unlock()

		err := p.write(f)

		p.mu.Lock()
		p.inFlight = nil
		if err != nil {
			p.failLocked(err)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// failLocked stops the processor: nothing buffered is written or acknowledged.
func (p *processor) failLocked(err error) {
	if p.err == nil {
		p.err = err
	}
	p.dropLocked()
}

// Initialize must have run for the methods below.

// LeaseLost implements consumer.Processor: it drops the buffer and stops writing at once.
func (p *processor) LeaseLost(ctx context.Context) {
	if p.life == nil {
		return
	}
	p.mu.Lock()
	p.failLocked(fmt.Errorf("s3 sink: shard %s: %w", p.shard, checkpoint.ErrLeaseLost))
	p.mu.Unlock()
	p.cancel(checkpoint.ErrLeaseLost)
	p.s.met.errors.WithLabelValues(errTypeLeaseLost).Inc()
	<-p.done
}

// Shutdown implements consumer.Processor: it writes and acknowledges everything buffered,
// unless the pending boundary of a previous holder was not reached yet (then the buffer is
// dropped: the next holder re-cuts that batch). It gives up when ctx ends.
func (p *processor) Shutdown(ctx context.Context) error {
	return p.drain(ctx, false)
}

// ShardEnded implements consumer.Processor: it writes and acknowledges everything buffered.
func (p *processor) ShardEnded(ctx context.Context) error {
	return p.drain(ctx, true)
}

func (p *processor) drain(ctx context.Context, ended bool) error {
	if p.life == nil {
		return ErrNotInitialized
	}
	p.mu.Lock()
	if p.err == nil && !p.closing {
		if p.replayTo != nil && !ended {
			p.log.Info("shutting down before the pending boundary: dropping the buffer for the next holder", "pending", p.replayTo.String())
			p.entries, p.parts, p.size = nil, map[string]*partition{}, 0
		} else {
			if p.replayTo != nil {
				p.log.Warn("shard ended before the pending boundary's record", "pending", p.replayTo.String())
			}
			p.replayTo = nil
			p.sealLocked()
		}
	}
	p.closing = true
	p.kickLocked()
	p.mu.Unlock()
	select {
	case <-p.done:
		p.cancel(ErrClosed)
	case <-ctx.Done():
		p.cancel(fmt.Errorf("s3 sink: shutdown: %w", context.Cause(ctx)))
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	return nil
}

// oldestArrival returns the arrival time of the oldest record not yet acknowledged.
func (p *processor) oldestArrival() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var e *entry
	switch {
	case p.inFlight != nil:
		e = &p.inFlight.entries[0]
	case len(p.queue) > 0:
		e = &p.queue[0].entries[0]
	case len(p.entries) > 0:
		e = &p.entries[0]
	default:
		return time.Time{}
	}
	return e.rec().ArrivalTime
}

func (p *processor) unacked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.entries)
	for _, f := range p.queue {
		n += len(f.entries)
	}
	if p.inFlight != nil {
		n += len(p.inFlight.entries)
	}
	return n
}

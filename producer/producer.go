package producer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/internal/kpl"
)

// Client is the part of the Kinesis API the producer calls; *kinesis.Client implements it.
type Client interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
}

// Record is one user record to put.
type Record struct {
	// PartitionKey decides the record's shard (through its MD5 hash); 1 to 256 characters.
	PartitionKey string
	// ExplicitHashKey, when set, decides the shard instead of the partition key's hash: a
	// decimal integer in 0 .. 2^128-1.
	ExplicitHashKey string
	// Data is the payload. Put copies it, so the caller may reuse the slice at once.
	Data []byte
	// Ref is the caller's own reference to the record. The producer does not send it and
	// does not keep it in the spool; it gives it back in the record's [Result], so that a
	// caller can tell which of its records Kinesis confirmed (the agent advances a file's
	// stored position with it).
	Ref Ref
	// Origin, when set, is the record's identity instead of the producer's (its id and the
	// sequence number Put gives the record). It applies without a spool only: a spooled
	// record has the spool's identity.
	Origin *Origin
}

// Ref names where a record came from: a source (a file, say) and a position in it.
type Ref struct {
	Source any
	Offset int64
}

// Result is the outcome of one record, given to the [WithResultHandler] function and
// returned by [Producer.PutSync].
type Result struct {
	// Record is the record as put (its Data is the producer's copy).
	Record Record
	// Err is nil when the record was delivered. Otherwise it is an [*EntryError], the error
	// of the PutRecords call, or wraps [ErrRecordExpired] or [ErrClosed].
	Err error
	// ShardID and SequenceNumber locate the Kinesis record that carried the user record.
	ShardID        string
	SequenceNumber string
	// SubSequenceNumber is the user record's index inside its KPL aggregate (0 when it was
	// sent unaggregated); Aggregated tells which.
	SubSequenceNumber uint64
	Aggregated        bool
	// Attempts is how many times the record was sent.
	Attempts int
}

// Producer puts records into one Kinesis stream asynchronously. Create it with [New] and
// stop it with [Producer.Close]. Its methods are safe for concurrent use.
type Producer struct {
	client     Client
	stream     string
	streamName *string
	streamARN  *string
	cfg        config
	epoch      time.Time

	buf      *buffer // the hand-off from Put to the pipeline
	spool    *spool  // nil without WithSpool; also buf.spool
	flushing atomic.Int32

	closing   chan struct{} // closed by the first Close
	closeOnce sync.Once
	abort     chan struct{} // closed when Close gives up waiting for the drain
	abortOnce sync.Once
	stopped   chan struct{} // closed when every goroutine has stopped

	// lifeCtx is the producer's lifecycle context: every AWS call runs under it and it is
	// cancelled when Close gives up or finishes.
	lifeCtx    context.Context
	lifeCancel context.CancelFunc

	reqCh     chan *request
	doneCh    chan *request
	refreshCh chan refreshResult
	workers   sync.WaitGroup
	summer    *kpl.Summer
	bodies    bufferPool

	id string // producer id: the spool's, or random

	abandoned uint64 // records failed by an aborted Close; written by the pipeline before stopped closes
	kept      uint64 // records an aborted Close left in the spool; same

	stats counters
}

// entry is one user record inside the producer.
type entry struct {
	rec      Record
	hash     kpl.HashKey
	enq      int64  // nanoseconds since the producer's epoch when the pipeline took it
	seq      uint64 // the record's sequence number: in the spool when spooled, else in Put order
	size     int32  // len(PartitionKey)+len(Data), the buffer accounting unit
	attempts int32
	hashed   bool        // hash is set (explicit hash keys are parsed by Put)
	spooled  bool        // the record is in the spool
	unsure   bool        // an attempt's outcome is unknown: the record may be in the stream
	sync     chan Result // PutSync's waiter, or nil
}

const (
	arenaChunk = 64 << 10
	arenaMax   = 4 << 10 // records above this get their own allocation
)

// New returns a producer for the stream (a name, or an ARN starting with "arn:") that sends
// through client. It starts the producer's goroutines; call [Producer.Close] to stop them.
// New does no I/O: the shard map is loaded in the background.
func New(client Client, stream string, opts ...Option) (*Producer, error) {
	if client == nil {
		return nil, errors.New("producer: nil client")
	}
	if stream == "" {
		return nil, errors.New("producer: empty stream name")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Producer{
		client:    client,
		stream:    stream,
		cfg:       cfg,
		epoch:     time.Now(),
		buf:       newBuffer(&cfg),
		closing:   make(chan struct{}),
		abort:     make(chan struct{}),
		stopped:   make(chan struct{}),
		reqCh:     make(chan *request, cfg.maxInFlight),
		doneCh:    make(chan *request, cfg.maxInFlight),
		refreshCh: make(chan refreshResult, 1),
	}
	if strings.HasPrefix(stream, "arn:") {
		p.streamARN = &p.stream
	} else {
		p.streamName = &p.stream
	}
	if cfg.spoolDir != "" {
		sp, err := openSpool(cfg.spoolDir, cfg.spool, p.buf)
		if err != nil {
			return nil, err
		}
		p.spool = sp
		p.buf.spool = sp
		p.id = sp.recovery.ProducerID
	} else {
		p.id = newProducerID()
	}
	p.summer = kpl.NewSummer()
	p.bodies.max = cfg.maxInFlight
	p.lifeCtx, p.lifeCancel = context.WithCancel(context.Background())
	if p.spool != nil {
		p.spool.start()
	}
	p.workers.Add(cfg.maxInFlight)
	for range cfg.maxInFlight {
		go p.sender()
	}
	pl := newPipeline(p)
	go pl.run()
	return p, nil
}

// Put buffers rec for delivery and returns once it is buffered. While the buffer is full it
// blocks until there is room, ctx ends (returning ctx's error) or the producer closes
// ([ErrClosed]). Invalid records fail at once with [ErrInvalidPartitionKey],
// [ErrInvalidExplicitHashKey] or [ErrRecordTooLarge]; nothing else is affected. The
// record's outcome goes to the [WithResultHandler] function.
func (p *Producer) Put(ctx context.Context, rec Record) error {
	return p.put(ctx, rec, true, nil)
}

// TryPut is Put without waiting: it returns [ErrBufferFull] when the buffer has no room.
func (p *Producer) TryPut(rec Record) error {
	return p.put(context.Background(), rec, false, nil)
}

// PutSync puts rec and waits for its outcome, for tests and scripts. The returned error is
// the Put error, ctx's error if ctx ends first (the record stays in flight), or Result.Err.
// The [WithResultHandler] function sees the record too.
func (p *Producer) PutSync(ctx context.Context, rec Record) (Result, error) {
	ch := make(chan Result, 1)
	if err := p.put(ctx, rec, true, ch); err != nil {
		return Result{Record: rec, Err: err}, err
	}
	select {
	case r := <-ch:
		return r, r.Err
	case <-ctx.Done():
		return Result{Record: rec, Err: ctx.Err()}, ctx.Err()
	}
}

func (p *Producer) validate(rec *Record) (kpl.HashKey, int, error) {
	pk := rec.PartitionKey
	if pk == "" {
		return kpl.HashKey{}, 0, fmt.Errorf("%w: empty", ErrInvalidPartitionKey)
	}
	if len(pk) > MaxPartitionKeyLength {
		if n := utf8.RuneCountInString(pk); n > MaxPartitionKeyLength {
			return kpl.HashKey{}, 0, fmt.Errorf("%w: %d characters, more than %d", ErrInvalidPartitionKey, n, MaxPartitionKeyLength)
		}
	}
	if !utf8.ValidString(pk) {
		// Kinesis hashes the key as Unicode text: invalid UTF-8 would be altered on the way
		// and land elsewhere than predicted.
		return kpl.HashKey{}, 0, fmt.Errorf("%w: not valid UTF-8", ErrInvalidPartitionKey)
	}
	size := len(pk) + len(rec.Data)
	if size > p.cfg.maxRecordSize {
		return kpl.HashKey{}, 0, fmt.Errorf("%w: %d bytes (partition key and data), more than %d", ErrRecordTooLarge, size, p.cfg.maxRecordSize)
	}
	if rec.ExplicitHashKey != "" {
		h, err := kpl.ParseHashKey(rec.ExplicitHashKey)
		if err != nil {
			return kpl.HashKey{}, 0, fmt.Errorf("%w: %w", ErrInvalidExplicitHashKey, err)
		}
		return h, size, nil
	}
	// The partition key's hash is computed by the pipeline, which caches it.
	return kpl.HashKey{}, size, nil
}

func (p *Producer) put(ctx context.Context, rec Record, block bool, sync chan Result) error {
	hash, size, err := p.validate(&rec)
	if err != nil {
		return err
	}
	e := entry{rec: rec, hash: hash, hashed: rec.ExplicitHashKey != "", size: int32(size), sync: sync}
	return p.buf.put(ctx, e, block, p.closing)
}

// ID returns the producer id, the origin of the identity of its records: kept in the spool
// directory with a spool (so a restarted application keeps it), random otherwise.
func (p *Producer) ID() string { return p.id }

// SpoolRecovery describes what the producer found in its spool directory when New opened it;
// ok is false without a spool.
func (p *Producer) SpoolRecovery() (r SpoolRecovery, ok bool) {
	if p.spool == nil {
		return SpoolRecovery{}, false
	}
	r = p.spool.recovery
	r.Damaged = append([]SpoolDamage(nil), r.Damaged...)
	return r, true
}

// Flush sends everything buffered without waiting for the linger time and returns when
// every record accepted so far — and any accepted while it waits — has its outcome
// reported, or with ctx's error when ctx ends first.
func (p *Producer) Flush(ctx context.Context) error {
	p.flushing.Add(1)
	defer p.flushing.Add(-1)
	p.buf.forceSignal()
	return p.buf.waitEmpty(ctx, p.stopped)
}

// Close stops accepting records, delivers everything buffered, stops the producer's
// goroutines and returns. If ctx ends first, Close gives up: it cancels requests in flight,
// reports every record not yet delivered as failed with [ErrClosed], waits for the
// goroutines and returns an error wrapping ctx's error. Close returns a [*DeliveryError]
// (joined with ctx's error, if any) when any record failed during the producer's life.
// Close is idempotent; later calls wait for the same shutdown.
func (p *Producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.buf.close()
		close(p.closing)
	})
	var ctxErr error
	select {
	case <-p.stopped:
	case <-ctx.Done():
		ctxErr = fmt.Errorf("closing producer: %w", ctx.Err())
		p.abortOnce.Do(func() { close(p.abort) })
		<-p.stopped
	}
	p.buf.mu.Lock()
	failed, last := p.buf.failed, p.buf.lastErr
	p.buf.mu.Unlock()
	var errs []error
	if ctxErr != nil && p.abandoned > 0 {
		errs = append(errs, fmt.Errorf("%w: gave up on %d records", ctxErr, p.abandoned))
	}
	if ctxErr != nil && p.kept > 0 {
		errs = append(errs, fmt.Errorf("%w: %d records kept in the spool %s for the next producer on it", ctxErr, p.kept, p.cfg.spoolDir))
	}
	if p.spool != nil {
		if err := p.spool.closeErr(); err != nil {
			errs = append(errs, err)
		}
	}
	if failed > 0 {
		errs = append(errs, &DeliveryError{Failed: failed, Err: last})
	}
	return errors.Join(errs...)
}

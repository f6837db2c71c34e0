package esm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/backoff"
)

// Limits and defaults of a Kinesis event source mapping (CreateEventSourceMapping).
const (
	MaxBatchSize        = 10000
	MaxBatchingWindow   = 300 * time.Second
	MaxRetryAttempts    = 10000
	MaxRecordAge        = 604800 * time.Second
	DefaultBatchSize    = 100
	DefaultPayloadLimit = 6 * 1024 * 1024 // the invocation payload limit, 6 MB
)

// KinesisAPI is the part of the Kinesis client the driver uses. *kinesis.Client implements it.
type KinesisAPI interface {
	ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(context.Context, *kinesis.GetShardIteratorInput, ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(context.Context, *kinesis.GetRecordsInput, ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// S3API is the part of the S3 client an on-failure destination uses. *s3.Client implements it.
type S3API interface {
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// S3Destination is an Amazon S3 on-failure destination: each discarded batch becomes one
// object holding a [FailureRecord], under the key [FailureKey] makes.
type S3Destination struct {
	Client S3API
	Bucket string
	Prefix string // before the documented key; "" as in AWS
}

// Shape says how the records of an invocation were chosen.
type Shape string

const (
	ShapeNew    Shape = "new"    // a batch's first invocation
	ShapeSame   Shape = "same"   // a retry with the failed invocation's records from the restart point
	ShapeGrown  Shape = "grown"  // a retry from the restart point, filled with records read meanwhile
	ShapeHalf   Shape = "half"   // one half of a bisected batch, or a retry of one
	ShapeResend Shape = "resend" // the same records after the invocation itself failed
)

// Outcome is how the driver read an invocation's result.
type Outcome string

const (
	OutcomeSuccess        Outcome = "success"
	OutcomePartialFailure Outcome = "partial-failure" // batchItemFailures: retry from the lowest
	OutcomeBatchFailure   Outcome = "batch-failure"   // batchItemFailures that fail the whole batch
	OutcomeFunctionError  Outcome = "function-error"  // an error body, a timeout, an exited runtime
	OutcomeInvokeError    Outcome = "invoke-error"    // no outcome: resent, no attempt counted
)

// Config configures a [Driver]. A zero field means the AWS default its comment states.
type Config struct {
	Kinesis KinesisAPI // required
	Stream  string     // the stream's name; required
	// Invoker returns the invoker of one shard (one RIE per shard: one invocation at a time,
	// as with ParallelizationFactor 1). It is called once per shard, in the goroutine that
	// called Run or RunUntilCaughtUp, when the shard's processing starts. Required.
	Invoker func(shardID string) Invoker

	Region  string // of the ARNs in events and records; default us-east-1
	Account string // likewise; default 000000000000
	// FunctionName is the function in an on-failure record's functionArn; default "function".
	FunctionName string
	// InvokeIdentityArn is each event record's invokeIdentityArn; default
	// arn:aws:iam::<Account>:role/lambda-role, as in the documented example.
	InvokeIdentityArn string
	UUID              string // the mapping's identifier, in on-failure keys; default random

	// BatchSize is the most records in one invocation; default 100, at most 10,000.
	BatchSize int
	// MaximumBatchingWindow is how long to gather records before invoking; default 0 (invoke
	// as soon as records are read), at most 300 s. It starts when the previous invocation
	// completes.
	MaximumBatchingWindow time.Duration
	// PayloadLimit is the most bytes of event JSON in one invocation; default 6 MB
	// (6×1024×1024). A batch stops before the record that would exceed it.
	PayloadLimit int
	// MaximumRetryAttempts is how often a failed batch is retried before it is discarded:
	// nil means -1, infinite (the AWS default); else -1..10,000 (aws.Int(0): no retries).
	MaximumRetryAttempts *int
	// MaximumRecordAge discards records older than it (by arrival time); 0 or -1s means
	// infinite (the AWS default). AWS accepts 60 s to 604,800 s; shorter is allowed here.
	MaximumRecordAge time.Duration
	// BisectBatchOnFunctionError splits a batch whose invocation failed in two; default false.
	BisectBatchOnFunctionError bool
	// ReportBatchItemFailures reads batchItemFailures from responses; default false (kinlog
	// always sets it).
	ReportBatchItemFailures bool
	// StartingPosition is TRIM_HORIZON (the default here; AWS requires one) or LATEST, for the
	// shards listed first. Shards that appear later are read from their start.
	StartingPosition ktypes.ShardIteratorType
	// OnFailure receives a record of each discarded batch; default none (records are dropped).
	OnFailure *S3Destination

	// Seed chooses the shape of each retry among RetryShapes, per shard.
	Seed uint64
	// RetryShapes are the shapes a retry may take: ShapeSame, ShapeGrown (the default is
	// both). The documentation does not say which records a retry holds beyond its first.
	RetryShapes []Shape
	// PollInterval is the wait between reads of a caught-up shard; default 1 s (Lambda's
	// base rate). Reads are never closer than 200 ms (5 GetRecords per second per shard).
	PollInterval time.Duration
	// Now is the clock of record ages and on-failure times; default time.Now.
	Now func() time.Time
}

// Invocation is one invocation as the driver made it.
type Invocation struct {
	Shard         string
	FirstSequence string
	LastSequence  string
	Records       int
	Bytes         int   // of the payload
	Attempt       int   // 1 for a batch's first invocation, n+1 for its nth retry
	Shape         Shape // how its records were chosen
	Outcome       Outcome
	FailedItem    string // the lowest itemIdentifier of a partial failure
	Result        Result
	Err           string // the Invoker's error (OutcomeInvokeError)
}

// Discard is a batch the driver discarded.
type Discard struct {
	Shard         string
	FirstSequence string
	LastSequence  string
	Records       int
	Condition     string // ConditionRetriesExhausted or ConditionRecordAge
	Key           string // of the on-failure record; "" without a destination
}

// Stats sums up a driver's work since New.
type Stats struct {
	Invocations      int
	Retries          int // invocations with Attempt > 1
	Bisections       int
	InvokeErrors     int
	RecordsDelivered int // records the function acknowledged (not discarded)
	Discarded        []Discard
}

// Driver is one event source mapping over one stream. Run and RunUntilCaughtUp must not
// overlap; the other methods are safe to call at any time.
type Driver struct {
	cfg              Config
	streamArn, fnArn string
	shards           map[string]*shard // owned by run
	order            []string

	mu          sync.Mutex
	running     bool
	invocations []Invocation
	stats       Stats
}

// New validates cfg, fills in its defaults and returns a driver. It reads nothing yet.
func New(cfg Config) (*Driver, error) {
	for _, bad := range []struct {
		ok  bool
		msg string
	}{
		{cfg.Kinesis != nil && cfg.Stream != "" && cfg.Invoker != nil, "Kinesis, Stream and Invoker are required"},
		{cfg.BatchSize >= 0 && cfg.BatchSize <= MaxBatchSize, "BatchSize is outside 1..10,000"},
		{cfg.MaximumBatchingWindow >= 0 && cfg.MaximumBatchingWindow <= MaxBatchingWindow, "MaximumBatchingWindow is outside 0..300s"},
		{cfg.MaximumRetryAttempts == nil || (*cfg.MaximumRetryAttempts >= -1 && *cfg.MaximumRetryAttempts <= MaxRetryAttempts), "MaximumRetryAttempts is outside -1..10,000"},
		{cfg.MaximumRecordAge >= -time.Second && cfg.MaximumRecordAge <= MaxRecordAge, "MaximumRecordAge is outside -1s..604,800s"},
		{cfg.PayloadLimit >= 0, "PayloadLimit is negative"},
		{cfg.OnFailure == nil || (cfg.OnFailure.Client != nil && cfg.OnFailure.Bucket != ""), "OnFailure needs a Client and a Bucket"},
		{!slices.ContainsFunc(cfg.RetryShapes, func(s Shape) bool { return s != ShapeSame && s != ShapeGrown }), "RetryShapes may hold only ShapeSame and ShapeGrown"},
		{slices.Contains([]ktypes.ShardIteratorType{"", "TRIM_HORIZON", "LATEST"}, cfg.StartingPosition), "StartingPosition is not TRIM_HORIZON or LATEST"},
	} {
		if !bad.ok {
			return nil, errors.New("esm: " + bad.msg)
		}
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.Region, "us-east-1")
	def(&cfg.Account, "000000000000")
	def(&cfg.FunctionName, "function")
	def(&cfg.InvokeIdentityArn, "arn:aws:iam::"+cfg.Account+":role/lambda-role")
	def(&cfg.UUID, newUUID())
	def((*string)(&cfg.StartingPosition), string(ktypes.ShardIteratorTypeTrimHorizon))
	cfg.BatchSize = cmp.Or(cfg.BatchSize, DefaultBatchSize)
	cfg.PayloadLimit = cmp.Or(cfg.PayloadLimit, DefaultPayloadLimit)
	cfg.MaximumRetryAttempts = cmp.Or(cfg.MaximumRetryAttempts, aws.Int(-1))
	cfg.PollInterval = cmp.Or(cfg.PollInterval, time.Second)
	if len(cfg.RetryShapes) == 0 {
		cfg.RetryShapes = []Shape{ShapeSame, ShapeGrown}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Driver{
		cfg:       cfg,
		streamArn: "arn:aws:kinesis:" + cfg.Region + ":" + cfg.Account + ":stream/" + cfg.Stream,
		fnArn:     "arn:aws:lambda:" + cfg.Region + ":" + cfg.Account + ":function:" + cfg.FunctionName,
		shards:    map[string]*shard{},
	}, nil
}

// Invocations returns every invocation so far, in the order they completed.
func (d *Driver) Invocations() []Invocation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.invocations)
}

// Stats returns the totals since New.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Discarded = slices.Clone(s.Discarded)
	return s
}

// RunUntilCaughtUp processes every shard until each has been read to its current end with
// nothing left to invoke or retry (a closed shard to its end, then its children), and
// returns the totals since New. It fails if ctx ends first.
func (d *Driver) RunUntilCaughtUp(ctx context.Context) (Stats, error) { return d.run(ctx, true) }

// Run processes the stream, following new shards, until ctx ends, then returns the totals
// since New.
func (d *Driver) Run(ctx context.Context) (Stats, error) { return d.run(ctx, false) }

type result struct {
	s    *shard
	done bool
	err  error
}

// run starts a goroutine per shard whose parents are done, and lists the shards again when
// one is done (its children appear) and, in Run, every 5 poll intervals.
func (d *Driver) run(parent context.Context, untilCaughtUp bool) (Stats, error) {
	d.mu.Lock()
	busy := d.running
	d.running = true
	d.mu.Unlock()
	if busy {
		return d.Stats(), errors.New("esm: Run or RunUntilCaughtUp is already running")
	}
	defer func() { d.mu.Lock(); d.running = false; d.mu.Unlock() }()
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	results, stopped := make(chan result), make(chan struct{}) // stopped: run returned (or t.FailNow in Invoker)
	defer close(stopped)
	tick := time.NewTicker(5 * d.cfg.PollInterval)
	defer tick.Stop()
	running, relist, caughtUp := 0, true, map[*shard]bool{}
	var err error
	for {
		if err == nil && ctx.Err() == nil {
			if relist {
				relist = false
				if err = d.listShards(ctx); err != nil {
					cancel()
				}
			}
			for _, id := range d.order {
				s := d.shards[id]
				if err != nil || s.done || s.active || caughtUp[s] || !d.parentsDone(s) {
					continue
				}
				if s.inv == nil {
					s.inv = d.cfg.Invoker(id)
				}
				s.active = true
				running++
				go func() {
					done, err := d.runShard(ctx, s, untilCaughtUp)
					select {
					case results <- result{s, done, err}:
					case <-stopped:
					}
				}()
			}
		}
		if running == 0 && (untilCaughtUp || err != nil || ctx.Err() != nil) {
			break
		}
		var idle <-chan struct{} // with workers, wait for them: they stop soon after ctx ends
		if running == 0 {
			idle = ctx.Done()
		}
		select {
		case r := <-results:
			running--
			r.s.active, r.s.done = false, r.done
			if r.err != nil && err == nil {
				err = r.err
				cancel()
			}
			relist = relist || r.done
			caughtUp[r.s] = untilCaughtUp && !r.done
		case <-tick.C:
			relist = !untilCaughtUp
		case <-idle:
		}
	}
	switch {
	case parent.Err() != nil && untilCaughtUp:
		return d.Stats(), fmt.Errorf("esm: not caught up: %w", parent.Err())
	case parent.Err() != nil:
		return d.Stats(), nil
	}
	return d.Stats(), err
}

// parentsDone: a shard is read only after its parents have been read to their end; a parent
// no longer listed has expired.
func (d *Driver) parentsDone(s *shard) bool {
	for _, p := range s.parents {
		if ps, ok := d.shards[p]; ok && !ps.done {
			return false
		}
	}
	return true
}

func (d *Driver) listShards(ctx context.Context) error {
	start := d.cfg.StartingPosition
	if len(d.order) > 0 {
		start = ktypes.ShardIteratorTypeTrimHorizon // a shard created since the mapping started
	}
	in := &kinesis.ListShardsInput{StreamName: aws.String(d.cfg.Stream)}
	for {
		var out *kinesis.ListShardsOutput
		err := retryRead(ctx, func() (err error) { out, err = d.cfg.Kinesis.ListShards(ctx, in); return err })
		if err != nil {
			return fmt.Errorf("esm: listing shards of %s: %w", d.cfg.Stream, err)
		}
		for _, sh := range out.Shards {
			id := aws.ToString(sh.ShardId)
			if d.shards[id] != nil {
				continue
			}
			h := fnv.New64a()
			h.Write([]byte(id))
			s := &shard{id: id, start: start, rng: rand.New(rand.NewPCG(d.cfg.Seed, h.Sum64())),
				resend: backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}}
			for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
				if aws.ToString(p) != "" {
					s.parents = append(s.parents, *p)
				}
			}
			d.shards[id] = s
			d.order = append(d.order, id)
		}
		if out.NextToken == nil {
			return nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// retryRead retries a read a few times with backoff: the emulator now and then drops a
// connection, and the SDK's own attempts can all meet it.
func retryRead(ctx context.Context, read func() error) error {
	b := backoff.Backoff{Min: 200 * time.Millisecond, Max: 2 * time.Second}
	err := read()
	for try := 1; try < 6 && err != nil && !errors.As(err, new(*ktypes.ExpiredIteratorException)); try++ {
		if sleep(ctx, b.Next()) != nil {
			break
		}
		err = read()
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// shard is the state of one shard: run's while the shard is not active, then its goroutine's.
type shard struct {
	id            string
	parents       []string
	start         ktypes.ShardIteratorType
	inv           Invoker
	rng           *rand.Rand
	active, done  bool // done: read to its end, every record processed or discarded
	iter          *string
	lastSeq       string // the last sequence number read
	ended         bool   // GetRecords returned no next iterator: closed and read to its end
	caughtUp      bool   // the last read returned no records
	lastRead, win time.Time
	buf           []record // read and not yet checkpointed, in order
	pending       []span   // the batch being tried (more after a bisection); starts at buf[0]
	resend        backoff.Backoff
}

// span is a batch of buf's first n records.
type span struct {
	n, retries, invokes int
	shape               Shape // of its next invocation
	grewRead            bool  // a ShapeGrown retry has read again
	last                *Result
}

// runShard processes a shard until it is done, caught up (untilCaughtUp), ctx ends or a
// read or on-failure write fails.
func (d *Driver) runShard(ctx context.Context, s *shard, untilCaughtUp bool) (done bool, err error) {
	s.caughtUp = false // read at least once per run
	if s.win.IsZero() {
		s.win = time.Now()
	}
	for err == nil && ctx.Err() == nil {
		var p *span
		if len(s.pending) > 0 {
			p = &s.pending[0]
		}
		switch {
		case p != nil && p.shape == ShapeGrown && !p.grewRead && !s.ended && len(s.buf) < d.cfg.BatchSize:
			p.grewRead = true
			err = d.read(ctx, s, true)
		case p != nil:
			err = d.attempt(ctx, s, p)
		case len(s.buf) == 0 && s.ended:
			return true, nil
		case len(s.buf) == 0 && s.caughtUp && untilCaughtUp:
			return false, nil
		case !s.ended && (len(s.buf) == 0 || d.windowOpen(s)):
			err = d.read(ctx, s, false)
		default:
			s.pending = []span{{shape: ShapeNew}}
		}
	}
	return false, err
}

// windowOpen: a batching window is running and the batch is not full.
func (d *Driver) windowOpen(s *shard) bool {
	w := d.cfg.MaximumBatchingWindow
	return w > 0 && time.Now().Before(s.win.Add(w)) && len(s.buf) < d.cfg.BatchSize && d.fit(s) == len(s.buf)
}

// fit is how many of buf's first records make a batch: at most BatchSize, within the
// payload limit, and at least one.
func (d *Driver) fit(s *shard) int {
	n, size := 0, len(payloadHead)+len(payloadTail)-1
	for _, r := range s.buf {
		if size += len(r.json) + 1; n == d.cfg.BatchSize || (n > 0 && size > d.cfg.PayloadLimit) {
			break
		}
		n++
	}
	return n
}

// read calls GetRecords once, 200 ms or more after the last call, and PollInterval after it
// when caught up (unless prompt, or a batching window ends sooner).
func (d *Driver) read(ctx context.Context, s *shard, prompt bool) error {
	wait := 200 * time.Millisecond
	if s.caughtUp && !prompt {
		wait = d.cfg.PollInterval
	}
	wake := s.lastRead.Add(wait)
	if w := d.cfg.MaximumBatchingWindow; w > 0 && len(s.buf) > 0 && s.win.Add(w).Before(wake) {
		wake = s.win.Add(w) // then invoke
	}
	if sleep(ctx, time.Until(wake)) != nil || (len(s.buf) > 0 && !prompt && !d.windowOpen(s)) {
		return nil
	}
	if s.iter == nil {
		in := &kinesis.GetShardIteratorInput{StreamName: aws.String(d.cfg.Stream), ShardId: aws.String(s.id), ShardIteratorType: s.start}
		if s.lastSeq != "" {
			in.ShardIteratorType, in.StartingSequenceNumber = ktypes.ShardIteratorTypeAfterSequenceNumber, aws.String(s.lastSeq)
		}
		var out *kinesis.GetShardIteratorOutput
		if err := retryRead(ctx, func() (err error) { out, err = d.cfg.Kinesis.GetShardIterator(ctx, in); return err }); err != nil {
			return ignoreIfDone(ctx, fmt.Errorf("esm: getting an iterator of %s: %w", s.id, err))
		}
		s.iter = out.ShardIterator
	}
	var out *kinesis.GetRecordsOutput
	err := retryRead(ctx, func() (err error) {
		out, err = d.cfg.Kinesis.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: s.iter, Limit: aws.Int32(int32(d.cfg.BatchSize))})
		return err
	})
	s.lastRead = time.Now()
	if errors.As(err, new(*ktypes.ExpiredIteratorException)) {
		s.iter = nil // a new one after the last record read
		return nil
	}
	if err != nil {
		return ignoreIfDone(ctx, fmt.Errorf("esm: reading %s: %w", s.id, err))
	}
	for _, r := range out.Records {
		s.buf = append(s.buf, d.record(s.id, r))
	}
	if len(out.Records) > 0 {
		s.lastSeq = s.buf[len(s.buf)-1].seq
	}
	s.caughtUp, s.iter = len(out.Records) == 0, out.NextShardIterator
	s.ended = s.iter == nil
	return nil
}

func ignoreIfDone(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (d *Driver) record(shardID string, r ktypes.Record) record {
	seq, arrival := aws.ToString(r.SequenceNumber), aws.ToTime(r.ApproximateArrivalTimestamp)
	if r.Data == nil {
		r.Data = []byte{} // "" in the event, not null
	}
	return record{seq: seq, arrival: arrival, json: marshal(eventRecord{
		Kinesis: kinesisData{KinesisSchemaVersion: "1.0", PartitionKey: aws.ToString(r.PartitionKey),
			SequenceNumber: seq, Data: r.Data, ApproximateArrivalTimestamp: epochSeconds(arrival)},
		EventSource: "aws:kinesis", EventVersion: "1.0", EventID: shardID + ":" + seq, EventName: "aws:kinesis:record",
		InvokeIdentityArn: d.cfg.InvokeIdentityArn, AwsRegion: d.cfg.Region, EventSourceARN: d.streamArn,
	})}
}

// attempt invokes the function with the batch p (s.pending[0]) and acts on the outcome.
func (d *Driver) attempt(ctx context.Context, s *shard, p *span) error {
	if p.shape == ShapeNew || p.shape == ShapeGrown {
		p.n = d.fit(s)
	}
	if age := d.cfg.MaximumRecordAge; age > 0 {
		k, cutoff := 0, d.cfg.Now().Add(-age)
		for k < p.n && s.buf[k].arrival.Before(cutoff) {
			k++
		}
		if k > 0 {
			return d.discard(ctx, s, k, ConditionRecordAge)
		}
	}
	batch := s.buf[:p.n]
	body := payload(batch)
	res, err := s.inv.Invoke(ctx, body)
	if ctx.Err() != nil {
		return nil // stopping: the outcome is not acted on, as if the poller had gone
	}
	inv := Invocation{Shard: s.id, FirstSequence: batch[0].seq, LastSequence: batch[p.n-1].seq,
		Records: p.n, Bytes: len(body), Attempt: p.retries + 1, Shape: p.shape, Result: res}
	p.invokes++
	p.grewRead = false
	if err != nil {
		inv.Outcome, inv.Err, p.shape = OutcomeInvokeError, err.Error(), ShapeResend
		d.log(inv, 0, 0)
		_ = sleep(ctx, s.resend.Next())
		return nil
	}
	s.resend.Reset()
	p.last = &res
	at, whole := -1, false
	switch {
	case res.FunctionError && d.cfg.BisectBatchOnFunctionError && p.n > 1:
		inv.Outcome = OutcomeFunctionError
		d.log(inv, 0, 1)
		h := (p.n + 1) / 2 // bisections keep the retry count
		s.pending = append([]span{{n: h, retries: p.retries, shape: ShapeHalf}, {n: p.n - h, retries: p.retries, shape: ShapeHalf}}, s.pending[1:]...)
		return nil
	case res.FunctionError:
		inv.Outcome, at = OutcomeFunctionError, 0
	case d.cfg.ReportBatchItemFailures:
		if at, whole = responseFailure(res.Body, batch); at >= 0 && whole {
			inv.Outcome = OutcomeBatchFailure
		} else if at >= 0 {
			inv.Outcome, inv.FailedItem = OutcomePartialFailure, batch[at].seq
		}
	}
	if at < 0 {
		inv.Outcome = OutcomeSuccess
		d.log(inv, p.n, 0)
		s.buf = slices.Delete(s.buf, 0, p.n)
		s.pending = s.pending[1:]
		s.win, s.caughtUp = time.Now(), false
		return nil
	}
	d.log(inv, at, 0)
	s.buf = slices.Delete(s.buf, 0, at) // checkpoint before the lowest failed item
	p.n -= at
	if p.retries++; *d.cfg.MaximumRetryAttempts >= 0 && p.retries > *d.cfg.MaximumRetryAttempts {
		return d.discard(ctx, s, p.n, ConditionRetriesExhausted)
	}
	if p.shape != ShapeHalf {
		p.shape = d.cfg.RetryShapes[s.rng.IntN(len(d.cfg.RetryShapes))]
	}
	return nil
}

func (d *Driver) log(inv Invocation, delivered, bisections int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.invocations = append(d.invocations, inv)
	d.stats.Invocations++
	d.stats.Bisections += bisections
	d.stats.RecordsDelivered += delivered
	if inv.Attempt > 1 {
		d.stats.Retries++
	}
	if inv.Outcome == OutcomeInvokeError {
		d.stats.InvokeErrors++
	}
}

// discard drops the first n records of the batch s.pending[0], writing the on-failure record
// of them, and goes on after them.
func (d *Driver) discard(ctx context.Context, s *shard, n int, condition string) error {
	p, recs, now := &s.pending[0], s.buf[:n], d.cfg.Now().UTC()
	dis := Discard{Shard: s.id, FirstSequence: recs[0].seq, LastSequence: recs[n-1].seq, Records: n, Condition: condition}
	if dst := d.cfg.OnFailure; dst != nil {
		rec := FailureRecord{
			RequestContext: FailureRequestContext{RequestID: newUUID(), FunctionArn: d.fnArn, Condition: condition, ApproximateInvokeCount: p.invokes},
			Version:        "1.0",
			Timestamp:      now.Format(failureTime),
			KinesisBatchInfo: KinesisBatchInfo{ShardID: s.id, StartSequenceNumber: dis.FirstSequence, EndSequenceNumber: dis.LastSequence,
				ApproximateArrivalOfFirstRecord: recs[0].arrival.UTC().Format(failureTime),
				ApproximateArrivalOfLastRecord:  recs[n-1].arrival.UTC().Format(failureTime),
				BatchSize:                       n, StreamArn: d.streamArn},
			Payload: string(payload(recs)),
		}
		if p.last != nil {
			rec.ResponseContext = &FailureResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST"}
			if p.last.FunctionError {
				rec.ResponseContext.FunctionError = "Unhandled"
			}
		}
		dis.Key = FailureKey(dst.Prefix, d.cfg.UUID, s.id, now)
		_, err := dst.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(dst.Bucket), Key: aws.String(dis.Key),
			Body: strings.NewReader(string(marshal(rec))), ContentType: aws.String("application/json")})
		if err != nil {
			return ignoreIfDone(ctx, fmt.Errorf("esm: writing the on-failure record of %s %s..%s: %w", s.id, dis.FirstSequence, dis.LastSequence, err))
		}
	}
	d.mu.Lock()
	d.stats.Discarded = append(d.stats.Discarded, dis)
	d.mu.Unlock()
	s.buf = slices.Delete(s.buf, 0, n)
	if p.n -= n; p.n <= 0 {
		s.pending = s.pending[1:]
	}
	return nil
}

package lambda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/sinks/dedup"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// ErrNotContiguous is returned for a batch that overlaps the committed position without
// containing it: its records are not a run of the shard, which happens only when several
// batches of one shard are processed at once (ParallelizationFactor above 1).
var ErrNotContiguous = errors.New("batch is not a contiguous run of the shard")

// Defaults.
const (
	// DefaultChunkSize is the record data after which a batch is cut into another set of
	// objects, committed on its own (the worker's flush size, 5 MiB: a whole batch of at
	// most 6 MB is one chunk).
	DefaultChunkSize = s3sink.DefaultBufferSize
	// DefaultReserve is the time kept before the invocation's deadline to answer Lambda
	// (at most a quarter of the invocation's time): S3 writes still failing then are
	// abandoned and reported as batch item failures.
	DefaultReserve = 2 * time.Second
	// DefaultWriteGrace is how long after an attempt stopped writing its objects are left
	// alone: a PUT whose bytes all reached S3 before its client died may still complete,
	// and must not land after the next attempt removed or overwrote its object.
	DefaultWriteGrace = time.Second
	// MaxAttempt bounds an invocation without a deadline (Lambda's longest timeout).
	MaxAttempt = 15 * time.Minute
	// MaxPendingKeys bounds the objects of one chunk, so that their keys fit in one
	// DynamoDB item (400 KB) with room to spare; a chunk making more is cut in two.
	MaxPendingKeys  = 1000
	maxPendingBytes = 256 << 10
)

// SinkFactory returns the archive sink of a stream. The function calls it once per stream
// and execution environment.
type SinkFactory func(stream string) (*s3sink.Sink, error)

// Function is the archive sink as a Lambda function on a Kinesis event source mapping. Its
// [Function.Handle] is the handler; it is safe for concurrent use (one execution
// environment runs one invocation at a time, but tests may share a Function).
type Function struct {
	newSink   SinkFactory
	s3        S3API
	kinesis   KinesisAPI
	progress  progressTable
	log       *slog.Logger
	chunkSize int
	reserve   time.Duration
	grace     time.Duration
	requestID func(context.Context) string
	now       func() time.Time
	// noProgress turns the protocol off (deterministic names only): the non-idempotent
	// variant that the tests show duplicating records. Never set in a release build.
	noProgress bool

	mu      sync.Mutex
	sinks   map[string]*s3sink.Sink
	ranges  map[string]kpl.HashKeyRange // <stream>/<shard> → hash-key range
	parents map[string][]string         // <stream>/<shard> → its parent shards
}

// Option configures a Function.
type Option func(*Function)

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(f *Function) { f.log = l } }

// WithChunkSize sets the record data after which a batch is cut into another chunk of
// objects (the worker's sink.s3.flush_size). Default: [DefaultChunkSize].
func WithChunkSize(n int) Option { return func(f *Function) { f.chunkSize = n } }

// WithReserve sets the time kept before the deadline to answer. Default: [DefaultReserve].
func WithReserve(d time.Duration) Option { return func(f *Function) { f.reserve = d } }

// WithWriteGrace sets how long the objects of an attempt that stopped writing are left
// alone. Default: [DefaultWriteGrace].
func WithWriteGrace(d time.Duration) Option { return func(f *Function) { f.grace = d } }

// WithRequestID sets how the request ID of an invocation is read from its context (the
// bootstrap passes aws-lambda-go's lambdacontext). It is written in progress items.
// Default: none.
func WithRequestID(fn func(context.Context) string) Option {
	return func(f *Function) { f.requestID = fn }
}

// New returns the function. table is the progress table (see the package documentation).
func New(newSink SinkFactory, s3c S3API, kin KinesisAPI, ddb DynamoDBAPI, table string, opts ...Option) (*Function, error) {
	if newSink == nil || s3c == nil || kin == nil || ddb == nil {
		return nil, errors.New("lambda: nil sink factory or client")
	}
	if table == "" {
		return nil, errors.New("lambda: the progress table is required")
	}
	f := &Function{
		newSink: newSink, s3: s3c, kinesis: kin, progress: progressTable{client: ddb, table: table},
		log: slog.Default(), chunkSize: DefaultChunkSize, reserve: DefaultReserve, grace: DefaultWriteGrace,
		requestID: func(context.Context) string { return "" }, now: time.Now,
		sinks: map[string]*s3sink.Sink{}, ranges: map[string]kpl.HashKeyRange{}, parents: map[string][]string{},
		noProgress: nonIdempotentBuild,
	}
	for _, o := range opts {
		o(f)
	}
	if f.chunkSize <= 0 || f.reserve < 0 || f.grace < 0 {
		return nil, errors.New("lambda: chunk size must be positive, the reserve and grace not negative")
	}
	return f, nil
}

// ItemFailure is one entry of a partial batch response.
type ItemFailure struct {
	ItemIdentifier string `json:"itemIdentifier"`
}

// Response is the partial batch response of an event source mapping with
// ReportBatchItemFailures: Lambda retries from the lowest reported sequence number.
type Response struct {
	BatchItemFailures []ItemFailure `json:"batchItemFailures"`
}

// chunk is a run of whole Kinesis records, written and committed as one set of objects.
type chunk struct {
	from  string // sequence number of its first Kinesis record
	end   checkpoint.Checkpoint
	users []consumer.Record
}

// Handle archives one batch: see the package documentation for the protocol. It returns
// an error (a function error: Lambda retries the batch, bisecting it if configured) for a
// malformed event, a non-contiguous batch and a conflicting write; a failure to read or
// write the progress table or S3 is reported as a batch item failure at the first record
// not committed, so that Lambda retries from there.
func (f *Function) Handle(ctx context.Context, payload []byte) (Response, error) {
	start := f.now()
	b, err := decodeEvent(payload)
	if err != nil {
		f.log.Error("refusing the invocation", "err", err)
		return Response{}, err
	}
	return f.handle(ctx, b, start)
}

// handle runs the protocol on a decoded batch.
func (f *Function) handle(ctx context.Context, b *batch, start time.Time) (Response, error) {
	if len(b.records) == 0 {
		return Response{}, nil
	}
	log := f.log.With("stream", b.stream, "shard", b.shard, "request_id", f.requestID(ctx))
	ctx, cancel := f.budget(ctx)
	defer cancel()
	var budget time.Duration // of this invocation, after the reserve
	if d, ok := ctx.Deadline(); ok {
		budget = time.Until(d)
	}
	failAt := func(seq, what string, err error) (Response, error) {
		log.Warn("batch not archived past "+seq+"; Lambda retries from it", "step", what, "err", err)
		return Response{BatchItemFailures: []ItemFailure{{ItemIdentifier: seq}}}, nil
	}
	first := b.records[0].seq

	sink, err := f.sink(b.stream)
	if err != nil {
		return Response{}, err
	}
	users, err := f.userRecords(ctx, b)
	if err != nil {
		return failAt(first, "reading the shard's hash-key range", err)
	}
	key := b.stream + "/" + b.shard
	if f.noProgress {
		return f.handleWithoutProgress(ctx, sink, b, users, failAt)
	}
	prog, err := f.progress.load(ctx, key)
	if err != nil {
		return failAt(first, "reading progress", err)
	}
	if err := contiguous(b, prog.Committed); err != nil {
		log.Error("refusing the batch", "err", err)
		return Response{}, err
	}
	st, err := f.dedupState(ctx, sink, b, prog)
	if err != nil {
		return failAt(first, "reading the parent shards' progress", err)
	}
	chunks, skipped := f.chunks(b, users, prog.Committed)
	writeUntil := f.now().Add(MaxAttempt)
	if d, ok := ctx.Deadline(); ok {
		writeUntil = d
	}
	// While this attempt has objects pending and fails, it says when it stopped writing, so
	// that the next attempt need not wait for its deadline.
	var mine *Progress
	defer func() {
		if mine == nil {
			return
		}
		done := *mine
		done.PendingUntil = f.now()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = f.progress.store(sctx, key, *mine, &done)
	}()
	archived, objects, dups := 0, 0, 0
	for _, ch := range chunks {
		var after *dedup.State // the state after this chunk, committed with it
		if st != nil {
			after = st.Clone()
		}
		objs, err := f.build(sink, b.shard, ch, after)
		if err != nil {
			return Response{}, fmt.Errorf("building the objects of %s from %s: %w", key, ch.from, err)
		}
		keys := objs.Keys()
		if len(prog.Pending) > 0 {
			// The earlier attempt's writes may still land until its end, plus the grace.
			// Wait for that (at most to the end of this budget). An attempt left without
			// the time to write fails before it records anything: the next one then finds
			// the earlier writes over and need not wait.
			if wait := prog.PendingUntil.Add(f.grace).Sub(f.now()); wait > 0 {
				if d, ok := ctx.Deadline(); ok {
					wait = min(wait, time.Until(d))
				}
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
				if d, ok := ctx.Deadline(); ctx.Err() != nil || ok && time.Until(d) < budget/2 {
					return failAt(ch.from, "waiting for the writes of an earlier attempt to end", fmt.Errorf("it may write until %s; too little time is left", prog.PendingUntil.Add(f.grace).Format(time.RFC3339Nano)))
				}
			}
		}
		// The objects of an attempt that did not commit, and that this one does not
		// overwrite, go before anything is written: afterwards no object holds a record
		// that a committed object holds too.
		for _, k := range prog.Pending {
			if !slices.Contains(keys, k) {
				if _, err := f.s3.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: ptr(sink.Bucket()), Key: ptr(k)}); err != nil {
					return failAt(ch.from, "deleting an uncommitted object of an earlier attempt", err)
				}
			}
		}
		next := prog
		next.Pending, next.PendingFrom, next.PendingUntil, next.Updated, next.RequestID = keys, ch.from, writeUntil, f.now(), f.requestID(ctx)
		// Set before the write: a write that fails on the client may have been applied.
		pend := next
		pend.Version = prog.Version + 1
		mine = &pend
		if err := f.progress.store(ctx, key, prog, &next); err != nil {
			return f.storeFailed(log, key, ch.from, "recording the pending objects", err, failAt)
		}
		if len(prog.Pending) > 0 {
			log.Info("replaced the uncommitted objects of an earlier attempt", "objects", len(prog.Pending), "from", prog.PendingFrom)
		}
		prog = next
		if err := sink.Write(ctx, objs); err != nil {
			return failAt(ch.from, "writing objects", err)
		}
		next = prog
		next.Committed, next.Pending, next.PendingFrom, next.PendingUntil, next.Updated = ch.end, nil, "", time.Time{}, f.now()
		if after != nil {
			next.State = after.Encode()
		}
		if err := f.progress.store(ctx, key, prog, &next); err != nil {
			return f.storeFailed(log, key, ch.from, "committing", err, failAt)
		}
		prog = next
		st = after
		mine = nil
		archived += len(ch.users) - objs.Deduplicated()
		dups += objs.Deduplicated()
		objects += len(keys)
	}
	log.Info("batch archived", "kinesis_records", len(b.records), "records", archived, "deduplicated", dups, "skipped", skipped,
		"objects", objects, "chunks", len(chunks), "first", first, "last", b.records[len(b.records)-1].seq,
		"committed", prog.Committed.String(), "duration_ms", f.now().Sub(start).Milliseconds())
	return Response{}, nil
}

// handleWithoutProgress writes every record of the batch under deterministic names and
// nothing else: exactly-once only while batch boundaries never move.
func (f *Function) handleWithoutProgress(ctx context.Context, sink *s3sink.Sink, b *batch, users [][]consumer.Record, failAt func(string, string, error) (Response, error)) (Response, error) {
	chunks, _ := f.chunks(b, users, checkpoint.Checkpoint{})
	for _, ch := range chunks {
		objs, err := f.build(sink, b.shard, ch, nil)
		if err != nil {
			return Response{}, err
		}
		if err := sink.Write(ctx, objs); err != nil {
			return failAt(ch.from, "writing objects", err)
		}
	}
	return Response{}, nil
}

func (f *Function) storeFailed(log *slog.Logger, key, from, what string, err error, failAt func(string, string, error) (Response, error)) (Response, error) {
	if errors.Is(err, ErrConflict) {
		err = fmt.Errorf("%s of %s: %w: two invocations are processing the shard at once. The event source mapping's ParallelizationFactor must be 1, and only one mapping may use this progress table for a stream", what, key, err)
		log.Error("refusing the batch", "err", err)
		return Response{}, err
	}
	return failAt(from, what, err)
}

// budget returns ctx with a deadline before the invocation's: the reserve, or a quarter of
// the time left when that is less.
func (f *Function) budget(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, d.Add(-min(f.reserve, time.Until(d)/4)))
	}
	return context.WithCancel(ctx)
}

func (f *Function) sink(stream string) (*s3sink.Sink, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.sinks[stream]; s != nil {
		return s, nil
	}
	s, err := f.newSink(stream)
	if err != nil {
		return nil, fmt.Errorf("making the sink of stream %s: %w", stream, err)
	}
	f.sinks[stream] = s
	return s, nil
}

// build encodes a chunk, cutting it in two (at a Kinesis-record boundary) while its
// objects' keys would not fit in the progress item.
func (f *Function) build(sink *s3sink.Sink, shard string, ch chunk, st *dedup.State) (*s3sink.Objects, error) {
	objs, err := sink.Build(shard, ch.users, st)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, k := range objs.Keys() {
		n += len(k)
	}
	if len(objs.Keys()) > MaxPendingKeys || n > maxPendingBytes {
		return nil, fmt.Errorf("a chunk makes %d objects (%d bytes of keys), more than one progress item holds: lower sink.s3.flush_size or the number of distinct prefixes", len(objs.Keys()), n)
	}
	return objs, nil
}

// contiguous checks that a batch overlapping the committed position contains it. With
// ParallelizationFactor 1 a batch is a run of consecutive records of the shard, so a batch
// that starts at or before the position and ends after it must hold it.
func contiguous(b *batch, committed checkpoint.Checkpoint) error {
	if committed.Sequence == "" {
		return nil
	}
	pos := checkpoint.Checkpoint{Sequence: committed.Sequence}
	firstCmp := checkpoint.Checkpoint{Sequence: b.records[0].seq}.Compare(pos)
	lastCmp := checkpoint.Checkpoint{Sequence: b.records[len(b.records)-1].seq}.Compare(pos)
	if firstCmp > 0 || lastCmp <= 0 {
		return nil
	}
	for i := range b.records {
		if b.records[i].seq == committed.Sequence {
			return nil
		}
	}
	return fmt.Errorf("%w: records %s to %s of %s straddle the committed position %s without containing it: batches of the shard are being processed concurrently (ParallelizationFactor above 1). Set the event source mapping's ParallelizationFactor to 1",
		ErrNotContiguous, b.records[0].seq, b.records[len(b.records)-1].seq, b.shard, committed.Sequence)
}

// chunks cuts the batch's records after the committed position into runs of whole Kinesis
// records of about the chunk size. It also returns how many user records it skipped.
func (f *Function) chunks(b *batch, users [][]consumer.Record, committed checkpoint.Checkpoint) ([]chunk, int) {
	var (
		out     []chunk
		cur     chunk
		size    int
		skipped int
	)
	for i := range b.records {
		recs := users[i]
		if committed.Sequence != "" {
			j := 0
			for j < len(recs) && recs[j].Position().Compare(committed) <= 0 {
				j++
			}
			skipped += j
			recs = recs[j:]
			if j > 0 && len(recs) == 0 {
				continue
			}
			// A Kinesis record at or before the position without user records (an
			// aggregate that holds none) is skipped too.
			if len(recs) == 0 && (checkpoint.Checkpoint{Sequence: b.records[i].seq}).Compare(checkpoint.Checkpoint{Sequence: committed.Sequence}) <= 0 {
				continue
			}
		}
		n := 0
		for k := range recs {
			n += len(recs[k].Data) + 1
		}
		if len(cur.users) > 0 && size+n > f.chunkSize {
			out = append(out, cur)
			cur, size = chunk{}, 0
		}
		if cur.from == "" {
			cur.from = b.records[i].seq
		}
		cur.users = append(cur.users, recs...)
		cur.end = checkpoint.Checkpoint{Sequence: b.records[i].seq, SubSequence: checkpoint.WholeRecord}
		size += n
	}
	if cur.from != "" {
		out = append(out, cur)
	}
	return out, skipped
}

// userRecords deaggregates the batch: the user records of each Kinesis record. The user
// records of a KPL aggregate that are not all in the shard's hash-key range are marked
// OutsideShard: the sink writes them to the error output, as the worker does.
func (f *Function) userRecords(ctx context.Context, b *batch) ([][]consumer.Record, error) {
	out := make([][]consumer.Record, len(b.records))
	for i := range b.records {
		r := &b.records[i]
		aggs, ok := kpl.Decode(r.data)
		if !ok {
			out[i] = []consumer.Record{{ShardID: b.shard, SequenceNumber: r.seq, PartitionKey: r.partitionKey, ArrivalTime: r.arrival, Data: r.data}}
			continue
		}
		rng, err := f.hashRange(ctx, b.stream, b.shard)
		if err != nil {
			return nil, err
		}
		// An aggregate outside the shard's range goes to the error output, as with the
		// worker (which the KCL would drop: the KPL sends it again to the right shard).
		outside := rng != (kpl.HashKeyRange{End: kpl.MaxHashKey}) && !kpl.AllInRange(aggs, rng)
		recs := make([]consumer.Record, len(aggs))
		for j, u := range aggs {
			recs[j] = consumer.Record{ShardID: b.shard, SequenceNumber: r.seq, SubSequenceNumber: uint64(j), Aggregated: true,
				PartitionKey: u.PartitionKey, ExplicitHashKey: u.ExplicitHashKey, ArrivalTime: r.arrival, Data: u.Data, OutsideShard: outside, ID: u.ID}
		}
		out[i] = recs
	}
	return out, nil
}

// dedupState is the sink's deduplication state at the committed position: the one
// committed with it, or — for a shard with nothing committed yet — the merge of its parents'
// (the event source mapping processes parents to their end before their children). nil
// when the sink does not deduplicate.
func (f *Function) dedupState(ctx context.Context, sink *s3sink.Sink, b *batch, prog Progress) (*dedup.State, error) {
	if prog.Committed.Sequence != "" || prog.State != nil {
		return sink.NewState(prog.State, nil), nil
	}
	if !sink.Deduplicates() {
		return nil, nil
	}
	if _, err := f.hashRange(ctx, b.stream, b.shard); err != nil {
		return nil, err
	}
	f.mu.Lock()
	parents := f.parents[b.stream+"/"+b.shard]
	f.mu.Unlock()
	var states [][]byte
	for _, p := range parents {
		pp, err := f.progress.load(ctx, b.stream+"/"+p)
		if err != nil {
			return nil, err
		}
		if pp.State != nil {
			states = append(states, pp.State)
		}
	}
	return sink.NewState(nil, states), nil
}

// hashRange returns the shard's hash-key range, listing the stream's shards once per
// execution environment (and again for a shard created since).
func (f *Function) hashRange(ctx context.Context, stream, shard string) (kpl.HashKeyRange, error) {
	key := stream + "/" + shard
	f.mu.Lock()
	rng, ok := f.ranges[key]
	f.mu.Unlock()
	if ok {
		return rng, nil
	}
	in := &kinesis.ListShardsInput{StreamName: &stream}
	for {
		out, err := f.kinesis.ListShards(ctx, in)
		if err != nil {
			return kpl.HashKeyRange{}, fmt.Errorf("listing the shards of %s: %w", stream, err)
		}
		for _, s := range out.Shards {
			if s.ShardId == nil || s.HashKeyRange == nil {
				continue
			}
			r, err := kpl.ParseHashKeyRange(deref(s.HashKeyRange.StartingHashKey), deref(s.HashKeyRange.EndingHashKey))
			if err != nil {
				return kpl.HashKeyRange{}, fmt.Errorf("shard %s of %s: %w", *s.ShardId, stream, err)
			}
			f.mu.Lock()
			f.ranges[stream+"/"+*s.ShardId] = r
			var parents []string
			for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
				if p != nil && *p != "" {
					parents = append(parents, *p)
				}
			}
			f.parents[stream+"/"+*s.ShardId] = parents
			f.mu.Unlock()
		}
		if out.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	f.mu.Lock()
	rng, ok = f.ranges[key]
	f.mu.Unlock()
	if !ok {
		return kpl.HashKeyRange{}, fmt.Errorf("shard %s is not a shard of %s", shard, stream)
	}
	return rng, nil
}

func ptr[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

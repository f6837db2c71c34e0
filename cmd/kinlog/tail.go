package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/backoff"
	"github.com/kinlog/kinlog/internal/conf"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/query"
	"github.com/kinlog/kinlog/sinks/encode"
)

// tailIdle is how long a shard's reader waits after an empty response at the tip of the
// shard before it polls again; behind the tip it polls at consumer.MinGetRecordsInterval
// (5 calls per second, the per-shard limit of GetRecords).
const tailIdle = time.Second

// runTail prints a stream's user records as they arrive: every open shard (or --shard) read
// with GetRecords from LATEST, TRIM_HORIZON or a time, KPL aggregates split, the children of
// a shard followed once it ends, and each record shown as the NDJSON archive stores it,
// through the filters and writers of `kinlog query`. It uses no lease table: any number of
// tails run beside the workers without taking shards from them.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", os.Getenv("KINLOG_CONFIG"), "the worker's YAML config file, for its stream (default $KINLOG_CONFIG)")
	var sets stringList
	fs.Var(&sets, "set", "override a config key: --set stream=logs (repeatable)")
	streamFlag := fs.String("stream", "", "stream name or ARN (default: stream from the config, $KINLOG_STREAM)")
	from := fs.String("from", "LATEST", "where to start: LATEST (records put from now on), TRIM_HORIZON (the oldest kept), or a time: RFC 3339, a date, or relative (-10m)")
	var where stringList
	fs.Var(&where, "where", "filter, as in kinlog query: field=value, !=, ~regex, !~regex, <, <=, >, >=, 'field exists', 'field missing' (repeatable; all must hold)")
	sel := fs.String("select", "", "comma-separated fields to print (dotted paths for nested fields)")
	output := fs.String("output", "ndjson", "output format: ndjson, table or csv")
	limit := fs.Int("limit", 0, "stop after this many matching records (0: until interrupted)")
	var shards stringList
	fs.Var(&shards, "shard", "read only this shard (and its children once it ends); repeatable or comma-separated (default: every open shard)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see kinlog tail --help)", errUsage, fs.Arg(0))
	}
	cfg := defaultConsumeConfig()
	if err := conf.Load(&cfg, *path, os.Environ(), sets); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, w := range conf.EnvWarnings(&cfg, os.Environ()) {
		fmt.Fprintf(stderr, "kinlog tail: warning: %s\n", w)
	}
	stream := *streamFlag
	if stream == "" {
		stream = cfg.Stream
	}
	if stream == "" && len(cfg.Streams) == 1 {
		stream = cfg.Streams[0]
	}
	if stream == "" && len(cfg.Streams) > 1 {
		return fmt.Errorf("%w: the config has several streams (%s): pass --stream", errUsage, strings.Join(cfg.Streams, ", "))
	}
	if stream == "" {
		return fmt.Errorf("%w: no stream: pass --stream, or set stream in the config (--config, --set stream=..., KINLOG_STREAM)", errUsage)
	}
	start, err := parseTailStart(*from, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("%w: --from: %v", errUsage, err)
	}
	filter, err := query.ParseFilter(where)
	if err != nil {
		return fmt.Errorf("%w: --where: %v", errUsage, err)
	}
	format, err := query.ParseFormat(*output)
	if err != nil {
		return fmt.Errorf("%w: --output: %v", errUsage, err)
	}
	if *limit < 0 {
		return fmt.Errorf("%w: --limit must be ≥ 0", errUsage)
	}
	var only []string
	for _, s := range shards {
		only = append(only, splitList(s)...)
	}
	w, err := query.NewWriter(stdout, format, splitList(*sel))
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	t := &tailer{kc: kinesis.NewFromConfig(awsCfg), stream: stream, from: start, events: make(chan tailEvent)}
	var (
		dec     encode.Decoder
		line    []byte
		matched int
		dropped int
	)
	// emit runs on tailer.run's goroutine only. Records are shown exactly as `kinlog query`
	// shows them once archived (encode.Decoder.Record, either encoding): JSON objects as
	// they are, anything else as {"raw":...}; so --where and --select see the same.
	emit := func(ev tailEvent) (bool, error) {
		if ev.dropped > 0 {
			dropped += ev.dropped
			fmt.Fprintf(stderr, "kinlog tail: shard %s: dropped a KPL aggregate of %d records: one of them hashes outside the shard's range (the KCL and kinlog consume drop it too; a producer re-sends it to the right shard)\n", ev.shard, ev.dropped)
		}
		for _, data := range ev.records {
			line = dec.Record(data)
			if !filter.Match(line) {
				continue
			}
			if err := w.Write(line); err != nil {
				return true, err
			}
			matched++
			if *limit > 0 && matched >= *limit {
				return true, nil
			}
		}
		// A live view: print each response at once. query.Writer.Close flushes its buffers
		// and the writer stays usable.
		return false, w.Close()
	}
	started := func(n int) {
		what := fmt.Sprintf("%d shards", n)
		if len(only) > 0 {
			what = "shard " + strings.Join(only, ", ")
		}
		fmt.Fprintf(stderr, "kinlog tail: reading %s of %s from %s, then their children after a reshard; Ctrl-C to stop\n", what, stream, start)
	}
	err = t.run(ctx, only, started, emit)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errStreamNotFound) {
		endpoint := os.Getenv("AWS_ENDPOINT_URL_KINESIS")
		if endpoint == "" {
			endpoint = os.Getenv("AWS_ENDPOINT_URL")
		}
		if endpoint == "" {
			endpoint = "AWS"
		}
		return fmt.Errorf("stream %s does not exist in region %q at %s: check --stream (or stream in the config), AWS_REGION and AWS_ENDPOINT_URL_KINESIS (for the local stack: eval \"$(infra/local/stack env)\")", stream, awsCfg.Region, endpoint)
	}
	return err
}

// tailStart is where `kinlog tail` starts reading the shards it begins with.
type tailStart struct {
	kind ktypes.ShardIteratorType // LATEST, TRIM_HORIZON or AT_TIMESTAMP
	at   time.Time                // with AT_TIMESTAMP
}

// parseTailStart reads --from: LATEST, TRIM_HORIZON, or a time as `kinlog query --from`
// reads it (RFC 3339, a date, now, or relative such as -10m).
func parseTailStart(s string, now time.Time) (tailStart, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "LATEST":
		return tailStart{kind: ktypes.ShardIteratorTypeLatest}, nil
	case "TRIM_HORIZON":
		return tailStart{kind: ktypes.ShardIteratorTypeTrimHorizon}, nil
	}
	t, err := query.ParseTime(s, now)
	if err != nil {
		return tailStart{}, fmt.Errorf("want LATEST, TRIM_HORIZON or a time: %v", err)
	}
	return tailStart{kind: ktypes.ShardIteratorTypeAtTimestamp, at: t}, nil
}

func (s tailStart) String() string {
	if s.kind == ktypes.ShardIteratorTypeAtTimestamp {
		return s.at.UTC().Format(time.RFC3339)
	}
	return string(s.kind)
}

// errStreamNotFound is returned by tailer.run when the stream does not exist.
var errStreamNotFound = errors.New("stream not found")

// tailer reads the shards of one stream without leases: one goroutine per shard, handing
// what it reads to run's goroutine through events (unbuffered: a slow terminal slows the
// readers down).
type tailer struct {
	kc     consumer.KinesisAPI
	stream string
	from   tailStart
	events chan tailEvent
	wg     sync.WaitGroup // readers
}

// tailEvent is what a shard's reader reports: user records (and how many it dropped), the
// end of a closed shard, or an error that stopped it.
type tailEvent struct {
	shard   string
	records [][]byte
	dropped int
	ended   bool
	err     error
}

func (t *tailer) streamName() *string {
	if strings.HasPrefix(t.stream, "arn:") {
		return nil
	}
	return aws.String(t.stream)
}

func (t *tailer) streamARN() *string {
	if strings.HasPrefix(t.stream, "arn:") {
		return aws.String(t.stream)
	}
	return nil
}

// run reads from t.from every open shard, or the shards named in only; for TRIM_HORIZON and
// a time, the oldest shards instead (those without parents in the stream), so that records
// of closed shards are shown too. When a shard ends, its children start at TRIM_HORIZON (or
// the --from time) once every parent being read has ended, keeping the order of each
// partition key across a reshard. started is called once the first iterators are held:
// records put from then on are shown. emit gets every batch of records on run's goroutine
// and says when to stop. run returns when ctx ends (nil), emit says stop, every shard is
// read to its end, or a call fails; it stops and waits for its readers first.
func (t *tailer) run(ctx context.Context, only []string, started func(n int), emit func(tailEvent) (stop bool, err error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		t.wg.Wait()
	}()
	list, err := t.listShards(ctx)
	if err != nil {
		return err
	}
	byID := map[string]ktypes.Shard{}
	for _, s := range list {
		byID[aws.ToString(s.ShardId)] = s
	}
	var roots []ktypes.Shard
	switch {
	case len(only) > 0:
		for _, id := range only {
			s, ok := byID[id]
			if !ok {
				ids := make([]string, 0, len(byID))
				for id := range byID {
					ids = append(ids, id)
				}
				slices.Sort(ids)
				return fmt.Errorf("stream %s has no shard %s (it has %s)", t.stream, id, strings.Join(ids, ", "))
			}
			roots = append(roots, s)
		}
	case t.from.kind == ktypes.ShardIteratorTypeLatest:
		for _, s := range list {
			if s.SequenceNumberRange == nil || s.SequenceNumberRange.EndingSequenceNumber == nil {
				roots = append(roots, s)
			}
		}
	default:
		for _, s := range list {
			if !hasParentIn(s, byID) {
				roots = append(roots, s)
			}
		}
	}
	// The first iterators are taken before started is called, so that a record put after
	// it is shown even from LATEST.
	iters := make([]string, len(roots))
	for i, s := range roots {
		if iters[i], err = t.iterator(ctx, aws.ToString(s.ShardId), ""); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	startedShards := map[string]bool{}
	ended := map[string]bool{}
	running := 0
	startShard := func(s ktypes.Shard, iter string) {
		startedShards[aws.ToString(s.ShardId)] = true
		running++
		t.wg.Add(1)
		go t.read(ctx, s, iter)
	}
	started(len(roots))
	for i, s := range roots {
		startShard(s, iters[i])
	}
	for running > 0 {
		var ev tailEvent
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of a tail
		case ev = <-t.events:
		}
		switch {
		case ev.err != nil:
			return ev.err
		case ev.ended:
			running--
			ended[ev.shard] = true
			list, err := t.listShards(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, c := range list {
				id := aws.ToString(c.ShardId)
				if startedShards[id] || !slices.Contains(parentsOf(c), ev.shard) {
					continue
				}
				ready := true
				for _, p := range parentsOf(c) {
					ready = ready && (!startedShards[p] || ended[p])
				}
				if ready {
					startShard(c, "")
				}
			}
		default:
			stop, err := emit(ev)
			if err != nil || stop {
				return err
			}
		}
	}
	return nil // every shard read to its end: the stream has no open shard left
}

func parentsOf(s ktypes.Shard) []string {
	var ps []string
	for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
		if aws.ToString(p) != "" {
			ps = append(ps, *p)
		}
	}
	return ps
}

func hasParentIn(s ktypes.Shard, byID map[string]ktypes.Shard) bool {
	for _, p := range parentsOf(s) {
		if _, ok := byID[p]; ok {
			return true
		}
	}
	return false
}

// listShards lists every shard of the stream (paginated); a missing stream is
// errStreamNotFound.
func (t *tailer) listShards(ctx context.Context) ([]ktypes.Shard, error) {
	var shards []ktypes.Shard
	in := &kinesis.ListShardsInput{StreamName: t.streamName(), StreamARN: t.streamARN()}
	bo := backoff.Backoff{Min: consumer.MinGetRecordsInterval, Max: 5 * time.Second}
	for {
		out, err := t.kc.ListShards(ctx, in)
		var nf *ktypes.ResourceNotFoundException
		var limited *ktypes.LimitExceededException
		switch {
		case errors.As(err, &nf):
			return nil, errStreamNotFound
		case errors.As(err, &limited):
			if !sleepCtx(ctx, bo.Next()) {
				return nil, ctx.Err()
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("listing the shards of %s: %w", t.stream, err)
		}
		shards = append(shards, out.Shards...)
		if aws.ToString(out.NextToken) == "" {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// iterator returns a shard iterator after lastSeq, or at t.from for a shard not read yet.
// A child shard (started after its parents ended) begins at TRIM_HORIZON, or at the --from
// time. GetShardIterator's limit (5 calls per second per shard) is met with backoff.
func (t *tailer) iterator(ctx context.Context, shard, lastSeq string) (string, error) {
	in := &kinesis.GetShardIteratorInput{ShardId: aws.String(shard), StreamName: t.streamName(), StreamARN: t.streamARN()}
	switch {
	case lastSeq != "":
		in.ShardIteratorType = ktypes.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(lastSeq)
	case t.from.kind == ktypes.ShardIteratorTypeAtTimestamp:
		in.ShardIteratorType = ktypes.ShardIteratorTypeAtTimestamp
		in.Timestamp = aws.Time(t.from.at)
	default:
		in.ShardIteratorType = t.from.kind
	}
	bo := backoff.Backoff{Min: consumer.MinGetRecordsInterval, Max: 5 * time.Second}
	for {
		out, err := t.kc.GetShardIterator(ctx, in)
		var nf *ktypes.ResourceNotFoundException
		var limited *ktypes.LimitExceededException
		var throttled *ktypes.ProvisionedThroughputExceededException
		switch {
		case err == nil:
			return aws.ToString(out.ShardIterator), nil
		case errors.As(err, &nf):
			return "", errStreamNotFound
		case errors.As(err, &limited), errors.As(err, &throttled):
			if !sleepCtx(ctx, bo.Next()) {
				return "", ctx.Err()
			}
		default:
			return "", fmt.Errorf("getting an iterator of shard %s: %w", shard, err)
		}
	}
}

// read polls one shard from iter (or a new iterator, for a child) until the shard ends,
// ctx ends or a call fails, and reports to t.events. It keeps within the shard's read
// limits: at most 5 GetRecords calls and 2 MB per second, tailIdle between polls at the
// tip, and jittered exponential backoff when throttled (after the SDK's own retries).
func (t *tailer) read(ctx context.Context, s ktypes.Shard, iter string) {
	defer t.wg.Done()
	id := aws.ToString(s.ShardId)
	send := func(ev tailEvent) bool {
		ev.shard = id
		select {
		case t.events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var rng kpl.HashKeyRange
	hasRange := false
	if s.HashKeyRange != nil {
		r, err := kpl.ParseHashKeyRange(aws.ToString(s.HashKeyRange.StartingHashKey), aws.ToString(s.HashKeyRange.EndingHashKey))
		rng, hasRange = r, err == nil
	}
	var (
		lastSeq string
		wait    time.Duration
		bo      = backoff.Backoff{Min: consumer.MinGetRecordsInterval, Max: 10 * time.Second}
		users   []kpl.Record
	)
	for {
		if !sleepCtx(ctx, wait) {
			return
		}
		if iter == "" {
			it, err := t.iterator(ctx, id, lastSeq)
			if err != nil {
				if ctx.Err() == nil {
					send(tailEvent{err: err})
				}
				return
			}
			if iter = it; iter == "" {
				send(tailEvent{ended: true})
				return
			}
		}
		callAt := time.Now()
		out, err := t.kc.GetRecords(ctx, &kinesis.GetRecordsInput{
			ShardIterator: aws.String(iter),
			Limit:         aws.Int32(consumer.MaxRecordsPerGetRecords),
			StreamARN:     t.streamARN(),
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var expired *ktypes.ExpiredIteratorException
			var throttled *ktypes.ProvisionedThroughputExceededException
			switch {
			case errors.As(err, &expired):
				iter, wait = "", consumer.MinGetRecordsInterval
			case errors.As(err, &throttled):
				wait = bo.Next()
			default:
				send(tailEvent{err: fmt.Errorf("reading shard %s: %w", id, err)})
				return
			}
			continue
		}
		bo.Reset()
		ev := tailEvent{}
		size := 0
		for _, r := range out.Records {
			size += len(r.Data)
			var ok bool
			if users, ok = kpl.AppendDecode(users[:0], r.Data); !ok {
				ev.records = append(ev.records, r.Data)
				continue
			}
			// As the KCL (and consumer): an aggregate with a user record outside the
			// shard's range is dropped whole.
			if hasRange && !kpl.AllInRange(users, rng) {
				ev.dropped += len(users)
				continue
			}
			for _, u := range users {
				ev.records = append(ev.records, u.Data)
			}
		}
		if n := len(out.Records); n > 0 {
			lastSeq = aws.ToString(out.Records[n-1].SequenceNumber)
		}
		if (len(ev.records) > 0 || ev.dropped > 0) && !send(ev) {
			return
		}
		if aws.ToString(out.NextShardIterator) == "" {
			send(tailEvent{ended: true})
			return
		}
		iter = *out.NextShardIterator
		gap := consumer.MinGetRecordsInterval
		if g := time.Duration(int64(size) * int64(time.Second) / consumer.ReadBytesPerSecond); g > gap {
			gap = g
		}
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			gap = tailIdle
		}
		wait = time.Until(callAt.Add(gap))
	}
}

// sleepCtx waits d, or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

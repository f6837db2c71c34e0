package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/jsonx"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// S3API is the subset of the S3 client the query engine calls.
type S3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Defaults and limits.
const (
	// DefaultParallelism is how many objects a query reads at once unless told otherwise.
	DefaultParallelism = 8
	// DefaultSlack is how far a record's own time may lie outside its partition's time span
	// (records that arrive late, clocks that run ahead) and still come back in order.
	DefaultSlack = 15 * time.Minute
	// DefaultSortBuffer bounds the bytes of matching records a time-ordered query holds.
	DefaultSortBuffer = 256 << 20
	// DefaultMemoryBudget bounds the memory of the objects a query reads at once (see
	// [Request.MemoryBudget]): 512 MiB, about 85 MiB of stored objects.
	DefaultMemoryBudget = 512 << 20
	// ObjectMemoryFactor is what an object in flight is counted for against
	// [Request.MemoryBudget], as a multiple of its stored size: its bytes, plus what
	// decoding makes of them (decompressed NDJSON and its records; a Parquet object's
	// columns, a row group at a time, or all of them for a time-ordered query).
	ObjectMemoryFactor = 6
)

// maxPruneSteps bounds the minutes a time range is walked to find its partitions; a longer
// range lists the template's literal prefix and prunes keys one by one instead.
const maxPruneSteps = 2_000_000

// Order is the order in which a query returns records.
type Order uint8

// The orders.
const (
	// OrderAsc returns records by time, oldest first (the default).
	OrderAsc Order = iota
	// OrderDesc returns records by time, newest first: exactly the reverse of OrderAsc.
	OrderDesc
	// OrderNone returns records in archive order (object keys, then records in each
	// object) as they are read, holding no more than the objects being read: for exports
	// and aggregates.
	OrderNone
)

func (o Order) String() string {
	switch o {
	case OrderAsc:
		return "asc"
	case OrderDesc:
		return "desc"
	case OrderNone:
		return "none"
	}
	return fmt.Sprintf("order(%d)", o)
}

// ParseOrder reads an order name: asc (or ""), desc or none.
func ParseOrder(s string) (Order, error) {
	switch strings.ToLower(s) {
	case "", "asc":
		return OrderAsc, nil
	case "desc":
		return OrderDesc, nil
	case "none":
		return OrderNone, nil
	}
	return 0, fmt.Errorf("unknown order %q (want asc, desc or none)", s)
}

// ErrSortBuffer is wrapped by the error of a time-ordered query that would hold more
// matching records than [Request.SortBuffer] allows.
var ErrSortBuffer = errors.New("query: too many matching records to sort")

// Request describes one query of the archive.
type Request struct {
	// Bucket holds the archive.
	Bucket string
	// Prefix is the archive's key template, as the sink was configured. Default:
	// prefix.DefaultArchive.
	Prefix string
	// From and To bound the records' time, inclusive and exclusive; zero means unbounded.
	From, To time.Time
	// Where filters records; every condition must hold.
	Where Filter
	// Order is the order of the results. Default: [OrderAsc].
	Order Order
	// Limit stops the query after this many matching records, the first in Order; 0
	// means no limit.
	Limit int
	// Parallelism is how many objects are fetched and decoded at once, each on its own
	// goroutine (so a scan uses every core). Default: [DefaultParallelism].
	Parallelism int
	// MemoryBudget bounds, in bytes, the memory of the objects being fetched, decoded, or
	// waiting to be returned in order: each counts as [ObjectMemoryFactor] times its stored
	// size, and an object is fetched only when the budget has room for it (or when no other
	// object is in flight, so that one larger than the budget is still read, alone). It does
	// not count the records a time-ordered query holds (see SortBuffer). Default:
	// [DefaultMemoryBudget].
	MemoryBudget int64
	// TimeFields are the JSON members holding a record's time, tried in order, for an exact
	// From/To filter on each record. Set them to what the sink partitions by (its time
	// field). Default: none — the sink's default partitions by arrival time, which NDJSON
	// records do not carry, so the range is applied to partitions only (hour granularity
	// with the default template). Records without a readable time are kept. Records are
	// ordered by the first of TimeFields, or of [encode.DefaultFields] Time when unset.
	TimeFields []string
	// Slack is how far a record's time may lie outside its partition's span and still be
	// returned in order: a time-ordered query holds records that close to the next
	// partition until that partition is read. Default: [DefaultSlack].
	Slack time.Duration
	// SortBuffer bounds, in bytes, the matching records a time-ordered query holds; a query
	// that needs more fails with [ErrSortBuffer]. Default: [DefaultSortBuffer].
	SortBuffer int64
	// KinlogID adds to each record its kinlog identity, as the member [IDField] (see
	// [Run]), so that filters, projections and the output see it.
	KinlogID bool

	// rowPath turns off the columnar read of Parquet objects (readParquet): every record is
	// decoded, then filtered. For tests that compare the two.
	rowPath bool
}

// IDField is the member [Request.KinlogID] adds to records: the Parquet column that holds
// a record's kinlog identity.
const IDField = "kinlog_id"

// Stats counts the work one query did.
type Stats struct {
	Prefixes       int   // key prefixes listed
	ObjectsListed  int   // archive objects found under them
	ObjectsRead    int64 // objects fetched (after pruning)
	BytesRead      int64 // stored (compressed) bytes fetched
	RecordsScanned int64
	RecordsMatched int64 // records returned
	// RowGroups counts the row groups of the Parquet objects read, and RowGroupsPruned
	// those of them skipped after reading only their small columns (by time statistics,
	// or because no row passed the conditions on dictionary columns such as level).
	RowGroups, RowGroupsPruned int64
}

// errLimit ends a query that reached its limit.
var errLimit = errors.New("limit reached")

// Run executes req against the archive and calls emit, from one goroutine, with every
// matching record in req.Order as one line of JSON (without the newline). The record's
// bytes are valid only during the call (their buffer is reused): copy what you keep.
//
// # Records
//
// Records come back as [encode.Decoder] gives them: the same bytes whichever encoding
// (NDJSON, Parquet, records as received) archived them.
//
// # Identity
//
// With [Request.KinlogID], each record from a Parquet object gets its kinlog identity
// (the kinlog_id column: "<origin>/<seq>", or "<origin>/<seq>+<span>") as a last member,
// "kinlog_id":"…", before filters apply; a top-level member of that name the record has of
// its own is dropped, so the member always is the archive's. Records without an identity
// have no such member (--where 'kinlog_id missing' finds them): records the producer sent
// without one, every record of an NDJSON or records-as-received object (those store the
// record alone), and records of Parquet files written before the column existed.
//
// # Order and memory
//
// With [OrderAsc] or [OrderDesc], records are ordered by their own time (see
// [Request.TimeFields]); a record without one takes the time of the record before it in
// its object (or after it, at the start of an object; or its partition's start when no
// record of the object has a time), so that continuation lines stay with their record.
// Equal times keep archive order, and OrderDesc is the exact reverse of OrderAsc.
//
// When the archive template's time can be read back from keys (the default
// dt=…/hour=… and any template of numeric date fields), partitions are read in time
// order: after each partition, the records that no later partition can precede (given
// [Request.Slack]) are returned, so a query holds about one partition's matching records
// (one hour with the default template) and a limit stops reading once it is reached. With a
// limit of N, no more than about 2N records are held. Otherwise every matching record is
// held and sorted at the end. In both cases [Request.SortBuffer] bounds the bytes held.
//
// With [OrderNone], records come in key order as objects are read, and Run holds at most
// req.Parallelism objects in memory, within req.MemoryBudget. Objects are fetched and
// decoded in parallel whatever the order; the results are those of reading them one at a
// time.
func Run(ctx context.Context, api S3API, req Request, emit func(rec []byte) error) (Stats, error) {
	return run(ctx, api, req, modeRecords, nil, emit, nil)
}

// Count returns how many records match req, in Stats.RecordsMatched: the records [Run]
// would return without a limit, counted without being built where the objects allow (the
// columns of Parquet objects; see [Run] for the filters). req.Order and req.Limit are
// ignored.
func Count(ctx context.Context, api S3API, req Request) (Stats, error) {
	req.Order, req.Limit = OrderNone, 0
	return run(ctx, api, req, modeCount, nil, nil, nil)
}

// run is Run in mode m: for modeRecords emit takes each record, for modeRollup add takes
// each record's time, size and members (a JSON object that holds at least names); for
// modeCount neither is called.
func run(ctx context.Context, api S3API, req Request, m mode, names []string, emit func(rec []byte) error, add func(t time.Time, size int, rec []byte)) (Stats, error) {
	var st Stats
	if req.Bucket == "" {
		return st, errors.New("query: no bucket")
	}
	if req.Prefix == "" {
		req.Prefix = prefix.DefaultArchive
	}
	if req.Parallelism <= 0 {
		req.Parallelism = DefaultParallelism
	}
	if req.Slack <= 0 {
		req.Slack = DefaultSlack
	}
	if req.SortBuffer <= 0 {
		req.SortBuffer = DefaultSortBuffer
	}
	if req.MemoryBudget <= 0 {
		req.MemoryBudget = DefaultMemoryBudget
	}
	if req.Order > OrderNone {
		return st, fmt.Errorf("query: unknown order %v", req.Order)
	}
	if !req.From.IsZero() && !req.To.IsZero() && !req.From.Before(req.To) {
		return st, fmt.Errorf("query: --from %s is not before --to %s", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339))
	}
	tpl, err := prefix.Parse(req.Prefix, prefix.AllowTimestamp|prefix.AllowQuery)
	if err != nil {
		return st, fmt.Errorf("query: archive prefix: %w", err)
	}
	prefixes := Prefixes(tpl, req.From, req.To)
	st.Prefixes = len(prefixes)
	var objs []object
	for _, p := range prefixes {
		found, err := listObjects(ctx, api, req.Bucket, p)
		if err != nil {
			return st, err
		}
		objs = append(objs, found...)
	}
	st.ObjectsListed = len(objs)
	sc := newScan(&req, m, names)
	groups := plan(tpl, objs, req.Order)
	var order []object
	for _, g := range groups {
		order = append(order, g.objs...)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// An ordered pipeline: fetchers fill results in parallel, the caller's goroutine takes
	// them in plan order. The semaphore bounds objects fetched or held, and the memory
	// budget their size: the dispatcher waits for the caller's goroutine to hand back the
	// cost of the objects it is done with.
	results := make([]chan objectResult, len(order))
	for i := range results {
		results[i] = make(chan objectResult, 1)
	}
	sem := make(chan struct{}, req.Parallelism)
	released := make(chan int64, len(order))
	var wg sync.WaitGroup
	var statsMu sync.Mutex
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		var inFlight int64
		for i, o := range order {
			fail := func() {
				for _, ch := range results[i:] {
					ch <- objectResult{err: ctx.Err()}
				}
			}
			for c := objectCost(o); inFlight > 0 && inFlight+c > req.MemoryBudget; {
				select {
				case n := <-released:
					inFlight -= n
				case <-ctx.Done():
					fail()
					return
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				fail()
				return
			}
			inFlight += objectCost(o)
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := readObject(ctx, api, &req, sc, o)
				statsMu.Lock()
				st.ObjectsRead++
				st.BytesRead += r.stored
				st.RecordsScanned += int64(r.scanned)
				st.RowGroups += r.groups
				st.RowGroupsPruned += r.pruned
				statsMu.Unlock()
				results[i] <- r
			}()
		}
	}()

	out := func(rec []byte) error {
		st.RecordsMatched++
		if err := emit(rec); err != nil {
			return err
		}
		if req.Limit > 0 && st.RecordsMatched >= int64(req.Limit) {
			return errLimit
		}
		return nil
	}
	srt := &sorter{desc: req.Order == OrderDesc, max: req.SortBuffer}
	var runErr error
	for i, o := range order {
		r := <-results[i]
		<-sem
		if r.err != nil {
			runErr = r.err
			break
		}
		switch {
		case m == modeCount:
			st.RecordsMatched += r.count
		case m == modeRollup:
			for k, rec := range r.recs {
				add(r.tts[k], r.sizes[k], rec)
			}
			st.RecordsMatched += int64(len(r.recs))
		case req.Order == OrderNone:
			for _, rec := range r.recs {
				if runErr = out(rec); runErr != nil {
					break
				}
			}
		default:
			srt.add(r.recs, r.times, uint64(o.rank))
			if req.Limit > 0 {
				srt.trim(req.Limit - int(st.RecordsMatched))
			}
			if srt.held > srt.max {
				g := groups[o.group]
				runErr = fmt.Errorf("%w: more than %s of matching records %s, with %v of slack; narrow the time range or the filter, set a limit, or read in archive order",
					ErrSortBuffer, size(srt.max), g.describe(), req.Slack)
			} else if o.last {
				runErr = srt.emit(groups, o.group, req.Slack, out)
			}
		}
		putDecoder(r.dec)
		released <- objectCost(o) // buffered for every object: never blocks
		if runErr != nil {
			break
		}
	}
	if errors.Is(runErr, errLimit) {
		runErr = nil
	}
	// Stop fetching (a limit, an error, or the end), then wait for every goroutine and
	// hand back the decoders of results nobody took.
	cancel()
	<-dispatched
	wg.Wait()
	for _, ch := range results {
		select {
		case r := <-ch:
			putDecoder(r.dec)
		default:
		}
	}
	return st, runErr
}

// objectCost is what an object counts for against Request.MemoryBudget.
func objectCost(o object) int64 { return max(o.size, 1) * ObjectMemoryFactor }

type object struct {
	key   string
	size  int64
	cfg   encode.Config
	rank  int  // position in the archive's time-then-key order
	group int  // index of its group in the plan
	last  bool // last object of its group
	// start is its partition's start in Unix nanoseconds (0 when keys do not say it): the
	// sort time of its records when none of them has a time.
	start int64
}

// group is the objects of one partition time span, or of the whole listing when the
// template's time cannot be read back from keys.
type group struct {
	start, end time.Time
	known      bool
	objs       []object
}

func (g *group) describe() string {
	if !g.known {
		return "under the prefix (keys do not say their time, so all are sorted at once)"
	}
	return fmt.Sprintf("in the partitions of %s to %s", g.start.Format(time.RFC3339), g.end.Format(time.RFC3339))
}

// plan orders the objects for reading: by partition time span (newest first for
// OrderDesc), then key; or by key alone for OrderNone, or when a key does not follow the
// template's time.
func plan(tpl *prefix.Template, objs []object, order Order) []group {
	sort.Slice(objs, func(i, j int) bool { return objs[i].key < objs[j].key })
	one := func() []group {
		g := group{objs: objs}
		for i := range g.objs {
			g.objs[i].rank = i
		}
		return []group{g}
	}
	if order == OrderNone || len(objs) == 0 {
		return finishPlan(one())
	}
	pt, err := newPartitionTimes(tpl)
	if err != nil {
		return finishPlan(one())
	}
	type span struct{ start, end time.Time }
	byStart := map[span][]object{}
	for _, o := range objs {
		s, e, ok := pt.span(o.key)
		if !ok {
			return finishPlan(one())
		}
		byStart[span{s, e}] = append(byStart[span{s, e}], o)
	}
	var groups []group
	for sp, os := range byStart {
		groups = append(groups, group{start: sp.start, end: sp.end, known: true, objs: os})
	}
	slices.SortFunc(groups, func(a, b group) int { return a.start.Compare(b.start) })
	rank := 0
	for gi := range groups {
		for oi := range groups[gi].objs {
			groups[gi].objs[oi].rank = rank
			rank++
		}
	}
	if order == OrderDesc {
		slices.Reverse(groups)
	}
	return finishPlan(groups)
}

// finishPlan marks each object's group and the last object of each group.
func finishPlan(groups []group) []group {
	for gi := range groups {
		g := &groups[gi]
		for oi := range g.objs {
			g.objs[oi].group = gi
			g.objs[oi].start = unixNano(g.start)
			if !g.known {
				g.objs[oi].start = 0
			}
		}
		if n := len(g.objs); n > 0 {
			g.objs[n-1].last = true
		}
	}
	return groups
}

var (
	minSortTime = time.Unix(0, math.MinInt64)
	maxSortTime = time.Unix(0, math.MaxInt64)
)

// size writes a byte count in binary units.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.4g GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.4g MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.4g KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// unixNano is t in nanoseconds, clamped to what int64 holds.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minSortTime):
		return math.MinInt64
	case t.After(maxSortTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

type objectResult struct {
	recs    [][]byte // matching records, pointing into dec
	times   []int64  // their sort times (nil for OrderNone)
	dec     *decoder // where recs and times live, until the result is used
	scanned int
	stored  int64
	err     error
	// count is the number of matching records (modeCount).
	count int64
	// tts and sizes are each record's time and size (modeRollup).
	tts   []time.Time
	sizes []int
	// groups and pruned count the Parquet row groups read, and those skipped.
	groups, pruned int64
}

// decoder turns an object into matching records, with its scratch space.
type decoder struct {
	encode.Decoder
	times []int64
	keep  []bool
	// withID holds the records with their identities added (Request.KinlogID).
	withID []byte
	ends   []int
	doc    encode.Doc
	// The columnar read of Parquet objects (see readParquet).
	col   colState
	out   []byte
	spans []span
	recs  [][]byte
	tts   []time.Time
	sizes []int
}

// bufPool recycles the buffers objects are read into, and decoderPool the decoders (with
// their buffers) that turn them into records: a scan then allocates a few buffers instead
// of several per object.
var (
	bufPool     sync.Pool
	decoderPool = sync.Pool{New: func() any { return new(decoder) }}
)

// maxPooledBuf keeps unusually large buffers out of the pool.
const maxPooledBuf = 64 << 20

func getBuf() []byte {
	if p, ok := bufPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

func putBuf(b []byte) {
	if cap(b) > 0 && cap(b) <= maxPooledBuf {
		bufPool.Put(&b)
	}
}

func putDecoder(d *decoder) {
	if d != nil {
		decoderPool.Put(d)
	}
}

// Prefixes returns the key prefixes that hold every object whose records' times fall in
// [from, to): the template evaluated at each minute of the range, cut before its first
// partitionKeyFromQuery value, without duplicates or prefixes covered by shorter ones.
// An unbounded or very long range gives the template's literal prefix.
func Prefixes(tpl *prefix.Template, from, to time.Time) []string {
	if from.IsZero() || to.IsZero() || to.Sub(from)/time.Minute > maxPruneSteps {
		return []string{tpl.LiteralPrefix()}
	}
	// A field value no record can have: EscapeValue turns NUL into "%00", where the
	// rendered key is cut.
	fields := make([]string, len(tpl.Fields()))
	for i := range fields {
		fields[i] = "\x00"
	}
	seen := map[string]bool{}
	var out []string
	var buf []byte
	for t := from.UTC().Truncate(time.Minute); t.Before(to); t = t.Add(time.Minute) {
		buf = tpl.Append(buf[:0], &prefix.Values{Time: t, Fields: fields})
		p := string(buf)
		if i := strings.Index(p, "%00"); i >= 0 {
			p = p[:i]
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	// Drop prefixes that a shorter listed prefix already covers.
	kept := out[:0]
	for _, p := range out {
		if n := len(kept); n > 0 && strings.HasPrefix(p, kept[n-1]) {
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// isArchiveObject reports whether a key names an archive object: its name ends in an
// extension the encoder writes (encode.ObjectConfig), and it is not a rollup object, which
// ends like gzip NDJSON.
func isArchiveObject(key string) (encode.Config, bool) {
	if strings.HasSuffix(key, rollup.Extension) {
		return encode.Config{}, false
	}
	return encode.ObjectConfig(key)
}

func listObjects(ctx context.Context, api S3API, bucket, pfx string) ([]object, error) {
	objs, err := listKeys(ctx, api, bucket, pfx, func(k string) bool { _, ok := isArchiveObject(k); return ok })
	for i := range objs {
		objs[i].cfg, _ = isArchiveObject(objs[i].key)
	}
	return objs, err
}

// listKeys lists the objects under pfx whose keys satisfy keep.
func listKeys(ctx context.Context, api S3API, bucket, pfx string, keep func(string) bool) ([]object, error) {
	var out []object
	var token *string
	for {
		resp, err := api.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(pfx), ContinuationToken: token})
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", bucket, pfx, err)
		}
		for _, o := range resp.Contents {
			if k := aws.ToString(o.Key); keep(k) {
				out = append(out, object{key: k, size: aws.ToInt64(o.Size)})
			}
		}
		if !aws.ToBool(resp.IsTruncated) || resp.NextContinuationToken == nil {
			return out, nil
		}
		token = resp.NextContinuationToken
	}
}

// readObject fetches and decodes one object, and keeps its matching records with their
// sort times.
func readObject(ctx context.Context, api S3API, req *Request, sc *scan, o object) objectResult {
	var r objectResult
	resp, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(req.Bucket), Key: aws.String(o.key)})
	if err != nil {
		r.err = fmt.Errorf("reading s3://%s/%s: %w", req.Bucket, o.key, err)
		return r
	}
	defer resp.Body.Close()
	body := bytes.NewBuffer(getBuf())
	if n := aws.ToInt64(resp.ContentLength); n > 0 {
		body.Grow(int(n) + bytes.MinRead)
	}
	_, err = body.ReadFrom(resp.Body)
	data := body.Bytes()
	r.stored = int64(len(data))
	if err != nil {
		putBuf(data)
		r.err = fmt.Errorf("reading s3://%s/%s: %w", req.Bucket, o.key, err)
		return r
	}
	r.dec = decoderPool.Get().(*decoder)
	if o.cfg.Format == encode.Parquet && !req.rowPath {
		err := r.dec.readParquet(data, req, sc, o.start, &r)
		putBuf(data)
		if err != nil {
			r.err = fmt.Errorf("decoding s3://%s/%s: %w", req.Bucket, o.key, err)
		}
		return r
	}
	recs, err := r.dec.Decode(data, o.cfg)
	putBuf(data)
	if err != nil {
		r.err = fmt.Errorf("decoding s3://%s/%s: %w", req.Bucket, o.key, err)
		return r
	}
	r.scanned = len(recs)
	if req.KinlogID {
		recs = r.dec.addIDs(recs)
	}
	r.recs, r.times = r.dec.match(recs, req, o.start)
	switch sc.mode {
	case modeCount:
		r.count, r.recs = int64(len(r.recs)), nil
	case modeRollup:
		d := &r.dec.doc
		r.dec.tts, r.dec.sizes = r.dec.tts[:0], r.dec.sizes[:0]
		for _, rec := range r.recs {
			_ = d.Parse(rec)
			t, _, _ := encode.TimeOf(d, sc.timeFields, encode.TimeAuto)
			r.dec.tts = append(r.dec.tts, t)
			r.dec.sizes = append(r.dec.sizes, len(rec))
		}
		r.tts, r.sizes = r.dec.tts, r.dec.sizes
	}
	return r
}

// addIDs rewrites the records of the last Decode with their identities (see [Run]), in
// place in recs: those it changes point into dec.withID.
func (dec *decoder) addIDs(recs [][]byte) [][]byte {
	dec.withID, dec.ends = dec.withID[:0], dec.ends[:0]
	for i, rec := range recs {
		id := dec.ID(i)
		if id == "" && !bytes.Contains(rec, idMember) {
			dec.ends = append(dec.ends, -1) // as it is (every record of an NDJSON object)
			continue
		}
		dec.withID = appendID(dec.withID, rec, id, &dec.doc)
		dec.ends = append(dec.ends, len(dec.withID))
	}
	start := 0
	for i, end := range dec.ends {
		if end >= 0 {
			recs[i] = dec.withID[start:end:end]
			start = end
		}
	}
	return recs
}

// idMember is how the decoder writes the member name of [IDField] (it needs no escape).
var idMember = []byte(`"` + IDField + `"`)

// appendID appends rec, a record as the decoder gives it (a canonical JSON object), with
// id as its last member [IDField] and without a top-level member of that name of its own;
// without id, only the latter.
func appendID(dst, rec []byte, id string, d *encode.Doc) []byte {
	if bytes.Contains(rec, idMember) {
		if d.Parse(rec) == nil && d.Kind == encode.Object {
			if _, ok := d.Get(IDField); ok {
				dst = append(dst, '{')
				n := 0
				for i := range d.Len() {
					f := d.Field(i)
					if f.Name() == IDField {
						continue
					}
					if n > 0 {
						dst = append(dst, ',')
					}
					// Canonical: Key is written as the decoder wrote it.
					dst = append(dst, '"')
					dst = append(dst, f.Key...)
					dst = append(dst, '"', ':')
					dst = append(dst, f.Value...)
					n++
				}
				return closeWithID(dst, n > 0, id)
			}
		}
	}
	if id == "" || len(rec) < 2 || rec[len(rec)-1] != '}' {
		return append(dst, rec...)
	}
	dst = append(dst, rec[:len(rec)-1]...)
	return closeWithID(dst, len(rec) > 2, id)
}

// closeWithID ends an object whose members have been written (members says whether there
// are any) with id as its member [IDField], if id is not empty.
func closeWithID(dst []byte, members bool, id string) []byte {
	if id != "" {
		if members {
			dst = append(dst, ',')
		}
		dst = append(dst, idMember...)
		dst = append(dst, ':')
		dst = jsonx.AppendString(dst, id)
	}
	return append(dst, '}')
}

// Sort times of records: noTime for a record without a time of its own, unread for one
// not parsed yet.
const (
	noTime = math.MinInt64
	unread = math.MinInt64 + 1
)

// match filters an object's records in place and, for time-ordered queries, returns their
// sort times (see [Run]); start is the time of records in an object without any. A record
// that the filter rules out from its bytes alone is not parsed.
func (dec *decoder) match(recs [][]byte, req *Request, start int64) ([][]byte, []int64) {
	sorting := req.Order != OrderNone
	exact := len(req.TimeFields) > 0 && (!req.From.IsZero() || !req.To.IsZero())
	fields := req.TimeFields
	if len(fields) == 0 {
		fields = encode.DefaultFields.Time
	}
	var doc encode.Doc
	var times []int64
	if sorting {
		times = slices.Grow(dec.times[:0], len(recs))[:len(recs)]
		dec.times = times
	}
	// timeOf returns record i's own time (parsing it unless doc already holds it).
	timeOf := func(i int, parsed bool) (time.Time, bool) {
		if !parsed {
			_ = doc.Parse(recs[i])
		}
		t, _, ok := encode.TimeOf(&doc, fields, encode.TimeAuto)
		if sorting {
			times[i] = noTime
			if ok {
				times[i] = unixNano(t)
			}
		}
		return t, ok
	}
	keep := slices.Grow(dec.keep[:0], len(recs))[:len(recs)]
	clear(keep)
	dec.keep = keep
	for i, rec := range recs {
		if sorting {
			times[i] = unread
		}
		if req.Where.skip(rec) {
			continue
		}
		_ = doc.Parse(rec)
		if sorting || exact {
			t, ok := timeOf(i, true)
			if exact && ok && ((!req.From.IsZero() && t.Before(req.From)) || (!req.To.IsZero() && !t.Before(req.To))) {
				continue
			}
		}
		keep[i] = req.Where.matchDoc(rec, &doc)
	}
	n := 0
	for i := range recs {
		if !keep[i] {
			continue
		}
		if sorting && times[i] == noTime {
			// The time of the record before it, or at the start of the first one after.
			var t int64 = noTime
			for j := i - 1; j >= 0 && t == noTime; j-- {
				if times[j] == unread {
					timeOf(j, false)
				}
				t = times[j]
			}
			for j := i + 1; j < len(recs) && t == noTime; j++ {
				if times[j] == unread {
					timeOf(j, false)
				}
				t = times[j]
			}
			if t == noTime {
				t = start
			}
			times[i] = t
		}
		recs[n] = recs[i]
		if sorting {
			times[n] = times[i]
		}
		n++
	}
	if sorting {
		times = times[:n]
	}
	return recs[:n], times
}

// sorter holds matching records of a time-ordered query until they can be returned.
type sorter struct {
	desc  bool
	items []sortItem
	slab  []byte   // where held records are copied
	used  [][]byte // slabs filled before slab
	free  [][]byte // slabs to reuse
	held  int64    // bytes held, counting each record's bookkeeping
	max   int64
}

type sortItem struct {
	t   int64
	seq uint64 // archive order: object rank, then index in the object
	rec []byte
}

// itemOverhead is what a held record costs beside its bytes.
const itemOverhead = 48

const slabSize = 1 << 20

func (s *sorter) add(recs [][]byte, times []int64, rank uint64) {
	for i, rec := range recs {
		if cap(s.slab)-len(s.slab) < len(rec) {
			if s.slab != nil {
				s.used = append(s.used, s.slab)
			}
			if n := len(s.free); n > 0 && cap(s.free[n-1]) >= len(rec) {
				s.slab, s.free = s.free[n-1][:0], s.free[:n-1]
			} else {
				s.slab = make([]byte, 0, max(slabSize, len(rec)))
			}
		}
		n := len(s.slab)
		s.slab = append(s.slab, rec...)
		s.items = append(s.items, sortItem{t: times[i], seq: rank<<32 | uint64(i), rec: s.slab[n:len(s.slab):len(s.slab)]})
		s.held += int64(len(rec)) + itemOverhead
	}
}

func (s *sorter) cmp(a, b sortItem) int {
	c := 0
	switch {
	case a.t < b.t:
		c = -1
	case a.t > b.t:
		c = 1
	case a.seq < b.seq:
		c = -1
	case a.seq > b.seq:
		c = 1
	}
	if s.desc {
		return -c
	}
	return c
}

func (s *sorter) sort() { slices.SortFunc(s.items, s.cmp) }

// trim keeps only the first n records in order, when it holds many more (or half its
// bound): no later record can take the place of those dropped.
func (s *sorter) trim(n int) {
	if len(s.items) <= n || (len(s.items) <= 2*n+64 && s.held <= s.max/2) {
		return
	}
	s.sort()
	clear(s.items[n:])
	s.items = s.items[:n]
	s.recount()
}

func (s *sorter) recount() {
	s.held = 0
	for _, it := range s.items {
		s.held += int64(len(it.rec)) + itemOverhead
	}
	if len(s.items) == 0 {
		// Nothing points into the slabs any more: reuse them (up to the bound's worth).
		for _, b := range s.used {
			if int64(len(s.free))*slabSize < s.max && cap(b) == slabSize {
				s.free = append(s.free, b)
			}
		}
		clear(s.used)
		s.used = s.used[:0]
		s.slab = s.slab[:0]
	}
}

// emit returns, in order, the records that no group after group gi in the plan can
// precede: those before the next group's start less slack (after its end plus slack for
// OrderDesc); all of them after the last group.
func (s *sorter) emit(groups []group, gi int, slack time.Duration, out func([]byte) error) error {
	s.sort()
	final := gi == len(groups)-1
	var wm int64
	if !final {
		next := &groups[gi+1]
		if s.desc {
			wm = unixNano(next.end.Add(slack))
		} else {
			wm = unixNano(next.start.Add(-slack))
		}
	}
	k := 0
	for ; k < len(s.items); k++ {
		it := &s.items[k]
		if !final && ((!s.desc && it.t >= wm) || (s.desc && it.t < wm)) {
			break
		}
		if err := out(it.rec); err != nil {
			return err
		}
	}
	n := copy(s.items, s.items[k:])
	clear(s.items[n:])
	s.items = s.items[:n]
	s.recount()
	return nil
}

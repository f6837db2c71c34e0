package producer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/internal/kpl"
)

// The pipeline is the producer's one goroutine that owns every record between Put and its
// result: it aggregates records per predicted shard, cuts PutRecords requests, hands them
// to the sender goroutines, and handles their responses (delivery, retries, TTL, resharding).
// Nothing in this file is touched by any other goroutine, except where noted.

// shard is the pipeline's state for one open shard of the map (or the unmapped pseudo-shard
// used while no shard map is known).
type shard struct {
	id      string
	rng     kpl.HashKeyRange
	ehk     string         // decimal starting hash key: the explicit hash key of its aggregates
	removed bool           // dropped from the map by a refresh
	agg     kpl.Aggregator // the open aggregate, reused for every aggregate of the shard
	aggRecs []entry        // the user records in agg
	ready   []*kentry      // sealed Kinesis records waiting for a request, in order
	waiting int            // its Kinesis records waiting to be retried: until then, it sends nothing
	lim     bucket
}

// kentry is one Kinesis record: a KPL aggregate or a single user record.
type kentry struct {
	shard      *shard // predicted shard
	aggregated bool   // data is a KPL aggregate of recs
	summed     bool   // the aggregate's MD5 trailer is written (by the sender)
	buf        []byte // reusable encoding buffer
	data       []byte
	pk, ehk    string // routing keys sent with the Kinesis record
	recs       []entry
	size       int // bytes counted toward the request limit
	oldest     int64
	attempts   int
	notBefore  int64
	lastErr    error
}

// request is one PutRecords call.
type request struct {
	kes   []*kentry
	input kinesis.PutRecordsInput
	out   *kinesis.PutRecordsOutput
	err   error
}

type suspect struct {
	ke      *kentry
	shardID string
	seq     string
}

type mapState int

const (
	mapLoading mapState = iota
	mapUnknown
	mapKnown
)

// minRefreshGap spaces shard-map refreshes triggered by mismatches.
const minRefreshGap = int64(100 * time.Millisecond)

type pipeline struct {
	p   *Producer
	cfg *config

	state      mapState
	shards     []*shard // open shards sorted by starting hash key
	queues     []*shard // shards plus unmapped, for request building
	unmapped   *shard
	byID       map[string]kpl.HashKeyRange // every shard listed, open or closed
	refreshing bool
	wantMap    bool // a refresh is wanted
	refreshAt  int64
	refreshErr int
	suspects   []suspect

	retries     []*kentry
	due         []*kentry // scratch list of dueRetries
	retryAt     int64     // when the failed records of the response being handled are due
	expired     []*kentry
	inflight    int
	sendAll     bool
	lingering   bool
	lingerStart int64
	limitedAt   int64 // earliest time a rate-limited shard can send; -1 if none
	readyCount  int
	readyBytes  int
	rr          int
	closing     bool
	aborting    bool

	expiredRecs []entry // scratch list of expire

	freeKEs  []*kentry
	freeReqs []*request
	hashes   hashCache
	lat      [len(latencyBounds) + 1]uint64
	floors   floorTracker   // the producer's own records, for the identity floor
	one      kpl.Aggregator // scratch for aggregates of one
}

func newPipeline(p *Producer) *pipeline {
	pl := &pipeline{p: p, cfg: &p.cfg, unmapped: &shard{}, limitedAt: -1}
	pl.queues = []*shard{pl.unmapped}
	return pl
}

func (p *Producer) now() int64 { return int64(time.Since(p.epoch)) }

func (pl *pipeline) run() {
	p := pl.p
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	closing := p.closing
	pl.startRefresh()
	for {
		if pl.state != mapLoading {
			pl.step()
		}
		if pl.closing && pl.drained() {
			break
		}
		var timerC <-chan time.Time
		if at := pl.nextWake(); at >= 0 {
			timer.Reset(time.Duration(at - p.now()))
			timerC = timer.C
		}
		select {
		case <-p.buf.wake:
			p.buf.wakeFlag.Store(false)
		case req := <-p.doneCh:
			pl.complete(req)
		case r := <-p.refreshCh:
			pl.refreshed(r)
		case <-timerC:
		case <-closing:
			pl.closing = true
			closing = nil
		case <-p.abort:
			pl.abortAll()
			pl.shutdown()
			return
		}
		timer.Stop()
	}
	pl.shutdown()
}

func (pl *pipeline) drained() bool {
	b := pl.p.buf
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.emptyLocked()
}

func (pl *pipeline) shutdown() {
	p := pl.p
	close(p.reqCh)
	if pl.refreshing {
		// Let a shard-map refresh finish rather than abort its request, unless Close
		// gives up.
		select {
		case <-p.refreshCh:
		case <-p.abort:
			p.lifeCancel()
			<-p.refreshCh
		}
		pl.refreshing = false
	}
	p.lifeCancel()
	p.workers.Wait()
	p.summer.Close()
	if p.spool != nil {
		p.kept = p.spool.stop()
	}
	close(p.stopped)
}

// step does every piece of work that is due.
func (pl *pipeline) step() {
	p := pl.p
	now := p.now()
	pl.drain(now)
	if len(pl.retries) > 0 {
		pl.dueRetries(now)
	}
	if pl.wantMap && !pl.refreshing && now >= pl.refreshAt {
		pl.startRefresh()
	}
	flush := pl.closing || p.flushing.Load() > 0
	if pl.lingering && (flush || now-pl.lingerStart >= int64(pl.cfg.linger)) {
		for _, s := range pl.shards {
			pl.seal(s)
		}
		pl.lingering = false
		pl.sendAll = true
	}
	pl.dispatch(now, flush)
	if pl.readyCount == 0 {
		pl.sendAll = false
	}
}

// nextWake returns when the pipeline must wake without an event, or -1.
func (pl *pipeline) nextWake() int64 {
	at := int64(-1)
	earliest := func(t int64) {
		if at < 0 || t < at {
			at = t
		}
	}
	if pl.state == mapLoading {
		return -1
	}
	if pl.lingering {
		earliest(pl.lingerStart + int64(pl.cfg.linger))
	}
	for _, ke := range pl.retries {
		earliest(ke.notBefore)
	}
	if pl.limitedAt >= 0 && pl.inflight < pl.cfg.maxInFlight {
		earliest(pl.limitedAt)
	}
	if pl.wantMap && !pl.refreshing {
		earliest(pl.refreshAt)
	}
	return at
}

// drain takes the records put since the last call.
func (pl *pipeline) drain(now int64) {
	p := pl.p
	head := p.buf.take()
	if head == nil {
		return
	}
	for b := head; b != nil; b = b.next {
		for i := range b.entries[:b.n] {
			e := &b.entries[i]
			e.enq = now
			if !e.hashed {
				e.hash = pl.hashes.get(e.rec.PartitionKey)
				e.hashed = true
			}
			if e.own() {
				pl.floors.add(e.seq)
			}
			pl.add(e)
		}
		clear(b.entries[:b.n])
		b.n = 0
	}
	p.buf.recycle(head)
}

// route returns the shard a hash key maps to, or the unmapped pseudo-shard.
func (pl *pipeline) route(h kpl.HashKey) *shard {
	if pl.state != mapKnown {
		return pl.unmapped
	}
	lo, hi := 0, len(pl.shards)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if pl.shards[m].rng.Start.Compare(h) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return pl.unmapped
	}
	s := pl.shards[lo-1]
	if h.Compare(s.rng.End) > 0 {
		return pl.unmapped
	}
	return s
}

// add routes one user record into its shard's aggregate (or as a single Kinesis record).
// It copies *e; e must not point into a list that add appends to.
func (pl *pipeline) add(e *entry) {
	if !pl.lingering || e.enq < pl.lingerStart {
		pl.lingering = true
		pl.lingerStart = e.enq
	}
	s := pl.route(e.hash)
	if s == pl.unmapped || !pl.cfg.aggregate {
		pl.single(s, e)
		return
	}
	kr := kpl.Record{PartitionKey: e.rec.PartitionKey, ExplicitHashKey: e.rec.ExplicitHashKey, Data: e.rec.Data, ID: pl.identity(e)}
	if s.agg.TryAdd(kr, pl.cfg.maxAggregateSize) {
		s.aggRecs = append(s.aggRecs, *e)
		return
	}
	if len(s.aggRecs) == 0 { // too big for any aggregate
		pl.single(s, e)
		return
	}
	pl.seal(s)
	if s.agg.TryAdd(kr, pl.cfg.maxAggregateSize) {
		s.aggRecs = append(s.aggRecs, *e)
		return
	}
	pl.single(s, e)
}

// single queues e as its own Kinesis record, routed by its own keys: an aggregate of one
// when it carries an identity and fits, else the record itself.
func (pl *pipeline) single(s *shard, e *entry) {
	ke := pl.newKE()
	ke.shard = s
	ke.recs = append(ke.recs, *e)
	ke.oldest = e.enq
	if !pl.wrapSingle(ke, e) {
		ke.setSingle()
	}
	pl.pushReady(s, ke)
}

// wrapSingle makes ke an aggregate of e alone, routed by e's keys, when e has an identity
// and the aggregate fits a Kinesis record.
func (pl *pipeline) wrapSingle(ke *kentry, e *entry) bool {
	id := pl.identity(e)
	if id.IsZero() {
		return false
	}
	a := &pl.one
	a.Reset()
	r := kpl.Record{PartitionKey: e.rec.PartitionKey, ExplicitHashKey: e.rec.ExplicitHashKey, Data: e.rec.Data, ID: id}
	if !a.TryAdd(r, pl.cfg.maxRecordSize-len(e.rec.PartitionKey)) {
		return false
	}
	ke.aggregated = true
	ke.buf = a.AppendEncodeUnsummed(ke.buf[:0])
	ke.data = ke.buf
	ke.pk, ke.ehk = e.rec.PartitionKey, e.rec.ExplicitHashKey
	ke.size = len(ke.data) + len(ke.pk) + len(ke.ehk)
	a.Reset()
	return true
}

func (ke *kentry) setSingle() {
	e := &ke.recs[0]
	ke.aggregated = false
	ke.data = e.rec.Data
	ke.pk, ke.ehk = e.rec.PartitionKey, e.rec.ExplicitHashKey
	ke.size = len(ke.data) + len(ke.pk) + len(ke.ehk)
}

// seal closes the shard's open aggregate into a Kinesis record ready to send.
func (pl *pipeline) seal(s *shard) {
	n := len(s.aggRecs)
	if n == 0 {
		return
	}
	ke := pl.newKE()
	ke.shard = s
	ke.recs, s.aggRecs = s.aggRecs, ke.recs[:0]
	if cap(s.aggRecs) < n {
		// Size the next aggregate's list like this one (and a quarter more, as aggregates
		// of the same shard vary a little) rather than growing it step by step.
		s.aggRecs = make([]entry, 0, n+n/4)
	}
	ke.oldest = ke.recs[0].enq
	for i := 1; i < n; i++ {
		ke.oldest = min(ke.oldest, ke.recs[i].enq)
	}
	if n == 1 && !pl.cfg.identity {
		// The KPL sends a lone record unaggregated; so do we, unless it carries an
		// identity (only an aggregate can).
		ke.setSingle()
	} else {
		ke.aggregated = true
		if need := s.agg.Size(); cap(ke.buf) < need {
			// Room for any aggregate, so that the buffer serves every later one of this
			// kentry (kentries are reused); an exactly sized one was too small for the next
			// aggregate about half the time.
			ke.buf = make([]byte, 0, max(need, pl.cfg.maxAggregateSize))
		}
		ke.buf = s.agg.AppendEncodeUnsummed(ke.buf[:0]) // the sender writes the MD5
		ke.data = ke.buf
		ke.pk = ke.recs[0].rec.PartitionKey
		ke.ehk = s.ehk
		ke.size = len(ke.data) + len(ke.pk) + len(ke.ehk)
	}
	s.agg.Reset()
	pl.pushReady(s, ke)
}

func (pl *pipeline) pushReady(s *shard, ke *kentry) {
	s.ready = append(s.ready, ke)
	pl.readyCount++
	pl.readyBytes += ke.size
}

func (pl *pipeline) pushFront(s *shard, ke *kentry) {
	s.ready = append(s.ready, nil)
	copy(s.ready[1:], s.ready)
	s.ready[0] = ke
	pl.readyCount++
	pl.readyBytes += ke.size
}

// dispatch sends requests while senders are free and enough is ready.
func (pl *pipeline) dispatch(now int64, flush bool) {
	pl.limitedAt = -1
	for pl.inflight < pl.cfg.maxInFlight && pl.readyCount > 0 {
		if !flush && !pl.sendAll && pl.readyCount < pl.cfg.maxRequestEntries && pl.readyBytes < pl.cfg.maxRequestBytes {
			return
		}
		req := pl.build(now)
		dropped := len(pl.expired) > 0
		if dropped {
			for _, ke := range pl.expired {
				pl.expire(ke, now)
			}
			clear(pl.expired)
			pl.expired = pl.expired[:0]
		}
		if len(req.kes) == 0 {
			pl.freeReq(req)
			if dropped && pl.readyCount > 0 && pl.limitedAt < 0 {
				continue // only expired records were dropped; look again
			}
			return
		}
		pl.inflight++
		pl.p.stats.inflight.Store(int64(pl.inflight))
		pl.p.reqCh <- req // never blocks: capacity is maxInFlight
	}
}

// limitChunkDiv sets the chunk a rate-limited shard waits for: 1/limitChunkDiv of its
// bucket (a quarter second of its budget). Without it a shard at its limit would send each
// aggregate on its own as soon as the bucket pays for it — hundreds of one-aggregate
// requests, each signed and sent, for the same records.
const limitChunkDiv = 4

// chunk returns what a rate-limited shard waits for before it sends: its ready records, up
// to a quarter of its bucket in bytes and in records.
func (s *shard) chunk() (bytes, recs float64) {
	byteLimit, recLimit := s.lim.byteCap/limitChunkDiv, s.lim.recCap/limitChunkDiv
	for _, ke := range s.ready {
		bytes += float64(ke.size)
		recs++
		if bytes >= byteLimit || recs >= recLimit {
			break
		}
	}
	return min(bytes, byteLimit), min(recs, recLimit)
}

// build takes ready Kinesis records, round robin over shards, within the request limits and
// the shards' rate limits. A shard whose bucket cannot pay for a chunk of its ready records
// waits for one rather than sending them a record at a time; it loses no throughput, as the
// chunk is well below the bucket's capacity.
func (pl *pipeline) build(now int64) *request {
	req := pl.newReq()
	bytes := 0
	limited := pl.cfg.rateLimit > 0
	n := len(pl.queues)
	start := pl.rr % n
	pl.rr++
	for i := 0; i < n && len(req.kes) < pl.cfg.maxRequestEntries; i++ {
		s := pl.queues[(start+i)%n]
		if len(s.ready) == 0 || s.waiting > 0 {
			// A shard with records waiting to be retried sends nothing until they are
			// due, so that its records go out in order.
			continue
		}
		useLim := limited && s != pl.unmapped
		if useLim {
			s.lim.refill(now)
			if cb, cr := s.chunk(); s.lim.bytes < cb || s.lim.recs < cr {
				if at := s.lim.readyFor(cb, cr, now); pl.limitedAt < 0 || at < pl.limitedAt {
					pl.limitedAt = at
				}
				continue
			}
		}
		taken, takenBytes := 0, 0
		for taken < len(s.ready) && len(req.kes) < pl.cfg.maxRequestEntries {
			ke := s.ready[taken]
			if pl.cfg.ttl > 0 && now-ke.oldest >= int64(pl.cfg.ttl) {
				pl.expired = append(pl.expired, ke)
				taken++
				takenBytes += ke.size
				continue
			}
			if bytes+ke.size > pl.cfg.maxRequestBytes && len(req.kes) > 0 {
				break
			}
			if useLim && !s.lim.take(ke.size) {
				at := s.lim.readyAt(ke.size, now)
				if pl.limitedAt < 0 || at < pl.limitedAt {
					pl.limitedAt = at
				}
				break
			}
			req.kes = append(req.kes, ke)
			bytes += ke.size
			taken++
			takenBytes += ke.size
		}
		if taken > 0 {
			rest := copy(s.ready, s.ready[taken:])
			clear(s.ready[rest:])
			s.ready = s.ready[:rest]
			pl.readyCount -= taken
			pl.readyBytes -= takenBytes
		}
	}
	return req
}

// sender runs PutRecords calls; maxInFlight of them run.
func (p *Producer) sender() {
	defer p.workers.Done()
	var proto *putRecordsProtocol
	var opts []func(*kinesis.Options)
	if !p.cfg.sdkSerializer {
		proto = newPutRecordsProtocol()
		opts = []func(*kinesis.Options){proto.optFn}
	}
	var unsummed [][]byte
	for req := range p.reqCh {
		// Write the aggregates' MD5 trailers, many at once (see kpl.Summer).
		unsummed = unsummed[:0]
		for _, ke := range req.kes {
			if ke.aggregated && !ke.summed {
				unsummed = append(unsummed, ke.data)
				ke.summed = true
			}
		}
		p.summer.SumAll(unsummed)
		clear(unsummed)
		req.prepare(p)
		if proto != nil {
			proto.buf = p.bodies.get()
		}
		ctx, cancel := context.WithTimeout(p.lifeCtx, p.cfg.requestTimeout)
		req.out, req.err = p.client.PutRecords(ctx, &req.input, opts...)
		cancel()
		if proto != nil {
			if req.err == nil {
				p.bodies.put(proto.buf)
			}
			// After an error the HTTP transport may still be reading the body: the
			// buffer is not reused.
			proto.buf = nil
		}
		p.doneCh <- req // never blocks: capacity is maxInFlight
	}
}

// bufferPool keeps request-body buffers for reuse by any sender: a request body is several
// megabytes, and senders take turns. It keeps up to max buffers, one per request in flight:
// at full speed every sender needs one, and a smaller pool made a new body for most requests.
type bufferPool struct {
	mu   sync.Mutex
	bufs [][]byte
	max  int
}

func (b *bufferPool) get() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.bufs); n > 0 {
		buf := b.bufs[n-1]
		b.bufs[n-1] = nil
		b.bufs = b.bufs[:n-1]
		return buf[:0]
	}
	return nil
}

func (b *bufferPool) put(buf []byte) {
	if buf == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bufs) < b.max {
		b.bufs = append(b.bufs, buf)
	}
}

// prepare fills in the PutRecords input.
func (r *request) prepare(p *Producer) {
	r.input.StreamName = p.streamName
	r.input.StreamARN = p.streamARN
	recs := r.input.Records[:0]
	for _, ke := range r.kes {
		e := types.PutRecordsRequestEntry{Data: ke.data, PartitionKey: &ke.pk}
		if ke.ehk != "" {
			e.ExplicitHashKey = &ke.ehk
		}
		recs = append(recs, e)
	}
	r.input.Records = recs
}

// complete handles a finished PutRecords call.
func (pl *pipeline) complete(req *request) {
	p := pl.p
	pl.retryAt = 0
	pl.inflight--
	p.stats.inflight.Store(int64(pl.inflight))
	p.stats.requests.Add(1)
	now := p.now()
	for _, ke := range req.kes {
		for i := range ke.recs {
			ke.recs[i].attempts++
		}
	}
	switch {
	case pl.aborting:
		err := ErrClosed
		if req.err != nil {
			err = fmt.Errorf("%w: request cancelled: %w", ErrClosed, req.err)
		}
		for _, ke := range req.kes {
			pl.failKE(ke, err, true)
		}
	case req.err != nil:
		p.stats.requestErrors.Add(1)
		err := fmt.Errorf("putting records to %s: %w", p.stream, req.err)
		retry := retryableRequestError(req.err)
		for _, ke := range req.kes {
			ke.markUnsure()
			if retry {
				pl.retry(ke, err, now)
			} else {
				pl.failKE(ke, err, false)
			}
		}
	case req.out == nil || len(req.out.Records) != len(req.kes):
		p.stats.requestErrors.Add(1)
		got := 0
		if req.out != nil {
			got = len(req.out.Records)
		}
		err := fmt.Errorf("putting records to %s: response has %d entries for %d records", p.stream, got, len(req.kes))
		for _, ke := range req.kes {
			ke.markUnsure()
			pl.retry(ke, err, now)
		}
	default:
		for i, ke := range req.kes {
			r := &req.out.Records[i]
			if r.ErrorCode != nil {
				ee := &EntryError{Code: *r.ErrorCode}
				if r.ErrorMessage != nil {
					ee.Message = *r.ErrorMessage
				}
				if ee.Code == "ProvisionedThroughputExceededException" {
					p.stats.throttled.Add(1)
				}
				if ee.Retryable() {
					pl.retry(ke, ee, now)
				} else {
					pl.failKE(ke, ee, false)
				}
				continue
			}
			var shardID, seq string
			if r.ShardId != nil {
				shardID = *r.ShardId
			}
			if r.SequenceNumber != nil {
				seq = *r.SequenceNumber
			}
			pl.success(ke, shardID, seq, now)
		}
	}
	pl.freeReq(req)
}

// markUnsure records that ke's records may be in the stream though no response said so.
func (ke *kentry) markUnsure() {
	for i := range ke.recs {
		ke.recs[i].unsure = true
	}
}

func (pl *pipeline) success(ke *kentry, shardID, seq string, now int64) {
	if ke.shard != pl.unmapped && ke.shard.id != shardID {
		// The Kinesis record landed on another shard than the map predicted: the map is
		// stale (a reshard). A single record is routed by its own key, so it is where it
		// belongs. An aggregate's user records belong to that shard only if all their hash
		// keys are in its range; otherwise a KCL consumer drops the whole aggregate, and the
		// records must be sent again.
		pl.p.stats.mismatches.Add(1)
		rng, known := pl.byID[shardID]
		if !known {
			pl.requestRefresh(now)
		}
		if ke.aggregated {
			if !known {
				pl.suspects = append(pl.suspects, suspect{ke: ke, shardID: shardID, seq: seq})
				return
			}
			if !allInRange(ke.recs, rng) {
				pl.resend(ke)
				return
			}
		}
	}
	pl.deliver(ke, shardID, seq, now)
}

func allInRange(recs []entry, rng kpl.HashKeyRange) bool {
	for i := range recs {
		if !rng.Contains(recs[i].hash) {
			return false
		}
	}
	return true
}

// deliver reports the user records of a delivered Kinesis record.
func (pl *pipeline) deliver(ke *kentry, shardID, seq string, now int64) {
	p := pl.p
	aggregated := ke.aggregated
	var bytes int64
	for i := range ke.recs {
		e := &ke.recs[i]
		bytes += int64(e.size)
		if e.own() {
			pl.floors.resolve(e.seq)
		}
		pl.observe(now - e.enq)
		if p.cfg.onResult == nil && e.sync == nil {
			continue
		}
		res := Result{Record: e.rec, ShardID: shardID, SequenceNumber: seq, Aggregated: aggregated, Attempts: int(e.attempts)}
		if aggregated {
			res.SubSequenceNumber = uint64(i)
		}
		pl.report(e, &res)
	}
	pl.flushLatency()
	n := len(ke.recs)
	p.stats.delivered.Add(uint64(n))
	p.stats.kinesisRecords.Add(1)
	p.stats.kinesisBytes.Add(uint64(len(ke.data)))
	p.buf.release(ke.recs, bytes, 0, nil, true)
	pl.freeKE(ke)
}

func (pl *pipeline) report(e *entry, res *Result) {
	if f := pl.p.cfg.onResult; f != nil {
		f(*res)
	}
	if e.sync != nil {
		select {
		case e.sync <- *res:
		default:
		}
	}
}

// failKE reports every user record of ke failed with err. abandoned says that Close gave
// up on them: with a spool they are not failed but kept in it for the next start (only a
// PutSync waiter hears of them).
func (pl *pipeline) failKE(ke *kentry, err error, abandoned bool) {
	var bytes int64
	n := len(ke.recs)
	if abandoned && pl.p.spool != nil {
		for i := range ke.recs {
			e := &ke.recs[i]
			bytes += int64(e.size)
			if e.sync != nil { // the result handler is not told: the record is not lost
				select {
				case e.sync <- Result{Record: e.rec, Err: fmt.Errorf("%w: the record stays in the spool for the next start", ErrClosed), Attempts: int(e.attempts)}:
				default:
				}
			}
		}
		pl.p.buf.release(ke.recs, bytes, 0, nil, false)
		pl.freeKE(ke)
		return
	}
	for i := range ke.recs {
		bytes += int64(ke.recs[i].size)
		pl.fail(&ke.recs[i], err)
	}
	if abandoned {
		pl.p.abandoned += uint64(n)
	}
	pl.p.buf.release(ke.recs, bytes, uint64(n), err, true)
	pl.freeKE(ke)
}

// fail reports one record failed; the caller releases its buffer room. A record that may
// be in the stream keeps the identity floor below it.
func (pl *pipeline) fail(e *entry, err error) {
	if !e.unsure && e.own() {
		pl.floors.resolve(e.seq)
	}
	pl.p.stats.failed.Add(1)
	res := Result{Record: e.rec, Err: err, Attempts: int(e.attempts)}
	pl.report(e, &res)
}

// retry schedules ke to be sent again after a backoff, or expires it.
func (pl *pipeline) retry(ke *kentry, err error, now int64) {
	ke.attempts++
	ke.lastErr = err
	pl.p.stats.retried.Add(uint64(len(ke.recs)))
	if pl.cfg.ttl > 0 && now-ke.oldest >= int64(pl.cfg.ttl) {
		pl.expire(ke, now)
		return
	}
	// The records of one response wait the same backoff, so that they are sent again in
	// the order they were sent (and per partition key, in the order they were put).
	if pl.retryAt <= now {
		pl.retryAt = now + pl.backoff(ke.attempts)
	}
	ke.notBefore = pl.retryAt
	ke.shard.waiting++
	pl.retries = append(pl.retries, ke)
}

func (pl *pipeline) backoff(attempt int) int64 {
	d := pl.cfg.backoff << min(attempt-1, 30)
	if d > pl.cfg.maxBackoff || d <= 0 {
		d = pl.cfg.maxBackoff
	}
	half := int64(d / 2)
	return half + rand.Int64N(half+1)
}

// dueRetries puts Kinesis records whose backoff is over back at the front of their shard,
// in the order they failed.
func (pl *pipeline) dueRetries(now int64) {
	keep := pl.retries[:0]
	due := pl.due[:0]
	for _, ke := range pl.retries {
		if ke.notBefore <= now {
			ke.shard.waiting--
		}
		switch {
		case ke.notBefore > now:
			keep = append(keep, ke)
		case pl.cfg.ttl > 0 && now-ke.oldest >= int64(pl.cfg.ttl):
			pl.expire(ke, now)
		case ke.shard.removed:
			pl.disassemble(ke)
		default:
			due = append(due, ke)
		}
	}
	clear(pl.retries[len(keep):])
	pl.retries = keep
	for i := len(due) - 1; i >= 0; i-- { // pushing to the front reverses
		pl.pushFront(due[i].shard, due[i])
		pl.sendAll = true
	}
	clear(due)
	pl.due = due[:0]
}

// expire fails the records of ke whose TTL is over and routes the others again.
func (pl *pipeline) expire(ke *kentry, now int64) {
	var bytes int64
	var lastErr error
	failed := pl.expiredRecs[:0]
	for i := range ke.recs {
		e := &ke.recs[i]
		if now-e.enq < int64(pl.cfg.ttl) {
			pl.add(e)
			continue
		}
		err := fmt.Errorf("%w after %d attempts", ErrRecordExpired, e.attempts)
		if ke.lastErr != nil {
			err = fmt.Errorf("%w after %d attempts: %w", ErrRecordExpired, e.attempts, ke.lastErr)
		}
		pl.fail(e, err)
		lastErr = err
		failed = append(failed, *e)
		bytes += int64(e.size)
	}
	if len(failed) > 0 {
		pl.p.buf.release(failed, bytes, uint64(len(failed)), lastErr, true)
	}
	clear(failed)
	pl.expiredRecs = failed[:0]
	pl.freeKE(ke)
}

// disassemble routes the user records of ke again (their shard left the map).
func (pl *pipeline) disassemble(ke *kentry) {
	for i := range ke.recs {
		pl.add(&ke.recs[i])
	}
	pl.freeKE(ke)
}

// resend routes again the user records of an aggregate that a KCL consumer would drop.
func (pl *pipeline) resend(ke *kentry) {
	pl.p.stats.resent.Add(uint64(len(ke.recs)))
	pl.disassemble(ke)
}

// abortAll fails every record the producer holds; Close gave up waiting.
func (pl *pipeline) abortAll() {
	p := pl.p
	pl.aborting = true
	p.lifeCancel()
	if p.spool != nil {
		p.spool.stopLoader() // nothing more is queued from the spool
	}
	pl.drain(p.now())
	for _, s := range pl.queues {
		for _, ke := range s.ready {
			pl.failKE(ke, ErrClosed, true)
		}
		clear(s.ready)
		s.ready = s.ready[:0]
	}
	for _, s := range pl.shards {
		pl.seal(s)
		for _, ke := range s.ready {
			pl.failKE(ke, ErrClosed, true)
		}
		s.ready = nil
	}
	for _, ke := range pl.retries {
		pl.failKE(ke, ErrClosed, true)
	}
	pl.retries = nil
	for _, sp := range pl.suspects {
		pl.failKE(sp.ke, fmt.Errorf("%w: delivery to shard %s unconfirmed", ErrClosed, sp.shardID), true)
	}
	pl.suspects = nil
	for pl.inflight > 0 {
		pl.complete(<-p.doneCh)
	}
}

// hashCache remembers partition keys' hashes: logs often reuse keys (a user id, a pool of
// random keys), and a map lookup costs a fraction of an MD5. When keys rarely repeat, the
// cache turns itself off for a while.
type hashCache struct {
	m       map[string]kpl.HashKey
	lookups int
	hits    int
	bypass  int
}

const (
	hashCacheMax    = 1 << 16
	hashCacheWindow = 4096
)

func (c *hashCache) get(pk string) kpl.HashKey {
	if c.bypass > 0 {
		c.bypass--
		return kpl.PartitionKeyHash(pk)
	}
	c.lookups++
	h, ok := c.m[pk]
	if ok {
		c.hits++
	} else {
		h = kpl.PartitionKeyHash(pk)
		if c.m == nil {
			c.m = make(map[string]kpl.HashKey)
		} else if len(c.m) >= hashCacheMax {
			clear(c.m)
		}
		c.m[pk] = h
	}
	if c.lookups == hashCacheWindow {
		if c.hits < hashCacheWindow/4 {
			c.bypass = 16 * hashCacheWindow
			clear(c.m)
		}
		c.lookups, c.hits = 0, 0
	}
	return h
}

// --- latency ---

var latencyBounds = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
	10 * time.Second, 30 * time.Second, time.Minute,
}

func (pl *pipeline) observe(d int64) {
	i := 0
	for i < len(latencyBounds) && d > int64(latencyBounds[i]) {
		i++
	}
	pl.lat[i]++
	pl.p.stats.latSum.Add(d)
}

func (pl *pipeline) flushLatency() {
	for i, n := range pl.lat {
		if n > 0 {
			pl.p.stats.lat[i].Add(n)
			pl.lat[i] = 0
		}
	}
}

// --- free lists (pipeline goroutine only) ---

func (pl *pipeline) newKE() *kentry {
	if n := len(pl.freeKEs); n > 0 {
		ke := pl.freeKEs[n-1]
		pl.freeKEs = pl.freeKEs[:n-1]
		return ke
	}
	return new(kentry)
}

func (pl *pipeline) freeKE(ke *kentry) {
	clear(ke.recs)
	*ke = kentry{buf: ke.buf[:0], recs: ke.recs[:0]}
	if len(pl.freeKEs) < 1024 {
		pl.freeKEs = append(pl.freeKEs, ke)
	}
}

func (pl *pipeline) newReq() *request {
	if n := len(pl.freeReqs); n > 0 {
		r := pl.freeReqs[n-1]
		pl.freeReqs = pl.freeReqs[:n-1]
		return r
	}
	return &request{}
}

func (pl *pipeline) freeReq(r *request) {
	clear(r.kes)
	r.kes = r.kes[:0]
	clear(r.input.Records)
	r.input.Records = r.input.Records[:0]
	r.out, r.err = nil, nil
	pl.freeReqs = append(pl.freeReqs, r)
}

package producer

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/internal/kpl"
)

// shardDesc is one shard as ListShards describes it.
type shardDesc struct {
	id  string
	rng kpl.HashKeyRange
}

type refreshResult struct {
	open []shardDesc                 // open shards, sorted by starting hash key
	all  map[string]kpl.HashKeyRange // every shard listed
	err  error
}

// listShards reads the stream's shard map, following NextToken pages.
func (p *Producer) listShards(ctx context.Context) refreshResult {
	res := refreshResult{all: make(map[string]kpl.HashKeyRange)}
	in := &kinesis.ListShardsInput{StreamName: p.streamName, StreamARN: p.streamARN}
	for page := 0; ; page++ {
		out, err := p.client.ListShards(ctx, in)
		if err != nil {
			res.err = fmt.Errorf("listing shards of %s: %w", p.stream, err)
			return res
		}
		for _, s := range out.Shards {
			if s.ShardId == nil || s.HashKeyRange == nil || s.HashKeyRange.StartingHashKey == nil || s.HashKeyRange.EndingHashKey == nil {
				continue
			}
			rng, err := kpl.ParseHashKeyRange(*s.HashKeyRange.StartingHashKey, *s.HashKeyRange.EndingHashKey)
			if err != nil {
				res.err = fmt.Errorf("listing shards of %s: shard %s: %w", p.stream, *s.ShardId, err)
				return res
			}
			res.all[*s.ShardId] = rng
			if s.SequenceNumberRange == nil || s.SequenceNumberRange.EndingSequenceNumber == nil {
				res.open = append(res.open, shardDesc{id: *s.ShardId, rng: rng})
			}
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		// With a NextToken the stream must not be named again.
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	slices.SortFunc(res.open, func(a, b shardDesc) int { return a.rng.Start.Compare(b.rng.Start) })
	return res
}

func (pl *pipeline) startRefresh() {
	p := pl.p
	pl.refreshing = true
	pl.wantMap = false
	p.workers.Add(1)
	go func() {
		defer p.workers.Done()
		ctx, cancel := context.WithTimeout(p.lifeCtx, p.cfg.requestTimeout)
		defer cancel()
		p.refreshCh <- p.listShards(ctx) // never blocks: one refresh at a time, capacity 1
	}()
}

// requestRefresh asks for a shard-map refresh as soon as allowed.
func (pl *pipeline) requestRefresh(now int64) {
	if !pl.wantMap {
		pl.wantMap = true
		pl.refreshAt = max(pl.refreshAt, now)
	}
}

func (pl *pipeline) refreshed(r refreshResult) {
	p := pl.p
	pl.refreshing = false
	now := p.now()
	p.stats.refreshes.Add(1)
	if r.err != nil {
		p.stats.refreshErrors.Add(1)
		pl.refreshErr++
		if pl.state == mapLoading {
			// Without a map, records go out unaggregated, routed by their own keys.
			pl.state = mapUnknown
		}
		if pl.state != mapKnown || len(pl.suspects) > 0 || pl.wantMap {
			pl.wantMap = true
			pl.refreshAt = now + pl.backoff(pl.refreshErr)
		}
		return
	}
	pl.refreshErr = 0
	pl.applyMap(r)
	pl.refreshAt = now + minRefreshGap
	pl.resolveSuspects(now)
}

// applyMap installs a new shard map, keeping the state of shards that did not change and
// routing again the records held for shards that left the map.
func (pl *pipeline) applyMap(r refreshResult) {
	old := make(map[string]*shard, len(pl.shards))
	for _, s := range pl.shards {
		old[s.id] = s
	}
	now := pl.p.now()
	shards := make([]*shard, 0, len(r.open))
	for _, d := range r.open {
		if s, ok := old[d.id]; ok && s.rng == d.rng {
			shards = append(shards, s)
			delete(old, d.id)
			continue
		}
		s := &shard{id: d.id, rng: d.rng, ehk: d.rng.Start.String()}
		if pl.cfg.rateLimit > 0 {
			s.lim = newBucket(pl.cfg.rateLimit, now)
		}
		shards = append(shards, s)
	}
	var orphans []*shard
	for _, s := range pl.shards {
		if _, gone := old[s.id]; gone {
			s.removed = true
			orphans = append(orphans, s)
		}
	}
	pl.shards = shards
	pl.queues = append(append(pl.queues[:0], shards...), pl.unmapped)
	pl.byID = r.all
	pl.state = mapKnown
	for _, s := range orphans {
		recs := s.aggRecs
		s.aggRecs = nil
		s.agg.Reset()
		for i := range recs {
			pl.add(&recs[i])
		}
		ready := s.ready
		s.ready = nil
		for _, ke := range ready {
			pl.readyCount--
			pl.readyBytes -= ke.size
			pl.disassemble(ke)
		}
	}
}

// resolveSuspects decides, for each aggregate that landed on an unexpected shard, whether
// that shard keeps it (all hash keys in range: delivered) or drops it (sent again).
func (pl *pipeline) resolveSuspects(now int64) {
	keep := pl.suspects[:0]
	for _, sp := range pl.suspects {
		rng, ok := pl.byID[sp.shardID]
		switch {
		case !ok:
			keep = append(keep, sp)
		case allInRange(sp.ke.recs, rng):
			pl.deliver(sp.ke, sp.shardID, sp.seq, now)
		default:
			pl.resend(sp.ke)
		}
	}
	clear(pl.suspects[len(keep):])
	pl.suspects = keep
	if len(keep) > 0 {
		// The map does not know the shard yet (ListShards may lag a reshard): look again.
		pl.wantMap = true
		pl.refreshAt = now + pl.backoff(1)
	}
}

// bucket is a token bucket for one shard's records and bytes per second.
type bucket struct {
	recs, bytes       float64 // tokens
	recRate, byteRate float64 // tokens per nanosecond
	recCap, byteCap   float64
	last              int64
}

func newBucket(percent int, now int64) bucket {
	f := float64(percent) / 100
	b := bucket{recCap: shardRecordsPerSecond * f, byteCap: shardBytesPerSecond * f, last: now}
	b.recRate, b.byteRate = b.recCap/1e9, b.byteCap/1e9
	b.recs, b.bytes = b.recCap, b.byteCap
	return b
}

func (b *bucket) refill(now int64) {
	if dt := float64(now - b.last); dt > 0 {
		b.recs = min(b.recCap, b.recs+dt*b.recRate)
		b.bytes = min(b.byteCap, b.bytes+dt*b.byteRate)
		b.last = now
	}
}

// take spends one record and size bytes if available. A Kinesis record bigger than the
// byte capacity passes when the bucket is full (and leaves it in debt).
func (b *bucket) take(size int) bool {
	need := min(float64(size), b.byteCap)
	if b.recs < 1 || b.bytes < need {
		return false
	}
	b.recs--
	b.bytes -= float64(size)
	return true
}

// readyFor returns when the bucket holds bytes and recs tokens (each capped at capacity).
func (b *bucket) readyFor(bytes, recs float64, now int64) int64 {
	var wait float64
	if need := min(recs, b.recCap); b.recs < need {
		wait = (need - b.recs) / b.recRate
	}
	if need := min(bytes, b.byteCap); b.bytes < need {
		wait = max(wait, (need-b.bytes)/b.byteRate)
	}
	return now + int64(wait) + 1
}

// readyAt returns when take(size) can succeed.
func (b *bucket) readyAt(size int, now int64) int64 { return b.readyFor(float64(size), 1, now) }

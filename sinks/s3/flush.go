package s3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/backoff"
	"github.com/kinlog/kinlog/sinks/dedup"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// ErrorRecord is one line of an error-output object (gzip NDJSON): a record that could not
// be partitioned or encoded, with its raw bytes and the reason.
type ErrorRecord struct {
	// ErrorCode is the error output type: partitioning-failed or format-conversion-failed.
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
	ShardID      string `json:"shardId"`
	Sequence     string `json:"sequenceNumber"`
	SubSequence  uint64 `json:"subSequenceNumber"`
	PartitionKey string `json:"partitionKey"`
	// ArrivalTimestamp is the Kinesis arrival time in Unix milliseconds.
	ArrivalTimestamp int64 `json:"approximateArrivalTimestamp"`
	// RawData is the record's data (base64 in JSON).
	RawData []byte `json:"rawData"`
}

// ErrorExtension is the name suffix of error-output objects.
const ErrorExtension = ".json.gz"

// Object metadata (x-amz-meta-*) written on every object.
const (
	MetaRecords = "kinlog-records" // records in the object (rows for analytics objects)
	MetaFirst   = "kinlog-first"   // position of the first record, sequence[/sub-sequence]
	MetaLast    = "kinlog-last"    // position of the last record
)

// object is one object of a flush, ready to upload.
type object struct {
	kind        string
	key         string
	body        []byte
	contentType string
	records     int
	first, last checkpoint.Checkpoint
}

func (o *object) metadata() map[string]string {
	return map[string]string{
		MetaRecords: strconv.Itoa(o.records),
		MetaFirst:   o.first.String(),
		MetaLast:    o.last.String(),
	}
}

// ObjectName returns the name of the object whose first record is at pos, after its prefix:
// <stream>-<shard>-<sequence>-<sub-sequence><ext>.
func ObjectName(stream, shard string, pos checkpoint.Checkpoint, ext string) string {
	return stream + "-" + shard + "-" + pos.Sequence + "-" + strconv.FormatUint(pos.SubSequence, 10) + ext
}

type span struct {
	first, last checkpoint.Checkpoint
	n           int
}

func (s *span) add(pos checkpoint.Checkpoint) {
	if s.n == 0 {
		s.first = pos
	}
	s.last = pos
	s.n++
}

type flushStats struct {
	archived     int
	errored      map[string]int
	deduplicated int
	evicted      dedup.Evictions
}

// initialState is the deduplication state a shard starts from: the one stored with its
// checkpoint, else the merge of its parents' (a child shard's first batch), else empty. A
// state that cannot be read is logged and replaced by an empty one: duplicates may then
// pass (at-least-once), nothing is dropped.
func (s *Sink) initialState(log *slog.Logger, state []byte, parents [][]byte) *dedup.State {
	if state != nil {
		st, err := dedup.Decode(state, s.cfg.dedupLimits)
		if err == nil {
			return st
		}
		log.Error("the deduplication state stored with the checkpoint is unreadable; starting from an empty one (duplicates may be archived)", "err", err)
		return dedup.New(s.cfg.dedupLimits)
	}
	st := dedup.New(s.cfg.dedupLimits)
	for i, ps := range parents {
		pst, err := dedup.Decode(ps, s.cfg.dedupLimits)
		if err != nil {
			log.Error("a parent shard's deduplication state is unreadable; starting without it", "parent", i, "err", err)
			continue
		}
		st.Merge(pst)
	}
	return st
}

// build turns a flush into its objects. Everything here is a pure function of the flush's
// records, the deduplication state st (nil: none) and the configuration: the same flush
// from the same state always gives the same keys and bytes. It updates st to the state
// after the flush.
func (p *processor) build(f *flush, st *dedup.State) ([]object, flushStats, error) {
	s := p.s
	type archObj struct {
		b *encode.Builder
		span
	}
	type errObj struct {
		lines []byte
		span
	}
	type anaObj struct {
		agg *rollup.Aggregator
		span
	}
	var (
		arch     = map[*partition]*archObj{}
		archList []*partition
		errs     = map[string]*errObj{}
		errList  []string
		ana      = map[string]*anaObj{}
		anaList  []string
		doc      encode.Doc
		buf      []byte
		stats    = flushStats{errored: map[string]int{}}
		// The rollup object of the last record's window: records come in time order,
		// mostly, so its prefix is rendered only when the window changes.
		lastAna   *anaObj
		lastStart time.Time
		before    dedup.Evictions
		idBuf     []byte
	)
	if st != nil {
		before = st.Evicted()
	}
	for i := range f.entries {
		e := &f.entries[i]
		r := e.rec()
		// A KPL aggregate outside the shard's range is not this shard's record: the KPL
		// re-sends it to the right shard, where it must not look like a duplicate.
		if st != nil && !r.OutsideShard && st.Observe(r.ID, r.ArrivalTime) {
			stats.deduplicated++
			continue
		}
		pos := r.Position()
		errType, reason := e.errType, e.reason
		if errType == "" {
			_ = doc.Parse(encode.Trim(r.Data))
			o := arch[e.part]
			if o == nil {
				o = &archObj{b: s.builder()}
				arch[e.part] = o
				archList = append(archList, e.part)
			}
			idBuf = r.ID.AppendText(idBuf[:0])
			meta := encode.Meta{Shard: r.ShardID, Sequence: r.SequenceNumber, SubSequence: r.SubSequenceNumber, ArrivalTime: r.ArrivalTime, PartitionKey: r.PartitionKey, ID: idBuf}
			if err := o.b.Add(&meta, r.Data, &doc); err != nil {
				errType, reason = ErrorFormat, err.Error()
			} else {
				o.add(pos)
				stats.archived++
				if s.anaPfx != nil {
					start := e.at.UTC().Truncate(s.rollupWindow())
					a := lastAna
					if a == nil || !start.Equal(lastStart) {
						buf = s.anaPfx.Append(buf[:0], &prefix.Values{Time: start})
						a = ana[string(buf)]
					}
					if a == nil {
						agg, err := rollup.NewAggregator(s.cfg.rollupCfg)
						if err != nil {
							return nil, stats, err
						}
						a = &anaObj{agg: agg}
						ana[string(buf)] = a
						anaList = append(anaList, string(buf))
					}
					lastAna, lastStart = a, start
					a.agg.Add(e.at, len(r.Data), &doc)
					a.add(pos)
				}
			}
		}
		if errType != "" {
			buf = s.errPfx.Append(buf[:0], &prefix.Values{Time: r.ArrivalTime.UTC(), ErrorType: errType})
			o := errs[string(buf)]
			if o == nil {
				o = &errObj{}
				errs[string(buf)] = o
				errList = append(errList, string(buf))
			}
			line, err := json.Marshal(&ErrorRecord{
				ErrorCode: errType, ErrorMessage: reason, ShardID: r.ShardID, Sequence: r.SequenceNumber,
				SubSequence: r.SubSequenceNumber, PartitionKey: r.PartitionKey,
				ArrivalTimestamp: r.ArrivalTime.UnixMilli(), RawData: r.Data,
			})
			if err != nil {
				return nil, stats, fmt.Errorf("encoding error record: %w", err)
			}
			o.lines = append(append(o.lines, line...), '\n')
			o.add(pos)
			stats.errored[errType]++
		}
	}

	if st != nil {
		st.Prune()
		after := st.Evicted()
		stats.evicted = dedup.Evictions{Horizon: after.Horizon - before.Horizon, Origins: after.Origins - before.Origins, Intervals: after.Intervals - before.Intervals}
	}
	var objs []object
	for _, part := range archList {
		o := arch[part]
		if o.n == 0 {
			s.builders.Put(o.b)
			continue // every record failed to encode
		}
		body, err := o.b.Finish(nil)
		s.builders.Put(o.b) // the body is a copy
		if err != nil {
			return nil, stats, fmt.Errorf("encoding object: %w", err)
		}
		objs = append(objs, object{kind: kindArchive, key: part.prefix + ObjectName(s.stream, p.shard, o.first, s.enc.Extension()),
			body: body, contentType: s.enc.ContentType(), records: o.n, first: o.first, last: o.last})
	}
	for _, pfx := range errList {
		o := errs[pfx]
		body, err := encode.Compress(nil, o.lines, encode.CompressionGzip)
		if err != nil {
			return nil, stats, fmt.Errorf("compressing error object: %w", err)
		}
		objs = append(objs, object{kind: kindErrors, key: pfx + ObjectName(s.stream, p.shard, o.first, ErrorExtension),
			body: body, contentType: "application/x-ndjson", records: o.n, first: o.first, last: o.last})
	}
	for _, pfx := range anaList {
		o := ana[pfx]
		rows := o.agg.Rows()
		body, err := rollup.EncodeObject(rows)
		if err != nil {
			return nil, stats, fmt.Errorf("encoding rollup object: %w", err)
		}
		objs = append(objs, object{kind: kindAnalytics, key: pfx + ObjectName(s.stream, p.shard, o.first, rollup.Extension),
			body: body, contentType: rollup.ContentType, records: o.n, first: o.first, last: o.last})
	}
	seen := make(map[string]bool, len(objs))
	for _, o := range objs {
		if seen[o.key] {
			return nil, stats, fmt.Errorf("s3 sink: two objects of one flush share the key %q (overlapping prefix templates?)", o.key)
		}
		seen[o.key] = true
	}
	return objs, stats, nil
}

// count adds a written flush's records to the metrics.
func (s *Sink) count(stats flushStats) {
	s.met.records.Add(float64(stats.archived))
	s.met.dedup.Add(float64(stats.deduplicated))
	for reason, n := range map[string]int{"horizon": stats.evicted.Horizon, "origins": stats.evicted.Origins, "intervals": stats.evicted.Intervals} {
		if n > 0 {
			s.met.dedupEvicted.WithLabelValues(reason).Add(float64(n))
		}
	}
	for t, n := range stats.errored {
		s.met.errored.WithLabelValues(t).Add(float64(n))
		label := errTypePartitioning
		switch t {
		case ErrorFormat:
			label = errTypeFormat
		case ErrorOutsideShard:
			label = errTypeOutsideShard
		}
		s.met.errors.WithLabelValues(label).Add(float64(n))
	}
}

func (s *Sink) rollupWindow() time.Duration {
	if s.cfg.rollupCfg.Window != 0 {
		return s.cfg.rollupCfg.Window
	}
	return rollup.DefaultWindow
}

// write makes one flush durable: encode, prepare its boundary, write every object, then
// acknowledge its records. It returns an error only when the processor must stop (lease
// lost, lifecycle ended, an encoding bug).
func (p *processor) write(f *flush) error {
	s := p.s
	ctx := p.life
	start := s.cfg.clock.Now()
	objs, stats, err := p.build(f, p.dd)
	if err != nil {
		s.met.errors.WithLabelValues(errTypeEncode).Inc()
		p.log.Error("building the objects of a flush", "boundary", f.boundary.String(), "err", err)
		return err
	}
	var state []byte
	if p.dd != nil {
		state = p.dd.Encode()
		s.met.dedupBytes.Observe(float64(len(state)))
	}
	if err := p.prepare(ctx, f.boundary); err != nil {
		return err
	}
	if err := s.uploadAll(ctx, p.log, objs); err != nil {
		return err
	}
	// Every object is durable: acknowledge exactly the flush's records, batch by batch (a
	// flush holds each batch's records as one run, in order). The flush's end is marked as
	// the boundary to checkpoint, with the deduplication state there: a checkpoint inside
	// a flush would make a replay cut it elsewhere.
	for i := range f.entries {
		e := &f.entries[i]
		switch {
		case i+1 == len(f.entries):
			e.batch.AckThroughState(e.idx+1, state)
		case f.entries[i+1].batch != e.batch:
			e.batch.AckThrough(e.idx + 1)
		}
	}
	s.count(stats)
	s.met.flushes.Inc()
	s.met.flushSeconds.Observe(s.cfg.clock.Now().Sub(start).Seconds())
	p.log.Debug("flushed", "records", len(f.entries), "objects", len(objs), "boundary", f.boundary.String())
	return nil
}

// prepare records the flush's boundary, retrying errors other than a lost lease.
func (p *processor) prepare(ctx context.Context, boundary checkpoint.Checkpoint) error {
	bo := backoff.Backoff{Min: p.s.cfg.retryMin, Max: p.s.cfg.retryMax}
	for attempt := 1; ; attempt++ {
		err := p.prep.Prepare(ctx, boundary)
		if err == nil {
			return nil
		}
		if errors.Is(err, checkpoint.ErrLeaseLost) {
			p.s.met.errors.WithLabelValues(errTypeLeaseLost).Inc()
			p.log.Info("lease lost while preparing a flush; dropping the buffer", "boundary", boundary.String())
			return fmt.Errorf("s3 sink: preparing shard %s at %s: %w", p.shard, boundary, err)
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		p.s.met.errors.WithLabelValues(errTypePrepare).Inc()
		p.log.Warn("preparing a flush boundary failed; retrying", "boundary", boundary.String(), "attempt", attempt, "err", err)
		if err := sleep(ctx, p.s.cfg.clock, bo.Next()); err != nil {
			return err
		}
	}
}

// uploadAll writes every object, cfg.concurrency at a time, each retried until it succeeds
// or ctx ends.
func (s *Sink) uploadAll(ctx context.Context, log *slog.Logger, objs []object) error {
	sem := make(chan struct{}, s.cfg.concurrency)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range objs {
		o := &objs[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return context.Cause(ctx)
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.put(ctx, log, o); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

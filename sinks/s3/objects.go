package s3

import (
	"context"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/sinks/dedup"
)

// Objects are the objects that one run of a shard's records makes: an archive object per
// prefix, error objects and rollups — exactly what a worker's flush of the same records
// writes. [Sink.Build] makes them and [Sink.Write] writes them, for callers that keep the
// positions themselves instead of running a consumer (the Lambda function).
type Objects struct {
	objs  []object
	stats flushStats
}

// Object kinds.
const (
	KindArchive   = kindArchive
	KindErrors    = kindErrors
	KindAnalytics = kindAnalytics
)

// Object describes one object of a set.
type Object struct {
	Key  string
	Kind string // KindArchive, KindErrors or KindAnalytics
	// Records is the number of records in the object (rows of a rollup's); First and
	// Last are the positions of its first and last record (metadata MetaFirst, MetaLast).
	Records     int
	First, Last checkpoint.Checkpoint
}

// List describes the objects.
func (o *Objects) List() []Object {
	out := make([]Object, len(o.objs))
	for i := range o.objs {
		b := &o.objs[i]
		out[i] = Object{Key: b.key, Kind: b.kind, Records: b.records, First: b.first, Last: b.last}
	}
	return out
}

// Keys returns the keys of the objects.
func (o *Objects) Keys() []string {
	keys := make([]string, len(o.objs))
	for i := range o.objs {
		keys[i] = o.objs[i].key
	}
	return keys
}

// Archived returns how many records go to archive objects.
func (o *Objects) Archived() int { return o.stats.archived }

// Deduplicated returns how many records were dropped as duplicates.
func (o *Objects) Deduplicated() int { return o.stats.deduplicated }

// Errored returns how many records go to error objects, by error output type.
func (o *Objects) Errored() map[string]int { return o.stats.errored }

// Bytes returns the objects' total size.
func (o *Objects) Bytes() int {
	n := 0
	for i := range o.objs {
		n += len(o.objs[i].body)
	}
	return n
}

// Build encodes recs — consecutive user records of one shard, in order — into the objects a
// flush of exactly these records writes: keys and bytes are a pure function of the records
// and the sink's configuration. The buffering options (size, interval, partitions) do not
// apply: the caller chooses the run. st is the shard's deduplication state before recs
// (nil: no deduplication); Build updates it to the state after them, so a caller that may
// have to build the same run again passes a clone.
func (s *Sink) Build(shard string, recs []consumer.Record, st *dedup.State) (*Objects, error) {
	p := newProcessor(s, shard)
	b := consumer.NewBatch(shard, recs, nil)
	f := &flush{entries: make([]entry, 0, len(recs))}
	parts := map[string]*partition{}
	for i := range recs {
		e := p.classify(b, i)
		if e.part != nil {
			if existing := parts[e.part.prefix]; existing != nil {
				e.part = existing
			} else {
				parts[e.part.prefix] = e.part
			}
		}
		f.entries = append(f.entries, e)
	}
	if len(recs) > 0 {
		f.boundary = recs[len(recs)-1].Position()
	}
	objs, stats, err := p.build(f, st)
	if err != nil {
		return nil, err
	}
	return &Objects{objs: objs, stats: stats}, nil
}

// NewState returns the deduplication state a shard starts from — state (stored with a
// position), else the merge of its parents' states — or nil when the sink does not
// deduplicate ([WithoutDedup]).
func (s *Sink) NewState(state []byte, parents [][]byte) *dedup.State {
	if !s.cfg.dedup {
		return nil
	}
	return s.initialState(s.log, state, parents)
}

// Deduplicates reports whether the sink drops records whose identity it archived before.
func (s *Sink) Deduplicates() bool { return s.cfg.dedup }

// Write writes every object, concurrently, each retried with backoff until S3 confirms it
// or ctx ends (then it returns ctx's cause), and counts the records in the sink's metrics.
func (s *Sink) Write(ctx context.Context, o *Objects) error {
	if err := s.uploadAll(ctx, s.log, o.objs); err != nil {
		return err
	}
	s.count(o.stats)
	return nil
}

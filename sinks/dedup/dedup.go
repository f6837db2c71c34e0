// Package dedup decides which user records the archive sink has already archived, by the
// identity the kinlog producer and agent give each record (kpl.Identity: an origin, a
// sequence number there, and the origin's acknowledgement floor). One [State] per shard
// holds, per origin, the floor and the set of sequence numbers seen at or above it.
//
// The rule, for a record of origin O with sequence x: it is a duplicate when x is below
// O's floor or x was seen; otherwise it is archived and x is added to the seen set. Floors
// only grow (the largest one any record of O carried on this shard or its parents), and
// seen numbers below the floor are forgotten. A floor F on a record promises that every
// sequence number of O below F was acknowledged by Kinesis before that record was built:
// a copy of such a number was therefore put earlier, to this shard or to one of its
// ancestors — the shard its hash key belonged to then — and was archived (or dropped as a
// duplicate itself) before this point. See docs/identity.md.
//
// A State changes only through [State.Observe], in record order, and its encoding is a
// pure function of its contents: a replay of the same records from the same state makes the
// same decisions and the same bytes. Bounds ([Limits]) forget origins not seen for a
// horizon and cap the origins and seen intervals kept; what is forgotten can only make a
// later duplicate pass (at-least-once), never drop a first copy.
package dedup

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/kinlog/kinlog/internal/kpl"
)

// Limits bound a State.
type Limits struct {
	// Horizon forgets an origin when no record of it arrived for this long (in record
	// arrival time): a re-send arriving later is archived again. Default [DefaultHorizon].
	Horizon time.Duration
	// MaxOrigins caps the origins kept; beyond it, those seen least recently are forgotten.
	// Default [DefaultMaxOrigins].
	MaxOrigins int
	// MaxIntervals caps the seen intervals kept over all origins (16 bytes each in memory);
	// beyond it, the lowest intervals of the origin holding the most are forgotten. Default
	// [DefaultMaxIntervals].
	MaxIntervals int
	// MaxBytes caps the encoded state, which is stored with every checkpoint; beyond it,
	// intervals are forgotten the same way. Default [DefaultMaxBytes].
	MaxBytes int
}

// Defaults of [Limits]. A shard's seen intervals are the records in flight above their
// producers' floors; after an outage that is the whole backlog (2,000 records/s for 60 s
// on 4 shards is 30,000 a shard, each its own interval, since a shard sees every fourth
// number). The encoding keeps such sets in bitmaps, so the defaults hold 130,000 of them
// within DynamoDB's 400 KB item limit, beside the Lambda mode's pending keys.
const (
	DefaultHorizon      = 24 * time.Hour
	DefaultMaxOrigins   = 4096
	DefaultMaxIntervals = 131072
	DefaultMaxBytes     = 112 << 10
)

func (l Limits) withDefaults() Limits {
	if l.Horizon <= 0 {
		l.Horizon = DefaultHorizon
	}
	if l.MaxOrigins <= 0 {
		l.MaxOrigins = DefaultMaxOrigins
	}
	if l.MaxIntervals <= 0 {
		l.MaxIntervals = DefaultMaxIntervals
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// Evictions counts what bounds made a state forget.
type Evictions struct {
	Horizon, Origins, Intervals int
}

// State is one shard's deduplication state. The zero value is not usable; use [New] or
// [Decode]. A State is not safe for concurrent use.
type State struct {
	lim       Limits
	origins   map[string]*origin
	intervals int // over all origins
	latest    int64
	last      *origin // cache of the last origin observed
	lastName  string
	ev        Evictions
}

type origin struct {
	name  string
	floor uint64
	seen  []span // sorted, disjoint, non-adjacent, all ≥ floor
	at    int64  // arrival time (Unix ms) of its last record
}

type span struct{ lo, hi uint64 } // [lo, hi)

// New returns an empty state.
func New(lim Limits) *State {
	return &State{lim: lim.withDefaults(), origins: map[string]*origin{}}
}

// Observe decides one record of identity id that arrived at the given time: true when it
// is a duplicate of a record already archived. Records without identity are never.
func (s *State) Observe(id kpl.Identity, arrival time.Time) (dup bool) {
	if id.Origin == "" {
		return false
	}
	o := s.last
	if o == nil || s.lastName != id.Origin {
		o = s.origins[id.Origin]
		if o == nil {
			o = &origin{name: id.Origin}
			s.origins[id.Origin] = o
		}
		s.last, s.lastName = o, id.Origin
	}
	at := arrival.UnixMilli()
	o.at = max(o.at, at)
	s.latest = max(s.latest, at)
	switch {
	case id.Seq < o.floor:
		dup = true
	case o.contains(id.Seq):
		dup = true
	default:
		s.intervals += o.insert(id.Seq, id.End())
	}
	if id.Floor > o.floor {
		s.intervals -= o.raise(id.Floor)
	}
	return dup
}

func (o *origin) find(x uint64) int {
	// First span with hi > x.
	return sort.Search(len(o.seen), func(i int) bool { return o.seen[i].hi > x })
}

func (o *origin) contains(x uint64) bool {
	if n := len(o.seen); n > 0 && x >= o.seen[n-1].hi {
		return false // the common case: beyond everything seen
	}
	i := o.find(x)
	return i < len(o.seen) && o.seen[i].lo <= x
}

// insert adds [lo, hi) (not overlapping a seen span at lo) and returns the change in the
// number of spans.
func (o *origin) insert(lo, hi uint64) int {
	n := len(o.seen)
	if n == 0 || lo > o.seen[n-1].hi {
		o.seen = append(o.seen, span{lo, hi})
		return 1
	}
	if lo == o.seen[n-1].hi { // extends the last span: the common case
		o.seen[n-1].hi = max(hi, o.seen[n-1].hi)
		return 0
	}
	i := o.find(lo) // spans before i end at or before lo
	j := i          // spans [i, j) overlap or touch [lo, hi)
	nlo, nhi := lo, hi
	if i > 0 && o.seen[i-1].hi == lo {
		i--
	}
	for j < len(o.seen) && o.seen[j].lo <= hi {
		nlo, nhi = min(nlo, o.seen[j].lo), max(nhi, o.seen[j].hi)
		j++
	}
	if i < j {
		nlo = min(nlo, o.seen[i].lo)
	}
	before := len(o.seen)
	o.seen = slices.Replace(o.seen, i, j, span{nlo, nhi})
	return len(o.seen) - before
}

// raise moves the floor up to f and forgets seen spans below it; it returns how many spans
// it removed.
func (o *origin) raise(f uint64) int {
	o.floor = f
	i := 0
	for i < len(o.seen) && o.seen[i].hi <= f {
		i++
	}
	removed := i
	o.seen = o.seen[i:]
	if len(o.seen) > 0 && o.seen[0].lo < f {
		o.seen[0].lo = f
	}
	if len(o.seen) == 0 {
		o.seen = nil
	}
	return removed
}

// Prune applies the limits. The sink calls it at the end of every batch it builds, so
// that a state is pruned at the same points whoever replays the batch.
func (s *State) Prune() {
	s.last, s.lastName = nil, ""
	horizon := s.latest - s.lim.Horizon.Milliseconds()
	for name, o := range s.origins {
		if o.at < horizon {
			s.drop(name, o)
			s.ev.Horizon++
		}
	}
	if extra := len(s.origins) - s.lim.MaxOrigins; extra > 0 {
		all := s.sorted()
		slices.SortFunc(all, func(a, b *origin) int {
			return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.name, b.name))
		})
		for _, o := range all[:extra] {
			s.drop(o.name, o)
			s.ev.Origins++
		}
	}
	for s.intervals > s.lim.MaxIntervals {
		if !s.forget(s.intervals - s.lim.MaxIntervals) {
			break
		}
	}
	for size := s.EncodedSize(); size > s.lim.MaxBytes; size = s.EncodedSize() {
		// Forget the intervals the excess holds at the state's bits per interval, and at
		// least an eighth of what is kept, so that this ends in a few rounds.
		bitsPerInterval := max(1, size*8/max(1, s.intervals))
		n := max(s.intervals/8, (size-s.lim.MaxBytes)*8/bitsPerInterval)
		if !s.forget(max(1, n)) {
			break
		}
	}
}

// forget drops up to n of the lowest seen intervals of the origin holding the most,
// keeping its last one; it reports whether it dropped any.
func (s *State) forget(n int) bool {
	var big *origin
	for _, o := range s.origins {
		if big == nil || len(o.seen) > len(big.seen) || (len(o.seen) == len(big.seen) && o.name < big.name) {
			big = o
		}
	}
	if big == nil {
		return false
	}
	n = min(n, len(big.seen)-1)
	if n <= 0 {
		return false // every origin is down to one span
	}
	big.seen = slices.Delete(big.seen, 0, n)
	s.intervals -= n
	s.ev.Intervals += n
	return true
}

func (s *State) drop(name string, o *origin) {
	s.intervals -= len(o.seen)
	delete(s.origins, name)
}

func (s *State) sorted() []*origin {
	all := make([]*origin, 0, len(s.origins))
	for _, o := range s.origins {
		all = append(all, o)
	}
	slices.SortFunc(all, func(a, b *origin) int { return cmp.Compare(a.name, b.name) })
	return all
}

// Origins returns the number of origins kept; Intervals the number of seen intervals.
func (s *State) Origins() int   { return len(s.origins) }
func (s *State) Intervals() int { return s.intervals }

// Evicted returns what the limits made the state forget so far (not encoded).
func (s *State) Evicted() Evictions { return s.ev }

// Clone returns an independent copy.
func (s *State) Clone() *State {
	c := &State{lim: s.lim, origins: make(map[string]*origin, len(s.origins)), intervals: s.intervals, latest: s.latest}
	for name, o := range s.origins {
		oc := *o
		oc.seen = slices.Clone(o.seen)
		c.origins[name] = &oc
	}
	return c
}

// Merge adds other's knowledge to s: the larger floor and the union of the seen sets, per
// origin. A child shard starts from the merge of its parents' final states.
func (s *State) Merge(other *State) {
	s.last, s.lastName = nil, ""
	for _, oo := range other.sorted() {
		o := s.origins[oo.name]
		if o == nil {
			o = &origin{name: oo.name}
			s.origins[oo.name] = o
		}
		o.at = max(o.at, oo.at)
		for _, sp := range oo.seen {
			if sp.hi <= o.floor {
				continue
			}
			s.intervals += o.insertRange(max(sp.lo, o.floor), sp.hi)
		}
		if oo.floor > o.floor {
			s.intervals -= o.raise(oo.floor)
		}
	}
	s.latest = max(s.latest, other.latest)
	s.Prune()
}

// insertRange adds [lo, hi), which may overlap seen spans.
func (o *origin) insertRange(lo, hi uint64) int {
	before := len(o.seen)
	i := o.find(lo)
	if i > 0 && o.seen[i-1].hi == lo {
		i--
	}
	j := i
	nlo, nhi := lo, hi
	for j < len(o.seen) && o.seen[j].lo <= hi {
		nlo, nhi = min(nlo, o.seen[j].lo), max(nhi, o.seen[j].hi)
		j++
	}
	o.seen = slices.Replace(o.seen, i, j, span{nlo, nhi})
	return len(o.seen) - before
}

// Encoding: version byte 1, uvarint latest, uvarint origins; per origin in name order:
// uvarint name length, name, uvarint floor, uvarint (latest - at), and its seen set, as
// the smaller of: uvarint (2·spans), then per span uvarint (lo - previous hi or floor),
// uvarint (hi - lo); or uvarint (2·bits + 1), then a bitmap of the positions floor …
// floor+bits-1, least significant bit first (a shard sees every n-th number of a producer
// sharing n shards, so the set is a sparse bitmap better than a list of one-number spans).
const version = 1

// ErrCorrupt is returned by Decode for bytes that are not an encoded state.
var ErrCorrupt = errors.New("dedup: corrupt state")

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// listSize and bitmapBits size the two encodings of o's seen set.
func (o *origin) listSize() int {
	n := uvarintLen(uint64(2 * len(o.seen)))
	prev := o.floor
	for _, sp := range o.seen {
		n += uvarintLen(sp.lo-prev) + uvarintLen(sp.hi-sp.lo)
		prev = sp.hi
	}
	return n
}

func (o *origin) bitmapBits() uint64 {
	if len(o.seen) == 0 {
		return 0
	}
	return o.seen[len(o.seen)-1].hi - o.floor
}

// useBitmap reports whether the bitmap encoding is the smaller, and its size.
func (o *origin) setSize() (bitmap bool, size int) {
	list := o.listSize()
	bits := o.bitmapBits()
	if bits == 0 || bits > 1<<40 {
		return false, list
	}
	bm := uvarintLen(2*bits+1) + int((bits+7)/8)
	if bm < list {
		return true, bm
	}
	return false, list
}

// EncodedSize returns len(Encode()) without encoding.
func (s *State) EncodedSize() int {
	n := 1 + uvarintLen(uint64(s.latest)) + uvarintLen(uint64(len(s.origins)))
	for _, o := range s.origins {
		_, set := o.setSize()
		n += uvarintLen(uint64(len(o.name))) + len(o.name) + uvarintLen(o.floor) + uvarintLen(uint64(s.latest-o.at)) + set
	}
	return n
}

// AppendEncode appends the state's encoding to dst.
func (s *State) AppendEncode(dst []byte) []byte {
	dst = append(dst, version)
	dst = binary.AppendUvarint(dst, uint64(s.latest))
	dst = binary.AppendUvarint(dst, uint64(len(s.origins)))
	for _, o := range s.sorted() {
		dst = binary.AppendUvarint(dst, uint64(len(o.name)))
		dst = append(dst, o.name...)
		dst = binary.AppendUvarint(dst, o.floor)
		dst = binary.AppendUvarint(dst, uint64(s.latest-o.at))
		if bm, _ := o.setSize(); bm {
			bits := o.bitmapBits()
			dst = binary.AppendUvarint(dst, 2*bits+1)
			start := len(dst)
			dst = append(dst, make([]byte, (bits+7)/8)...)
			m := dst[start:]
			for _, sp := range o.seen {
				for x := sp.lo - o.floor; x < sp.hi-o.floor; x++ {
					m[x/8] |= 1 << (x % 8)
				}
			}
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(2*len(o.seen)))
		prev := o.floor
		for _, sp := range o.seen {
			dst = binary.AppendUvarint(dst, sp.lo-prev)
			dst = binary.AppendUvarint(dst, sp.hi-sp.lo)
			prev = sp.hi
		}
	}
	return dst
}

// Encode returns the state's encoding.
func (s *State) Encode() []byte { return s.AppendEncode(nil) }

// Decode reads an encoded state; empty input is an empty state.
func Decode(b []byte, lim Limits) (*State, error) {
	s := New(lim)
	if len(b) == 0 {
		return s, nil
	}
	if b[0] != version {
		return nil, fmt.Errorf("%w: version %d", ErrCorrupt, b[0])
	}
	b = b[1:]
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, ErrCorrupt
		}
		b = b[n:]
		return v, nil
	}
	latest, err := next()
	if err != nil {
		return nil, err
	}
	s.latest = int64(latest)
	count, err := next()
	if err != nil {
		return nil, err
	}
	if count > uint64(len(b)) {
		return nil, ErrCorrupt
	}
	for range count {
		l, err := next()
		if err != nil || l == 0 || l > uint64(len(b)) {
			return nil, ErrCorrupt
		}
		o := &origin{name: string(b[:l])}
		b = b[l:]
		if s.origins[o.name] != nil {
			return nil, fmt.Errorf("%w: origin %q twice", ErrCorrupt, o.name)
		}
		var age, spans uint64
		if o.floor, err = next(); err != nil {
			return nil, err
		}
		if age, err = next(); err != nil {
			return nil, err
		}
		o.at = s.latest - int64(age)
		if spans, err = next(); err != nil {
			return nil, err
		}
		if spans&1 == 1 { // a bitmap of spans>>1 positions from the floor
			bits := spans >> 1
			if bits == 0 || (bits+7)/8 > uint64(len(b)) || o.floor+bits < o.floor {
				return nil, ErrCorrupt
			}
			m := b[:(bits+7)/8]
			b = b[(bits+7)/8:]
			for x := uint64(0); x < bits; x++ {
				if m[x/8]&(1<<(x%8)) == 0 {
					continue
				}
				pos := o.floor + x
				if n := len(o.seen); n > 0 && o.seen[n-1].hi == pos {
					o.seen[n-1].hi++
				} else {
					o.seen = append(o.seen, span{pos, pos + 1})
				}
			}
			if len(o.seen) == 0 || o.seen[len(o.seen)-1].hi != o.floor+bits || bits%8 != 0 && m[len(m)-1]>>(bits%8) != 0 {
				return nil, ErrCorrupt // not the encoder's: the bitmap ends at the last span
			}
		} else {
			spans >>= 1
			if spans > uint64(len(b)) {
				return nil, ErrCorrupt
			}
			prev := o.floor
			for range spans {
				gap, err := next()
				if err != nil {
					return nil, err
				}
				width, err := next()
				if err != nil || width == 0 {
					return nil, ErrCorrupt
				}
				lo := prev + gap
				if lo < prev || lo+width < lo || (len(o.seen) > 0 && gap == 0) {
					return nil, ErrCorrupt
				}
				o.seen = append(o.seen, span{lo, lo + width})
				prev = lo + width
			}
		}
		s.origins[o.name] = o
		s.intervals += len(o.seen)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b))
	}
	return s, nil
}

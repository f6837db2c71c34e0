package kpl

import (
	"bytes"
	"crypto/md5"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Magic is the 4-byte prefix of every KPL aggregated record.
var Magic = [4]byte{0xF3, 0x89, 0x9A, 0xC2}

// Overhead is the size of an aggregate's framing: the magic plus the MD5 trailer.
const Overhead = len(Magic) + md5.Size

// DefaultMaxSize is the KPL's default AggregationMaxSize: the largest aggregate, in bytes,
// it builds (51200).
const DefaultMaxSize = 51200

// Protobuf field numbers of AggregatedRecord, Record and Tag, and the one-byte tags the
// encoder writes.
const (
	fieldPKTable  protowire.Number = 1
	fieldEHKTable protowire.Number = 2
	fieldRecords  protowire.Number = 3
	fieldPKIndex  protowire.Number = 1
	fieldEHKIndex protowire.Number = 2
	fieldData     protowire.Number = 3
	fieldTags     protowire.Number = 4
	fieldTagKey   protowire.Number = 1
	fieldTagValue protowire.Number = 2

	tagPKTable  = byte(fieldPKTable<<3) | byte(protowire.BytesType)
	tagEHKTable = byte(fieldEHKTable<<3) | byte(protowire.BytesType)
	tagRecords  = byte(fieldRecords<<3) | byte(protowire.BytesType)
	tagPKIndex  = byte(fieldPKIndex<<3) | byte(protowire.VarintType)
	tagEHKIndex = byte(fieldEHKIndex<<3) | byte(protowire.VarintType)
	tagData     = byte(fieldData<<3) | byte(protowire.BytesType)

	noExplicitKey = -1
)

// Record is one user record: what a producer puts and a consumer gets back out of an
// aggregate. ExplicitHashKey is empty when the record has none. ID is the record's kinlog
// identity, carried in its tags (the zero Identity when it has none).
type Record struct {
	PartitionKey    string
	ExplicitHashKey string
	Data            []byte
	ID              Identity
}

// Aggregator builds one KPL aggregate. The zero value is ready to use; after
// [Aggregator.Reset] it is reused without allocating (its tables and buffers keep their
// capacity). An Aggregator is not safe for concurrent use.
//
// Data passed to [Aggregator.Add] or [Aggregator.TryAdd] is copied at once, so the caller
// may reuse it; partition and explicit hash key strings are kept until Reset.
type Aggregator struct {
	pkIndex  map[string]uint64
	ehkIndex map[string]uint64
	pks      []string
	ehks     []string
	tables   int    // encoded bytes of fields 1 and 2
	body     []byte // encoded field 3 entries (the records), in order
	n        int
	origin   string // identity origin of the last record added ("" for none)
}

// Len returns the number of user records added since the last Reset.
func (a *Aggregator) Len() int { return a.n }

// Size returns the number of bytes [Aggregator.AppendEncode] will append: magic, protobuf
// and MD5 trailer. An empty aggregator has size [Overhead].
func (a *Aggregator) Size() int { return Overhead + a.tables + len(a.body) }

// Reset empties the aggregator for reuse, keeping its allocated capacity.
func (a *Aggregator) Reset() {
	clear(a.pkIndex)
	clear(a.ehkIndex)
	clear(a.pks) // drop references to the strings
	clear(a.ehks)
	a.pks = a.pks[:0]
	a.ehks = a.ehks[:0]
	a.tables = 0
	a.body = a.body[:0]
	a.n = 0
	a.origin = ""
}

// tableEntrySize is the encoded size of one key-table entry holding s.
func tableEntrySize(s string) int {
	return 1 + protowire.SizeVarint(uint64(len(s))) + len(s)
}

// recordSize returns the encoded size of a Record message (without its field-3 tag and
// length) with the given indexes, data length and tags size; ehk < 0 means no explicit
// hash key.
func recordSize(pk uint64, ehk int64, dataLen, tags int) int {
	n := 1 + protowire.SizeVarint(pk) + 1 + protowire.SizeVarint(uint64(dataLen)) + dataLen + tags
	if ehk >= 0 {
		n += 1 + protowire.SizeVarint(uint64(ehk))
	}
	return n
}

// SizeWith returns the size the aggregate would have with r added, without adding it.
func (a *Aggregator) SizeWith(r Record) int {
	return a.plan(&r).size
}

// addPlan is what adding a record takes: the aggregate's size after it, the table indexes
// it uses (new ones are appended to the tables), and its identity tags.
type addPlan struct {
	size   int
	pk     uint64
	ehk    int64 // noExplicitKey for none
	newPK  bool
	newEHK bool
	run    bool // the record starts a run of its identity's origin
	tags   int  // encoded size of its identity tags
}

// plan computes the size after adding r and the table indexes r would use.
func (a *Aggregator) plan(r *Record) addPlan {
	p := addPlan{size: a.Size(), ehk: noExplicitKey}
	var ok bool
	if p.pk, ok = a.pkIndex[r.PartitionKey]; !ok {
		p.pk = uint64(len(a.pks))
		p.newPK = true
		p.size += tableEntrySize(r.PartitionKey)
	}
	if r.ExplicitHashKey != "" {
		var e uint64
		if e, ok = a.ehkIndex[r.ExplicitHashKey]; !ok {
			e = uint64(len(a.ehks))
			p.newEHK = true
			p.size += tableEntrySize(r.ExplicitHashKey)
		}
		p.ehk = int64(e)
	}
	if id := &r.ID; id.Origin != "" && len(id.Origin) <= MaxOriginLen {
		p.run = a.n == 0 || id.Origin != a.origin
		p.tags = idTagsSize(*id, p.run)
	}
	rs := recordSize(p.pk, p.ehk, len(r.Data), p.tags)
	p.size += 1 + protowire.SizeVarint(uint64(rs)) + rs
	return p
}

// Add appends r to the aggregate, whatever the resulting size.
func (a *Aggregator) Add(r Record) {
	p := a.plan(&r)
	a.commit(&r, &p)
}

// TryAdd appends r only if the aggregate's encoded size stays at most maxSize, and reports
// whether it did. A record too big to fit even an empty aggregate is never added.
func (a *Aggregator) TryAdd(r Record, maxSize int) bool {
	p := a.plan(&r)
	if p.size > maxSize {
		return false
	}
	a.commit(&r, &p)
	return true
}

func (a *Aggregator) commit(r *Record, p *addPlan) {
	if p.newPK {
		if a.pkIndex == nil {
			a.pkIndex = make(map[string]uint64)
		}
		a.pkIndex[r.PartitionKey] = p.pk
		a.pks = append(a.pks, r.PartitionKey)
		a.tables += tableEntrySize(r.PartitionKey)
	}
	if p.newEHK {
		if a.ehkIndex == nil {
			a.ehkIndex = make(map[string]uint64)
		}
		a.ehkIndex[r.ExplicitHashKey] = uint64(p.ehk)
		a.ehks = append(a.ehks, r.ExplicitHashKey)
		a.tables += tableEntrySize(r.ExplicitHashKey)
	}
	b := a.body
	b = append(b, tagRecords)
	b = protowire.AppendVarint(b, uint64(recordSize(p.pk, p.ehk, len(r.Data), p.tags)))
	b = append(b, tagPKIndex)
	b = protowire.AppendVarint(b, p.pk)
	if p.ehk >= 0 {
		b = append(b, tagEHKIndex)
		b = protowire.AppendVarint(b, uint64(p.ehk))
	}
	b = append(b, tagData)
	b = protowire.AppendVarint(b, uint64(len(r.Data)))
	b = append(b, r.Data...)
	origin := ""
	if p.tags > 0 {
		b = appendIDTags(b, r.ID, p.run)
		origin = r.ID.Origin
	}
	a.body = b
	a.n++
	a.origin = origin
}

// AppendEncode appends the aggregate's encoding — magic, AggregatedRecord protobuf (key
// tables first, then records), MD5 of the protobuf — to dst and returns the extended slice.
// It appends exactly [Aggregator.Size] bytes and allocates only if dst lacks capacity.
func (a *Aggregator) AppendEncode(dst []byte) []byte {
	dst = a.AppendEncodeUnsummed(dst)
	SetSum(dst[len(dst)-a.Size():])
	return dst
}

// AppendEncodeUnsummed is [Aggregator.AppendEncode] with the MD5 trailer left zero, for a
// caller that computes many trailers at once with a [Summer] (or later with [SetSum]).
func (a *Aggregator) AppendEncodeUnsummed(dst []byte) []byte {
	if need := a.Size(); cap(dst)-len(dst) < need {
		grown := make([]byte, len(dst), len(dst)+need)
		copy(grown, dst)
		dst = grown
	}
	dst = append(dst, Magic[:]...)
	for _, s := range a.pks {
		dst = append(dst, tagPKTable)
		dst = protowire.AppendVarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	for _, s := range a.ehks {
		dst = append(dst, tagEHKTable)
		dst = protowire.AppendVarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = append(dst, a.body...)
	var zero [md5.Size]byte
	return append(dst, zero[:]...)
}

// SetSum writes the MD5 trailer of an encoded aggregate (magic, protobuf, 16 trailer
// bytes): the digest of the protobuf. It panics if agg is shorter than [Overhead].
func SetSum(agg []byte) {
	sum := md5.Sum(agg[len(Magic) : len(agg)-md5.Size])
	copy(agg[len(agg)-md5.Size:], sum[:])
}

// IsAggregate reports whether data carries the KPL magic, is long enough and has a matching
// MD5 trailer. It does not check that the protobuf parses; [Decode] does.
func IsAggregate(data []byte) bool {
	// An array comparison: one load and compare, where bytes.Equal is a call (it showed in
	// the consumer's profile, run for every Kinesis record).
	if len(data) <= len(Magic)+md5.Size || [len(Magic)]byte(data[:len(Magic)]) != Magic {
		return false
	}
	body := data[len(Magic) : len(data)-md5.Size]
	sum := md5.Sum(body)
	return bytes.Equal(sum[:], data[len(data)-md5.Size:])
}

// Decode returns the user records of a KPL aggregate. ok is false when data is not an
// aggregate — wrong magic, 16 or fewer bytes after the magic, MD5 mismatch, a protobuf that
// does not parse or lacks a required field, a key index out of range — and the caller then
// treats data as one plain record. The records' Data alias data (no copy). An aggregate may
// hold zero records. Decode never panics.
func Decode(data []byte) (records []Record, ok bool) {
	return AppendDecode(nil, data)
}

// AppendDecode is [Decode] appending to dst, so a caller can reuse one slice of records.
// When ok is false, dst is returned unchanged in length.
func AppendDecode(dst []Record, data []byte) (records []Record, ok bool) {
	if !IsAggregate(data) {
		return dst, false
	}
	msg := data[len(Magic) : len(data)-md5.Size]
	var pks, ehks []string
	// First pass: tables (they may in principle follow the records).
	nrec := 0
	for b := msg; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return dst, false
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldPKTable || num == fieldEHKTable || num == fieldRecords) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return dst, false
			}
			b = b[m:]
			switch num {
			case fieldPKTable:
				pks = append(pks, string(v))
			case fieldEHKTable:
				ehks = append(ehks, string(v))
			default:
				nrec++
			}
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return dst, false
		}
		b = b[m:]
	}
	base := len(dst)
	dst = growRecords(dst, nrec)
	var ir idReader
	for b := msg; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:] // validated in the first pass
		if typ != protowire.BytesType || num != fieldRecords {
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		b = b[m:]
		r, good := decodeRecord(v, pks, ehks, &ir)
		if !good {
			clear(dst[base:])
			return dst[:base], false
		}
		dst = append(dst, r)
	}
	return dst, true
}

// growRecords makes room for n more records, growing geometrically: a caller appends the
// aggregates of a whole GetRecords response to one slice, and growing it by exactly n each
// time copied it once per aggregate (quadratic in the response's user records).
func growRecords(dst []Record, n int) []Record { return slices.Grow(dst, n) }

// decodeRecord parses one Record message against the key tables; ir carries the identity
// run of the aggregate's records.
func decodeRecord(b []byte, pks, ehks []string, ir *idReader) (Record, bool) {
	var (
		r                Record
		havePK, haveData bool
		pkIdx, ehkIdx    uint64
		haveEHK, haveSeq bool
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return Record{}, false
		}
		b = b[n:]
		switch {
		case num == fieldPKIndex && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return Record{}, false
			}
			b = b[m:]
			pkIdx, havePK = v, true
		case num == fieldEHKIndex && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return Record{}, false
			}
			b = b[m:]
			ehkIdx, haveEHK = v, true
		case num == fieldData && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return Record{}, false
			}
			b = b[m:]
			r.Data, haveData = v, true
		case num == fieldTags && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return Record{}, false
			}
			key, val, ok := parseTag(v)
			if !ok {
				return Record{}, false
			}
			if len(key) > 3 && key[0] == 'k' && key[1] == 'l' && key[2] == '.' {
				ir.tag(key, val, &r.ID, &haveSeq)
			}
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return Record{}, false
			}
			b = b[m:]
		}
	}
	if !havePK || !haveData || pkIdx >= uint64(len(pks)) {
		return Record{}, false
	}
	r.PartitionKey = pks[pkIdx]
	if haveEHK {
		if ehkIdx >= uint64(len(ehks)) {
			return Record{}, false
		}
		r.ExplicitHashKey = ehks[ehkIdx]
	}
	if r.Data == nil {
		r.Data = []byte{}
	}
	if haveSeq && ir.str != "" {
		r.ID.Origin, r.ID.Floor = ir.str, ir.floor
	} else {
		r.ID = Identity{}
	}
	return r, true
}

// parseTag reads a Tag message: its key (required) and value (optional).
func parseTag(b []byte) (key, val []byte, ok bool) {
	haveKey := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return nil, nil, false
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldTagKey || num == fieldTagValue) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, nil, false
			}
			if num == fieldTagKey {
				key, haveKey = v, true
			} else {
				val = v
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, nil, false
		}
		b = b[m:]
	}
	return key, val, haveKey
}

package kpl

import (
	"math/bits"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Identity is a user record's kinlog identity, carried in the tags of its KPL Record
// (field 4 of the Record message, which the KCL and the other deaggregators ignore): the
// producer or origin it came from and its sequence number there. The archive sink drops a
// user record whose identity it has already archived; see docs/identity.md.
//
// On the wire, every user record that has an identity carries the tag [TagSeq] = "<seq>"
// (or "<seq>+<span>" when Span > 1), and the first user record of each run of records with
// the same Origin in an aggregate also carries [TagOrigin] = Origin and [TagFloor] =
// "<floor>". A decoder reads the origin and floor of a record from the last run start at
// or before it.
type Identity struct {
	// Origin names the sequence: a producer id, or an agent's file. "" means no identity.
	Origin string
	// Seq is the record's position in its origin's sequence, and Span the length it
	// covers there (0 is read as 1): a producer numbers records 0, 1, 2 …; the agent uses
	// byte offsets and line lengths.
	Seq, Span uint64
	// Floor promises that every position of Origin below it was acknowledged by Kinesis
	// before this aggregate was built (0 promises nothing).
	Floor uint64
}

// IsZero reports whether id is no identity.
func (id Identity) IsZero() bool { return id.Origin == "" }

// End returns the position after the span the record covers.
func (id Identity) End() uint64 { return id.Seq + max(id.Span, 1) }

// String formats the identity as "<origin>/<seq>", or "<origin>/<seq>+<span>" when
// Span > 1 ("" for no identity): the archive's kinlog_id.
func (id Identity) String() string {
	if id.Origin == "" {
		return ""
	}
	return string(id.AppendText(nil))
}

// AppendText appends [Identity.String] to b.
func (id Identity) AppendText(b []byte) []byte {
	if id.Origin == "" {
		return b
	}
	b = append(b, id.Origin...)
	b = append(b, '/')
	b = strconv.AppendUint(b, id.Seq, 10)
	if id.Span > 1 {
		b = append(b, '+')
		b = strconv.AppendUint(b, id.Span, 10)
	}
	return b
}

// The tag keys of an identity.
const (
	TagOrigin = "kl.o"
	TagFloor  = "kl.f"
	TagSeq    = "kl.s"
)

// maxOriginLen bounds an origin; longer ones are not encoded (the record goes without).
const MaxOriginLen = 128

// decLen returns the number of decimal digits of n.
func decLen(n uint64) int {
	// 1233/4096 is just above log10(2): l is the digit count of 2^(bits-1), which is n's or
	// one less.
	l := bits.Len64(n) * 1233 >> 12
	if n >= pow10[l] {
		l++
	}
	return max(l, 1)
}

// pow10[i] is 10^i.
var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
	1e15, 1e16, 1e17, 1e18, 1e19}

// tagSize returns the encoded size of a Record's field-4 entry holding a Tag with a key of
// keyLen bytes and a value of valLen bytes.
func tagSize(keyLen, valLen int) int {
	inner := 1 + protowire.SizeVarint(uint64(keyLen)) + keyLen + 1 + protowire.SizeVarint(uint64(valLen)) + valLen
	return 1 + protowire.SizeVarint(uint64(inner)) + inner
}

func seqValueLen(id Identity) int {
	n := decLen(id.Seq)
	if id.Span > 1 {
		n += 1 + decLen(id.Span)
	}
	return n
}

// idTagsSize is the size of the identity tags of a record; run says it starts a run.
func idTagsSize(id Identity, run bool) int {
	if id.Origin == "" {
		return 0
	}
	n := tagSize(len(TagSeq), seqValueLen(id))
	if run {
		n += tagSize(len(TagOrigin), len(id.Origin)) + tagSize(len(TagFloor), decLen(id.Floor))
	}
	return n
}

const (
	tagTags     = byte(fieldTags<<3) | byte(protowire.BytesType)
	tagTagKey   = byte(fieldTagKey<<3) | byte(protowire.BytesType)
	tagTagValue = byte(fieldTagValue<<3) | byte(protowire.BytesType)
)

// appendTagHead appends a Record's field-4 tag and Tag message up to the value's bytes,
// for a value of valLen bytes.
func appendTagHead(b []byte, key string, valLen int) []byte {
	inner := 1 + protowire.SizeVarint(uint64(len(key))) + len(key) + 1 + protowire.SizeVarint(uint64(valLen)) + valLen
	b = append(b, tagTags)
	b = protowire.AppendVarint(b, uint64(inner))
	b = append(b, tagTagKey)
	b = protowire.AppendVarint(b, uint64(len(key)))
	b = append(b, key...)
	b = append(b, tagTagValue)
	return protowire.AppendVarint(b, uint64(valLen))
}

// appendIDTags appends the identity tags of a record.
func appendIDTags(b []byte, id Identity, run bool) []byte {
	if id.Origin == "" {
		return b
	}
	if run {
		b = appendTagHead(b, TagOrigin, len(id.Origin))
		b = append(b, id.Origin...)
		b = appendTagHead(b, TagFloor, decLen(id.Floor))
		b = strconv.AppendUint(b, id.Floor, 10)
	}
	b = appendTagHead(b, TagSeq, seqValueLen(id))
	b = strconv.AppendUint(b, id.Seq, 10)
	if id.Span > 1 {
		b = append(b, '+')
		b = strconv.AppendUint(b, id.Span, 10)
	}
	return b
}

// parseUint parses a decimal uint64 without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// idReader accumulates the identity tags of the records of one aggregate.
type idReader struct {
	origin []byte // of the current run (aliases the aggregate)
	str    string // origin as a string, made once per run
	floor  uint64
}

// tag handles one Tag of a record; it reports whether it was an identity tag, and sets
// seq/span when it was the sequence tag.
func (ir *idReader) tag(key, val []byte, id *Identity, haveSeq *bool) {
	switch string(key) {
	case TagOrigin:
		if len(val) == 0 || len(val) > MaxOriginLen {
			ir.origin, ir.str = nil, ""
			return
		}
		if string(val) != ir.str {
			ir.origin, ir.str = val, string(val)
		}
		ir.floor = 0
	case TagFloor:
		if f, ok := parseUint(val); ok {
			ir.floor = f
		}
	case TagSeq:
		seq, span := val, []byte(nil)
		for i, c := range val {
			if c == '+' {
				seq, span = val[:i], val[i+1:]
				break
			}
		}
		s, ok := parseUint(seq)
		if !ok {
			return
		}
		id.Seq, id.Span = s, 0
		if span != nil {
			n, ok := parseUint(span)
			if !ok || n == 0 {
				return
			}
			if n > 1 {
				id.Span = n
			}
		}
		*haveSeq = true
	}
}

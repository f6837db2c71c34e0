package kpl

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"strconv"
)

// HashKey is a Kinesis hash key: an unsigned 128-bit integer stored as 16 big-endian bytes,
// so that byte order is numeric order.
type HashKey [16]byte

// MaxHashKey is the largest hash key, 2^128-1.
var MaxHashKey = HashKey{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ErrInvalidHashKey is returned (wrapped) for a hash key that is not a decimal integer in
// 0 .. 2^128-1.
var ErrInvalidHashKey = errors.New("kpl: invalid hash key")

// PartitionKeyHash returns the hash key Kinesis assigns to a partition key: the MD5 digest of
// its UTF-8 bytes, read as an unsigned big-endian integer. It does not allocate.
func PartitionKeyHash(partitionKey string) HashKey {
	var buf [64]byte
	if len(partitionKey) <= len(buf) {
		n := copy(buf[:], partitionKey)
		return md5.Sum(buf[:n])
	}
	return md5.Sum([]byte(partitionKey))
}

// ParseHashKey parses a decimal hash key (as Kinesis writes them in shard ranges and explicit
// hash keys) without allocating. It accepts only ASCII digits; leading zeros are allowed.
func ParseHashKey(s string) (HashKey, error) {
	if len(s) == 0 {
		return HashKey{}, fmt.Errorf("%w: empty", ErrInvalidHashKey)
	}
	var hi, lo uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return HashKey{}, fmt.Errorf("%w: %q is not a decimal integer", ErrInvalidHashKey, s)
		}
		// (hi,lo) = (hi,lo)*10 + d
		h1, l1 := bits.Mul64(lo, 10)
		h2, h2lo := bits.Mul64(hi, 10)
		if h2 != 0 {
			return HashKey{}, fmt.Errorf("%w: %q exceeds 2^128-1", ErrInvalidHashKey, s)
		}
		var carry uint64
		hi, carry = bits.Add64(h2lo, h1, 0)
		if carry != 0 {
			return HashKey{}, fmt.Errorf("%w: %q exceeds 2^128-1", ErrInvalidHashKey, s)
		}
		lo, carry = bits.Add64(l1, uint64(c-'0'), 0)
		hi, carry = bits.Add64(hi, 0, carry)
		if carry != 0 {
			return HashKey{}, fmt.Errorf("%w: %q exceeds 2^128-1", ErrInvalidHashKey, s)
		}
	}
	var h HashKey
	binary.BigEndian.PutUint64(h[:8], hi)
	binary.BigEndian.PutUint64(h[8:], lo)
	return h, nil
}

// String returns the hash key in decimal, the form Kinesis uses.
func (h HashKey) String() string {
	var buf [40]byte
	return string(h.AppendDecimal(buf[:0]))
}

// AppendDecimal appends the decimal form of h to dst.
func (h HashKey) AppendDecimal(dst []byte) []byte {
	hi := binary.BigEndian.Uint64(h[:8])
	lo := binary.BigEndian.Uint64(h[8:])
	if hi == 0 {
		return strconv.AppendUint(dst, lo, 10)
	}
	// Divide by 10^19 (the largest power of ten in a uint64) to split into 19-digit chunks.
	const chunk = 10000000000000000000
	var parts [3]uint64
	n := 0
	for hi != 0 {
		var r uint64
		qhi := hi / chunk
		r = hi % chunk
		qlo, rem := bits.Div64(r, lo, chunk)
		parts[n] = rem
		n++
		hi, lo = qhi, qlo
	}
	dst = strconv.AppendUint(dst, lo, 10)
	for i := n - 1; i >= 0; i-- {
		var tmp [19]byte
		s := strconv.AppendUint(tmp[:0], parts[i], 10)
		for j := len(s); j < 19; j++ {
			dst = append(dst, '0')
		}
		dst = append(dst, s...)
	}
	return dst
}

// Compare returns -1, 0 or +1 as h is less than, equal to or greater than o.
func (h HashKey) Compare(o HashKey) int { return bytes.Compare(h[:], o[:]) }

// BigInt returns h as a math/big integer (for display or interop; not needed to compare).
func (h HashKey) BigInt() *big.Int { return new(big.Int).SetBytes(h[:]) }

// HashKeyRange is an inclusive range of hash keys, as a shard's HashKeyRange.
type HashKeyRange struct {
	Start, End HashKey
}

// ParseHashKeyRange parses a shard's decimal StartingHashKey and EndingHashKey.
func ParseHashKeyRange(start, end string) (HashKeyRange, error) {
	s, err := ParseHashKey(start)
	if err != nil {
		return HashKeyRange{}, fmt.Errorf("parsing starting hash key: %w", err)
	}
	e, err := ParseHashKey(end)
	if err != nil {
		return HashKeyRange{}, fmt.Errorf("parsing ending hash key: %w", err)
	}
	if s.Compare(e) > 0 {
		return HashKeyRange{}, fmt.Errorf("%w: range start %s is above end %s", ErrInvalidHashKey, start, end)
	}
	return HashKeyRange{Start: s, End: e}, nil
}

// Contains reports whether h lies in the range, ends included.
func (r HashKeyRange) Contains(h HashKey) bool {
	return r.Start.Compare(h) <= 0 && h.Compare(r.End) <= 0
}

// HashKey returns the record's effective hash key: its explicit hash key when set, else the
// MD5 of its partition key. The error reports an explicit hash key that does not parse.
func (r *Record) HashKey() (HashKey, error) {
	if r.ExplicitHashKey != "" {
		return ParseHashKey(r.ExplicitHashKey)
	}
	return PartitionKeyHash(r.PartitionKey), nil
}

// AllInRange reports whether every record's effective hash key lies in rng. A record whose
// explicit hash key does not parse counts as outside. The KCL keeps the user records of an
// aggregate only when all of them are in the range of the shard the aggregate was read from,
// and drops the whole aggregate otherwise; a consumer calls AllInRange to make the same
// decision, and the producer to learn whether an aggregate that landed on an unexpected
// shard will be dropped (and so must be sent again).
func AllInRange(records []Record, rng HashKeyRange) bool {
	for i := range records {
		h, err := records[i].HashKey()
		if err != nil || !rng.Contains(h) {
			return false
		}
	}
	return true
}

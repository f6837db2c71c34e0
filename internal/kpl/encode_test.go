package kpl

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestDecLen checks decLen against strconv at every power of ten and two and around them.
func TestDecLen(t *testing.T) {
	check := func(n uint64) {
		if got, want := decLen(n), len(strconv.FormatUint(n, 10)); got != want {
			t.Fatalf("decLen(%d) = %d, want %d", n, got, want)
		}
	}
	check(0)
	check(math.MaxUint64)
	for _, p := range pow10 {
		check(p - 1)
		check(p)
		check(p + 1)
	}
	for i := range 64 {
		check(1<<i - 1)
		check(1 << i)
		check(1<<i + 1)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		check(r.Uint64() >> r.IntN(64))
	}
}

// goldenRecords returns a deterministic mix of records: shared and new partition keys,
// explicit hash keys, identities of two origins in runs (spans, sequence numbers of every
// digit count, floors), records without identity in between, empty data.
func goldenRecords() []Record {
	r := rand.New(rand.NewPCG(7, 11))
	var recs []Record
	for i := range 3000 {
		rec := Record{PartitionKey: "key-" + strconv.Itoa(r.IntN(300)), Data: make([]byte, r.IntN(300))}
		for j := range rec.Data {
			rec.Data[j] = byte(r.Uint32())
		}
		if r.IntN(10) == 0 {
			rec.ExplicitHashKey = strconv.FormatUint(r.Uint64(), 10)
		}
		switch k := r.IntN(20); {
		case k == 0: // no identity
		case k == 1:
			rec.ID = Identity{Origin: "file-" + strconv.Itoa(i%3), Seq: r.Uint64() >> r.IntN(64), Span: uint64(r.IntN(500)), Floor: uint64(i)}
		default:
			rec.ID = Identity{Origin: "0123456789abcdef0123456789abcdef", Seq: uint64(i) << (i % 50), Floor: uint64(i / 2)}
		}
		recs = append(recs, rec)
	}
	return recs
}

// TestEncodingGolden pins the encoder's bytes: the aggregates of goldenRecords, cut at the
// default size with TryAdd, must hash to the digest the encoder gave before its size and
// tag computations were reworked for speed.
func TestEncodingGolden(t *testing.T) {
	h := sha256.New()
	var a Aggregator
	var buf []byte
	n := 0
	for _, r := range goldenRecords() {
		if !a.TryAdd(r, DefaultMaxSize) {
			buf = a.AppendEncode(buf[:0])
			if len(buf) != a.Size() {
				t.Fatalf("encoded %d bytes, Size() said %d", len(buf), a.Size())
			}
			h.Write(buf)
			n++
			a.Reset()
			if sw := a.SizeWith(r); sw > DefaultMaxSize {
				t.Fatalf("record does not fit an empty aggregate: %d", sw)
			}
			a.Add(r)
		}
	}
	buf = a.AppendEncode(buf[:0])
	h.Write(buf)
	n++
	got := hex.EncodeToString(h.Sum(nil))
	t.Logf("%d aggregates, digest %s", n, got)
	if got != goldenDigest {
		t.Fatalf("digest %s, want %s", got, goldenDigest)
	}
}

// goldenDigest is the SHA-256 of the aggregates of TestEncodingGolden, as encoded before.
const goldenDigest = "c0877d249be134ceab658cc4997f8d86524b4dc08a80adfa3e8af587ee256fa1"

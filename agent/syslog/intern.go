package syslog

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

// internMax is the length up to which header values are interned.
const internMax = 64

// internTab is a cache of recent header values (host names, tags, pids, message IDs), so
// that parsing a sender's messages does not allocate a string for each. A value lives in
// one of two slots chosen by its hash. Concurrent parsers may overwrite each other's
// entries, which costs an allocation, never a wrong value.
var internTab [1024]atomic.Pointer[string]

// intern returns b as a string, from the cache when it holds it.
func intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMax {
		return string(b)
	}
	h := hash(b)
	s1 := &internTab[h%uint64(len(internTab))]
	p1 := s1.Load()
	if p1 != nil && *p1 == string(b) {
		return *p1
	}
	s2 := &internTab[(h>>32)%uint64(len(internTab))]
	p2 := s2.Load()
	if p2 != nil && *p2 == string(b) {
		return *p2
	}
	s := string(b)
	switch {
	case p1 == nil:
		s2 = s1
	case p2 != nil && h&(1<<20) == 0:
		s2 = s1 // both taken: evict one of them, chosen by the hash
	}
	s2.Store(&s)
	return s
}

// hash mixes all of b, eight bytes at a time.
func hash(b []byte) uint64 {
	h := uint64(len(b)) * 0x9e3779b97f4a7c15
	for ; len(b) >= 8; b = b[8:] {
		h = (h ^ binary.LittleEndian.Uint64(b)) * 0xff51afd7ed558ccd
		h ^= h >> 32
	}
	var tail uint64
	for i, c := range b {
		tail |= uint64(c) << (8 * i)
	}
	h = (h ^ tail) * 0xc4ceb9fe1a85ec53
	return h ^ h>>29
}

// zones caches the locations of RFC 3339 offsets, indexed by the offset in minutes plus
// 23*60+59, so that parsing a timestamp with an offset does not allocate one each time.
var zones [2*(23*60+59) + 1]atomic.Pointer[time.Location]

// fixedZone returns the location of a UTC offset in minutes: time.UTC for 0, else an
// unnamed fixed zone.
func fixedZone(minutes int) *time.Location {
	if minutes == 0 {
		return time.UTC
	}
	slot := &zones[minutes+23*60+59]
	if l := slot.Load(); l != nil {
		return l
	}
	l := time.FixedZone("", minutes*60)
	slot.Store(l)
	return l
}

package kpl

import (
	"crypto/md5"
	"sync"

	md5simd "github.com/minio/md5-simd"
)

// Summer fills the MD5 trailers of many encoded aggregates at once. It hashes up to sixteen
// aggregates in parallel on one core with AVX-512, eight with AVX2
// (github.com/minio/md5-simd), which costs a fraction of the CPU of hashing them one by one;
// without AVX2 it falls back to crypto/md5, and small batches use crypto/md5 directly. A Summer is safe for concurrent use; Close it
// when done.
type Summer struct {
	srv    md5simd.Server
	mu     sync.Mutex
	free   []md5simd.Hasher // idle hashers, reused: creating one costs a round trip to the server
	closed bool
}

// summerLanes is how many aggregates a Summer hands to the server at once: md5-simd's lane
// count with AVX-512 (with AVX2 it runs them as two rounds of eight), and summerMinBatch the
// smallest batch worth the hand-off.
const (
	summerLanes    = 16
	summerMinBatch = 3
)

// NewSummer returns a Summer; it starts a goroutine that Close stops.
func NewSummer() *Summer { return &Summer{srv: md5simd.NewServer()} }

// Close releases the Summer's hashers and goroutine. It must not be used afterwards.
func (s *Summer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, h := range s.free {
		h.Close()
	}
	s.free = nil
	s.srv.Close()
}

func (s *Summer) hasher() md5simd.Hasher {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.free); n > 0 {
		h := s.free[n-1]
		s.free = s.free[:n-1]
		return h
	}
	return s.srv.NewHash()
}

func (s *Summer) release(h md5simd.Hasher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		h.Close()
		return
	}
	s.free = append(s.free, h)
}

// SumAll writes the MD5 trailer of every aggregate in aggs, each laid out by
// [Aggregator.AppendEncodeUnsummed] (magic, protobuf, 16 trailer bytes). The result is the
// same as [SetSum] on each.
func (s *Summer) SumAll(aggs [][]byte) {
	if len(aggs) < summerMinBatch {
		for _, a := range aggs {
			SetSum(a)
		}
		return
	}
	var wg sync.WaitGroup
	for start := 0; start < len(aggs); start += summerLanes {
		for _, a := range aggs[start:min(start+summerLanes, len(aggs))] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := s.hasher()
				h.Reset()
				_, _ = h.Write(a[len(Magic) : len(a)-md5.Size]) // never fails
				copy(a[len(a)-md5.Size:], h.Sum(nil))
				s.release(h)
			}()
		}
		wg.Wait()
	}
}

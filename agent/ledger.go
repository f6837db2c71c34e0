package agent

import (
	"sort"
	"sync"
	"sync/atomic"
)

// span is one record read from a file: the bytes [start, end) it came from and when it
// was read (nanoseconds of the agent's clock).
type span struct {
	start, end int64
	readAt     int64
	done       bool
}

// ledger tracks the records of one file between read and confirmed. Its committed offset
// only moves past a byte once every record that came from the bytes before it is confirmed
// by Kinesis, whatever the order the confirmations arrive in; that is the position stored
// for the file. Spans are appended in file order by the reader and marked done by the
// producer's result handler.
type ledger struct {
	mu        sync.Mutex
	spans     []span // pending spans in file order; spans[head:] are live
	head      int
	committed int64
	inflight  int           // spans not done
	m         *inputMetrics // the input the file belongs to
	changed   atomic.Bool   // committed moved since the last takeChanged
}

// takeChanged tells whether the committed offset moved since the last call.
func (l *ledger) takeChanged() bool { return l.changed.Swap(false) }

// add appends a record read from [start, end); an empty record (nothing to ship) is
// passed as done.
func (l *ledger) add(start, end, readAt int64, done bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.head == len(l.spans) {
		l.spans, l.head = l.spans[:0], 0
		if done {
			l.committed = end
			l.changed.Store(true)
			return
		}
	}
	if done && l.head < len(l.spans) && l.spans[len(l.spans)-1].done {
		// Merge consecutive skipped bytes into one span.
		l.spans[len(l.spans)-1].end = end
		return
	}
	l.spans = append(l.spans, span{start: start, end: end, readAt: readAt, done: done})
	if !done {
		l.inflight++
	}
}

// unadd removes the span just added (its Put failed).
func (l *ledger) unadd() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.spans); n > l.head {
		if !l.spans[n-1].done {
			l.inflight--
		}
		l.spans = l.spans[:n-1]
	}
}

// confirm marks the record that starts at start done and advances the committed offset.
func (l *ledger) confirm(start int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	live := l.spans[l.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].start >= start })
	// Spans may share a start (records flushed at a file's end): the first not done.
	for i < len(live) && live[i].start == start && live[i].done {
		i++
	}
	if i == len(live) || live[i].start != start {
		return
	}
	live[i].done = true
	l.inflight--
	for l.head < len(l.spans) && l.spans[l.head].done {
		l.committed = l.spans[l.head].end
		l.head++
		l.changed.Store(true)
	}
	if l.head > 1024 && l.head*2 > len(l.spans) {
		n := copy(l.spans, l.spans[l.head:])
		l.spans, l.head = l.spans[:n], 0
	}
}

// state returns the committed offset, the number of records in flight and the read time
// of the oldest one (0 when none).
func (l *ledger) state() (committed int64, inflight int, oldest int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// After confirm, the first live span is never done: it is the oldest in flight.
	if l.head < len(l.spans) {
		oldest = l.spans[l.head].readAt
	}
	return l.committed, l.inflight, oldest
}

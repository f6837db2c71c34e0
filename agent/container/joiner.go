package container

import "unicode/utf8"

// A Joiner joins the pieces of long lines (those with [Line.Partial] set, then the final
// piece without it) into whole records, for the lines of one file in file order. Pieces are
// joined per stream: stdout and stderr write to the same file independently, so a piece of
// one may sit between the pieces of the other.
//
// A record never exceeds the limit given to [NewJoiner]: when the pieces exceed it, [Joiner.Add]
// returns what it has, cut to the limit, at once, and drops the rest of that record's pieces
// up to and including its final one. So a Joiner holds at most the limit per stream.
//
// A Joiner is not safe for concurrent use.
type Joiner struct {
	max     int
	streams [2]joinState // indexed by Stream: Stdout, and Stderr for every other value
}

type joinState struct {
	buf        []byte
	first      Line // the first piece, without its Log
	pending    bool // buf holds the pieces of an unfinished record
	discarding bool // a record was cut: drop its pieces through the final one
}

// keepBuf is the largest buffer a Joiner keeps for the next record; a record that needed
// more gets a buffer of its own, released once it is returned.
const keepBuf = 64 << 10

// NewJoiner returns a Joiner that builds records of at most max bytes. It panics if max is
// less than 1.
func NewJoiner(max int) *Joiner {
	if max < 1 {
		panic("container: NewJoiner with a limit below 1")
	}
	return &Joiner{max: max}
}

// Add takes the next line of the file. When l completes a record, Add returns it with done
// set: the concatenation of the stream's preceding partial lines and l's content. first is
// the record's first piece (its Time and Stream) with Log set to rec and Partial false.
//
// When the record exceeds the limit, Add returns it as soon as it does, cut to at most max
// bytes (at a UTF-8 character boundary when the cut would split a character), with truncated
// and done set; the record's remaining pieces, through its final one, are then dropped
// (Add returns done false for them).
//
// rec is l.Log itself when l is a whole line on its own (cut to the limit if needed), so it
// aliases the caller's input; otherwise it is the Joiner's buffer. Either way it is valid
// only until the next call of Add or [Joiner.Flush].
func (j *Joiner) Add(l Line) (rec []byte, first Line, truncated, done bool) {
	st := &j.streams[min(l.Stream, Stderr)]
	if st.discarding {
		st.discarding = l.Partial
		return nil, Line{}, false, false
	}
	if !st.pending {
		if !l.Partial {
			rec = l.Log
			if len(rec) > j.max {
				rec, truncated = cut(rec, j.max), true
			}
			first = l
			first.Log = rec
			return rec, first, truncated, true
		}
		if cap(st.buf) > keepBuf {
			st.buf = nil
		}
		st.buf = st.buf[:0]
		st.first = l
		st.first.Log = nil
		st.first.Partial = false
		st.pending = true
	}
	if len(st.buf)+len(l.Log) > j.max {
		// Up to UTFMax bytes past the limit, so that cut sees the character at the limit.
		st.buf = cut(append(st.buf, l.Log[:min(len(l.Log), j.max-len(st.buf)+utf8.UTFMax)]...), j.max)
		st.pending = false
		st.discarding = l.Partial
		return st.record(), st.first, true, true
	}
	st.buf = append(st.buf, l.Log...)
	if l.Partial {
		return nil, Line{}, false, false
	}
	st.pending = false
	return st.record(), st.first, false, true
}

func (st *joinState) record() []byte {
	st.first.Log = st.buf
	return st.buf
}

// cut shortens b to at most max bytes, backing off to the start of a UTF-8 character (by at
// most 3 bytes) when the cut would fall inside one.
func cut(b []byte, max int) []byte {
	if len(b) <= max {
		return b
	}
	n := max
	for i := max; i > 0 && i > max-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			// b[i] starts a character: keep b[:i] when that character would straddle
			// the cut, that is when b[i:max] does not hold the whole of it.
			if r, size := utf8.DecodeRune(b[i:]); r != utf8.RuneError && i+size > max {
				n = i
			}
			break
		}
	}
	return b[:n]
}

// Pending reports whether the Joiner holds pieces of an unfinished record (on either
// stream); [Joiner.Flush] returns them. A record that was cut at the limit and whose
// remaining pieces are being dropped is not pending: it was returned.
func (j *Joiner) Pending() bool {
	return j.streams[Stdout].pending || j.streams[Stderr].pending
}

// Flush returns an unfinished record as it is, for when its final piece will not come: at
// the end of a file that will not grow (the container exited mid-line) or after a timeout.
// With pieces pending on both streams, it returns the one whose first piece is older; call
// it until ok is false to flush both. rec is valid until the next call of [Joiner.Add] or
// Flush. Pieces that arrive after a Flush start a new record.
func (j *Joiner) Flush() (rec []byte, first Line, ok bool) {
	so, se := &j.streams[Stdout], &j.streams[Stderr]
	st := so
	switch {
	case so.pending && se.pending:
		if se.first.Time.Before(so.first.Time) {
			st = se
		}
	case se.pending:
		st = se
	case !so.pending:
		return nil, Line{}, false
	}
	st.pending = false
	return st.record(), st.first, true
}

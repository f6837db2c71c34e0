package syslog

import (
	"bytes"
	"errors"
	"io"
)

// DefaultMaxFrame is the frame size limit of a [Reader] made with a max of 0 or less.
const DefaultMaxFrame = 64 << 10

// ErrTooLong is returned by [Reader.Next] with the first max bytes of a frame longer than
// max; the rest of that frame is skipped.
var ErrTooLong = errors.New("syslog: frame too long")

// maxCountDigits is the most digits an octet count may have; a longer run of digits
// starts a non-transparent frame.
const maxCountDigits = 9

// Reader splits a syslog stream (TCP, or a Unix stream socket) into frames as RFC 6587
// describes, choosing the framing per frame:
//
//   - A frame that starts with a digit is octet-counted: "MSG-LEN SP SYSLOG-MSG", the
//     decimal length (at most 9 digits) then one space then exactly that many bytes, which
//     are returned as they are.
//   - Any other frame (and one whose digits are not followed by a space) is
//     non-transparent: it ends at LF or at NUL (the only terminator Python's SysLogHandler
//     sends over TCP), which is not returned, nor is a CR before it.
//
// Empty frames (blank lines, a LF after an octet-counted frame, an octet count of 0) are
// skipped. A final frame the stream ends in the middle of is returned before the end. A
// Reader is not safe for concurrent use.
type Reader struct {
	r          io.Reader
	max        int
	buf        []byte // the unread bytes are buf[start:end]
	start, end int
	err        error // the error that ended reading from r; returned once buf is drained
	skip       int   // bytes of a too long octet-counted frame still to discard
	discarding bool  // discarding a too long non-transparent frame up to its terminator
}

// NewReader returns a Reader that reads frames from r. Frames longer than max bytes are
// cut (see [Reader.Next]); max <= 0 means [DefaultMaxFrame]. The Reader buffers at most
// max plus a few bytes.
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &Reader{r: r, max: max}
}

// Next returns the next frame. The slice is valid until the next call to Next.
//
// A frame longer than the Reader's max comes back cut to max bytes with [ErrTooLong];
// the next call continues with the frame after it. At the end of the stream Next returns
// io.EOF, and any other error from the underlying reader once the frames read before it
// are returned; both are returned again by further calls.
func (r *Reader) Next() ([]byte, error) {
	for {
		if (r.skip > 0 || r.discarding) && !r.drop() {
			return nil, r.err
		}
		if r.start == r.end {
			if !r.fill() {
				return nil, r.err
			}
			continue
		}
		if isDigit(r.buf[r.start]) {
			frame, st, err := r.counted()
			switch st {
			case frameDone:
				return frame, err
			case frameRetry:
				continue
			}
		}
		frame, st, err := r.line()
		if st == frameDone {
			return frame, err
		}
	}
}

type frameState uint8

const (
	frameDone  frameState = iota // a frame (or the final error) is returned
	frameRetry                   // more data was read, or an empty frame skipped: look again
	frameOther                   // not an octet-counted frame
)

// counted reads the octet-counted frame at the start of the buffer.
func (r *Reader) counted() ([]byte, frameState, error) {
	i, n := r.start, 0
	for ; i < r.end && isDigit(r.buf[i]) && i-r.start < maxCountDigits+1; i++ {
		n = n*10 + int(r.buf[i]-'0')
	}
	digits := i - r.start
	if digits > maxCountDigits {
		return nil, frameOther, nil
	}
	if i == r.end {
		if r.fill() {
			return nil, frameRetry, nil
		}
		return nil, frameOther, nil // the stream ends in digits: the final frame
	}
	if r.buf[i] != ' ' {
		return nil, frameOther, nil
	}
	hdr := digits + 1
	if n == 0 {
		r.start += hdr
		return nil, frameRetry, nil
	}
	want := min(n, r.max)
	for r.end-r.start < hdr+want {
		if !r.fill() {
			break // the stream ends inside the frame: return what there is
		}
	}
	got := min(want, r.end-r.start-hdr)
	if got == 0 { // the stream ended right after the header
		r.start += hdr
		return nil, frameRetry, nil
	}
	frame := r.buf[r.start+hdr : r.start+hdr+got]
	r.start += hdr + got
	if n > r.max {
		r.skip = n - got
		return frame, frameDone, ErrTooLong
	}
	return frame, frameDone, nil
}

// line reads the non-transparent frame at the start of the buffer.
func (r *Reader) line() ([]byte, frameState, error) {
	data := r.buf[r.start:r.end]
	if i := indexTerminator(data); i >= 0 {
		r.start += i + 1
		return r.cut(trimCR(data[:i]))
	}
	if n := len(data); n > r.max+1 || (n == r.max+1 && data[n-1] != '\r') {
		r.start = r.end
		r.discarding = true
		return data[:r.max], frameDone, ErrTooLong
	}
	if r.fill() {
		return nil, frameRetry, nil
	}
	data = r.buf[r.start:r.end] // fill may have moved it
	r.start = r.end             // the stream ends inside the frame: return what there is
	return r.cut(trimCR(data))
}

// cut returns a complete non-transparent frame, cut to max; an empty one is skipped.
func (r *Reader) cut(frame []byte) ([]byte, frameState, error) {
	switch {
	case len(frame) == 0:
		return nil, frameRetry, nil
	case len(frame) > r.max:
		return frame[:r.max], frameDone, ErrTooLong
	}
	return frame, frameDone, nil
}

// drop discards the rest of a too long frame. It reports false when the stream ended
// first.
func (r *Reader) drop() bool {
	for r.skip > 0 {
		if r.start == r.end && !r.fill() {
			return false
		}
		n := min(r.skip, r.end-r.start)
		r.start += n
		r.skip -= n
	}
	for r.discarding {
		if i := indexTerminator(r.buf[r.start:r.end]); i >= 0 {
			r.start += i + 1
			r.discarding = false
			break
		}
		r.start = r.end
		if !r.fill() {
			return false
		}
	}
	return true
}

// fill reads more bytes into the buffer, moving the unread ones to its start and growing
// it when it is full (callers never need more than max plus the longest octet-count
// header and a CR LF). It reports false, with r.err set, when no bytes were added because
// the stream ended or failed.
func (r *Reader) fill() bool {
	if r.err != nil {
		return false
	}
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if r.end == len(r.buf) {
		limit := r.max + maxCountDigits + 3
		size := min(max(2*len(r.buf), 4096), limit)
		if size <= len(r.buf) {
			panic("syslog: Reader buffer overflow") // cannot happen: see the callers
		}
		buf := make([]byte, size)
		copy(buf, r.buf[:r.end])
		r.buf = buf
	}
	for range 100 {
		n, err := r.r.Read(r.buf[r.end:])
		if n < 0 || n > len(r.buf)-r.end {
			r.err = errors.New("syslog: reader returned an invalid count")
			return false
		}
		r.end += n
		if err != nil {
			r.err = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	r.err = io.ErrNoProgress
	return false
}

// indexTerminator returns the index of the first LF or NUL in b, or -1.
func indexTerminator(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		i = len(b)
	}
	if j := bytes.IndexByte(b[:i], 0); j >= 0 {
		return j
	}
	if i == len(b) {
		return -1
	}
	return i
}

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

package consumer

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The SDK's decoding of a GetRecords response (awsJson 1.1) was most of the consumer's CPU
// and memory: it reads the body into a buffer grown by doubling (about 4× the body in
// allocations, all zeroed), then allocates every record's strings, timestamp and data one
// by one. recordsProtocol keeps the SDK's protocol for everything — request serialization,
// signing, retries, error responses — and decodes only the success response of GetRecords
// itself: the body is read into a reused buffer of its Content-Length, and each response's
// data and strings land in a few shared allocations. Anything this decoder does not take
// as it is (escaped or non-ASCII-invalid strings, nulls, ChildShards, duplicate keys,
// numbers out of its range, malformed JSON) goes to the SDK's own decoder on the same
// bytes, so the result is always the SDK's. The fuzz test checks that both agree.

// recordsDecoder is the per-call option that installs recordsProtocol; a client that is
// not the SDK's ignores it.
func recordsDecoder(o *kinesis.Options) {
	if o.Protocol == nil {
		return
	}
	if _, ok := o.Protocol.(recordsProtocol); !ok {
		o.Protocol = recordsProtocol{o.Protocol}
	}
}

// recordsProtocol is the SDK's protocol with a faster decoder of GetRecords' JSON success
// response.
type recordsProtocol struct {
	smithyhttp.ClientProtocol
}

func (p recordsProtocol) DeserializeResponse(ctx context.Context, schema *smithy.OperationSchema, reg *smithy.TypeRegistry, resp *smithyhttp.Response, out smithy.Deserializable) error {
	o, ok := out.(*kinesis.GetRecordsOutput)
	if !ok || resp.StatusCode < 200 || resp.StatusCode >= 300 ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-amz-json-1.") {
		return p.ClientProtocol.DeserializeResponse(ctx, schema, reg, resp, out)
	}
	body, err := readBody(resp.Body, resp.ContentLength)
	defer putBody(body)
	if err != nil {
		return &smithy.DeserializationError{Err: err}
	}
	if decodeGetRecords(body, o) {
		return nil
	}
	*o = kinesis.GetRecordsOutput{}
	r := *resp.Response
	r.Body = io.NopCloser(bytes.NewReader(body))
	return p.ClientProtocol.DeserializeResponse(ctx, schema, reg, &smithyhttp.Response{Response: &r}, out)
}

// Response bodies are read into buffers kept on a short free list, shared by the
// process's consumers: a body is garbage once decoded, and reusing its buffer saves the
// allocation and zeroing of megabytes per call.
const (
	maxKeptBodies = 2
	maxKeptBody   = 16 << 20 // GetRecords returns at most 10 MiB of data, about 14 MB of JSON
	maxPresize    = 16 << 20 // a Content-Length beyond this grows as it arrives
)

var bodies = make(chan []byte, maxKeptBodies)

func readBody(r io.Reader, n int64) ([]byte, error) {
	var buf []byte
	select {
	case buf = <-bodies:
	default:
	}
	if want := min(n, maxPresize) + 1; want > int64(cap(buf)) {
		buf = make([]byte, 0, want) // +1: the read that sees EOF needs room
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func putBody(buf []byte) {
	if buf == nil || cap(buf) > maxKeptBody {
		return
	}
	select {
	case bodies <- buf[:0]:
	default:
	}
}

// dataChunk is the size of the allocations records' data is decoded into (a record larger
// than this gets one of its own size).
const dataChunk = 256 << 10

// decodeGetRecords decodes a GetRecords JSON response into out, or reports false when the
// SDK's decoder must do it. Records' data and strings do not refer to body.
func decodeGetRecords(body []byte, out *kinesis.GetRecordsOutput) bool {
	s := scanner{b: body}
	if !s.consume('{') {
		return false
	}
	var seen [3]bool
	if !s.consume('}') {
		for {
			k, ok := s.plainString()
			if !ok || !s.consume(':') {
				return false
			}
			switch {
			case s.isNull():
				s.i += len("null") // as absent, as the SDK has it
			case string(k) == "Records":
				if seen[0] || !s.records(out) {
					return false
				}
				seen[0] = true
			case string(k) == "NextShardIterator":
				v, ok := s.plainString()
				if seen[1] || !ok {
					return false
				}
				seen[1] = true
				it := string(v)
				out.NextShardIterator = &it
			case string(k) == "MillisBehindLatest":
				n, ok := s.integer()
				if seen[2] || !ok {
					return false
				}
				seen[2] = true
				out.MillisBehindLatest = &n
			case string(k) == "ChildShards":
				return false // only at a shard's end: the SDK's decoder
			default:
				if !s.skip(0) {
					return false
				}
			}
			if s.consume(',') {
				continue
			}
			if s.consume('}') {
				break
			}
			return false
		}
	}
	s.space()
	return s.i == len(s.b)
}

// span is a string's place in the response's string arena; start < 0: absent.
type span struct{ start, end int32 }

// records decodes the Records array.
func (s *scanner) records(out *kinesis.GetRecordsOutput) bool {
	if !s.consume('[') {
		return false
	}
	var (
		recs  []types.Record
		times []time.Time
		keys  [][2]span       // sequence number, partition key
		arena strings.Builder // the sequence numbers and partition keys
		chunk []byte
		from  = s.i
	)
	if !s.consume(']') {
		for {
			if s.isNull() || !s.consume('{') {
				return false
			}
			var r types.Record
			k := [2]span{{-1, -1}, {-1, -1}}
			var got [5]bool
			if !s.consume('}') {
				for {
					name, ok := s.plainString()
					if !ok || !s.consume(':') {
						return false
					}
					field := -1
					switch {
					case s.isNull():
						s.i += len("null") // as absent, as the SDK has it
					case string(name) == "SequenceNumber":
						field = 0
						v, ok := s.plainString()
						if !ok {
							return false
						}
						k[0] = span{int32(arena.Len()), int32(arena.Len() + len(v))}
						arena.Write(v)
					case string(name) == "PartitionKey":
						field = 1
						v, ok := s.plainString()
						if !ok {
							return false
						}
						k[1] = span{int32(arena.Len()), int32(arena.Len() + len(v))}
						arena.Write(v)
					case string(name) == "Data":
						field = 2
						// Only the closing quote is searched for: a backslash is not base64 and
						// fails the decoding, and a line break, which the decoder skips (and
						// JSON does not allow in a string), shows in the decoded length.
						v, ok := s.quoted()
						if !ok {
							return false
						}
						need := base64.StdEncoding.DecodedLen(len(v))
						if cap(chunk)-len(chunk) < need {
							rest := base64.StdEncoding.DecodedLen(len(s.b) - s.i)
							chunk = make([]byte, 0, max(need, min(dataChunk, rest)))
						}
						at := len(chunk)
						m, err := base64.StdEncoding.Decode(chunk[at:at+need], v)
						if err != nil || len(v)%4 != 0 || m != need-padding(v) {
							return false
						}
						chunk = chunk[:at+m]
						r.Data = chunk[at : at+m : at+m]
					case string(name) == "ApproximateArrivalTimestamp":
						field = 3
						t, ok := s.epochSeconds()
						if !ok {
							return false
						}
						times = append(times, t)
						r.ApproximateArrivalTimestamp = &times[len(times)-1]
					case string(name) == "EncryptionType":
						field = 4
						v, ok := s.plainString()
						if !ok {
							return false
						}
						switch string(v) {
						case string(types.EncryptionTypeNone):
							r.EncryptionType = types.EncryptionTypeNone
						case string(types.EncryptionTypeKms):
							r.EncryptionType = types.EncryptionTypeKms
						default:
							r.EncryptionType = types.EncryptionType(v)
						}
					default:
						if !s.skip(1) {
							return false
						}
					}
					if field >= 0 {
						if got[field] {
							return false
						}
						got[field] = true
					}
					if s.consume(',') {
						continue
					}
					if s.consume('}') {
						break
					}
					return false
				}
			}
			if got[2] && r.Data == nil {
				r.Data = []byte{}
			}
			recs = append(recs, r)
			keys = append(keys, k)
			if len(recs) == 1 {
				// Size the slices after the first record: a shard's records tend to be alike.
				n := (len(s.b)-s.i)/max(s.i-from, 1) + 1
				recs = slices.Grow(recs, n)
				times = slices.Grow(times, n)
				keys = slices.Grow(keys, n)
				arena.Grow(n * arena.Len())
			}
			if s.consume(',') {
				continue
			}
			if s.consume(']') {
				break
			}
			return false
		}
	}
	all := arena.String()
	strs := make([]string, 2*len(recs))
	for i := range recs {
		for j, sp := range keys[i] {
			if sp.start >= 0 {
				strs[2*i+j] = all[sp.start:sp.end]
				if j == 0 {
					recs[i].SequenceNumber = &strs[2*i]
				} else {
					recs[i].PartitionKey = &strs[2*i+1]
				}
			}
		}
	}
	if recs == nil {
		recs = []types.Record{} // as the SDK's decoder has it
	}
	out.Records = recs
	return true
}

// scanner reads JSON tokens from b; any token it does not take as it is makes its methods
// report false.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) isNull() bool {
	s.space()
	return bytes.HasPrefix(s.b[s.i:], []byte("null"))
}

// quoted returns the bytes up to the next quote, after an opening one; they may hold
// escapes.
func (s *scanner) quoted() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	rest := s.b[s.i:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil, false
	}
	s.i += j + 1
	return rest[:j], true
}

// padding returns the number of padding characters a base64 text ends with.
func padding(v []byte) int {
	n := 0
	for i := len(v) - 1; i >= 0 && n < 2 && v[i] == '='; i-- {
		n++
	}
	return n
}

// plainString returns the bytes between the quotes of a string whose bytes are its value:
// no escapes, no control characters, valid UTF-8. One pass finds the closing quote and
// checks the bytes before it (these strings are short: keys, sequence numbers, partition
// keys).
func (s *scanner) plainString() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	ascii := true
	for j := s.i; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			v := s.b[s.i:j]
			s.i = j + 1
			return v, ascii || utf8.Valid(v)
		case c < 0x20 || c == '\\':
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// number returns the next number token.
func (s *scanner) number() []byte {
	s.space()
	j := s.i
scan:
	for j < len(s.b) {
		switch c := s.b[j]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			j++
		default:
			break scan
		}
	}
	tok := s.b[s.i:j]
	s.i = j
	return tok
}

// integer reads an integer without sign, exponent or fraction.
func (s *scanner) integer() (int64, bool) {
	tok := s.number()
	if len(tok) == 0 || len(tok) > 18 || (len(tok) > 1 && tok[0] == '0') {
		return 0, false
	}
	var n int64
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// pow10 are the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// epochSeconds reads a timestamp in epoch seconds — digits, optionally a fraction — and
// returns it as the SDK does: the float64 value times 1000, truncated to milliseconds, UTC.
func (s *scanner) epochSeconds() (time.Time, bool) {
	tok := s.number()
	var m uint64
	digits, frac, dot := 0, 0, false
	for _, c := range tok {
		switch {
		case c >= '0' && c <= '9':
			m = m*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot && digits > 0:
			dot = true
		default:
			return time.Time{}, false
		}
	}
	// m < 10^15 < 2^53 and 10^frac exact: the quotient is the correctly rounded value,
	// which strconv.ParseFloat would return too.
	if digits == 0 || digits > 15 || (dot && frac == 0) || (tok[0] == '0' && len(tok) > 1 && tok[1] != '.') {
		return time.Time{}, false
	}
	f := float64(m) / pow10[frac]
	if f >= 1e10 || math.IsNaN(f) {
		return time.Time{}, false
	}
	return time.Unix(0, int64(f*1000)*1e6).UTC(), true
}

// skip skips one value of any kind (depth: nesting so far).
func (s *scanner) skip(depth int) bool {
	if depth > 32 {
		return false
	}
	s.space()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		for j := s.i + 1; j < len(s.b); j++ {
			switch c := s.b[j]; {
			case c == '"':
				ok := utf8.Valid(s.b[s.i+1 : j])
				s.i = j + 1
				return ok
			case c < 0x20:
				return false
			case c == '\\':
				if j+1 >= len(s.b) {
					return false
				}
				j++
				switch s.b[j] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				case 'u':
					if j+4 >= len(s.b) {
						return false
					}
					for _, h := range s.b[j+1 : j+5] {
						if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
							return false
						}
					}
					j += 4
				default:
					return false
				}
			}
		}
		return false
	case c == '{' || c == '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		s.i++
		if s.consume(end) {
			return true
		}
		for {
			if c == '{' {
				s.space()
				if s.i >= len(s.b) || s.b[s.i] != '"' || !s.skip(depth+1) || !s.consume(':') {
					return false
				}
			}
			if !s.skip(depth + 1) {
				return false
			}
			if s.consume(',') {
				continue
			}
			return s.consume(end)
		}
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
				s.i += len(lit)
				return true
			}
		}
		return false
	default:
		return validNumber(s.number())
	}
}

// validNumber reports whether tok is a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(tok []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(tok) && '0' <= tok[i] && tok[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(tok) && tok[i] == '-' {
		i++
	}
	start := i
	if n := digits(); n == 0 || (n > 1 && tok[start] == '0') {
		return false
	}
	if i < len(tok) && tok[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(tok) && (tok[i] == 'e' || tok[i] == 'E') {
		i++
		if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(tok)
}

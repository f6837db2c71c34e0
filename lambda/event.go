package lambda

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/kinlog/kinlog/checkpoint"
)

// ErrMalformedEvent is returned for an invocation payload that is not a Kinesis event the
// function can place: not JSON, records of two shards or streams, a record without an
// eventID or sequence number, sequence numbers out of order, data that is not base64.
// Nothing is written for it. (Records whose data cannot be parsed are not malformed events:
// they go to the error prefix, as with the worker.)
var ErrMalformedEvent = errors.New("malformed Kinesis event")

// kinesisRecord is one record of the batch, decoded.
type kinesisRecord struct {
	seq          string
	partitionKey string
	arrival      time.Time
	data         []byte
}

// batch is a decoded event: the Kinesis records of one shard, in sequence order.
type batch struct {
	stream, streamARN, shard string
	records                  []kinesisRecord
}

// parsers keep their buffers from one invocation to the next (the values they return are
// copied out before a parser goes back).
var parsers fastjson.ParserPool

// decodeEvent decodes and checks an invocation payload: the event of a Kinesis event
// source mapping, {"Records":[{"eventID", "eventSourceARN", "kinesis":{"partitionKey",
// "sequenceNumber", "data", "approximateArrivalTimestamp"}, ...}]} (the shape of
// aws-lambda-go's events.KinesisEvent). It is read with fastjson rather than
// encoding/json, which took three quarters of the function's CPU time on a 6 MB event, and
// so that the arrival time is read as the decimal text it is.
func decodeEvent(payload []byte) (*batch, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	root, err := p.ParseBytes(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedEvent, err)
	}
	if root.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: the payload is not a JSON object", ErrMalformedEvent)
	}
	recs := root.Get("Records")
	if recs == nil || recs.Type() == fastjson.TypeNull {
		return &batch{}, nil
	}
	items, err := recs.Array()
	if err != nil {
		return nil, fmt.Errorf("%w: Records is not a list", ErrMalformedEvent)
	}
	b := &batch{records: make([]kinesisRecord, len(items))}
	str := func(v *fastjson.Value, keys ...string) (string, bool) {
		f := v.Get(keys...)
		if f == nil {
			return "", true
		}
		s, err := f.StringBytes()
		return string(s), err == nil
	}
	for i, r := range items {
		eventID, ok1 := str(r, "eventID")
		arn, ok2 := str(r, "eventSourceARN")
		pk, ok3 := str(r, "kinesis", "partitionKey")
		kseq, ok4 := str(r, "kinesis", "sequenceNumber")
		data := r.Get("kinesis", "data")
		if !ok1 || !ok2 || !ok3 || !ok4 || data == nil || data.Type() != fastjson.TypeString {
			return nil, fmt.Errorf("%w: record %d: eventID, eventSourceARN, kinesis.partitionKey, kinesis.sequenceNumber or kinesis.data is missing or not a string", ErrMalformedEvent, i)
		}
		shard, seq, ok := strings.Cut(eventID, ":")
		if !ok || !strings.HasPrefix(shard, "shardId-") {
			return nil, fmt.Errorf("%w: record %d: eventID %q is not shardId-…:<sequence number>", ErrMalformedEvent, i, eventID)
		}
		if kseq != "" && kseq != seq {
			return nil, fmt.Errorf("%w: record %d: eventID %q names another sequence number than kinesis.sequenceNumber %q", ErrMalformedEvent, i, eventID, kseq)
		}
		if err := (checkpoint.Checkpoint{Sequence: seq}).Validate(); err != nil || seq == checkpoint.ShardEnd || seq == checkpoint.TrimHorizon || seq == checkpoint.Latest || seq == checkpoint.AtTimestamp {
			return nil, fmt.Errorf("%w: record %d: %q is not a sequence number", ErrMalformedEvent, i, seq)
		}
		if i == 0 {
			b.shard, b.streamARN = shard, arn
			name, err := streamName(arn)
			if err != nil {
				return nil, fmt.Errorf("%w: record %d: %v", ErrMalformedEvent, i, err)
			}
			b.stream = name
		} else {
			if shard != b.shard || arn != b.streamARN {
				return nil, fmt.Errorf("%w: record %d is of %s %s, record 0 of %s %s: a batch holds one shard", ErrMalformedEvent, i, arn, shard, b.streamARN, b.shard)
			}
			if (checkpoint.Checkpoint{Sequence: seq}).Compare(checkpoint.Checkpoint{Sequence: b.records[i-1].seq}) <= 0 {
				return nil, fmt.Errorf("%w: record %d: sequence number %s does not follow %s", ErrMalformedEvent, i, seq, b.records[i-1].seq)
			}
		}
		var arrival []byte
		if v := r.Get("kinesis", "approximateArrivalTimestamp"); v != nil && v.Type() == fastjson.TypeNumber {
			arrival = v.MarshalTo(nil)
		}
		at, err := arrivalTime(json.Number(arrival))
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: approximateArrivalTimestamp: %v", ErrMalformedEvent, i, err)
		}
		kr := &b.records[i]
		kr.seq, kr.partitionKey, kr.arrival = seq, pk, at
		raw, _ := data.StringBytes()
		kr.data = make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
		// Lambda always sends base64: anything else is a damaged payload, not a bad record.
		n, err := base64.StdEncoding.Decode(kr.data, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d (%s): kinesis.data is not base64: %v", ErrMalformedEvent, i, seq, err)
		}
		kr.data = kr.data[:n]
	}
	return b, nil
}

// streamName returns the stream's name from its ARN, arn:aws:kinesis:<region>:<account>:stream/<name>.
func streamName(arn string) (string, error) {
	i := strings.LastIndex(arn, ":stream/")
	if !strings.HasPrefix(arn, "arn:") || i < 0 || i+len(":stream/") == len(arn) {
		return "", fmt.Errorf("eventSourceARN %q is not a Kinesis stream ARN", arn)
	}
	name := arn[i+len(":stream/"):]
	if j := strings.IndexByte(name, '/'); j >= 0 {
		name = name[:j] // …:stream/<name>/consumer/<consumer>:<epoch> for enhanced fan-out
	}
	return name, nil
}

// arrivalTime reads the arrival time, float seconds with millisecond digits, exactly to the
// millisecond (as GetRecords gives it to the worker): parsing it as a float64 could change
// the last digit, and with it the minute or hour of an object's prefix.
func arrivalTime(n json.Number) (time.Time, error) {
	s := string(n)
	if s == "" {
		return time.Time{}, errors.New("missing")
	}
	if strings.ContainsAny(s, "eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, fmt.Errorf("%q is not a number of seconds", s)
		}
		return time.UnixMilli(int64(math.Round(f * 1000))).UTC(), nil
	}
	whole, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("%q is not a number of seconds", s)
	}
	ms := 0
	for i := 0; i < 3; i++ {
		ms *= 10
		if i < len(frac) {
			d := frac[i]
			if d < '0' || d > '9' {
				return time.Time{}, fmt.Errorf("%q is not a number of seconds", s)
			}
			ms += int(d - '0')
		}
	}
	return time.UnixMilli(sec*1000 + int64(ms)).UTC(), nil
}

package esm

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
)

// eventRecord is one element of the event's Records, its fields in the order of the example
// event in https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html.
type eventRecord struct {
	Kinesis           kinesisData `json:"kinesis"`
	EventSource       string      `json:"eventSource"`
	EventVersion      string      `json:"eventVersion"`
	EventID           string      `json:"eventID"`
	EventName         string      `json:"eventName"`
	InvokeIdentityArn string      `json:"invokeIdentityArn"`
	AwsRegion         string      `json:"awsRegion"`
	EventSourceARN    string      `json:"eventSourceARN"`
}

type kinesisData struct {
	KinesisSchemaVersion        string       `json:"kinesisSchemaVersion"`
	PartitionKey                string       `json:"partitionKey"`
	SequenceNumber              string       `json:"sequenceNumber"`
	Data                        []byte       `json:"data"` // base64, as encoding/json writes []byte
	ApproximateArrivalTimestamp epochSeconds `json:"approximateArrivalTimestamp"`
}

// epochSeconds is a time written as seconds since the epoch with millisecond precision,
// like 1545084650.987.
type epochSeconds time.Time

func (e epochSeconds) MarshalJSON() ([]byte, error) {
	ms := time.Time(e).UnixMilli()
	return strconv.AppendFloat(nil, float64(ms)/1000, 'f', -1, 64), nil
}

// record is one Kinesis record read from a shard, with its element of the event.
type record struct {
	seq     string
	arrival time.Time
	json    []byte
}

func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // Lambda writes <, > and & as they are
	if err := enc.Encode(v); err != nil {
		panic(err) // the types here always marshal
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

const (
	payloadHead = `{"Records":[`
	payloadTail = `]}`
)

// payload is the event for recs: {"Records":[...]}.
func payload(recs []record) []byte {
	n := len(payloadHead) + len(payloadTail)
	for _, r := range recs {
		n += len(r.json) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, payloadHead...)
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r.json...)
	}
	return append(b, payloadTail...)
}

// responseFailure reads a function's answer under ReportBatchItemFailures
// (https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-batchfailurereporting.html)
// and returns the index in batch of the record to retry from, or -1 for a complete success.
// whole reports a complete failure (retry from index 0). Success: an empty or null body, an
// empty object, a missing, null or empty batchItemFailures. Complete failure: an item whose
// itemIdentifier is missing (a bad key name), null, empty, not a string, or — not documented,
// chosen here — not the sequence number of a record of the batch. Otherwise the lowest
// reported sequence number. An answer that is not a JSON object, or a batchItemFailures that
// is not a list, is not documented; it counts as success (what Lambda is reported to do with
// a malformed response).
func responseFailure(body []byte, batch []record) (at int, whole bool) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || string(body) == "null" {
		return -1, false
	}
	var resp map[string]json.RawMessage
	if json.Unmarshal(body, &resp) != nil || resp == nil {
		return -1, false
	}
	raw, ok := resp["batchItemFailures"]
	if !ok || string(raw) == "null" {
		return -1, false
	}
	var items []map[string]json.RawMessage
	if json.Unmarshal(raw, &items) != nil || len(items) == 0 {
		return -1, false
	}
	index := make(map[string]int, len(batch))
	for i, r := range batch {
		index[r.seq] = i
	}
	at = len(batch)
	for _, item := range items {
		var id string
		if json.Unmarshal(item["itemIdentifier"], &id) != nil || id == "" {
			return 0, true
		}
		i, ok := index[id]
		if !ok {
			return 0, true
		}
		at = min(at, i)
	}
	return at, false
}

// FailureRecord is the invocation record an event source mapping writes to an Amazon S3
// on-failure destination for a discarded Kinesis batch: the example "Amazon S3 invocation
// record" of https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html,
// field for field.
type FailureRecord struct {
	RequestContext FailureRequestContext `json:"requestContext"`
	// ResponseContext describes the batch's last invocation. It is absent when the batch
	// was discarded for its age before any invocation (not documented; chosen here).
	ResponseContext  *FailureResponseContext `json:"responseContext,omitempty"`
	Version          string                  `json:"version"`   // "1.0"
	Timestamp        string                  `json:"timestamp"` // when the batch was discarded, 2019-11-14T00:38:06.021Z
	KinesisBatchInfo KinesisBatchInfo        `json:"KinesisBatchInfo"`
	// Payload is the event of the discarded records, as an escaped JSON string (S3 only).
	Payload string `json:"payload"`
}

// FailureRequestContext is the record's requestContext.
type FailureRequestContext struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"` // ConditionRetriesExhausted or ConditionRecordAge
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// FailureResponseContext is the record's responseContext.
type FailureResponseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	// FunctionError is "Unhandled" after a function error; absent after a response that
	// reported failed items (not documented; chosen here).
	FunctionError string `json:"functionError,omitempty"`
}

// KinesisBatchInfo identifies the discarded records. All its fields are always present.
type KinesisBatchInfo struct {
	ShardID                         string `json:"shardId"`
	StartSequenceNumber             string `json:"startSequenceNumber"`
	EndSequenceNumber               string `json:"endSequenceNumber"`
	ApproximateArrivalOfFirstRecord string `json:"approximateArrivalOfFirstRecord"`
	ApproximateArrivalOfLastRecord  string `json:"approximateArrivalOfLastRecord"`
	BatchSize                       int    `json:"batchSize"`
	StreamArn                       string `json:"streamArn"`
}

// The conditions of a FailureRecord. RetryAttemptsExhausted is the documented example's;
// the name of the record-age condition is not in the Lambda documentation.
const (
	ConditionRetriesExhausted = "RetryAttemptsExhausted"
	ConditionRecordAge        = "RecordAgeExceeded"
)

// failureTime is the layout of the record's times: RFC 3339, milliseconds, UTC.
const failureTime = "2006-01-02T15:04:05.000Z"

// FailureKey is the object key of an on-failure record, the documented naming convention
// aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>, after prefix
// (an addition of this package's, for tests that share a bucket; "" in AWS).
func FailureKey(prefix, mappingUUID, shardID string, at time.Time) string {
	at = at.UTC()
	return prefix + "aws/lambda/" + mappingUUID + "/" + shardID + "/" + at.Format("2006/01/02") + "/" +
		at.Format("2006-01-02T15.04.05") + "-" + newUUID()
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

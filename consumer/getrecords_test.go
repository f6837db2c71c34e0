package consumer

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	smithy "github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// manyRecords is a response of n records whose data grows, so that the slices sized after
// the first record must grow and the data spans several chunks.
func manyRecords(n int) string {
	var b strings.Builder
	b.WriteString(`{"MillisBehindLatest":1234,"NextShardIterator":"AAAA/it+==","Records":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"SequenceNumber":"4963%030d","ApproximateArrivalTimestamp":1764619200.%03d,"Data":%q,"PartitionKey":"pk-%d"}`,
			i, i%1000, b64(strings.Repeat("x", 1+i*37)), i)
	}
	b.WriteString(`]}`)
	return b.String()
}

var getRecordsBodies = []struct {
	name string
	body string
	fast bool // decoded by decodeGetRecords, not by the SDK's decoder
}{
	{"records", `{"MillisBehindLatest":0,"NextShardIterator":"it-1","Records":[` +
		`{"ApproximateArrivalTimestamp":1764619200.123,"Data":"` + b64(`{"level":"INFO"}`) + `","PartitionKey":"a","SequenceNumber":"49630000000000000000000000000000000000000000000000000001"},` +
		`{"ApproximateArrivalTimestamp":1764619200.999,"Data":"` + b64("two") + `","PartitionKey":"b","SequenceNumber":"2"}]}`, true},
	{"no records", `{"Records":[],"NextShardIterator":"it","MillisBehindLatest":0}`, true},
	{"empty object", `{}`, true},
	{"no iterator (closed shard)", `{"Records":[],"MillisBehindLatest":0}`, true},
	{"child shards", `{"Records":[],"MillisBehindLatest":0,"ChildShards":[{"ShardId":"shardId-000000000002","ParentShards":["shardId-000000000000"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"99"}}]}`, false},
	{"unicode partition key", `{"Records":[{"Data":"` + b64("d") + `","PartitionKey":"ключ-鍵","SequenceNumber":"1","ApproximateArrivalTimestamp":1.5}]}`, true},
	{"escaped partition key", `{"Records":[{"Data":"` + b64("d") + `","PartitionKey":"a\"b\u00e9","SequenceNumber":"1"}]}`, false},
	{"escaped slash in data", `{"Records":[{"Data":"` + strings.ReplaceAll(b64("\xff\xff\xff"), "/", `\/`) + `","PartitionKey":"k","SequenceNumber":"1"}]}`, false},
	{"unknown fields", `{"Future":{"a":[1,2.5e3,{"b":"x\"y"},true,false,null]},"Records":[{"Extra":[],"SequenceNumber":"7","Data":"` + b64("z") + `","More":"s"}],"Tail":-1}`, true},
	{"whitespace", "{\n  \"Records\" : [ {\n\t\"SequenceNumber\" : \"1\" ,\r\n \"Data\" : \"" + b64("ws") + "\" } ] ,\n \"MillisBehindLatest\" : 5 }\n", true},
	{"integer timestamp", `{"Records":[{"SequenceNumber":"1","Data":"","ApproximateArrivalTimestamp":1764619200}]}`, true},
	{"exponent timestamp", `{"Records":[{"SequenceNumber":"1","Data":"","ApproximateArrivalTimestamp":1.7646192001E9}]}`, false},
	{"null iterator", `{"Records":[],"NextShardIterator":null}`, true},
	{"null data", `{"Records":[{"SequenceNumber":"1","Data":null,"PartitionKey":null,"ApproximateArrivalTimestamp":null}]}`, true},
	{"null children (kinesis-mock)", `{"ChildShards":null,"MillisBehindLatest":0,"NextShardIterator":"it","Records":[]}`, true},
	{"null records", `{"Records":null}`, true},
	{"null record", `{"Records":[null]}`, false},
	{"encryption type", `{"Records":[{"SequenceNumber":"1","Data":"","EncryptionType":"KMS"},{"SequenceNumber":"2","Data":"","EncryptionType":"NONE"}]}`, true},
	{"duplicate key", `{"Records":[],"Records":[{"SequenceNumber":"1"}]}`, false},
	{"base64 with a line break", `{"Records":[{"SequenceNumber":"1","Data":"QUJD\nREVG"}]}`, false},
	{"large record", `{"Records":[{"SequenceNumber":"1","Data":"` + b64(strings.Repeat("L", 1<<20+3)) + `","PartitionKey":"k"}]}`, true},
	{"many records", manyRecords(1500), true},
	{"truncated", `{"Records":[{"SequenceNumber":"1"`, false},
}

// testKinesisClient is an SDK client of srv.
func testKinesisClient(srv *httptest.Server) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region: "us-east-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "k", SecretAccessKey: "s"}, nil
		}),
		BaseEndpoint: aws.String(srv.URL),
		HTTPClient:   srv.Client(),
	})
}

// sdkGetRecords decodes body with the SDK's own protocol.
func sdkGetRecords(body []byte) (*kinesis.GetRecordsOutput, error) {
	out := &kinesis.GetRecordsOutput{}
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}}
	err := awsjson.New11(schemas.Kinesis_20131202).DeserializeResponse(context.Background(),
		smithy.NewOperationSchema(schemas.GetRecords, schemas.GetRecordsInput, schemas.GetRecordsOutput),
		kinesis.TypeRegistry, resp, out)
	return out, err
}

// The client gets the same GetRecords output with recordsDecoder as without it, whichever
// decoder does the work, and the bodies meant for the fast one are decoded by it.
func TestGetRecordsDecoderMatchesSDK(t *testing.T) {
	for _, tc := range getRecordsBodies {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get("X-Amz-Target"); got != "Kinesis_20131202.GetRecords" {
					t.Errorf("X-Amz-Target = %q", got)
				}
				if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
					t.Errorf("request not signed: Authorization = %q", r.Header.Get("Authorization"))
				}
				w.Header().Set("Content-Type", "application/x-amz-json-1.1")
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			kc := testKinesisClient(srv)
			in := &kinesis.GetRecordsInput{ShardIterator: aws.String("it-0"), Limit: aws.Int32(10000)}
			want, wantErr := kc.GetRecords(context.Background(), in)
			got, gotErr := kc.GetRecords(context.Background(), in, recordsDecoder)
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("errors differ: SDK %v, with recordsDecoder %v", wantErr, gotErr)
			}
			if wantErr == nil {
				want.ResultMetadata, got.ResultMetadata = middleware.Metadata{}, middleware.Metadata{}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("outputs differ:\n got  %s\n want %s", describe(got), describe(want))
				}
			}
			var o kinesis.GetRecordsOutput
			if ok := decodeGetRecords([]byte(tc.body), &o); ok != tc.fast {
				t.Errorf("decodeGetRecords took it: %v, want %v", ok, tc.fast)
			}
		})
	}
}

func describe(o *kinesis.GetRecordsOutput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "iter=%v lag=%v children=%v records=%d", aws.ToString(o.NextShardIterator), o.MillisBehindLatest, o.ChildShards, len(o.Records))
	for i, r := range o.Records[:min(len(o.Records), 3)] {
		fmt.Fprintf(&b, "\n  %d: seq=%v pk=%v at=%v enc=%q data=%d bytes (nil %v)", i, r.SequenceNumber, r.PartitionKey, r.ApproximateArrivalTimestamp, r.EncryptionType, len(r.Data), r.Data == nil)
	}
	return b.String()
}

// Error responses still reach the SDK's decoder: the consumer matches them with errors.As.
func TestGetRecordsDecoderErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"__type":"ExpiredIteratorException","message":"Iterator expired"}`)
	}))
	defer srv.Close()
	kc := testKinesisClient(srv)
	_, err := kc.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: aws.String("it")}, recordsDecoder)
	var expired *types.ExpiredIteratorException
	if !errors.As(err, &expired) {
		t.Fatalf("error %v (%T), want an ExpiredIteratorException", err, err)
	}
}

// Decoded records own their bytes: they do not refer to the (reused) body buffer, and a
// record's data cannot grow into the next one's.
func TestGetRecordsDecoderRecordsOwnTheirBytes(t *testing.T) {
	body := []byte(getRecordsBodies[0].body)
	var o kinesis.GetRecordsOutput
	if !decodeGetRecords(body, &o) {
		t.Fatal("not decoded")
	}
	want, err := sdkGetRecords([]byte(getRecordsBodies[0].body))
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = '#'
	}
	_ = append(o.Records[0].Data, "overwrite"...)
	if !reflect.DeepEqual(o.Records, want.Records) {
		t.Errorf("records changed with the body or a neighbour's append:\n got  %s\n want %s", describe(&o), describe(want))
	}
}

// Bodies of unknown or wrong length are read whole; a failing read is an error.
func TestReadBody(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10000)
	for _, tc := range []struct {
		name string
		r    io.Reader
		n    int64
	}{
		{"exact length", bytes.NewReader(data), int64(len(data))},
		{"unknown length", bytes.NewReader(data), -1},
		{"length too small", bytes.NewReader(data), 10},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:3000])), 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readBody(tc.r, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if want := data[:len(got)]; len(got) < 3000 || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, not the body", len(got))
			}
			putBody(got)
		})
	}
	if _, err := readBody(iotest.ErrReader(io.ErrUnexpectedEOF), 100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v, want the reader's", err)
	}
}

// Whatever decodeGetRecords takes, it decodes as the SDK does.
func FuzzDecodeGetRecords(f *testing.F) {
	for _, tc := range getRecordsBodies {
		if len(tc.body) < 1<<16 {
			f.Add([]byte(tc.body))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got kinesis.GetRecordsOutput
		if !decodeGetRecords(body, &got) {
			return
		}
		want, err := sdkGetRecords(body)
		if err != nil {
			t.Fatalf("decoded a body the SDK rejects (%v): %q", err, body)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("decoded differently from the SDK:\n got  %s\n want %s\n body %q", describe(&got), describe(want), body)
		}
	})
}

func BenchmarkGetRecordsDecode(b *testing.B) {
	var buf strings.Builder
	buf.WriteString(`{"MillisBehindLatest":0,"NextShardIterator":"AAAAAAAAAAH3qM8z","Records":[`)
	for i := range 10000 {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"SequenceNumber":"4963%052d","ApproximateArrivalTimestamp":1764619200.%03d,"Data":%q,"PartitionKey":"%016x"}`,
			i, i%1000, b64(strings.Repeat("y", 230)), i*7919)
	}
	buf.WriteString(`]}`)
	body := []byte(buf.String())
	b.Run("sdk", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sdkGetRecords(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kinlog", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var o kinesis.GetRecordsOutput
			if !decodeGetRecords(body, &o) {
				b.Fatal("not decoded")
			}
		}
	})
}

package producer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

type httpDoer func(*http.Request) (*http.Response, error)

func (f httpDoer) Do(r *http.Request) (*http.Response, error) { return f(r) }

// sdkClient returns a real SDK Kinesis client whose HTTP layer hands each request to
// capture and answers with a fixed PutRecords response.
func sdkClient(capture func(r *http.Request, body []byte)) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String("http://127.0.0.1:9"),
		RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "SECRET"}, nil
		}),
		HTTPClient: httpDoer(func(r *http.Request) (*http.Response, error) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return nil, err
			}
			capture(r, body)
			return &http.Response{
				StatusCode: 200,
				Header:     http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
				Body:       io.NopCloser(strings.NewReader(`{"FailedRecordCount":1,"Records":[{"SequenceNumber":"1","ShardId":"shardId-000000000001"},{"ErrorCode":"InternalFailure","ErrorMessage":"x"}]}`)),
			}, nil
		}),
	})
}

func TestPutRecordsJSONMatchesSDK(t *testing.T) {
	inputs := map[string]*kinesis.PutRecordsInput{
		"stream name": {StreamName: aws.String("logs"), Records: []types.PutRecordsRequestEntry{
			{Data: []byte(`{"msg":"hello"}`), PartitionKey: aws.String("user-1")},
			{Data: []byte{0, 1, 2, 0xff, 0xfe}, PartitionKey: aws.String("k"), ExplicitHashKey: aws.String("340282366920938463463374607431768211455")},
			{Data: []byte{}, PartitionKey: aws.String("quote\" back\\slash\n\t\x01 é 😀 \u2028 <&>")},
			{Data: make([]byte, 70000), PartitionKey: aws.String("big")},
		}},
		"stream arn": {StreamARN: aws.String("arn:aws:kinesis:us-east-1:123456789012:stream/logs"), Records: []types.PutRecordsRequestEntry{
			{Data: []byte("x"), PartitionKey: aws.String("p")},
		}},
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			var sdkBody, ourBody []byte
			var sdkReq, ourReq *http.Request
			var capture func(*http.Request, []byte)
			c := sdkClient(func(r *http.Request, b []byte) { capture(r, b) })
			capture = func(r *http.Request, b []byte) { sdkReq, sdkBody = r, b }
			sdkOut, err := c.PutRecords(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			proto := newPutRecordsProtocol()
			capture = func(r *http.Request, b []byte) { ourReq, ourBody = r, b }
			ourOut, err := c.PutRecords(context.Background(), in, proto.optFn)
			if err != nil {
				t.Fatal(err)
			}
			if proto.ClientProtocol == nil {
				t.Fatal("the protocol wrapper was not installed")
			}
			var sdkDoc, ourDoc map[string]any
			if err := json.Unmarshal(sdkBody, &sdkDoc); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(ourBody, &ourDoc); err != nil {
				t.Fatalf("our body is not JSON: %v\n%s", err, ourBody)
			}
			if !reflect.DeepEqual(sdkDoc, ourDoc) {
				t.Fatalf("bodies differ\n sdk %.300s\nours %.300s", sdkBody, ourBody)
			}
			for _, h := range []string{"X-Amz-Target", "Content-Type", "Content-Length"} {
				if sdkReq.Header.Get(h) != ourReq.Header.Get(h) {
					t.Errorf("header %s: sdk %q, ours %q", h, sdkReq.Header.Get(h), ourReq.Header.Get(h))
				}
			}
			if sdkReq.ContentLength != ourReq.ContentLength || sdkReq.URL.String() != ourReq.URL.String() || sdkReq.Method != ourReq.Method {
				t.Errorf("request line or length differ: %s %s %d vs %s %s %d", sdkReq.Method, sdkReq.URL, sdkReq.ContentLength, ourReq.Method, ourReq.URL, ourReq.ContentLength)
			}
			if !reflect.DeepEqual(sdkOut.Records, ourOut.Records) || aws.ToInt32(ourOut.FailedRecordCount) != 1 {
				t.Errorf("responses differ: %+v vs %+v", sdkOut.Records, ourOut.Records)
			}
			if n := putRecordsJSONSize(in); n < len(ourBody) {
				t.Errorf("size bound %d below the body's %d bytes", n, len(ourBody))
			}
		})
	}
}

func TestPutRecordsJSONReusesBuffer(t *testing.T) {
	in := &kinesis.PutRecordsInput{StreamName: aws.String("logs")}
	for i := range 500 {
		in.Records = append(in.Records, types.PutRecordsRequestEntry{Data: make([]byte, 200+i), PartitionKey: aws.String("key")})
	}
	buf := appendPutRecordsJSON(nil, in)
	if allocs := testing.AllocsPerRun(10, func() { buf = appendPutRecordsJSON(buf[:0], in) }); allocs != 0 {
		t.Fatalf("%.0f allocations per request with a reused buffer", allocs)
	}
}

// TestOtherOperationsUntouched checks that the wrapper leaves calls other than PutRecords
// to the SDK.
func TestOtherOperationsUntouched(t *testing.T) {
	var target string
	c := kinesis.New(kinesis.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:9"), RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "SECRET"}, nil
		}),
		HTTPClient: httpDoer(func(r *http.Request) (*http.Response, error) {
			target = r.Header.Get("X-Amz-Target")
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"Shards":[]}`))}, nil
		}),
	})
	proto := newPutRecordsProtocol()
	if _, err := c.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String("s")}, proto.optFn); err != nil {
		t.Fatal(err)
	}
	if target != "Kinesis_20131202.ListShards" {
		t.Fatalf("ListShards sent with target %q", target)
	}
}

func TestAppendBase64MatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 600 {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		prefix := []byte("pre")
		got := appendBase64(prefix, src)
		want := base64.StdEncoding.AppendEncode([]byte("pre"), src)
		if !bytes.Equal(got, want) {
			t.Fatalf("length %d: got %q, want %q", n, got, want)
		}
	}
}

func FuzzAppendBase64(f *testing.F) {
	f.Add([]byte("hello, world"))
	f.Add([]byte{0xff, 0xfe, 0, 1, 2, 3, 4, 5, 6})
	f.Fuzz(func(t *testing.T, src []byte) {
		if got, want := appendBase64(nil, src), base64.StdEncoding.AppendEncode(nil, src); !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

func BenchmarkAppendBase64(b *testing.B) {
	src := make([]byte, 51200)
	for i := range src {
		src[i] = byte(i * 7)
	}
	dst := make([]byte, 0, 80000)
	b.Run("stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for i := 0; i < b.N; i++ {
			dst = base64.StdEncoding.AppendEncode(dst[:0], src)
		}
	})
	b.Run("lut", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for i := 0; i < b.N; i++ {
			dst = appendBase64(dst[:0], src)
		}
	})
}

package producer

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// TestBodyBufferServesLargerRequests checks that the body buffer the PutRecords serializer
// makes has room for a following, somewhat larger request, which then reuses it and sends
// the right body.
func TestBodyBufferServesLargerRequests(t *testing.T) {
	var got []byte
	c := sdkClient(func(_ *http.Request, body []byte) { got = body })
	proto := newPutRecordsProtocol()
	input := func(size int) *kinesis.PutRecordsInput {
		in := &kinesis.PutRecordsInput{StreamName: aws.String("logs")}
		for range 100 {
			in.Records = append(in.Records, types.PutRecordsRequestEntry{Data: make([]byte, size), PartitionKey: aws.String("key")})
		}
		return in
	}
	put := func(in *kinesis.PutRecordsInput) {
		t.Helper()
		if _, err := c.PutRecords(context.Background(), in, proto.optFn); err != nil {
			t.Fatal(err)
		}
		if want := appendPutRecordsJSON(nil, in); string(got) != string(want) {
			t.Fatalf("body differs from appendPutRecordsJSON's")
		}
	}
	put(input(1000))
	first := proto.buf
	if cap(first) < len(first)+len(first)/5 {
		t.Fatalf("buffer of %d bytes for a %d-byte body: no room for a larger request", cap(first), len(first))
	}
	proto.buf = first[:0] // as the producer's pool hands it back
	put(input(1200))      // a body 20% larger
	if &proto.buf[:1][0] != &first[:1][0] {
		t.Fatal("a 20% larger request got a new buffer")
	}
}

// TestBufferPoolKeepsOnePerSender checks that the body pool keeps up to its max buffers
// (one per request in flight), in last-in first-out order, and no more.
func TestBufferPoolKeepsOnePerSender(t *testing.T) {
	p := bufferPool{max: 3}
	if b := p.get(); b != nil {
		t.Fatalf("empty pool gave a buffer of %d bytes", cap(b))
	}
	for i := range 4 {
		p.put(make([]byte, 10, 100+i))
	}
	for i := 2; i >= 0; i-- {
		b := p.get()
		if len(b) != 0 || cap(b) != 100+i {
			t.Fatalf("got len %d cap %d, want buffer %d emptied", len(b), cap(b), i)
		}
	}
	if b := p.get(); b != nil {
		t.Fatalf("pool kept more than its max: buffer of cap %d", cap(b))
	}
}

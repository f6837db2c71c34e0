package consumer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/kinlog/kinlog/internal/testenv"
)

// bodyCapture keeps the last response body its client received.
type bodyCapture struct {
	next kinesis.HTTPClient
	body []byte
}

func (c *bodyCapture) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(req)
	if err != nil {
		return resp, err
	}
	c.body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(c.body))
	return resp, err
}

// Both emulators' GetRecords responses take the fast decoder, and decode as with the SDK's.
func TestIntegrationGetRecordsDecoder(t *testing.T) {
	for _, emu := range []struct {
		name   string
		client func(testing.TB) *kinesis.Client
	}{
		{"kinesalite", testenv.KinesisClient},
		{"kinesis-mock", fanOutKinesisClient}, // closes its HTTP/2 connections at cleanup
	} {
		t.Run(emu.name, func(t *testing.T) {
			kc := emu.client(t)
			stream := testenv.Name(t, "decode")
			testenv.CreateStream(t, kc, stream, 1)
			var entries []ktypes.PutRecordsRequestEntry
			for i := range 20 {
				data := []byte(fmt.Sprintf(`{"i":%d,"msg":"caf\u00e9 \"quoted\" \\ /"}`, i))
				if i%5 == 0 {
					data = []byte{0, 0xff, 0xfe, byte(i), '\n', '"', '\\'} // binary
				}
				entries = append(entries, ktypes.PutRecordsRequestEntry{Data: data, PartitionKey: aws.String(fmt.Sprintf("ключ-%d/é", i))})
			}
			putAll(t, kc, stream, entries)
			ctx := context.Background()
			shards, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
			if err != nil {
				t.Fatal(err)
			}
			it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(stream),
				ShardId: shards.Shards[0].ShardId, ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon})
			if err != nil {
				t.Fatal(err)
			}
			capture := &bodyCapture{}
			got, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator}, recordsDecoder,
				func(o *kinesis.Options) { capture.next = o.HTTPClient; o.HTTPClient = capture })
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Records) != len(entries) {
				t.Fatalf("got %d records, want %d", len(got.Records), len(entries))
			}
			for i, r := range got.Records {
				if !bytes.Equal(r.Data, entries[i].Data) || aws.ToString(r.PartitionKey) != aws.ToString(entries[i].PartitionKey) {
					t.Fatalf("record %d: data %q key %q, want %q %q", i, r.Data, aws.ToString(r.PartitionKey), entries[i].Data, aws.ToString(entries[i].PartitionKey))
				}
			}
			var fast kinesis.GetRecordsOutput
			if !decodeGetRecords(capture.body, &fast) {
				t.Fatalf("the emulator's response needs the SDK's decoder: %.300q", capture.body)
			}
			want, err := sdkGetRecords(capture.body)
			if err != nil {
				t.Fatal(err)
			}
			got.ResultMetadata = middleware.Metadata{}
			if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(&fast, want) {
				t.Errorf("outputs differ:\n got  %s\n want %s", describe(got), describe(want))
			}
		})
	}
}

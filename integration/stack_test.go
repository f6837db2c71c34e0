package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/testenv"
)

// TestStackKinesisRoundTrip puts records into a 2-shard stream and reads every one back.
func TestStackKinesisRoundTrip(t *testing.T) {
	t.Parallel()
	kc := testenv.KinesisClient(t)
	roundTripKinesis(t, kc, 2)
}

// TestStackKinesisMockRoundTrip does the same through kinesis-mock's TLS (HTTP/2) endpoint.
func TestStackKinesisMockRoundTrip(t *testing.T) {
	t.Parallel()
	kc := testenv.KinesisMockClient(t)
	roundTripKinesis(t, kc, 1)
}

func roundTripKinesis(t *testing.T, kc *kinesis.Client, shards int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream := testenv.Name(t, "smoke")
	testenv.CreateStream(t, kc, stream, shards)

	const n = 20
	want := make(map[string]bool, n)
	entries := make([]ktypes.PutRecordsRequestEntry, n)
	for i := range entries {
		data := fmt.Sprintf(`{"i":%d}`, i)
		want[data] = true
		entries[i] = ktypes.PutRecordsRequestEntry{Data: []byte(data), PartitionKey: aws.String(fmt.Sprintf("key-%d", i))}
	}
	out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
	if err != nil {
		t.Fatalf("PutRecords: %v", err)
	}
	if c := aws.ToInt32(out.FailedRecordCount); c != 0 {
		t.Fatalf("PutRecords: %d records failed", c)
	}

	ls, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	if len(ls.Shards) != int(shards) {
		t.Fatalf("ListShards: got %d shards, want %d", len(ls.Shards), shards)
	}
	got := map[string]bool{}
	for _, sh := range ls.Shards {
		it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: aws.String(stream), ShardId: sh.ShardId, ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			t.Fatalf("GetShardIterator: %v", err)
		}
		gr, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
		for _, r := range gr.Records {
			if got[string(r.Data)] {
				t.Errorf("record %s read twice", r.Data)
			}
			got[string(r.Data)] = true
		}
	}
	for d := range want {
		if !got[d] {
			t.Errorf("record %s was put but not read back", d)
		}
	}
	if len(got) != n {
		t.Errorf("read %d records, want %d", len(got), n)
	}
}

// TestStackDynamoDBConditionalWrite creates a lease-style table and checks that a
// conditional PutItem is enforced (ConditionalCheckFailedException, matched with errors.As).
func TestStackDynamoDBConditionalWrite(t *testing.T) {
	t.Parallel()
	dc := testenv.DynamoDBClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	table := testenv.Name(t, "smoke-leases")
	_, err := dc.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []dtypes.AttributeDefinition{{AttributeName: aws.String("leaseKey"), AttributeType: dtypes.ScalarAttributeTypeS}},
		KeySchema:            []dtypes.KeySchemaElement{{AttributeName: aws.String("leaseKey"), KeyType: dtypes.KeyTypeHash}},
		BillingMode:          dtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	t.Cleanup(func() {
		_, _ = dc.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	if err := dynamodb.NewTableExistsWaiter(dc).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 30*time.Second); err != nil {
		t.Fatalf("waiting for table: %v", err)
	}

	put := func(counter string) error {
		_, err := dc.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item: map[string]dtypes.AttributeValue{
				"leaseKey":     &dtypes.AttributeValueMemberS{Value: "shardId-000000000000"},
				"leaseOwner":   &dtypes.AttributeValueMemberS{Value: "worker-a"},
				"leaseCounter": &dtypes.AttributeValueMemberN{Value: counter},
			},
			ConditionExpression:      aws.String("attribute_not_exists(#k)"),
			ExpressionAttributeNames: map[string]string{"#k": "leaseKey"},
		})
		return err
	}
	if err := put("1"); err != nil {
		t.Fatalf("first conditional PutItem: %v", err)
	}
	err = put("2")
	var ccf *dtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("second conditional PutItem: got %v, want ConditionalCheckFailedException", err)
	}
	item, err := dc.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]dtypes.AttributeValue{"leaseKey": &dtypes.AttributeValueMemberS{Value: "shardId-000000000000"}},
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if c, ok := item.Item["leaseCounter"].(*dtypes.AttributeValueMemberN); !ok || c.Value != "1" {
		t.Fatalf("leaseCounter after refused write = %#v, want 1", item.Item["leaseCounter"])
	}
}

// TestStackS3RoundTrip writes an object to a fresh bucket and reads the same bytes back.
func TestStackS3RoundTrip(t *testing.T) {
	t.Parallel()
	sc := testenv.S3Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bucket := testenv.Name(t, "smoke")
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	body := bytes.Repeat([]byte(`{"msg":"hello"}`+"\n"), 1000)
	key := "logs/dt=2026-11-22/hour=10/smoke.json"
	if _, err := sc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	t.Cleanup(func() {
		_, _ = sc.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		_, _ = sc.DeleteBucket(context.Background(), &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	})
	obj, err := sc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	defer obj.Body.Close()
	got, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatalf("reading object: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("object body differs: got %d bytes, want %d", len(got), len(body))
	}
}

// TestStackSurvivesAbortedRequests sends requests that stop in the middle of their bodies —
// what a client killed with SIGKILL mid-PutRecords leaves behind — and checks that Kinesis
// and DynamoDB still answer afterwards (the emulators crash on this unless guarded; see
// infra/local/node-guard.js).
func TestStackSurvivesAbortedRequests(t *testing.T) {
	kc := testenv.KinesisClient(t)
	dc := testenv.DynamoDBClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range []testenv.Service{testenv.Kinesis, testenv.DynamoDB} {
		u, err := url.Parse(os.Getenv(string(v)))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 100000\r\n\r\n{\"Records\":[", u.Host)
			conn.Close()
		}
	}
	if _, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{}); err != nil {
		t.Fatalf("Kinesis after aborted requests: %v", err)
	}
	if _, err := dc.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("DynamoDB after aborted requests: %v", err)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// runDemo exercises the services the pipeline uses: a 4-shard stream, a lease table and a
// bucket, with a round trip through each. It grows into producer → consumer → S3 → query as
// those parts land.
func runDemo(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	records := fs.Int("records", 400, "number of log records to send")
	pathStyle := fs.Bool("s3-path-style", true, "use path-style S3 addressing (MinIO needs it)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	suffix := time.Now().UTC().Format("20060102-150405")
	stream, table, bucket := "kinlog-demo-"+suffix, "kinlog-demo-leases-"+suffix, "kinlog-demo-"+suffix

	kc := kinesis.NewFromConfig(cfg)
	fmt.Fprintf(stdout, "creating stream %s (4 shards)\n", stream)
	if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(4)}); err != nil {
		return fmt.Errorf("creating stream: %w", err)
	}
	if err := kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(stream)}, time.Minute); err != nil {
		return fmt.Errorf("waiting for stream: %w", err)
	}
	sent := 0
	for sent < *records {
		n := min(500, *records-sent)
		entries := make([]ktypes.PutRecordsRequestEntry, n)
		for i := range entries {
			id := sent + i
			entries[i] = ktypes.PutRecordsRequestEntry{
				Data:         fmt.Appendf(nil, `{"time":%q,"level":"INFO","service":"demo","msg":"request served","id":%d}`, time.Now().UTC().Format(time.RFC3339Nano), id),
				PartitionKey: aws.String(fmt.Sprintf("user-%d", id)),
			}
		}
		out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		if err != nil {
			return fmt.Errorf("putting records: %w", err)
		}
		if c := aws.ToInt32(out.FailedRecordCount); c > 0 {
			return fmt.Errorf("putting records: %d failed", c)
		}
		sent += n
	}
	fmt.Fprintf(stdout, "put %d records\n", sent)
	shards, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		return fmt.Errorf("listing shards: %w", err)
	}
	read := 0
	for _, sh := range shards.Shards {
		it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(stream), ShardId: sh.ShardId, ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon})
		if err != nil {
			return fmt.Errorf("getting iterator: %w", err)
		}
		gr, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		if err != nil {
			return fmt.Errorf("getting records: %w", err)
		}
		fmt.Fprintf(stdout, "  %s: %d records\n", aws.ToString(sh.ShardId), len(gr.Records))
		read += len(gr.Records)
	}
	fmt.Fprintf(stdout, "read %d records back\n", read)

	dc := dynamodb.NewFromConfig(cfg)
	fmt.Fprintf(stdout, "creating lease table %s\n", table)
	if _, err := dc.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []dtypes.AttributeDefinition{{AttributeName: aws.String("leaseKey"), AttributeType: dtypes.ScalarAttributeTypeS}},
		KeySchema:            []dtypes.KeySchemaElement{{AttributeName: aws.String("leaseKey"), KeyType: dtypes.KeyTypeHash}},
		BillingMode:          dtypes.BillingModePayPerRequest,
	}); err != nil {
		return fmt.Errorf("creating table: %w", err)
	}
	put := func() error {
		_, err := dc.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item: map[string]dtypes.AttributeValue{
				"leaseKey":     &dtypes.AttributeValueMemberS{Value: aws.ToString(shards.Shards[0].ShardId)},
				"leaseCounter": &dtypes.AttributeValueMemberN{Value: "1"},
			},
			ConditionExpression:      aws.String("attribute_not_exists(#k)"),
			ExpressionAttributeNames: map[string]string{"#k": "leaseKey"},
		})
		return err
	}
	if err := put(); err != nil {
		return fmt.Errorf("creating lease: %w", err)
	}
	var ccf *dtypes.ConditionalCheckFailedException
	if err := put(); !errors.As(err, &ccf) {
		return fmt.Errorf("second create of the same lease: got %v, want a conditional check failure", err)
	}
	fmt.Fprintln(stdout, "lease created; a second create was refused by its condition (fencing works)")

	sc := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = *pathStyle })
	fmt.Fprintf(stdout, "creating bucket %s\n", bucket)
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("creating bucket: %w", err)
	}
	body := []byte(`{"msg":"archived"}` + "\n")
	key := "logs/dt=" + time.Now().UTC().Format("2006-01-02") + "/demo.json"
	if _, err := sc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		return fmt.Errorf("writing object: %w", err)
	}
	obj, err := sc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("reading object: %w", err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		return fmt.Errorf("object round trip: got %q, %v", got, err)
	}
	fmt.Fprintf(stdout, "s3://%s/%s written and read back\n", bucket, key)
	if read != sent {
		return fmt.Errorf("read %d records, sent %d", read, sent)
	}
	fmt.Fprintln(stdout, "demo ok")
	return nil
}

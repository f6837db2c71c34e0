package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

const putBatch = 500 // PutRecords maximum

func kinesisClient(env stackEnv) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       env.region,
		Credentials:  credentials.NewStaticCredentialsProvider(env.accessKey, env.secretKey, ""),
		BaseEndpoint: aws.String(env.kinesisEndpoint),
	})
}

func dynamoClient(env stackEnv) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       env.region,
		Credentials:  credentials.NewStaticCredentialsProvider(env.accessKey, env.secretKey, ""),
		BaseEndpoint: aws.String(env.dynamoEndpoint),
	})
}

// ensureStream creates the stream with the given shard count if it does not exist and
// waits until it is ACTIVE. An existing stream is used as it is (its shard count is reported).
func ensureStream(ctx context.Context, kc *kinesis.Client, name string, shards int) (int, error) {
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &name, ShardCount: aws.Int32(int32(shards))})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return 0, fmt.Errorf("create stream %s: %w", name, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err != nil {
			return 0, fmt.Errorf("describe stream %s: %w", name, err)
		}
		s := out.StreamDescriptionSummary
		if s.StreamStatus == types.StreamStatusActive {
			return int(aws.ToInt32(s.OpenShardCount)), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("stream %s not ACTIVE after 2m (%s)", name, s.StreamStatus)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// line returns a JSON log line of exactly size bytes (ending in '\n') for record seq.
func line(seq int, size int) []byte {
	head := fmt.Sprintf(`{"seq":%d,"ts":"%s","host":"web-%02d","level":"info","method":"GET","path":"/api/v1/items/%d","status":200,"latency_ms":%d,"msg":"`,
		seq, time.Now().UTC().Format(time.RFC3339Nano), seq%32, rand.IntN(100000), rand.IntN(500))
	const tail = "\"}\n"
	pad := size - len(head) - len(tail)
	if pad < 0 {
		pad = 0
	}
	b := make([]byte, 0, len(head)+pad+len(tail))
	b = append(b, head...)
	for i := 0; i < pad; i++ {
		b = append(b, 'a'+byte(i%26))
	}
	return append(b, tail...)
}

func partitionKey() string {
	return strconv.FormatUint(rand.Uint64(), 16)
}

// fillStream puts n plain records (no KPL aggregation) with random partition keys,
// putBatch per PutRecords call, concurrency calls in flight, retrying failed entries.
func fillStream(env stackEnv, name string, shards, n, size, concurrency int) error {
	ctx := context.Background()
	kc := kinesisClient(env)
	open, err := ensureStream(ctx, kc, name, shards)
	if err != nil {
		return err
	}
	if open != shards {
		fmt.Fprintf(os.Stderr, "vmware-drain: stream %s exists with %d open shards (asked %d); using it\n", name, open, shards)
	}

	if concurrency < 1 {
		concurrency = 1
	}
	start := time.Now()
	batches := make(chan [2]int)
	var put, retried atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				entries := make([]types.PutRecordsRequestEntry, 0, b[1]-b[0])
				for seq := b[0]; seq < b[1]; seq++ {
					entries = append(entries, types.PutRecordsRequestEntry{Data: line(seq, size), PartitionKey: aws.String(partitionKey())})
				}
				if err := putAll(ctx, kc, name, entries, &retried); err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				put.Add(int64(len(entries)))
			}
		}()
	}
	for lo := 0; lo < n; lo += putBatch {
		hi := min(lo+putBatch, n)
		batches <- [2]int{lo, hi}
	}
	close(batches)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "vmware-drain: put %d records of %d bytes into %s (%d shards) in %.1fs (%.0f rec/s, %d entries retried)\n",
		put.Load(), size, name, open, el, float64(put.Load())/el, retried.Load())
	return nil
}

func putAll(ctx context.Context, kc *kinesis.Client, name string, entries []types.PutRecordsRequestEntry, retried *atomic.Int64) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; len(entries) > 0; attempt++ {
		if attempt > 20 {
			return fmt.Errorf("put records: %d entries still failing after %d attempts", len(entries), attempt)
		}
		out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: &name, Records: entries})
		if err != nil {
			var thr *types.ProvisionedThroughputExceededException
			if !errors.As(err, &thr) && attempt > 5 {
				return fmt.Errorf("put records: %w", err)
			}
		} else if aws.ToInt32(out.FailedRecordCount) == 0 {
			return nil
		} else {
			var again []types.PutRecordsRequestEntry
			for i, r := range out.Records {
				if r.ErrorCode != nil {
					again = append(again, entries[i])
				}
			}
			retried.Add(int64(len(again)))
			entries = again
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil
}

// deleteAll deletes the stream and, if table is set, the lease table. Missing ones are fine.
func deleteAll(env stackEnv, stream, table string) error {
	ctx := context.Background()
	kc := kinesisClient(env)
	_, err := kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: &stream, EnforceConsumerDeletion: aws.Bool(true)})
	var nf *types.ResourceNotFoundException
	switch {
	case err == nil:
		fmt.Fprintf(os.Stderr, "vmware-drain: deleted stream %s\n", stream)
	case errors.As(err, &nf):
		fmt.Fprintf(os.Stderr, "vmware-drain: stream %s not found\n", stream)
	default:
		return fmt.Errorf("delete stream %s: %w", stream, err)
	}
	if table == "" {
		return nil
	}
	_, err = dynamoClient(env).DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: &table})
	var tnf *ddbtypes.ResourceNotFoundException
	switch {
	case err == nil:
		fmt.Fprintf(os.Stderr, "vmware-drain: deleted table %s\n", table)
	case errors.As(err, &tnf) || (err != nil && strings.Contains(err.Error(), "ResourceNotFound")):
		fmt.Fprintf(os.Stderr, "vmware-drain: table %s not found\n", table)
	default:
		return fmt.Errorf("delete table %s: %w", table, err)
	}
	return nil
}

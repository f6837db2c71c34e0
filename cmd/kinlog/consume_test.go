package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/testenv"
)

// TestConsumePreflight: a worker whose stream or bucket does not exist fails at start with
// the key to fix, before it takes a lease (it used to take leases and retry every flush).
func TestConsumePreflight(t *testing.T) {
	kc := testenv.KinesisClient(t)
	testenv.Require(t, testenv.DynamoDB, testenv.S3)
	stream := testenv.Name(t, "preflight")
	testenv.CreateStream(t, kc, stream, 1)
	table := testenv.Name(t, "preflight-leases")
	t.Cleanup(func() {
		_, _ = testenv.DynamoDBClient(t).DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := []string{"consume", "--set", "http.listen=-", "--set", "consumer.create_lease_table=true", "--set", "consumer.lease_table=" + table, "--set", "sink.s3.path_style=true"}
	missingBucket := testenv.Name(t, "no-bucket")
	_, stderr, code := runKinlog(t, ctx, "", append(base, "--set", "stream="+stream, "--set", "sink.s3.bucket="+missingBucket)...)
	if code != 1 || !strings.Contains(stderr, "bucket "+missingBucket+" does not exist: check sink.s3.bucket") {
		t.Errorf("missing bucket: exit %d, %q", code, stderr)
	}
	missingStream := testenv.Name(t, "no-stream")
	_, stderr, code = runKinlog(t, ctx, "", append(base, "--set", "stream="+missingStream, "--set", "sink.s3.bucket="+missingBucket)...)
	if code != 1 || !strings.Contains(stderr, "stream "+missingStream+" does not exist") {
		t.Errorf("missing stream: exit %d, %q", code, stderr)
	}
}

// TestConsumeReadinessFollowsS3: while S3 stops answering (toxiproxy down in front of
// MinIO) the worker's /readyz turns 503 naming the failing writes, and it is ready again
// once they succeed; it used to stay ready while every flush failed.
func TestConsumeReadinessFollowsS3(t *testing.T) {
	kc := testenv.KinesisClient(t)
	sc := testenv.S3Client(t)
	testenv.Require(t, testenv.DynamoDB)
	proxy := testenv.NewFaultProxy(t, testenv.S3)
	stream, table, bucket := workerResources(t, kc, sc, "ready-s3", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "kinlog.yaml")
	cfg := fmt.Sprintf("stream: %s\nhttp:\n  listen: 127.0.0.1:0\nlog:\n  format: json\nconsumer:\n  lease_table: %s\n  create_lease_table: true\n  failover_time: 3s\n  idle_time_between_reads: 200ms\nsink:\n  s3:\n    bucket: %s\n    path_style: true\n    flush_interval: 200ms\n", stream, table, bucket)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kinlogBin, "consume", "--config", cfgFile)
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_S3="+proxy.URL)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	addr := probeAddr(t, &stderr)
	waitFor(t, func() (string, bool) { return "", httpGet(t, "http://"+addr+"/readyz") == "ready\n" })
	proxy.Down()
	// Records to archive: their flush fails while S3 is down.
	if out, stderr, code := runKinlog(t, ctx, strings.Repeat(`{"msg":"x"}`+"\n", 50), "produce", "--stream", stream); code != 0 {
		t.Fatalf("produce: %s %s", out, stderr)
	}
	waitFor(t, func() (string, bool) {
		return "", strings.Contains(httpGet(t, "http://"+addr+"/readyz"), "not ready: S3 writes failing for")
	})
	proxy.Up()
	waitFor(t, func() (string, bool) { return "", httpGet(t, "http://"+addr+"/readyz") == "ready\n" })
	if !strings.Contains(stderr.String(), `"retry_in":"`) {
		t.Errorf("retry_in is not logged as a duration string:\n%s", stderr.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consume after SIGTERM: %v", err)
	}
}

// workerResources creates what a worker needs — a stream with shards, a bucket — and names
// its lease table, which is deleted when the test ends.
func workerResources(t *testing.T, kc *kinesis.Client, sc *s3.Client, name string, shards int32) (stream, table, bucket string) {
	t.Helper()
	stream, table, bucket = testenv.Name(t, name), testenv.Name(t, name+"-leases"), testenv.Name(t, name)
	testenv.CreateStream(t, kc, stream, shards)
	if _, err := sc.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = testenv.DynamoDBClient(t).DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	return stream, table, bucket
}

// probeAddr waits for a kinlog process logging JSON to stderr to say where it serves its
// probes and metrics, and returns that address.
func probeAddr(t *testing.T, stderr *syncBuffer) string {
	t.Helper()
	re := regexp.MustCompile(`"msg":"serving probes and metrics","addr":"([^"]+)"`)
	return waitFor(t, func() (string, bool) {
		m := re.FindStringSubmatch(stderr.String())
		if m == nil {
			return "", false
		}
		return m[1], true
	})
}

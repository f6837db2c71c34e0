package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/testenv"
)

type statusDoc struct {
	Shards []struct {
		Shard, Owner, State string
		BehindMillis        *int64 `json:"behind_ms"`
	} `json:"shards"`
	Workers map[string]int `json:"workers"`
}

// TestStatusCommand runs a worker (`kinlog consume`) on a 2-shard stream and reads the
// fleet with `kinlog status`: both leases renewing by that worker, lag known; then the
// worker is SIGKILLed and status reports its leases stale.
func TestStatusCommand(t *testing.T) {
	kc := testenv.KinesisClient(t)
	sc := testenv.S3Client(t)
	testenv.Require(t, testenv.DynamoDB)
	stream, table, bucket := workerResources(t, kc, sc, "status", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "kinlog.yaml")
	cfg := fmt.Sprintf("stream: %s\nhttp:\n  listen: \"-\"\nconsumer:\n  lease_table: %s\n  create_lease_table: true\n  failover_time: 3s\n  worker_id: w1\nsink:\n  s3:\n    bucket: %s\n    path_style: true\n", stream, table, bucket)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	worker := exec.Command(kinlogBin, "consume", "--config", cfgFile)
	var wlog syncBuffer
	worker.Stderr = &wlog
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = worker.Process.Kill() }()

	try := func(args ...string) (statusDoc, string, bool) {
		out, stderr, code := runKinlog(t, ctx, "", append([]string{"status", "--config", cfgFile, "--json", "--sample", "1500ms"}, args...)...)
		var doc statusDoc
		if code != 0 {
			return doc, fmt.Sprintf("exit %d %s %s", code, out, stderr), false
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return doc, "", true
	}
	status := func(args ...string) statusDoc {
		t.Helper()
		doc, msg, ok := try(args...)
		if !ok {
			t.Fatalf("status: %s", msg)
		}
		return doc
	}
	waitFor(t, func() (string, bool) {
		doc, _, ok := try() // the worker creates the table first
		if !ok {
			return "", false
		}
		n := 0
		for _, s := range doc.Shards {
			if s.Owner == "w1" && s.State == "renewing" {
				n++
			}
		}
		return "", n == 2
	})
	doc := status("--lag")
	for _, s := range doc.Shards {
		if s.BehindMillis == nil {
			t.Errorf("shard %s: no lag with --lag", s.Shard)
		}
	}
	if doc.Workers["w1"] != 2 {
		t.Errorf("workers %v, want w1 with 2 leases", doc.Workers)
	}
	// The text form names the states and the table.
	out, _, _ := runKinlog(t, ctx, "", "status", "--config", cfgFile, "--sample", "1500ms")
	if !strings.Contains(out, "2 shards in "+table+" (2 renewing), 1 workers") {
		t.Errorf("status text:\n%s", out)
	}

	_ = worker.Process.Kill()
	_ = worker.Wait()
	doc = status()
	for _, s := range doc.Shards {
		if s.State != "stale" || s.Owner != "w1" {
			t.Errorf("after the worker's SIGKILL: shard %s owner %s state %s, want w1 stale", s.Shard, s.Owner, s.State)
		}
	}
	if _, stderr, code := runKinlog(t, ctx, "", "status", "--set", "consumer.lease_table=no-such-table-x", "--sample", "1ms"); code != 1 || !strings.Contains(stderr, "lease table no-such-table-x does not exist") {
		t.Errorf("missing table: exit %d %q", code, stderr)
	}
}

// TestInitCommand: kinlog init creates the stream, lease table and bucket a config names,
// and a second run leaves them as they are.
func TestInitCommand(t *testing.T) {
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3)
	stream, bucket, app := testenv.Name(t, "init"), testenv.Name(t, "init"), testenv.Name(t, "init")
	t.Cleanup(func() {
		_, _ = testenv.DynamoDBClient(t).DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(app + "-leases")})
	})
	ctx := context.Background()
	args := []string{"init", "--set", "stream=" + stream, "--set", "application=" + app, "--set", "sink.s3.bucket=" + bucket, "--set", "sink.s3.path_style=true", "--shards", "2"}
	out, stderr, code := runKinlog(t, ctx, "", args...)
	for _, want := range []string{"stream " + stream + ": created with 2 shards", "lease table " + app + "-leases: created", "bucket " + bucket + ": created"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("first init: exit %d, output lacks %q:\n%s%s", code, want, out, stderr)
		}
	}
	out, _, code = runKinlog(t, ctx, "", args...)
	if code != 0 || strings.Count(out, "exists, left as it is") != 3 {
		t.Errorf("second init: exit %d:\n%s", code, out)
	}
	if _, err := testenv.S3Client(t).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Errorf("bucket: %v", err)
	}
}

// Package testenv gates and equips integration tests that run against the local AWS stack
// (infra/local) or real AWS.
//
// Tests find the services through the SDK's standard variables (AWS_ENDPOINT_URL_KINESIS,
// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3) plus KINLOG_KINESIS_MOCK_ENDPOINT for the
// TLS endpoint of kinesis-mock. When a variable is missing the test is skipped with a
// message pointing at `make test`, except under CI=true, where a missing or unreachable
// endpoint fails the test: CI must never pass by skipping.
//
// Tests that read archive objects with DuckDB, an independent reader, find it through
// KINLOG_DUCKDB (see [DuckDB]), under the same rule.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/kpl"
)

// Service names one endpoint of the stack.
type Service string

// The services of the local stack, named by the variable that points at them.
const (
	Kinesis     Service = "AWS_ENDPOINT_URL_KINESIS"
	DynamoDB    Service = "AWS_ENDPOINT_URL_DYNAMODB"
	S3          Service = "AWS_ENDPOINT_URL_S3"
	KinesisMock Service = "KINLOG_KINESIS_MOCK_ENDPOINT"
)

// InCI reports whether the tests run under CI (CI=true), where skipping is not allowed.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Require skips (locally) or fails (in CI) the test unless every named service has an
// endpoint variable set, and fails it when a set endpoint does not accept connections.
func Require(t testing.TB, services ...Service) {
	t.Helper()
	for _, s := range services {
		ep := os.Getenv(string(s))
		if ep == "" {
			missing(t, "integration test needs "+string(s)+" (the local stack); `make test` starts it and runs this test")
		}
		if err := reachable(ep); err != nil {
			t.Fatalf("%s=%s is set but not reachable: %v (is the local stack up? `infra/local/stack up`)", s, ep, err)
		}
	}
}

// missing skips the test with msg, or fails it under CI.
func missing(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatal(msg + " — CI=true, so a missing variable is a failure")
	}
	t.Skip(msg)
}

func reachable(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	c, err := net.DialTimeout("tcp", host, 3*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// AWSConfig loads the SDK's default configuration, as kinlog's binary does. Endpoints come
// from the AWS_ENDPOINT_URL_* variables, which the SDK reads itself.
func AWSConfig(t testing.TB) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatalf("loading AWS config: %v", err)
	}
	return cfg
}

// KinesisClient returns a Kinesis client for the stack's default Kinesis (kinesalite).
func KinesisClient(t testing.TB) *kinesis.Client {
	t.Helper()
	Require(t, Kinesis)
	return kinesis.NewFromConfig(AWSConfig(t))
}

// KinesisMockClient returns a Kinesis client for kinesis-mock's TLS endpoint (HTTP/2, for
// enhanced fan-out). The emulator's certificate is self-signed, so verification is off for
// this client only.
func KinesisMockClient(t testing.TB) *kinesis.Client {
	t.Helper()
	Require(t, KinesisMock)
	ep := os.Getenv(string(KinesisMock))
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed local emulator
		ForceAttemptHTTP2: true,
	}
	return kinesis.NewFromConfig(AWSConfig(t), func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(ep)
		o.HTTPClient = &http.Client{Transport: tr}
	})
}

// DynamoDBClient returns a DynamoDB client for the stack.
func DynamoDBClient(t testing.TB) *dynamodb.Client {
	t.Helper()
	Require(t, DynamoDB)
	return dynamodb.NewFromConfig(AWSConfig(t))
}

// S3Client returns an S3 client for the stack, with path-style addressing when
// KINLOG_S3_PATH_STYLE=true (MinIO needs it; AWS does not).
func S3Client(t testing.TB) *s3.Client {
	t.Helper()
	Require(t, S3)
	pathStyle := os.Getenv("KINLOG_S3_PATH_STYLE") == "true"
	return s3.NewFromConfig(AWSConfig(t), func(o *s3.Options) { o.UsePathStyle = pathStyle })
}

// Name returns a name unique to this run, safe for streams, tables and buckets
// (lower case, digits and dashes, at most 63 characters).
func Name(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	n := strings.ToLower(prefix) + "-" + hex.EncodeToString(b[:])
	if len(n) > 63 {
		n = n[len(n)-63:]
	}
	return n
}

// CreateStream creates a stream with the given number of shards, waits until it is ACTIVE
// and deletes it when the test ends.
func CreateStream(t testing.TB, c *kinesis.Client, name string, shards int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatalf("creating stream %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name), EnforceConsumerDeletion: aws.Bool(true)})
	})
	w := kinesis.NewStreamExistsWaiter(c, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = 500 * time.Millisecond
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, 60*time.Second); err != nil {
		t.Fatalf("waiting for stream %s: %v", name, err)
	}
	if err := WaitStreamActive(ctx, c, name); err != nil {
		t.Fatal(err)
	}
}

// WaitStreamActive polls DescribeStreamSummary until the stream is ACTIVE or ctx ends.
func WaitStreamActive(ctx context.Context, c *kinesis.Client, name string) error {
	for {
		out, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == ktypes.StreamStatusActive {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(errors.New("waiting for stream "+name+" to become ACTIVE"), ctx.Err(), err)
		case <-t.C:
		}
	}
}

// DuckDBVar names the variable that holds the path of the DuckDB query script,
// infra/local/duckdb-query.js, which `infra/local/stack env` exports.
const DuckDBVar = "KINLOG_DUCKDB"

// DuckDBTimeout bounds one query run by a [DuckDBQuery].
const DuckDBTimeout = 2 * time.Minute

// DuckDBQuery runs sql with DuckDB and returns the last statement's rows (see
// [QueryDuckDB]). It fails t, the test it is called from (a subtest may pass its own), when
// the query fails.
type DuckDBQuery func(t testing.TB, sql string) []map[string]any

// DuckDB skips (locally) or fails (in CI) the test unless KINLOG_DUCKDB names the DuckDB query
// script, and fails it when the variable names no executable file. It returns the function
// that runs queries with that script.
func DuckDB(t testing.TB) DuckDBQuery {
	t.Helper()
	script := os.Getenv(DuckDBVar)
	if script == "" {
		missing(t, "test needs "+DuckDBVar+" (DuckDB, installed by the local stack); `make test` sets it and runs this test")
	}
	fi, err := os.Stat(script)
	if err != nil {
		t.Fatalf("%s=%s is set but unusable: %v (`infra/local/stack env` sets it)", DuckDBVar, script, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("%s=%s is not an executable file", DuckDBVar, script)
	}
	return func(t testing.TB, sql string) []map[string]any {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), DuckDBTimeout)
		defer cancel()
		rows, err := QueryDuckDB(ctx, script, sql)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
}

// DuckDBError is a query that the DuckDB script ran and failed, or whose output was not
// JSON lines.
type DuckDBError struct {
	SQL    string
	Stderr string // what the script wrote to stderr: DuckDB's error message
	Err    error
}

func (e *DuckDBError) Error() string {
	msg := "running DuckDB query " + e.SQL + ": " + e.Err.Error()
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *DuckDBError) Unwrap() error { return e.Err }

// QueryDuckDB runs sql (given on stdin) with the DuckDB query script and decodes the rows it
// prints, one JSON object per line, keyed by column name. Numbers are [json.Number], so that
// 64-bit integers keep every digit; timestamps are RFC 3339 strings (see the script's header
// for the mapping of every type). A failing query returns a [*DuckDBError] holding DuckDB's
// message.
func QueryDuckDB(ctx context.Context, script, sql string) ([]map[string]any, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, script)
	cmd.Stdin = strings.NewReader(sql)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &DuckDBError{SQL: sql, Stderr: stderr.String(), Err: errors.Join(err, ctx.Err())}
	}
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	var rows []map[string]any
	for {
		var row map[string]any
		err := dec.Decode(&row)
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err == nil && row == nil {
			err = errors.New("a row is not a JSON object")
		}
		if err != nil {
			return nil, &DuckDBError{SQL: sql, Stderr: stderr.String(), Err: fmt.Errorf("decoding row %d: %w", len(rows), err)}
		}
		rows = append(rows, row)
	}
}

// ReadStream reads every shard of the stream from TRIM_HORIZON and returns, per shard, the
// user records a KCL consumer would process: aggregates are deaggregated, and dropped whole
// when a user record hashes outside the shard's range.
func ReadStream(t testing.TB, c *kinesis.Client, stream string) (byShard map[string][]kpl.Record, kinesisRecords int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shards, err := ListAllShards(ctx, c, stream)
	if err != nil {
		t.Fatal(err)
	}
	byShard = map[string][]kpl.Record{}
	for _, s := range shards {
		rng, err := kpl.ParseHashKeyRange(*s.HashKeyRange.StartingHashKey, *s.HashKeyRange.EndingHashKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ReadShard(t, c, stream, *s.ShardId) {
			kinesisRecords++
			recs, ok := kpl.Decode(r.Data)
			if !ok {
				byShard[*s.ShardId] = append(byShard[*s.ShardId], kpl.Record{PartitionKey: *r.PartitionKey, Data: r.Data})
				continue
			}
			if kpl.AllInRange(recs, rng) {
				byShard[*s.ShardId] = append(byShard[*s.ShardId], recs...)
			}
		}
	}
	return byShard, kinesisRecords
}

// ReadShard returns the Kinesis records of one shard from TRIM_HORIZON, as stored
// (aggregates not deaggregated), up to the shard's end or, for an open shard, its latest
// record.
func ReadShard(t testing.TB, c *kinesis.Client, stream, shard string) []ktypes.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	it, err := c.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: &stream, ShardId: &shard, ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatalf("getting iterator of %s: %v", shard, err)
	}
	var recs []ktypes.Record
	for iter := it.ShardIterator; iter != nil; {
		out, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		// The emulator now and then drops a connection under load (the SDK's own three
		// attempts can all meet it); the iterator is still good, so read it again.
		for retry := 0; err != nil && retry < 5 && ctx.Err() == nil; retry++ {
			time.Sleep(time.Duration(retry+1) * 200 * time.Millisecond) // backoff, not synchronisation
			out, err = c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		}
		if err != nil {
			t.Fatalf("reading %s: %v", shard, err)
		}
		recs = append(recs, out.Records...)
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			break // caught up with an open shard
		}
		iter = out.NextShardIterator
	}
	return recs
}

// ListAllShards lists every shard of the stream, closed ones included.
func ListAllShards(ctx context.Context, c *kinesis.Client, stream string) ([]ktypes.Shard, error) {
	var shards []ktypes.Shard
	in := &kinesis.ListShardsInput{StreamName: &stream}
	for {
		out, err := c.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("listing shards of %s: %w", stream, err)
		}
		shards = append(shards, out.Shards...)
		if out.NextToken == nil {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

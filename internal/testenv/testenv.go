// Package testenv gates and equips integration tests that run against the local AWS stack
// (infra/local) or real AWS.
//
// Tests find the services through the SDK's standard variables (AWS_ENDPOINT_URL_KINESIS,
// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3) plus KINLOG_KINESIS_MOCK_ENDPOINT for the
// TLS endpoint of kinesis-mock. When a variable is missing the test is skipped with a
// message pointing at `make test`, except under CI=true, where a missing or unreachable
// endpoint fails the test: CI must never pass by skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
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
			msg := "integration test needs " + string(s) + " (the local stack); `make test` starts it and runs this test"
			if InCI() {
				t.Fatal(msg + " — CI=true, so a missing endpoint is a failure")
			}
			t.Skip(msg)
		}
		if err := reachable(ep); err != nil {
			t.Fatalf("%s=%s is set but not reachable: %v (is the local stack up? `infra/local/stack up`)", s, ep, err)
		}
	}
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

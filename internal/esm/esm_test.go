package esm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/goleak"

	"github.com/kinlog/kinlog/internal/testenv"
)

var bootstrap string // the test function, built by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "esm-testfn-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bootstrap = filepath.Join(dir, "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bootstrap, "./internal/testfn")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test function: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// The SDK's HTTP clients keep idle connections to the local stack open.
		if err := goleak.Find(goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// fixture is one stream, its function's RIEs (one per shard, started when the driver first
// reaches the shard) and the files the test function writes.
type fixture struct {
	t      *testing.T
	kc     *kinesis.Client
	stream string
	dir    string
	env    []string

	mu   sync.Mutex
	ries map[string]*RIE
	// before, when set, runs before each invocation, in the shard's goroutine; an error it
	// returns is the invocation's (the RIE is not called).
	before func(shard string, payload []byte) error
}

func newFixture(t *testing.T, shards int32, env ...string) *fixture {
	t.Helper()
	RequireRIE(t)
	kc := testenv.KinesisClient(t)
	f := &fixture{t: t, kc: kc, stream: testenv.Name(t, "esm"), dir: t.TempDir(), env: env, ries: map[string]*RIE{}}
	if err := os.Mkdir(filepath.Join(f.dir, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.CreateStream(t, kc, f.stream, shards)
	return f
}

type hookInvoker struct {
	f     *fixture
	shard string
	rie   *RIE
}

func (h hookInvoker) Invoke(ctx context.Context, payload []byte) (Result, error) {
	if h.f.before != nil {
		if err := h.f.before(h.shard, payload); err != nil {
			return Result{}, err
		}
	}
	return h.rie.Invoke(ctx, payload)
}

func (f *fixture) invoker(shard string) Invoker {
	env := append([]string{
		"TESTFN_LOG=" + filepath.Join(f.dir, shard+".log"),
		"TESTFN_STATE=" + filepath.Join(f.dir, "state"),
	}, f.env...)
	r := StartRIE(f.t, bootstrap, env)
	f.mu.Lock()
	f.ries[shard] = r
	f.mu.Unlock()
	return hookInvoker{f, shard, r}
}

func (f *fixture) driver(cfg Config) *Driver {
	f.t.Helper()
	cfg.Kinesis, cfg.Stream, cfg.Invoker = cmp.Or[KinesisAPI](cfg.Kinesis, f.kc), f.stream, f.invoker
	d, err := New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// put writes records with the given data to the stream under one partition key (one
// shard), in order, and returns their sequence numbers.
func (f *fixture) put(data ...string) []string {
	f.t.Helper()
	return f.putKey("pk", data...)
}

func (f *fixture) putKey(key string, data ...string) []string {
	f.t.Helper()
	var seqs []string
	for _, d := range data {
		out, err := f.kc.PutRecord(context.Background(), &kinesis.PutRecordInput{
			StreamName: aws.String(f.stream), PartitionKey: aws.String(key), Data: []byte(d),
		})
		if err != nil {
			f.t.Fatalf("PutRecord: %v", err)
		}
		seqs = append(seqs, *out.SequenceNumber)
	}
	return seqs
}

// events returns the events the test function received on a shard, in order.
func (f *fixture) events(shard string) []events.KinesisEvent {
	f.t.Helper()
	var evs []events.KinesisEvent
	for _, line := range f.rawEvents(shard) {
		var ev events.KinesisEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			f.t.Fatalf("decoding a received event: %v", err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func (f *fixture) rawEvents(shard string) [][]byte {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, shard+".log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	return lines
}

func run(t *testing.T, d *Driver) Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	st, err := d.RunUntilCaughtUp(ctx)
	if err != nil {
		t.Fatalf("RunUntilCaughtUp: %v", err)
	}
	return st
}

const shard0 = "shardId-000000000000"

// seqsOf returns the sequence numbers of an event's records.
func seqsOf(ev events.KinesisEvent) []string {
	var s []string
	for _, r := range ev.Records {
		s = append(s, r.Kinesis.SequenceNumber)
	}
	return s
}

func describe(invs []Invocation) string {
	var b strings.Builder
	for _, inv := range invs {
		fmt.Fprintf(&b, "\n  %s %d records %s..%s attempt %d %s %s %s", inv.Shard, inv.Records,
			short(inv.FirstSequence), short(inv.LastSequence), inv.Attempt, inv.Shape, inv.Outcome, inv.Result.ErrorType)
	}
	return b.String()
}

func short(seq string) string { return seq[max(0, len(seq)-6):] }

func createBucket(t *testing.T) (*s3.Client, string) {
	t.Helper()
	sc := testenv.S3Client(t)
	bucket := testenv.Name(t, "esm")
	if _, err := sc.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	return sc, bucket
}

func getObject(t *testing.T, sc *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := sc.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(out.Body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func listKeys(t *testing.T, sc *s3.Client, bucket string) []string {
	t.Helper()
	out, err := sc.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, *o.Key)
	}
	return keys
}

// readArrivals reads the stream's shard directly and returns each record's arrival time.
func (f *fixture) readArrivals(shard string) map[string]time.Time {
	f.t.Helper()
	ctx := context.Background()
	it, err := f.kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: &f.stream, ShardId: aws.String(shard), ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := f.kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		f.t.Fatal(err)
	}
	m := map[string]time.Time{}
	for _, r := range out.Records {
		m[*r.SequenceNumber] = *r.ApproximateArrivalTimestamp
	}
	return m
}

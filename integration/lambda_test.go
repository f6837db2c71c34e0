package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/esm"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/lambda"
	"github.com/kinlog/kinlog/producer"
	"github.com/kinlog/kinlog/sinks/rollup"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// lambdaBins are the binaries the serverless tests run, built once per test binary.
var lambdaBins struct {
	once                             sync.Once
	dir                              string
	bootstrap, nonIdempotent, kinlog string
	err                              error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if lambdaBins.dir != "" {
		os.RemoveAll(lambdaBins.dir)
	}
	os.Exit(code)
}

// lambdaBinaries builds the bootstrap, its non-idempotent variant and kinlog.
func lambdaBinaries(t *testing.T) (bootstrap, nonIdempotent, kinlog string) {
	t.Helper()
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3) // skip (or fail in CI) before building
	esm.RequireRIE(t)
	b := &lambdaBins
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "kinlog-lambda-it-"); b.err != nil {
			return
		}
		b.bootstrap = filepath.Join(b.dir, "release", "bootstrap")
		b.nonIdempotent = filepath.Join(b.dir, "nonidempotent", "bootstrap")
		b.kinlog = filepath.Join(b.dir, "kinlog")
		for _, bld := range [][]string{
			{"-tags", "lambda.norpc", "-o", b.bootstrap, "./cmd/kinlog-lambda"},
			{"-tags", "lambda.norpc,kinlog_nonidempotent", "-o", b.nonIdempotent, "./cmd/kinlog-lambda"},
			{"-o", b.kinlog, "./cmd/kinlog"},
		} {
			cmd := exec.Command("go", append([]string{"build"}, bld...)...)
			cmd.Dir = ".." // the module root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build %s: %v\n%s", strings.Join(bld, " "), err, out)
				return
			}
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bootstrap, b.nonIdempotent, b.kinlog
}

// lambdaRig is one serverless test's stream, archive bucket, progress table and on-failure
// bucket, and the function's execution environments: one RIE per shard.
type lambdaRig struct {
	t                                 *testing.T
	kc                                *kinesis.Client
	sc                                *s3.Client
	ddb                               *dynamodb.Client
	stream, bucket, table, failBucket string
	bootstrap                         string
	env                               []string

	protocol bool // the release bootstrap: the progress protocol is on
	watching

	mu   sync.Mutex
	ries map[string]*esm.RIE
}

// lambdaPrefix partitions the archive by a member of the record, so that a record that is not
// JSON cannot be placed and goes to the error output (errors/partitioning-failed/...).
const lambdaPrefix = "logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/"

// newLambdaRig creates the test's stream (with shards shards), archive bucket, progress table
// and on-failure bucket, all deleted when the test ends, and the function's environment: the
// SDK's variables pointing at the stack and the KINLOG_* configuration, with env replacing or
// adding variables (AWS_ENDPOINT_URL_S3=<a fault proxy's URL>, AWS_LAMBDA_FUNCTION_TIMEOUT, …).
func newLambdaRig(t *testing.T, name string, shards int32, bootstrap string, env ...string) *lambdaRig {
	t.Helper()
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3)
	esm.RequireRIE(t)
	r := &lambdaRig{t: t, kc: testenv.KinesisClient(t), sc: testenv.S3Client(t), ddb: testenv.DynamoDBClient(t),
		stream: testenv.Name(t, name), bucket: testenv.Name(t, name), table: testenv.Name(t, name+"-progress"),
		failBucket: testenv.Name(t, name+"-failures"), bootstrap: bootstrap, ries: map[string]*esm.RIE{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testenv.CreateStream(t, r.kc, r.stream, shards)
	for _, b := range []string{r.bucket, r.failBucket} {
		if _, err := r.sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatalf("creating bucket %s: %v", b, err)
		}
		t.Cleanup(func() { emptyBucket(t, r.sc, b) })
	}
	if err := lambda.CreateProgressTable(ctx, r.ddb, r.table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = r.ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(r.table)})
	})
	r.env = append(r.awsEnv(),
		"KINLOG_SINK_S3_BUCKET="+r.bucket,
		"KINLOG_SINK_S3_PATH_STYLE=true",
		"KINLOG_SINK_S3_PREFIX="+lambdaPrefix,
		"KINLOG_SINK_S3_ENCODING=ndjson", // gzip NDJSON, which DuckDB reads; rollups are on by default
		"KINLOG_PROGRESS_TABLE="+r.table,
		"KINLOG_LOG_LEVEL=info",
	)
	r.env = withEnv(r.env, env...)
	return r
}

// awsEnv is the SDK's configuration for the local stack, the services reached directly.
func (r *lambdaRig) awsEnv() []string {
	return []string{
		"AWS_REGION=" + os.Getenv("AWS_REGION"), "AWS_DEFAULT_REGION=" + os.Getenv("AWS_REGION"),
		"AWS_ACCESS_KEY_ID=" + os.Getenv("AWS_ACCESS_KEY_ID"), "AWS_SECRET_ACCESS_KEY=" + os.Getenv("AWS_SECRET_ACCESS_KEY"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_S3=" + os.Getenv(string(testenv.S3)),
		"AWS_ENDPOINT_URL_DYNAMODB=" + os.Getenv(string(testenv.DynamoDB)),
		"AWS_ENDPOINT_URL_KINESIS=" + os.Getenv(string(testenv.Kinesis)),
	}
}

// withEnv returns env with the variables of set replacing those of the same name.
func withEnv(env []string, set ...string) []string {
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(set, func(s string) bool { return strings.HasPrefix(s, k+"=") }) {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

// invoker starts the RIE of a shard (esm.Config.Invoker).
func (r *lambdaRig) invoker(shard string) esm.Invoker {
	rie := esm.StartRIE(r.t, r.bootstrap, r.env)
	r.mu.Lock()
	r.ries[shard] = rie
	r.mu.Unlock()
	return &shardInvoker{r: r, shard: shard, rie: rie}
}

func (r *lambdaRig) driver(cfg esm.Config) *esm.Driver {
	r.t.Helper()
	cfg.Kinesis, cfg.Stream, cfg.Invoker = r.kc, r.stream, r.invoker
	d, err := esm.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

// putPlain writes records as plain PutRecords entries, one Kinesis record each.
func (r *lambdaRig) putPlain(t *testing.T, data [][]byte) {
	t.Helper()
	var entries []ktypes.PutRecordsRequestEntry
	flush := func() {
		for try := 0; len(entries) > 0; try++ {
			if try == 10 {
				t.Fatalf("PutRecords: %d records still refused after %d tries", len(entries), try)
			}
			out, err := r.kc.PutRecords(t.Context(), &kinesis.PutRecordsInput{StreamName: &r.stream, Records: entries})
			if err != nil {
				t.Fatalf("PutRecords: %v", err)
			}
			var retry []ktypes.PutRecordsRequestEntry
			for i, e := range out.Records {
				if e.ErrorCode != nil {
					retry = append(retry, entries[i])
				}
			}
			entries = retry
		}
	}
	size := 0
	for i, d := range data {
		if len(entries) == 500 || size+len(d) > 4<<20 {
			flush()
			size = 0
		}
		entries = append(entries, ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("plain-%d", i)), Data: d})
		size += len(d)
	}
	flush()
}

// lambdaWorkload is what a test produced: the ids of the JSON records (the archive must hold
// each once) and of those that are not JSON (the error output must hold each once).
type lambdaWorkload struct {
	mu        sync.Mutex
	good, bad []string
	next      int
	prefix    string
}

// records makes n records: JSON lines with a unique id and a service; every badEvery-th is
// not JSON, and every bigEvery-th (when > 0) is a JSON line of about 1000 KB — near the 1 MiB
// Kinesis limit, incompressible padding so that its object is that large too.
func (w *lambdaWorkload) records(n, badEvery, bigEvery int) [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([][]byte, 0, n)
	for range n {
		i := w.next
		w.next++
		id := fmt.Sprintf("%s%06d", w.prefix, i)
		switch {
		case badEvery > 0 && i%badEvery == badEvery-1:
			w.bad = append(w.bad, id)
			out = append(out, []byte("not json "+id))
		case bigEvery > 0 && i%bigEvery == bigEvery-1:
			w.good = append(w.good, id)
			pad := make([]byte, 750_000)
			_, _ = rand.Read(pad)
			out = append(out, fmt.Appendf(nil, `{"id":%q,"service":"svc%d","level":"info","pad":%q}`, id, i%3, base64.StdEncoding.EncodeToString(pad)))
		default:
			w.good = append(w.good, id)
			out = append(out, fmt.Appendf(nil, `{"id":%q,"service":"svc%d","level":"info","msg":"request %d handled","latency_ms":%d}`, id, i%3, i, i%997))
		}
	}
	return out
}

func (w *lambdaWorkload) ids() (good, bad []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.good), slices.Clone(w.bad)
}

// newProducer returns kinlog's producer on the rig's stream, with KPL aggregation (the
// default, set here to say so): user records are packed into aggregates per predicted shard,
// records too large for an aggregate go out alone. It is closed, and checked to have
// delivered everything, when the test ends (or by closeProducer).
func (r *lambdaRig) newProducer(t *testing.T) *producer.Producer {
	t.Helper()
	p, err := producer.New(r.kc, r.stream, producer.WithAggregation(true), producer.WithLinger(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// send puts records into the producer and waits until Kinesis has them all.
func send(t *testing.T, p *producer.Producer, recs [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for i, d := range recs {
		if err := p.Put(ctx, producer.Record{PartitionKey: fmt.Sprintf("pk-%d", i%97), Data: d}); err != nil {
			t.Fatalf("producer Put: %v", err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("producer Flush: %v", err)
	}
}

// closeProducer closes p and fails t unless every record was delivered, once (the run has
// no Kinesis faults: nothing is resent but the aggregates a reshard strands, which every
// consumer drops).
func closeProducer(t *testing.T, p *producer.Producer, want int) producer.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("closing the producer: %v", err)
	}
	st := p.Stats()
	if st.RecordsDelivered != uint64(want) || st.RecordsFailed != 0 {
		t.Fatalf("the producer delivered %d of %d records, %d failed", st.RecordsDelivered, want, st.RecordsFailed)
	}
	return st
}

// splitShard splits a shard at the middle of its hash-key range and waits until the stream
// is ACTIVE again.
func (r *lambdaRig) splitShard(t *testing.T, shard string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	shards, err := testenv.ListAllShards(ctx, r.kc, r.stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		if aws.ToString(s.ShardId) != shard {
			continue
		}
		start, _ := new(big.Int).SetString(*s.HashKeyRange.StartingHashKey, 10)
		end, _ := new(big.Int).SetString(*s.HashKeyRange.EndingHashKey, 10)
		mid := new(big.Int).Rsh(new(big.Int).Add(start, end), 1)
		if _, err := r.kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: &r.stream, ShardToSplit: &shard, NewStartingHashKey: aws.String(mid.String())}); err != nil {
			t.Fatalf("splitting %s: %v", shard, err)
		}
		if err := testenv.WaitStreamActive(ctx, r.kc, r.stream); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no shard %s in %s", shard, r.stream)
}

// lambdaArchiveProblems downloads the bucket to a temporary directory and checks it with
// DuckDB, an independent reader: the archive (logs/, NDJSON .json.gz) holds every good id
// exactly once — count(*) = count(DISTINCT id) = len(good) and the very ids — the error
// output (errors/, gzip NDJSON ErrorRecord lines whose rawData is the record) holds exactly
// the bad ones, once each, the rollups (analytics/, gzip NDJSON rows) count as many records
// as the archive holds, and there is no other object. It returns what is wrong, "" when
// nothing is.
func lambdaArchiveProblems(t *testing.T, sc *s3.Client, bucket string, good, bad []string) string {
	t.Helper()
	duck := testenv.DuckDB(t)
	dir := t.TempDir()
	var problems []string
	files := map[string]int{}
	for key, body := range readBucket(t, sc, bucket) {
		top, _, _ := strings.Cut(key, "/")
		want := map[string]string{"logs": ".json.gz", "errors": s3sink.ErrorExtension, "analytics": rollup.Extension}[top]
		if want == "" || !strings.HasSuffix(key, want) {
			problems = append(problems, "unexpected object "+key)
			continue
		}
		path := filepath.Join(dir, "bucket", filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
		files[top]++
	}
	for name, ids := range map[string][]string{"good.csv": good, "bad.csv": bad} {
		csv := "id\n"
		for _, id := range ids {
			csv += id + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(csv), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(top, glob, columns, sel string) string {
		if files[top] == 0 {
			return "(SELECT NULL::VARCHAR AS id, NULL::BIGINT AS n, NULL::VARCHAR AS errorCode WHERE false)"
		}
		return fmt.Sprintf("(SELECT %s FROM read_json('%s', format='newline_delimited', columns={%s}))", sel, filepath.Join(dir, "bucket", top, "**", glob), columns)
	}
	ids := func(name string) string {
		return fmt.Sprintf("(SELECT id FROM read_csv('%s', header=true, columns={'id':'VARCHAR'}))", filepath.Join(dir, name))
	}
	sql := fmt.Sprintf(`WITH
arch AS %s,
errs_all AS %s,
errs AS (SELECT id FROM errs_all WHERE errorCode <> 'outside-shard-range'),
outside AS (SELECT id FROM errs_all WHERE errorCode = 'outside-shard-range'),
rolls AS %s,
good AS %s,
bad AS %s
SELECT
  (SELECT count(*) FROM arch) AS archived,
  (SELECT count(DISTINCT id) FROM arch) AS archived_ids,
  (SELECT count(*) FROM arch WHERE id IS NULL) AS archived_without_id,
  (SELECT count(*) FROM good WHERE NOT EXISTS (SELECT 1 FROM arch WHERE arch.id = good.id)) AS archive_missing,
  (SELECT count(*) FROM (SELECT DISTINCT id FROM arch) a WHERE NOT EXISTS (SELECT 1 FROM good WHERE good.id = a.id)) AS archive_unexpected,
  (SELECT count(*) FROM (SELECT id FROM arch GROUP BY id HAVING count(*) > 1)) AS archive_duplicated,
  (SELECT count(*) FROM errs) AS errored,
  (SELECT count(DISTINCT id) FROM errs) AS errored_ids,
  (SELECT count(*) FROM bad WHERE NOT EXISTS (SELECT 1 FROM errs WHERE errs.id = bad.id)) AS errors_missing,
  (SELECT count(*) FROM (SELECT DISTINCT id FROM errs) e WHERE NOT EXISTS (SELECT 1 FROM bad WHERE bad.id = e.id)) AS errors_unexpected,
  (SELECT count(*) FROM (SELECT id FROM errs GROUP BY id HAVING count(*) > 1)) AS errors_duplicated,
  (SELECT count(*) FROM outside) AS outside,
  (SELECT count(*) FROM outside WHERE NOT EXISTS (SELECT 1 FROM arch WHERE arch.id = outside.id) AND NOT EXISTS (SELECT 1 FROM errs WHERE errs.id = outside.id)) AS outside_not_archived,
  (SELECT coalesce(sum(n), 0) FROM rolls) AS rolled_up`,
		read("logs", "*.json.gz", "'id':'VARCHAR'", "id"),
		read("errors", "*"+s3sink.ErrorExtension, "'rawData':'VARCHAR','errorCode':'VARCHAR'", "CASE WHEN starts_with(decode(from_base64(rawData)), 'not json ') THEN replace(decode(from_base64(rawData)), 'not json ', '') ELSE json_extract_string(decode(from_base64(rawData)), '$.id') END AS id, errorCode"),
		read("analytics", "*"+rollup.Extension, "'count':'BIGINT'", "count AS n"),
		ids("good.csv"), ids("bad.csv"))
	rows := duck(t, sql)
	if len(rows) != 1 {
		t.Fatalf("DuckDB returned %d rows", len(rows))
	}
	n := func(col string) int64 {
		v, err := rows[0][col].(json.Number).Int64()
		if err != nil {
			t.Fatalf("DuckDB column %s = %v", col, rows[0][col])
		}
		return v
	}
	archived, distinct := n("archived"), n("archived_ids")
	if archived != distinct || distinct != int64(len(good)) || n("archive_missing")+n("archive_unexpected")+n("archived_without_id") > 0 {
		problems = append(problems, fmt.Sprintf("archive: %d records, %d distinct ids, %d produced; %d missing, %d more than once, %d unexpected, %d without id",
			archived, distinct, len(good), n("archive_missing"), n("archive_duplicated"), n("archive_unexpected"), n("archived_without_id")))
	}
	if e, eids := n("errored"), n("errored_ids"); e != eids || eids != int64(len(bad)) || n("errors_missing")+n("errors_unexpected") > 0 {
		problems = append(problems, fmt.Sprintf("error output: %d records, %d distinct, %d produced not JSON; %d missing, %d more than once, %d unexpected",
			e, eids, len(bad), n("errors_missing"), n("errors_duplicated"), n("errors_unexpected")))
	}
	// KPL aggregates that landed on a parent after a split are in the error output as
	// outside-shard-range; the producer sent them again to the right shard, so every one of
	// their records must be archived too (or, for those that are not JSON, be in the error
	// output as such).
	if o := n("outside_not_archived"); o > 0 {
		problems = append(problems, fmt.Sprintf("%d of the %d records in the error output as outside-shard-range are not archived from the right shard", o, n("outside")))
	}
	if r := n("rolled_up"); r != archived {
		problems = append(problems, fmt.Sprintf("rollups count %d records, the archive holds %d", r, archived))
	}
	slices.Sort(problems)
	return strings.Join(problems, "; ")
}

// A watcher acts on the world in the middle of an invocation (see shardInvoker): it runs
// beside each armed invocation until stop is closed, and reports whether it acted and what
// it saw.
type watcher func(ctx context.Context, s *shardInvoker, stop <-chan struct{}) (acted bool, saw []string)

// watchEvent is an invocation a watcher acted in.
type watchEvent struct {
	shard  string
	saw    []string
	result esm.Result
	err    error
}

// watching holds the rig's watcher, how many invocations it is still to act in, and the
// invocations it acted in.
type watching struct {
	mu     sync.Mutex
	watch  watcher
	armed  int
	events []watchEvent
}

func (w *watching) arm(n int) {
	w.mu.Lock()
	w.armed += n
	w.mu.Unlock()
}

func (w *watching) take() watcher {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed > 0 && w.watch != nil {
		w.armed--
		return w.watch
	}
	return nil
}

func (w *watching) disarm() {
	w.mu.Lock()
	w.armed = 0
	w.mu.Unlock()
}

func (w *watching) done() []watchEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// shardInvoker is a shard's RIE (one execution environment), with the rig's watcher.
type shardInvoker struct {
	r      *lambdaRig
	shard  string
	rie    *esm.RIE
	frozen int // the runtime a watcher stopped (SIGSTOP) during the current invocation
}

func (s *shardInvoker) Invoke(ctx context.Context, payload []byte) (esm.Result, error) {
	w := &s.r.watching
	watch := w.take()
	if watch == nil {
		return s.rie.Invoke(ctx, payload)
	}
	type seen struct {
		acted bool
		saw   []string
	}
	stop, watched := make(chan struct{}), make(chan seen, 1)
	go func() {
		acted, saw := watch(ctx, s, stop)
		watched <- seen{acted, saw}
	}()
	res, err := s.rie.Invoke(ctx, payload)
	close(stop)
	got := <-watched
	if s.frozen != 0 {
		if !res.Timeout {
			// The invocation had answered before the runtime stopped: let it go on.
			_ = syscall.Kill(s.frozen, syscall.SIGCONT)
			got.acted = false
		}
		s.frozen = 0
	}
	if !got.acted {
		w.arm(1) // not this one: the next invocation
		return res, err
	}
	w.mu.Lock()
	w.events = append(w.events, watchEvent{shard: s.shard, saw: got.saw, result: res, err: err})
	w.mu.Unlock()
	return res, err
}

// freezeAfterRollups is the watcher that stops (SIGSTOP) the function's runtime process in
// the middle of an invocation, once the invocation has written the rollup objects of n
// chunks — so that it is writing the objects of chunk n or n+1: the function is then stuck,
// as a process starved of CPU or blocked in the kernel is, until the RIE's timeout
// (AWS_LAMBDA_FUNCTION_TIMEOUT) kills it (SIGKILL) and answers "Task timed out". Slow S3
// alone never gets the function killed: it abandons its writes DefaultReserve (2 s) before
// its deadline and answers in time. saw is the objects the invocation wrote, then (with the
// progress protocol) "pending:" and the keys its progress item lists as not committed.
func freezeAfterRollups(n int) watcher {
	return func(ctx context.Context, s *shardInvoker, stop <-chan struct{}) (bool, []string) {
		before, err := bucketKeys(ctx, s.r.sc, s.r.bucket)
		if err != nil {
			return false, nil
		}
		for {
			select {
			case <-stop:
				return false, nil
			case <-time.After(10 * time.Millisecond): // the bucket's polling interval
			}
			keys, err := bucketKeys(ctx, s.r.sc, s.r.bucket)
			if err != nil {
				continue
			}
			var written []string
			rollups := 0
			for k := range keys {
				if !before[k] && strings.Contains(k, "-"+s.shard+"-") {
					written = append(written, k)
					if strings.HasPrefix(k, "analytics/") {
						rollups++
					}
				}
			}
			if rollups < n {
				continue
			}
			pid, err := runtimePID(s.rie, s.r.bootstrap)
			if err == nil {
				err = syscall.Kill(pid, syscall.SIGSTOP)
			}
			if err != nil {
				return false, nil
			}
			s.frozen = pid
			// What the stopped function had sent is in the bucket by now: list again.
			if keys, err := bucketKeys(context.WithoutCancel(ctx), s.r.sc, s.r.bucket); err == nil {
				written = written[:0]
				for k := range keys {
					if !before[k] && strings.Contains(k, "-"+s.shard+"-") {
						written = append(written, k)
					}
				}
			}
			slices.Sort(written)
			if s.r.protocol {
				_, pending, err := s.r.progress(ctx, s.shard)
				if err != nil {
					pending = []string{"(unread: " + err.Error() + ")"}
				}
				written = append(append(written, "pending:"), pending...)
			}
			return true, written
		}
	}
}

// progress reads a shard's progress item: the committed sequence number and the pending keys.
func (r *lambdaRig) progress(ctx context.Context, shard string) (committed string, pending []string, err error) {
	out, err := r.ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: &r.table, ConsistentRead: aws.Bool(true),
		Key: map[string]dtypes.AttributeValue{"shard": &dtypes.AttributeValueMemberS{Value: r.stream + "/" + shard}}})
	if err != nil {
		return "", nil, err
	}
	if v, ok := out.Item["sequence"].(*dtypes.AttributeValueMemberS); ok {
		committed = v.Value
	}
	if l, ok := out.Item["pending"].(*dtypes.AttributeValueMemberL); ok {
		for _, e := range l.Value {
			if v, ok := e.(*dtypes.AttributeValueMemberS); ok {
				pending = append(pending, v.Value)
			}
		}
	}
	return committed, pending, nil
}

// bucketKeys lists the bucket.
func bucketKeys(ctx context.Context, sc *s3.Client, bucket string) (map[string]bool, error) {
	keys := map[string]bool{}
	pg := s3.NewListObjectsV2Paginator(sc, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys[aws.ToString(o.Key)] = true
		}
	}
	return keys, nil
}

// runtimePID returns the pid of the runtime process (the bootstrap) of the RIE: the child of
// the aws-lambda-rie process that listens on rie.Addr.
func runtimePID(rie *esm.RIE, bootstrap string) (int, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), rie.Addr) {
			continue
		}
		children, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, c := range children {
			b, _ := os.ReadFile(c)
			for _, f := range strings.Fields(string(b)) {
				if exe, err := os.Readlink("/proc/" + f + "/exe"); err == nil && exe == bootstrap {
					return strconv.Atoi(f)
				}
			}
		}
		return 0, fmt.Errorf("the RIE on %s (pid %d) has no runtime process", rie.Addr, pid)
	}
	return 0, fmt.Errorf("no RIE process listens on %s", rie.Addr)
}

// mapping runs an event source mapping (esm.Driver) over the rig's stream in the background:
// RunUntilCaughtUp again and again until wait, and after it until two calls in a row invoke
// nothing, so that it ends caught up with everything produced before wait. (One call is not
// enough: RunUntilCaughtUp can return before kinesalite has marked a split shard's end — it
// does so on the read after the first empty one, its sequence times being in whole seconds —
// and so before it has read the children.)
type mapping struct {
	d      *esm.Driver
	finish chan struct{}
	done   chan mappingResult
}

type mappingResult struct {
	st  esm.Stats
	err error
	ok  bool // false: the driver's goroutine ended in t.FailNow (an RIE that did not start)
}

func (r *lambdaRig) startMapping(cfg esm.Config) *mapping {
	m := &mapping{d: r.driver(cfg), finish: make(chan struct{}), done: make(chan mappingResult, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	go func() {
		var res mappingResult
		defer func() { cancel(); m.done <- res }() // also after runtime.Goexit
		for idle := 0; idle < 2; {
			finishing := false
			select {
			case <-m.finish:
				finishing = true
			default:
			}
			before := m.d.Stats().Invocations
			res.st, res.err = m.d.RunUntilCaughtUp(ctx)
			if res.err != nil {
				break
			}
			switch {
			case !finishing:
			case res.st.Invocations == before:
				idle++
			default:
				idle = 0
			}
		}
		res.ok = true
	}()
	r.t.Cleanup(func() {
		select {
		case <-m.finish:
		default:
			close(m.finish)
		}
		cancel()
		<-m.done
	})
	return m
}

// wait ends the mapping once it has caught up with everything produced so far.
func (m *mapping) wait(t *testing.T) esm.Stats {
	t.Helper()
	close(m.finish)
	res := <-m.done
	m.done <- res // for the cleanup
	if !res.ok {
		t.FailNow()
	}
	if res.err != nil {
		t.Fatalf("the event source mapping: %v; the last invocations:%s", res.err, describe(m.d.Invocations(), 30))
	}
	return res.st
}

// waitFor polls cond (external state, or the driver's records) until it holds or timeout
// passes; then it fails t, with the last invocations of d (when given).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, d *esm.Driver) {
	t.Helper()
	if !poll(timeout, 20*time.Millisecond, cond) {
		msg := ""
		if d != nil {
			msg = "; the last invocations:" + describe(d.Invocations(), 30)
		}
		t.Fatalf("timed out after %v waiting for %s%s", timeout, what, msg)
	}
}

// describe lists the last n invocations.
func describe(invs []esm.Invocation, n int) string {
	var b strings.Builder
	for _, inv := range invs[max(0, len(invs)-n):] {
		fmt.Fprintf(&b, "\n  %s %d records ..%s attempt %d %s %s %s %v failed at ..%s", inv.Shard, inv.Records, tailOf(inv.FirstSequence),
			inv.Attempt, inv.Shape, inv.Outcome, inv.Result.ErrorType, inv.Result.Duration.Round(time.Millisecond), tailOf(inv.FailedItem))
	}
	return b.String()
}

func tailOf(seq string) string { return seq[max(0, len(seq)-8):] }

// tally sums up the invocations of a mapping.
type tally struct {
	invocations, retries, bisections, timeouts, functionErrors, partialFailures, batchFailures, invokeErrors, discarded int
	maxAttempt                                                                                                          int
}

func tallyOf(st esm.Stats, invs []esm.Invocation) tally {
	n := tally{invocations: st.Invocations, retries: st.Retries, bisections: st.Bisections, invokeErrors: st.InvokeErrors, discarded: len(st.Discarded)}
	for _, inv := range invs {
		n.maxAttempt = max(n.maxAttempt, inv.Attempt)
		switch {
		case inv.Result.Timeout:
			n.timeouts++
			n.functionErrors++
		case inv.Outcome == esm.OutcomeFunctionError:
			n.functionErrors++
		case inv.Outcome == esm.OutcomePartialFailure:
			n.partialFailures++
		case inv.Outcome == esm.OutcomeBatchFailure:
			n.batchFailures++
		}
	}
	return n
}

func (n tally) String() string {
	return fmt.Sprintf("%d invocations (%d retries, at most attempt %d), %d bisections, %d timeouts, %d function errors, %d partial failures, %d whole-batch failures, %d invoke errors, %d batches discarded",
		n.invocations, n.retries, n.maxAttempt, n.bisections, n.timeouts, n.functionErrors, n.partialFailures, n.batchFailures, n.invokeErrors, n.discarded)
}

// rieLogs returns the logs of the rig's RIEs (the function's JSON log lines included).
func (r *lambdaRig) rieLogs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, rie := range r.ries {
		data, _ := os.ReadFile(rie.LogPath)
		b.Write(data)
	}
	return b.String()
}

// TestLambdaExactlyOnceUnderFaults runs serverless mode end to end — the bootstrap in the real
// Lambda RIE, one execution environment per shard, fed by the event source mapping driver with
// BisectBatchOnFunctionError, ReportBatchItemFailures and infinite retries — over a 2-shard
// stream, one of whose shards is split while records are produced (KPL aggregates from
// kinlog's producer, plain PutRecords, records near the 1 MiB limit, records that are not
// JSON). The function has AWS_LAMBDA_FUNCTION_TIMEOUT=3, and a batch of small records is 5
// or 6 chunks (KINLOG_SINK_S3_FLUSH_SIZE=2KiB). Then, while records keep coming:
//
//   - S3 is slowed (its fault proxy delays every answer by 100 ms and limits the bandwidth),
//     and invocations are killed by Lambda's timeout in the middle of a chunk's writes, past
//     the middle of their batch, after objects of the attempt landed: the test stops the
//     runtime process (SIGSTOP) then, and the RIE times it out and SIGKILLs it. (Slowing S3
//     cannot do it: the function gives up its writes 2 s before its deadline and answers; the
//     test checks that no invocation it did not stop timed out.) A timeout is a function
//     error: the mapping bisects the batch and retries the halves, whose chunks do not line
//     up with the killed attempt's;
//   - S3 answers 600 ms late: a batch no longer fits in the 1 s the function has, invocations
//     give up in the middle of batches (partial failures) and the mapping retries from the
//     reported record, with the same records or more (as the seed chooses);
//   - shardId-000000000000 is split; then S3 is healed.
//
// It proves that the progress protocol keeps the archive exactly-once through all that: DuckDB
// counts every produced record once, the error output holds exactly the records that are not
// JSON, and the rollups agree — for each seed — and nothing is left pending. The same scenario
// with the non-idempotent bootstrap (deterministic object names, no progress item) must leave
// duplicates or losses, which proves the scenario and the check can fail.
func TestLambdaExactlyOnceUnderFaults(t *testing.T) {
	t.Parallel()
	release, nonIdempotent, _ := lambdaBinaries(t)
	for _, tc := range []struct {
		name      string
		bootstrap string
		protocol  bool
		seed      uint64
	}{
		{"protocol/seed=1", release, true, 1},
		{"protocol/seed=7", release, true, 7},
		{"non-idempotent/seed=1", nonIdempotent, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			problems := faultScenario(t, tc.bootstrap, tc.protocol, tc.seed)
			switch {
			case tc.protocol && problems != "":
				t.Fatalf("the archive is not exactly-once: %s", problems)
			case !tc.protocol && problems == "":
				t.Fatal("the non-idempotent variant kept the archive exactly-once: the scenario does not exercise what the protocol prevents")
			case !tc.protocol:
				t.Logf("the non-idempotent variant, as expected: %s", problems)
			}
		})
	}
}

// faultScenario runs the scenario of TestLambdaExactlyOnceUnderFaults with a bootstrap and
// returns what the DuckDB check finds wrong with the archive.
func faultScenario(t *testing.T, bootstrap string, protocol bool, seed uint64) string {
	s3p := testenv.NewFaultProxy(t, testenv.S3)
	r := newLambdaRig(t, "lfault", 2, bootstrap, "AWS_LAMBDA_FUNCTION_TIMEOUT=3", "AWS_ENDPOINT_URL_S3="+s3p.URL,
		"KINLOG_SINK_S3_FLUSH_SIZE=2KiB") // a batch of 100 small records is 5 or 6 chunks
	r.protocol = protocol
	r.watching.watch = freezeAfterRollups(4) // killed in chunk 4 or 5, past the middle of the batch
	w := &lambdaWorkload{prefix: "f"}
	p := r.newProducer(t)
	m := r.startMapping(esm.Config{ReportBatchItemFailures: true, BisectBatchOnFunctionError: true, Seed: seed,
		PollInterval: 200 * time.Millisecond})
	produced := 0
	both := func(n, bigEvery int) {
		r.putPlain(t, w.records(n, 29, bigEvery))
		send(t, p, w.records(n, 29, bigEvery))
		produced += n
	}

	both(500, 250) // healthy, with records near 1 MiB: archived before S3 slows down, which they could not beat
	healthy := 500 + int(p.Stats().KinesisRecords)
	waitFor(t, 60*time.Second, "the first records archived", func() bool { return m.d.Stats().RecordsDelivered >= healthy }, m.d)
	s3p.Latency(100*time.Millisecond, 20*time.Millisecond)
	s3p.Bandwidth(1024)
	r.watching.arm(2)
	both(600, 0)
	waitFor(t, 60*time.Second, "an invocation frozen in the middle of its writes", func() bool { return len(r.watching.done()) > 0 }, m.d)
	r.watching.disarm()
	// S3 slower still: a batch's chunks no longer fit in the 1 s the function has, so that
	// invocations give up in the middle of batches and Lambda retries from there, with the
	// same records or more (as the seed chooses).
	s3p.Heal()
	s3p.Latency(600*time.Millisecond, 100*time.Millisecond)
	partial := tallyOf(m.d.Stats(), m.d.Invocations()).partialFailures
	both(300, 0)
	waitFor(t, 60*time.Second, "invocations that gave up in the middle of a batch", func() bool {
		return tallyOf(m.d.Stats(), m.d.Invocations()).partialFailures >= partial+4
	}, m.d)
	r.splitShard(t, "shardId-000000000000") // while S3 is slow and invocations fail
	both(300, 0)
	s3p.Heal()
	both(300, 150)
	pst := closeProducer(t, p, produced)
	st := m.wait(t)

	n := tallyOf(st, m.d.Invocations())
	t.Logf("%d records (%d through the producer in %d Kinesis records, %d resent after the split); %s",
		2*produced, produced, pst.KinesisRecords, pst.RecordsResent, n)
	r.checkDelivered(t, m.d.Invocations())
	// The frozen invocations were killed by the timeout, after writing objects.
	frozen := r.watching.done()
	uncommitted := 0 // frozen invocations that had written objects still pending
	for _, ev := range frozen {
		written, pending, _ := strings.Cut(strings.Join(ev.saw, " "), "pending:")
		t.Logf("frozen invocation on %s: %q; it had written %d objects; pending: %s", ev.shard, ev.result.ErrorMessage, len(strings.Fields(written)), pending)
		if !ev.result.Timeout || ev.err != nil {
			t.Errorf("the frozen invocation on %s was not killed by the timeout: %+v %v", ev.shard, ev.result, ev.err)
		}
		if len(strings.Fields(written)) == 0 {
			t.Errorf("the frozen invocation on %s had written nothing", ev.shard)
		}
		if slices.ContainsFunc(strings.Fields(pending), func(k string) bool { return slices.Contains(strings.Fields(written), k) }) {
			uncommitted++
		}
	}
	if protocol && uncommitted == 0 {
		t.Errorf("no frozen invocation had uncommitted objects in the bucket: it was never killed in the middle of a chunk's writes")
	}
	if n.timeouts != len(frozen) {
		t.Errorf("%d invocations timed out, %d of them frozen by the test: the function overran its deadline", n.timeouts, len(frozen))
	}
	if n.bisections == 0 || n.partialFailures == 0 || n.retries == 0 {
		t.Errorf("the run does not exercise what it should: %s", n)
	}
	if protocol {
		if !strings.Contains(r.rieLogs(), "replaced the uncommitted objects of an earlier attempt") {
			t.Error("no invocation replaced the uncommitted objects of a killed one")
		}
		r.checkNothingPending(t)
	}
	t.Logf("failed steps: %v", r.failedSteps())
	good, bad := w.ids()
	return lambdaArchiveProblems(t, r.sc, r.bucket, good, bad)
}

// failedSteps counts the steps at which invocations gave up (the function's "batch not
// archived past ..." log lines), by step.
func (r *lambdaRig) failedSteps() map[string]int {
	steps := map[string]int{}
	for _, line := range strings.Split(r.rieLogs(), "\n") {
		var l struct{ Msg, Step string }
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "batch not archived past") {
			steps[l.Step]++
		}
	}
	return steps
}

// checkDelivered fails t unless the mapping delivered every shard to its last record: an
// invocation that succeeded ends there. (Records the function lost are the DuckDB check's to
// find; this tells them from records the function never got.)
func (r *lambdaRig) checkDelivered(t *testing.T, invs []esm.Invocation) {
	t.Helper()
	shards, err := testenv.ListAllShards(t.Context(), r.kc, r.stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		recs := r.readShard(t, *s.ShardId)
		if len(recs) == 0 {
			continue
		}
		last := *recs[len(recs)-1].SequenceNumber
		invoked := 0
		if !slices.ContainsFunc(invs, func(inv esm.Invocation) bool {
			if inv.Shard == *s.ShardId {
				invoked++
			}
			return inv.Shard == *s.ShardId && inv.Outcome == esm.OutcomeSuccess && inv.LastSequence == last
		}) {
			t.Errorf("the mapping did not deliver %s (%d Kinesis records, parent %s) to its end: %d invocations of it", *s.ShardId, len(recs), aws.ToString(s.ParentShardId), invoked)
		}
	}
}

// checkNothingPending fails t if a shard's progress item still lists pending objects.
func (r *lambdaRig) checkNothingPending(t *testing.T) {
	t.Helper()
	shards, err := testenv.ListAllShards(t.Context(), r.kc, r.stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		committed, pending, err := r.progress(t.Context(), *s.ShardId)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) > 0 {
			t.Errorf("%s: progress committed through %s still lists %d pending objects", *s.ShardId, committed, len(pending))
		}
	}
}

// TestLambdaDynamoDBUnavailable: the progress table (DynamoDB, through a fault proxy that
// refuses connections) is down for a few seconds while batches arrive. It proves that the
// function answers the invocations it cannot place with partial batch failures (no function
// error, no batch discarded: it never reads the progress, so it writes nothing), that the
// mapping retries them, and that once DynamoDB is back the archive is exactly-once, with
// nothing left pending.
func TestLambdaDynamoDBUnavailable(t *testing.T) {
	t.Parallel()
	release, _, _ := lambdaBinaries(t)
	ddbp := testenv.NewFaultProxy(t, testenv.DynamoDB)
	r := newLambdaRig(t, "lddb", 2, release, "AWS_LAMBDA_FUNCTION_TIMEOUT=6", "AWS_ENDPOINT_URL_DYNAMODB="+ddbp.URL,
		"KINLOG_SINK_S3_FLUSH_SIZE=16KiB")
	r.protocol = true
	w := &lambdaWorkload{prefix: "d"}
	p := r.newProducer(t)
	m := r.startMapping(esm.Config{ReportBatchItemFailures: true, BisectBatchOnFunctionError: true, PollInterval: 200 * time.Millisecond})
	produced := 0
	both := func(n, bigEvery int) {
		r.putPlain(t, w.records(n, 31, bigEvery))
		send(t, p, w.records(n, 31, bigEvery))
		produced += n
	}
	both(300, 200)
	waitFor(t, 30*time.Second, "the first batches archived", func() bool { return m.d.Stats().RecordsDelivered > 100 }, m.d)

	ddbp.Down()
	down := time.Now()
	failedBefore := tallyOf(m.d.Stats(), m.d.Invocations()).partialFailures
	both(400, 0)
	// The outage lasts a few seconds, and until the function has reported several failures.
	waitFor(t, 30*time.Second, "failed invocations while DynamoDB is down", func() bool {
		return time.Since(down) > 4*time.Second && tallyOf(m.d.Stats(), m.d.Invocations()).partialFailures >= failedBefore+3
	}, m.d)
	ddbp.Up()
	outage := time.Since(down)
	both(300, 100)
	closeProducer(t, p, produced)
	st := m.wait(t)

	n := tallyOf(st, m.d.Invocations())
	steps := r.failedSteps()
	t.Logf("DynamoDB down for %v; %d records; %s; failed steps %v", outage.Round(time.Millisecond), 2*produced, n, steps)
	if n.partialFailures == 0 || n.retries == 0 || steps["reading progress"] == 0 {
		t.Errorf("the outage did not show as failed invocations reading the progress table: %s, steps %v", n, steps)
	}
	if n.functionErrors > 0 || n.discarded > 0 {
		t.Errorf("a DynamoDB outage must be answered with partial failures only: %s", n)
	}
	r.checkDelivered(t, m.d.Invocations())
	r.checkNothingPending(t)
	good, bad := w.ids()
	if problems := lambdaArchiveProblems(t, r.sc, r.bucket, good, bad); problems != "" {
		t.Fatalf("after the outage: %s", problems)
	}
}

// stopS3AfterFirstChunk is the watcher that takes S3 down in the middle of an invocation:
// once the invocation's first chunk is committed (the shard's progress item moves), which
// means its objects are in the bucket, it hands the test the shard on stopS3 and waits for
// the test to take S3 down (it closes the channel it receives).
func stopS3AfterFirstChunk(stopS3 chan<- chan struct{}) watcher {
	return func(ctx context.Context, s *shardInvoker, stop <-chan struct{}) (bool, []string) {
		start, _, err := s.r.progress(ctx, s.shard)
		if err != nil {
			return false, nil
		}
		for {
			select {
			case <-stop:
				return false, nil
			case <-time.After(5 * time.Millisecond): // the progress item's polling interval
			}
			committed, _, err := s.r.progress(ctx, s.shard)
			if err != nil || committed == start {
				continue
			}
			keys, _ := bucketKeys(ctx, s.r.sc, s.r.bucket)
			done := make(chan struct{})
			stopS3 <- done
			<-done
			return true, []string{committed, strconv.Itoa(len(keys))}
		}
	}
}

// TestLambdaS3FailsOnSecondObject: a batch is several chunks (KINLOG_SINK_S3_FLUSH_SIZE=2KiB),
// and S3 stops (its proxy refuses connections) once the first chunk of a batch is in the
// bucket and committed, with the next chunk's writes under way (S3 answers 150 ms late); it
// comes back once the invocation gave up, 2 s after it started (AWS_LAMBDA_FUNCTION_TIMEOUT=4
// less the function's 2 s reserve). It proves that the function reports exactly the first
// record not committed — a partial batch failure in the middle of the batch, not at its start
// — that the mapping retries from that record, and that the retries complete the archive,
// exactly once, with nothing left pending.
func TestLambdaS3FailsOnSecondObject(t *testing.T) {
	t.Parallel()
	release, _, _ := lambdaBinaries(t)
	s3p := testenv.NewFaultProxy(t, testenv.S3)
	r := newLambdaRig(t, "ls3", 1, release, "AWS_LAMBDA_FUNCTION_TIMEOUT=4", "AWS_ENDPOINT_URL_S3="+s3p.URL,
		"KINLOG_SINK_S3_FLUSH_SIZE=2KiB")
	r.protocol = true
	stopS3 := make(chan chan struct{})
	r.watching.watch = stopS3AfterFirstChunk(stopS3)
	w := &lambdaWorkload{prefix: "s"}
	r.putPlain(t, w.records(150, 23, 0))
	p := r.newProducer(t)
	send(t, p, w.records(150, 23, 0))
	closeProducer(t, p, 150)
	s3p.Latency(150*time.Millisecond, 0) // the next chunk's writes are still under way when S3 stops
	r.watching.arm(1)
	m := r.startMapping(esm.Config{ReportBatchItemFailures: true, BisectBatchOnFunctionError: true, PollInterval: 200 * time.Millisecond})

	var done chan struct{}
	select {
	case done = <-stopS3:
	case <-time.After(60 * time.Second):
		t.Fatalf("no invocation committed a chunk:%s", describe(m.d.Invocations(), 20))
	}
	s3p.Down()
	close(done)
	waitFor(t, 30*time.Second, "the invocation to give up", func() bool { return len(r.watching.done()) > 0 }, m.d)
	ev := r.watching.done()[0]
	s3p.Up()
	s3p.Heal()
	st := m.wait(t)

	invs := m.d.Invocations()
	n := tallyOf(st, invs)
	committed := ev.saw[0]
	t.Logf("%s; S3 stopped once ..%s was committed, with %s objects in the bucket; the invocation answered %s", n, tailOf(committed), ev.saw[1], ev.result.Body)
	var resp lambda.Response
	if err := json.Unmarshal(ev.result.Body, &resp); err != nil || ev.result.FunctionError || len(resp.BatchItemFailures) != 1 {
		t.Fatalf("the invocation S3 stopped under did not answer with a partial batch failure: %+v %v", ev.result, err)
	}
	var failed *esm.Invocation
	for i := range invs {
		if invs[i].Outcome == esm.OutcomePartialFailure && invs[i].FailedItem == resp.BatchItemFailures[0].ItemIdentifier {
			failed = &invs[i]
			break
		}
	}
	if failed == nil {
		t.Fatalf("the invocations log has no partial failure at %s:%s", resp.BatchItemFailures[0].ItemIdentifier, describe(invs, 20))
	}
	if failed.FailedItem == failed.FirstSequence || checkpointCompare(failed.FailedItem, committed) <= 0 {
		t.Errorf("the partial failure reports %s, first %s: want the record after the committed chunk (through %s)", failed.FailedItem, failed.FirstSequence, committed)
	}
	if i := slices.IndexFunc(invs, func(inv esm.Invocation) bool { return inv.Attempt > failed.Attempt }); i < 0 || invs[i].FirstSequence != failed.FailedItem {
		t.Errorf("the retry does not start at the reported record %s:%s", failed.FailedItem, describe(invs, 20))
	}
	r.checkDelivered(t, invs)
	r.checkNothingPending(t)
	good, bad := w.ids()
	if problems := lambdaArchiveProblems(t, r.sc, r.bucket, good, bad); problems != "" {
		t.Fatalf("after S3 came back: %s", problems)
	}
}

// checkpointCompare compares two sequence numbers (decimal strings of up to 128 bits).
func checkpointCompare(a, b string) int {
	x, _ := new(big.Int).SetString(a, 10)
	y, _ := new(big.Int).SetString(b, 10)
	if x == nil || y == nil {
		return strings.Compare(a, b)
	}
	return x.Cmp(y)
}

// readShard returns the Kinesis records of a shard, as stored (aggregates not deaggregated).
func (r *lambdaRig) readShard(t *testing.T, shard string) []ktypes.Record {
	t.Helper()
	return testenv.ReadShard(t, r.kc, r.stream, shard)
}

// kinesisEvent is the invocation payload an event source mapping sends for recs of one
// shard (https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html); shardOf gives each
// record's shard in its eventID.
func (r *lambdaRig) kinesisEvent(recs []ktypes.Record, shardOf func(i int) string) []byte {
	type kin struct {
		SchemaVersion string      `json:"kinesisSchemaVersion"`
		PartitionKey  string      `json:"partitionKey"`
		Sequence      string      `json:"sequenceNumber"`
		Data          []byte      `json:"data"`
		Arrival       json.Number `json:"approximateArrivalTimestamp"`
	}
	type rec struct {
		Kinesis           kin    `json:"kinesis"`
		EventSource       string `json:"eventSource"`
		EventVersion      string `json:"eventVersion"`
		EventID           string `json:"eventID"`
		EventName         string `json:"eventName"`
		InvokeIdentityArn string `json:"invokeIdentityArn"`
		AWSRegion         string `json:"awsRegion"`
		EventSourceARN    string `json:"eventSourceARN"`
	}
	var ev struct {
		Records []rec `json:"Records"`
	}
	for i, k := range recs {
		ms := aws.ToTime(k.ApproximateArrivalTimestamp).UnixMilli()
		ev.Records = append(ev.Records, rec{
			Kinesis: kin{SchemaVersion: "1.0", PartitionKey: *k.PartitionKey, Sequence: *k.SequenceNumber, Data: k.Data,
				Arrival: json.Number(fmt.Sprintf("%d.%03d", ms/1000, ms%1000))},
			EventSource: "aws:kinesis", EventVersion: "1.0", EventID: shardOf(i) + ":" + *k.SequenceNumber,
			EventName: "aws:kinesis:record", InvokeIdentityArn: "arn:aws:iam::000000000000:role/lambda-role",
			AWSRegion: "us-east-1", EventSourceARN: "arn:aws:kinesis:us-east-1:000000000000:stream/" + r.stream,
		})
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// TestLambdaMalformedEvent invokes the function in the RIE with payloads that are no Kinesis
// event it can place — not JSON, records of two shards, data that is not base64. It proves
// that each is a function error (so that Lambda retries or bisects it, and never
// checkpoints past it) whose message is the function's own: the text of the error
// lambda.Function.Handle returns for the payload, which wraps lambda.ErrMalformedEvent and
// says what is wrong; and that nothing is written for them: no object, no progress item.
// The same RIE then archives a well-formed event, so that "nothing written" is not a
// function unable to write.
func TestLambdaMalformedEvent(t *testing.T) {
	t.Parallel()
	release, _, _ := lambdaBinaries(t)
	r := newLambdaRig(t, "lbad", 1, release)
	w := &lambdaWorkload{prefix: "m"}
	r.putPlain(t, w.records(4, 0, 0))
	const shard = "shardId-000000000000"
	recs := r.readShard(t, shard)
	if len(recs) != 4 {
		t.Fatalf("read %d records, want 4", len(recs))
	}
	inShard := func(int) string { return shard }
	good := r.kinesisEvent(recs, inShard)
	rie := esm.StartRIE(t, r.bootstrap, r.env)
	// The library's function, in process, says what the bootstrap must answer.
	fn, err := lambda.New(func(stream string) (*s3sink.Sink, error) { return s3sink.New(r.sc, r.bucket, stream) },
		r.sc, r.kc, r.ddb, r.table, lambda.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, payload, says string
	}{
		{"not JSON", string(good[:len(good)/2]), ""}, // Handle's error has the JSON parser's message
		{"two shards", string(r.kinesisEvent(recs, func(i int) string { return fmt.Sprintf("shardId-%012d", i%2) })), "a batch holds one shard"},
		{"data not base64", strings.Replace(string(good), `"data":"`, `"data":"%%%`, 1), "kinesis.data is not base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, want := fn.Handle(ctx, []byte(tc.payload))
			if !errors.Is(want, lambda.ErrMalformedEvent) || !strings.Contains(want.Error(), tc.says) {
				t.Fatalf("lambda.Function.Handle: %v, want lambda.ErrMalformedEvent saying %q", want, tc.says)
			}
			res, err := rie.Invoke(ctx, []byte(tc.payload))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s %q", tc.name, res.ErrorType, res.ErrorMessage)
			if !res.FunctionError || res.Timeout || res.ErrorMessage != want.Error() {
				t.Fatalf("the RIE answered status %d, function error %v, %s %q (body %s): want a function error with the message %q",
					res.StatusCode, res.FunctionError, res.ErrorType, res.ErrorMessage, res.Body, want)
			}
		})
	}
	if keys := listKeys(t, r.sc, r.bucket); len(keys) != 0 {
		t.Errorf("malformed events wrote %d objects: %v", len(keys), keys)
	}
	items, err := r.ddb.Scan(t.Context(), &dynamodb.ScanInput{TableName: &r.table, ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if len(items.Items) != 0 {
		t.Errorf("malformed events wrote %d progress items: %v", len(items.Items), items.Items)
	}
	res, err := rie.Invoke(t.Context(), good)
	if err != nil || res.FunctionError || string(res.Body) != `{"batchItemFailures":null}` {
		t.Fatalf("the well-formed event: %+v %v", res, err)
	}
	goodIDs, _ := w.ids()
	if problems := lambdaArchiveProblems(t, r.sc, r.bucket, goodIDs, nil); problems != "" {
		t.Fatalf("the well-formed event after the malformed ones: %s", problems)
	}
}

// replayLine is one line of `kinlog replay`'s report: "<stream> <shard> <start>..<end>: N
// records, A already archived, R archived now".
var replayLine = regexp.MustCompile(`^(\S+) (\S+) (\d+)\.\.(\d+): (\d+) records, (\d+) already archived, (\d+) archived now$`)

// runReplay runs the built `kinlog replay --from s3://<on-failure bucket>/` against the
// rig's archive and returns the totals of its report.
func (r *lambdaRig) runReplay(t *testing.T, kinlog string) (batches, records, archived, rearchived int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kinlog, "replay", "--from", "s3://"+r.failBucket+"/",
		"--set", "sink.s3.bucket="+r.bucket, "--set", "sink.s3.path_style=true",
		"--set", "sink.s3.prefix="+lambdaPrefix, "--set", "progress.table="+r.table)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, r.awsEnv()...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kinlog replay: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		m := replayLine.FindStringSubmatch(line)
		if m == nil || m[1] != r.stream {
			t.Fatalf("kinlog replay printed %q", line)
		}
		n, _ := strconv.Atoi(m[5])
		a, _ := strconv.Atoi(m[6])
		re, _ := strconv.Atoi(m[7])
		batches, records, archived, rearchived = batches+1, records+n, archived+a, rearchived+re
	}
	return batches, records, archived, rearchived
}

// listing is the bucket's objects with their ETags and modification times.
func listing(t *testing.T, sc *s3.Client, bucket string) map[string]string {
	t.Helper()
	out := map[string]string{}
	pg := s3.NewListObjectsV2Paginator(sc, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToString(o.ETag) + " " + aws.ToTime(o.LastModified).Format(time.RFC3339Nano)
		}
	}
	return out
}

// TestLambdaDiscardAndReplay: with MaximumRetryAttempts 1 and an S3 on-failure destination,
// DynamoDB (through a fault proxy) is down long enough that batches run out of retries and
// are discarded; the mapping goes on past them once it is back. It proves that the DuckDB
// check then finds records missing (a discarded batch is lost to the archive, as Lambda
// says), that `kinlog replay --from s3://<on-failure bucket>/` re-archives exactly the
// missing records (the check passes: nothing missing, nothing twice), and that a second
// replay finds everything archived and writes no object.
func TestLambdaDiscardAndReplay(t *testing.T) {
	t.Parallel()
	release, _, kinlog := lambdaBinaries(t)
	ddbp := testenv.NewFaultProxy(t, testenv.DynamoDB)
	r := newLambdaRig(t, "lreplay", 2, release, "AWS_LAMBDA_FUNCTION_TIMEOUT=5", "AWS_ENDPOINT_URL_DYNAMODB="+ddbp.URL,
		"KINLOG_SINK_S3_FLUSH_SIZE=16KiB")
	r.protocol = true
	w := &lambdaWorkload{prefix: "p"}
	p := r.newProducer(t)
	m := r.startMapping(esm.Config{ReportBatchItemFailures: true, BisectBatchOnFunctionError: true, MaximumRetryAttempts: aws.Int(1),
		OnFailure: &esm.S3Destination{Client: r.sc, Bucket: r.failBucket}, PollInterval: 200 * time.Millisecond})
	produced := 0
	both := func(n, bigEvery int) {
		r.putPlain(t, w.records(n, 31, bigEvery))
		send(t, p, w.records(n, 31, bigEvery))
		produced += n
	}
	both(300, 150)
	waitFor(t, 30*time.Second, "the first batches archived", func() bool { return m.d.Stats().RecordsDelivered > 100 }, m.d)
	ddbp.Down()
	both(400, 0)
	waitFor(t, 30*time.Second, "batches discarded on both shards", func() bool {
		shards := map[string]bool{}
		for _, d := range m.d.Stats().Discarded {
			shards[d.Shard] = true
		}
		return len(shards) == 2
	}, m.d)
	ddbp.Up()
	both(300, 100)
	closeProducer(t, p, produced)
	st := m.wait(t)

	n := tallyOf(st, m.d.Invocations())
	lost := 0
	for _, d := range st.Discarded {
		lost += d.Records
		if d.Key == "" || d.Condition != esm.ConditionRetriesExhausted {
			t.Errorf("discarded batch %+v: want an on-failure record after its retries ran out", d)
		}
	}
	t.Logf("%d records; %s: %d Kinesis records discarded; failed steps %v", 2*produced, n, lost, r.failedSteps())
	good, bad := w.ids()
	problems := lambdaArchiveProblems(t, r.sc, r.bucket, good, bad)
	t.Logf("before the replay: %s", problems)
	if !strings.Contains(problems, "missing") {
		t.Fatalf("with %d batches discarded the check finds no record missing: %q", n.discarded, problems)
	}

	batches, records, archived, rearchived := r.runReplay(t, kinlog)
	t.Logf("kinlog replay: %d batches, %d records: %d already archived, %d archived now", batches, records, archived, rearchived)
	if batches != len(st.Discarded) || rearchived == 0 || archived+rearchived != records {
		t.Errorf("kinlog replay of %d discarded batches: %d batches, %d records, %d already archived, %d archived now", len(st.Discarded), batches, records, archived, rearchived)
	}
	if problems := lambdaArchiveProblems(t, r.sc, r.bucket, good, bad); problems != "" {
		t.Fatalf("after kinlog replay: %s", problems)
	}
	r.checkNothingPending(t)

	before := listing(t, r.sc, r.bucket)
	batches, records, archived, rearchived = r.runReplay(t, kinlog)
	t.Logf("kinlog replay again: %d batches, %d records: %d already archived, %d archived now", batches, records, archived, rearchived)
	if rearchived != 0 || archived != records || batches != len(st.Discarded) {
		t.Errorf("the second kinlog replay: %d batches, %d records, %d already archived, %d archived now: want everything already archived", batches, records, archived, rearchived)
	}
	if after := listing(t, r.sc, r.bucket); !maps.Equal(before, after) {
		t.Errorf("the second kinlog replay changed the bucket: %d objects, were %d", len(after), len(before))
	}
}

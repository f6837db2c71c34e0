package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/checkpoint"
	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
	"github.com/kinlog/kinlog/sinks/dedup"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// Helpers of the deduplication proofs (dedup_test.go): consumer applications of worker
// processes (TestSinkPipelineWorker), a producing process with a spool, a reading of the
// stream that keeps every copy of every record with its shard and identity, and the
// DuckDB check of the archive.

// dedupLine is record i: a JSON line with a unique id, partitioned by the pipeline's prefix
// (service) and rolled up (latency_ms) by the worker's sink.
func dedupLine(i int) []byte {
	return fmt.Appendf(nil, `{"time":%q,"level":%q,"service":"svc-%d","msg":"request %d","id":%d,"latency_ms":%d}`,
		time.Now().UTC().Format(time.RFC3339Nano), []string{"INFO", "WARN", "ERROR"}[i%3], i%5, i, i, i%1000)
}

func dedupKey(i int) string { return "pk-" + strconv.Itoa(i%257) }

// dedupID reads the id member of a record made by dedupLine.
func dedupID(data []byte) (int, bool) {
	// The fast way for the lines dedupLine makes; JSON for anything else.
	if i := bytes.Index(data, []byte(`,"id":`)); i >= 0 {
		rest := data[i+len(`,"id":`):]
		if j := bytes.IndexByte(rest, ','); j > 0 {
			if id, err := strconv.Atoi(string(rest[:j])); err == nil {
				return id, true
			}
		}
	}
	var m struct {
		ID *int `json:"id"`
	}
	if json.Unmarshal(data, &m) != nil || m.ID == nil {
		return 0, false
	}
	return *m.ID, true
}

// dedupWorkerOption is the deduplication option of TestSinkPipelineWorker: off when
// KINLOG_PIPELINE_DEDUP=off, else on with the default limits (the sink's default), or with
// dedup.Limits.MaxIntervals from KINLOG_PIPELINE_DEDUP_MAX_INTERVALS when set (for
// experiments; no test sets it).
func dedupWorkerOption() s3sink.Option {
	if os.Getenv(envDedup) == "off" {
		return s3sink.WithoutDedup()
	}
	return s3sink.WithDedupLimits(dedup.Limits{MaxIntervals: dedupEnv("KINLOG_PIPELINE_DEDUP_MAX_INTERVALS", 0)})
}

// dedupMetrics are the counts a worker reports when it stops gracefully.
type dedupMetrics struct {
	Archived, Deduplicated                           int64
	EvictedIntervals, EvictedOrigins, EvictedHorizon int64
	// StateBytesBound bounds the largest encoded state stored with a checkpoint: the upper
	// bound of the highest kinlog_sink_dedup_state_bytes bucket with an observation.
	StateBytesBound float64
}

func (m *dedupMetrics) add(o dedupMetrics) {
	m.Archived += o.Archived
	m.Deduplicated += o.Deduplicated
	m.EvictedIntervals += o.EvictedIntervals
	m.EvictedOrigins += o.EvictedOrigins
	m.EvictedHorizon += o.EvictedHorizon
	m.StateBytesBound = max(m.StateBytesBound, o.StateBytesBound)
}

func (m dedupMetrics) String() string {
	bound := fmt.Sprintf("<= %.0f bytes", m.StateBytesBound)
	if m.StateBytesBound == math.MaxFloat64 {
		bound = "above the highest bucket"
	}
	return fmt.Sprintf("kinlog_sink_records_archived_total %d, kinlog_sink_records_deduplicated_total %d, kinlog_sink_dedup_evictions_total intervals %d, origins %d, horizon %d; largest state %s",
		m.Archived, m.Deduplicated, m.EvictedIntervals, m.EvictedOrigins, m.EvictedHorizon, bound)
}

// dedupWorkerMetrics reads a worker sink's counters from reg, as one JSON object.
func dedupWorkerMetrics(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var m dedupMetrics
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			v := int64(s.GetCounter().GetValue())
			switch mf.GetName() {
			case "kinlog_sink_dedup_state_bytes":
				h := s.GetHistogram()
				bound := math.MaxFloat64 // above the highest bucket (JSON has no infinity)
				for _, b := range h.GetBucket() {
					if b.GetCumulativeCount() == h.GetSampleCount() {
						bound = b.GetUpperBound()
						break
					}
				}
				if h.GetSampleCount() > 0 {
					m.StateBytesBound = max(m.StateBytesBound, bound)
				}
			case "kinlog_sink_records_archived_total":
				m.Archived += v
			case "kinlog_sink_records_deduplicated_total":
				m.Deduplicated += v
			case "kinlog_sink_dedup_evictions_total":
				for _, l := range s.GetLabel() {
					switch l.GetValue() {
					case "intervals":
						m.EvictedIntervals += v
					case "origins":
						m.EvictedOrigins += v
					case "horizon":
						m.EvictedHorizon += v
					}
				}
			}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dedupProduceAt puts records from..to-1 at rate records per second (an app's pace, not a
// synchronisation) and returns how many Put calls failed.
func dedupProduceAt(ctx context.Context, p *producer.Producer, from, to, rate int) (failed int, last error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := max(rate/100, 1)
	for i := from; i < to; {
		for j := 0; j < per && i < to; j, i = j+1, i+1 {
			if err := p.Put(ctx, producer.Record{PartitionKey: dedupKey(i), Data: dedupLine(i)}); err != nil {
				failed++
				last = err
			}
		}
		<-tick.C
	}
	return failed, last
}

// --- consumer applications ---

// dedupApp is one consumer application: worker processes sharing a lease table, archiving
// the stream into one bucket.
type dedupApp struct {
	t                     *testing.T
	name                  string
	stream, table, bucket string
	dedup                 bool
	sc                    *s3.Client
	store                 *ddbstore.Store
	live                  []*dedupWorker
	all                   []*dedupWorker // every worker started, for the logs
	started               int
}

type dedupWorker struct {
	id   string
	cmd  *exec.Cmd
	logs string
	done chan struct{} // closed when the process exited
	err  error         // its Wait error, once done
}

// newDedupApp creates the bucket (versioned if asked) and names the lease table of a new
// application on stream; everything is deleted when the test ends.
// dedupStack is what every deduplication proof runs on: the stack's clients, DuckDB, a fault
// proxy in front of kinesalite and a new stream of the given shards.
func dedupStack(t *testing.T, name string, shards int32) (kc *kinesis.Client, sc *s3.Client, duck testenv.DuckDBQuery, fp *testenv.FaultProxy, stream string) {
	t.Helper()
	kc = testenv.KinesisClient(t)
	testenv.Require(t, testenv.DynamoDB)
	sc = testenv.S3Client(t)
	duck = testenv.DuckDB(t)
	fp = testenv.NewFaultProxy(t, testenv.Kinesis)
	stream = testenv.Name(t, name)
	testenv.CreateStream(t, kc, stream, shards)
	return kc, sc, duck, fp, stream
}

func newDedupApp(t *testing.T, sc *s3.Client, stream, name string, dedup, versioned bool) *dedupApp {
	t.Helper()
	a := &dedupApp{t: t, name: name, stream: stream, dedup: dedup, sc: sc,
		table: testenv.Name(t, "dedup-"+name+"-leases"), bucket: testenv.Name(t, "dedup-"+name)}
	ddb := testenv.DynamoDBClient(t)
	store, err := ddbstore.New(ddb, a.table)
	if err != nil {
		t.Fatal(err)
	}
	a.store = store
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(a.bucket)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dedupDeleteBucket(t, sc, a.bucket) })
	t.Cleanup(func() {
		_, _ = ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(a.table)})
	})
	if versioned {
		dedupEnableVersioning(t, sc, a.bucket)
	}
	t.Cleanup(a.killAll)
	return a
}

// start starts n more workers.
func (a *dedupApp) start(n int) {
	a.t.Helper()
	for range n {
		a.live = append(a.live, a.spawn())
	}
}

func (a *dedupApp) spawn() *dedupWorker {
	a.t.Helper()
	id := fmt.Sprintf("%s-w%d", a.name, a.started)
	a.started++
	logs, err := os.CreateTemp(a.t.TempDir(), id+"-*.log")
	if err != nil {
		a.t.Fatal(err)
	}
	defer logs.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSinkPipelineWorker$", "-test.v", "-test.count=1")
	dedup := "on"
	if !a.dedup {
		dedup = "off"
	}
	cmd.Env = append(os.Environ(), envWorker+"="+id, envStream+"="+a.stream, envTable+"="+a.table,
		envBucket+"="+a.bucket, envDedup+"="+dedup)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	w := &dedupWorker{id: id, cmd: cmd, logs: logs.Name(), done: make(chan struct{})}
	go func() { w.err = cmd.Wait(); close(w.done) }()
	a.all = append(a.all, w)
	return w
}

// kill SIGKILLs live worker i and starts a new one in its place.
func (a *dedupApp) kill(i int) {
	a.t.Helper()
	w := a.live[i]
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
	a.live[i] = a.spawn()
}

// killMidFlush SIGKILLs live worker i while one of its shards has a flush prepared — a
// pending boundary in the lease table: the flush's objects are being written and its
// checkpoint is not — and starts a new worker in its place, which re-cuts and rewrites that
// flush. When no pending boundary shows within timeout it kills the worker anyway; it
// reports whether one showed.
func (a *dedupApp) killMidFlush(i int, timeout time.Duration) bool {
	a.t.Helper()
	w := a.live[i]
	seen := poll(timeout, 5*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		leases, err := a.store.ListLeases(ctx)
		if err != nil {
			return false
		}
		for _, l := range leases {
			if l.Owner == w.id && l.Pending != nil {
				return true
			}
		}
		return false
	})
	a.kill(i)
	return seen
}

func (a *dedupApp) killAll() {
	for _, w := range a.all {
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

// stop stops the live workers gracefully and returns the sums of the counts they report
// (those of workers SIGKILLed before are lost with them).
func (a *dedupApp) stop() dedupMetrics {
	a.t.Helper()
	for _, w := range a.live {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	var sum dedupMetrics
	for _, w := range a.live {
		select {
		case <-w.done:
		case <-time.After(time.Minute):
			a.t.Fatalf("worker %s did not stop within a minute of SIGTERM", w.id)
		}
		if w.err != nil {
			a.t.Errorf("worker %s exited with %v after SIGTERM; log:\n%s", w.id, w.err, dedupTail(w.logs))
		}
		data, _ := os.ReadFile(w.logs)
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, workerMetricsLine+" "); ok {
				var m dedupMetrics
				if err := json.Unmarshal([]byte(rest), &m); err != nil {
					a.t.Errorf("worker %s: metrics line %q: %v", w.id, line, err)
				}
				sum.add(m)
			}
		}
	}
	a.live = nil
	return sum
}

// logCount counts the lines of every worker's log that hold s.
func (a *dedupApp) logCount(s string) int {
	n := 0
	for _, w := range a.all {
		data, _ := os.ReadFile(w.logs)
		n += bytes.Count(data, []byte(s))
	}
	return n
}

func (a *dedupApp) tails() string {
	var b strings.Builder
	for _, w := range a.all {
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", w.id, w.logs, dedupTail(w.logs))
	}
	return b.String()
}

func dedupTail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}

// waitCaughtUp polls the lease table until every shard's checkpoint is at or past the last
// record of the shard the workers process (closed shards at SHARD_END), and fails the test
// after timeout.
func (a *dedupApp) waitCaughtUp(s *dedupStream, timeout time.Duration) {
	a.t.Helper()
	var behind []string
	ok := poll(timeout, 500*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		leases, err := a.store.ListLeases(ctx)
		if err != nil {
			behind = []string{err.Error()}
			return false
		}
		cps := map[string]checkpoint.Checkpoint{}
		for _, l := range leases {
			cps[l.Key] = l.Checkpoint
		}
		behind = behind[:0]
		for _, sh := range s.shards {
			id := aws.ToString(sh.ShardId)
			cp, have := cps[id]
			closed := sh.SequenceNumberRange.EndingSequenceNumber != nil
			last, any := s.last[id]
			switch {
			case have && cp.Sequence == checkpoint.ShardEnd:
			case closed:
				behind = append(behind, fmt.Sprintf("%s at %v, closed (want SHARD_END)", id, cp))
			case !any:
			case !have || cp.Compare(last) < 0:
				behind = append(behind, fmt.Sprintf("%s at %v, last record %v", id, cp, last))
			}
		}
		return len(behind) == 0
	})
	if !ok {
		a.t.Fatalf("%s: the workers did not catch up within %v: %s; worker logs:\n%s", a.name, timeout, strings.Join(behind, "; "), a.tails())
	}
}

// --- the stream ---

// dedupCopy is one copy of a record in the stream, as a consumer reads it.
type dedupCopy struct {
	shard string
	pos   checkpoint.Checkpoint
	id    kpl.Identity
}

// dedupStream is what a KCL consumer reads from the stream: every user record of every
// shard, indexed by record id — except those of aggregates with a user record outside their
// shard's hash-key range, which the KCL and the worker drop whole.
type dedupStream struct {
	shards         []ktypes.Shard
	copies         map[int][]dedupCopy
	last           map[string]checkpoint.Checkpoint // last user record per shard
	kinesisRecords int
	userRecords    int
	outside        int // user records of aggregates dropped for lying outside their shard
	noIdentity     int // user records without a kinlog identity
}

func readDedupStream(t *testing.T, kc *kinesis.Client, stream string) *dedupStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shards, err := testenv.ListAllShards(ctx, kc, stream)
	if err != nil {
		t.Fatal(err)
	}
	s := &dedupStream{shards: shards, copies: map[int][]dedupCopy{}, last: map[string]checkpoint.Checkpoint{}}
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		rng, err := kpl.ParseHashKeyRange(*sh.HashKeyRange.StartingHashKey, *sh.HashKeyRange.EndingHashKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range testenv.ReadShard(t, kc, stream, id) {
			s.kinesisRecords++
			recs, ok := kpl.Decode(r.Data)
			if !ok {
				recs = []kpl.Record{{PartitionKey: aws.ToString(r.PartitionKey), Data: r.Data}}
			} else if !kpl.AllInRange(recs, rng) {
				s.outside += len(recs)
				continue
			}
			for j, ur := range recs {
				rid, ok := dedupID(ur.Data)
				if !ok {
					t.Fatalf("shard %s: unexpected record %q", id, ur.Data)
				}
				pos := checkpoint.Checkpoint{Sequence: aws.ToString(r.SequenceNumber), SubSequence: uint64(j)}
				s.copies[rid] = append(s.copies[rid], dedupCopy{shard: id, pos: pos, id: ur.ID})
				s.last[id] = pos
				s.userRecords++
				if ur.ID.IsZero() {
					s.noIdentity++
				}
			}
		}
	}
	return s
}

// duplicates returns the ids in the stream more than once and their extra copies.
func (s *dedupStream) duplicates() (ids, extra int) {
	for _, cs := range s.copies {
		if len(cs) > 1 {
			ids++
			extra += len(cs) - 1
		}
	}
	return ids, extra
}

// identities returns the distinct identities (origin, sequence number and span: what
// deduplication compares; the floor a copy carries is the state of its aggregate, not of the
// record) of record id's copies.
func (s *dedupStream) identities(id int) int {
	seen := map[kpl.Identity]bool{}
	for _, c := range s.copies[id] {
		seen[sameRecord(c.id)] = true
	}
	return len(seen)
}

// sameRecord drops what two copies of one record may differ in: the floor.
func sameRecord(id kpl.Identity) kpl.Identity {
	id.Floor = 0
	return id
}

// want returns, for records 0..n-1, how many times each must be archived: once per
// distinct identity its copies carry (a record the app put twice — a re-put after a crash
// hid whether the first Put was accepted — has two, and both are archived: they are two
// records to the sink), at least once.
func (s *dedupStream) want(n int) map[int]int {
	w := make(map[int]int, n)
	for i := range n {
		w[i] = max(1, s.identities(i))
	}
	return w
}

// checkIdentities fails the test for every record of want under more than one identity
// that a SIGKILL did not catch inside Put (ambiguous), and returns how many such re-puts
// there are: the copies beyond the first identity of the ambiguous records.
func checkIdentities(t *testing.T, want map[int]int, ambiguous map[int]bool) (rePuts int) {
	t.Helper()
	var bad []int
	for id, w := range want {
		switch {
		case w > 1 && ambiguous[id]:
			rePuts += w - 1
		case w > 1:
			bad = append(bad, id)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		t.Errorf("%d records are in the stream under more than one identity (origin and sequence number), though the app put them once; first %v",
			len(bad), bad[:min(len(bad), 10)])
	}
	return rePuts
}

// missing returns the records of 0..n-1 that are not in the stream.
func (s *dedupStream) missing(n int) []int {
	var ids []int
	for i := range n {
		if len(s.copies[i]) == 0 {
			ids = append(ids, i)
		}
	}
	return ids
}

// ancestors returns, per shard, the set of its ancestors.
func (s *dedupStream) ancestors() map[string]map[string]bool {
	parents := map[string][]string{}
	for _, sh := range s.shards {
		id := aws.ToString(sh.ShardId)
		for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
			if p != nil {
				parents[id] = append(parents[id], *p)
			}
		}
	}
	out := map[string]map[string]bool{}
	var walk func(id string, into map[string]bool)
	walk = func(id string, into map[string]bool) {
		for _, p := range parents[id] {
			if !into[p] {
				into[p] = true
				walk(p, into)
			}
		}
	}
	for _, sh := range s.shards {
		id := aws.ToString(sh.ShardId)
		out[id] = map[string]bool{}
		walk(id, out[id])
	}
	return out
}

// straddling returns how many duplicated ids have a copy on a shard and another on one of
// its descendants (a re-send across a reshard), and how many of those copies share one
// identity (the ones deduplication must drop across shards).
func (s *dedupStream) straddling() (ids, sameIdentity int) {
	anc := s.ancestors()
	for _, cs := range s.copies {
		if len(cs) < 2 {
			continue
		}
		found, same := false, false
		for i := range cs {
			for j := range cs {
				if anc[cs[j].shard][cs[i].shard] {
					found = true
					same = same || sameRecord(cs[i].id) == sameRecord(cs[j].id)
				}
			}
		}
		if found {
			ids++
		}
		if same {
			sameIdentity++
		}
	}
	return ids, sameIdentity
}

// --- the archive ---

// dedupArchive is what DuckDB finds in an archive bucket, per record id against the counts
// wanted.
type dedupArchive struct {
	objects, archiveObjects, errorObjects, analyticsObjects int
	rows, withoutID, distinct                               int64
	lostIDs, shortIDs, missingCopies                        int64
	duplicatedIDs, extraCopies, unexpectedIDs               int64
	duplicatedLo, duplicatedHi                              int64    // the lowest and highest id duplicated
	examples                                                []string // ids archived a wrong number of times, with their objects
}

func (a dedupArchive) String() string {
	dups := ""
	if a.duplicatedIDs > 0 {
		dups = fmt.Sprintf(", ids %d to %d", a.duplicatedLo, a.duplicatedHi)
	}
	return fmt.Sprintf("%d rows in %d archive objects (%d error, %d analytics objects): %d distinct ids; %d ids lost, %d archived fewer times than wanted (%d copies missing); %d ids duplicated (%d extra copies%s); %d unexpected ids, %d rows without id",
		a.rows, a.archiveObjects, a.errorObjects, a.analyticsObjects, a.distinct, a.lostIDs, a.shortIDs, a.missingCopies, a.duplicatedIDs, a.extraCopies, dups, a.unexpectedIDs, a.withoutID)
}

// checkDedupArchive downloads the bucket and counts, with DuckDB over the Parquet archive
// objects (logs/), each record id (the id member the record carries, in the attributes
// column) against want.
func checkDedupArchive(t *testing.T, duck testenv.DuckDBQuery, sc *s3.Client, bucket string, want map[int]int) dedupArchive {
	t.Helper()
	dir := t.TempDir()
	var res dedupArchive
	for key, body := range readBucket(t, sc, bucket) {
		res.objects++
		top, _, _ := strings.Cut(key, "/")
		switch {
		case top == "logs" && strings.HasSuffix(key, ".parquet"):
			res.archiveObjects++
		case top == "errors":
			res.errorObjects++
		case top == "analytics":
			res.analyticsObjects++
		default:
			t.Errorf("unexpected object %s", key)
		}
		path := filepath.Join(dir, "bucket", filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var csv bytes.Buffer
	csv.WriteString("id,n\n")
	for _, id := range slices.Sorted(maps.Keys(want)) {
		fmt.Fprintf(&csv, "%d,%d\n", id, want[id])
	}
	wantPath := filepath.Join(dir, "want.csv")
	if err := os.WriteFile(wantPath, csv.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	arch := "(SELECT NULL::BIGINT AS id, NULL::VARCHAR AS filename WHERE false)"
	if res.archiveObjects > 0 {
		arch = fmt.Sprintf("(SELECT TRY_CAST(json_extract(attributes, '$.id') AS BIGINT) AS id, filename FROM read_parquet('%s', filename = true))",
			filepath.Join(dir, "bucket", "logs", "**", "*.parquet"))
	}
	with := fmt.Sprintf(`WITH
arch AS %s,
got AS (SELECT id, count(*) AS n FROM arch WHERE id IS NOT NULL GROUP BY id),
want AS (SELECT id, n FROM read_csv('%s', header = true, columns = {'id': 'BIGINT', 'n': 'BIGINT'})),
j AS (SELECT w.id, w.n AS want, coalesce(g.n, 0) AS got FROM want w LEFT JOIN got g ON g.id = w.id)
`, arch, wantPath)
	rows := duck(t, with+`SELECT
  (SELECT count(*) FROM arch) AS archived_rows,
  (SELECT count(*) FROM arch WHERE id IS NULL) AS without_id,
  (SELECT count(*) FROM got) AS distinct_ids,
  (SELECT count(*) FROM j WHERE got = 0) AS lost_ids,
  (SELECT count(*) FROM j WHERE got < want) AS short_ids,
  (SELECT coalesce(sum(want - got), 0) FROM j WHERE got < want) AS missing_copies,
  (SELECT count(*) FROM j WHERE got > want) AS duplicated_ids,
  (SELECT coalesce(sum(got - want), 0) FROM j WHERE got > want) AS extra_copies,
  (SELECT count(*) FROM got WHERE id NOT IN (SELECT id FROM want)) AS unexpected_ids,
  (SELECT coalesce(min(id), -1) FROM j WHERE got > want) AS duplicated_lo,
  (SELECT coalesce(max(id), -1) FROM j WHERE got > want) AS duplicated_hi`)
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
	res.rows, res.withoutID, res.distinct = n("archived_rows"), n("without_id"), n("distinct_ids")
	res.lostIDs, res.shortIDs, res.missingCopies = n("lost_ids"), n("short_ids"), n("missing_copies")
	res.duplicatedIDs, res.extraCopies, res.unexpectedIDs = n("duplicated_ids"), n("extra_copies"), n("unexpected_ids")
	res.duplicatedLo, res.duplicatedHi = n("duplicated_lo"), n("duplicated_hi")
	if res.shortIDs+res.duplicatedIDs+res.unexpectedIDs > 0 {
		prefix := filepath.Join(dir, "bucket") + string(filepath.Separator)
		for _, r := range duck(t, with+`SELECT id, want, got, (SELECT string_agg(filename, ' ' ORDER BY filename) FROM arch WHERE arch.id = x.id) AS files
FROM (SELECT id, want, got FROM j WHERE got <> want UNION ALL SELECT id, 0, n FROM got WHERE id NOT IN (SELECT id FROM want)) x
ORDER BY id LIMIT 12`) {
			files, _ := r["files"].(string)
			res.examples = append(res.examples, fmt.Sprintf("id %v: archived %v times, want %v; objects: %s", r["id"], r["got"], r["want"], strings.ReplaceAll(files, prefix, "")))
		}
	}
	return res
}

// --- versioned buckets ---

func dedupEnableVersioning(t *testing.T, sc *s3.Client, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sc.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatalf("enabling versioning on %s: %v", bucket, err)
	}
	out, err := sc.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(bucket)})
	if err != nil || out.Status != s3types.BucketVersioningStatusEnabled {
		t.Fatalf("versioning on %s: status %v, %v (the S3 server does not keep versions)", bucket, out, err)
	}
}

// dedupVersions lists every version of every key of a bucket, oldest first per key.
func dedupVersions(t *testing.T, sc *s3.Client, bucket string) (versions map[string][]s3types.ObjectVersion, deleteMarkers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	versions = map[string][]s3types.ObjectVersion{}
	pg := s3.NewListObjectVersionsPaginator(sc, &s3.ListObjectVersionsInput{Bucket: aws.String(bucket)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing versions of %s: %v", bucket, err)
		}
		for _, v := range page.Versions {
			versions[aws.ToString(v.Key)] = append(versions[aws.ToString(v.Key)], v)
		}
		deleteMarkers += len(page.DeleteMarkers)
	}
	for _, vs := range versions {
		slices.SortFunc(vs, func(a, b s3types.ObjectVersion) int {
			return aws.ToTime(a.LastModified).Compare(aws.ToTime(b.LastModified))
		})
	}
	return versions, deleteMarkers
}

// dedupRewrites checks that every key of a versioned bucket written more than once holds
// the same bytes in every version (same ETag and same SHA-256 of the content, each version
// read back). It returns the keys, the rewritten ones, the writes of those, and what
// differs.
func dedupRewrites(t *testing.T, sc *s3.Client, bucket string) (keys, rewritten, writes int, problems []string) {
	t.Helper()
	versions, markers := dedupVersions(t, sc, bucket)
	if markers > 0 {
		problems = append(problems, fmt.Sprintf("%d delete markers: the sink deleted objects", markers))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, key := range slices.Sorted(maps.Keys(versions)) {
		vs := versions[key]
		keys++
		if len(vs) < 2 {
			continue
		}
		rewritten++
		writes += len(vs)
		var first [sha256.Size]byte
		for i, v := range vs {
			g, err := sc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), VersionId: v.VersionId})
			if err != nil {
				t.Fatalf("getting %s version %s: %v", key, aws.ToString(v.VersionId), err)
			}
			body, err := io.ReadAll(g.Body)
			g.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(body)
			if i == 0 {
				first = sum
				continue
			}
			if sum != first || aws.ToString(v.ETag) != aws.ToString(vs[0].ETag) {
				problems = append(problems, fmt.Sprintf("%s: version %d of %d (%s, ETag %s, %d bytes, sha256 %x) differs from the first (%s, ETag %s, %d bytes, sha256 %x)",
					key, i+1, len(vs), aws.ToString(v.VersionId), aws.ToString(v.ETag), len(body), sum[:8],
					aws.ToString(vs[0].VersionId), aws.ToString(vs[0].ETag), aws.ToInt64(vs[0].Size), first[:8]))
			}
		}
	}
	return keys, rewritten, writes, problems
}

// dedupDeleteBucket deletes every version and delete marker of a bucket, then the bucket.
func dedupDeleteBucket(t *testing.T, sc *s3.Client, bucket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := s3.NewListObjectVersionsPaginator(sc, &s3.ListObjectVersionsInput{Bucket: aws.String(bucket)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			break
		}
		var ids []s3types.ObjectIdentifier
		for _, v := range page.Versions {
			ids = append(ids, s3types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
		}
		for _, m := range page.DeleteMarkers {
			ids = append(ids, s3types.ObjectIdentifier{Key: m.Key, VersionId: m.VersionId})
		}
		for len(ids) > 0 {
			batch := ids[:min(len(ids), 1000)]
			ids = ids[len(batch):]
			_, _ = sc.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &s3types.Delete{Objects: batch, Quiet: aws.Bool(true)}})
		}
	}
	if _, err := sc.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Logf("deleting bucket %s: %v", bucket, err)
	}
}

// --- a producing process with a spool ---

// Environment of TestHelperDedupProducer.
const (
	envDedupProducer = "KINLOG_DEDUP_PRODUCER_SPOOL" // spool directory; set only in the helper process
	envDedupStream   = "KINLOG_DEDUP_PRODUCER_STREAM"
	envDedupFrom     = "KINLOG_DEDUP_PRODUCER_FROM"
	envDedupTo       = "KINLOG_DEDUP_PRODUCER_TO"
	envDedupRate     = "KINLOG_DEDUP_PRODUCER_RATE"
	envDedupTimeout  = "KINLOG_DEDUP_PRODUCER_REQUEST_TIMEOUT"
)

// dedupProducerIDLine starts the line the helper writes to stderr with its producer id.
const dedupProducerIDLine = "dedup-producer-id "

// TestHelperDedupProducer is the producing process of the dedup tests: a producer with a
// spool that puts records FROM..TO-1 at RATE records per second, writes each index to
// stdout once Put accepted it, and closes. It reaches Kinesis at AWS_ENDPOINT_URL_KINESIS,
// which the tests point at a fault proxy. It skips unless started by one of them.
func TestHelperDedupProducer(t *testing.T) {
	dir := os.Getenv(envDedupProducer)
	if dir == "" {
		t.Skip("helper process of the dedup tests")
	}
	from, _ := strconv.Atoi(os.Getenv(envDedupFrom))
	to, _ := strconv.Atoi(os.Getenv(envDedupTo))
	rate, _ := strconv.Atoi(os.Getenv(envDedupRate))
	timeout, _ := time.ParseDuration(os.Getenv(envDedupTimeout))
	opts := []producer.Option{producer.WithSpool(dir, producer.SpoolOptions{Sync: producer.SyncWrite})}
	if timeout > 0 {
		opts = append(opts, producer.WithRequestTimeout(timeout))
	}
	p, err := producer.New(kinesis.NewFromConfig(testenv.AWSConfig(t)), os.Getenv(envDedupStream), opts...)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "%s%s\n", dedupProducerIDLine, p.ID())
	if r, _ := p.SpoolRecovery(); r.Records > 0 || len(r.Damaged) > 0 {
		fmt.Fprintf(os.Stderr, "recovered %d records from %d segments, damage %+v\n", r.Records, r.Segments, r.Damaged)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := max(rate/100, 1)
	for i := from; i < to; {
		for j := 0; j < per && i < to; j, i = j+1, i+1 {
			if err := p.Put(context.Background(), producer.Record{PartitionKey: dedupKey(i), Data: dedupLine(i)}); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(os.Stdout, "%d\n", i) // unbuffered: one write(2) after each accepted record
		}
		<-tick.C
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	fmt.Fprintf(os.Stderr, "done: delivered %d, replayed %d, retried %d, resent %d, request errors %d, shard mismatches %d\n",
		st.RecordsDelivered, st.RecordsReplayed, st.RecordsRetried, st.RecordsResent, st.RequestErrors, st.ShardMismatches)
}

// dedupSpoolProducer drives TestHelperDedupProducer runs on one spool directory: each run
// starts from the record after the last one the previous run reported accepted.
type dedupSpoolProducer struct {
	t    *testing.T
	dir  string
	env  []string
	n    int
	mu   sync.Mutex
	next int // the first record not reported accepted
	// ambiguous are the records a SIGKILL may have caught inside Put (or between Put and
	// its report): the next run puts them again, so they may be in the spool twice, with
	// two identities.
	ambiguous map[int]bool
	ids       map[string]bool // producer ids the runs reported
	kills     int
	runs      int
	cur       *exec.Cmd
	stderr    *strings.Builder
	done      chan struct{} // closed when the current run exited
	exitErr   error         // its Wait error, once done
	lastLog   string
}

func newDedupSpoolProducer(t *testing.T, stream, endpoint string, n, rate int, timeout time.Duration) *dedupSpoolProducer {
	p := &dedupSpoolProducer{t: t, dir: t.TempDir(), n: n, ambiguous: map[int]bool{}, ids: map[string]bool{},
		env: []string{envDedupStream + "=" + stream, envDedupRate + "=" + strconv.Itoa(rate), envDedupTimeout + "=" + timeout.String(),
			"AWS_ENDPOINT_URL_KINESIS=" + endpoint}}
	t.Cleanup(func() {
		if p.cur != nil {
			_ = p.cur.Process.Kill()
			<-p.done
		}
	})
	return p
}

// start starts a run from next.
func (p *dedupSpoolProducer) start() {
	p.t.Helper()
	p.mu.Lock()
	from := p.next
	p.mu.Unlock()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDedupProducer$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), p.env...), envDedupProducer+"="+p.dir,
		envDedupFrom+"="+strconv.Itoa(from), envDedupTo+"="+strconv.Itoa(p.n))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	p.stderr = &strings.Builder{}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cur, p.done = cmd, make(chan struct{})
	p.runs++
	go func(done chan struct{}) {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			i, err := strconv.Atoi(sc.Text())
			if err != nil || i < 0 || i >= p.n {
				continue // test framework output
			}
			p.mu.Lock()
			p.next = max(p.next, i+1)
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}(p.done)
}

// progress returns the first record not reported accepted.
func (p *dedupSpoolProducer) progress() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// ended reads the exited run's stderr and returns its exit error.
func (p *dedupSpoolProducer) ended() error {
	for line := range strings.Lines(p.stderr.String()) {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), strings.TrimSpace(dedupProducerIDLine)); ok {
			p.ids[strings.TrimSpace(id)] = true
		}
	}
	p.lastLog = strings.TrimSpace(p.stderr.String())
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// kill SIGKILLs the current run and waits for it. It reports false when the run had ended
// by itself before the signal.
func (p *dedupSpoolProducer) kill() bool {
	p.t.Helper()
	_ = p.cur.Process.Signal(syscall.SIGKILL)
	<-p.done
	err := p.ended()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			p.kills++
			p.mu.Lock()
			if p.next < p.n {
				p.ambiguous[p.next] = true
			}
			p.mu.Unlock()
			return true
		}
	}
	if err != nil {
		p.t.Fatalf("producer run %d: %v\n%s", p.runs, err, p.lastLog)
	}
	return false
}

// wait waits for the current run to end normally, having put every record.
func (p *dedupSpoolProducer) wait(timeout time.Duration) {
	p.t.Helper()
	select {
	case <-p.done:
		if err := p.ended(); err != nil {
			p.t.Fatalf("producer run %d: %v\n%s", p.runs, err, p.lastLog)
		}
	case <-time.After(timeout):
		_ = p.cur.Process.Kill()
		<-p.done
		p.t.Fatalf("producer run %d did not end within %v", p.runs, timeout)
	}
	if next := p.progress(); next < p.n {
		p.t.Fatalf("the last producer run ended at %d of %d", next, p.n)
	}
}

// dedupEnv returns the value of an integer variable, or def.
func dedupEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

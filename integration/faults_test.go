package integration

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/checkpoint"
	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/rollup"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// The fault tests run two in-process workers (consumer + S3 sink) against the local stack
// with DynamoDB or S3 reached through a toxiproxy proxy, and inject real network faults
// while records are produced. Kinesis is reached directly.

const (
	faultShards    = 4
	faultRecords   = 20000
	faultMalformed = 997 // every 997th record is not JSON: it goes to the error output
)

// faultRig is one fault test's stream, lease table, bucket, producer and workers.
type faultRig struct {
	t                     *testing.T
	start                 time.Time
	stream, table, bucket string
	kc                    *kinesis.Client
	sc                    *s3.Client      // direct to MinIO: scanning and cleanup
	store                 *ddbstore.Store // direct to dynalite: observing the lease table
	workers               []*faultWorker
	prod                  *producedLog
	mon                   *leaseMonitor
	records               int // records the test produces (faultRecords unless set)
}

func newFaultRig(t *testing.T, name string) *faultRig {
	kc := testenv.KinesisClient(t)
	sc := testenv.S3Client(t)
	ddb := testenv.DynamoDBClient(t)
	r := &faultRig{
		t:       t,
		start:   time.Now(),
		stream:  testenv.Name(t, name),
		table:   testenv.Name(t, name+"-leases"),
		bucket:  testenv.Name(t, name),
		kc:      kc,
		sc:      sc,
		prod:    &producedLog{last: map[string]checkpoint.Checkpoint{}},
		records: faultRecords,
	}
	var err error
	if r.store, err = ddbstore.New(ddb, r.table); err != nil {
		t.Fatal(err)
	}
	testenv.CreateStream(t, kc, r.stream, faultShards)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(r.bucket)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emptyBucket(t, sc, r.bucket) })
	t.Cleanup(func() {
		_, _ = ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(r.table)})
	})
	return r
}

// faultWorker is one in-process worker: a consumer with the S3 sink.
type faultWorker struct {
	id     string
	c      *consumer.Consumer
	reg    *prometheus.Registry
	logs   string
	cancel context.CancelFunc
	done   chan error // receives Run's result
}

// startWorker starts a worker whose lease table and bucket are reached through the given
// clients (one of them through a fault proxy); sinkOpts are added to the sink's options.
func (r *faultRig) startWorker(id string, ddbc *dynamodb.Client, s3c *s3.Client, sinkOpts ...s3sink.Option) *faultWorker {
	t := r.t
	logs := filepath.Join(t.TempDir(), id+".log")
	f, err := os.Create(logs)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", id)
	reg := prometheus.NewRegistry()
	store, err := ddbstore.New(ddbc, r.table)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := s3sink.New(s3c, r.bucket, r.stream, append([]s3sink.Option{
		s3sink.WithLogger(log), s3sink.WithPrefix(pipelinePrefix),
		s3sink.WithEncoding(encode.Config{Format: encode.Parquet}),
		s3sink.WithBufferSize(96 << 10), s3sink.WithBufferInterval(500 * time.Millisecond),
		s3sink.WithRollups(rollup.Config{Numeric: []string{"latency_ms"}}),
		s3sink.WithRetryBackoff(50*time.Millisecond, time.Second),
		s3sink.WithRegisterer(reg)}, sinkOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(r.kc, store, r.stream, sink.NewProcessor,
		consumer.WithWorkerID(id), consumer.WithLogger(log), consumer.WithRegisterer(reg),
		consumer.WithFailoverTime(3*time.Second), consumer.WithShardSyncInterval(time.Second),
		consumer.WithIdleTimeBetweenReads(200*time.Millisecond), consumer.WithMaxRecords(2000),
		consumer.WithShutdownTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &faultWorker{id: id, c: c, reg: reg, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- c.Run(ctx)
		f.Close()
	}()
	t.Cleanup(func() { // a failed test: stop the worker anyway
		cancel()
		select {
		case <-w.done:
		case <-time.After(45 * time.Second):
			t.Errorf("worker %s did not stop within 45s of its context ending", id)
		}
	})
	r.workers = append(r.workers, w)
	return w
}

// metric sums the values of a counter or gauge of the worker's registry.
func (w *faultWorker) metric(name string) float64 {
	mfs, err := w.reg.Gather()
	if err != nil {
		return -1
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// exited reports whether the worker's Run returned.
func (w *faultWorker) exited() (bool, error) {
	select {
	case err := <-w.done:
		w.done <- err // keep it for the cleanup
		return true, err
	default:
		return false, nil
	}
}

// logTail returns the end of every worker's log, for failure messages.
func (r *faultRig) logTail() string {
	var b strings.Builder
	for _, w := range r.workers {
		data, _ := os.ReadFile(w.logs)
		if len(data) > 6000 {
			data = data[len(data)-6000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", w.id, data)
	}
	return b.String()
}

// producedLog keeps, per shard, the position of the last record Kinesis accepted.
type producedLog struct {
	mu       sync.Mutex
	last     map[string]checkpoint.Checkpoint
	ok       int
	failed   int
	firstErr error
}

func (p *producedLog) handle(res producer.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if res.Err != nil {
		p.failed++
		if p.firstErr == nil {
			p.firstErr = res.Err
		}
		return
	}
	p.ok++
	pos := checkpoint.Checkpoint{Sequence: res.SequenceNumber, SubSequence: res.SubSequenceNumber}
	if pos.Compare(p.last[res.ShardID]) > 0 {
		p.last[res.ShardID] = pos
	}
}

func (p *producedLog) snapshot() map[string]checkpoint.Checkpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.last)
}

// produce puts n records (every faultMalformed-th one not JSON) at a steady pace that would
// spread them over d, so that records keep arriving while faults come and go; once hurry
// is closed it puts the rest at once. The returned channel is closed when the producer is
// closed: every record delivered or failed.
func (r *faultRig) produce(n int, d time.Duration, hurry <-chan struct{}) <-chan struct{} {
	t := r.t
	p, err := producer.New(r.kc, r.stream, producer.WithResultHandler(r.prod.handle))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	t.Cleanup(func() { cancel(); <-done }) // a test that failed early
	go func() {
		defer close(done)
		const tick = 20 * time.Millisecond
		per := max(1, int(int64(n)*int64(tick)/int64(d)))
		pace := time.NewTicker(tick)
		defer pace.Stop()
		for i := 0; i < n; {
			for end := min(n, i+per); i < end; i++ {
				var data []byte
				if i%faultMalformed == 0 {
					data = fmt.Appendf(nil, "malformed record %d", i)
				} else {
					data = fmt.Appendf(nil, `{"time":%q,"level":%q,"service":"svc-%d","msg":"request %d","id":%d,"latency_ms":%d}`,
						time.Now().UTC().Format(time.RFC3339Nano), []string{"INFO", "WARN", "ERROR"}[i%3], i%5, i, i, i%1000)
				}
				if err := p.Put(ctx, producer.Record{PartitionKey: "pk-" + strconv.Itoa(i%257), Data: data}); err != nil {
					t.Errorf("Put %d: %v", i, err)
					return
				}
			}
			select {
			case <-pace.C:
			case <-hurry:
			}
		}
		if err := p.Close(ctx); err != nil {
			t.Errorf("closing producer: %v", err)
		}
	}()
	return done
}

// leaseMonitor reads the lease table directly (not through the fault proxy) every 200ms
// and records every checkpoint or counter that moved backwards.
type leaseMonitor struct {
	mu          sync.Mutex
	reads       int
	failures    int
	cps         map[string]checkpoint.Checkpoint
	counters    map[string]int64
	regressions []string
	stop        chan struct{}
	stopped     chan struct{}
}

func (r *faultRig) monitorLeases() {
	m := &leaseMonitor{cps: map[string]checkpoint.Checkpoint{}, counters: map[string]int64{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	r.mon = m
	go func() {
		defer close(m.stopped)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			leases, err := r.store.ListLeases(ctx)
			cancel()
			m.mu.Lock()
			if err != nil {
				m.failures++
			} else {
				m.reads++
				for _, l := range leases {
					if prev, ok := m.cps[l.Key]; ok && l.Checkpoint.Compare(prev) < 0 {
						m.regressions = append(m.regressions, fmt.Sprintf("%s: checkpoint %s after %s", l.Key, l.Checkpoint, prev))
					}
					if prev, ok := m.counters[l.Key]; ok && l.Counter < prev {
						m.regressions = append(m.regressions, fmt.Sprintf("%s: leaseCounter %d after %d", l.Key, l.Counter, prev))
					}
					m.cps[l.Key], m.counters[l.Key] = l.Checkpoint, l.Counter
				}
			}
			m.mu.Unlock()
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	r.t.Cleanup(m.halt)
}

func (m *leaseMonitor) halt() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.stopped
}

// leases reads the lease table directly.
func (r *faultRig) leases() ([]checkpoint.Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.store.ListLeases(ctx)
}

// covered reports whether every shard's stored checkpoint is at or beyond want's position.
func covered(leases []checkpoint.Lease, want map[string]checkpoint.Checkpoint) bool {
	byKey := map[string]checkpoint.Checkpoint{}
	for _, l := range leases {
		byKey[l.Key] = l.Checkpoint
	}
	for shard, pos := range want {
		cp, ok := byKey[shard]
		if !ok || cp.Compare(pos) < 0 {
			return false
		}
	}
	return true
}

// waitArchiving waits until the workers hold every lease and the archive has objects.
func (r *faultRig) waitArchiving() {
	t := r.t
	if !poll(60*time.Second, 100*time.Millisecond, func() bool {
		ls, err := r.leases()
		if err != nil || len(ls) != faultShards {
			return false
		}
		for _, l := range ls {
			if l.Owner == "" {
				return false
			}
		}
		return countKeys(t, r.sc, r.bucket) > 0
	}) {
		t.Fatalf("the workers did not start archiving within 60s; worker logs:\n%s", r.logTail())
	}
	t.Logf("%v: archiving: every lease held, first objects written", time.Since(r.start).Round(time.Millisecond))
}

// hold keeps a fault for d: the fault's duration, not a synchronisation.
func hold(d time.Duration) { <-time.After(d) }

// recovery waits, after a fault was healed at healed, until every record Kinesis had
// accepted by then is checkpointed (hence archived: the sink acknowledges records only
// once their objects are written). It logs the time to the first checkpoint progress and
// the time until that backlog was drained.
func (r *faultRig) recovery(fault string, healed time.Time) {
	t := r.t
	want := r.prod.snapshot()
	at := map[string]checkpoint.Checkpoint{}
	if ls, err := r.leases(); err == nil {
		for _, l := range ls {
			at[l.Key] = l.Checkpoint
		}
	}
	var first time.Duration
	if !poll(60*time.Second, 100*time.Millisecond, func() bool {
		ls, err := r.leases()
		if err != nil {
			return false
		}
		if first == 0 {
			for _, l := range ls {
				if l.Checkpoint.Compare(at[l.Key]) > 0 {
					first = time.Since(healed)
					break
				}
			}
		}
		return covered(ls, want)
	}) {
		t.Fatalf("%s: the backlog produced before the fault healed was not checkpointed within 60s; worker logs:\n%s", fault, r.logTail())
	}
	drained := time.Since(healed)
	if first == 0 {
		first = drained
	}
	t.Logf("%v: %s healed: first checkpoint progress after %v, backlog drained after %v",
		time.Since(r.start).Round(time.Millisecond), fault, first.Round(time.Millisecond), drained.Round(time.Millisecond))
}

// finish waits until every produced record is archived, checks the bucket for exactly-once
// and the workers for having run throughout, then stops them gracefully.
func (r *faultRig) finish(produced <-chan struct{}) {
	t := r.t
	select {
	case <-produced:
	case <-time.After(2 * time.Minute):
		t.Fatal("the producer did not finish within 2 minutes")
	}
	r.prod.mu.Lock()
	ok, failed, ferr := r.prod.ok, r.prod.failed, r.prod.firstErr
	r.prod.mu.Unlock()
	if failed > 0 || ok != r.records {
		t.Fatalf("producer delivered %d of %d records, %d failed (first: %v)", ok, r.records, failed, ferr)
	}
	want := r.prod.snapshot()
	if !poll(2*time.Minute, 200*time.Millisecond, func() bool {
		ls, err := r.leases()
		return err == nil && covered(ls, want)
	}) {
		t.Fatalf("not every record was checkpointed within 2 minutes; worker logs:\n%s", r.logTail())
	}
	t.Logf("%v: every produced record checkpointed", time.Since(r.start).Round(time.Millisecond))

	// Checkpointed means acknowledged by the sink, hence written: the bucket must hold
	// every record already. Poll briefly anyway, as the archive is what counts.
	var seen map[int]int
	var res pipelineScan
	if !poll(30*time.Second, 2*time.Second, func() bool {
		seen, res = scanPipeline(t, r.sc, r.bucket)
		return len(seen) >= r.records
	}) {
		t.Errorf("records checkpointed but only %d of %d in the bucket", len(seen), r.records)
	}
	dups, missing := 0, 0
	for i := range r.records {
		switch c := seen[i]; {
		case c == 0:
			missing++
			if missing <= 10 {
				t.Errorf("record %d missing", i)
			}
		case c > 1:
			dups++
			if dups <= 10 {
				t.Errorf("record %d stored %d times", i, c)
			}
		}
	}
	malformed := (r.records + faultMalformed - 1) / faultMalformed
	if res.errored != malformed {
		t.Errorf("%d records in the error output, want the %d malformed ones", res.errored, malformed)
	}
	if !maps.Equal(res.rollupCounts, res.archivedPerMinute) {
		t.Errorf("rollup counts per minute %v differ from archived %v", res.rollupCounts, res.archivedPerMinute)
	}
	t.Logf("archive: %d records archived (%d distinct ids), %d duplicates, %d missing; %d archive, %d error, %d analytics objects",
		sum(seen), len(seen), dups, missing, res.archiveObjects, res.errorObjects, res.analyticsObjects)

	// The workers recovered by themselves: both still running, every lease held by one.
	ids := map[string]bool{}
	for _, w := range r.workers {
		ids[w.id] = true
		if exited, err := w.exited(); exited {
			t.Errorf("worker %s exited during the test (Run returned %v)", w.id, err)
		}
	}
	if ls, err := r.leases(); err != nil {
		t.Errorf("listing leases: %v", err)
	} else {
		for _, l := range ls {
			if !ids[l.Owner] {
				t.Errorf("lease %s owned by %q at the end, not by a running worker", l.Key, l.Owner)
			}
		}
	}
	for _, w := range r.workers {
		st := w.c.Status()
		shards := make([]string, 0, len(st.Shards))
		for _, s := range st.Shards {
			shards = append(shards, s.ShardID)
		}
		slices.Sort(shards)
		t.Logf("worker %s: holds %v; lease takes %v, losses %v, steals %v; checkpoints %v; processor errors %v; sink errors %v, flushes %v",
			w.id, shards, w.metric("kinlog_consumer_lease_takes_total"), w.metric("kinlog_consumer_lease_losses_total"),
			w.metric("kinlog_consumer_lease_steals_total"), w.metric("kinlog_consumer_checkpoints_total"),
			w.metric("kinlog_consumer_processor_errors_total"), w.metric("kinlog_sink_errors_total"), w.metric("kinlog_sink_flushes_total"))
	}

	r.mon.halt()
	r.mon.mu.Lock()
	t.Logf("lease monitor: %d reads of the lease table, %d checkpoint or counter regressions", r.mon.reads, len(r.mon.regressions))
	for _, reg := range r.mon.regressions {
		t.Errorf("regression: %s", reg)
	}
	r.mon.mu.Unlock()

	// Graceful stop: Run returns nil.
	for _, w := range r.workers {
		w.cancel()
	}
	for _, w := range r.workers {
		select {
		case err := <-w.done:
			if err != nil {
				t.Errorf("worker %s: Run returned %v", w.id, err)
			}
			w.done <- err
		case <-time.After(45 * time.Second):
			t.Errorf("worker %s did not stop within 45s", w.id)
		}
	}
	if dups > 0 || missing > 0 {
		t.Logf("worker logs:\n%s", r.logTail())
	}
}

func sum(m map[int]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// counts are totals over the workers of the metrics that show faults being felt.
type counts struct{ sinkErrors, leaseLosses, leaseTakes float64 }

func (r *faultRig) counts() counts {
	var c counts
	for _, w := range r.workers {
		c.sinkErrors += w.metric("kinlog_sink_errors_total")
		c.leaseLosses += w.metric("kinlog_consumer_lease_losses_total")
		c.leaseTakes += w.metric("kinlog_consumer_lease_takes_total")
	}
	return c
}

// inject applies a fault, holds it for d, heals it and measures the recovery.
func (r *faultRig) inject(fault string, d time.Duration, apply, heal func()) {
	t := r.t
	before := r.counts()
	apply()
	t.Logf("%v: %s for %v", time.Since(r.start).Round(time.Millisecond), fault, d)
	hold(d)
	heal()
	r.recovery(fault, time.Now())
	after := r.counts()
	t.Logf("    during %s and its recovery: %v sink errors (failed S3 writes and prepares), %v leases lost, %v taken",
		fault, after.sinkErrors-before.sinkErrors, after.leaseLosses-before.leaseLosses, after.leaseTakes-before.leaseTakes)
}

// objectTimes lists the bucket directly: the last-modified time of every object.
func (r *faultRig) objectTimes() map[string]time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]time.Time{}
	pg := s3.NewListObjectsV2Paginator(r.sc, &s3.ListObjectsV2Input{Bucket: aws.String(r.bucket)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			r.t.Fatalf("listing %s: %v", r.bucket, err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToTime(o.LastModified)
		}
	}
	return out
}

// changedSince returns the objects of now that are new or rewritten since before.
func changedSince(now, before map[string]time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for k, at := range now {
		if b, ok := before[k]; !ok || !b.Equal(at) {
			out[k] = at
		}
	}
	return out
}

// The records are paced to last longer than the faults; the rest is put after the last one.
const faultProduceSpan = 60 * time.Second

// TestFaultsDynamoDBOutage archives records with two workers whose lease table is reached
// through a fault proxy: DynamoDB refuses connections for a while, then accepts them and
// never answers for a while. The workers must recover by themselves and archive every
// record exactly once, with no checkpoint moving backwards.
func TestFaultsDynamoDBOutage(t *testing.T) {
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3)
	fp := testenv.NewFaultProxy(t, testenv.DynamoDB)
	r := newFaultRig(t, "faults-ddb")
	cfg := testenv.AWSConfig(t)
	ddbc := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(fp.URL) })
	s3c := testenv.S3Client(t)

	r.startWorker("w0", ddbc, s3c)
	r.startWorker("w1", ddbc, s3c)
	t.Cleanup(func() { fp.Up(); fp.Heal() }) // before the workers stop, should the test fail mid-fault
	r.monitorLeases()
	hurry := make(chan struct{})
	produced := r.produce(faultRecords, faultProduceSpan, hurry)
	r.waitArchiving()

	r.inject("DynamoDB down (connections refused)", 15*time.Second, fp.Down, fp.Up)
	r.inject("DynamoDB frozen (connections accepted, never answered)", 10*time.Second, fp.Freeze, fp.Heal)

	close(hurry)
	r.finish(produced)
}

// TestFaultsS3Outage archives records with two workers whose bucket is reached through a
// fault proxy: S3 refuses connections, then executes PUTs and loses their answers, then
// resets connections mid-request, then answers slowly. Every record must be archived
// exactly once: retried PUTs overwrite the same keys.
func TestFaultsS3Outage(t *testing.T) {
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3)
	fp := testenv.NewFaultProxy(t, testenv.S3)
	r := newFaultRig(t, "faults-s3")
	cfg := testenv.AWSConfig(t)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(fp.URL); o.UsePathStyle = true })
	ddbc := testenv.DynamoDBClient(t)

	r.startWorker("w0", ddbc, s3c)
	r.startWorker("w1", ddbc, s3c)
	t.Cleanup(func() { fp.Up(); fp.Heal() }) // before the workers stop, should the test fail mid-fault
	r.monitorLeases()
	hurry := make(chan struct{})
	produced := r.produce(faultRecords, faultProduceSpan, hurry)
	r.waitArchiving()

	r.inject("S3 down (connections refused)", 12*time.Second, fp.Down, fp.Up)
	// PUTs applied while their answers were lost must be rewritten (same key) after the heal.
	var before, applied map[string]time.Time
	r.inject("S3 losing responses (PUTs applied, unanswered)", 8*time.Second,
		func() { before = r.objectTimes(); fp.LoseResponses() },
		func() { applied = changedSince(r.objectTimes(), before); fp.Heal() })
	after, rewritten := r.objectTimes(), 0
	for k, at := range applied {
		if after[k].After(at) {
			rewritten++
		}
	}
	t.Logf("    %d objects written while their answers were lost; %d of them rewritten under the same key after the heal", len(applied), rewritten)
	if len(applied) == 0 || rewritten == 0 {
		t.Errorf("no PUT applied while S3's answers were lost was rewritten (%d applied): the fault was not exercised", len(applied))
	}
	r.inject("S3 resetting connections", 3*time.Second, fp.ResetConnections, fp.Heal)
	r.inject("S3 answering 2s late", 4*time.Second, func() { fp.Latency(2*time.Second, 0) }, fp.Heal)

	close(hurry)
	r.finish(produced)
}

// The black-hole tests: a fraction of the connections to DynamoDB or S3 stop answering for
// longer than the workers' deadlines, without anything being closed (see
// testenv.FaultProxy.BlackHole). A request on such a connection is only ever abandoned by
// its caller's deadline; the workers must keep archiving through the other connections
// before the fault heals.
const (
	blackHoleRecords  = 6000
	blackHoleSpan     = 20 * time.Second // the producer's pace; the rest comes after the fault
	blackHoleFraction = 0.5
	// blackHoleS3Timeout is the sinks' request timeout in the S3 test.
	blackHoleS3Timeout = 2 * time.Second
	// blackHoleLeaseCall is the workers' lease call timeout: failover/3 (3s in the rig).
	blackHoleLeaseCall = time.Second
)

// progressDuring waits until every shard's stored checkpoint is beyond where it was when
// called, up to until (the fault is still on). It returns how long that took, or false.
func (r *faultRig) progressDuring(until time.Time) (time.Duration, bool) {
	start := time.Now()
	at := map[string]checkpoint.Checkpoint{}
	ls, err := r.leases()
	if err != nil {
		r.t.Fatalf("listing leases: %v", err)
	}
	for _, l := range ls {
		at[l.Key] = l.Checkpoint
	}
	ok := poll(time.Until(until), 100*time.Millisecond, func() bool {
		ls, err := r.leases()
		if err != nil {
			return false
		}
		for _, l := range ls {
			if l.Checkpoint.Compare(at[l.Key]) <= 0 {
				return false
			}
		}
		return true
	})
	return time.Since(start), ok
}

// checkpoints reads every shard's stored checkpoint directly.
func (r *faultRig) checkpoints() map[string]checkpoint.Checkpoint {
	out := map[string]checkpoint.Checkpoint{}
	if ls, err := r.leases(); err == nil {
		for _, l := range ls {
			out[l.Key] = l.Checkpoint
		}
	}
	return out
}

// statusProbe calls a worker's Status every 50ms and keeps the longest call, counting a
// call still running as lasting until now.
type statusProbe struct {
	mu      sync.Mutex
	longest time.Duration
	since   time.Time // start of the call in progress; zero between calls
	stop    chan struct{}
	done    chan struct{}
}

func probeStatus(c *consumer.Consumer) *statusProbe {
	p := &statusProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			p.mu.Lock()
			p.since = time.Now()
			p.mu.Unlock()
			c.Status()
			p.mu.Lock()
			p.longest = max(p.longest, time.Since(p.since))
			p.since = time.Time{}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// worst returns the longest Status call so far.
func (p *statusProbe) worst() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.since.IsZero() {
		return max(p.longest, time.Since(p.since))
	}
	return p.longest
}

// halt stops the probe once its call in progress returns (after a heal, on code that
// blocks).
func (p *statusProbe) halt() { close(p.stop); <-p.done }

// expectProgress checks that every shard's checkpoint advances after grace into a fault
// applied at applied and held for holdFor, before it heals; why explains a failure.
func (r *faultRig) expectProgress(applied time.Time, grace, holdFor time.Duration, why string) {
	r.t.Helper()
	hold(grace)
	at := r.checkpoints()
	took, ok := r.progressDuring(applied.Add(holdFor))
	if !ok {
		var stuck []string
		for k, cp := range r.checkpoints() {
			if cp.Compare(at[k]) <= 0 {
				stuck = append(stuck, k)
			}
		}
		slices.Sort(stuck)
		r.t.Errorf("shards %v made no progress from %v into the black hole until it healed %v in%s", stuck, grace, holdFor, why)
		return
	}
	r.t.Logf("    every shard's checkpoint advanced %v after the first timeout, with the fault still on", took.Round(time.Millisecond))
}

// logFaultCounts logs the sink errors and lease moves since before.
func (r *faultRig) logFaultCounts(before counts) {
	after := r.counts()
	r.t.Logf("    during the black hole and its recovery: %v sink errors (failed S3 writes and prepares), %v leases lost, %v taken",
		after.sinkErrors-before.sinkErrors, after.leaseLosses-before.leaseLosses, after.leaseTakes-before.leaseTakes)
}

// TestFaultsS3BlackHole archives records with two workers whose bucket is reached through
// a fault proxy that black-holes half the connections to S3 for 3.5 request timeouts:
// uploads caught in the hole must be abandoned at the sinks' request timeout and retried on
// other connections, so that every shard's checkpoint advances before the fault heals.
// Every record is archived exactly once.
func TestFaultsS3BlackHole(t *testing.T) {
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3)
	fp := testenv.NewFaultProxy(t, testenv.S3)
	r := newFaultRig(t, "faults-s3bh")
	r.records = blackHoleRecords
	cfg := testenv.AWSConfig(t)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(fp.URL); o.UsePathStyle = true })
	ddbc := testenv.DynamoDBClient(t)

	r.startWorker("w0", ddbc, s3c, s3sink.WithRequestTimeout(blackHoleS3Timeout))
	r.startWorker("w1", ddbc, s3c, s3sink.WithRequestTimeout(blackHoleS3Timeout))
	t.Cleanup(func() { fp.Up(); fp.Heal() })
	r.monitorLeases()
	hurry := make(chan struct{})
	produced := r.produce(r.records, blackHoleSpan, hurry)
	r.waitArchiving()

	const holdFor = 7 * time.Second // 3.5 request timeouts
	before := r.counts()
	fp.BlackHole(blackHoleFraction)
	applied := time.Now()
	t.Logf("%v: S3 black-holed on %.0f%% of connections for %v (request timeout %v)", time.Since(r.start).Round(time.Millisecond),
		100*blackHoleFraction, holdFor, blackHoleS3Timeout)
	// Uploads sent before the fault may still finish; count progress from one timeout in.
	r.expectProgress(applied, blackHoleS3Timeout, holdFor, ": uploads caught in it were not abandoned and retried")
	hold(time.Until(applied.Add(holdFor)))
	fp.Heal()
	r.recovery("S3 black hole", time.Now())
	r.logFaultCounts(before)

	close(hurry)
	r.finish(produced)
}

// TestFaultsDynamoDBBlackHole archives records with two workers whose lease table is
// reached through a fault proxy that black-holes half the connections to DynamoDB for
// three failover times: lease writes caught in it (a sink's prepared boundary, a
// checkpoint, a renewal) must be abandoned at the lease call timeout, without holding up
// Status, the renewal of other leases or the lease scan, so that every shard's checkpoint
// advances before the fault heals. Every record is archived exactly once.
func TestFaultsDynamoDBBlackHole(t *testing.T) {
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3)
	fp := testenv.NewFaultProxy(t, testenv.DynamoDB)
	r := newFaultRig(t, "faults-ddbbh")
	r.records = blackHoleRecords
	cfg := testenv.AWSConfig(t)
	ddbc := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(fp.URL) })
	s3c := testenv.S3Client(t)

	w0 := r.startWorker("w0", ddbc, s3c)
	w1 := r.startWorker("w1", ddbc, s3c)
	t.Cleanup(func() { fp.Up(); fp.Heal() })
	r.monitorLeases()
	hurry := make(chan struct{})
	produced := r.produce(r.records, blackHoleSpan, hurry)
	r.waitArchiving()

	const holdFor = 9 * time.Second // three failover times, nine lease call timeouts
	before := r.counts()
	probes := []*statusProbe{probeStatus(w0.c), probeStatus(w1.c)}
	fp.BlackHole(blackHoleFraction)
	applied := time.Now()
	t.Logf("%v: DynamoDB black-holed on %.0f%% of connections for %v (lease call timeout %v)", time.Since(r.start).Round(time.Millisecond),
		100*blackHoleFraction, holdFor, blackHoleLeaseCall)
	r.expectProgress(applied, blackHoleLeaseCall, holdFor, "")
	hold(time.Until(applied.Add(holdFor)))
	// Status reads no lease table: it must never have waited for a write in the hole.
	for i, p := range probes {
		if d := p.worst(); d > 500*time.Millisecond {
			t.Errorf("worker w%d: a Status call took %v during the black hole, want under 500ms", i, d.Round(time.Millisecond))
		} else {
			t.Logf("    worker w%d: longest Status call during the black hole %v", i, d.Round(time.Microsecond))
		}
	}
	fp.Heal()
	for _, p := range probes {
		p.halt()
	}
	r.recovery("DynamoDB black hole", time.Now())
	r.logFaultCounts(before)

	close(hurry)
	r.finish(produced)
}

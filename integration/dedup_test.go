package integration

import (
	"context"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// The deduplication proofs: on the local stack, with the toxiproxy fault proxy in front of
// kinesalite, a kinlog producer is made to put records twice the ways it does in production
// — requests Kinesis executes late after a freeze, after their answers were given up on; a
// producer SIGKILLed with records applied but unconfirmed, which it sends again from its
// spool; re-sends that cross a split and a merge — and worker processes (consumer + S3 sink,
// TestSinkPipelineWorker) archive the stream. Each test reads the stream back and requires
// duplicates in it (or it proves nothing), then counts every record id in the archive with
// DuckDB: 0 lost, 0 duplicated. TestDedupKinesisFreeze also archives the same stream with
// deduplication off, where the duplicates must show, so the check can fail.
//
// A record's wanted count in the archive is the number of distinct identities its copies
// carry: 1, except for a record a SIGKILL caught inside Put (the app cannot tell whether the
// spool took it, so the next run puts it again, under a new sequence number — two records to
// the sink). The tests check that only such records have two identities.

// TestDedupKinesisFreeze: 2,000 records/s through the fault proxy while Kinesis is frozen for
// KINLOG_OUTAGE_SECONDS (default 60): requests time out and are retried, and at the heal
// kinesalite executes every request held in the freeze, those given up on included, so
// records land two or more times. Two consumer applications archive the stream: with
// deduplication (the default) the archive holds every record exactly once; without it
// (s3sink.WithoutDedup) it holds every copy of the stream, duplicates included.
func TestDedupKinesisFreeze(t *testing.T) {
	kc, sc, duck, fp, stream := dedupStack(t, "dedup-freeze", 4)
	through := kinesis.NewFromConfig(testenv.AWSConfig(t), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(fp.URL) })
	on := newDedupApp(t, sc, stream, "freeze-on", true, false)
	off := newDedupApp(t, sc, stream, "freeze-off", false, false)
	on.start(2)
	off.start(2)

	outage := time.Duration(dedupEnv("KINLOG_OUTAGE_SECONDS", 60)) * time.Second
	const rate = 2000
	const before, after = 5 * time.Second, 10 * time.Second
	n := rate * int((before+outage+after)/time.Second)
	// The requests of the freeze time out (at least twice each), are retried, and are all
	// executed at the heal. With the default outage, the timeout is the producer's default.
	timeout := min(max(outage/2, time.Second), producer.DefaultRequestTimeout)
	p, err := producer.New(through, stream, producer.WithRecordTTL(5*time.Minute), producer.WithRequestTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan struct{})
	var putFailed int
	var putErr error
	go func() {
		defer close(done)
		putFailed, putErr = dedupProduceAt(context.Background(), p, 0, n, rate)
	}()
	<-time.After(before)
	fp.Freeze()
	<-time.After(outage)
	peak := p.Stats()
	fp.Heal()
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("closing the producer: %v", err)
	}
	st := p.Stats()
	t.Logf("produced %d records at %d/s in %v, Kinesis frozen for %v (request timeout %v): delivered %d, failed %d, retried %d, request errors %d; %d buffered at the heal",
		n, rate, time.Since(start).Round(time.Second), outage, timeout, st.RecordsDelivered, st.RecordsFailed, st.RecordsRetried, st.RequestErrors, peak.BufferedRecords)
	if putFailed > 0 || st.RecordsFailed > 0 || st.RecordsDelivered != uint64(n) {
		t.Fatalf("%d Put calls failed (last: %v), %d records failed, %d of %d delivered", putFailed, putErr, st.RecordsFailed, st.RecordsDelivered, n)
	}

	read := time.Now()
	s := readDedupStream(t, kc, stream)
	if miss := s.missing(n); len(miss) > 0 {
		t.Fatalf("%d delivered records are not in the stream (first %v)", len(miss), miss[:min(len(miss), 10)])
	}
	dupIDs, extra := s.duplicates()
	t.Logf("stream (read in %v): %d Kinesis records, %d user records; %d of %d records more than once (%d extra copies)",
		time.Since(read).Round(100*time.Millisecond), s.kinesisRecords, s.userRecords, dupIDs, n, extra)
	if dupIDs == 0 {
		t.Fatal("the freeze put no record twice: the test proves nothing")
	}
	want := s.want(n)
	checkIdentities(t, want, nil)
	caught := time.Now()
	on.waitCaughtUp(s, 4*time.Minute)
	off.waitCaughtUp(s, 4*time.Minute)
	t.Logf("both applications caught up %v after the producer closed", time.Since(caught).Round(time.Second))
	onMetrics := on.stop()
	offMetrics := off.stop()
	t.Logf("the workers stopped %v after the producer closed", time.Since(caught).Round(100*time.Millisecond))

	t.Run("dedup=on", func(t *testing.T) {
		a := checkDedupArchive(t, duck, sc, on.bucket, want)
		t.Logf("archive: %v", a)
		t.Logf("stream copies %d - archived %d = %d dropped; the workers' %v", s.userRecords, a.rows, int64(s.userRecords)-a.rows, onMetrics)
		if a.lostIDs+a.shortIDs+a.duplicatedIDs+a.unexpectedIDs+a.withoutID > 0 || a.errorObjects > 0 {
			t.Fatalf("the deduplicated archive is wrong: %v (workers: %v)\n%s", a, onMetrics, strings.Join(a.examples, "\n"))
		}
		if a.rows != int64(n) {
			t.Fatalf("%d rows archived, want %d", a.rows, n)
		}
	})
	t.Run("dedup=off", func(t *testing.T) {
		a := checkDedupArchive(t, duck, sc, off.bucket, want)
		t.Logf("archive: %v", a)
		t.Logf("the workers' %v", offMetrics)
		if a.lostIDs+a.shortIDs > 0 {
			t.Fatalf("records lost: %v\n%s", a, strings.Join(a.examples, "\n"))
		}
		if a.duplicatedIDs == 0 {
			t.Fatalf("without deduplication the archive holds no duplicate, though the stream has %d: %v", dupIDs, a)
		}
		// Exactly-once archiving of the stream: every copy once.
		if a.duplicatedIDs != int64(dupIDs) || a.extraCopies != int64(extra) || a.rows != int64(s.userRecords) {
			t.Errorf("without deduplication the archive should hold every copy of the stream once: %d ids duplicated (%d extra copies), %d rows; the stream has %d (%d), %d user records",
				a.duplicatedIDs, a.extraCopies, a.rows, dupIDs, extra, s.userRecords)
		}
	})
}

// TestDedupSpoolSIGKILL: a producer process with a spool puts 100,000 records
// (KINLOG_DEDUP_SPOOL_RECORDS) at 5,000/s and is SIGKILLed five times; each run goes on from
// the record after the last one the previous run reported accepted, and first sends again
// what its spool holds unconfirmed. Kinesis answers through the fault proxy with 0.7 s of
// latency, so at each kill about a second of records was applied but not confirmed: those
// are in the stream twice, with one identity. Meanwhile the two workers are SIGKILLed four
// times, each while a flush of theirs is prepared and not yet checkpointed, so that the
// next holder re-cuts and rewrites it. The bucket is versioned: every key written more than
// once must hold the same bytes in every version.
func TestDedupSpoolSIGKILL(t *testing.T) {
	kc, sc, duck, fp, stream := dedupStack(t, "dedup-spool", 4)
	app := newDedupApp(t, sc, stream, "spool", true, true)
	app.start(2)

	n := dedupEnv("KINLOG_DEDUP_SPOOL_RECORDS", 100000)
	const rate = 5000
	const kills, workerKills = 5, 4
	fp.Latency(700*time.Millisecond, 200*time.Millisecond)
	prod := newDedupSpoolProducer(t, stream, fp.URL, n, rate, 10*time.Second)
	start := time.Now()
	prod.start()
	midFlush := 0
	for k := 0; k < kills; k++ {
		<-time.After(2*time.Second + time.Duration(k%3)*500*time.Millisecond)
		if !prod.kill() {
			break // the run ended by itself
		}
		at := prod.progress()
		prod.start()
		if k < workerKills {
			if app.killMidFlush(k%2, 10*time.Second) {
				midFlush++
			}
		}
		t.Logf("kill %d: producer SIGKILLed at record %d%s", k+1, at, map[bool]string{true: ", and a worker", false: ""}[k < workerKills])
	}
	prod.wait(3 * time.Minute)
	t.Logf("produced %d records in %v: %d producer runs, %d SIGKILLs; %d worker SIGKILLs (%d with a flush prepared); last run: %s",
		n, time.Since(start).Round(time.Second), prod.runs, prod.kills, min(prod.kills, workerKills), midFlush, prod.lastLog)
	if prod.kills < 4 {
		t.Fatalf("only %d producer kills: the runs ended too fast", prod.kills)
	}
	if len(prod.ids) != 1 {
		t.Errorf("the producer runs on one spool reported %d producer ids (%v), want one", len(prod.ids), prod.ids)
	}

	s := readDedupStream(t, kc, stream)
	if miss := s.missing(n); len(miss) > 0 {
		t.Fatalf("%d records are not in the stream (first %v)", len(miss), miss[:min(len(miss), 10)])
	}
	want := s.want(n)
	rePut := checkIdentities(t, want, prod.ambiguous)
	dupIDs, extra := s.duplicates()
	sameIdentity := extra - rePut
	t.Logf("stream: %d Kinesis records, %d user records; %d of %d records more than once (%d extra copies: %d re-sends of one identity, %d re-puts of a record a kill caught inside Put)",
		s.kinesisRecords, s.userRecords, dupIDs, n, extra, sameIdentity, rePut)
	if sameIdentity <= 0 {
		t.Fatal("no record was re-sent with its identity: the test proves nothing")
	}

	app.waitCaughtUp(s, 4*time.Minute)
	m := app.stop()
	a := checkDedupArchive(t, duck, sc, app.bucket, want)
	t.Logf("archive: %v", a)
	t.Logf("stream copies %d - archived %d = %d dropped as duplicates; the last workers' %v (the killed workers' counts died with them)",
		s.userRecords, a.rows, int64(s.userRecords)-a.rows, m)
	keys, rewritten, writes, problems := dedupRewrites(t, sc, app.bucket)
	t.Logf("versioned bucket: %d keys, %d written more than once (%d writes in all), %d differing; workers re-cut %d pending batches",
		keys, rewritten, writes, len(problems), app.logCount("re-cutting the pending batch"))
	if rewritten == 0 {
		t.Log("no key was rewritten: the kills missed the flushes (the byte-identity check had nothing to compare)")
	}
	if len(problems) > 0 {
		t.Errorf("rewritten keys differ:\n%s", strings.Join(problems[:min(len(problems), 20)], "\n"))
	}
	if a.lostIDs+a.shortIDs+a.duplicatedIDs+a.unexpectedIDs+a.withoutID > 0 || a.errorObjects > 0 {
		t.Fatalf("the archive is wrong: %v\n%s", a, strings.Join(a.examples, "\n"))
	}
}

// TestDedupReshard: a producer process with a spool re-sends records across a split and a
// merge. Before the split, Kinesis's answers are lost (the fault proxy drops them), so the
// records the parent took are unconfirmed; once the stream is split the answers come back
// and the producer's retries land on the children. Before the merge, answers are lost
// again and the producer is SIGKILLed; after the merge the next run sends its spool's
// unconfirmed records again, to the merged shard. The workers archive every record once:
// a child starts from its parents' deduplication state.
func TestDedupReshard(t *testing.T) {
	kc, sc, duck, fp, stream := dedupStack(t, "dedup-reshard", 2)
	app := newDedupApp(t, sc, stream, "reshard", true, false)
	app.start(2)

	n := dedupEnv("KINLOG_DEDUP_RESHARD_RECORDS", 40000)
	const rate = 2000
	prod := newDedupSpoolProducer(t, stream, fp.URL, n, rate, 2*time.Second)
	start := time.Now()
	prod.start()
	<-time.After(3 * time.Second)

	fp.LoseResponses()
	<-time.After(2500 * time.Millisecond)
	parent, children := dedupSplit(t, kc, stream)
	fp.Heal()
	t.Logf("split %s into %v at record %d, its answers lost for 2.5 s before", parent, children, prod.progress())
	<-time.After(time.Second)
	killed := app.killMidFlush(0, 5*time.Second)
	<-time.After(2 * time.Second)

	fp.LoseResponses()
	<-time.After(2500 * time.Millisecond)
	if !prod.kill() {
		t.Fatal("the producer ended before the merge")
	}
	at := prod.progress()
	merged, into := dedupMerge(t, kc, stream)
	fp.Heal()
	prod.start()
	t.Logf("SIGKILLed the producer at record %d with 2.5 s of answers lost, merged %v into %s, restarted it; a worker SIGKILLed after the split (flush prepared: %v)",
		at, merged, into, killed)
	prod.wait(3 * time.Minute)
	t.Logf("produced %d records in %v in %d runs; last run: %s", n, time.Since(start).Round(time.Second), prod.runs, prod.lastLog)

	s := readDedupStream(t, kc, stream)
	if miss := s.missing(n); len(miss) > 0 {
		t.Fatalf("%d records are not in the stream (first %v)", len(miss), miss[:min(len(miss), 10)])
	}
	want := s.want(n)
	rePut := checkIdentities(t, want, prod.ambiguous)
	dupIDs, extra := s.duplicates()
	straddle, straddleSame := s.straddling()
	perShard := map[string]int{}
	for _, cs := range s.copies {
		for _, c := range cs {
			perShard[c.shard]++
		}
	}
	t.Logf("stream: %d Kinesis records, %d user records by shard %v (%d more in aggregates outside their shard, dropped by the consumer); %d of %d records more than once (%d extra copies, %d re-puts); %d duplicated records straddle a reshard (a copy on a shard and one on its descendant), %d of them with one identity",
		s.kinesisRecords, s.userRecords, perShard, s.outside, dupIDs, n, extra, rePut, straddle, straddleSame)
	if extra-rePut <= 0 {
		t.Fatal("no record was re-sent with its identity: the test proves nothing")
	}
	if straddleSame == 0 {
		t.Error("no re-send crossed the reshard: the inheritance of the parents' state was not tested")
	}

	app.waitCaughtUp(s, 4*time.Minute)
	m := app.stop()
	a := checkDedupArchive(t, duck, sc, app.bucket, want)
	t.Logf("archive: %v", a)
	t.Logf("stream copies %d - archived %d = %d dropped as duplicates; the last workers' %v (the killed worker's counts died with it)",
		s.userRecords, a.rows, int64(s.userRecords)-a.rows, m)
	if a.lostIDs+a.shortIDs+a.duplicatedIDs+a.unexpectedIDs+a.withoutID > 0 || a.errorObjects > 0 {
		t.Fatalf("the archive is wrong: %v\n%s", a, strings.Join(a.examples, "\n"))
	}
}

// dedupSplit splits the stream's first open shard at the middle of its hash-key range and
// waits until the stream is ACTIVE; it returns the parent and the children.
func dedupSplit(t *testing.T, kc *kinesis.Client, stream string) (parent string, children []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shards, err := testenv.ListAllShards(ctx, kc, stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		if s.SequenceNumberRange.EndingSequenceNumber != nil {
			continue
		}
		parent = aws.ToString(s.ShardId)
		lo, _ := new(big.Int).SetString(*s.HashKeyRange.StartingHashKey, 10)
		hi, _ := new(big.Int).SetString(*s.HashKeyRange.EndingHashKey, 10)
		mid := new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1)
		if _, err := kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: &stream, ShardToSplit: &parent, NewStartingHashKey: aws.String(mid.String())}); err != nil {
			t.Fatalf("splitting %s: %v", parent, err)
		}
		break
	}
	if err := testenv.WaitStreamActive(ctx, kc, stream); err != nil {
		t.Fatal(err)
	}
	shards, err = testenv.ListAllShards(ctx, kc, stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		if aws.ToString(s.ParentShardId) == parent {
			children = append(children, aws.ToString(s.ShardId))
		}
	}
	return parent, children
}

// dedupMerge merges two adjacent open shards, at least one of them a child of a split, and
// waits until the stream is ACTIVE; it returns the parents and the merged shard.
func dedupMerge(t *testing.T, kc *kinesis.Client, stream string) (parents []string, merged string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shards, err := testenv.ListAllShards(ctx, kc, stream)
	if err != nil {
		t.Fatal(err)
	}
	type open struct {
		id     string
		lo, hi *big.Int
		child  bool
	}
	var opens []open
	for _, s := range shards {
		if s.SequenceNumberRange.EndingSequenceNumber != nil {
			continue
		}
		lo, _ := new(big.Int).SetString(*s.HashKeyRange.StartingHashKey, 10)
		hi, _ := new(big.Int).SetString(*s.HashKeyRange.EndingHashKey, 10)
		opens = append(opens, open{aws.ToString(s.ShardId), lo, hi, s.ParentShardId != nil})
	}
	slices.SortFunc(opens, func(a, b open) int { return a.lo.Cmp(b.lo) })
	// Prefer a child of the split and a shard of another lineage: the merged shard then
	// starts from the union of two unrelated states.
	one := big.NewInt(1)
	for _, mixed := range []bool{true, false} {
		for i := 0; parents == nil && i+1 < len(opens); i++ {
			a, b := opens[i], opens[i+1]
			if new(big.Int).Add(a.hi, one).Cmp(b.lo) != 0 || (!a.child && !b.child) || (mixed && a.child == b.child) {
				continue
			}
			if _, err := kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: &stream, ShardToMerge: &a.id, AdjacentShardToMerge: &b.id}); err != nil {
				t.Fatalf("merging %s and %s: %v", a.id, b.id, err)
			}
			parents = []string{a.id, b.id}
		}
	}
	if parents == nil {
		t.Fatalf("no adjacent open shards to merge in %s", stream)
	}
	if err := testenv.WaitStreamActive(ctx, kc, stream); err != nil {
		t.Fatal(err)
	}
	shards, err = testenv.ListAllShards(ctx, kc, stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		if aws.ToString(s.ParentShardId) == parents[0] || aws.ToString(s.ParentShardId) == parents[1] {
			if s.AdjacentParentShardId != nil {
				merged = aws.ToString(s.ShardId)
			}
		}
	}
	return parents, merged
}

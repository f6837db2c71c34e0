package lambda

import (
	"context"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/internal/testenv"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// putResent writes records first..first+n-1 of producer "prod" as KPL aggregates of up to
// three user records with their identity (sequence number = record number), and then puts
// again — as new Kinesis records, the way a producer re-sends after a lost answer — the
// records of every resend-th aggregate. It returns the ids written and the number of
// copies.
func putResent(t *testing.T, s *stack, first, n, resend int) (good []string, copies int) {
	t.Helper()
	var entries, again []ktypes.PutRecordsRequestEntry
	for i := first; i < first+n; i += 3 {
		var a kpl.Aggregator
		pk := fmt.Sprintf("agg%d", i)
		for j := i; j < min(i+3, first+n); j++ {
			id := fmt.Sprintf("r%06d", j)
			good = append(good, id)
			data := fmt.Appendf(nil, `{"id":%q,"service":"svc%d","level":"info","msg":"hello %d"}`, id, j%3, j)
			a.Add(kpl.Record{PartitionKey: pk, Data: data, ID: kpl.Identity{Origin: "prod", Seq: uint64(j), Floor: uint64(max(j-30, 0))}})
		}
		e := ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(pk), Data: a.AppendEncode(nil)}
		entries = append(entries, e)
		if (i/3)%resend == 0 {
			again = append(again, e)
			copies += a.Len()
		}
	}
	for _, batch := range [][]ktypes.PutRecordsRequestEntry{entries, again} {
		for len(batch) > 0 {
			k := min(len(batch), 500)
			out, err := s.kin.PutRecords(t.Context(), &kinesis.PutRecordsInput{StreamName: &s.stream, Records: batch[:k]})
			if err != nil || aws.ToInt32(out.FailedRecordCount) > 0 {
				t.Fatalf("putting records: %v (%v failed)", err, out)
			}
			batch = batch[k:]
		}
	}
	return good, copies
}

// TestDedupUnderMovingBatchBoundaries is the main Lambda property with re-sent records:
// whatever the batches, retries and kills, each record is archived once though the stream
// holds copies of many; with deduplication off the copies are archived (the test can fail).
func TestDedupUnderMovingBatchBoundaries(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("dedup=%v", on), func(t *testing.T) {
			st := newStack(t, 1)
			if !on {
				st.sinkOpts = append(append([]s3sink.Option{}, sinkOptions...), s3sink.WithoutDedup())
			}
			good, copies := putResent(t, st, 0, 900, 4)
			recs := st.read(t, shard0)
			k := &killer{S3API: st.s3, after: -1}
			f := st.function(t, k, nil, WithChunkSize(1500), WithReserve(0), WithWriteGrace(250*time.Millisecond))
			failed := runLikeLambda(t, st, f, k, recs, 11)
			if failed < 10 || copies < 50 {
				t.Fatalf("%d attempts failed, %d copies: the run does not exercise what it should", failed, copies)
			}
			problems := st.archive(t).problems(good, nil)
			if !on {
				if problems == "" {
					t.Fatal("without deduplication the archive holds no copies: the test cannot tell deduplication works")
				}
				t.Logf("without deduplication, as expected: %s", problems)
				return
			}
			if problems != "" {
				t.Fatalf("after %d failed attempts, %d copies in the stream: %s", failed, copies, problems)
			}
			p, err := f.progress.load(t.Context(), st.stream+"/"+shard0)
			if err != nil || len(p.State) == 0 {
				t.Fatalf("progress %+v (%v): no deduplication state committed", p, err)
			}
			t.Logf("%d records, %d copies in the stream, %d failed attempts: each archived once; state %d bytes", len(good), copies, failed, len(p.State))
		})
	}
}

// TestDedupAcrossSplit archives a shard, splits it, and puts copies of the parent's records
// again: they land on the children, which start from the parent's state and drop them.
func TestDedupAcrossSplit(t *testing.T) {
	st := newStack(t, 1)
	good, _ := putResent(t, st, 0, 60, 1000)
	f := st.function(t, nil, nil, WithReserve(0))
	if resp, err := f.Handle(t.Context(), st.event(shard0, st.read(t, shard0))); err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("parent: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	mid := new(big.Int).Lsh(big.NewInt(1), 127)
	if _, err := st.kin.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: &st.stream, ShardToSplit: aws.String(shard0), NewStartingHashKey: aws.String(mid.String())}); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitStreamActive(ctx, st.kin, st.stream); err != nil {
		t.Fatal(err)
	}
	// The same records again (re-sent after the split), and new ones.
	putResent(t, st, 0, 60, 1000)
	more, _ := putResent(t, st, 60, 30, 1000)
	good = append(good, more...)
	shards, err := testenv.ListAllShards(ctx, st.kin, st.stream)
	if err != nil {
		t.Fatal(err)
	}
	children := 0
	for _, s := range shards {
		id := aws.ToString(s.ShardId)
		if id == shard0 {
			continue
		}
		children++
		recs := st.read(t, id)
		if len(recs) == 0 {
			continue
		}
		if resp, err := f.Handle(t.Context(), st.event(id, recs)); err != nil || len(resp.BatchItemFailures) > 0 {
			t.Fatalf("child %s: %v %v", id, resp, err)
		}
	}
	if children != 2 {
		t.Fatalf("%d children after the split", children)
	}
	if problems := st.archive(t).problems(good, nil); problems != "" {
		t.Fatalf("after the split: %s", problems)
	}
}

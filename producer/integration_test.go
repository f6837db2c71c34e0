package producer_test

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// Integration tests run against the local stack's Kinesis (kinesalite); see internal/testenv.

// checkExactlyOnce verifies that the consumer view holds each of the n records exactly once,
// on a shard whose range holds the record's partition key hash.
func checkExactlyOnce(t *testing.T, c *kinesis.Client, stream string, byShard map[string][]kpl.Record, n int, keyOf func(i int) string) {
	t.Helper()
	shards, err := testenv.ListAllShards(context.Background(), c, stream)
	if err != nil {
		t.Fatal(err)
	}
	ranges := map[string]kpl.HashKeyRange{}
	for _, s := range shards {
		ranges[*s.ShardId], _ = kpl.ParseHashKeyRange(*s.HashKeyRange.StartingHashKey, *s.HashKeyRange.EndingHashKey)
	}
	seen := make([]int, n)
	for id, recs := range byShard {
		for _, r := range recs {
			i, err := strconv.Atoi(string(r.Data[:8]))
			if err != nil || i < 0 || i >= n {
				t.Fatalf("unexpected record %q on %s", r.Data, id)
			}
			seen[i]++
			if r.PartitionKey != keyOf(i) {
				t.Fatalf("record %d came back with partition key %q, want %q", i, r.PartitionKey, keyOf(i))
			}
			if !ranges[id].Contains(kpl.PartitionKeyHash(r.PartitionKey)) {
				t.Fatalf("record %d (key %s) is on %s, outside the range its key hashes to", i, r.PartitionKey, id)
			}
		}
	}
	missing, dup := 0, 0
	for _, c := range seen {
		switch {
		case c == 0:
			missing++
		case c > 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		t.Fatalf("%d of %d records missing, %d duplicated", missing, n, dup)
	}
}

func line(i int) []byte {
	return fmt.Appendf(nil, `%08d {"level":"INFO","msg":"request served","method":"GET","path":"/api/v1/items/%06d","status":200,"duration_ms":12.5,"trace":"4bf92f3577b34da6a3ce929d0e0e4736"}`, i, i)
}

func TestIntegrationShardAwareDelivery(t *testing.T) {
	t.Run("kinesalite", func(t *testing.T) {
		c := testenv.KinesisClient(t)
		for _, agg := range []bool{true, false} {
			n := 20000
			if !agg {
				n = 3000
			}
			t.Run("aggregation="+strconv.FormatBool(agg), func(t *testing.T) { shardAwareDelivery(t, c, agg, n) })
		}
	})
	t.Run("kinesis-mock", func(t *testing.T) {
		shardAwareDelivery(t, testenv.KinesisMockClient(t), true, 3000)
	})
}

func shardAwareDelivery(t *testing.T, c *kinesis.Client, agg bool, n int) {
	stream := testenv.Name(t, "producer-it")
	testenv.CreateStream(t, c, stream, 4)
	keyOf := func(i int) string { return "user-" + strconv.Itoa(i%997) }
	var failed atomic.Int64
	p, err := producer.New(c, stream, producer.WithAggregation(agg), producer.WithRateLimit(0),
		producer.WithResultHandler(func(r producer.Result) {
			if r.Err != nil {
				failed.Add(1)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	for i := range n {
		if err := p.Put(ctx, producer.Record{PartitionKey: keyOf(i), Data: line(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	elapsed := time.Since(start)
	st := p.Stats()
	t.Logf("aggregation=%v: %d records in %v (%.0f records/s), %d Kinesis records, %d requests",
		agg, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), st.KinesisRecords, st.Requests)
	if failed.Load() != 0 || st.RecordsDelivered != uint64(n) {
		t.Fatalf("%d failed, %d delivered of %d", failed.Load(), st.RecordsDelivered, n)
	}
	if st.ShardMismatches != 0 {
		t.Fatalf("%d Kinesis records landed on an unexpected shard", st.ShardMismatches)
	}
	byShard, kinesisRecords := testenv.ReadStream(t, c, stream)
	checkExactlyOnce(t, c, stream, byShard, n, keyOf)
	if agg && kinesisRecords*20 > n {
		t.Fatalf("%d Kinesis records for %d user records: aggregation did not happen", kinesisRecords, n)
	}
	if len(byShard) != 4 {
		t.Fatalf("records on %d shards, want 4", len(byShard))
	}
}

func TestIntegrationSplitShardWhileProducing(t *testing.T) {
	t.Run("kinesalite", func(t *testing.T) { splitWhileProducing(t, testenv.KinesisClient(t), 30000) })
	// kinesis-mock is the faithful emulator (and slow): fewer records.
	t.Run("kinesis-mock", func(t *testing.T) { splitWhileProducing(t, testenv.KinesisMockClient(t), 3000) })
}

func splitWhileProducing(t *testing.T, c *kinesis.Client, n int) {
	stream := testenv.Name(t, "producer-split")
	testenv.CreateStream(t, c, stream, 2)
	keyOf := func(i int) string { return "k" + strconv.Itoa(i) }
	var mu sync.Mutex
	var failures []error
	p, err := producer.New(c, stream, producer.WithRateLimit(0), producer.WithLinger(20*time.Millisecond),
		producer.WithResultHandler(func(r producer.Result) {
			if r.Err != nil {
				mu.Lock()
				failures = append(failures, r.Err)
				mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The first third goes out before the split, the second while SplitShard is under way,
	// the last after the stream is ACTIVE again.
	third, splitting, split := make(chan struct{}), make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := range n {
			switch i {
			case n / 3:
				close(third)
				<-splitting
			case 2 * n / 3:
				<-split
			}
			if err := p.Put(ctx, producer.Record{PartitionKey: keyOf(i), Data: line(i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	<-third
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	shards, err := testenv.ListAllShards(ctx, c, stream)
	if err != nil {
		t.Fatal(err)
	}
	s0 := shards[0]
	start, _ := new(big.Int).SetString(*s0.HashKeyRange.StartingHashKey, 10)
	end, _ := new(big.Int).SetString(*s0.HashKeyRange.EndingHashKey, 10)
	mid := new(big.Int).Rsh(new(big.Int).Add(start, end), 1)
	if _, err := c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: &stream, ShardToSplit: s0.ShardId, NewStartingHashKey: aws.String(mid.String())}); err != nil {
		t.Fatalf("splitting %s: %v", *s0.ShardId, err)
	}
	close(splitting)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := testenv.WaitStreamActive(wctx, c, stream); err != nil {
		t.Fatal(err)
	}
	close(split)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := p.Close(wctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	if len(failures) > 0 {
		t.Fatalf("%d records failed, first: %v", len(failures), failures[0])
	}
	mu.Unlock()
	st := p.Stats()
	t.Logf("split while producing: %d delivered, %d mismatches, %d resent, %d map refreshes", st.RecordsDelivered, st.ShardMismatches, st.RecordsResent, st.ShardMapRefreshes)
	byShard, _ := testenv.ReadStream(t, c, stream)
	checkExactlyOnce(t, c, stream, byShard, n, keyOf)
	after, err := testenv.ListAllShards(ctx, c, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 4 {
		t.Fatalf("%d shards after the split, want 4", len(after))
	}
	children := 0
	for _, s := range after {
		if aws.ToString(s.ParentShardId) == *s0.ShardId && len(byShard[*s.ShardId]) > 0 {
			children++
		}
	}
	if children != 2 {
		t.Fatalf("records reached %d of the 2 child shards: the producer did not follow the split", children)
	}
}

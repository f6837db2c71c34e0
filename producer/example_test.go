package producer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/producer"
)

// oneShardStream stands in for a *kinesis.Client in these examples: a stream of one shard
// that accepts every record. Real programs pass kinesis.NewFromConfig(cfg).
type oneShardStream struct {
	mu  sync.Mutex
	seq int
}

func (s *oneShardStream) PutRecords(_ context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &kinesis.PutRecordsOutput{FailedRecordCount: aws.Int32(0)}
	for range in.Records {
		s.seq++
		out.Records = append(out.Records, types.PutRecordsResultEntry{ShardId: aws.String("shardId-000000000000"), SequenceNumber: aws.String(strconv.Itoa(s.seq))})
	}
	return out, nil
}

func (s *oneShardStream) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return &kinesis.ListShardsOutput{Shards: []types.Shard{{
		ShardId:             aws.String("shardId-000000000000"),
		HashKeyRange:        &types.HashKeyRange{StartingHashKey: aws.String("0"), EndingHashKey: aws.String("340282366920938463463374607431768211455")},
		SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String("1")},
	}}}, nil
}

func Example() {
	ctx := context.Background()
	var delivered int
	p, err := producer.New(&oneShardStream{}, "app-logs",
		producer.WithLinger(time.Second), // wait up to 1 s to fill aggregates and requests
		producer.WithResultHandler(func(r producer.Result) {
			if r.Err == nil {
				delivered++ // handlers run serially: no lock needed for state only they touch
			}
		}))
	if err != nil {
		panic(err)
	}
	for i := range 800 {
		line := fmt.Sprintf(`{"level":"INFO","msg":"request %d"}`, i)
		if err := p.Put(ctx, producer.Record{PartitionKey: "user-" + strconv.Itoa(i%10), Data: []byte(line)}); err != nil {
			panic(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		panic(err)
	}
	st := p.Stats()
	fmt.Println("delivered:", delivered)
	fmt.Println("Kinesis records:", st.KinesisRecords)
	// Output:
	// delivered: 800
	// Kinesis records: 1
}

func ExampleProducer_PutSync() {
	ctx := context.Background()
	p, err := producer.New(&oneShardStream{}, "app-logs")
	if err != nil {
		panic(err)
	}
	defer p.Close(ctx)
	res, err := p.PutSync(ctx, producer.Record{PartitionKey: "user-1", Data: []byte(`{"msg":"hello"}`)})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.ShardID, res.SequenceNumber, res.Attempts)
	// Output: shardId-000000000000 1 1
}

func ExampleNewHandler() {
	ctx := context.Background()
	var lines []string
	p, err := producer.New(&oneShardStream{}, "app-logs", producer.WithResultHandler(func(r producer.Result) {
		lines = append(lines, r.Record.PartitionKey+" "+string(r.Record.Data))
	}))
	if err != nil {
		panic(err)
	}
	logger := slog.New(producer.NewHandler(p, &producer.HandlerOptions{
		PartitionKey: "user", // records with a "user" attribute use it as partition key
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // drop the time so the example's output is stable
			}
			return a
		},
	}))
	logger.With("service", "checkout").Info("order placed", "user", "alice", "order", slog.GroupValue(slog.Int("id", 42), slog.Float64("total", 9.5)))
	if err := p.Close(ctx); err != nil {
		panic(err)
	}
	fmt.Println(lines[0])
	// Output: alice {"level":"INFO","msg":"order placed","service":"checkout","user":"alice","order":{"id":42,"total":9.5}}
}

func ExampleNewWriter() {
	ctx := context.Background()
	var lines []string
	p, err := producer.New(&oneShardStream{}, "app-logs", producer.WithResultHandler(func(r producer.Result) {
		lines = append(lines, string(r.Record.Data))
	}))
	if err != nil {
		panic(err)
	}
	// Any logger that writes one JSON line per Write call (zap, zerolog, logrus) can use it.
	w := producer.NewWriter(p, nil)
	fmt.Fprintln(w, `{"level":"info","msg":"from a writer"}`)
	if err := p.Close(ctx); err != nil {
		panic(err)
	}
	fmt.Println(lines[0])
	// Output: {"level":"info","msg":"from a writer"}
}

// unreachable stands in for a Kinesis that does not answer: calls wait until they give up.
type unreachable struct{ oneShardStream }

func (*unreachable) PutRecords(ctx context.Context, _ *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A spool keeps what a producer accepted across restarts: here the first producer cannot
// reach Kinesis and is closed with no time left (as by a SIGTERM handler in a hurry); the
// next one on the same directory sends those lines first. The slog handler is used as with
// any producer.
func ExampleWithSpool() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "kinlog-spool")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	first, err := producer.New(&unreachable{}, "app-logs", producer.WithSpool(dir, producer.SpoolOptions{}))
	if err != nil {
		panic(err)
	}
	log := slog.New(producer.NewHandler(first, nil))
	for i := range 3 {
		log.Info("task done", "task", i)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	fmt.Println(first.Close(gone) != nil) // "closing producer: context canceled: 3 records kept in the spool …"

	second, err := producer.New(&oneShardStream{}, "app-logs", producer.WithSpool(dir, producer.SpoolOptions{}))
	if err != nil {
		panic(err)
	}
	r, _ := second.SpoolRecovery()
	fmt.Println("left by the first run:", r.Records)
	if err := second.Close(ctx); err != nil {
		panic(err)
	}
	fmt.Println("replayed:", second.Stats().RecordsReplayed)
	// Output:
	// true
	// left by the first run: 3
	// replayed: 3
}

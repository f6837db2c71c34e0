package s3

// These examples are in package s3, not s3_test, to write to the in-memory S3 of the
// package's tests (fakeS3, fake_test.go) instead of a second copy of it.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/sinks/encode"
)

// preparerFunc adapts a function to consumer.Preparer; the consumer passes its own,
// which writes the boundary to the lease table.
type preparerFunc func(context.Context, checkpoint.Checkpoint) error

func (f preparerFunc) Prepare(ctx context.Context, b checkpoint.Checkpoint) error { return f(ctx, b) }

// The processor of one shard, driven as the consumer drives it: Initialize, a batch,
// Shutdown. It prepares the flush's boundary, writes the archive object (gzip NDJSON under
// the default dt=/hour= prefix, named after the stream, shard and first record) and the
// rollup object beside it, and only then acknowledges the records. A record that is not
// JSON is archived wrapped as {"raw":...}. In production pass s3.NewFromConfig(cfg) and
// hand sink.NewProcessor to consumer.New.
func ExampleSink_NewProcessor() {
	ctx := context.Background()
	api := newFakeS3(nil)
	sink, err := New(api, "archive", "logs",
		WithBufferInterval(0), // flush at the end of every batch (default: 60 s or 5 MiB)
		WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	const shard = "shardId-000000000000"
	proc := sink.NewProcessor(shard)
	err = proc.Initialize(ctx, consumer.InitInput{
		ShardID: shard,
		Start:   checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon},
		Preparer: preparerFunc(func(_ context.Context, b checkpoint.Checkpoint) error {
			fmt.Println("prepare", b)
			return nil
		}),
	})
	if err != nil {
		panic(err)
	}
	at := time.Date(2026, 3, 14, 10, 4, 5, 0, time.UTC)
	b := consumer.NewBatch(shard, []consumer.Record{
		{ShardID: shard, SequenceNumber: "49590000000000000000000001", PartitionKey: "a", ArrivalTime: at, Data: []byte(`{"level":"INFO","service":"api","msg":"hello"}`)},
		{ShardID: shard, SequenceNumber: "49590000000000000000000002", PartitionKey: "b", ArrivalTime: at, Data: []byte("plain text\n")},
	}, func(n int) { fmt.Println("acknowledged", n) })
	if err := proc.ProcessRecords(ctx, b); err != nil {
		panic(err)
	}
	if err := proc.Shutdown(ctx); err != nil { // writes what is buffered, waits for S3
		panic(err)
	}
	objects := api.snapshot()
	for _, key := range slices.Sorted(maps.Keys(objects)) {
		fmt.Println(key)
		if strings.HasPrefix(key, "logs/") { // the archive object (default prefix)
			body, err := encode.Decompress(objects[key], encode.CompressionGzip)
			if err != nil {
				panic(err)
			}
			fmt.Print(string(body))
		}
	}
	// Output:
	// prepare 49590000000000000000000002
	// acknowledged 2
	// analytics/dt=2026-03-14/hour=10/logs-shardId-000000000000-49590000000000000000000001-0.rollup.json.gz
	// logs/dt=2026-03-14/hour=10/logs-shardId-000000000000-49590000000000000000000001-0.json.gz
	// {"level":"INFO","service":"api","msg":"hello"}
	// {"raw":"plain text"}
}

// Object names are a pure function of the stream, the shard and the position of the
// object's first record: a replayed flush overwrites its objects instead of adding copies.
func ExampleObjectName() {
	pos := checkpoint.Checkpoint{Sequence: "49590338271490256608559692538361571095921575989136588801", SubSequence: 3}
	fmt.Println(ObjectName("logs", "shardId-000000000004", pos, ".json.gz"))
	// Output:
	// logs-shardId-000000000004-49590338271490256608559692538361571095921575989136588801-3.json.gz
}

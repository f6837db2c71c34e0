package consumer

// This example is in package consumer, not consumer_test, to run on the in-memory Kinesis
// stream of the package's tests (testStream, fake_test.go) instead of a second copy of it.

import (
	"context"
	"fmt"

	"github.com/kinlog/kinlog/checkpoint/memory"
	"github.com/kinlog/kinlog/internal/kpl"
)

// examplePrinter prints each record, acknowledges it at once, and ends the run after n.
type examplePrinter struct {
	n    *int
	stop context.CancelFunc
}

func (p examplePrinter) Initialize(_ context.Context, in InitInput) error {
	fmt.Println("initialize", in.ShardID, "from", in.Start)
	return nil
}

func (p examplePrinter) ProcessRecords(_ context.Context, b *Batch) error {
	for _, r := range b.Records {
		fmt.Printf("%s %s %s aggregated=%t %s\n", r.ShardID, r.Position(), r.PartitionKey, r.Aggregated, r.Data)
	}
	b.Ack() // durable at once; a sink acknowledges once its writes are confirmed
	if *p.n -= len(b.Records); *p.n <= 0 {
		p.stop()
	}
	return nil
}

func (p examplePrinter) ShardEnded(context.Context) error { return nil }
func (p examplePrinter) LeaseLost(context.Context)        {}
func (p examplePrinter) Shutdown(context.Context) error {
	fmt.Println("shutdown")
	return nil
}

// A worker with its leases in checkpoint/memory reads a one-shard stream holding a plain
// record and a KPL aggregate of two: the aggregate is split into user records numbered by
// sub-sequence. When Run's context ends the worker shuts the processor down, checkpoints
// what it acknowledged and releases the lease. In production pass
// kinesis.NewFromConfig(cfg) and checkpoint/dynamodb.
func ExampleConsumer_Run() {
	stream := newTestStream()
	shard := stream.addShards(1)[0]
	stream.put(shard, "user-1", []byte(`{"msg":"a plain record"}`))
	stream.putAggregate(shard, []kpl.Record{
		{PartitionKey: "user-2", Data: []byte(`{"msg":"first of an aggregate"}`)},
		{PartitionKey: "user-3", Data: []byte(`{"msg":"second of an aggregate"}`)},
	})

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	store := memory.New()
	remaining := 3
	c, err := New(stream.api(), store, "logs",
		func(string) Processor { return examplePrinter{n: &remaining, stop: stop} },
		WithWorkerID("worker-1"))
	if err != nil {
		panic(err)
	}
	if err := c.Run(ctx); err != nil {
		panic(err)
	}
	l, err := store.GetLease(context.Background(), shard)
	if err != nil {
		panic(err)
	}
	fmt.Printf("lease %s: checkpoint %s, owner %q\n", l.Key, l.Checkpoint, l.Owner)
	// Output:
	// initialize shardId-000000000000 from TRIM_HORIZON
	// shardId-000000000000 495900000000000000001001 user-1 aggregated=false {"msg":"a plain record"}
	// shardId-000000000000 495900000000000000001002 user-2 aggregated=true {"msg":"first of an aggregate"}
	// shardId-000000000000 495900000000000000001002/1 user-3 aggregated=true {"msg":"second of an aggregate"}
	// shutdown
	// lease shardId-000000000000: checkpoint 495900000000000000001002/1, owner ""
}

package consumer_test

import (
	"context"
	"fmt"
	"log"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"

	ckdynamo "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/consumer"
)

// printer is a processor that prints records and acknowledges them at once.
type printer struct{}

func (printer) Initialize(context.Context, consumer.InitInput) error { return nil }
func (printer) ProcessRecords(_ context.Context, b *consumer.Batch) error {
	for _, r := range b.Records {
		fmt.Printf("%s %s: %s\n", r.ShardID, r.Position(), r.Data)
	}
	b.Ack()
	return nil
}
func (printer) ShardEnded(context.Context) error { return nil }
func (printer) LeaseLost(context.Context)        {}
func (printer) Shutdown(context.Context) error   { return nil }

// A worker of a fleet reading the stream "logs", with its leases in the DynamoDB table
// "logs-consumer". It runs until SIGTERM, then shuts down gracefully.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	store, err := ckdynamo.New(dynamodb.NewFromConfig(cfg), "logs-consumer")
	if err != nil {
		log.Fatal(err)
	}
	c, err := consumer.New(kinesis.NewFromConfig(cfg), store, "logs",
		func(shardID string) consumer.Processor { return printer{} },
		consumer.WithInitialPosition(consumer.Latest),
		consumer.WithRegisterer(prometheus.DefaultRegisterer))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Acknowledgements are cumulative: the worker checkpoints the highest position below which
// every record is acknowledged.
func ExampleBatch_AckThrough() {
	b := consumer.NewBatch("shardId-000000000000", []consumer.Record{
		{SequenceNumber: "100"}, {SequenceNumber: "101"}, {SequenceNumber: "102"},
	}, func(n int) { fmt.Println("acknowledged through record", n) })
	b.AckThrough(2)
	b.AckThrough(1) // smaller: ignored
	b.Ack()
	fmt.Println(b.Acked())
	// Output:
	// acknowledged through record 2
	// acknowledged through record 3
	// 3
}

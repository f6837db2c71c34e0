package consumer

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/eventstream"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// Integration tests of enhanced fan-out on kinesis-mock (TLS, HTTP/2) through the SDK's
// client, with the DynamoDB lease store on dynalite.

// fanOutConsumerName is the stream consumer the tests register; each test has its own stream.
const fanOutConsumerName = "kinlog-it"

// fanOutOptions are the options of a fan-out worker in these tests. The shard sync runs
// every 2s: kinesis-mock does not end a closed shard's subscription, and the reader
// finishes such a shard by polling once a sync has seen it closed.
func fanOutOptions() []Option {
	return []Option{WithRetrieval(FanOut), WithStreamConsumerName(fanOutConsumerName), WithShardSyncInterval(2 * time.Second)}
}

// fanOutKinesisClient returns a client of kinesis-mock's TLS endpoint that can subscribe.
func fanOutKinesisClient(t testing.TB) *kinesis.Client {
	t.Helper()
	testenv.Require(t, testenv.KinesisMock)
	kc, tr := newFanOutMockClient(testenv.AWSConfig(t), os.Getenv(string(testenv.KinesisMock)))
	// Its HTTP/2 connections' read loops would outlive the tests (goleak, TestMain); this
	// runs after the workers using it have stopped (cleanups run last-registered first).
	t.Cleanup(tr.CloseIdleConnections)
	return kc
}

// newFanOutMockClient is testenv.KinesisMockClient plus initialResponseShim. The emulator's
// certificate is self-signed, so verification is off for this client only.
func newFanOutMockClient(cfg aws.Config, endpoint string) (*kinesis.Client, *http.Transport) {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed local emulator
		ForceAttemptHTTP2: true,
	}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.HTTPClient = &http.Client{Transport: initialResponseShim{tr}}
	}), tr
}

// initialResponseShim puts the initial-response event that Kinesis sends first on a
// SubscribeToShard stream — and that this SDK requires ("deserialize initial response:
// expected initial-response, got SubscribeToShardEvent") — in front of the stream of
// kinesis-mock 0.6.2, which does not send it. Everything after it is the emulator's.
type initialResponseShim struct{ rt http.RoundTripper }

func (s initialResponseShim) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.rt.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".SubscribeToShard") {
		return resp, err
	}
	var msg eventstream.Message
	msg.Headers.Set(eventstream.MessageTypeHeader, eventstream.StringValue(eventstream.EventMessageType))
	msg.Headers.Set(eventstream.EventTypeHeader, eventstream.StringValue("initial-response"))
	var b bytes.Buffer
	if err := eventstream.NewEncoder().Encode(&b, msg); err != nil {
		_ = resp.Body.Close()
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(&b, resp.Body), resp.Body}
	return resp, nil
}

// retrieval is one way of reading the stack's Kinesis in the tests that run for both.
type retrieval struct {
	name   string
	client func(testing.TB) *kinesis.Client
	opts   []Option
	// takeoverSlack is added to the time a failover may take.
	takeoverSlack time.Duration
	// leader runs the workers with leader assignment (sigkillFailover only).
	leader bool
}

var (
	pollingKinesalite = retrieval{name: "polling", client: func(t testing.TB) *kinesis.Client { return testenv.KinesisClient(t) }}
	pollingLeader     = retrieval{name: "polling, leader assignment", client: pollingKinesalite.client, leader: true}
	// A new owner's first subscriptions may meet the dead owner's (ResourceInUseException)
	// and back off.
	fanOutMock = retrieval{name: "fanout", client: fanOutKinesisClient, opts: fanOutOptions(), takeoverSlack: 2 * resourceInUseBackoff}
)

// The same bodies as the polling tests, read with enhanced fan-out on kinesis-mock.

func TestIntegrationFanOutKPLSubSequenceCheckpoint(t *testing.T) {
	kplSubSequenceCheckpoint(t, fanOutMock)
}

func TestIntegrationFanOutSIGKILLFailover(t *testing.T) {
	sigkillFailover(t, fanOutMock)
}

func TestIntegrationFanOutSplitAndMergeDuringConsumption(t *testing.T) {
	splitAndMergeDuringConsumption(t, fanOutMock)
}

// TestIntegrationFanOutDeliversAsPolling reads one stream of KPL aggregates put by the
// kinlog producer with both retrievals at once, each with its own lease table: every shard
// delivers the same user records, in the same order, at the same positions, and per
// partition key in the order they were put.
func TestIntegrationFanOutDeliversAsPolling(t *testing.T) {
	kc := fanOutKinesisClient(t)
	stream := testenv.Name(t, "fanout-same")
	testenv.CreateStream(t, kc, stream, 2)
	ctx := context.Background()
	p, err := producer.New(kc, stream, producer.WithAggregation(true))
	if err != nil {
		t.Fatal(err)
	}
	const keys, perKey = 8, 40
	for i := range perKey {
		for k := range keys {
			if err := p.Put(ctx, producer.Record{PartitionKey: fmt.Sprint("key-", k), Data: fmt.Appendf(nil, "key-%d:%d", k, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	const total = keys * perKey

	read := func(opts ...Option) *procLog {
		store, _ := leaseTable(t)
		pl := newProcLog(true)
		c, err := New(kc, store, stream, pl.factory(), append([]Option{WithWorkerID("w"), WithLogger(integrationLogger(t))}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		started(t, c)
		return pl
	}
	polled := read()
	pushed := read(fanOutOptions()...)
	for _, pl := range []*procLog{polled, pushed} {
		eventually(t, 60*time.Second, "every record delivered", func() bool { return len(pl.records("")) >= total })
	}
	<-time.After(2 * time.Second) // nothing more may arrive
	shards := map[string]bool{}
	for _, r := range polled.records("") {
		shards[r.ShardID] = true
	}
	aggregated := 0
	for shard := range shards {
		a, b := polled.records(shard), pushed.records(shard)
		if len(a) != len(b) {
			t.Fatalf("shard %s: polling delivered %d records, fan-out %d", shard, len(a), len(b))
		}
		for i := range a {
			if a[i].Position() != b[i].Position() || !bytes.Equal(a[i].Data, b[i].Data) || a[i].PartitionKey != b[i].PartitionKey || a[i].Aggregated != b[i].Aggregated {
				t.Fatalf("shard %s record %d: polling %s %q, fan-out %s %q", shard, i, a[i].Position(), a[i].Data, b[i].Position(), b[i].Data)
			}
			if b[i].Aggregated {
				aggregated++
			}
		}
	}
	if aggregated == 0 {
		t.Fatal("no aggregated records: the producer did not aggregate, the test proves nothing about deaggregation")
	}
	next := map[string]int{}
	for _, r := range pushed.records("") {
		key, n, _ := strings.Cut(string(r.Data), ":")
		i, _ := strconv.Atoi(n)
		if i != next[key] {
			t.Fatalf("fan-out: key %s: record %d delivered, want %d", key, i, next[key])
		}
		next[key]++
	}
	if got := len(pushed.records("")); got != total {
		t.Fatalf("fan-out delivered %d records, want %d exactly once", got, total)
	}
	t.Logf("%d user records (%d aggregated) on %d shards: fan-out delivered what polling did", total, aggregated, len(shards))
}

// TestIntegrationFanOutRegistersStreamConsumer: two workers starting together register the
// consumer once; DeregisterStreamConsumer removes it.
func TestIntegrationFanOutRegistersStreamConsumer(t *testing.T) {
	kc := fanOutKinesisClient(t)
	store, _ := leaseTable(t)
	stream := testenv.Name(t, "fanout-reg")
	testenv.CreateStream(t, kc, stream, 2)
	pl := newProcLog(true)
	var stops []func() error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range []string{"w1", "w2"} {
		c, err := New(kc, store, stream, pl.factory(), append([]Option{WithWorkerID(id), WithFailoverTime(3 * time.Second), WithLogger(integrationLogger(t))}, fanOutOptions()...)...)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			stop := started(t, c)
			mu.Lock()
			stops = append(stops, stop)
			mu.Unlock()
		})
	}
	wg.Wait()
	putAll(t, kc, stream, []ktypes.PutRecordsRequestEntry{entry("a", "a:0"), entry("b", "b:0"), entry("c", "c:0"), entry("d", "d:0")})
	eventually(t, 30*time.Second, "the records read", func() bool { return len(pl.records("")) >= 4 })
	ctx := context.Background()
	sum, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(sum.StreamDescriptionSummary.StreamARN)
	list, err := kc.ListStreamConsumers(ctx, &kinesis.ListStreamConsumersInput{StreamARN: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Consumers) != 1 || aws.ToString(list.Consumers[0].ConsumerName) != fanOutConsumerName {
		t.Fatalf("stream consumers %+v, want one, %s", list.Consumers, fanOutConsumerName)
	}
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := DeregisterStreamConsumer(ctx, kc, arn, fanOutConsumerName); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the consumer gone", func() bool {
		list, err := kc.ListStreamConsumers(ctx, &kinesis.ListStreamConsumersInput{StreamARN: aws.String(arn)})
		return err == nil && !slices.ContainsFunc(list.Consumers, func(c ktypes.Consumer) bool { return c.ConsumerStatus != "DELETING" })
	})
	if err := DeregisterStreamConsumer(ctx, kc, arn, fanOutConsumerName); err != nil {
		t.Fatalf("deregistering again: %v, want nil", err)
	}
}

// BenchmarkIntegrationPutToProcessor measures, on kinesis-mock, the time from a PutRecord
// call to the record's delivery to the processor, for each retrieval: one record at a
// time, each put a random 0–500ms after the previous one arrived (so that neither the
// poll cycle nor the emulator's event cycle stays in phase). Each iteration is one sample;
// run with -benchtime=100x and read p50_ms and p99_ms. Figures from an emulator: they
// compare the readers, not Kinesis.
func BenchmarkIntegrationPutToProcessor(b *testing.B) {
	polling := retrieval{name: "polling", client: fanOutKinesisClient}
	for _, rt := range []retrieval{polling, fanOutMock} {
		b.Run(rt.name, func(b *testing.B) {
			kc := rt.client(b)
			stream := testenv.Name(b, "bench-latency")
			testenv.CreateStream(b, kc, stream, 1)
			store, _ := leaseTable(b)
			arrived := make(chan time.Time, 16)
			factory := func(string) Processor { return latencyProc{arrived} }
			c, err := New(kc, store, stream, factory, append([]Option{WithLogger(quietLog)}, rt.opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			stop := started(b, c)
			defer func() {
				if err := stop(); err != nil {
					b.Error(err)
				}
			}()
			put := func() time.Duration {
				t0 := time.Now()
				if _, err := kc.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String("k"), Data: []byte("x")}); err != nil {
					b.Fatal(err)
				}
				select {
				case at := <-arrived:
					return at.Sub(t0)
				case <-time.After(60 * time.Second):
					b.Fatal("no delivery within 60s")
					return 0
				}
			}
			put() // the lease taken and the subscription or iterator in place
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				<-time.After(time.Duration(rand.N(500)) * time.Millisecond)
				lat = append(lat, put())
			}
			b.StopTimer()
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6 }
			b.ReportMetric(q(0.50), "p50_ms")
			b.ReportMetric(q(0.99), "p99_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// latencyProc reports when each record reached the processor.
type latencyProc struct{ arrived chan<- time.Time }

func (latencyProc) Initialize(context.Context, InitInput) error { return nil }
func (p latencyProc) ProcessRecords(_ context.Context, b *Batch) error {
	now := time.Now()
	for range b.Records {
		select {
		case p.arrived <- now:
		default:
		}
	}
	b.Ack()
	return nil
}
func (latencyProc) ShardEnded(context.Context) error { return nil }
func (latencyProc) LeaseLost(context.Context)        {}
func (latencyProc) Shutdown(context.Context) error   { return nil }

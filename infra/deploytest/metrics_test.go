package deploytest

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/checkpoint/memory"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/producer"
	sinks3 "github.com/kinlog/kinlog/sinks/s3"
)

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// describedNames lists the metric names a collector describes.
func describedNames(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var names []string
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		names = append(names, m[1])
	}
	return names
}

// recorder is a prometheus.Registerer that keeps what is registered.
type recorder struct{ collectors []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}
func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}
func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// idleKinesis answers the producer's and consumer's calls with empty results; the tests
// only build them to read their metric descriptions.
type idleKinesis struct{}

func (idleKinesis) PutRecords(context.Context, *kinesis.PutRecordsInput, ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	return &kinesis.PutRecordsOutput{}, nil
}
func (idleKinesis) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return &kinesis.ListShardsOutput{}, nil
}
func (idleKinesis) GetShardIterator(context.Context, *kinesis.GetShardIteratorInput, ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	return &kinesis.GetShardIteratorOutput{}, nil
}
func (idleKinesis) GetRecords(context.Context, *kinesis.GetRecordsInput, ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	return &kinesis.GetRecordsOutput{}, nil
}

// exportedMetrics returns the metric names the producer, consumer and S3 sink packages
// export, read from their collectors. Histograms also export _bucket, _sum and _count series.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	add := func(ns []string) {
		for _, n := range ns {
			for _, s := range []string{"", "_bucket", "_sum", "_count"} {
				names[n+s] = true
			}
		}
	}

	p, err := producer.New(idleKinesis{}, "deploytest")
	if err != nil {
		t.Fatal(err)
	}
	add(describedNames(t, producer.NewCollector(p, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("closing the producer: %v", err)
	}

	reg := &recorder{}
	if _, err := consumer.New(idleKinesis{}, memory.New(), "deploytest", func(string) consumer.Processor { return nil }, consumer.WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	if len(reg.collectors) == 0 {
		t.Fatal("consumer.New registered no metrics")
	}
	for _, c := range reg.collectors {
		add(describedNames(t, c))
	}

	// The sink's client is never called: building it only creates its metrics.
	sink, err := sinks3.New(struct{ sinks3.API }{}, "deploytest-bucket", "deploytest")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sink.Collectors() {
		add(describedNames(t, c))
	}
	return names
}

// TestDashboardMetricsExist requires every metric the dashboard queries to be one the
// producer, consumer or S3 sink exports.
func TestDashboardMetricsExist(t *testing.T) {
	exported := exportedMetrics(t)
	for _, m := range dashboardMetrics {
		if !exported[m] {
			t.Errorf("the dashboard queries %s, which no collector of producer/, consumer/ or sinks/s3 describes", m)
		}
	}
	if exported["kinlog_producer_no_such_metric_total"] || !exported["kinlog_consumer_leases_held"] {
		t.Error("exportedMetrics does not read the collectors' names")
	}
}

package producer

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestCollector(t *testing.T) {
	fs := newFakeStream(2)
	fs.entryError = func(call, i int, _ types.PutRecordsRequestEntry) string {
		if call == 0 && i == 0 {
			return "KMSDisabledException"
		}
		return ""
	}
	p := newTestProducer(t, fs.client(), WithAggregation(false), WithMaxInFlight(1))
	for i := range 10 {
		if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte("0123456789")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := gather(t, p, prometheus.Labels{"app": "test"})
	counter := func(name string) float64 {
		m, ok := got[name]
		if !ok {
			t.Fatalf("metric %s missing", name)
		}
		return m.GetCounter().GetValue()
	}
	if v := counter("kinlog_producer_records_put_total"); v != 10 {
		t.Errorf("records_put_total = %v", v)
	}
	if v := counter("kinlog_producer_records_delivered_total"); v != 9 {
		t.Errorf("records_delivered_total = %v", v)
	}
	if v := counter("kinlog_producer_records_failed_total"); v != 1 {
		t.Errorf("records_failed_total = %v", v)
	}
	if v := counter("kinlog_producer_kinesis_records_total"); v != 9 {
		t.Errorf("kinesis_records_total = %v", v)
	}
	if v := counter("kinlog_producer_kinesis_bytes_total"); v != 90 {
		t.Errorf("kinesis_bytes_total = %v", v)
	}
	if v := got["kinlog_producer_user_records_per_kinesis_record"].GetGauge().GetValue(); v != 1 {
		t.Errorf("user_records_per_kinesis_record = %v", v)
	}
	if v := got["kinlog_producer_buffered_records"].GetGauge().GetValue(); v != 0 {
		t.Errorf("buffered_records = %v", v)
	}
	h := got["kinlog_producer_delivery_latency_seconds"].GetHistogram()
	if h.GetSampleCount() != 9 || len(h.GetBucket()) != len(latencyBounds) {
		t.Errorf("latency histogram: %d samples, %d buckets", h.GetSampleCount(), len(h.GetBucket()))
	}
	labels := map[string]string{}
	for _, l := range got["kinlog_producer_records_put_total"].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["stream"] != "test-stream" || labels["app"] != "test" {
		t.Errorf("labels %v", labels)
	}
}

func TestCollectorSpool(t *testing.T) {
	gs := newGatedStream(1)
	p := newTestProducer(t, gs.client(), WithSpool(t.TempDir(), SpoolOptions{}), WithMaxBufferedRecords(10),
		WithRequestTimeout(20*time.Millisecond), WithRetryBackoff(5*time.Millisecond, 10*time.Millisecond))
	for i := range 100 {
		if err := p.Put(context.Background(), spoolRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := gather(t, p, nil)
	if v := got["kinlog_producer_spooled_records"].GetGauge().GetValue(); v != 100 {
		t.Errorf("spooled_records = %v, want 100", v)
	}
	if v := got["kinlog_producer_spooled_bytes"].GetGauge().GetValue(); v <= 0 {
		t.Errorf("spooled_bytes = %v", v)
	}
	for _, name := range []string{"kinlog_producer_spool_oldest_record_age_seconds", "kinlog_producer_records_replayed_total", "kinlog_producer_spool_lost_records_total"} {
		if got[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	gs.openGate()
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// gather collects p's metrics through a registry, by name.
func gather(t *testing.T, p *Producer, labels prometheus.Labels) map[string]*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(p, labels)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.Metric{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0]
	}
	return got
}

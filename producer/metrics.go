package producer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a producer's [Stats] as Prometheus metrics named
// kinlog_producer_*, labelled with the stream. Register it with a prometheus.Registerer.
type Collector struct {
	p     *Producer
	descs collectorDescs
}

type collectorDescs struct {
	put, delivered, failed, retried, resent          *prometheus.Desc
	kinesisRecords, kinesisBytes, requests, reqErrs  *prometheus.Desc
	throttled, refreshes, refreshErrors, mismatches  *prometheus.Desc
	bufferedRecords, bufferedBytes, inflight, perRec *prometheus.Desc
	latency                                          *prometheus.Desc
	spooled, spooledBytes, spoolAge, replayed, lost  *prometheus.Desc
}

// NewCollector returns a Prometheus collector for p. constLabels are added to every metric,
// beside the stream label.
func NewCollector(p *Producer, constLabels prometheus.Labels) *Collector {
	labels := prometheus.Labels{"stream": p.stream}
	for k, v := range constLabels {
		labels[k] = v
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("kinlog_producer_"+name, help, nil, labels)
	}
	return &Collector{p: p, descs: collectorDescs{
		put:             d("records_put_total", "User records accepted by Put."),
		delivered:       d("records_delivered_total", "User records accepted by Kinesis."),
		failed:          d("records_failed_total", "User records reported failed."),
		retried:         d("records_retried_total", "User records sent again after a failure."),
		resent:          d("records_resent_total", "User records sent again after their aggregate landed on a shard that does not own them."),
		kinesisRecords:  d("kinesis_records_total", "Kinesis records (aggregates count once) accepted by Kinesis."),
		kinesisBytes:    d("kinesis_bytes_total", "Data bytes of Kinesis records accepted by Kinesis."),
		requests:        d("requests_total", "PutRecords calls completed."),
		reqErrs:         d("request_errors_total", "PutRecords calls that failed whole."),
		throttled:       d("throttled_kinesis_records_total", "Kinesis records rejected with ProvisionedThroughputExceededException."),
		refreshes:       d("shard_map_refreshes_total", "Shard map refreshes (ListShards)."),
		refreshErrors:   d("shard_map_errors_total", "Shard map refreshes that failed."),
		mismatches:      d("shard_mismatches_total", "Kinesis records that landed on another shard than predicted."),
		bufferedRecords: d("buffered_records", "User records accepted and not yet reported."),
		bufferedBytes:   d("buffered_bytes", "Bytes of user records accepted and not yet reported."),
		inflight:        d("requests_in_flight", "PutRecords calls under way."),
		perRec:          d("user_records_per_kinesis_record", "Mean user records per delivered Kinesis record."),
		latency:         d("delivery_latency_seconds", "Time from Put to delivery."),
		spooled:         d("spooled_records", "User records in the spool not yet reported."),
		spooledBytes:    d("spooled_bytes", "Bytes of the spool's files."),
		spoolAge:        d("spool_oldest_record_age_seconds", "How long the oldest record in the spool has waited."),
		replayed:        d("records_replayed_total", "User records an earlier run left in the spool and this one sent."),
		lost:            d("spool_lost_records_total", "User records found damaged in the spool or lost to a failed spool write."),
	}}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	for _, x := range []*prometheus.Desc{d.put, d.delivered, d.failed, d.retried, d.resent,
		d.kinesisRecords, d.kinesisBytes, d.requests, d.reqErrs, d.throttled, d.refreshes,
		d.refreshErrors, d.mismatches, d.bufferedRecords, d.bufferedBytes, d.inflight, d.perRec,
		d.latency, d.spooled, d.spooledBytes, d.spoolAge, d.replayed, d.lost} {
		ch <- x
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	d := &c.descs
	counter := func(desc *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v))
	}
	gauge := func(desc *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v)
	}
	counter(d.put, s.RecordsPut)
	counter(d.delivered, s.RecordsDelivered)
	counter(d.failed, s.RecordsFailed)
	counter(d.retried, s.RecordsRetried)
	counter(d.resent, s.RecordsResent)
	counter(d.kinesisRecords, s.KinesisRecords)
	counter(d.kinesisBytes, s.KinesisBytes)
	counter(d.requests, s.Requests)
	counter(d.reqErrs, s.RequestErrors)
	counter(d.throttled, s.ThrottledRecords)
	counter(d.refreshes, s.ShardMapRefreshes)
	counter(d.refreshErrors, s.ShardMapErrors)
	counter(d.mismatches, s.ShardMismatches)
	gauge(d.bufferedRecords, float64(s.BufferedRecords))
	gauge(d.bufferedBytes, float64(s.BufferedBytes))
	gauge(d.inflight, float64(s.InFlightRequests))
	gauge(d.perRec, s.RecordsPerKinesisRecord())
	gauge(d.spooled, float64(s.SpooledRecords))
	gauge(d.spooledBytes, float64(s.SpooledBytes))
	gauge(d.spoolAge, s.OldestSpooledAge.Seconds())
	counter(d.replayed, s.RecordsReplayed)
	counter(d.lost, s.SpoolLostRecords)
	buckets := make(map[float64]uint64, len(s.Latency.Bounds))
	var cum uint64
	for i, b := range s.Latency.Bounds {
		cum += s.Latency.Counts[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(d.latency, s.Latency.Count, s.Latency.Sum.Seconds(), buckets)
}

package s3

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Object kinds, the "kind" label of the object metrics.
const (
	kindArchive   = "archive"
	kindErrors    = "errors"
	kindAnalytics = "analytics"
)

// Error types, the "type" label of kinlog_sink_errors_total.
const (
	errTypePut          = "s3_put"
	errTypePrepare      = "prepare"
	errTypeLeaseLost    = "lease_lost"
	errTypePartitioning = "partitioning_failed"
	errTypeFormat       = "format_conversion_failed"
	errTypeOutsideShard = "outside_shard_range"
	errTypeEncode       = "encode"
)

type metrics struct {
	records      prometheus.Counter
	errored      *prometheus.CounterVec
	objects      *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	flushes      prometheus.Counter
	flushSeconds prometheus.Histogram
	errors       *prometheus.CounterVec
	oldest       prometheus.GaugeFunc
	buffered     prometheus.GaugeFunc
	dedup        prometheus.Counter
	dedupBytes   prometheus.Histogram
	dedupEvicted *prometheus.CounterVec
}

func newMetrics(stream string, oldest, buffered func() float64) *metrics {
	cl := prometheus.Labels{"stream": stream}
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kinlog_sink_records_archived_total", ConstLabels: cl,
			Help: "Records written to archive objects and acknowledged.",
		}),
		errored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kinlog_sink_records_errored_total", ConstLabels: cl,
			Help: "Records written to the error output, by error output type.",
		}, []string{"type"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kinlog_sink_objects_written_total", ConstLabels: cl,
			Help: "Objects S3 confirmed, by kind (archive, errors, analytics).",
		}, []string{"kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kinlog_sink_bytes_written_total", ConstLabels: cl,
			Help: "Bytes of objects S3 confirmed, by kind.",
		}, []string{"kind"}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kinlog_sink_flushes_total", ConstLabels: cl,
			Help: "Flushes completed (every object written, records acknowledged).",
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kinlog_sink_flush_duration_seconds", ConstLabels: cl,
			Help:    "Time from the start of a flush (encoding) to its acknowledgement, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12),
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kinlog_sink_errors_total", ConstLabels: cl,
			Help: "Errors by type: s3_put (an attempt to write an object failed), prepare, lease_lost, partitioning_failed and format_conversion_failed (records sent to the error output), encode.",
		}, []string{"type"}),
	}
	m.dedup = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kinlog_sink_records_deduplicated_total", ConstLabels: cl,
		Help: "User records dropped because their kinlog identity was already archived on the shard or a parent (re-sent by a producer or re-read by the agent).",
	})
	m.dedupBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "kinlog_sink_dedup_state_bytes", ConstLabels: cl,
		Help:    "Size of a shard's encoded deduplication state, stored with each checkpoint.",
		Buckets: prometheus.ExponentialBuckets(64, 4, 8),
	})
	m.dedupEvicted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kinlog_sink_dedup_evictions_total", ConstLabels: cl,
		Help: "What the deduplication bounds made a state forget, by reason: horizon and origins (origins), intervals (seen intervals). A re-send of something forgotten is archived again.",
	}, []string{"reason"})
	m.oldest = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kinlog_sink_oldest_unflushed_record_age_seconds", ConstLabels: cl,
		Help: "Age, by arrival time, of the oldest record handed to the sink and not yet acknowledged (0 when none).",
	}, oldest)
	m.buffered = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kinlog_sink_buffered_records", ConstLabels: cl,
		Help: "Records handed to the sink and not yet acknowledged.",
	}, buffered)
	for _, t := range []string{errTypePut, errTypePrepare, errTypeLeaseLost, errTypePartitioning, errTypeFormat, errTypeEncode} {
		m.errors.WithLabelValues(t)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.records, m.errored, m.objects, m.bytes, m.flushes, m.flushSeconds, m.errors, m.oldest, m.buffered,
		m.dedup, m.dedupBytes, m.dedupEvicted}
}

package agent

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus metrics, labelled by input (files[0], sockets[1],
// syslog[0]; "spool" for records an earlier run left in the socket inputs' spool).
type metrics struct {
	linesRead, bytesRead, recordsSent, shipped, failed, truncated, malformed, resent, truncations *prometheus.CounterVec

	mu     sync.Mutex
	inputs map[string]*inputMetrics
}

// inputMetrics are one input's counters.
type inputMetrics struct {
	name                                                                                          string
	linesRead, bytesRead, recordsSent, shipped, failed, truncated, malformed, resent, truncations prometheus.Counter
}

func newMetrics() *metrics {
	c := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kinlog", Subsystem: "agent", Name: name, Help: help}, []string{"input"})
	}
	return &metrics{
		linesRead:   c("lines_read_total", "Lines (or socket messages) read."),
		bytesRead:   c("file_bytes_read_total", "Bytes read from tailed files."),
		recordsSent: c("records_sent_total", "Records handed to the producer."),
		shipped:     c("records_shipped_total", "Records Kinesis confirmed."),
		failed:      c("records_failed_total", "Records Kinesis refused for good; each is sent again after a backoff and its file position does not pass it."),
		truncated:   c("lines_truncated_total", "Lines or records cut to the size limit (shipped with \"truncated\":true)."),
		malformed:   c("lines_malformed_total", "Lines not in the input's format (shipped as text with the reason)."),
		resent:      c("records_resent_total", "Records read again after an unclean stop that had been sent before it: they may be in the stream twice."),
		truncations: c("file_truncations_total", "Files found truncated or replaced in place (copytruncate) and read again from their beginning."),
		inputs:      map[string]*inputMetrics{},
	}
}

func (m *metrics) input(name string) *inputMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if im, ok := m.inputs[name]; ok {
		return im
	}
	im := &inputMetrics{name: name,
		linesRead: m.linesRead.WithLabelValues(name), bytesRead: m.bytesRead.WithLabelValues(name),
		recordsSent: m.recordsSent.WithLabelValues(name), shipped: m.shipped.WithLabelValues(name),
		failed: m.failed.WithLabelValues(name), truncated: m.truncated.WithLabelValues(name),
		malformed: m.malformed.WithLabelValues(name), resent: m.resent.WithLabelValues(name),
		truncations: m.truncations.WithLabelValues(name)}
	m.inputs[name] = im
	return im
}

var (
	descBehind   = prometheus.NewDesc("kinlog_agent_file_bytes_behind", "Bytes of a tailed file not yet confirmed by Kinesis (size minus stored position).", []string{"input", "file"}, nil)
	descFiles    = prometheus.NewDesc("kinlog_agent_files_tailed", "Files open for tailing.", []string{"input"}, nil)
	descInflight = prometheus.NewDesc("kinlog_agent_records_in_flight", "Records read from files and not yet confirmed.", []string{"input"}, nil)
	descOldest   = prometheus.NewDesc("kinlog_agent_oldest_unshipped_age_seconds", "Age of the oldest record read from a file and not yet confirmed (0 when none).", []string{"input"}, nil)
)

// collector exports the agent's counters, the gauges computed from the tailers' state at
// scrape time and the producers' metrics. It is unchecked (Describe sends nothing): the
// producers it reports on exist only once the agent runs.
type collector struct{ a *Agent }

func (c collector) Describe(chan<- *prometheus.Desc) {}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.a.metrics.all() {
		v.Collect(ch)
	}
	for _, pc := range c.a.producerCollectors() {
		pc.Collect(ch)
	}
	now := time.Now().UnixNano()
	for _, t := range c.a.tailerList() {
		st := t.state()
		ch <- prometheus.MustNewConstMetric(descFiles, prometheus.GaugeValue, float64(len(st)), t.name)
		inflight, oldest := 0, int64(0)
		// A rotated file and its successor share a path until the old one is closed: one
		// series per path, summed.
		behind := map[string]int64{}
		for _, f := range st {
			behind[f.Path] += max(0, f.Size-f.Offset)
			inflight += f.InFlight
			if f.oldest != 0 && (oldest == 0 || f.oldest < oldest) {
				oldest = f.oldest
			}
		}
		for path, b := range behind {
			ch <- prometheus.MustNewConstMetric(descBehind, prometheus.GaugeValue, float64(b), t.name, path)
		}
		age := 0.0
		if oldest != 0 {
			age = float64(now-oldest) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(inflight), t.name)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age, t.name)
	}
}

func (m *metrics) all() []*prometheus.CounterVec {
	return []*prometheus.CounterVec{m.linesRead, m.bytesRead, m.recordsSent, m.shipped, m.failed, m.truncated, m.malformed, m.resent, m.truncations}
}

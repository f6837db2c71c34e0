package consumer

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/checkpoint"
)

// metrics are the consumer's Prometheus metrics. Counters are plain collectors; the
// per-shard gauges are computed from the consumer's state at scrape time, so a shard whose
// lease is gone leaves no stale series.
type metrics struct {
	c *Consumer

	leaseTakes       prometheus.Counter
	leaseSteals      prometheus.Counter
	leaseLosses      prometheus.Counter
	leaseAssignments prometheus.Counter
	records          prometheus.Counter
	bytes            prometheus.Counter
	dropped          prometheus.Counter
	checkpoints      prometheus.Counter
	processorErrors  prometheus.Counter
	readErrors       *prometheus.CounterVec

	leasesHeld    *prometheus.Desc
	behind        *prometheus.Desc
	checkpointAge *prometheus.Desc
	inFlight      *prometheus.Desc
	leader        *prometheus.Desc
	unacked       *prometheus.Desc
	budgetWaits   *prometheus.Desc
}

const metricNamespace = "kinlog_consumer"

func newMetrics(c *Consumer) *metrics {
	labels := prometheus.Labels{"stream": c.stream}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricNamespace, Name: name, Help: help, ConstLabels: labels})
	}
	desc := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricNamespace, "", name), help, vars, labels)
	}
	return &metrics{
		c:                c,
		leaseTakes:       counter("lease_takes_total", "Leases taken (unowned, expired or stolen)."),
		leaseSteals:      counter("lease_steals_total", "Leases stolen from a live worker to balance the load."),
		leaseLosses:      counter("lease_losses_total", "Leases lost to another worker or to a failed renewal."),
		leaseAssignments: counter("lease_assignments_total", "Leases this worker, as the leader of leader assignment, gave to other workers."),
		records:          counter("records_processed_total", "User records handed to processors."),
		bytes:            counter("bytes_processed_total", "Bytes of Kinesis record data read and handed to processors."),
		dropped:          counter("records_dropped_total", "User records of KPL aggregates dropped because their hash key lies outside the shard's range."),
		checkpoints:      counter("checkpoints_total", "Checkpoints written."),
		processorErrors:  counter("processor_errors_total", "Errors returned by processor callbacks."),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNamespace, Name: "read_errors_total", ConstLabels: labels,
			Help: "Failed Kinesis reads by kind: throttled, expired_iterator, iterator, other (polling); throttled, subscribe, subscription_in_use, stream (enhanced fan-out).",
		}, []string{"kind"}),
		leasesHeld:    desc("leases_held", "Leases this worker holds."),
		behind:        desc("millis_behind_latest", "MillisBehindLatest of the last GetRecords response or fan-out event of each held shard.", "shard"),
		checkpointAge: desc("checkpoint_age_seconds", "Age of the oldest delivered record of each held shard not yet covered by a stored checkpoint (0 when none).", "shard"),
		leader:        desc("lease_leader", "1 while this worker leads the lease assignment (WithLeaderAssignment), else 0."),
		inFlight:      desc("batches_in_flight", "Batches delivered and not yet fully acknowledged, per held shard.", "shard"),
		unacked:       desc("unacked_bytes", "Bytes of records read and not yet acknowledged, over all shards of the worker (of every stream, for a multi-stream worker; bounded by WithMaxUnackedBytes)."),
		budgetWaits:   desc("readers_waiting_for_memory", "Shard readers of the worker (of every stream, for a multi-stream worker) waiting for room in the unacknowledged-bytes bound."),
	}
}

func (m *metrics) counters() []prometheus.Collector {
	return []prometheus.Collector{m.leaseTakes, m.leaseSteals, m.leaseLosses, m.leaseAssignments, m.records, m.bytes, m.dropped, m.checkpoints, m.processorErrors, m.readErrors}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.counters() {
		c.Describe(ch)
	}
	ch <- m.leasesHeld
	ch <- m.behind
	ch <- m.checkpointAge
	ch <- m.inFlight
	ch <- m.leader
	ch <- m.unacked
	ch <- m.budgetWaits
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.counters() {
		c.Collect(ch)
	}
	st := m.c.Status()
	ch <- prometheus.MustNewConstMetric(m.leasesHeld, prometheus.GaugeValue, float64(len(st.Shards)))
	leading := 0.0
	if m.c.leads() {
		leading = 1
	}
	ch <- prometheus.MustNewConstMetric(m.leader, prometheus.GaugeValue, leading)
	used, waiting := m.c.budget.inUse()
	ch <- prometheus.MustNewConstMetric(m.unacked, prometheus.GaugeValue, float64(used))
	ch <- prometheus.MustNewConstMetric(m.budgetWaits, prometheus.GaugeValue, float64(waiting))
	for _, s := range st.Shards {
		if s.MillisBehindLatest >= 0 {
			ch <- prometheus.MustNewConstMetric(m.behind, prometheus.GaugeValue, float64(s.MillisBehindLatest), s.ShardID)
		}
		ch <- prometheus.MustNewConstMetric(m.checkpointAge, prometheus.GaugeValue, s.CheckpointAge.Seconds(), s.ShardID)
		ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(s.BatchesInFlight), s.ShardID)
	}
}

// Status is a snapshot of a worker, for health and status endpoints.
type Status struct {
	WorkerID string `json:"worker_id"`
	Stream   string `json:"stream"`
	// Shards are the shards whose leases the worker holds, by shard id.
	Shards []ShardStatus `json:"shards"`
}

// ShardStatus describes one held shard.
type ShardStatus struct {
	ShardID string
	// MillisBehindLatest is the lag reported by the last GetRecords, or -1 before the first.
	MillisBehindLatest int64
	// Checkpoint is the last checkpoint stored (or the one the lease was taken at).
	Checkpoint checkpoint.Checkpoint
	// Acknowledged is the highest position below which every delivered record is
	// acknowledged; it is stored at the next checkpoint write.
	Acknowledged checkpoint.Checkpoint
	// Pending is the prepared boundary not yet covered by a checkpoint, or nil.
	Pending *checkpoint.Checkpoint
	// Delivered counts the user records handed to the processor since the lease was taken.
	Delivered int64
	// BatchesInFlight counts batches delivered and not yet fully acknowledged.
	BatchesInFlight int
	// CheckpointAge is how long the oldest delivered record not covered by the stored
	// checkpoint has waited; 0 when every delivered record is checkpointed.
	CheckpointAge time.Duration
}

// MarshalJSON writes the shard's status with snake_case names, positions as strings
// ("<sequence>/<sub-sequence>") and the checkpoint age in milliseconds, as /status shows it.
func (s ShardStatus) MarshalJSON() ([]byte, error) {
	var pending *string
	if s.Pending != nil {
		p := s.Pending.String()
		pending = &p
	}
	return json.Marshal(struct {
		ShardID            string  `json:"shard_id"`
		MillisBehindLatest int64   `json:"millis_behind_latest"`
		Checkpoint         string  `json:"checkpoint"`
		Acknowledged       string  `json:"acknowledged"`
		Pending            *string `json:"pending_checkpoint"`
		Delivered          int64   `json:"records_delivered"`
		BatchesInFlight    int     `json:"batches_in_flight"`
		CheckpointAgeMS    int64   `json:"checkpoint_age_ms"`
	}{s.ShardID, s.MillisBehindLatest, s.Checkpoint.String(), s.Acknowledged.String(), pending, s.Delivered, s.BatchesInFlight, s.CheckpointAge.Milliseconds()})
}

// Status returns a snapshot of the leases this worker holds and their progress. It is safe
// to call at any time, from any goroutine.
func (c *Consumer) Status() Status {
	c.mu.Lock()
	workers := make([]*shardWorker, 0, len(c.shards))
	for _, w := range c.shards {
		workers = append(workers, w)
	}
	c.mu.Unlock()
	now := c.cfg.clock.Now()
	st := Status{WorkerID: c.cfg.workerID, Stream: c.stream, Shards: make([]ShardStatus, 0, len(workers))}
	for _, w := range workers {
		if w.lost() {
			continue
		}
		written, pending := w.h.snapshot()
		a := w.acks.state()
		s := ShardStatus{
			ShardID:            w.id,
			MillisBehindLatest: w.lag.Load(),
			Checkpoint:         written,
			Acknowledged:       a.pos,
			Pending:            pending,
			Delivered:          a.delivered,
			BatchesInFlight:    a.inFlight,
		}
		if !a.oldestUnstored.IsZero() {
			s.CheckpointAge = now.Sub(a.oldestUnstored)
		}
		st.Shards = append(st.Shards, s)
	}
	slices.SortFunc(st.Shards, func(a, b ShardStatus) int { return strings.Compare(a.ShardID, b.ShardID) })
	return st
}

package producer

import (
	"sync/atomic"
	"time"
)

// counters are updated by the pipeline (and Put) and read by Stats.
type counters struct {
	delivered, failed, retried, resent                    atomic.Uint64
	kinesisRecords, kinesisBytes, requests, requestErrors atomic.Uint64
	throttled, refreshes, refreshErrors, mismatches       atomic.Uint64
	inflight                                              atomic.Int64
	lat                                                   [len(latencyBounds) + 1]atomic.Uint64
	latSum                                                atomic.Int64
}

// Stats is a snapshot of a producer's counters; see [Producer.Stats].
type Stats struct {
	// RecordsPut counts user records accepted by Put.
	RecordsPut uint64
	// RecordsDelivered counts user records Kinesis accepted.
	RecordsDelivered uint64
	// RecordsFailed counts user records reported failed.
	RecordsFailed uint64
	// RecordsRetried counts user records sent again after a failure (once per retry).
	RecordsRetried uint64
	// RecordsResent counts user records sent again because their aggregate landed, during a
	// reshard, on a shard whose range does not hold all of them (a KCL consumer would drop
	// it).
	RecordsResent uint64
	// KinesisRecords and KinesisBytes count Kinesis records (an aggregate counts once) and
	// their data bytes accepted by Kinesis.
	KinesisRecords uint64
	KinesisBytes   uint64
	// Requests counts PutRecords calls completed; RequestErrors those that failed whole.
	Requests      uint64
	RequestErrors uint64
	// ThrottledRecords counts Kinesis records rejected with
	// ProvisionedThroughputExceededException.
	ThrottledRecords uint64
	// ShardMapRefreshes counts ListShards refreshes of the shard map, ShardMapErrors the
	// failed ones, and ShardMismatches the Kinesis records that landed on another shard than
	// predicted.
	ShardMapRefreshes uint64
	ShardMapErrors    uint64
	ShardMismatches   uint64
	// BufferedRecords and BufferedBytes are the records (and their bytes) accepted but not
	// yet reported.
	BufferedRecords int64
	BufferedBytes   int64
	// InFlightRequests is the number of PutRecords calls under way.
	InFlightRequests int64
	// With a spool ([WithSpool]): SpooledRecords and SpooledBytes are the records in the
	// spool not yet reported and the bytes of its files; OldestSpooledAge is how long the
	// oldest of them has waited (to within 1024 records); RecordsReplayed counts records
	// an earlier run left in the spool and this one sent; SpoolLostRecords counts records
	// found damaged in the spool (see [Producer.SpoolRecovery]) or lost to a failed write.
	SpooledRecords   uint64
	SpooledBytes     int64
	OldestSpooledAge time.Duration
	RecordsReplayed  uint64
	SpoolLostRecords uint64
	// Latency is the distribution of time from Put to delivery.
	Latency LatencyHistogram
}

// LatencyHistogram is a distribution of delivery latencies.
type LatencyHistogram struct {
	// Bounds are the buckets' upper bounds (inclusive).
	Bounds []time.Duration
	// Counts has one count per bucket plus a last one for latencies above every bound
	// (not cumulative).
	Counts []uint64
	// Count and Sum are the number and total of observations.
	Count uint64
	Sum   time.Duration
}

// RecordsPerKinesisRecord returns the mean number of user records per delivered Kinesis
// record (the aggregation ratio), or 0 before any delivery.
func (s Stats) RecordsPerKinesisRecord() float64 {
	if s.KinesisRecords == 0 {
		return 0
	}
	return float64(s.RecordsDelivered) / float64(s.KinesisRecords)
}

// Stats returns a snapshot of the producer's counters.
func (p *Producer) Stats() Stats {
	c := &p.stats
	s := Stats{
		RecordsDelivered:  c.delivered.Load(),
		RecordsFailed:     c.failed.Load(),
		RecordsRetried:    c.retried.Load(),
		RecordsResent:     c.resent.Load(),
		KinesisRecords:    c.kinesisRecords.Load(),
		KinesisBytes:      c.kinesisBytes.Load(),
		Requests:          c.requests.Load(),
		RequestErrors:     c.requestErrors.Load(),
		ThrottledRecords:  c.throttled.Load(),
		ShardMapRefreshes: c.refreshes.Load(),
		ShardMapErrors:    c.refreshErrors.Load(),
		ShardMismatches:   c.mismatches.Load(),
		InFlightRequests:  c.inflight.Load(),
	}
	b := p.buf
	b.mu.Lock()
	s.BufferedRecords, s.BufferedBytes = b.records, b.bytes
	s.RecordsPut = b.putCount
	if sp := b.spool; sp != nil {
		sp.statsLocked(&s)
	}
	b.mu.Unlock()
	s.Latency.Bounds = latencyBounds[:]
	s.Latency.Counts = make([]uint64, len(c.lat))
	for i := range c.lat {
		s.Latency.Counts[i] = c.lat[i].Load()
		s.Latency.Count += s.Latency.Counts[i]
	}
	s.Latency.Sum = time.Duration(c.latSum.Load())
	return s
}

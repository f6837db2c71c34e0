// Package consumer is the kinlog worker: it leases the shards of a Kinesis stream through a
// checkpoint store, reads them, deaggregates KPL records and hands batches of user records
// to per-shard processors, checkpointing only positions every record below which the
// processor acknowledged as durable.
//
// Build a worker with [New] — a Kinesis client ([KinesisAPI]), a [checkpoint.Store] (the
// KCL-compatible checkpoint/dynamodb in production), the stream and a [ProcessorFactory] —
// and call [Consumer.Run]. Run several replicas with distinct worker ids; they share the
// shards through the lease table.
//
// # Leases
//
// One lease per shard, fenced by owner and lease counter (see [checkpoint.Store]). Every
// failover/10 (1s at the default failover time of 10s; [WithFailoverTime], or as set by
// [WithLeaseScanInterval]) a worker lists the lease table and, if it holds fewer than its
// fair share — ⌈shards needing work /
// live workers⌉, counting the distinct owners of unexpired leases plus itself — takes every
// available lease up to that share at once: unowned ones, ones it owned in an earlier life,
// then expired ones. A lease is expired when its counter has not moved for the failover
// time on the observer's own clock ([checkpoint.Tracker]); no clocks are compared across
// machines. When nothing is available and the most loaded worker holds at least two leases
// more than this one, it steals at most [WithMaxLeasesToStealAtOnce] (default 1) per cycle
// from it; a steal always narrows the spread, so workers never trade a lease back and forth.
//
// Held leases are renewed every failover/3 by a goroutine of their own, independently of
// processing: a slow processor keeps its lease. A renewal refused by the store, or a lease
// that could not be renewed in time before peers may consider it expired, stops the shard
// at once: the processor gets LeaseLost and nothing it acknowledges afterwards is
// checkpointed. All writes of one lease (renewal, checkpoint, prepared boundary, release)
// are serialized by one owner of its state and pass the lease returned by the previous
// write. Every lease-table call has a deadline — failover/3 for a write or a take, the
// failover time for a listing — so a request on a connection that never answers is
// abandoned and retried instead of stalling the shard; a write in flight never holds up
// the renewal of other leases, the lease scan, Status or the metrics.
//
// # Shard discovery and resharding
//
// At start, every [WithShardSyncInterval] (default 1 minute) and whenever a shard ends, the
// worker lists the shards (ListShards, paginated), creates leases for new shards — with their
// parents and hash-key range — and deletes the leases of shards gone from the stream. New
// shards start at the initial position ([WithInitialPosition]: [TrimHorizon] by default,
// [Latest] or [AtTimestamp]); the children of a shard that already has a lease start at
// TRIM_HORIZON. A child is not taken until every parent's lease is at SHARD_END (a parent
// whose lease is gone counts as done), so the records of a partition key keep their order
// across a split or a merge.
//
// # Reading
//
// One reader per held shard polls GetRecords ([WithMaxRecords], default 10000): at once
// after the lease is taken, then no more than 5 calls per second and 2 MB/s per shard. When
// the shard is caught up (an empty response with MillisBehindLatest 0) the wait doubles from
// 200ms up to [WithIdleTimeBetweenReads] (default 1s) and drops back when records arrive.
// ProvisionedThroughputExceeded backs off exponentially with jitter; an expired iterator is
// replaced by one AFTER_SEQUENCE_NUMBER of the last record received. A checkpoint is resumed
// AT its sequence number, skipping user records at or before it, as the KCL does.
//
// A call asks for the records that half a second of the shard's 2 MB/s holds, judged by
// the last response's record sizes (1000 on the first call), and at most [WithMaxRecords]:
// throughput is capped by the shard anyway, and a response stays near 1 MiB instead of up
// to 10 MB, which bounds the memory of many shards read at once. The SDK's client sends
// and signs every request and decodes every error; the success response of GetRecords is
// decoded by kinlog (one buffer per body, shared allocations for a response's data and
// strings) when it is plain JSON, and by the SDK otherwise — both give the same output.
//
// With [WithRetrieval]([FanOut]) each held shard is read through enhanced fan-out instead:
// at start the worker finds the stream consumer ([WithStreamConsumerName]; by default the
// lease table's name, as in the KCL; kinlog consume uses its application key) and registers
// it if it is missing — idempotently across workers — waiting up to 2 minutes for it to be
// ACTIVE. Each shard then gets a SubscribeToShard subscription from its checkpoint (AT its
// sequence number, with the same skip) or initial position; events are deaggregated and
// delivered exactly like GetRecords responses, and MillisBehindLatest comes from them. A
// subscription lasts 5 minutes: the reader subscribes again AFTER the last event's
// ContinuationSequenceNumber, at once when it ended cleanly and with backoff when it
// failed (a broken HTTP/2 stream, LimitExceededException; ResourceInUseException — another
// subscription still open, as after a failover — waits a few seconds). While a batch waits
// for room (backpressure), the subscription is not read: HTTP/2 flow control holds Kinesis
// back, and a subscription that expires meanwhile is renewed from its continuation. The
// last event of a closed shard names its children; an emulator that never sends it
// (kinesis-mock) is caught by the shard sync seeing the shard closed, after which the
// reader finishes the shard with GetRecords. [DeregisterStreamConsumer] removes the
// consumer (it is billed while registered).
//
// KPL aggregates are split into user records numbered by sub-sequence; records that are not
// aggregates — or whose magic, digest or protobuf is wrong — pass through as plain records.
// An aggregate with a user record whose hash key lies outside the shard's range is dropped
// whole, as the KCL does after a reshard (counted in records_dropped_total).
//
// # Checkpoints and backpressure
//
// A processor acknowledges records, possibly later and from another goroutine
// ([Batch.AckThrough], [Batch.Ack]). The worker stores the highest position below which
// every delivered record is acknowledged — at (sequence, sub-sequence) granularity — as
// soon as it moves and at most once per [WithCheckpointInterval] (default 1s). At most
// [WithMaxBatchesInFlight] batches (default 1000) may be delivered and not yet fully
// acknowledged, counted from the oldest: a full shard stops reading until acknowledgements
// free room. [Preparer] writes the two-phase pendingCheckpoint of the KCL; while a boundary
// is pending, checkpoints below it are held back so that it survives until its batch is
// durable.
//
// # Shutdown
//
// When Run's context ends, readers stop, processors get Shutdown (within
// [WithShutdownTimeout], default 30s, with leases still renewed), acknowledged positions
// are checkpointed and leases released so that other workers take them at their next
// lease cycle. A shard that reached its end gets ShardEnded; once every record is
// acknowledged the worker writes SHARD_END and releases the lease, which lets the children
// start. A processor error releases the lease after Shutdown and keeps this worker off the
// shard for the failover time.
//
// # Metrics
//
// With [WithRegisterer], the worker registers, all labelled with the stream:
// kinlog_consumer_leases_held, _lease_takes_total, _lease_steals_total, _lease_losses_total,
// _records_processed_total, _bytes_processed_total, _records_dropped_total,
// _checkpoints_total, _processor_errors_total, _read_errors_total{kind}, and per held shard
// _millis_behind_latest, _checkpoint_age_seconds and _batches_in_flight. [Consumer.Status]
// returns the same state for status endpoints.
package consumer

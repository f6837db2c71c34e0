// Package producer ships application log records into an Amazon Kinesis data stream
// asynchronously: bounded buffering, shard-aware KPL aggregation, PutRecords batching,
// per-shard rate limits, retries and backpressure. Adapters turn log/slog records
// ([NewHandler]) and io.Writer output ([NewWriter]) into producer records.
//
// # Use
//
// Build a [Producer] with [New], passing a Kinesis client (a *kinesis.Client, or anything
// implementing [Client]) and the stream name or ARN. [Producer.Put] buffers a record and
// returns at once, blocking only while the buffer is full; [Producer.TryPut] fails with
// [ErrBufferFull] instead. Outcomes reach the function given with [WithResultHandler];
// [Producer.PutSync] waits for one record's outcome. [Producer.Flush] sends everything
// without waiting for the linger time, and [Producer.Close] flushes, stops the producer's
// goroutines and reports what could not be delivered.
//
// # Aggregation and shards
//
// Records are packed into KPL aggregated records (the format of the AWS Kinesis Producer
// Library, readable by the KCL and by kinlog's consumer) of up to 51200 bytes. The producer
// reads the stream's shard map with ListShards, aggregates per predicted shard and sends
// each aggregate with an explicit hash key inside that shard's range, so every user record
// lands on the shard its own partition key hashes to. When a Kinesis record lands on another
// shard than predicted (the stream was resharded), the map is refreshed; an aggregate whose
// records do not all belong to the shard it landed on — which a KCL consumer would drop
// whole — is sent again, re-routed. A record above the aggregate limit, or the only record
// of an aggregate, goes out unaggregated. Without a shard map (ListShards failing),
// records go out unaggregated, routed by their own keys.
//
// # Batching, limits and retries
//
// PutRecords requests carry at most 500 Kinesis records and 5 MiB ([WithMaxRequestBytes],
// up to 10 MiB), and go out when full or when the oldest record has waited the linger time
// (100 ms, [WithLinger]); at most 8 are in flight ([WithMaxInFlight]). Per-shard token
// buckets hold each shard to 150% ([WithRateLimit]) of its 1 MiB/s and 1000 records/s write
// limits.
//
// What is retried, with jittered exponential backoff (100 ms doubling to 5 s,
// [WithRetryBackoff]), until the record's time to live runs out:
//
//   - entries that PutRecords rejects with ProvisionedThroughputExceededException or
//     InternalFailure;
//   - whole calls that got no answer: connection refused or reset, EOF, TLS handshake and
//     DNS failures, an answer cut short, and calls that ran out of [WithRequestTimeout]
//     (30 s per call, the SDK's own attempts included) — the SDK reports all of these as a
//     response error with status code 0;
//   - whole calls answered with throttling (429, LimitExceededException, ThrottlingException,
//     KMSThrottlingException and the like) or a server fault (5xx).
//
// Only faults of the request itself fail at once, reported with the error: stream not found,
// access denied, validation errors, a disabled or missing KMS key (a 4xx answer with a client
// fault code, or the SDK refusing the parameters). A record whose time to live ([WithRecordTTL]:
// 30 s by default, none with a spool) runs out is reported with [ErrRecordExpired], wrapping
// the last failure. Every record accepted by Put ends in exactly one [Result] — delivered,
// failed with a reason, or (with a spool, when Close gives up) kept on disk for the next
// start — so no accepted record is ever dropped silently.
//
// # What survives a crash
//
// Without a spool, accepted records live in memory only: a crash of the process (SIGKILL,
// OOM kill, panic) loses every record not yet confirmed by Kinesis — up to the whole buffer
// (64 MiB by default) during an outage. With [WithSpool], every accepted record is appended
// to checksummed segment files and deleted only once Kinesis confirmed it (or it was
// reported failed); the next producer on the directory sends what is left, in the order it
// was put, with the same producer id. When a record is on disk depends on
// [SpoolOptions].Sync:
//
//   - [SyncWrite] (the default): written before Put returns — survives a process crash;
//     fsynced every SyncInterval (100 ms) — a machine crash or power loss can lose the last
//     interval.
//   - [SyncFsync]: fsynced before Put returns — survives both.
//   - [SyncBatched]: written and fsynced every SyncInterval — any crash can lose the last
//     interval; the cheapest.
//
// A torn record at the end of a segment (a crash in the middle of a write) or any other
// damage is found by its CRC-32C at start: the good records before it are kept and sent,
// the damaged bytes are saved beside the segment and reported ([Producer.SpoolRecovery],
// [Stats].SpoolLostRecords); nothing panics. The spool is bounded by bytes
// ([SpoolOptions].MaxBytes, 1 GiB): when it is full Put waits and TryPut fails with
// [ErrBufferFull], as with the memory buffer, and records beyond the memory buffer wait on
// disk, so an outage can last as long as the disk bound allows. One directory belongs to
// one producer at a time ([ErrSpoolLocked]).
//
// Delivery into Kinesis is at-least-once with or without a spool: a request that Kinesis
// executed but whose answer was lost (a timeout, a reset after the request was sent, a crash
// between the send and the spool's acknowledgement) is sent again, and its records are then
// in the stream twice. Each spooled record keeps a stable identity — the spool's producer id
// and the sequence number it got when it was put — across retries and restarts. Records of
// one partition key reach Kinesis in the order they were put when one request is in flight
// ([WithMaxInFlight](1)); with more, or after a retry, two requests can land in either order,
// as with the KPL.
//
// # Cost
//
// The path from Put to a PutRecords request allocates nothing per record in steady state:
// records are copied into shared chunks, queued in reused blocks, aggregated into one
// reused aggregator per shard, and encoded into recycled buffers. Partition-key hashes are
// cached, the aggregates' MD5 trailers are computed eight at a time with SIMD, and
// PutRecords bodies are written by the producer into reused buffers (see
// [WithSDKSerializer]).
//
// # Validation
//
// Put rejects, with a typed error and without affecting other records, a partition key that
// is empty or longer than 256 characters ([ErrInvalidPartitionKey]), an explicit hash key
// that is not a decimal 128-bit integer ([ErrInvalidExplicitHashKey]), a record larger than
// the maximum record size (1 MiB, up to 10 MiB with [WithMaxRecordSize]:
// [ErrRecordTooLarge]), and any record after Close ([ErrClosed]).
//
// # Metrics
//
// [Producer.Stats] returns a snapshot of counters (records put, delivered, failed, retried;
// Kinesis records and bytes; buffered records and bytes; requests in flight; delivery
// latency). [NewCollector] exports them to Prometheus.
package producer

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
// limits. Entries failing with ProvisionedThroughputExceededException or InternalFailure,
// and whole requests failing with a transport error or server fault, are retried with
// jittered exponential backoff until the record's time to live (30 s, [WithRecordTTL])
// runs out, when the record is reported with [ErrRecordExpired]. Other errors (stream not
// found, access denied, KMS errors) are reported at once. Each call is bounded by
// [WithRequestTimeout] (30 s).
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

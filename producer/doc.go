// Package producer ships application log records into an Amazon Kinesis data stream
// asynchronously: bounded buffering, shard-aware KPL aggregation, PutRecords batching,
// per-shard rate limits, retries and backpressure. Adapters turn log/slog records and
// io.Writer output into producer records.
package producer

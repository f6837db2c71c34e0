// Package s3 is the archive sink: a consumer processor that buffers each shard's records,
// writes them to S3 under partitioned, deterministic keys (NDJSON or Parquet, compressed),
// writes analytics rollups beside them, and acknowledges records to the consumer only once
// S3 confirmed every object.
//
// # Usage
//
//	sink, err := s3.New(s3Client, "my-bucket", "my-stream",
//		s3.WithEncoding(encode.Config{Format: encode.Parquet}),
//		s3.WithPrefix("logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/"))
//	c, err := consumer.New(kinesisClient, store, "my-stream", sink.NewProcessor)
//
// The caller configures the client: region, credentials, endpoint (AWS_ENDPOINT_URL_S3),
// and path-style addressing for MinIO (s3.Options.UsePathStyle).
//
// # Buffering
//
// A shard's records are buffered until their size reaches [WithBufferSize] (5 MiB of
// record data), the oldest waited [WithBufferInterval] (60 s), the shard ends or the worker
// shuts down. A flush writes one object per prefix. A record that would open more than
// [WithMaxOpenPartitions] (500) prefixes in one flush starts the next flush instead. While
// two flushes wait for S3, ProcessRecords blocks: a slow or broken bucket slows the
// consumer down instead of filling memory.
//
// # Exactly once
//
// An object's key is a pure function of the stream, the shard, its prefix (a function of
// its records) and the position of its first record:
//
//	<prefix><stream>-<shard>-<sequence>-<sub-sequence><extension>
//
// and its bytes are a pure function of its records. Before writing a flush the processor
// records the flush's last position with the worker's two-phase Prepare; after S3
// confirmed every object it acknowledges exactly the flush's records. A worker that takes
// over a shard with a pending boundary cuts its first flush exactly there, ignoring its
// own triggers, so a replay lands on the same keys with the same bytes and no object of a
// crashed run survives beside different ones. Analytics rollups and error objects follow
// the same rule. On lease loss the buffer is dropped without writing; the new owner
// replays it.
//
// # Failures
//
// Writes are retried with jittered exponential backoff ([WithRetryBackoff]) until they
// succeed or the lease is lost: an unwritable bucket stops acknowledgements (the consumer's
// lag grows, nothing is lost), and every failed attempt is logged and counted. Each attempt
// has a deadline ([WithRequestTimeout]: 30 s plus 1 s per MiB by default), so an upload on
// a connection that never answers is abandoned and retried on a new one. Each object
// carries a CRC32C checksum (configurable, [WithChecksum]) that S3 verifies; objects from
// [WithMultipart]'s threshold (32 MiB) upload in parts through feature/s3/manager.
//
// # Error output
//
// Records that cannot be partitioned (a partition member missing, empty or not a scalar;
// no readable time with [WithTimeField]; not JSON when the prefix needs members) or
// encoded, and the user records of KPL aggregates read from a shard whose hash-key range
// they lie outside ([ErrorOutsideShard]; the consumer delivers them with
// consumer.WithOutsideShardRecords), go to the error prefix ([WithErrorPrefix], default
// errors/!{firehose:error-output-type}/dt=.../hour=.../) as gzip NDJSON [ErrorRecord]
// lines holding their raw bytes and the reason.
//
// # Metrics
//
// [WithRegisterer] registers: kinlog_sink_records_archived_total,
// kinlog_sink_records_errored_total{type}, kinlog_sink_objects_written_total{kind},
// kinlog_sink_bytes_written_total{kind}, kinlog_sink_flushes_total,
// kinlog_sink_flush_duration_seconds, kinlog_sink_errors_total{type},
// kinlog_sink_oldest_unflushed_record_age_seconds and kinlog_sink_buffered_records, all with
// a constant stream label.
package s3

// Package s3 is the archive sink: it buffers records per shard, writes them to S3 under
// partitioned, deterministic keys (NDJSON or Parquet, compressed) and acknowledges them to the
// consumer only once S3 confirmed every object.
package s3

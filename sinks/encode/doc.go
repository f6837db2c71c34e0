// Package encode turns Kinesis log records into archive objects: NDJSON lines or Parquet
// files with the log schema, compressed with gzip, zstd or Snappy. Every object's bytes
// are a pure function of its records: codec levels are fixed and no header carries a time,
// a host or a random value, so that a replayed batch overwrites its objects with identical
// bytes.
//
// # Parsing
//
// [Doc.Parse] validates a record as JSON in one pass (the grammar of encoding/json) and
// indexes the top-level members of an object without allocating; [Doc.Lookup] follows
// dotted paths. The archive sink parses each record once and uses the document for
// partitioning, encoding and rollups.
//
// # NDJSON
//
// With [FramingLines] every record becomes one line: JSON is kept byte for byte (compacted
// only when it spans lines), and a record that is not a JSON object is wrapped as
// {"raw": "..."} or, when it is not UTF-8, {"raw_base64": "..."}, so nothing is dropped and
// every line is an object.
// [FramingRaw] writes records exactly as received.
//
// # Parquet
//
// [Row] is the log schema: time, level, service, message, the remaining members as a JSON
// attributes column, and the Kinesis metadata (shard, sequence, sub_sequence,
// arrival_time, partition_key). Files have one row group and v1 data pages with
// statistics, readable by Athena, DuckDB and Spark. Records that are not valid UTF-8 cannot
// be stored ([ErrInvalidUTF8]); the sink sends them to its error output.
package encode

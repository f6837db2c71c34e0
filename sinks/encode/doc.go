// Package encode owns the archive format: it turns Kinesis log records into archive
// objects (NDJSON lines or Parquet files with the log schema, compressed with gzip, zstd or
// Snappy), names their extensions, and reads them back. Every object's bytes are a pure
// function of its records: codec levels are fixed and no header carries a time, a host or
// a random value, so that a replayed batch overwrites its objects with identical bytes.
//
// # Parsing and field paths
//
// [Doc.Parse] validates a record as JSON in one pass (the grammar of encoding/json) and
// indexes the top-level members of an object without allocating. [Doc.Lookup] is the one
// field-path rule of kinlog: a member whose name is the whole path ({"http.status":500}),
// else a dotted path into nested objects ({"http":{"status":500}}). The archive sink
// parses each record once and uses the document for partitioning, encoding and rollups;
// the query tool finds filter, projection and count-by fields the same way.
//
// # Object names
//
// An object's extension names its encoding (.json[.gz|.zst|.snappy], .raw[...],
// .parquet): [Encoder.Extension] writes it and [ObjectConfig] reads it back.
//
// # NDJSON
//
// With [FramingLines] every record becomes one line: JSON is kept byte for byte (compacted
// only when it spans lines), and a record that is not a JSON object is wrapped as
// {"raw": "..."}, so nothing is dropped and every line is an object. [FramingRaw] writes
// records exactly as received.
//
// A line is the record's own data and nothing else: NDJSON objects carry no metadata, not
// the Kinesis shard or sequence nor the record's kinlog identity (by which the sink drops
// duplicates, [Meta].ID). An archive that must show identities for audit is written as
// Parquet, which stores them in kinlog_id.
//
// # Parquet
//
// [Row] is the log schema: time, level, service, message, the remaining members as a JSON
// attributes column, the Kinesis metadata (shard, sequence, sub_sequence, arrival_time,
// partition_key), a layout column from which the record's JSON is rebuilt, and last
// kinlog_id, the record's kinlog identity ("<origin>/<seq>" or "<origin>/<seq>+<span>",
// null when it has none). Files have one row group and v1 data pages with statistics,
// readable by Athena, DuckDB and Spark. Files written before a column was added read with
// it null: kinlog_id is null in files of layout 1.1.0 and earlier ([ParquetLayoutVersion]).
//
// # Invalid UTF-8
//
// Both formats store the same text: a byte that is not part of valid UTF-8 is replaced by
// U+FFFD, one per byte, as encoding/json reads it. A JSON object keeps its structure (only
// the string with the bad byte changes); other records keep their text.
//
// # Reading back
//
// [Decoder] reads any archive object back into records, one JSON object per line, the same
// bytes whichever encoding wrote them (in a canonical form: compact, strings escaped as
// log/slog does), so that a query over an NDJSON archive and one over a Parquet archive
// of the same records print the same output. The metadata is not part of a record: a
// Parquet record's identity is read beside it ([Decoder.ID]).
package encode

// Package query reads the kinlog archive and analytics rollups back from S3: partition
// pruning by time, filters, projections, aggregates, and records in time order.
//
// # Records
//
// [Run] returns each record as [encode.Decoder] reads it back: one JSON object, the same
// bytes whether an NDJSON, a Parquet or a records-as-received object holds it. Records
// that were not JSON objects come back as {"raw": "..."}; bytes that were not UTF-8 as
// U+FFFD. Which objects are archive objects, and how each is decoded, follows from its
// name ([encode.ObjectConfig]); rollup objects under the same prefix are skipped.
//
// # Identity
//
// A record's kinlog identity (by which the archive sink drops duplicates) is kept beside
// it, not in it: Parquet objects store it in the kinlog_id column, NDJSON objects do not
// store it. With [Request.KinlogID] (kinlog query --kinlog-id) each record from a Parquet
// object carries it as its last member, "kinlog_id":"<origin>/<seq>[+<span>]", for
// filters, projections and output; see [Run]. The Athena table of a Parquet archive
// ([AthenaDDL]) declares the column `kinlog_id` string.
//
// # Fields
//
// Filters ([ParseFilter]), projections ([NewWriter]) and scanned counts ([ScanRollup]) find
// a field as the archive sink's partitioning and rollups do ([encode.Doc.Lookup]):
// http.status is a member called "http.status", else "status" inside the object "http".
//
// # Parquet objects
//
// Parquet objects are read column by column: a row group at a time, only the columns a
// query needs (the layout column, which says which member each column holds, then the
// columns of each condition in turn, for the rows still in play). Conditions on members
// that dictionary-encoded columns hold (level, service) are tested once per dictionary
// entry; a row group whose time statistics lie outside an exact time range
// ([Request.TimeFields]), or in which no row passes the conditions on its small columns, is
// skipped without reading the rest ([Stats.RowGroupsPruned]). A record is rebuilt only for
// a row that is returned, or where the columns cannot answer exactly (a member inside an
// object-valued message, files written before the layout column): the answers are always
// those of decoding every record and filtering it. [Count] counts without rebuilding
// records; [ScanRollup] (--count-by, --stats) takes each record's time, size and members
// from the columns.
//
// # Parallelism and memory
//
// Objects are fetched and decoded on [Request.Parallelism] goroutines at once (every core
// is used), within [Request.MemoryBudget] ([DefaultMemoryBudget], 512 MiB; each object
// counts [ObjectMemoryFactor] times its stored size), and returned in the same order and
// with the same results as reading them one at a time.
//
// # Order
//
// Records come back by their own time, oldest first ([OrderAsc]) or newest first
// ([OrderDesc]), and [Request.Limit] keeps the first records in that order. Partitions are
// read in time order, so a query holds about one partition's matching records (bounded by
// [Request.SortBuffer]) and a limited query stops early; [OrderNone] streams records in
// archive order and holds nothing, which is what aggregates use. See [Run] for the rules.
package query

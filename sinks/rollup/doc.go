// Package rollup computes the analytics rollups the archive sink writes beside the logs:
// per tumbling window (1 minute by default, by each record's time) and per combination of
// dimension values (service, level and status by default), the record count, the bytes,
// and for configured numeric members count, sum, min, max and a DDSketch quantile sketch.
//
// # Exactly once
//
// The sink rolls up exactly the records of each archived batch and writes the rows under
// keys derived like the archive's, so a replayed batch overwrites its rollups with the same
// bytes: rollups stay consistent with the archive.
//
// # Format
//
// A rollup object is gzip-compressed NDJSON, one [Row] per line ([Marshal],
// [EncodeObject]), with sketches in the sketches-go binary encoding, base64.
//
// # Merging
//
// The same window and dimensions appear in many objects (one per batch, per shard).
// [Merge] combines rows — counts and sums add, sketches merge without losing accuracy —
// and can coarsen windows or drop dimensions; the query tool uses it. Error rates follow
// from counts by level or status.
package rollup

// Package lambda is kinlog's serverless mode: the archive sink of `kinlog consume` as an
// AWS Lambda function on a Kinesis event source mapping. It writes the same archive — the
// same encoders, prefixes, object names, error output and rollups, through
// [github.com/kinlog/kinlog/sinks/s3.Sink.Build] and Write — exactly once, although Lambda invokes it at
// least once and moves batch boundaries between attempts. The bootstrap binary is
// cmd/kinlog-lambda; infra/terraform deploys it.
//
// # Why names alone do not give exactly-once
//
// The worker cuts a replayed flush exactly where the crashed one was cut, so a replay
// overwrites the same keys with the same bytes. Lambda does not let a function choose its
// batches: after a partial failure it resumes at the reported record, after a function
// error it may bisect the batch, and a batch read later may hold more records. Attempt 1
// may write [h..z] and fail at m; attempt 2 writes [m..z] under another name: m..z twice.
//
// # The protocol
//
// Each shard has a progress item in a DynamoDB table of its own (key "<stream>/<shard>"):
// the committed position (every record up to it is archived), the keys of the objects of
// an attempt that is not committed ("pending"), and a version. Every write is conditional
// on the version read, so an item changes only from the state its writer saw. An
// invocation:
//
//  1. decodes the event (one shard; sequence numbers increasing; [ErrMalformedEvent]
//     otherwise) and deaggregates KPL records, dropping aggregates that lie outside the
//     shard's hash-key range as the worker does;
//  2. reads the shard's item (consistent read) and skips every user record at or before the
//     committed position — at sub-sequence granularity;
//  3. cuts the rest into chunks of whole Kinesis records of about the chunk size (the
//     worker's sink.s3.flush_size), so that an object never splits an aggregate and a
//     failure can be reported at a Kinesis record;
//  4. for each chunk: builds its objects (keys named by their first record, as the
//     worker's); deletes the pending objects of an earlier attempt that this chunk does
//     not overwrite; records the chunk's keys as pending, with the time until which this
//     attempt may write them (its deadline); writes the objects; commits the chunk's last
//     record and clears pending.
//
// An attempt that finds pending objects first waits until the attempt that wrote them can
// no longer write: its recorded deadline — or the time it gave up, which an attempt that
// returns with objects pending records — plus [DefaultWriteGrace]. Without that wait, a PUT
// whose bytes had all reached S3 when its attempt died could complete after the next
// attempt deleted or overwrote its object (the tests saw it: a rollup counted twice). If the
// wait does not fit in the invocation, it reports the batch failed, to be retried later.
//
// An object therefore exists only if its records are committed, or if it is listed as
// pending — and the next attempt on the shard removes or overwrites exactly the pending
// objects before it writes anything. Committed chunks cover disjoint runs of the shard, so
// no record is archived twice, whatever the batch boundaries, timeouts or crashes between
// any two steps. A failure to read or write DynamoDB or S3 is answered with a partial batch
// response at the first record not committed ([Response]); S3 writes are retried until
// the invocation's deadline less [DefaultReserve].
//
// # ParallelizationFactor must be 1
//
// A per-shard position needs batches of a shard in order, one at a time. With a
// ParallelizationFactor above 1, Lambda processes batches of one shard concurrently, each
// holding the records of some partition keys. The function detects it two ways and fails
// the invocation with a message saying so: a conditional write that finds the item changed
// under it ([ErrConflict]), and a batch that starts before the committed position and ends
// after it without containing it ([ErrNotContiguous]).
//
// # Discarded batches
//
// When Lambda discards a batch (retries or record age exhausted), the on-failure
// destination receives a record of it and processing goes on after it: its records that
// were not committed are missing from the archive. `kinlog replay` re-archives them from
// the stream, or from the S3 on-failure record, skipping records the archive holds.
//
// # Configuration
//
// The bootstrap reads the worker's configuration keys from the environment:
// KINLOG_SINK_S3_BUCKET, KINLOG_SINK_S3_PREFIX, KINLOG_SINK_S3_ENCODING, KINLOG_ANALYTICS_*
// and the rest of the sink and analytics sections, plus KINLOG_PROGRESS_TABLE.
package lambda

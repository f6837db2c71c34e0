// Package esm drives a Lambda function the way an AWS Lambda event source mapping (ESM) on a
// Kinesis stream does, for tests only: it reads the local Kinesis emulator with GetRecords and
// invokes the function in the real AWS Lambda Runtime Interface Emulator ([StartRIE], one
// per shard). Nothing else on this machine runs an ESM. Production code never imports it.
//
// A [Driver] is one mapping over one stream ([Config] holds its parameters, each zero value
// being the AWS default); [Driver.RunUntilCaughtUp] processes every shard until all are read
// to their end, [Driver.Run] until its context ends, and [Driver.Invocations] and
// [Driver.Stats] tell tests what happened. An [RIE]'s [Result] carries the function's
// duration, init duration and peak memory for each invocation.
//
// # Rules implemented
//
// From https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html:
//   - The event is {"Records":[...]} with each record as in the page's example event
//     (kinesis.{kinesisSchemaVersion "1.0", partitionKey, sequenceNumber, data in base64,
//     approximateArrivalTimestamp in seconds with milliseconds}, eventSource "aws:kinesis",
//     eventVersion "1.0", eventID "<shardId>:<sequenceNumber>", eventName
//     "aws:kinesis:record", invokeIdentityArn, awsRegion, eventSourceARN), in that order.
//   - One batch holds records of one shard, in order; a shard has one batch in flight
//     (ParallelizationFactor 1); shards are processed concurrently.
//   - A shard is polled once a second when caught up, and batches are invoked back to back
//     while records are available (GetRecords stays within 5 calls per second per shard).
//   - Lambda invokes when the batch is full, the batching window ends or the payload reaches
//     6 MB; the default window is 0 (invoke as soon as records are read).
//
// From https://github.com/awslabs/kinesis-aggregation (AWS's KPL aggregation modules for
// Lambda): Lambda does not deaggregate KPL records, so records go as Kinesis stored them.
//
// From https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventsourcemapping.html
// (batching behaviour): the next batching window begins when the previous invocation
// completes; the 6 MB payload limit cannot be changed (a batch stops before the record that
// would exceed it).
//
// From https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html:
// BatchSize 1..10,000 (default 100), MaximumBatchingWindowInSeconds 0..300 (default 0),
// MaximumRetryAttempts -1..10,000 (default -1, infinite), MaximumRecordAgeInSeconds -1 or
// 60..604,800 (default -1, infinite), BisectBatchOnFunctionError (default false),
// FunctionResponseTypes [ReportBatchItemFailures], StartingPosition.
//
// From https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-batchfailurereporting.html:
//   - Without ReportBatchItemFailures the response is not read: only a function error fails
//     a batch.
//   - With it, an empty or null batchItemFailures, an empty or null response is a complete
//     success; an empty string, null, or missing ("bad key name") itemIdentifier is a
//     complete failure; otherwise Lambda checkpoints before the lowest reported sequence
//     number and retries from it.
//   - A failed invocation is bisected when BisectBatchOnFunctionError is on, whatever
//     ReportBatchItemFailures; with both, a partial failure retries the records from the
//     returned sequence number only.
//
// From https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html:
//   - A function error fails the whole batch; Lambda retries until the records exceed
//     MaximumRecordAge or MaximumRetryAttempts is reached; an invocation that could not be
//     made at all is retried without counting (until the records are too old).
//   - BisectBatchOnFunctionError splits a failed batch in two and retries each half;
//     splitting does not consume the retry quota.
//   - A batch that fails those measures is discarded and processing goes on after it; with an
//     on-failure destination its record goes there first. For Amazon S3 the record is the
//     page's example "Amazon S3 invocation record" ([FailureRecord]: requestContext,
//     responseContext, version, timestamp, KinesisBatchInfo with every field, and payload, the
//     invocation's event as an escaped JSON string), under the key
//     aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>
//     ([FailureKey]).
//
// From https://docs.aws.amazon.com/streams/latest/dev/kinesis-using-sdk-java-after-resharding.html:
// after a reshard, a shard's records are read only after its parents' (ParentShardId,
// AdjacentParentShardId from ListShards) have been read to their end, which GetRecords marks
// with no NextShardIterator.
//
// # Choices where the documentation is silent
//
//   - Which records a retry holds beyond its first: each retry is, chosen with
//     [Config.Seed], either the failed records again ([ShapeSame]) or a batch from the same
//     first record refilled with records read meanwhile ([ShapeGrown]). The first record is
//     the documented one: the batch's first after a whole-batch failure, the lowest reported
//     item after a partial failure. Bisected halves are retried as they are.
//   - A partial failure counts as a retry of the rest of the batch.
//   - An itemIdentifier that is not a sequence number of the batch fails the whole batch; a
//     response that is not a JSON object, or whose batchItemFailures is not a list, succeeds.
//   - Records older than MaximumRecordAge are discarded before any invocation too (the
//     leading ones of a batch), with the condition [ConditionRecordAge] and no
//     responseContext when the batch was never invoked.
//   - responseContext.functionError is "Unhandled" after a function error and absent after a
//     partial or complete failure reported in batchItemFailures; approximateInvokeCount is
//     the number of invocations of the discarded batch since it was formed (a bisected half
//     counts its own).
//   - The on-failure payload is the event of exactly the discarded records.
//   - A single record larger than the payload limit is sent alone.
//   - [S3Destination.Prefix] goes before the documented key (AWS has no prefix).
//
// # Not modelled
//
// ParallelizationFactor above 1, tumbling windows, filter criteria, enhanced fan-out,
// AT_TIMESTAMP, on-failure destinations other than S3, on-success destinations, throttling
// and concurrency limits, the ESM's own scaling and its occasional duplicate batches beyond
// retries, the iterator age metric, and Kinesis retention expiring records. A function's
// timeout is the RIE's (AWS_LAMBDA_FUNCTION_TIMEOUT); its memory size is not enforced.
package esm

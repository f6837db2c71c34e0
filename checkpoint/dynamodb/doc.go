// Package dynamodb is the checkpoint store backed by a DynamoDB lease table with the schema of
// the Java KCL (2.x/3.x), so kinlog and KCL tooling read the same table.
//
// # Table
//
// One item per shard, hash key leaseKey (S). [Store] reads and writes leaseOwner (S,
// absent when unowned), leaseCounter (N), checkpoint (S) and checkpointSubSequenceNumber (N),
// pendingCheckpoint (S) and pendingCheckpointSubSequenceNumber (N),
// ownerSwitchesSinceCheckpoint (N), parentShardId and childShardIds (SS), startingHashKey and
// endingHashKey (S); a lease whose key is a KCL multi-stream key
// (account:stream:epoch:shardId, see checkpoint.StreamView) is created with the KCL's
// streamName and shardId (S) too. Other attributes (the KCL 3.x throughputKBps, checkpointOwner,
// entityType, ...) are left alone. [Store.EnsureTable] creates the table with on-demand
// billing ([WithProvisionedThroughput] for provisioned) and waits until it is ACTIVE.
//
// Every expression names attributes through ExpressionAttributeNames: DynamoDB reserves
// hundreds of words.
//
// # Fencing
//
// Every write by a lease holder (renew, release, checkpoint, prepare) is an UpdateItem
// conditional on leaseOwner and leaseCounter being those the holder last saw, and sets
// leaseCounter to the next value; a take is conditional on the owner and counter the taker
// observed. Checkpoint and prepare are also conditional on the stored checkpoint being the
// one in the holder's lease, and refuse a position before it ([checkpoint.ErrRegression]),
// so no interleaving moves a checkpoint backwards. Updates return the item as stored
// (ReturnValues ALL_NEW).
//
// When a condition fails, the store reads the item once (strongly consistent) to say why:
// the lease is gone or held by someone else ([checkpoint.ErrLeaseLost] for a holder,
// [checkpoint.ErrConflict] for a taker), or the item is exactly what this write would have
// produced — the write was applied and repeated, so it succeeds (see idempotent repeats in
// [checkpoint.Store]). Conditional failures are never retried.
//
// # Retries and throttling
//
// The store makes one call per operation (two when a condition fails) and does not retry.
// Throttling (ProvisionedThroughputExceededException, ThrottlingException, request limits)
// and transient network and 5xx errors are retried by the SDK's retryer inside that one
// call, with jittered exponential backoff that honours ctx. Its default (standard mode)
// gives up after 3 attempts, or sooner when its retry quota is spent; raise the limit on the
// client you pass (or with the AWS_MAX_ATTEMPTS and AWS_RETRY_MODE variables):
//
//	dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.RetryMaxAttempts = 10 })
//
// An error that outlives the retryer is returned wrapped (match SDK errors with errors.As);
// the caller may repeat the write with the same lease, which is safe because repeats are
// idempotent.
//
// # Items written by other tools
//
// Missing attributes read as zero values, as the KCL reads them. An attribute of an
// unexpected type (leaseCounter stored as a string, parentShardId as a plain string), a number
// out of range or a checkpoint that is not a sequence number makes the read fail with an
// [*AttributeError] naming the table, lease and attribute — never a panic.
//
// # Migration from vmware-go-kcl-v2
//
// [ImportVMware] copies the checkpoints of a vmware-go-kcl-v2 table (hash key ShardID) into
// a kinlog lease table, so a consumer switching libraries does not reprocess its shards.
package dynamodb

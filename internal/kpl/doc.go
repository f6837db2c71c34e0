// Package kpl encodes and decodes the KPL aggregated record format, shared by the producer
// and the consumer. It is the only implementation of the format in kinlog.
//
// # Layout
//
// One Kinesis record that carries many user records is
//
//	[0..4)    magic F3 89 9A C2 (see [Magic])
//	[4..N)    protobuf (proto2) message AggregatedRecord
//	[N..N+16) MD5 digest of bytes [4..N)
//
// where AggregatedRecord holds a partition-key table (field 1), an explicit-hash-key table
// (field 2) and the records (field 3), each record naming its keys by table index.
//
// # Encoding
//
// An [Aggregator] collects user records, deduplicating keys into the tables, keeps the
// encoded size up to date as records are added ([Aggregator.TryAdd] refuses a record that
// would push the aggregate over a limit) and encodes into a caller-supplied buffer
// ([Aggregator.AppendEncode]). It is reusable after [Aggregator.Reset] without allocating.
//
// # Decoding
//
// [Decode] and [AppendDecode] turn a Kinesis record's data into user records. Data that is
// not an aggregate (wrong magic, 16 or fewer bytes after the magic, MD5 mismatch, protobuf
// that does not parse, a key index out of range) is reported with ok=false, so the caller
// treats it as one plain record. Decoding never panics, whatever the input.
//
// # Hash keys
//
// A user record's hash key is its explicit hash key when it has one, else the MD5 of its
// partition key read as an unsigned 128-bit big-endian integer ([PartitionKeyHash]).
// [HashKey] is that integer as 16 big-endian bytes, so hash keys compare with
// [HashKey.Compare] and never need math/big. [HashKeyRange] is a shard's inclusive range;
// [AllInRange] tells whether every user record of an aggregate belongs to a shard, which is
// how the KCL decides to keep (all in range) or drop (any outside) an aggregate after a
// reshard.
package kpl

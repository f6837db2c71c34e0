// Package consumer is the kinlog worker: it leases the shards of a Kinesis stream through a
// checkpoint store, reads them, deaggregates KPL records and hands batches of user records
// to per-shard processors, checkpointing only positions every record below which the
// processor acknowledged as durable.
package consumer

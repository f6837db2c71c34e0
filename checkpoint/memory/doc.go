// Package memory is an in-memory checkpoint store with the same semantics as
// checkpoint/dynamodb, for unit tests of the consumer.
//
// # Semantics
//
// [Store] implements [checkpoint.Store] exactly as checkpoint/dynamodb does: every write
// increments the lease counter, holder writes are fenced by owner and counter
// ([checkpoint.ErrLeaseLost]), takes by the observed owner and counter
// ([checkpoint.ErrConflict]), checkpoints never move backwards
// ([checkpoint.ErrRegression]). Both stores pass the acceptance suite in
// checkpoint/checkpointtest. A write repeated with the same arguments after it succeeded
// succeeds again without a change (see [checkpoint.Store] on idempotent repeats).
//
// # Concurrency
//
// One mutex guards the table. Leases are deep-copied on the way in and out, so a caller
// that mutates a returned lease (or its slices) cannot change the store.
//
// # Context
//
// Every method returns the context's error, wrapped, if the context has already ended;
// otherwise it never blocks.
package memory

// Package checkpoint defines the lease and checkpoint store the consumer relies on: leases
// fenced by owner and lease counter, checkpoints at (sequence, sub-sequence), and the
// two-phase pending checkpoint that makes archive batches replay to the same objects.
//
// Backends live in subpackages: checkpoint/dynamodb (the KCL-compatible lease table) and
// checkpoint/memory (for tests). checkpoint/checkpointtest is the acceptance suite both pass.
package checkpoint

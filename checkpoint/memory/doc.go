// Package memory is an in-memory checkpoint store with the same semantics as
// checkpoint/dynamodb, for unit tests of the consumer.
package memory

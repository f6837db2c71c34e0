package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/kpl"
)

// Record is one user record: a plain Kinesis record, or one user record of a KPL aggregate.
type Record struct {
	ShardID string
	// SequenceNumber is the sequence number of the Kinesis record that carried it.
	SequenceNumber string
	// SubSequenceNumber is the record's index inside its KPL aggregate (0 for plain records).
	SubSequenceNumber uint64
	// Aggregated reports whether the record came out of a KPL aggregate.
	Aggregated      bool
	PartitionKey    string
	ExplicitHashKey string
	// ArrivalTime is Kinesis's ApproximateArrivalTimestamp of the carrying record.
	ArrivalTime time.Time
	Data        []byte
	// OutsideShard marks the user records of a KPL aggregate some of whose user records
	// hash outside the shard's range. The KCL drops such aggregates (the KPL sends them again
	// to the right shard); they are delivered, marked, only with
	// [WithOutsideShardRecords].
	OutsideShard bool
	// ID is the user record's kinlog identity (origin, sequence number, acknowledgement
	// floor), from the tags of its KPL aggregate; zero for records without one.
	ID Identity
}

// Identity is a user record's kinlog identity: see docs/identity.md.
type Identity = kpl.Identity

// Position returns the record's checkpoint position.
func (r *Record) Position() checkpoint.Checkpoint {
	return checkpoint.Checkpoint{Sequence: r.SequenceNumber, SubSequence: r.SubSequenceNumber}
}

// Batch is a run of consecutive user records of one shard handed to a [Processor]. The
// processor acknowledges records once they are durable — possibly later and from another
// goroutine — with [Batch.AckThrough] or [Batch.Ack]. The worker checkpoints only the highest
// position below which every delivered record is acknowledged.
type Batch struct {
	ShardID            string
	Records            []Record
	MillisBehindLatest int64

	mu     sync.Mutex
	acked  int
	onAck  func(n int)
	onMark func(n int, state []byte) // the worker's: acknowledge and mark a boundary
}

// NewBatch builds a batch whose acknowledgements call onAck with the number of leading
// records acknowledged so far. The worker builds batches itself; NewBatch is for tests of
// processors and for custom drivers.
func NewBatch(shardID string, records []Record, onAck func(n int)) *Batch {
	return &Batch{ShardID: shardID, Records: records, onAck: onAck}
}

// NewBatchWithMarks is [NewBatch] whose [Batch.AckThroughState] calls onMark (with the
// number of leading records acknowledged and the state) instead of onAck.
func NewBatchWithMarks(shardID string, records []Record, onAck func(n int), onMark func(n int, state []byte)) *Batch {
	return &Batch{ShardID: shardID, Records: records, onAck: onAck, onMark: onMark}
}

// AckThrough acknowledges the first n records of the batch as durable. Acknowledgements are
// cumulative: a smaller n than before is ignored, n beyond the batch is clamped.
func (b *Batch) AckThrough(n int) {
	b.mu.Lock()
	if n > len(b.Records) {
		n = len(b.Records)
	}
	if n <= b.acked {
		b.mu.Unlock()
		return
	}
	b.acked = n
	b.mu.Unlock()
	if b.onAck != nil {
		b.onAck(n)
	}
}

// AckThroughState is [Batch.AckThrough] that also marks the position of record n-1 as a
// boundary of the processor, with its state there (nil for none). A processor that marks
// boundaries is checkpointed only at them, each with the state marked there (stored in the
// lease, see [checkpoint.StateCheckpointer]), and [InitInput.State] gives it back to the
// next holder. The archive sink marks the end of every flush with its deduplication state.
func (b *Batch) AckThroughState(n int, state []byte) {
	b.mu.Lock()
	n = min(n, len(b.Records))
	if n < b.acked || n == 0 {
		b.mu.Unlock()
		return
	}
	b.acked = n
	b.mu.Unlock()
	switch {
	case b.onMark != nil:
		b.onMark(n, state)
	case b.onAck != nil:
		b.onAck(n)
	}
}

// Ack acknowledges every record of the batch.
func (b *Batch) Ack() { b.AckThrough(len(b.Records)) }

// Acked returns how many leading records are acknowledged.
func (b *Batch) Acked() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acked
}

// Preparer records the boundary of a batch of records about to be made durable (the KCL's
// two-phase pendingCheckpoint). Prepare first checkpoints every position acknowledged so far,
// then writes the pending boundary, both fenced on the lease; it returns an error wrapping
// checkpoint.ErrLeaseLost if the lease is gone. A processor must acknowledge the records of
// a prepared batch before it prepares the next one.
type Preparer interface {
	Prepare(ctx context.Context, boundary checkpoint.Checkpoint) error
}

// InitInput tells a processor where its shard starts.
type InitInput struct {
	// Stream is the stream the shard belongs to, as the worker was given it (a name or an
	// ARN): with a [MultiStream] worker, the factory's stream.
	Stream  string
	ShardID string
	// Start is the checkpoint reading resumes after (a sentinel such as TRIM_HORIZON for a
	// shard never checkpointed).
	Start checkpoint.Checkpoint
	// Pending is the boundary a previous holder prepared but did not checkpoint, or nil. A
	// processor that writes deterministic objects must cut its first batch exactly at
	// Pending, so that a replay overwrites the previous holder's objects.
	Pending *checkpoint.Checkpoint
	// State is the state a processor marked at Start ([Batch.AckThroughState]), as the
	// lease stored it; nil when none. For a shard never checkpointed, ParentStates holds
	// the states its parents stored with their last checkpoint (SHARD_END), in the order of
	// the lease's parents, those without a state left out.
	State        []byte
	ParentStates [][]byte
	// Preparer writes two-phase boundaries for this shard under the worker's lease.
	Preparer Preparer
}

// Processor consumes one shard for as long as the worker holds its lease. The worker calls
// its methods from one goroutine per shard, in order: Initialize, then ProcessRecords any
// number of times, then exactly one of ShardEnded, LeaseLost or Shutdown.
type Processor interface {
	// Initialize is called once before the first batch.
	Initialize(ctx context.Context, in InitInput) error
	// ProcessRecords hands over a batch. It may return before the records are durable and
	// acknowledge them later. Returning an error stops the shard's processing on this worker;
	// the lease is released so that processing resumes from the last checkpoint.
	ProcessRecords(ctx context.Context, b *Batch) error
	// ShardEnded is called when the shard reached SHARD_END and every delivered record has
	// been handed over; the processor makes everything durable and acknowledges it before
	// returning. The worker then writes the SHARD_END checkpoint.
	ShardEnded(ctx context.Context) error
	// LeaseLost is called when another worker took the lease. The processor drops what it
	// buffered without writing it; nothing it acknowledges afterwards is checkpointed.
	LeaseLost(ctx context.Context)
	// Shutdown is called on graceful shutdown. The processor makes durable what it can and
	// acknowledges it before returning; the worker then checkpoints and releases the lease.
	Shutdown(ctx context.Context) error
}

// ProcessorFactory returns a new Processor for a shard the worker took.
type ProcessorFactory func(shardID string) Processor

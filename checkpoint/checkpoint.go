package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Sentinel checkpoint values, as the KCL writes them in the `checkpoint` attribute.
const (
	TrimHorizon = "TRIM_HORIZON"
	Latest      = "LATEST"
	AtTimestamp = "AT_TIMESTAMP"
	ShardEnd    = "SHARD_END"
)

// WholeRecord, as a checkpoint's SubSequence, says that every user record of the Kinesis
// record at Sequence is done: the checkpoint of a consumer that does not see KPL user
// records (vmware-go-kcl-v2, plain GetRecords loops). Resuming from it skips the whole
// record. The KCL reads it the same way: its sub-sequence is above any record's count.
const WholeRecord uint64 = 1 << 62

// Errors returned by every [Store]. Match them with errors.Is.
var (
	// ErrLeaseLost means a write by a lease holder was refused because the lease's owner or
	// counter is no longer what the holder last saw: another worker took it, or it was
	// released. The holder must stop processing the shard and must not retry the write.
	ErrLeaseLost = errors.New("checkpoint: lease lost")
	// ErrConflict means a take was refused because the lease changed (owner or counter)
	// since the taker observed it. Re-list and decide again.
	ErrConflict = errors.New("checkpoint: lease changed since it was observed")
	// ErrNotFound means no lease exists for the key.
	ErrNotFound = errors.New("checkpoint: lease not found")
	// ErrRegression means a checkpoint below the stored one was refused. Use
	// [Store.ResetCheckpoint] to move a checkpoint backwards deliberately.
	ErrRegression = errors.New("checkpoint: checkpoint would move backwards")
	// ErrInvalidSequence means a sequence number is neither a decimal sequence number nor one
	// of the sentinel values.
	ErrInvalidSequence = errors.New("checkpoint: invalid sequence number")
	// ErrNoTable means the lease table does not exist (from [TableChecker.CheckTable]).
	ErrNoTable = errors.New("checkpoint: lease table does not exist")
)

// TableChecker is implemented by stores that can check their table without creating it:
// CheckTable returns an error wrapping [ErrNoTable] when it is missing, and waits until an
// existing table is usable.
type TableChecker interface {
	CheckTable(ctx context.Context) error
}

// Checkpoint is a position in a shard: a Kinesis sequence number (or a sentinel such as
// [TrimHorizon] or [ShardEnd]) and the sub-sequence number of a user record inside a KPL
// aggregate. A checkpoint means every record at or before it has been processed durably.
type Checkpoint struct {
	Sequence    string
	SubSequence uint64
}

// IsZero reports whether c is unset.
func (c Checkpoint) IsZero() bool { return c.Sequence == "" && c.SubSequence == 0 }

func (c Checkpoint) String() string {
	if c.SubSequence == 0 {
		return c.Sequence
	}
	return fmt.Sprintf("%s/%d", c.Sequence, c.SubSequence)
}

// Parse reads a checkpoint as [Checkpoint.String] writes it: sequence[/sub-sequence].
func Parse(s string) (Checkpoint, error) {
	seq, sub, hasSub := strings.Cut(s, "/")
	c := Checkpoint{Sequence: seq}
	if hasSub {
		n, err := strconv.ParseUint(sub, 10, 64)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("%w: sub-sequence %q", ErrInvalidSequence, sub)
		}
		c.SubSequence = n
	}
	if err := c.Validate(); err != nil {
		return Checkpoint{}, err
	}
	return c, nil
}

// Validate reports ErrInvalidSequence unless c.Sequence is a sentinel or a decimal sequence
// number without leading zeros (at most 128 digits).
func (c Checkpoint) Validate() error {
	switch c.Sequence {
	case TrimHorizon, Latest, AtTimestamp, ShardEnd:
		return nil
	}
	s := c.Sequence
	if s == "" || len(s) > 128 || (len(s) > 1 && s[0] == '0') {
		return fmt.Errorf("%w: %q", ErrInvalidSequence, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("%w: %q", ErrInvalidSequence, s)
		}
	}
	return nil
}

// rank orders sentinels around real sequence numbers: positions before the first record
// rank 0, sequence numbers 1, SHARD_END 2.
func (c Checkpoint) rank() int {
	switch c.Sequence {
	case "", TrimHorizon, Latest, AtTimestamp:
		return 0
	case ShardEnd:
		return 2
	}
	return 1
}

// Compare orders two valid checkpoints: -1 if c is before o, 0 if equal, +1 if after.
// Starting sentinels (TRIM_HORIZON, LATEST, AT_TIMESTAMP, unset) come before every sequence
// number and compare equal to each other; SHARD_END comes after every sequence number.
func (c Checkpoint) Compare(o Checkpoint) int {
	if rc, ro := c.rank(), o.rank(); rc != ro || rc != 1 {
		switch {
		case rc < ro:
			return -1
		case rc > ro:
			return 1
		}
		return 0
	}
	// Decimal numbers without leading zeros: longer is bigger, then lexicographic.
	switch {
	case len(c.Sequence) < len(o.Sequence):
		return -1
	case len(c.Sequence) > len(o.Sequence):
		return 1
	case c.Sequence < o.Sequence:
		return -1
	case c.Sequence > o.Sequence:
		return 1
	case c.SubSequence < o.SubSequence:
		return -1
	case c.SubSequence > o.SubSequence:
		return 1
	}
	return 0
}

// Lease is one shard's row in the lease table. Counter is the fencing token: every write a
// store makes on a lease increments it, and every write by a holder is conditional on the
// Owner and Counter the holder last saw.
type Lease struct {
	// Key is the lease key: the shard id.
	Key string
	// Owner is the worker id of the holder; "" means unowned.
	Owner string
	// Counter is the leaseCounter.
	Counter int64
	// Checkpoint is the last durable position.
	Checkpoint Checkpoint
	// Pending is the boundary of a batch being made durable (two-phase checkpoint), or nil.
	Pending *Checkpoint
	// OwnerSwitchesSinceCheckpoint counts takes since the last checkpoint.
	OwnerSwitchesSinceCheckpoint int64
	// ParentShardIDs are the shard's parents: one after a split, two after a merge.
	ParentShardIDs []string
	// ChildShardIDs are the shard's children, once known.
	ChildShardIDs []string
	// StartingHashKey and EndingHashKey bound the shard's hash-key range (decimal strings).
	StartingHashKey, EndingHashKey string
	// State is the processor's state at Checkpoint, stored with it by
	// [StateCheckpointer.CheckpointWithState] (kinlog's archive sink keeps its
	// deduplication state there); nil when none was stored. The KCL ignores it.
	State []byte
}

// ChildRecorder is implemented by stores that record a finished shard's children on its
// lease, as the KCL does at a shard's end (childShardIds); both of kinlog's stores do.
type ChildRecorder interface {
	// SetChildShards replaces the lease's ChildShardIDs, with the fencing of
	// [Store.Checkpoint] (no checkpoint condition); it increments Counter.
	SetChildShards(ctx context.Context, held Lease, children []string) (Lease, error)
}

// OwnerIndex is implemented by stores that can list the leases one worker owns without
// reading the whole table (kinlog's DynamoDB store: the KCL 3.x index
// LeaseOwnerToLeaseKeyIndex, created with checkpoint/dynamodb's WithOwnerIndex; the memory store). A worker
// whose leases an elected leader assigns finds its own through it.
type OwnerIndex interface {
	// OwnedKeys returns the keys of the leases whose Owner is owner. The answer may lag
	// behind writes (DynamoDB: an eventually consistent query of a global secondary index):
	// a caller confirms what it acts on with GetLease.
	OwnedKeys(ctx context.Context, owner string) ([]string, error)
}

// StateCheckpointer is implemented by stores that keep a processor's state with the
// checkpoint (both of kinlog's stores do).
type StateCheckpointer interface {
	// CheckpointWithState is [Store.Checkpoint] that also replaces the lease's State with
	// state, in the same conditional write.
	CheckpointWithState(ctx context.Context, held Lease, cp Checkpoint, state []byte) (Lease, error)
}

// Store is a lease and checkpoint store. Implementations are safe for concurrent use by many
// goroutines and many processes.
//
// Guarantees callers rely on:
//   - Fencing: RenewLease, ReleaseLease, Checkpoint and PrepareCheckpoint succeed only if the
//     stored Owner and Counter equal those of the lease passed in; otherwise they return
//     ErrLeaseLost and change nothing.
//   - Every successful write increments Counter and returns the lease as stored; the caller
//     passes that returned lease to its next write.
//   - TakeLease succeeds only if the stored Owner and Counter equal those the taker observed;
//     otherwise ErrConflict. Of N concurrent takes of one observed lease, exactly one wins.
//   - Checkpoint never moves a checkpoint backwards (ErrRegression) and clears Pending.
//   - No method compares wall clocks across machines; liveness is judged by the caller from
//     Counter changes on its own clock (see [Tracker]).
//   - Conditional failures are returned at once, never retried. Throttling and transient
//     errors are retried by the backend's client (for DynamoDB, the SDK retryer: jittered
//     exponential backoff that honours ctx, up to its attempt limit); past that they are
//     returned wrapped, and the caller may retry the write with the same lease.
//   - Idempotent repeats: a holder write or take repeated with the same arguments after it
//     succeeded (say, after a timeout hid the outcome, or after the SDK retried a write whose
//     response was lost) succeeds again, returns the lease as stored and changes nothing.
//     Any other write with a stale lease fails as above.
type Store interface {
	// EnsureTable creates the lease table if it does not exist and waits until it is usable.
	EnsureTable(ctx context.Context) error
	// ListLeases returns every lease (order unspecified).
	ListLeases(ctx context.Context) ([]Lease, error)
	// GetLease returns one lease, or ErrNotFound.
	GetLease(ctx context.Context, key string) (Lease, error)
	// CreateLease creates an unowned lease for a new shard, with Counter 0 and the given
	// checkpoint, parents and hash-key range, unless a lease with that key exists. It reports
	// whether it created one; an existing lease is left unchanged and is not an error.
	CreateLease(ctx context.Context, l Lease) (created bool, err error)
	// TakeLease makes owner the holder of the observed lease (expired, unowned or stolen).
	TakeLease(ctx context.Context, observed Lease, owner string) (Lease, error)
	// RenewLease proves the holder is alive by incrementing Counter.
	RenewLease(ctx context.Context, held Lease) (Lease, error)
	// ReleaseLease removes the owner so that any worker can take the lease at once.
	ReleaseLease(ctx context.Context, held Lease) error
	// Checkpoint records a durable position and clears Pending.
	Checkpoint(ctx context.Context, held Lease, cp Checkpoint) (Lease, error)
	// PrepareCheckpoint records the boundary of a batch about to be made durable.
	PrepareCheckpoint(ctx context.Context, held Lease, pending Checkpoint) (Lease, error)
	// ResetCheckpoint sets a lease's checkpoint unconditionally (operator action; it may move
	// backwards) and clears Pending and State (a state belongs to the position it was stored
	// with). The lease's holder, if any, loses it (Counter changes).
	ResetCheckpoint(ctx context.Context, key string, cp Checkpoint) error
	// DeleteLease removes a lease (for shards gone from the stream). Deleting a missing lease
	// is not an error.
	DeleteLease(ctx context.Context, key string) error
}

// Equal reports whether two leases hold the same values. Parent and child shard ids are
// compared as sets, as DynamoDB stores them.
func (l Lease) Equal(o Lease) bool {
	if (l.Pending == nil) != (o.Pending == nil) || (l.Pending != nil && *l.Pending != *o.Pending) {
		return false
	}
	return l.Key == o.Key && l.Owner == o.Owner && l.Counter == o.Counter &&
		l.Checkpoint == o.Checkpoint && l.OwnerSwitchesSinceCheckpoint == o.OwnerSwitchesSinceCheckpoint &&
		sameSet(l.ParentShardIDs, o.ParentShardIDs) && sameSet(l.ChildShardIDs, o.ChildShardIDs) &&
		l.StartingHashKey == o.StartingHashKey && l.EndingHashKey == o.EndingHashKey &&
		bytes.Equal(l.State, o.State)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// Package checkpointtest is the acceptance suite every checkpoint store must pass.
//
// # Use
//
// A backend's tests call [Run] with a constructor that returns an empty store:
//
//	func TestStore(t *testing.T) {
//		checkpointtest.Run(t, func(t *testing.T) checkpoint.Store { return memory.New() })
//	}
//
// # What it proves
//
// Of N concurrent takes of one observed lease exactly one wins; a zombie holder's
// checkpoint, renew, prepare and release fail with [checkpoint.ErrLeaseLost] after a steal
// and leave the new holder's lease unchanged, and so do those of an old incarnation of a
// restarted worker (same owner, older counter); counters only grow and every write returns
// the lease as stored; checkpoints never regress ([checkpoint.ErrRegression]) while
// ResetCheckpoint may move them back; a checkpoint clears the pending boundary and the owner
// switch count; create-if-missing is idempotent; sub-sequence numbers up to 2^64-1
// round-trip; release leaves the lease unowned; a write repeated after it succeeded is an
// idempotent no-op; delete; invalid sequence numbers are refused
// ([checkpoint.ErrInvalidSequence]); missing leases give [checkpoint.ErrNotFound].
package checkpointtest

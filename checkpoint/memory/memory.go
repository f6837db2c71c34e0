package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/kinlog/kinlog/checkpoint"
)

// Store is an in-memory [checkpoint.Store]. The zero value is not usable; call [New].
// Leases are copied in and out, so callers never share memory with the store.
type Store struct {
	mu     sync.Mutex
	leases map[string]checkpoint.Lease
}

var (
	_ checkpoint.Store      = (*Store)(nil)
	_ checkpoint.OwnerIndex = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{leases: make(map[string]checkpoint.Lease)}
}

var errEmptyKey = errors.New("checkpoint/memory: empty lease key")

func clone(l checkpoint.Lease) checkpoint.Lease {
	if l.Pending != nil {
		p := *l.Pending
		l.Pending = &p
	}
	l.ParentShardIDs = slices.Clone(l.ParentShardIDs)
	l.ChildShardIDs = slices.Clone(l.ChildShardIDs)
	l.State = slices.Clone(l.State)
	return l
}

// EnsureTable does nothing: the table always exists. It returns ctx.Err() if ctx has ended.
func (s *Store) EnsureTable(ctx context.Context) error { return ctx.Err() }

// ListLeases returns copies of every lease, sorted by key.
func (s *Store) ListLeases(ctx context.Context) ([]checkpoint.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]checkpoint.Lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, clone(l))
	}
	slices.SortFunc(out, func(a, b checkpoint.Lease) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out, nil
}

// OwnedKeys implements [checkpoint.OwnerIndex]: the keys of owner's leases, sorted.
func (s *Store) OwnedKeys(ctx context.Context, owner string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("listing leases of %s: %w", owner, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k, l := range s.leases {
		if l.Owner == owner && owner != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// GetLease returns a copy of one lease, or checkpoint.ErrNotFound.
func (s *Store) GetLease(ctx context.Context, key string) (checkpoint.Lease, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Lease{}, fmt.Errorf("getting lease %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[key]
	if !ok {
		return checkpoint.Lease{}, fmt.Errorf("getting lease %s: %w", key, checkpoint.ErrNotFound)
	}
	return clone(l), nil
}

// CreateLease creates an unowned lease with Counter 0 from l's Key, Checkpoint,
// ParentShardIDs, ChildShardIDs and hash-key range, unless the key exists. A zero
// Checkpoint is stored as unset; any other must be valid (checkpoint.ErrInvalidSequence).
func (s *Store) CreateLease(ctx context.Context, l checkpoint.Lease) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("creating lease %s: %w", l.Key, err)
	}
	if l.Key == "" {
		return false, errEmptyKey
	}
	if !l.Checkpoint.IsZero() {
		if err := l.Checkpoint.Validate(); err != nil {
			return false, fmt.Errorf("creating lease %s: %w", l.Key, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[l.Key]; ok {
		return false, nil
	}
	s.leases[l.Key] = clone(checkpoint.Lease{
		Key:             l.Key,
		Checkpoint:      l.Checkpoint,
		ParentShardIDs:  l.ParentShardIDs,
		ChildShardIDs:   l.ChildShardIDs,
		StartingHashKey: l.StartingHashKey,
		EndingHashKey:   l.EndingHashKey,
	})
	return true, nil
}

// TakeLease makes owner the holder of the observed lease if its Owner and Counter are still
// those observed; otherwise it returns checkpoint.ErrConflict (checkpoint.ErrNotFound if the
// lease is gone). As in the KCL, OwnerSwitchesSinceCheckpoint grows by one when the lease
// passes from one owner to a different one (not when an unowned lease is taken).
func (s *Store) TakeLease(ctx context.Context, observed checkpoint.Lease, owner string) (checkpoint.Lease, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Lease{}, fmt.Errorf("taking lease %s: %w", observed.Key, err)
	}
	if owner == "" {
		return checkpoint.Lease{}, fmt.Errorf("taking lease %s: empty owner", observed.Key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[observed.Key]
	if !ok {
		return checkpoint.Lease{}, fmt.Errorf("taking lease %s: %w", observed.Key, checkpoint.ErrNotFound)
	}
	want := observed
	want.Owner, want.Counter = owner, observed.Counter+1
	if observed.Owner != "" && observed.Owner != owner {
		want.OwnerSwitchesSinceCheckpoint++
	}
	if l.Owner != observed.Owner || l.Counter != observed.Counter {
		if r, ok := s.repeated(observed.Key, want); ok {
			return r, nil
		}
		return checkpoint.Lease{}, fmt.Errorf("taking lease %s: %w", observed.Key, checkpoint.ErrConflict)
	}
	if l.Owner != "" && l.Owner != owner {
		l.OwnerSwitchesSinceCheckpoint++
	}
	l.Owner = owner
	l.Counter++
	s.leases[l.Key] = l
	return clone(l), nil
}

// holding returns the stored lease if held still holds it.
func (s *Store) holding(held checkpoint.Lease) (checkpoint.Lease, bool) {
	l, ok := s.leases[held.Key]
	if !ok || held.Owner == "" || l.Owner != held.Owner || l.Counter != held.Counter {
		return checkpoint.Lease{}, false
	}
	return l, true
}

// repeated reports whether the stored lease is exactly what a write would have produced
// from its input: the write is a repeat of one that succeeded, and succeeds again without
// a change (see checkpoint.Store on idempotent retries).
func (s *Store) repeated(key string, result checkpoint.Lease) (checkpoint.Lease, bool) {
	l, ok := s.leases[key]
	if !ok || !l.Equal(result) {
		return checkpoint.Lease{}, false
	}
	return clone(l), true
}

// RenewLease increments Counter if held still holds the lease; otherwise
// checkpoint.ErrLeaseLost.
func (s *Store) RenewLease(ctx context.Context, held checkpoint.Lease) (checkpoint.Lease, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Lease{}, fmt.Errorf("renewing lease %s: %w", held.Key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.holding(held)
	if !ok {
		want := held
		want.Counter++
		if r, ok := s.repeated(held.Key, want); ok && held.Owner != "" {
			return r, nil
		}
		return checkpoint.Lease{}, fmt.Errorf("renewing lease %s: %w", held.Key, checkpoint.ErrLeaseLost)
	}
	l.Counter++
	s.leases[l.Key] = l
	return clone(l), nil
}

// ReleaseLease removes the owner and increments Counter if held still holds the lease;
// otherwise checkpoint.ErrLeaseLost.
func (s *Store) ReleaseLease(ctx context.Context, held checkpoint.Lease) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("releasing lease %s: %w", held.Key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.holding(held)
	if !ok {
		want := held
		want.Owner, want.Counter = "", held.Counter+1
		if _, ok := s.repeated(held.Key, want); ok && held.Owner != "" {
			return nil
		}
		return fmt.Errorf("releasing lease %s: %w", held.Key, checkpoint.ErrLeaseLost)
	}
	l.Owner = ""
	l.Counter++
	s.leases[l.Key] = l
	return nil
}

// Checkpoint stores cp, clears Pending, resets OwnerSwitchesSinceCheckpoint and increments
// Counter. It returns checkpoint.ErrInvalidSequence for an invalid cp,
// checkpoint.ErrLeaseLost unless held still holds the lease, and checkpoint.ErrRegression if
// cp is before the stored checkpoint.
func (s *Store) Checkpoint(ctx context.Context, held checkpoint.Lease, cp checkpoint.Checkpoint) (checkpoint.Lease, error) {
	return s.writeAt(ctx, held, cp, "checkpointing", func(l *checkpoint.Lease) {
		l.Checkpoint, l.Pending, l.OwnerSwitchesSinceCheckpoint = cp, nil, 0
	})
}

// CheckpointWithState is [Store.Checkpoint] that also replaces the lease's State.
func (s *Store) CheckpointWithState(ctx context.Context, held checkpoint.Lease, cp checkpoint.Checkpoint, state []byte) (checkpoint.Lease, error) {
	state = slices.Clone(state)
	return s.writeAt(ctx, held, cp, "checkpointing", func(l *checkpoint.Lease) {
		l.Checkpoint, l.Pending, l.OwnerSwitchesSinceCheckpoint, l.State = cp, nil, 0, state
	})
}

// SetChildShards replaces the lease's ChildShardIDs and increments Counter, fenced like
// [Store.RenewLease].
func (s *Store) SetChildShards(ctx context.Context, held checkpoint.Lease, children []string) (checkpoint.Lease, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Lease{}, fmt.Errorf("recording the children of lease %s: %w", held.Key, err)
	}
	children = slices.Clone(children)
	slices.Sort(children)
	children = slices.Compact(children)
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.holding(held)
	if !ok {
		want := held
		want.ChildShardIDs = children
		want.Counter++
		if r, ok := s.repeated(held.Key, want); ok {
			return r, nil
		}
		return checkpoint.Lease{}, fmt.Errorf("recording the children of lease %s: %w", held.Key, checkpoint.ErrLeaseLost)
	}
	l.ChildShardIDs = children
	l.Counter++
	s.leases[held.Key] = l
	return clone(l), nil
}

// PrepareCheckpoint stores pending as the lease's pending checkpoint and increments
// Counter. Errors are those of [Store.Checkpoint]; a pending checkpoint before the stored
// checkpoint is a regression.
func (s *Store) PrepareCheckpoint(ctx context.Context, held checkpoint.Lease, pending checkpoint.Checkpoint) (checkpoint.Lease, error) {
	return s.writeAt(ctx, held, pending, "preparing checkpoint of", func(l *checkpoint.Lease) {
		l.Pending = &pending
	})
}

// writeAt is the fenced write of Checkpoint and PrepareCheckpoint: at must be valid, held
// must still hold the lease (or the identical write must just have succeeded, for a retried
// request), and at must not be before the stored checkpoint. apply changes the lease, whose
// counter is then incremented. doing names the operation in errors.
func (s *Store) writeAt(ctx context.Context, held checkpoint.Lease, at checkpoint.Checkpoint, doing string, apply func(*checkpoint.Lease)) (checkpoint.Lease, error) {
	if err := ctx.Err(); err != nil {
		return checkpoint.Lease{}, fmt.Errorf("%s lease %s: %w", doing, held.Key, err)
	}
	if err := at.Validate(); err != nil {
		return checkpoint.Lease{}, fmt.Errorf("%s lease %s: %w", doing, held.Key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.holding(held)
	if !ok {
		want := held
		want.Counter++
		apply(&want)
		if r, ok := s.repeated(held.Key, want); ok && held.Owner != "" {
			return r, nil
		}
		return checkpoint.Lease{}, fmt.Errorf("%s lease %s: %w", doing, held.Key, checkpoint.ErrLeaseLost)
	}
	if at.Compare(l.Checkpoint) < 0 {
		return checkpoint.Lease{}, fmt.Errorf("%s lease %s at %s (stored %s): %w", doing, held.Key, at, l.Checkpoint, checkpoint.ErrRegression)
	}
	apply(&l)
	l.Counter++
	s.leases[l.Key] = clone(l)
	return clone(l), nil
}

// ResetCheckpoint stores cp whatever the stored checkpoint, clears Pending, resets
// OwnerSwitchesSinceCheckpoint and increments Counter (so a holder loses the lease; the
// Owner attribute is kept). It returns checkpoint.ErrNotFound for a missing lease.
func (s *Store) ResetCheckpoint(ctx context.Context, key string, cp checkpoint.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("resetting checkpoint of lease %s: %w", key, err)
	}
	if err := cp.Validate(); err != nil {
		return fmt.Errorf("resetting checkpoint of lease %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[key]
	if !ok {
		return fmt.Errorf("resetting checkpoint of lease %s: %w", key, checkpoint.ErrNotFound)
	}
	l.Checkpoint = cp
	l.Pending = nil
	l.State = nil
	l.OwnerSwitchesSinceCheckpoint = 0
	l.Counter++
	s.leases[key] = l
	return nil
}

// DeleteLease removes a lease; a missing lease is not an error.
func (s *Store) DeleteLease(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deleting lease %s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.leases, key)
	return nil
}

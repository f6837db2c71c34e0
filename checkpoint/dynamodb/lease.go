package dynamodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
)

var errEmptyKey = errors.New("checkpoint/dynamodb: empty lease key")

// ListLeases scans the whole table with strongly consistent reads. An item it cannot read
// fails the listing with an *AttributeError naming the lease and attribute.
func (s *Store) ListLeases(ctx context.Context) ([]checkpoint.Lease, error) {
	var (
		out   []checkpoint.Lease
		start map[string]types.AttributeValue
	)
	for {
		page, err := s.client.Scan(ctx, &ddb.ScanInput{
			TableName:         aws.String(s.table),
			ConsistentRead:    aws.Bool(true),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return nil, fmt.Errorf("listing leases in table %s: %w", s.table, err)
		}
		for _, item := range page.Items {
			l, err := decodeLease(s.table, item)
			if err != nil {
				return nil, fmt.Errorf("listing leases: %w", err)
			}
			out = append(out, l)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		start = page.LastEvaluatedKey
	}
}

// OwnedKeys implements checkpoint.OwnerIndex: it queries the owner index ([OwnerIndexName],
// see [WithOwnerIndex]) for owner's lease keys. Index queries are eventually consistent: a
// lease taken a moment ago may be missing, one just lost still listed.
func (s *Store) OwnedKeys(ctx context.Context, owner string) ([]string, error) {
	if owner == "" {
		return nil, nil
	}
	e := newExpr()
	cond := e.name(AttrLeaseOwner) + " = " + e.value("owner", sv(owner))
	var (
		keys  []string
		start map[string]types.AttributeValue
	)
	for {
		page, err := s.client.Query(ctx, &ddb.QueryInput{
			TableName:                 aws.String(s.table),
			IndexName:                 aws.String(OwnerIndexName),
			KeyConditionExpression:    aws.String(cond),
			ExpressionAttributeNames:  e.names,
			ExpressionAttributeValues: e.valueMap(),
			ExclusiveStartKey:         start,
		})
		if err != nil {
			return nil, fmt.Errorf("listing leases of %s in table %s: %w", owner, s.table, err)
		}
		for _, item := range page.Items {
			if k, ok := item[AttrLeaseKey].(*types.AttributeValueMemberS); ok {
				keys = append(keys, k.Value)
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return keys, nil
		}
		start = page.LastEvaluatedKey
	}
}

// GetLease reads one lease with a strongly consistent read.
func (s *Store) GetLease(ctx context.Context, key string) (checkpoint.Lease, error) {
	l, err := s.get(ctx, key)
	if err != nil {
		return checkpoint.Lease{}, fmt.Errorf("getting lease %s: %w", key, err)
	}
	return l, nil
}

func (s *Store) get(ctx context.Context, key string) (checkpoint.Lease, error) {
	if key == "" {
		return checkpoint.Lease{}, errEmptyKey
	}
	out, err := s.client.GetItem(ctx, &ddb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            keyOf(key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return checkpoint.Lease{}, err
	}
	if len(out.Item) == 0 {
		return checkpoint.Lease{}, checkpoint.ErrNotFound
	}
	return decodeLease(s.table, out.Item)
}

// CreateLease puts a new, unowned lease with leaseCounter 0 unless the key exists (a
// conditional put, so concurrent creators are safe and exactly one reports created). It
// writes l's Key, Checkpoint (omitted when zero), ParentShardIDs, ChildShardIDs and hash-key
// range; other fields are ignored. A multi-stream key (account:stream:epoch:shardId) also
// gets the KCL's streamName and shardId attributes.
func (s *Store) CreateLease(ctx context.Context, l checkpoint.Lease) (bool, error) {
	if l.Key == "" {
		return false, errEmptyKey
	}
	item := map[string]types.AttributeValue{
		AttrLeaseKey:                     sv(l.Key),
		AttrLeaseCounter:                 nv(int64(0)),
		AttrOwnerSwitchesSinceCheckpoint: nv(int64(0)),
	}
	if !l.Checkpoint.IsZero() {
		if err := l.Checkpoint.Validate(); err != nil {
			return false, fmt.Errorf("creating lease %s: %w", l.Key, err)
		}
		item[AttrCheckpoint] = sv(l.Checkpoint.Sequence)
		item[AttrCheckpointSubSequenceNumber] = nv(l.Checkpoint.SubSequence)
	}
	if ss := stringSet(l.ParentShardIDs); ss != nil {
		item[AttrParentShardID] = ss
	}
	if ss := stringSet(l.ChildShardIDs); ss != nil {
		item[AttrChildShardIDs] = ss
	}
	if l.StartingHashKey != "" {
		item[AttrStartingHashKey] = sv(l.StartingHashKey)
	}
	if l.EndingHashKey != "" {
		item[AttrEndingHashKey] = sv(l.EndingHashKey)
	}
	if streamID, shardID, ok := checkpoint.ParseMultiStreamKey(l.Key); ok {
		item[AttrStreamName] = sv(streamID)
		item[AttrShardID] = sv(shardID)
	}
	e := newExpr()
	_, err := s.client.PutItem(ctx, &ddb.PutItemInput{
		TableName:                aws.String(s.table),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(" + e.name(AttrLeaseKey) + ")"),
		ExpressionAttributeNames: e.names,
	})
	switch {
	case conditionFailed(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("creating lease %s: %w", l.Key, err)
	}
	return true, nil
}

// update runs one conditional UpdateItem and returns the lease as stored after it.
func (s *Store) update(ctx context.Context, key string, e *expr, cond, upd string) (checkpoint.Lease, error) {
	out, err := s.client.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       keyOf(key),
		ConditionExpression:       aws.String(cond),
		UpdateExpression:          aws.String(upd),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.valueMap(),
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return checkpoint.Lease{}, err
	}
	return decodeLease(s.table, out.Attributes)
}

// TakeLease sets leaseOwner to owner and increments leaseCounter, conditional on the owner
// and counter in observed (and on the lease existing). A failed condition returns
// checkpoint.ErrConflict, or checkpoint.ErrNotFound if the lease is gone. As in the KCL,
// ownerSwitchesSinceCheckpoint grows by one when the lease passes from one owner to another
// (not when an unowned lease is taken).
func (s *Store) TakeLease(ctx context.Context, observed checkpoint.Lease, owner string) (checkpoint.Lease, error) {
	if observed.Key == "" {
		return checkpoint.Lease{}, errEmptyKey
	}
	if owner == "" {
		return checkpoint.Lease{}, fmt.Errorf("taking lease %s: empty owner", observed.Key)
	}
	switches := observed.Owner != "" && observed.Owner != owner
	e := newExpr()
	cond := "attribute_exists(" + e.name(AttrLeaseKey) + ") AND " + e.owner("oldowner", observed.Owner) + " AND " + e.counter(observed.Counter)
	upd := "SET " + e.name(AttrLeaseOwner) + " = " + e.value("owner", sv(owner)) +
		", " + e.name(AttrLeaseCounter) + " = " + e.value("next", nv(observed.Counter+1))
	if switches {
		sw := e.name(AttrOwnerSwitchesSinceCheckpoint)
		upd += ", " + sw + " = if_not_exists(" + sw + ", " + e.value("zero", nv(int64(0))) + ") + " + e.value("one", nv(int64(1)))
	}
	l, err := s.update(ctx, observed.Key, e, cond, upd)
	if err == nil {
		return l, nil
	}
	if !conditionFailed(err) {
		return checkpoint.Lease{}, fmt.Errorf("taking lease %s for %s: %w", observed.Key, owner, err)
	}
	stored, gerr := s.get(ctx, observed.Key)
	switch {
	case errors.Is(gerr, checkpoint.ErrNotFound):
		return checkpoint.Lease{}, fmt.Errorf("taking lease %s for %s: %w", observed.Key, owner, checkpoint.ErrNotFound)
	case gerr != nil:
		return checkpoint.Lease{}, fmt.Errorf("taking lease %s for %s: condition failed, then reading it back: %w",
			observed.Key, owner, errors.Join(checkpoint.ErrConflict, gerr))
	}
	want := observed
	want.Owner, want.Counter = owner, observed.Counter+1
	if switches {
		want.OwnerSwitchesSinceCheckpoint++
	}
	if stored.Equal(want) {
		// Our own write, applied but its response lost; the SDK retried and the retry
		// failed the condition.
		return stored, nil
	}
	return checkpoint.Lease{}, fmt.Errorf("taking lease %s for %s (observed owner %q counter %d, now owner %q counter %d): %w",
		observed.Key, owner, observed.Owner, observed.Counter, stored.Owner, stored.Counter, checkpoint.ErrConflict)
}

// holderWrite is one kind of write a lease holder makes.
type holderWrite struct {
	verb string // gerund for errors: "renewing lease"
	// regression, if set, is the position that must not be before the stored checkpoint;
	// the write is then also conditional on the stored checkpoint being held.Checkpoint.
	regression *checkpoint.Checkpoint
	// update writes the update expression.
	update func(e *expr, held checkpoint.Lease) string
	// result is the lease as it would be stored after this write from held.
	result func(held checkpoint.Lease) checkpoint.Lease
}

// fenced runs a holder write conditional on leaseOwner and leaseCounter. When the condition
// fails it reads the lease once to tell a lost lease (checkpoint.ErrLeaseLost) from a stale
// checkpoint in held (the write is then re-evaluated against the stored lease, whose counter
// proves it current) and from its own write retried by the SDK after a lost response.
func (s *Store) fenced(ctx context.Context, held checkpoint.Lease, w holderWrite) (checkpoint.Lease, error) {
	if held.Key == "" {
		return checkpoint.Lease{}, errEmptyKey
	}
	lost := func(detail string) error {
		return fmt.Errorf("%s %s (held by %q at counter %d%s): %w", w.verb, held.Key, held.Owner, held.Counter, detail, checkpoint.ErrLeaseLost)
	}
	if held.Owner == "" {
		return checkpoint.Lease{}, lost("")
	}
	for attempt := 0; ; attempt++ {
		if w.regression != nil && w.regression.Compare(held.Checkpoint) < 0 {
			return checkpoint.Lease{}, fmt.Errorf("%s %s at %s (stored %s): %w", w.verb, held.Key, w.regression, held.Checkpoint, checkpoint.ErrRegression)
		}
		e := newExpr()
		cond := e.owner("owner", held.Owner) + " AND " + e.counter(held.Counter)
		if w.regression != nil {
			cond += " AND " + e.checkpointIs(held.Checkpoint)
		}
		l, err := s.update(ctx, held.Key, e, cond, w.update(e, held))
		if err == nil {
			return l, nil
		}
		if !conditionFailed(err) {
			return checkpoint.Lease{}, fmt.Errorf("%s %s: %w", w.verb, held.Key, err)
		}
		stored, gerr := s.get(ctx, held.Key)
		switch {
		case errors.Is(gerr, checkpoint.ErrNotFound):
			return checkpoint.Lease{}, lost(", now deleted")
		case gerr != nil:
			return checkpoint.Lease{}, fmt.Errorf("%s %s: condition failed, then reading it back: %w", w.verb, held.Key, gerr)
		case stored.Equal(w.result(held)):
			return stored, nil // our own write, retried by the SDK after a lost response
		case stored.Owner != held.Owner || stored.Counter != held.Counter:
			return checkpoint.Lease{}, lost(fmt.Sprintf(", now %q at %d", stored.Owner, stored.Counter))
		case attempt > 0:
			// Owner and counter match twice yet the condition failed: only a concurrent
			// writer could explain it, and it would have moved the counter.
			return checkpoint.Lease{}, fmt.Errorf("%s %s: condition failed twice on an unchanged lease: %w", w.verb, held.Key, checkpoint.ErrLeaseLost)
		}
		// The caller's copy of the checkpoint was stale; the stored lease, at the same
		// owner and counter, is the current one.
		held = stored
	}
}

// RenewLease increments leaseCounter, conditional on leaseOwner and leaseCounter being
// those of held; otherwise checkpoint.ErrLeaseLost.
func (s *Store) RenewLease(ctx context.Context, held checkpoint.Lease) (checkpoint.Lease, error) {
	return s.fenced(ctx, held, holderWrite{
		verb: "renewing lease",
		update: func(e *expr, h checkpoint.Lease) string {
			return "SET " + e.name(AttrLeaseCounter) + " = " + e.value("next", nv(h.Counter+1))
		},
		result: func(h checkpoint.Lease) checkpoint.Lease { h.Counter++; return h },
	})
}

// ReleaseLease removes leaseOwner and increments leaseCounter, conditional on leaseOwner
// and leaseCounter being those of held; otherwise checkpoint.ErrLeaseLost.
func (s *Store) ReleaseLease(ctx context.Context, held checkpoint.Lease) error {
	_, err := s.fenced(ctx, held, holderWrite{
		verb: "releasing lease",
		update: func(e *expr, h checkpoint.Lease) string {
			return "SET " + e.name(AttrLeaseCounter) + " = " + e.value("next", nv(h.Counter+1)) +
				" REMOVE " + e.name(AttrLeaseOwner)
		},
		result: func(h checkpoint.Lease) checkpoint.Lease { h.Counter++; h.Owner = ""; return h },
	})
	return err
}

// Checkpoint sets checkpoint and checkpointSubSequenceNumber, removes the pending
// checkpoint, sets ownerSwitchesSinceCheckpoint to 0 and increments leaseCounter,
// conditional on leaseOwner and leaseCounter being those of held (checkpoint.ErrLeaseLost)
// and on cp not being before the stored checkpoint (checkpoint.ErrRegression).
func (s *Store) Checkpoint(ctx context.Context, held checkpoint.Lease, cp checkpoint.Checkpoint) (checkpoint.Lease, error) {
	return s.checkpoint(ctx, held, cp, false, nil)
}

// CheckpointWithState is [Store.Checkpoint] that also sets (or, for an empty state,
// removes) the kinlogState attribute in the same conditional write.
func (s *Store) CheckpointWithState(ctx context.Context, held checkpoint.Lease, cp checkpoint.Checkpoint, state []byte) (checkpoint.Lease, error) {
	return s.checkpoint(ctx, held, cp, true, state)
}

// checkpoint is Checkpoint, which leaves the state alone, or CheckpointWithState.
func (s *Store) checkpoint(ctx context.Context, held checkpoint.Lease, cp checkpoint.Checkpoint, withState bool, state []byte) (checkpoint.Lease, error) {
	if err := cp.Validate(); err != nil {
		return checkpoint.Lease{}, fmt.Errorf("checkpointing lease %s: %w", held.Key, err)
	}
	return s.fenced(ctx, held, holderWrite{
		verb:       "checkpointing lease",
		regression: &cp,
		update: func(e *expr, h checkpoint.Lease) string {
			set := "SET " + e.name(AttrCheckpoint) + " = " + e.value("cp", sv(cp.Sequence)) +
				", " + e.name(AttrCheckpointSubSequenceNumber) + " = " + e.value("sub", nv(cp.SubSequence)) +
				", " + e.name(AttrOwnerSwitchesSinceCheckpoint) + " = " + e.value("zero", nv(int64(0))) +
				", " + e.name(AttrLeaseCounter) + " = " + e.value("next", nv(h.Counter+1))
			remove := " REMOVE " + e.name(AttrPendingCheckpoint) + ", " + e.name(AttrPendingCheckpointSubSequence)
			switch {
			case withState && len(state) > 0:
				set += ", " + e.name(AttrState) + " = " + e.value("state", &types.AttributeValueMemberB{Value: state})
			case withState:
				remove += ", " + e.name(AttrState)
			}
			return set + remove
		},
		result: func(h checkpoint.Lease) checkpoint.Lease {
			h.Counter++
			h.Checkpoint, h.Pending, h.OwnerSwitchesSinceCheckpoint = cp, nil, 0
			if withState {
				h.State = nil
				if len(state) > 0 {
					h.State = state
				}
			}
			return h
		},
	})
}

// SetChildShards sets childShardIds (a string set; removed when children is empty) and
// increments leaseCounter, conditional on leaseOwner and leaseCounter being those of held
// (checkpoint.ErrLeaseLost).
func (s *Store) SetChildShards(ctx context.Context, held checkpoint.Lease, children []string) (checkpoint.Lease, error) {
	set := stringSet(children)
	return s.fenced(ctx, held, holderWrite{
		verb: "recording the children of lease",
		update: func(e *expr, h checkpoint.Lease) string {
			upd := "SET " + e.name(AttrLeaseCounter) + " = " + e.value("next", nv(h.Counter+1))
			if set == nil {
				return upd + " REMOVE " + e.name(AttrChildShardIDs)
			}
			return upd + ", " + e.name(AttrChildShardIDs) + " = " + e.value("children", set)
		},
		result: func(h checkpoint.Lease) checkpoint.Lease {
			h.Counter++
			h.ChildShardIDs = nil
			if set != nil {
				h.ChildShardIDs = set.(*types.AttributeValueMemberSS).Value
			}
			return h
		},
	})
}

// PrepareCheckpoint sets pendingCheckpoint and pendingCheckpointSubSequenceNumber and
// increments leaseCounter, with the conditions of [Store.Checkpoint]: a pending checkpoint
// before the stored checkpoint is a regression.
func (s *Store) PrepareCheckpoint(ctx context.Context, held checkpoint.Lease, pending checkpoint.Checkpoint) (checkpoint.Lease, error) {
	if err := pending.Validate(); err != nil {
		return checkpoint.Lease{}, fmt.Errorf("preparing checkpoint of lease %s: %w", held.Key, err)
	}
	return s.fenced(ctx, held, holderWrite{
		verb:       "preparing checkpoint of lease",
		regression: &pending,
		update: func(e *expr, h checkpoint.Lease) string {
			return "SET " + e.name(AttrPendingCheckpoint) + " = " + e.value("p", sv(pending.Sequence)) +
				", " + e.name(AttrPendingCheckpointSubSequence) + " = " + e.value("psub", nv(pending.SubSequence)) +
				", " + e.name(AttrLeaseCounter) + " = " + e.value("next", nv(h.Counter+1))
		},
		result: func(h checkpoint.Lease) checkpoint.Lease {
			h.Counter++
			p := pending
			h.Pending = &p
			return h
		},
	})
}

// ResetCheckpoint sets the checkpoint whatever it was, removes the pending checkpoint, sets
// ownerSwitchesSinceCheckpoint to 0 and increments leaseCounter (so a holder's next write
// fails with checkpoint.ErrLeaseLost; leaseOwner is kept). It returns checkpoint.ErrNotFound
// for a missing lease.
func (s *Store) ResetCheckpoint(ctx context.Context, key string, cp checkpoint.Checkpoint) error {
	if key == "" {
		return errEmptyKey
	}
	if err := cp.Validate(); err != nil {
		return fmt.Errorf("resetting checkpoint of lease %s: %w", key, err)
	}
	e := newExpr()
	c := e.name(AttrLeaseCounter)
	zero := e.value("zero", nv(int64(0)))
	cond := "attribute_exists(" + e.name(AttrLeaseKey) + ")"
	upd := "SET " + e.name(AttrCheckpoint) + " = " + e.value("cp", sv(cp.Sequence)) +
		", " + e.name(AttrCheckpointSubSequenceNumber) + " = " + e.value("sub", nv(cp.SubSequence)) +
		", " + e.name(AttrOwnerSwitchesSinceCheckpoint) + " = " + zero +
		", " + c + " = if_not_exists(" + c + ", " + zero + ") + " + e.value("one", nv(int64(1))) +
		" REMOVE " + e.name(AttrPendingCheckpoint) + ", " + e.name(AttrPendingCheckpointSubSequence) + ", " + e.name(AttrState)
	_, err := s.update(ctx, key, e, cond, upd)
	switch {
	case conditionFailed(err):
		return fmt.Errorf("resetting checkpoint of lease %s: %w", key, checkpoint.ErrNotFound)
	case err != nil:
		return fmt.Errorf("resetting checkpoint of lease %s: %w", key, err)
	}
	return nil
}

// DeleteLease deletes the item unconditionally; a missing lease is not an error.
func (s *Store) DeleteLease(ctx context.Context, key string) error {
	if key == "" {
		return errEmptyKey
	}
	_, err := s.client.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.table), Key: keyOf(key)})
	if err != nil {
		return fmt.Errorf("deleting lease %s: %w", key, err)
	}
	return nil
}

package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// StreamView returns the leases of one stream in a multi-stream lease table, as a [Store]
// of its own: the KCL's multi-stream mode keys a lease by
//
//	<account>:<stream name>:<creation epoch seconds>:<shard id>
//
// and streamID is everything before the shard id ([StreamID]). The view adds the prefix to
// every key it is given and strips it from every lease it returns, and ListLeases returns
// only the leases under the prefix, so a worker using the view sees plain shard ids and can
// neither take nor delete the leases of other streams, single-stream leases or the KCL's
// other items. Parent and child shard ids stay plain shard ids, as the KCL stores them.
//
// The view implements [ChildRecorder], [StateCheckpointer] and [TableChecker] by calling
// store's; a store without ChildRecorder or StateCheckpointer makes those calls fail with
// an error wrapping [errors.ErrUnsupported] (both of kinlog's stores have them). Without a
// TableChecker, CheckTable calls EnsureTable.
func StreamView(store Store, streamID string) *View {
	return &View{store: store, prefix: streamID + ":"}
}

// View is a [Store] over the leases of one stream of a multi-stream table: see [StreamView].
type View struct {
	store  Store
	prefix string
}

var (
	_ Store             = (*View)(nil)
	_ ChildRecorder     = (*View)(nil)
	_ StateCheckpointer = (*View)(nil)
	_ TableChecker      = (*View)(nil)
)

// StreamID is the KCL's identifier of a stream in a multi-stream lease table:
// account:name:creationEpoch, the creation time in whole seconds since the Unix epoch. A
// stream deleted and created again under the same name gets a new identifier, and so new
// leases.
func StreamID(account, name string, creationEpoch int64) string {
	return account + ":" + name + ":" + strconv.FormatInt(creationEpoch, 10)
}

// ParseMultiStreamKey splits a multi-stream lease key into its stream identifier and shard
// id; ok is false for a key of another form (a plain shard id, a KCL 3.x entity item).
func ParseMultiStreamKey(key string) (streamID, shardID string, ok bool) {
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return "", "", false
	}
	streamID, shardID = key[:i], key[i+1:]
	parts := strings.Split(streamID, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || shardID == "" {
		return "", "", false
	}
	if _, err := strconv.ParseInt(parts[2], 10, 64); err != nil {
		return "", "", false
	}
	return streamID, shardID, true
}

// StreamID returns the stream identifier the view is for.
func (v *View) StreamID() string { return strings.TrimSuffix(v.prefix, ":") }

// Table returns the underlying store's table name, if it has one ("" otherwise).
func (v *View) Table() string {
	if t, ok := v.store.(interface{ Table() string }); ok {
		return t.Table()
	}
	return ""
}

func (v *View) key(k string) string { return v.prefix + k }

func (v *View) in(l Lease) Lease {
	l.Key = v.prefix + l.Key
	return l
}

func (v *View) out(l Lease, err error) (Lease, error) {
	if err != nil {
		return Lease{}, err
	}
	l.Key = strings.TrimPrefix(l.Key, v.prefix)
	return l, nil
}

// EnsureTable implements [Store].
func (v *View) EnsureTable(ctx context.Context) error { return v.store.EnsureTable(ctx) }

// CheckTable implements [TableChecker].
func (v *View) CheckTable(ctx context.Context) error {
	if tc, ok := v.store.(TableChecker); ok {
		return tc.CheckTable(ctx)
	}
	return v.store.EnsureTable(ctx)
}

// ListLeases implements [Store]: the leases under the view's prefix, keys stripped.
func (v *View) ListLeases(ctx context.Context) ([]Lease, error) {
	all, err := v.store.ListLeases(ctx)
	if err != nil {
		return nil, err
	}
	var out []Lease
	for _, l := range all {
		if shard, ok := strings.CutPrefix(l.Key, v.prefix); ok && shard != "" && !strings.Contains(shard, ":") {
			l.Key = shard
			out = append(out, l)
		}
	}
	return out, nil
}

// GetLease implements [Store].
func (v *View) GetLease(ctx context.Context, key string) (Lease, error) {
	return v.out(v.store.GetLease(ctx, v.key(key)))
}

// CreateLease implements [Store].
func (v *View) CreateLease(ctx context.Context, l Lease) (bool, error) {
	return v.store.CreateLease(ctx, v.in(l))
}

// TakeLease implements [Store].
func (v *View) TakeLease(ctx context.Context, observed Lease, owner string) (Lease, error) {
	return v.out(v.store.TakeLease(ctx, v.in(observed), owner))
}

// RenewLease implements [Store].
func (v *View) RenewLease(ctx context.Context, held Lease) (Lease, error) {
	return v.out(v.store.RenewLease(ctx, v.in(held)))
}

// ReleaseLease implements [Store].
func (v *View) ReleaseLease(ctx context.Context, held Lease) error {
	return v.store.ReleaseLease(ctx, v.in(held))
}

// Checkpoint implements [Store].
func (v *View) Checkpoint(ctx context.Context, held Lease, cp Checkpoint) (Lease, error) {
	return v.out(v.store.Checkpoint(ctx, v.in(held), cp))
}

// PrepareCheckpoint implements [Store].
func (v *View) PrepareCheckpoint(ctx context.Context, held Lease, pending Checkpoint) (Lease, error) {
	return v.out(v.store.PrepareCheckpoint(ctx, v.in(held), pending))
}

// ResetCheckpoint implements [Store].
func (v *View) ResetCheckpoint(ctx context.Context, key string, cp Checkpoint) error {
	return v.store.ResetCheckpoint(ctx, v.key(key), cp)
}

// DeleteLease implements [Store].
func (v *View) DeleteLease(ctx context.Context, key string) error {
	return v.store.DeleteLease(ctx, v.key(key))
}

// SetChildShards implements [ChildRecorder].
func (v *View) SetChildShards(ctx context.Context, held Lease, children []string) (Lease, error) {
	cr, ok := v.store.(ChildRecorder)
	if !ok {
		return Lease{}, fmt.Errorf("recording child shards: %T: %w", v.store, errors.ErrUnsupported)
	}
	return v.out(cr.SetChildShards(ctx, v.in(held), children))
}

// CheckpointWithState implements [StateCheckpointer].
func (v *View) CheckpointWithState(ctx context.Context, held Lease, cp Checkpoint, state []byte) (Lease, error) {
	sc, ok := v.store.(StateCheckpointer)
	if !ok {
		return Lease{}, fmt.Errorf("checkpointing with state: %T: %w", v.store, errors.ErrUnsupported)
	}
	return v.out(sc.CheckpointWithState(ctx, v.in(held), cp, state))
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/checkpoint"
)

// listShards lists every shard of the stream, following NextToken.
func (c *Consumer) listShards(ctx context.Context) ([]types.Shard, error) {
	in := &kinesis.ListShardsInput{StreamName: c.streamName(), StreamARN: c.streamARN()}
	var shards []types.Shard
	for {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.listTimeout())
		out, err := c.client.ListShards(pctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("listing shards of %s: %w", c.stream, err)
		}
		shards = append(shards, out.Shards...)
		if aws.ToString(out.NextToken) == "" {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// syncShards creates leases for shards that have none and deletes the leases of shards gone
// from the stream. The lease table is listed before the shards: a lease missing from a
// later shard listing belongs to a shard that is truly gone, never to one created after the
// listing.
//
// A new shard starts at TRIM_HORIZON when a parent already has a lease (it continues
// something being consumed); otherwise at the initial position. With LATEST, closed shards
// get no lease (their open descendants start at LATEST).
func (c *Consumer) syncShards(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, c.cfg.listTimeout())
	leases, err := c.store.ListLeases(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("syncing shards: %w", err)
	}
	leases = shardLeases(leases)
	shards, err := c.listShards(ctx)
	if err != nil {
		return fmt.Errorf("syncing shards: %w", err)
	}
	if len(shards) == 0 {
		return nil // a stream always has an open shard: distrust an empty listing
	}
	c.noteClosed(shards)
	existing := make(map[string]bool, len(leases))
	for _, l := range leases {
		existing[l.Key] = true
	}
	byID := make(map[string]*types.Shard, len(shards))
	for i := range shards {
		byID[aws.ToString(shards[i].ShardId)] = &shards[i]
	}

	// Decide parents before children.
	decided := make(map[string]bool, len(shards))
	var errs []error
	var decide func(id string)
	decide = func(id string) {
		if decided[id] {
			return
		}
		decided[id] = true
		s, ok := byID[id]
		if !ok {
			return
		}
		parents := shardParents(s)
		for _, p := range parents {
			decide(p)
		}
		if existing[id] {
			return
		}
		start := ""
		for _, p := range parents {
			if existing[p] {
				start = checkpoint.TrimHorizon
			}
		}
		if start == "" {
			switch c.cfg.initial.kind {
			case checkpoint.Latest:
				if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
					return // closed: nothing new will arrive in it
				}
			}
			start = c.cfg.initial.kind
		}
		l := checkpoint.Lease{
			Key:            id,
			Checkpoint:     checkpoint.Checkpoint{Sequence: start},
			ParentShardIDs: parents,
		}
		if r := s.HashKeyRange; r != nil {
			l.StartingHashKey = aws.ToString(r.StartingHashKey)
			l.EndingHashKey = aws.ToString(r.EndingHashKey)
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.leaseCallTimeout())
		created, err := c.store.CreateLease(cctx, l)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("creating lease for shard %s: %w", id, err))
			return
		}
		if created {
			c.log.Info("created lease", "shard", id, "checkpoint", start, "parents", parents)
		}
	}
	for i := range shards {
		decide(aws.ToString(shards[i].ShardId))
	}

	for _, l := range leases {
		if _, ok := byID[l.Key]; ok {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, c.cfg.leaseCallTimeout())
		err := c.store.DeleteLease(dctx, l.Key)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting lease of gone shard %s: %w", l.Key, err))
			continue
		}
		c.log.Info("deleted lease of a shard gone from the stream", "shard", l.Key, "checkpoint", l.Checkpoint.String())
	}
	return errors.Join(errs...)
}

// shardLeases keeps the leases of this stream's shards: those keyed by a shard id
// (shardId-NNNNNNNNNNNN). A lease table shared with the KCL holds other items too — KCL 3.x
// entity items, multi-stream leases keyed account:stream:epoch:shardId — which a worker
// must neither take nor delete.
func shardLeases(leases []checkpoint.Lease) []checkpoint.Lease {
	out := leases[:0:0]
	for _, l := range leases {
		if isShardID(l.Key) {
			out = append(out, l)
		}
	}
	return out
}

func isShardID(key string) bool {
	digits, ok := strings.CutPrefix(key, "shardId-")
	if !ok || digits == "" || len(digits) > 20 {
		return false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// noteClosed remembers which shards are closed (they have an ending sequence number), for
// the fan-out reader's end-of-shard fallback ([Consumer.shardClosed]).
func (c *Consumer) noteClosed(shards []types.Shard) {
	closed := make(map[string]bool)
	for i := range shards {
		if r := shards[i].SequenceNumberRange; r != nil && r.EndingSequenceNumber != nil {
			closed[aws.ToString(shards[i].ShardId)] = true
		}
	}
	c.closed.Store(&closed)
}

// shardClosed reports whether the last shard sync saw the shard closed.
func (c *Consumer) shardClosed(id string) bool {
	m := c.closed.Load()
	return m != nil && (*m)[id]
}

func shardParents(s *types.Shard) []string {
	var ps []string
	if p := aws.ToString(s.ParentShardId); p != "" {
		ps = append(ps, p)
	}
	if p := aws.ToString(s.AdjacentParentShardId); p != "" {
		ps = append(ps, p)
	}
	return ps
}

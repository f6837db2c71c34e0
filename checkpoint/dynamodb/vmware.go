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

// Attribute names of a vmware-go-kcl-v2 checkpoint table.
const (
	VMwareAttrShardID       = "ShardID"
	VMwareAttrCheckpoint    = "Checkpoint"
	VMwareAttrParentShardID = "ParentShardId"
)

type vmwareShard struct {
	key    string
	cp     checkpoint.Checkpoint
	parent string
}

// ImportVMware copies the checkpoints of a vmware-go-kcl-v2 table (hash key ShardID,
// attributes Checkpoint and ParentShardId) into store, so that a consumer moving from that
// library to kinlog resumes where it stopped instead of reprocessing its shards. It returns
// the number of kinlog leases it created or moved.
//
// For each shard with a checkpoint, ImportVMware creates an unowned lease at that
// checkpoint (sub-sequence 0, parent shard carried over) or, if the lease exists and its
// checkpoint is behind, moves it forward with [checkpoint.Store.ResetCheckpoint]. A lease at
// or beyond the imported checkpoint is left alone, so running the import again changes
// nothing and never moves a kinlog checkpoint backwards. Shards never checkpointed (no or an
// empty Checkpoint) are skipped: the consumer creates their leases at its initial position.
// Lease ownership (AssignedTo, LeaseTimeout, ClaimRequest) is not carried over: stop the
// vmware-go-kcl workers first, and note that moving a lease forward takes it from a kinlog
// worker holding it.
//
// The whole table is read and checked before anything is written: an item with an
// unexpected attribute type or a checkpoint that is not a sequence number fails the import
// with an *AttributeError naming the shard, and store is left unchanged.
func ImportVMware(ctx context.Context, client API, fromTable string, store checkpoint.Store) (n int, err error) {
	if client == nil || store == nil {
		return 0, errors.New("checkpoint/dynamodb: ImportVMware needs a client and a store")
	}
	shards, err := scanVMware(ctx, client, fromTable)
	if err != nil {
		return 0, err
	}
	for _, sh := range shards {
		l := checkpoint.Lease{Key: sh.key, Checkpoint: sh.cp}
		if sh.parent != "" {
			l.ParentShardIDs = []string{sh.parent}
		}
		created, err := store.CreateLease(ctx, l)
		if err != nil {
			return n, fmt.Errorf("importing shard %s from %s: %w", sh.key, fromTable, err)
		}
		if created {
			n++
			continue
		}
		existing, err := store.GetLease(ctx, sh.key)
		if err != nil {
			return n, fmt.Errorf("importing shard %s from %s: %w", sh.key, fromTable, err)
		}
		if existing.Checkpoint.Compare(sh.cp) >= 0 {
			continue
		}
		if err := store.ResetCheckpoint(ctx, sh.key, sh.cp); err != nil {
			return n, fmt.Errorf("importing shard %s from %s: %w", sh.key, fromTable, err)
		}
		n++
	}
	return n, nil
}

func scanVMware(ctx context.Context, client API, table string) ([]vmwareShard, error) {
	var (
		out   []vmwareShard
		start map[string]types.AttributeValue
	)
	for {
		page, err := client.Scan(ctx, &ddb.ScanInput{
			TableName:         aws.String(table),
			ConsistentRead:    aws.Bool(true),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return nil, fmt.Errorf("reading vmware-go-kcl table %s: %w", table, err)
		}
		for _, item := range page.Items {
			sh, ok, err := decodeVMware(table, item)
			if err != nil {
				return nil, fmt.Errorf("reading vmware-go-kcl table %s: %w", table, err)
			}
			if ok {
				out = append(out, sh)
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		start = page.LastEvaluatedKey
	}
}

// decodeVMware reads one item; ok is false for a shard without a checkpoint.
func decodeVMware(table string, item map[string]types.AttributeValue) (sh vmwareShard, ok bool, err error) {
	d := &decoder{table: table, item: item}
	key, found := d.str(VMwareAttrShardID)
	if d.err != nil {
		return sh, false, d.err
	}
	if !found || key == "" {
		return sh, false, &AttributeError{Table: table, Attribute: VMwareAttrShardID, Want: "S", Got: "missing"}
	}
	d.key = key
	seq, _ := d.str(VMwareAttrCheckpoint)
	parent, _ := d.str(VMwareAttrParentShardID)
	if d.err != nil {
		return sh, false, d.err
	}
	if seq == "" {
		return sh, false, nil
	}
	cp := checkpoint.Checkpoint{Sequence: seq}
	switch seq {
	case checkpoint.TrimHorizon, checkpoint.Latest, checkpoint.AtTimestamp, checkpoint.ShardEnd:
	default:
		// vmware-go-kcl-v2 checkpoints a whole Kinesis record: resume after all its user
		// records (sub-sequence 0 re-delivered every record of an aggregate but the first).
		cp.SubSequence = checkpoint.WholeRecord
	}
	if err := cp.Validate(); err != nil {
		return sh, false, &AttributeError{Table: table, Key: key, Attribute: VMwareAttrCheckpoint, Want: "S", Err: err}
	}
	return vmwareShard{key: key, cp: cp, parent: parent}, true, nil
}

package lambda

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
)

// ErrConflict is returned when the progress of a shard changed between the function's read
// and its conditional write: another invocation is processing the same shard at the same
// time.
var ErrConflict = errors.New("the shard's progress changed under this invocation")

// Attribute names of a progress item.
const (
	attrShard       = "shard"         // key: <stream>/<shard id>
	attrVersion     = "version"       // incremented by every write; every write is conditional on it
	attrSequence    = "sequence"      // committed position: every record up to it is archived
	attrSubSequence = "sub_sequence"  //
	attrPending     = "pending"       // keys of objects an attempt may have written, not committed
	attrPendingFrom = "pending_from"  // sequence number of the first Kinesis record of those objects
	attrPendingTill = "pending_until" // RFC 3339 time until which the attempt may still write them
	attrUpdated     = "updated_at"    // RFC 3339 time of the write
	attrRequest     = "request_id"    // the Lambda request that wrote it
	attrDedup       = "dedup"         // the sink's deduplication state at the committed position (binary)
)

// Progress is one shard's row in the progress table.
type Progress struct {
	// Version is 0 for a shard without a row.
	Version int64
	// Committed is the position through which every record is archived; zero when none is.
	Committed checkpoint.Checkpoint
	// Pending lists the keys of the objects of an attempt that may have been written but
	// were not committed; the next attempt deletes those it does not overwrite.
	Pending     []string
	PendingFrom string
	// PendingUntil is when the attempt that wrote Pending stops writing: its deadline, or
	// the time it gave up. Its objects are not touched before then (plus a grace period).
	PendingUntil time.Time
	Updated      time.Time
	RequestID    string
	// State is the sink's deduplication state at Committed (sinks/dedup), nil when none.
	State []byte
}

// progressTable reads and writes progress items.
type progressTable struct {
	client DynamoDBAPI
	table  string
}

func (t *progressTable) load(ctx context.Context, key string) (Progress, error) {
	out, err := t.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &t.table,
		Key:            map[string]types.AttributeValue{attrShard: &types.AttributeValueMemberS{Value: key}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return Progress{}, fmt.Errorf("reading the progress of %s from table %s: %w", key, t.table, err)
	}
	return decodeProgress(out.Item)
}

func decodeProgress(item map[string]types.AttributeValue) (Progress, error) {
	var p Progress
	if len(item) == 0 {
		return p, nil
	}
	bad := func(name string) error {
		return fmt.Errorf("progress item: attribute %s is missing or malformed", name)
	}
	v, ok := item[attrVersion].(*types.AttributeValueMemberN)
	if !ok {
		return p, bad(attrVersion)
	}
	var err error
	if p.Version, err = strconv.ParseInt(v.Value, 10, 64); err != nil || p.Version < 1 {
		return p, bad(attrVersion)
	}
	if s, ok := item[attrSequence].(*types.AttributeValueMemberS); ok {
		p.Committed.Sequence = s.Value
		if n, ok := item[attrSubSequence].(*types.AttributeValueMemberN); ok {
			if p.Committed.SubSequence, err = strconv.ParseUint(n.Value, 10, 64); err != nil {
				return p, bad(attrSubSequence)
			}
		}
		if p.Committed.Validate() != nil {
			return p, bad(attrSequence)
		}
	}
	if l, ok := item[attrPending].(*types.AttributeValueMemberL); ok {
		for _, e := range l.Value {
			s, ok := e.(*types.AttributeValueMemberS)
			if !ok {
				return p, bad(attrPending)
			}
			p.Pending = append(p.Pending, s.Value)
		}
	}
	if s, ok := item[attrPendingFrom].(*types.AttributeValueMemberS); ok {
		p.PendingFrom = s.Value
	}
	if s, ok := item[attrPendingTill].(*types.AttributeValueMemberS); ok {
		if p.PendingUntil, err = time.Parse(time.RFC3339Nano, s.Value); err != nil {
			return p, bad(attrPendingTill)
		}
	}
	if s, ok := item[attrUpdated].(*types.AttributeValueMemberS); ok {
		p.Updated, _ = time.Parse(time.RFC3339Nano, s.Value)
	}
	if s, ok := item[attrRequest].(*types.AttributeValueMemberS); ok {
		p.RequestID = s.Value
	}
	if b, ok := item[attrDedup].(*types.AttributeValueMemberB); ok && len(b.Value) > 0 {
		p.State = b.Value
	}
	return p, nil
}

// store writes next in place of prev, on the condition that the row is still prev (by its
// version); next.Version is set to prev's plus one. ErrConflict means it was not.
func (t *progressTable) store(ctx context.Context, key string, prev Progress, next *Progress) error {
	next.Version = prev.Version + 1
	names := map[string]string{"#v": attrVersion, "#p": attrPending, "#u": attrUpdated, "#r": attrRequest, "#pf": attrPendingFrom, "#pu": attrPendingTill, "#s": attrSequence, "#ss": attrSubSequence, "#d": attrDedup}
	values := map[string]types.AttributeValue{
		":nv": &types.AttributeValueMemberN{Value: strconv.FormatInt(next.Version, 10)},
		":u":  &types.AttributeValueMemberS{Value: next.Updated.UTC().Format(time.RFC3339Nano)},
		":r":  &types.AttributeValueMemberS{Value: next.RequestID},
	}
	pending := make([]types.AttributeValue, len(next.Pending))
	for i, k := range next.Pending {
		pending[i] = &types.AttributeValueMemberS{Value: k}
	}
	values[":p"] = &types.AttributeValueMemberL{Value: pending}
	set := "SET #v = :nv, #p = :p, #u = :u, #r = :r"
	var remove []string
	if next.PendingFrom != "" {
		set += ", #pf = :pf, #pu = :pu"
		values[":pf"] = &types.AttributeValueMemberS{Value: next.PendingFrom}
		values[":pu"] = &types.AttributeValueMemberS{Value: next.PendingUntil.UTC().Format(time.RFC3339Nano)}
	} else {
		remove = append(remove, "#pf", "#pu")
	}
	if next.Committed.Sequence != "" {
		set += ", #s = :s, #ss = :ss"
		values[":s"] = &types.AttributeValueMemberS{Value: next.Committed.Sequence}
		values[":ss"] = &types.AttributeValueMemberN{Value: strconv.FormatUint(next.Committed.SubSequence, 10)}
	} else {
		remove = append(remove, "#s", "#ss")
	}
	if len(next.State) > 0 {
		set += ", #d = :d"
		values[":d"] = &types.AttributeValueMemberB{Value: next.State}
	} else {
		remove = append(remove, "#d")
	}
	expr := set
	for i, r := range remove {
		if i == 0 {
			expr += " REMOVE " + r
		} else {
			expr += ", " + r
		}
	}
	cond := "attribute_not_exists(#k)"
	names["#k"] = attrShard
	if prev.Version > 0 {
		cond = "#v = :v"
		delete(names, "#k")
		values[":v"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(prev.Version, 10)}
	}
	_, err := t.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &t.table,
		Key:                       map[string]types.AttributeValue{attrShard: &types.AttributeValueMemberS{Value: key}},
		UpdateExpression:          &expr,
		ConditionExpression:       &cond,
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("writing the progress of %s to table %s: %w", key, t.table, err)
	}
	return nil
}

// TableAPI is what [CreateProgressTable] needs. *dynamodb.Client implements it.
type TableAPI interface {
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// CreateProgressTable creates the progress table (on-demand, hash key "shard") unless it
// exists, and waits until it is active. Deployments create it with infra/terraform; this is
// for local stacks and tests. The function itself never creates tables.
func CreateProgressTable(ctx context.Context, client TableAPI, table string) error {
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &table,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrShard), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrShard), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("creating progress table %s: %w", table, err)
	}
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table})
		if err != nil {
			return fmt.Errorf("describing progress table %s: %w", table, err)
		}
		if out.Table != nil && out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

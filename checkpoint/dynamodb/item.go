package dynamodb

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
)

// Attribute names of the KCL (Java 2.x/3.x) lease table.
const (
	AttrLeaseKey                     = "leaseKey"
	AttrLeaseOwner                   = "leaseOwner"
	AttrLeaseCounter                 = "leaseCounter"
	AttrCheckpoint                   = "checkpoint"
	AttrCheckpointSubSequenceNumber  = "checkpointSubSequenceNumber"
	AttrPendingCheckpoint            = "pendingCheckpoint"
	AttrPendingCheckpointSubSequence = "pendingCheckpointSubSequenceNumber"
	AttrOwnerSwitchesSinceCheckpoint = "ownerSwitchesSinceCheckpoint"
	AttrParentShardID                = "parentShardId"
	AttrChildShardIDs                = "childShardIds"
	AttrStartingHashKey              = "startingHashKey"
	AttrEndingHashKey                = "endingHashKey"
	// AttrStreamName and AttrShardID are written on the leases of a multi-stream table (keys
	// account:stream:epoch:shardId, see [checkpoint.StreamView]), as the KCL writes them:
	// streamName holds the stream identifier (account:stream:epoch), shardId the shard id.
	AttrStreamName = "streamName"
	AttrShardID    = "shardId"
	// AttrState is kinlog's own attribute: the processor state stored with the checkpoint
	// (binary). The KCL leaves attributes it does not know alone.
	AttrState = "kinlogState"
)

// AttributeError reports a lease-table item that kinlog cannot read: an attribute of an
// unexpected DynamoDB type (say, leaseCounter stored as a string by another tool), a number
// out of range, or a checkpoint that is not a sequence number. It names the table, the lease
// and the attribute.
type AttributeError struct {
	Table     string
	Key       string // the lease key; "" if the item has no readable leaseKey
	Attribute string
	// Want and Got are DynamoDB type names (S, N, SS, ...); Got is "missing" for a missing
	// required attribute and empty when the type was right but the value was not.
	Want, Got string
	// Err is the cause for a bad value (a strconv error, checkpoint.ErrInvalidSequence);
	// nil for a type mismatch.
	Err error
}

func (e *AttributeError) Error() string {
	key := strconv.Quote(e.Key)
	if e.Key == "" {
		key = "(no leaseKey)"
	}
	if e.Got == "missing" {
		return fmt.Sprintf("checkpoint/dynamodb: table %s, lease %s: attribute %s (%s) is missing", e.Table, key, e.Attribute, e.Want)
	}
	if e.Got != "" {
		return fmt.Sprintf("checkpoint/dynamodb: table %s, lease %s: attribute %s is of type %s, want %s",
			e.Table, key, e.Attribute, e.Got, e.Want)
	}
	return fmt.Sprintf("checkpoint/dynamodb: table %s, lease %s: attribute %s: bad %s value: %v",
		e.Table, key, e.Attribute, e.Want, e.Err)
}

func (e *AttributeError) Unwrap() error { return e.Err }

// typeName returns DynamoDB's name for an attribute value's type.
func typeName(av types.AttributeValue) string {
	switch av.(type) {
	case *types.AttributeValueMemberS:
		return "S"
	case *types.AttributeValueMemberN:
		return "N"
	case *types.AttributeValueMemberB:
		return "B"
	case *types.AttributeValueMemberSS:
		return "SS"
	case *types.AttributeValueMemberNS:
		return "NS"
	case *types.AttributeValueMemberBS:
		return "BS"
	case *types.AttributeValueMemberM:
		return "M"
	case *types.AttributeValueMemberL:
		return "L"
	case *types.AttributeValueMemberNULL:
		return "NULL"
	case *types.AttributeValueMemberBOOL:
		return "BOOL"
	case nil:
		return "nil"
	}
	return fmt.Sprintf("%T", av)
}

// decoder reads one item, remembering the first error.
type decoder struct {
	table, key string
	item       map[string]types.AttributeValue
	err        error
}

func (d *decoder) fail(attr, want string, av types.AttributeValue, cause error) {
	if d.err != nil {
		return
	}
	e := &AttributeError{Table: d.table, Key: d.key, Attribute: attr, Want: want, Err: cause}
	if cause == nil {
		e.Got = typeName(av)
	}
	d.err = e
}

func (d *decoder) str(attr string) (string, bool) {
	av, ok := d.item[attr]
	if !ok {
		return "", false
	}
	s, ok := av.(*types.AttributeValueMemberS)
	if !ok {
		d.fail(attr, "S", av, nil)
		return "", false
	}
	return s.Value, true
}

func (d *decoder) num(attr string) (string, bool) {
	av, ok := d.item[attr]
	if !ok {
		return "", false
	}
	n, ok := av.(*types.AttributeValueMemberN)
	if !ok {
		d.fail(attr, "N", av, nil)
		return "", false
	}
	return n.Value, true
}

func (d *decoder) int64(attr string) int64 {
	s, ok := d.num(attr)
	if !ok {
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		d.fail(attr, "N", nil, err)
	}
	return v
}

func (d *decoder) uint64(attr string) uint64 {
	s, ok := d.num(attr)
	if !ok {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		d.fail(attr, "N", nil, err)
	}
	return v
}

func (d *decoder) bytes(attr string) []byte {
	av, ok := d.item[attr]
	if !ok {
		return nil
	}
	b, ok := av.(*types.AttributeValueMemberB)
	if !ok {
		d.fail(attr, "B", av, nil)
		return nil
	}
	if len(b.Value) == 0 {
		return nil
	}
	return b.Value
}

func (d *decoder) strings(attr string) []string {
	av, ok := d.item[attr]
	if !ok {
		return nil
	}
	ss, ok := av.(*types.AttributeValueMemberSS)
	if !ok {
		d.fail(attr, "SS", av, nil)
		return nil
	}
	out := slices.Clone(ss.Value)
	slices.Sort(out)
	return out
}

func (d *decoder) checkpoint(seqAttr, subAttr string) (checkpoint.Checkpoint, bool) {
	seq, ok := d.str(seqAttr)
	sub := d.uint64(subAttr)
	if !ok {
		return checkpoint.Checkpoint{}, false
	}
	c := checkpoint.Checkpoint{Sequence: seq, SubSequence: sub}
	if err := c.Validate(); err != nil {
		d.fail(seqAttr, "S", nil, err)
	}
	return c, true
}

// decodeLease turns a lease-table item into a Lease. Missing attributes read as zero
// values, as the KCL reads them; attributes of a wrong type give an *AttributeError.
func decodeLease(table string, item map[string]types.AttributeValue) (checkpoint.Lease, error) {
	d := &decoder{table: table, item: item}
	key, ok := d.str(AttrLeaseKey)
	if d.err != nil {
		return checkpoint.Lease{}, d.err
	}
	if !ok {
		return checkpoint.Lease{}, &AttributeError{Table: table, Attribute: AttrLeaseKey, Want: "S", Got: "missing"}
	}
	d.key = key
	l := checkpoint.Lease{Key: key}
	l.Owner, _ = d.str(AttrLeaseOwner)
	l.Counter = d.int64(AttrLeaseCounter)
	l.Checkpoint, _ = d.checkpoint(AttrCheckpoint, AttrCheckpointSubSequenceNumber)
	if p, ok := d.checkpoint(AttrPendingCheckpoint, AttrPendingCheckpointSubSequence); ok {
		l.Pending = &p
	}
	l.OwnerSwitchesSinceCheckpoint = d.int64(AttrOwnerSwitchesSinceCheckpoint)
	l.ParentShardIDs = d.strings(AttrParentShardID)
	l.ChildShardIDs = d.strings(AttrChildShardIDs)
	l.StartingHashKey, _ = d.str(AttrStartingHashKey)
	l.EndingHashKey, _ = d.str(AttrEndingHashKey)
	l.State = d.bytes(AttrState)
	if d.err != nil {
		return checkpoint.Lease{}, d.err
	}
	return l, nil
}

func sv(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func nv[T int64 | uint64](v T) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: fmt.Sprint(v)}
}

// stringSet returns a DynamoDB string set of the distinct values, or nil when there are none
// (DynamoDB has no empty sets).
func stringSet(v []string) types.AttributeValue {
	if len(v) == 0 {
		return nil
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return &types.AttributeValueMemberSS{Value: slices.Compact(v)}
}

func keyOf(key string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrLeaseKey: sv(key)}
}

// expr builds condition and update expressions in which every attribute name goes through
// ExpressionAttributeNames (DynamoDB reserves many words) and only used names and values
// are declared (DynamoDB rejects unused ones).
type expr struct {
	names  map[string]string
	values map[string]types.AttributeValue
}

var placeholders = map[string]string{
	AttrLeaseKey:                     "#k",
	AttrLeaseOwner:                   "#o",
	AttrLeaseCounter:                 "#c",
	AttrCheckpoint:                   "#cp",
	AttrCheckpointSubSequenceNumber:  "#cps",
	AttrPendingCheckpoint:            "#p",
	AttrPendingCheckpointSubSequence: "#ps",
	AttrOwnerSwitchesSinceCheckpoint: "#sw",
	AttrState:                        "#st",
	AttrChildShardIDs:                "#ch",
}

func newExpr() *expr {
	return &expr{names: map[string]string{}, values: map[string]types.AttributeValue{}}
}

// name returns the placeholder of a lease-table attribute.
func (e *expr) name(attr string) string {
	p, ok := placeholders[attr]
	if !ok {
		panic("checkpoint/dynamodb: no placeholder for " + attr) // programming error
	}
	e.names[p] = attr
	return p
}

// value declares a value placeholder (":" + label).
func (e *expr) value(label string, av types.AttributeValue) string {
	p := ":" + label
	e.values[p] = av
	return p
}

func (e *expr) valueMap() map[string]types.AttributeValue {
	if len(e.values) == 0 {
		return nil
	}
	return e.values
}

// eqOrMissing is "attr = value", also true when attr is absent and zero is true: absent
// numbers and strings read as zero values.
func (e *expr) eqOrMissing(attr, label string, av types.AttributeValue, zero bool) string {
	c := e.name(attr) + " = " + e.value(label, av)
	if zero {
		return "(" + c + " OR attribute_not_exists(" + e.name(attr) + "))"
	}
	return c
}

// owner is the condition that the lease's owner is owner ("" = unowned).
func (e *expr) owner(label, owner string) string {
	if owner == "" {
		return "attribute_not_exists(" + e.name(AttrLeaseOwner) + ")"
	}
	return e.name(AttrLeaseOwner) + " = " + e.value(label, sv(owner))
}

// counter is the condition that the lease's counter is c.
func (e *expr) counter(c int64) string {
	return e.eqOrMissing(AttrLeaseCounter, "counter", nv(c), c == 0)
}

// checkpointIs is the condition that the stored checkpoint is c.
func (e *expr) checkpointIs(c checkpoint.Checkpoint) string {
	if c.Sequence == "" {
		return "attribute_not_exists(" + e.name(AttrCheckpoint) + ")"
	}
	return e.name(AttrCheckpoint) + " = " + e.value("oldcp", sv(c.Sequence)) + " AND " +
		e.eqOrMissing(AttrCheckpointSubSequenceNumber, "oldsub", nv(c.SubSequence), c.SubSequence == 0)
}

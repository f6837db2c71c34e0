package dynamodb_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/dynamodb"
)

const (
	seqA = "49590338271490256608559692538361571095921575989136588801"
	seqB = "49590338271490256608559692538361571095921575989136588802"
	seqC = "49590338271490256608559692538361571095921575989136588803"
)

func av(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func num(v any) types.AttributeValue   { return &types.AttributeValueMemberN{Value: fmt.Sprint(v)} }

// leaseItem is a lease-table item as the KCL writes it.
func leaseItem(key, owner string, counter int64, cp string, sub uint64) map[string]types.AttributeValue {
	item := map[string]types.AttributeValue{
		"leaseKey":                     av(key),
		"leaseCounter":                 num(counter),
		"checkpoint":                   av(cp),
		"checkpointSubSequenceNumber":  num(sub),
		"ownerSwitchesSinceCheckpoint": num(0),
	}
	if owner != "" {
		item["leaseOwner"] = av(owner)
	}
	return item
}

func newFakeStore(t *testing.T, f *fakeAPI, opts ...dynamodb.Option) *dynamodb.Store {
	t.Helper()
	s, err := dynamodb.New(f, "leases", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	errThrottled = sdkErr("UpdateItem", &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")})
	errCondition = sdkErr("UpdateItem", &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")})
)

func getReturns(item map[string]types.AttributeValue) func(*ddb.GetItemInput) (*ddb.GetItemOutput, error) {
	return func(*ddb.GetItemInput) (*ddb.GetItemOutput, error) { return &ddb.GetItemOutput{Item: item}, nil }
}

func TestNewValidates(t *testing.T) {
	f := &fakeAPI{}
	for _, tc := range []struct {
		name   string
		client dynamodb.API
		table  string
		opts   []dynamodb.Option
	}{
		{"nil client", nil, "leases", nil},
		{"short table name", f, "ab", nil},
		{"bad table character", f, "my table", nil},
		{"long table name", f, strings.Repeat("t", 256), nil},
		{"read capacity only", f, "leases", []dynamodb.Option{dynamodb.WithProvisionedThroughput(5, 0)}},
		{"negative capacity", f, "leases", []dynamodb.Option{dynamodb.WithProvisionedThroughput(-1, -1)}},
		{"zero poll", f, "leases", []dynamodb.Option{dynamodb.WithTablePoll(0, time.Second)}},
		{"poll max below min", f, "leases", []dynamodb.Option{dynamodb.WithTablePoll(time.Second, time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := dynamodb.New(tc.client, tc.table, tc.opts...); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
	if _, err := dynamodb.New(f, "kinlog.leases_1-a"); err != nil {
		t.Fatalf("New with a valid name: %v", err)
	}
}

// TestThrottlingPassesThrough: a throttling error that outlived the SDK retryer is returned
// as itself (matchable with errors.As), is not a lost lease, and is not retried by the
// store.
func TestThrottlingPassesThrough(t *testing.T) {
	held := checkpoint.Lease{Key: "shard-1", Owner: "w", Counter: 4, Checkpoint: checkpoint.Checkpoint{Sequence: seqA}}
	ops := map[string]func(s *dynamodb.Store) error{
		"renew": func(s *dynamodb.Store) error { _, err := s.RenewLease(t.Context(), held); return err },
		"checkpoint": func(s *dynamodb.Store) error {
			_, err := s.Checkpoint(t.Context(), held, checkpoint.Checkpoint{Sequence: seqB})
			return err
		},
		"prepare": func(s *dynamodb.Store) error {
			_, err := s.PrepareCheckpoint(t.Context(), held, checkpoint.Checkpoint{Sequence: seqB})
			return err
		},
		"release": func(s *dynamodb.Store) error { return s.ReleaseLease(t.Context(), held) },
		"take":    func(s *dynamodb.Store) error { _, err := s.TakeLease(t.Context(), held, "x"); return err },
		"reset": func(s *dynamodb.Store) error {
			return s.ResetCheckpoint(t.Context(), "shard-1", checkpoint.Checkpoint{Sequence: seqA})
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			f := &fakeAPI{updateItem: func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) { return nil, errThrottled }}
			err := op(newFakeStore(t, f))
			var pte *types.ProvisionedThroughputExceededException
			if !errors.As(err, &pte) {
				t.Fatalf("err = %v, want a ProvisionedThroughputExceededException inside", err)
			}
			for _, sentinel := range []error{checkpoint.ErrLeaseLost, checkpoint.ErrConflict, checkpoint.ErrNotFound} {
				if errors.Is(err, sentinel) {
					t.Fatalf("throttling reported as %v", sentinel)
				}
			}
			if !strings.Contains(err.Error(), "shard-1") {
				t.Fatalf("error %q does not name the lease", err)
			}
			if n := count[*ddb.UpdateItemInput](f); n != 1 {
				t.Fatalf("UpdateItem called %d times, want 1 (the SDK retries, the store does not)", n)
			}
		})
	}
}

func TestConditionalFailureMapping(t *testing.T) {
	held := checkpoint.Lease{Key: "shard-1", Owner: "w", Counter: 4, Checkpoint: checkpoint.Checkpoint{Sequence: seqA}}
	stolen := leaseItem("shard-1", "thief", 5, seqA, 0)
	tests := []struct {
		name    string
		op      func(t *testing.T, s *dynamodb.Store) error
		stored  map[string]types.AttributeValue // what GetItem returns after the failure
		wantErr error
	}{
		{"renew stolen", renewOp(held), stolen, checkpoint.ErrLeaseLost},
		{"renew deleted", renewOp(held), nil, checkpoint.ErrLeaseLost},
		{"checkpoint stolen", checkpointOp(held, seqB), stolen, checkpoint.ErrLeaseLost},
		{"prepare stolen", prepareOp(held, seqB), stolen, checkpoint.ErrLeaseLost},
		{"release stolen", func(t *testing.T, s *dynamodb.Store) error { return s.ReleaseLease(t.Context(), held) }, stolen, checkpoint.ErrLeaseLost},
		{"take changed", func(t *testing.T, s *dynamodb.Store) error { _, err := s.TakeLease(t.Context(), held, "x"); return err }, stolen, checkpoint.ErrConflict},
		{"take deleted", func(t *testing.T, s *dynamodb.Store) error { _, err := s.TakeLease(t.Context(), held, "x"); return err }, nil, checkpoint.ErrNotFound},
		{"renew same counter, other owner", renewOp(held), leaseItem("shard-1", "other", 4, seqA, 0), checkpoint.ErrLeaseLost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAPI{
				updateItem: func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) { return nil, errCondition },
				getItem:    getReturns(tc.stored),
			}
			err := tc.op(t, newFakeStore(t, f))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if n := count[*ddb.UpdateItemInput](f); n != 1 {
				t.Fatalf("UpdateItem called %d times, want 1: conditional failures are not retried", n)
			}
			for _, in := range inputs[*ddb.GetItemInput](f) {
				if !aws.ToBool(in.ConsistentRead) {
					t.Fatal("classifying read is not strongly consistent")
				}
			}
		})
	}
}

func renewOp(held checkpoint.Lease) func(t *testing.T, s *dynamodb.Store) error {
	return func(t *testing.T, s *dynamodb.Store) error { _, err := s.RenewLease(t.Context(), held); return err }
}

func checkpointOp(held checkpoint.Lease, seq string) func(t *testing.T, s *dynamodb.Store) error {
	return func(t *testing.T, s *dynamodb.Store) error {
		_, err := s.Checkpoint(t.Context(), held, checkpoint.Checkpoint{Sequence: seq})
		return err
	}
}

func prepareOp(held checkpoint.Lease, seq string) func(t *testing.T, s *dynamodb.Store) error {
	return func(t *testing.T, s *dynamodb.Store) error {
		_, err := s.PrepareCheckpoint(t.Context(), held, checkpoint.Checkpoint{Sequence: seq})
		return err
	}
}

// TestAppliedWriteRecognised: the SDK retried a renew whose first attempt was applied but
// whose response was lost; the retry failed the condition. The store recognises its own
// write and succeeds instead of reporting a lost lease.
func TestAppliedWriteRecognised(t *testing.T) {
	held := checkpoint.Lease{Key: "shard-1", Owner: "w", Counter: 4, Checkpoint: checkpoint.Checkpoint{Sequence: seqA}}
	f := &fakeAPI{
		updateItem: func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) { return nil, errCondition },
		getItem:    getReturns(leaseItem("shard-1", "w", 5, seqA, 0)),
	}
	l, err := newFakeStore(t, f).RenewLease(t.Context(), held)
	if err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	if l.Counter != 5 || l.Owner != "w" {
		t.Fatalf("lease = %+v, want owner w counter 5", l)
	}
}

// TestStaleCheckpointInHeldLease: the caller's lease carries an old checkpoint but the right
// owner and counter. The store re-evaluates against the stored checkpoint: a position
// behind it is a regression; one ahead is written, conditional on the stored checkpoint.
func TestStaleCheckpointInHeldLease(t *testing.T) {
	held := checkpoint.Lease{Key: "shard-1", Owner: "w", Counter: 4, Checkpoint: checkpoint.Checkpoint{Sequence: seqA}}
	stored := leaseItem("shard-1", "w", 4, seqB, 7)

	t.Run("behind", func(t *testing.T) {
		f := &fakeAPI{
			updateItem: func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) { return nil, errCondition },
			getItem:    getReturns(stored),
		}
		_, err := newFakeStore(t, f).Checkpoint(t.Context(), held, checkpoint.Checkpoint{Sequence: seqB, SubSequence: 6})
		if !errors.Is(err, checkpoint.ErrRegression) {
			t.Fatalf("err = %v, want ErrRegression", err)
		}
		if n := count[*ddb.UpdateItemInput](f); n != 1 {
			t.Fatalf("UpdateItem called %d times, want 1", n)
		}
	})
	t.Run("ahead", func(t *testing.T) {
		f := &fakeAPI{getItem: getReturns(stored)}
		f.updateItem = func(in *ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) {
			if count[*ddb.UpdateItemInput](f) == 1 {
				return nil, errCondition
			}
			return &ddb.UpdateItemOutput{Attributes: leaseItem("shard-1", "w", 5, seqC, 0)}, nil
		}
		l, err := newFakeStore(t, f).Checkpoint(t.Context(), held, checkpoint.Checkpoint{Sequence: seqC})
		if err != nil {
			t.Fatalf("Checkpoint: %v", err)
		}
		if l.Checkpoint.Sequence != seqC {
			t.Fatalf("returned checkpoint %v", l.Checkpoint)
		}
		ups := inputs[*ddb.UpdateItemInput](f)
		if len(ups) != 2 {
			t.Fatalf("UpdateItem called %d times, want 2", len(ups))
		}
		if got := ups[1].ExpressionAttributeValues[":oldcp"]; !sameAV(got, av(seqB)) {
			t.Fatalf("second write is conditional on checkpoint %v, want the stored %s", got, seqB)
		}
		if got := ups[1].ExpressionAttributeValues[":oldsub"]; !sameAV(got, num(7)) {
			t.Fatalf("second write is conditional on sub-sequence %v, want 7", got)
		}
	})
}

func sameAV(a, b types.AttributeValue) bool {
	switch a := a.(type) {
	case *types.AttributeValueMemberS:
		b, ok := b.(*types.AttributeValueMemberS)
		return ok && a.Value == b.Value
	case *types.AttributeValueMemberN:
		b, ok := b.(*types.AttributeValueMemberN)
		return ok && a.Value == b.Value
	}
	return false
}

func TestClassifyingReadFails(t *testing.T) {
	errRead := sdkErr("GetItem", &types.InternalServerError{Message: aws.String("boom")})
	f := &fakeAPI{
		updateItem: func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) { return nil, errCondition },
		getItem:    func(*ddb.GetItemInput) (*ddb.GetItemOutput, error) { return nil, errRead },
	}
	held := checkpoint.Lease{Key: "shard-1", Owner: "w", Counter: 4}
	_, err := newFakeStore(t, f).RenewLease(t.Context(), held)
	var ise *types.InternalServerError
	if !errors.As(err, &ise) || errors.Is(err, checkpoint.ErrLeaseLost) {
		t.Fatalf("err = %v, want the read's InternalServerError and not ErrLeaseLost", err)
	}
}

func TestCreateAndResetConditions(t *testing.T) {
	t.Run("create existing", func(t *testing.T) {
		f := &fakeAPI{putItem: func(*ddb.PutItemInput) (*ddb.PutItemOutput, error) {
			return nil, sdkErr("PutItem", &types.ConditionalCheckFailedException{})
		}}
		created, err := newFakeStore(t, f).CreateLease(t.Context(), checkpoint.Lease{Key: "k"})
		if err != nil || created {
			t.Fatalf("CreateLease = %v, %v; want false, nil", created, err)
		}
	})
	t.Run("create throttled", func(t *testing.T) {
		f := &fakeAPI{putItem: func(*ddb.PutItemInput) (*ddb.PutItemOutput, error) {
			return nil, sdkErr("PutItem", &types.ThrottlingException{})
		}}
		created, err := newFakeStore(t, f).CreateLease(t.Context(), checkpoint.Lease{Key: "k"})
		var te *types.ThrottlingException
		if !errors.As(err, &te) || created {
			t.Fatalf("CreateLease = %v, %v; want false and the ThrottlingException", created, err)
		}
	})
	t.Run("reset missing", func(t *testing.T) {
		f := &fakeAPI{updateItem: func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) { return nil, errCondition }}
		err := newFakeStore(t, f).ResetCheckpoint(t.Context(), "k", checkpoint.Checkpoint{Sequence: seqA})
		if !errors.Is(err, checkpoint.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
}

// TestBadAttributeTypes: items written by other tools with unexpected types give an
// *AttributeError naming the lease and the attribute, from every read path, never a panic.
func TestBadAttributeTypes(t *testing.T) {
	base := func() map[string]types.AttributeValue { return leaseItem("shardId-7", "w", 3, seqA, 0) }
	tests := []struct {
		name     string
		mutate   func(map[string]types.AttributeValue)
		attr     string
		key      string
		sentinel error
	}{
		{"counter as string", func(m map[string]types.AttributeValue) { m["leaseCounter"] = av("3") }, "leaseCounter", "shardId-7", nil},
		{"owner as number", func(m map[string]types.AttributeValue) { m["leaseOwner"] = num(1) }, "leaseOwner", "shardId-7", nil},
		{"owner as null", func(m map[string]types.AttributeValue) {
			m["leaseOwner"] = &types.AttributeValueMemberNULL{Value: true}
		}, "leaseOwner", "shardId-7", nil},
		{"parent as string", func(m map[string]types.AttributeValue) { m["parentShardId"] = av("shardId-1") }, "parentShardId", "shardId-7", nil},
		{"children as list", func(m map[string]types.AttributeValue) { m["childShardIds"] = &types.AttributeValueMemberL{} }, "childShardIds", "shardId-7", nil},
		{"checkpoint as number", func(m map[string]types.AttributeValue) { m["checkpoint"] = num(5) }, "checkpoint", "shardId-7", nil},
		{"checkpoint not a sequence", func(m map[string]types.AttributeValue) { m["checkpoint"] = av("deadbeef") }, "checkpoint", "shardId-7", checkpoint.ErrInvalidSequence},
		{"pending not a sequence", func(m map[string]types.AttributeValue) { m["pendingCheckpoint"] = av("") }, "pendingCheckpoint", "shardId-7", checkpoint.ErrInvalidSequence},
		{"negative sub-sequence", func(m map[string]types.AttributeValue) { m["checkpointSubSequenceNumber"] = num(-1) }, "checkpointSubSequenceNumber", "shardId-7", nil},
		{"fractional counter", func(m map[string]types.AttributeValue) { m["leaseCounter"] = num("1.5") }, "leaseCounter", "shardId-7", nil},
		{"switches as bool", func(m map[string]types.AttributeValue) {
			m["ownerSwitchesSinceCheckpoint"] = &types.AttributeValueMemberBOOL{}
		}, "ownerSwitchesSinceCheckpoint", "shardId-7", nil},
		{"hash key as binary", func(m map[string]types.AttributeValue) { m["startingHashKey"] = &types.AttributeValueMemberB{} }, "startingHashKey", "shardId-7", nil},
		{"nil attribute value", func(m map[string]types.AttributeValue) { m["endingHashKey"] = nil }, "endingHashKey", "shardId-7", nil},
		{"lease key as number", func(m map[string]types.AttributeValue) { m["leaseKey"] = num(7) }, "leaseKey", "", nil},
		{"no lease key", func(m map[string]types.AttributeValue) { delete(m, "leaseKey") }, "leaseKey", "", nil},
	}
	for _, tc := range tests {
		item := base()
		tc.mutate(item)
		check := func(t *testing.T, err error) {
			t.Helper()
			var ae *dynamodb.AttributeError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an *AttributeError", err)
			}
			if ae.Attribute != tc.attr || ae.Key != tc.key || ae.Table != "leases" {
				t.Fatalf("AttributeError names table %q lease %q attribute %q, want leases %q %q", ae.Table, ae.Key, ae.Attribute, tc.key, tc.attr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.attr) || (tc.key != "" && !strings.Contains(msg, tc.key)) {
				t.Fatalf("message %q does not name lease %q and attribute %q", msg, tc.key, tc.attr)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want it to wrap %v", err, tc.sentinel)
			}
		}
		t.Run(tc.name+"/get", func(t *testing.T) {
			_, err := newFakeStore(t, &fakeAPI{getItem: getReturns(item)}).GetLease(t.Context(), "shardId-7")
			check(t, err)
		})
		t.Run(tc.name+"/list", func(t *testing.T) {
			f := &fakeAPI{scan: func(*ddb.ScanInput) (*ddb.ScanOutput, error) {
				return &ddb.ScanOutput{Items: []map[string]types.AttributeValue{leaseItem("ok", "", 0, seqA, 0), item}}, nil
			}}
			_, err := newFakeStore(t, f).ListLeases(t.Context())
			check(t, err)
		})
		t.Run(tc.name+"/renew", func(t *testing.T) {
			f := &fakeAPI{updateItem: func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) {
				return &ddb.UpdateItemOutput{Attributes: item}, nil
			}}
			_, err := newFakeStore(t, f).RenewLease(t.Context(), checkpoint.Lease{Key: "shardId-7", Owner: "w", Counter: 2})
			check(t, err)
		})
	}
}

func TestListLeasesPages(t *testing.T) {
	f := &fakeAPI{}
	f.scan = func(in *ddb.ScanInput) (*ddb.ScanOutput, error) {
		if !aws.ToBool(in.ConsistentRead) {
			t.Error("Scan is not strongly consistent")
		}
		if in.ExclusiveStartKey == nil {
			return &ddb.ScanOutput{
				Items:            []map[string]types.AttributeValue{leaseItem("a", "", 0, seqA, 0)},
				LastEvaluatedKey: map[string]types.AttributeValue{"leaseKey": av("a")},
			}, nil
		}
		if k := in.ExclusiveStartKey["leaseKey"]; !sameAV(k, av("a")) {
			t.Errorf("second page starts at %v, want a", k)
		}
		return &ddb.ScanOutput{Items: []map[string]types.AttributeValue{leaseItem("b", "w", 3, seqB, 2)}}, nil
	}
	ls, err := newFakeStore(t, f).ListLeases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Key != "a" || ls[1].Key != "b" || ls[1].Checkpoint.SubSequence != 2 {
		t.Fatalf("leases = %+v", ls)
	}
}

// TestExpressionsUseAttributeNames runs every operation against a fake and checks each
// expression: attribute names appear only as #placeholders, and the declared names and
// values are exactly those used (DynamoDB rejects unused ones).
func TestExpressionsUseAttributeNames(t *testing.T) {
	item := leaseItem("k", "w", 3, seqA, 0)
	f := &fakeAPI{
		putItem: func(*ddb.PutItemInput) (*ddb.PutItemOutput, error) { return &ddb.PutItemOutput{}, nil },
		updateItem: func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error) {
			return &ddb.UpdateItemOutput{Attributes: item}, nil
		},
	}
	s := newFakeStore(t, f)
	ctx := t.Context()
	cp := func(seq string, sub uint64) checkpoint.Checkpoint {
		return checkpoint.Checkpoint{Sequence: seq, SubSequence: sub}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.CreateLease(ctx, checkpoint.Lease{Key: "k", Checkpoint: cp(seqA, 0), ParentShardIDs: []string{"p"}})
	must(err)
	for _, l := range []checkpoint.Lease{
		{Key: "k", Counter: 0},                                      // unowned, counter 0
		{Key: "k", Owner: "v", Counter: 3},                          // steal
		{Key: "k", Owner: "w", Counter: 3, Checkpoint: cp(seqA, 2)}, // own lease again
	} {
		_, err = s.TakeLease(ctx, l, "w")
		must(err)
	}
	for _, held := range []checkpoint.Lease{
		{Key: "k", Owner: "w", Counter: 3, Checkpoint: cp(seqA, 0)},
		{Key: "k", Owner: "w", Counter: 0},                          // no checkpoint, counter 0
		{Key: "k", Owner: "w", Counter: 3, Checkpoint: cp(seqA, 9)}, // sub-sequence set
	} {
		_, err = s.RenewLease(ctx, held)
		must(err)
		_, err = s.Checkpoint(ctx, held, cp(seqB, 1))
		must(err)
		_, err = s.PrepareCheckpoint(ctx, held, cp(seqB, 1))
		must(err)
		_, err = s.CheckpointWithState(ctx, held, cp(seqB, 1), []byte{1})
		must(err)
		_, err = s.CheckpointWithState(ctx, held, cp(seqB, 1), nil)
		must(err)
		_, err = s.SetChildShards(ctx, held, []string{"shardId-000000000001"})
		must(err)
		_, err = s.SetChildShards(ctx, held, nil)
		must(err)
		must(s.ReleaseLease(ctx, held))
	}
	must(s.ResetCheckpoint(ctx, "k", cp(checkpoint.TrimHorizon, 0)))

	known := map[string]bool{"leaseKey": true, "leaseOwner": true, "leaseCounter": true, "checkpoint": true,
		"checkpointSubSequenceNumber": true, "pendingCheckpoint": true, "pendingCheckpointSubSequenceNumber": true,
		"ownerSwitchesSinceCheckpoint": true, "kinlogState": true, "childShardIds": true}
	keywords := map[string]bool{"SET": true, "REMOVE": true, "AND": true, "OR": true, "NOT": true,
		"attribute_exists": true, "attribute_not_exists": true, "if_not_exists": true}
	token := regexp.MustCompile(`[#:]?[A-Za-z_][A-Za-z0-9_]*`)
	check := func(what string, exprs []string, names map[string]string, values map[string]types.AttributeValue) {
		t.Helper()
		usedNames, usedValues := map[string]bool{}, map[string]bool{}
		for _, e := range exprs {
			for _, tok := range token.FindAllString(e, -1) {
				switch {
				case strings.HasPrefix(tok, "#"):
					if _, ok := names[tok]; !ok {
						t.Errorf("%s: %q uses undeclared name %s", what, e, tok)
					}
					usedNames[tok] = true
				case strings.HasPrefix(tok, ":"):
					if _, ok := values[tok]; !ok {
						t.Errorf("%s: %q uses undeclared value %s", what, e, tok)
					}
					usedValues[tok] = true
				case keywords[tok]:
				default:
					t.Errorf("%s: %q names attribute %s directly", what, e, tok)
				}
			}
		}
		for p, attr := range names {
			if !usedNames[p] {
				t.Errorf("%s: name %s declared but unused", what, p)
			}
			if !known[attr] {
				t.Errorf("%s: %s stands for unknown attribute %q", what, p, attr)
			}
		}
		for p := range values {
			if !usedValues[p] {
				t.Errorf("%s: value %s declared but unused", what, p)
			}
		}
		if values != nil && len(values) == 0 {
			t.Errorf("%s: empty ExpressionAttributeValues (DynamoDB rejects it)", what)
		}
	}
	puts := inputs[*ddb.PutItemInput](f)
	ups := inputs[*ddb.UpdateItemInput](f)
	if len(puts) != 1 || len(ups) != 28 {
		t.Fatalf("recorded %d puts and %d updates, want 1 and 28", len(puts), len(ups))
	}
	for i, in := range puts {
		check(fmt.Sprintf("put %d", i), []string{aws.ToString(in.ConditionExpression)}, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
	}
	for i, in := range ups {
		if in.ConditionExpression == nil {
			t.Errorf("update %d is unconditional", i)
		}
		if in.ReturnValues != types.ReturnValueAllNew {
			t.Errorf("update %d returns %q, want ALL_NEW", i, in.ReturnValues)
		}
		check(fmt.Sprintf("update %d", i), []string{aws.ToString(in.ConditionExpression), aws.ToString(in.UpdateExpression)}, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
	}
}

func TestEnsureTable(t *testing.T) {
	leaseSchema := func(status types.TableStatus) *ddb.DescribeTableOutput {
		return &ddb.DescribeTableOutput{Table: &types.TableDescription{
			TableStatus:          status,
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("leaseKey"), KeyType: types.KeyTypeHash}},
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("leaseKey"), AttributeType: types.ScalarAttributeTypeS}},
		}}
	}
	notFound := sdkErr("DescribeTable", &types.ResourceNotFoundException{Message: aws.String("no table")})

	t.Run("creates on-demand and waits", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			replies := []func() (*ddb.DescribeTableOutput, error){
				func() (*ddb.DescribeTableOutput, error) { return nil, notFound },
				func() (*ddb.DescribeTableOutput, error) { return nil, notFound }, // eventual consistency
				func() (*ddb.DescribeTableOutput, error) { return leaseSchema(types.TableStatusCreating), nil },
				func() (*ddb.DescribeTableOutput, error) { return leaseSchema(types.TableStatusActive), nil },
			}
			f := &fakeAPI{createTable: func(*ddb.CreateTableInput) (*ddb.CreateTableOutput, error) { return &ddb.CreateTableOutput{}, nil }}
			f.describeTable = func(*ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error) {
				r := replies[0]
				replies = replies[1:]
				return r()
			}
			if err := newFakeStore(t, f).EnsureTable(t.Context()); err != nil {
				t.Fatalf("EnsureTable: %v", err)
			}
			if len(replies) != 0 {
				t.Fatalf("%d DescribeTable replies unused", len(replies))
			}
			in := inputs[*ddb.CreateTableInput](f)
			if len(in) != 1 {
				t.Fatalf("CreateTable called %d times", len(in))
			}
			if in[0].BillingMode != types.BillingModePayPerRequest || in[0].ProvisionedThroughput != nil {
				t.Fatalf("billing %q throughput %v, want PAY_PER_REQUEST", in[0].BillingMode, in[0].ProvisionedThroughput)
			}
			if ks := in[0].KeySchema; len(ks) != 1 || aws.ToString(ks[0].AttributeName) != "leaseKey" || ks[0].KeyType != types.KeyTypeHash {
				t.Fatalf("key schema %+v", ks)
			}
		})
	})
	t.Run("provisioned", func(t *testing.T) {
		f := &fakeAPI{
			createTable: func(*ddb.CreateTableInput) (*ddb.CreateTableOutput, error) { return &ddb.CreateTableOutput{}, nil },
		}
		calls := 0
		f.describeTable = func(*ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error) {
			calls++
			if calls == 1 {
				return nil, notFound
			}
			return leaseSchema(types.TableStatusActive), nil
		}
		if err := newFakeStore(t, f, dynamodb.WithProvisionedThroughput(7, 3)).EnsureTable(t.Context()); err != nil {
			t.Fatal(err)
		}
		in := inputs[*ddb.CreateTableInput](f)[0]
		if in.BillingMode != types.BillingModeProvisioned || aws.ToInt64(in.ProvisionedThroughput.ReadCapacityUnits) != 7 || aws.ToInt64(in.ProvisionedThroughput.WriteCapacityUnits) != 3 {
			t.Fatalf("billing %q throughput %+v, want PROVISIONED 7/3", in.BillingMode, in.ProvisionedThroughput)
		}
	})
	t.Run("concurrent creator", func(t *testing.T) {
		f := &fakeAPI{createTable: func(*ddb.CreateTableInput) (*ddb.CreateTableOutput, error) {
			return nil, sdkErr("CreateTable", &types.ResourceInUseException{})
		}}
		calls := 0
		f.describeTable = func(*ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error) {
			calls++
			if calls == 1 {
				return nil, notFound
			}
			return leaseSchema(types.TableStatusActive), nil
		}
		if err := newFakeStore(t, f).EnsureTable(t.Context()); err != nil {
			t.Fatalf("EnsureTable when another worker creates the table: %v", err)
		}
	})
	t.Run("existing active table makes no other call", func(t *testing.T) {
		f := &fakeAPI{describeTable: func(*ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error) {
			return leaseSchema(types.TableStatusActive), nil
		}}
		if err := newFakeStore(t, f).EnsureTable(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(f.calls) != 1 {
			t.Fatalf("%d calls, want 1 DescribeTable", len(f.calls))
		}
	})
	t.Run("wrong schema", func(t *testing.T) {
		f := &fakeAPI{describeTable: func(*ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error) {
			return &ddb.DescribeTableOutput{Table: &types.TableDescription{
				TableStatus: types.TableStatusActive,
				KeySchema:   []types.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: types.KeyTypeHash}},
			}}, nil
		}}
		err := newFakeStore(t, f).EnsureTable(t.Context())
		if !errors.Is(err, dynamodb.ErrSchemaMismatch) || !strings.Contains(err.Error(), "ShardID") {
			t.Fatalf("err = %v, want ErrSchemaMismatch naming ShardID", err)
		}
	})
	t.Run("describe throttled", func(t *testing.T) {
		f := &fakeAPI{describeTable: func(*ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error) {
			return nil, sdkErr("DescribeTable", &types.LimitExceededException{})
		}}
		err := newFakeStore(t, f).EnsureTable(t.Context())
		var le *types.LimitExceededException
		if !errors.As(err, &le) {
			t.Fatalf("err = %v, want the LimitExceededException", err)
		}
	})
	t.Run("waiting honours ctx", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			f := &fakeAPI{describeTable: func(*ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error) {
				return leaseSchema(types.TableStatusCreating), nil // never becomes ACTIVE
			}}
			start := time.Now()
			err := newFakeStore(t, f).EnsureTable(ctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want DeadlineExceeded", err)
			}
			if waited := time.Since(start); waited != time.Minute {
				t.Fatalf("gave up after %v, want exactly the ctx deadline of 1m", waited)
			}
			// Backoff grows to 2s: about 30+ polls in a minute, not thousands.
			if n := len(f.calls); n < 20 || n > 80 {
				t.Fatalf("%d DescribeTable calls in a minute, want 20..80 (jittered backoff capped at 2s)", n)
			}
		})
	})
}

func TestEmptyKeysRefused(t *testing.T) {
	s := newFakeStore(t, &fakeAPI{}) // any call would panic on a nil field
	ctx := t.Context()
	if _, err := s.GetLease(ctx, ""); err == nil {
		t.Error("GetLease(\"\") succeeded")
	}
	if _, err := s.CreateLease(ctx, checkpoint.Lease{}); err == nil {
		t.Error("CreateLease with an empty key succeeded")
	}
	if _, err := s.TakeLease(ctx, checkpoint.Lease{}, "w"); err == nil {
		t.Error("TakeLease with an empty key succeeded")
	}
	if _, err := s.RenewLease(ctx, checkpoint.Lease{Owner: "w"}); err == nil {
		t.Error("RenewLease with an empty key succeeded")
	}
	if err := s.ResetCheckpoint(ctx, "", checkpoint.Checkpoint{Sequence: seqA}); err == nil {
		t.Error("ResetCheckpoint with an empty key succeeded")
	}
	if err := s.DeleteLease(ctx, ""); err == nil {
		t.Error("DeleteLease with an empty key succeeded")
	}
	if _, err := s.Checkpoint(ctx, checkpoint.Lease{Key: "k", Owner: "w"}, checkpoint.Checkpoint{Sequence: "12ab"}); !errors.Is(err, checkpoint.ErrInvalidSequence) {
		t.Errorf("Checkpoint with a malformed sequence: %v, want ErrInvalidSequence", err)
	}
}

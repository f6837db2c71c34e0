package dynamodb_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/checkpoint/memory"
	"github.com/kinlog/kinlog/internal/testenv"
)

// vmwareItem is an item as vmware-go-kcl-v2 writes it: ShardID, AssignedTo, LeaseTimeout
// (RFC3339Nano), Checkpoint and ParentShardId, all strings.
func vmwareItem(shard, owner, cp, parent string) map[string]types.AttributeValue {
	item := map[string]types.AttributeValue{
		"ShardID":      av(shard),
		"AssignedTo":   av(owner),
		"LeaseTimeout": av(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC).Format(time.RFC3339Nano)),
	}
	if cp != "" {
		item["Checkpoint"] = av(cp)
	}
	if parent != "" {
		item["ParentShardId"] = av(parent)
	}
	return item
}

func putItems(t *testing.T, client *ddb.Client, table string, items ...map[string]types.AttributeValue) {
	t.Helper()
	for _, item := range items {
		if _, err := client.PutItem(t.Context(), &ddb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestImportVMware(t *testing.T) {
	client := testenv.DynamoDBClient(t)
	ctx := t.Context()
	from := createVMwareTable(t, client)
	putItems(t, client, from,
		vmwareItem("shardId-000000000000", "old-worker-1", checkpoint.ShardEnd, ""),
		vmwareItem("shardId-000000000001", "old-worker-1", seqA, ""),
		vmwareItem("shardId-000000000002", "old-worker-2", seqB, "shardId-000000000000"),
		vmwareItem("shardId-000000000003", "old-worker-2", seqB, "shardId-000000000000"),
		vmwareItem("shardId-000000000004", "old-worker-2", "", "shardId-000000000000"), // never checkpointed
		map[string]types.AttributeValue{ // a ClaimRequest from lease stealing, an empty checkpoint
			"ShardID": av("shardId-000000000005"), "Checkpoint": av(""), "ClaimRequest": av("old-worker-3"),
		},
	)
	store := ensured(t, newTable(t, client))
	// A kinlog worker already ran: it created shard 2 at TRIM_HORIZON (behind the import) and
	// moved shard 3 beyond it.
	for _, key := range []string{"shardId-000000000002", "shardId-000000000003"} {
		if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: key, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
			t.Fatal(err)
		}
	}
	l3, err := store.TakeLease(ctx, mustGet(t, store, "shardId-000000000003"), "kinlog-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Checkpoint(ctx, l3, checkpoint.Checkpoint{Sequence: seqC, SubSequence: 2}); err != nil {
		t.Fatal(err)
	}

	n, err := dynamodb.ImportVMware(ctx, client, from, store)
	if err != nil {
		t.Fatalf("ImportVMware: %v", err)
	}
	if n != 3 {
		t.Fatalf("imported %d leases, want 3 (two created, one moved forward)", n)
	}
	want := map[string]struct {
		cp     checkpoint.Checkpoint
		owner  string
		parent []string
	}{
		"shardId-000000000000": {checkpoint.Checkpoint{Sequence: checkpoint.ShardEnd}, "", nil},
		"shardId-000000000001": {checkpoint.Checkpoint{Sequence: seqA, SubSequence: checkpoint.WholeRecord}, "", nil},
		"shardId-000000000002": {checkpoint.Checkpoint{Sequence: seqB, SubSequence: checkpoint.WholeRecord}, "", nil}, // existed: parents not rewritten
		"shardId-000000000003": {checkpoint.Checkpoint{Sequence: seqC, SubSequence: 2}, "kinlog-1", nil},
	}
	ls, err := store.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != len(want) {
		t.Fatalf("kinlog table has %d leases, want %d: %+v", len(ls), len(want), ls)
	}
	for _, l := range ls {
		w, ok := want[l.Key]
		if !ok {
			t.Fatalf("unexpected lease %s", l.Key)
		}
		if l.Checkpoint != w.cp || l.Owner != w.owner || l.Pending != nil {
			t.Errorf("%s: checkpoint %s owner %q, want %s %q", l.Key, l.Checkpoint, l.Owner, w.cp, w.owner)
		}
	}
	// Parents are carried over on created leases.
	putItems(t, client, from, vmwareItem("shardId-000000000006", "old-worker-2", seqA, "shardId-000000000001"))
	if n, err = dynamodb.ImportVMware(ctx, client, from, store); err != nil || n != 1 {
		t.Fatalf("second import: n=%d err=%v, want 1 (only the new shard)", n, err)
	}
	if p := mustGet(t, store, "shardId-000000000006").ParentShardIDs; len(p) != 1 || p[0] != "shardId-000000000001" {
		t.Fatalf("parents %v, want [shardId-000000000001]", p)
	}
	// Running it again changes nothing.
	before, err := store.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err = dynamodb.ImportVMware(ctx, client, from, store); err != nil || n != 0 {
		t.Fatalf("third import: n=%d err=%v, want 0", n, err)
	}
	for _, b := range before {
		if a := mustGet(t, store, b.Key); a.Counter != b.Counter {
			t.Fatalf("%s changed on a repeated import: counter %d -> %d", b.Key, b.Counter, a.Counter)
		}
	}
}

func TestImportVMwareBadItems(t *testing.T) {
	client := testenv.DynamoDBClient(t)
	tests := []struct {
		name     string
		item     map[string]types.AttributeValue
		attr     string
		sentinel error
	}{
		{"checkpoint not a sequence", vmwareItem("shardId-000000000009", "w", "deadbeef", ""), "Checkpoint", checkpoint.ErrInvalidSequence},
		{"checkpoint as number", map[string]types.AttributeValue{"ShardID": av("shardId-000000000009"), "Checkpoint": num(42)}, "Checkpoint", nil},
		{"parent as set", map[string]types.AttributeValue{
			"ShardID": av("shardId-000000000009"), "Checkpoint": av(seqA),
			"ParentShardId": &types.AttributeValueMemberSS{Value: []string{"a"}},
		}, "ParentShardId", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			from := createVMwareTable(t, client)
			putItems(t, client, from, vmwareItem("shardId-000000000001", "w", seqA, ""), tc.item)
			store := memory.New()
			n, err := dynamodb.ImportVMware(t.Context(), client, from, store)
			var ae *dynamodb.AttributeError
			if !errors.As(err, &ae) || ae.Key != "shardId-000000000009" || ae.Attribute != tc.attr || ae.Table != from {
				t.Fatalf("err = %v, want an AttributeError for shardId-000000000009.%s in %s", err, tc.attr, from)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want it to wrap %v", err, tc.sentinel)
			}
			ls, _ := store.ListLeases(t.Context())
			if n != 0 || len(ls) != 0 {
				t.Fatalf("a failed import wrote %d leases (n=%d): nothing may be written", len(ls), n)
			}
		})
	}
	t.Run("missing table", func(t *testing.T) {
		_, err := dynamodb.ImportVMware(t.Context(), client, testenv.Name(t, "no-such-table"), memory.New())
		var rnf *types.ResourceNotFoundException
		if !errors.As(err, &rnf) {
			t.Fatalf("err = %v, want ResourceNotFoundException", err)
		}
	})
}

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/testenv"
)

func TestCheckpointCommands(t *testing.T) {
	dc := testenv.DynamoDBClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	table := testenv.Name(t, "cli-leases")
	store, err := ddbstore.New(dc, table)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureTable(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = dc.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	if _, err := store.CreateLease(ctx, checkpoint.Lease{Key: "shardId-000000000001", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
		t.Fatal(err)
	}
	l, err := store.TakeLease(ctx, checkpoint.Lease{Key: "shardId-000000000001"}, "worker-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Checkpoint(ctx, l, checkpoint.Checkpoint{Sequence: "49590338271490256608559692538361571095921575989136588898", SubSequence: 3}); err != nil {
		t.Fatal(err)
	}

	out, stderr, code := runKinlog(t, ctx, "", "checkpoint", "list", "--table", table)
	if code != 0 || !strings.Contains(out, "shardId-000000000001") || !strings.Contains(out, "worker-a") ||
		!strings.Contains(out, "49590338271490256608559692538361571095921575989136588898/3") {
		t.Fatalf("list: exit %d\n%s%s", code, out, stderr)
	}

	out, stderr, code = runKinlog(t, ctx, "", "checkpoint", "list", "--table", table, "--json")
	for _, want := range []string{`"shard": "shardId-000000000001"`, `"owner": "worker-a"`, `"lease_counter": `,
		`"checkpoint": "49590338271490256608559692538361571095921575989136588898/3"`, `"pending_checkpoint": null`} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("list --json: exit %d, output lacks %s:\n%s%s", code, want, out, stderr)
		}
	}

	_, stderr, code = runKinlog(t, ctx, "", "checkpoint", "reset", "--table", table, "--shard", "shardId-000000000001", "--to", "12x")
	if code != 2 || !strings.Contains(stderr, "invalid sequence") {
		t.Fatalf("reset with a malformed sequence: exit %d, %s", code, stderr)
	}
	out, stderr, code = runKinlog(t, ctx, "", "checkpoint", "reset", "--table", table, "--shard", "shardId-000000000001", "--to", "TRIM_HORIZON")
	if code != 0 {
		t.Fatalf("reset: exit %d %s", code, stderr)
	}
	got, err := store.GetLease(ctx, "shardId-000000000001")
	if err != nil || got.Checkpoint.Sequence != checkpoint.TrimHorizon {
		t.Fatalf("after reset: %+v, %v (output %s)", got, err, out)
	}
	if _, err := store.Checkpoint(ctx, l, checkpoint.Checkpoint{Sequence: "5"}); err == nil {
		t.Fatal("the old holder could still checkpoint after an operator reset")
	}

	// A vmware-go-kcl-v2 table, written with the attributes that library uses.
	vm := testenv.Name(t, "cli-vmware")
	if _, err := dc.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(vm),
		AttributeDefinitions: []dtypes.AttributeDefinition{{AttributeName: aws.String("ShardID"), AttributeType: dtypes.ScalarAttributeTypeS}},
		KeySchema:            []dtypes.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: dtypes.KeyTypeHash}},
		BillingMode:          dtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = dc.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(vm)})
	})
	if err := dynamodb.NewTableExistsWaiter(dc).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(vm)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(vm), Item: map[string]dtypes.AttributeValue{
		"ShardID":      &dtypes.AttributeValueMemberS{Value: "shardId-000000000007"},
		"AssignedTo":   &dtypes.AttributeValueMemberS{Value: "old-worker"},
		"LeaseTimeout": &dtypes.AttributeValueMemberS{Value: time.Now().UTC().Format(time.RFC3339Nano)},
		"Checkpoint":   &dtypes.AttributeValueMemberS{Value: "49590338271490256608559692538361571095921575989136588999"},
	}}); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = runKinlog(t, ctx, "", "checkpoint", "import-vmware", "--table", table, "--from", vm)
	if code != 0 || !strings.Contains(out, "imported 1 checkpoints") {
		t.Fatalf("import-vmware: exit %d\n%s%s", code, out, stderr)
	}
	imported, err := store.GetLease(ctx, "shardId-000000000007")
	if err != nil || imported.Checkpoint.Sequence != "49590338271490256608559692538361571095921575989136588999" {
		t.Fatalf("imported lease: %+v, %v", imported, err)
	}

	_, stderr, code = runKinlog(t, ctx, "", "checkpoint", "list")
	if code != 2 || !strings.Contains(stderr, "--table is required") {
		t.Fatalf("list without --table: exit %d %s", code, stderr)
	}
}

// TestImportVMwareChecksItsSourceFirst: a missing source table is an error, and the
// target lease table is not created (it used to be created before the source was read).
func TestImportVMwareChecksItsSourceFirst(t *testing.T) {
	dc := testenv.DynamoDBClient(t)
	target, source := testenv.Name(t, "import-target"), testenv.Name(t, "no-such-vmware")
	ctx := context.Background()
	_, stderr, code := runKinlog(t, ctx, "", "checkpoint", "import-vmware", "--table", target, "--from", source)
	if code != 1 || !strings.Contains(stderr, "the vmware-go-kcl-v2 table "+source+" does not exist (nothing was created)") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if _, err := dc.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &target}); err == nil {
		t.Fatalf("target table %s was created", target)
	}
}

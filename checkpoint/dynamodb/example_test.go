package dynamodb_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/dynamodb"
)

// exampleTable wires the test fake (fakeAPI, fake_test.go) to one in-memory table, enough
// for EnsureTable, CreateLease and ListLeases to run without DynamoDB. Real programs pass
// dynamodb.NewFromConfig(cfg).
func exampleTable(items map[string]map[string]types.AttributeValue) *fakeAPI {
	var desc *types.TableDescription
	return &fakeAPI{
		describeTable: func(in *ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error) {
			if desc == nil {
				return nil, sdkErr("DescribeTable", &types.ResourceNotFoundException{Message: aws.String("no table " + *in.TableName)})
			}
			return &ddb.DescribeTableOutput{Table: desc}, nil
		},
		createTable: func(in *ddb.CreateTableInput) (*ddb.CreateTableOutput, error) {
			desc = &types.TableDescription{TableName: in.TableName, KeySchema: in.KeySchema, AttributeDefinitions: in.AttributeDefinitions, TableStatus: types.TableStatusActive}
			return &ddb.CreateTableOutput{TableDescription: desc}, nil
		},
		putItem: func(in *ddb.PutItemInput) (*ddb.PutItemOutput, error) {
			key := in.Item[dynamodb.AttrLeaseKey].(*types.AttributeValueMemberS).Value
			if _, ok := items[key]; ok { // the store's condition: attribute_not_exists(leaseKey)
				return nil, sdkErr("PutItem", &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")})
			}
			items[key] = in.Item
			return &ddb.PutItemOutput{}, nil
		},
		scan: func(*ddb.ScanInput) (*ddb.ScanOutput, error) {
			out := &ddb.ScanOutput{}
			for _, k := range slices.Sorted(maps.Keys(items)) {
				out.Items = append(out.Items, items[k])
			}
			return out, nil
		},
	}
}

// showItem prints an item's attributes, sorted, with their DynamoDB types.
func showItem(item map[string]types.AttributeValue) {
	for _, n := range slices.Sorted(maps.Keys(item)) {
		switch v := item[n].(type) {
		case *types.AttributeValueMemberS:
			fmt.Printf("  %s (S) %s\n", n, v.Value)
		case *types.AttributeValueMemberN:
			fmt.Printf("  %s (N) %s\n", n, v.Value)
		case *types.AttributeValueMemberSS:
			fmt.Printf("  %s (SS) %s\n", n, strings.Join(v.Value, ","))
		default:
			fmt.Printf("  %s %T\n", n, v)
		}
	}
}

// The lease table as the store makes it: EnsureTable creates it with the KCL's key schema
// (hash key leaseKey, on-demand billing), CreateLease writes one item per shard in the KCL's
// attribute names, and ListLeases reads them back as checkpoint.Lease values.
func Example_leaseTable() {
	ctx := context.Background()
	items := map[string]map[string]types.AttributeValue{}
	api := exampleTable(items)
	store, err := dynamodb.New(api, "app-leases")
	if err != nil {
		panic(err)
	}
	if err := store.EnsureTable(ctx); err != nil {
		panic(err)
	}
	ct := inputs[*ddb.CreateTableInput](api)[0]
	fmt.Printf("table %s: hash key %s (%s), billing %s\n", *ct.TableName, *ct.KeySchema[0].AttributeName, ct.AttributeDefinitions[0].AttributeType, ct.BillingMode)

	// A child of a split: its parent and hash-key range are stored with it.
	created, err := store.CreateLease(ctx, checkpoint.Lease{
		Key:             "shardId-000000000002",
		Checkpoint:      checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon},
		ParentShardIDs:  []string{"shardId-000000000000"},
		StartingHashKey: "0",
		EndingHashKey:   "170141183460469231731687303715884105727",
	})
	fmt.Println("created:", created, err)
	again, err := store.CreateLease(ctx, checkpoint.Lease{Key: "shardId-000000000002"})
	fmt.Println("created again:", again, err)

	fmt.Println("item:")
	showItem(items["shardId-000000000002"])
	leases, err := store.ListLeases(ctx)
	if err != nil {
		panic(err)
	}
	l := leases[0]
	fmt.Printf("lease: key %s, owner %q, counter %d, checkpoint %s, parents %v\n", l.Key, l.Owner, l.Counter, l.Checkpoint, l.ParentShardIDs)
	// Output:
	// table app-leases: hash key leaseKey (S), billing PAY_PER_REQUEST
	// created: true <nil>
	// created again: false <nil>
	// item:
	//   checkpoint (S) TRIM_HORIZON
	//   checkpointSubSequenceNumber (N) 0
	//   endingHashKey (S) 170141183460469231731687303715884105727
	//   leaseCounter (N) 0
	//   leaseKey (S) shardId-000000000002
	//   ownerSwitchesSinceCheckpoint (N) 0
	//   parentShardId (SS) shardId-000000000000
	//   startingHashKey (S) 0
	// lease: key shardId-000000000002, owner "", counter 0, checkpoint TRIM_HORIZON, parents [shardId-000000000000]
}

// A table written by the Java KCL reads as it is: attributes kinlog does not use (KCL 3.x's
// checkpointOwner, throughputKBps, ...) are left alone, and the checkpoint of a KPL
// aggregate keeps its sub-sequence number.
func ExampleStore_ListLeases() {
	ctx := context.Background()
	items := map[string]map[string]types.AttributeValue{
		"shardId-000000000000": {
			"leaseKey":                     &types.AttributeValueMemberS{Value: "shardId-000000000000"},
			"leaseOwner":                   &types.AttributeValueMemberS{Value: "kcl-worker-7"},
			"leaseCounter":                 &types.AttributeValueMemberN{Value: "1841"},
			"checkpoint":                   &types.AttributeValueMemberS{Value: "49590338271490256608559692538361571095921575989136588801"},
			"checkpointSubSequenceNumber":  &types.AttributeValueMemberN{Value: "12"},
			"ownerSwitchesSinceCheckpoint": &types.AttributeValueMemberN{Value: "0"},
			"checkpointOwner":              &types.AttributeValueMemberS{Value: "kcl-worker-7"},
			"throughputKBps":               &types.AttributeValueMemberN{Value: "41.5"},
		},
	}
	store, err := dynamodb.New(exampleTable(items), "app-leases")
	if err != nil {
		panic(err)
	}
	leases, err := store.ListLeases(ctx)
	if err != nil {
		panic(err)
	}
	for _, l := range leases {
		fmt.Println(l.Key, l.Owner, l.Counter, l.Checkpoint)
	}
	// Output:
	// shardId-000000000000 kcl-worker-7 1841 49590338271490256608559692538361571095921575989136588801/12
}

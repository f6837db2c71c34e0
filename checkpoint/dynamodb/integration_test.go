package dynamodb_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/testenv"
)

// fakeClock is a manual clock for checkpoint.Tracker.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func ensured(t *testing.T, s *dynamodb.Store) *dynamodb.Store {
	t.Helper()
	if err := s.EnsureTable(t.Context()); err != nil {
		t.Fatalf("EnsureTable: %v", err)
	}
	return s
}

// observe lists the table through s and feeds the tracker; it returns the lease key.
func observe(t *testing.T, s *dynamodb.Store, tr *checkpoint.Tracker, key string) checkpoint.Lease {
	t.Helper()
	ls, err := s.ListLeases(t.Context())
	if err != nil {
		t.Fatalf("ListLeases: %v", err)
	}
	tr.Observe(ls)
	for _, l := range ls {
		if l.Key == key {
			return l
		}
	}
	t.Fatalf("lease %s not listed", key)
	return checkpoint.Lease{}
}

// TestZombieCannotMoveCheckpoint: two workers with separate clients share a table. Worker A
// holds the lease and pauses (a GC pause, a frozen VM). Worker B, judging liveness with a
// Tracker on its own (fake) clock, sees A's counter stand still for the failover time,
// takes the lease and checkpoints. When A wakes, none of its writes lands, and B's lease is
// exactly as B left it.
func TestZombieCannotMoveCheckpoint(t *testing.T) {
	clientA, clientB := testenv.DynamoDBClient(t), testenv.DynamoDBClient(t)
	a := ensured(t, newTable(t, clientA))
	b, err := dynamodb.New(clientB, a.Table())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const key, failover = "shardId-000000000000", 10 * time.Second

	if _, err := a.CreateLease(ctx, checkpoint.Lease{Key: key, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
		t.Fatal(err)
	}
	heldA, err := a.TakeLease(ctx, mustGet(t, a, key), "worker-a")
	if err != nil {
		t.Fatal(err)
	}
	heldA, err = a.Checkpoint(ctx, heldA, checkpoint.Checkpoint{Sequence: seqA})
	if err != nil {
		t.Fatal(err)
	}

	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	tr := checkpoint.NewTracker(failover, clock.Now)
	if l := observe(t, b, tr, key); tr.Available(l) {
		t.Fatal("B may take a lease it has just seen for the first time")
	}
	// A is alive: it renews while B's clock runs.
	clock.Advance(8 * time.Second)
	if heldA, err = a.RenewLease(ctx, heldA); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Second) // 11s since B first saw the lease, 3s since it moved
	if l := observe(t, b, tr, key); tr.Available(l) {
		t.Fatal("B may take a lease that was renewed 3s ago")
	}
	// A pauses. B keeps listing; the counter stands still.
	clock.Advance(failover - time.Second)
	if l := observe(t, b, tr, key); tr.Available(l) {
		t.Fatal("B may take the lease before the failover time")
	}
	clock.Advance(time.Second)
	observed := observe(t, b, tr, key)
	if !tr.Available(observed) {
		t.Fatal("lease not available after the failover time without renewal")
	}
	heldB, err := b.TakeLease(ctx, observed, "worker-b")
	if err != nil {
		t.Fatalf("B's take: %v", err)
	}
	if heldB.OwnerSwitchesSinceCheckpoint != 1 {
		t.Fatalf("OwnerSwitchesSinceCheckpoint = %d, want 1", heldB.OwnerSwitchesSinceCheckpoint)
	}
	heldB, err = b.Checkpoint(ctx, heldB, checkpoint.Checkpoint{Sequence: seqB, SubSequence: 3})
	if err != nil {
		t.Fatalf("B's checkpoint: %v", err)
	}

	// A wakes up and carries on as if it still held the lease.
	for _, c := range []checkpoint.Checkpoint{{Sequence: seqA, SubSequence: 1}, {Sequence: seqC}, {Sequence: checkpoint.ShardEnd}} {
		if _, err := a.Checkpoint(ctx, heldA, c); !errors.Is(err, checkpoint.ErrLeaseLost) {
			t.Fatalf("zombie checkpoint at %s: err = %v, want ErrLeaseLost", c, err)
		}
	}
	if _, err := a.PrepareCheckpoint(ctx, heldA, checkpoint.Checkpoint{Sequence: seqC}); !errors.Is(err, checkpoint.ErrLeaseLost) {
		t.Fatalf("zombie prepare: err = %v, want ErrLeaseLost", err)
	}
	if _, err := a.RenewLease(ctx, heldA); !errors.Is(err, checkpoint.ErrLeaseLost) {
		t.Fatalf("zombie renew: err = %v, want ErrLeaseLost", err)
	}
	if err := a.ReleaseLease(ctx, heldA); !errors.Is(err, checkpoint.ErrLeaseLost) {
		t.Fatalf("zombie release: err = %v, want ErrLeaseLost", err)
	}
	got := mustGet(t, b, key)
	if got.Owner != "worker-b" || got.Counter != heldB.Counter || got.Checkpoint != heldB.Checkpoint || got.Pending != nil {
		t.Fatalf("B's lease after the zombie's writes: %+v, want %+v", got, heldB)
	}
	// B carries on.
	if _, err := b.RenewLease(ctx, heldB); err != nil {
		t.Fatalf("B's renew after the zombie: %v", err)
	}
}

// TestRaceAtExpiry: the zombie's checkpoint and the taker's take hit DynamoDB at the same
// moment. Exactly one wins; the loser gets its typed error.
func TestRaceAtExpiry(t *testing.T) {
	clientA, clientB := testenv.DynamoDBClient(t), testenv.DynamoDBClient(t)
	a := ensured(t, newTable(t, clientA))
	b, err := dynamodb.New(clientB, a.Table())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	wins := map[string]int{}
	for i := range 20 {
		key := fmt.Sprintf("shard-%d", i)
		if _, err := a.CreateLease(ctx, checkpoint.Lease{Key: key, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
			t.Fatal(err)
		}
		heldA, err := a.TakeLease(ctx, mustGet(t, a, key), "worker-a")
		if err != nil {
			t.Fatal(err)
		}
		observed := mustGet(t, b, key)
		var (
			wg          sync.WaitGroup
			start       = make(chan struct{})
			errA, errB  error
			leaseB      checkpoint.Lease
			checkpointA = checkpoint.Checkpoint{Sequence: seqC}
		)
		wg.Go(func() { <-start; _, errA = a.Checkpoint(ctx, heldA, checkpointA) })
		wg.Go(func() { <-start; leaseB, errB = b.TakeLease(ctx, observed, "worker-b") })
		close(start)
		wg.Wait()
		got := mustGet(t, b, key)
		switch {
		case errA == nil && errors.Is(errB, checkpoint.ErrConflict):
			wins["checkpoint"]++
			if got.Owner != "worker-a" || got.Checkpoint != checkpointA {
				t.Fatalf("checkpoint won but stored %+v", got)
			}
		case errB == nil && errors.Is(errA, checkpoint.ErrLeaseLost):
			wins["take"]++
			if got.Owner != "worker-b" || got.Checkpoint.Sequence != checkpoint.TrimHorizon || got.Counter != leaseB.Counter {
				t.Fatalf("take won but stored %+v", got)
			}
		default:
			t.Fatalf("round %d: checkpoint err %v, take err %v: want exactly one to win", i, errA, errB)
		}
	}
	t.Logf("wins: %v", wins)
}

func mustGet(t *testing.T, s checkpoint.Store, key string) checkpoint.Lease {
	t.Helper()
	l, err := s.GetLease(t.Context(), key)
	if err != nil {
		t.Fatalf("GetLease(%s): %v", key, err)
	}
	return l
}

// TestKCLItemsInterop: an item shaped as the Java KCL 3.x writes it (including attributes
// kinlog does not know) is read correctly, and kinlog's writes keep the unknown attributes.
func TestKCLItemsInterop(t *testing.T) {
	client := testenv.DynamoDBClient(t)
	s := ensured(t, newTable(t, client))
	ctx := t.Context()
	item := map[string]types.AttributeValue{
		"leaseKey":                     av("shardId-000000000003"),
		"leaseOwner":                   av("kcl-java-worker-1"),
		"leaseCounter":                 num(1234),
		"checkpoint":                   av(seqA),
		"checkpointSubSequenceNumber":  num(17),
		"ownerSwitchesSinceCheckpoint": num(2),
		"parentShardId":                &types.AttributeValueMemberSS{Value: []string{"shardId-000000000000", "shardId-000000000001"}},
		"startingHashKey":              av("0"),
		"endingHashKey":                av("170141183460469231731687303715884105727"),
		"throughputKBps":               num("12.5"),
		"entityType":                   av("lease"),
	}
	if _, err := client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.Table()), Item: item}); err != nil {
		t.Fatal(err)
	}
	l := mustGet(t, s, "shardId-000000000003")
	want := checkpoint.Lease{
		Key: "shardId-000000000003", Owner: "kcl-java-worker-1", Counter: 1234,
		Checkpoint: checkpoint.Checkpoint{Sequence: seqA, SubSequence: 17}, OwnerSwitchesSinceCheckpoint: 2,
		ParentShardIDs:  []string{"shardId-000000000000", "shardId-000000000001"},
		StartingHashKey: "0", EndingHashKey: "170141183460469231731687303715884105727",
	}
	if fmt.Sprint(l) != fmt.Sprint(want) {
		t.Fatalf("read %+v\nwant %+v", l, want)
	}
	// kinlog takes the lease over (the KCL worker is gone) and checkpoints.
	l, err := s.TakeLease(ctx, l, "kinlog-1")
	if err != nil {
		t.Fatal(err)
	}
	if l.OwnerSwitchesSinceCheckpoint != 3 {
		t.Fatalf("OwnerSwitchesSinceCheckpoint = %d, want 3", l.OwnerSwitchesSinceCheckpoint)
	}
	if _, err := s.Checkpoint(ctx, l, checkpoint.Checkpoint{Sequence: seqB}); err != nil {
		t.Fatal(err)
	}
	out, err := client.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(s.Table()), Key: map[string]types.AttributeValue{"leaseKey": av("shardId-000000000003")}})
	if err != nil {
		t.Fatal(err)
	}
	for attr, want := range map[string]string{"throughputKBps": "12.5", "entityType": "lease", "leaseCounter": "1236", "checkpoint": seqB, "checkpointSubSequenceNumber": "0", "ownerSwitchesSinceCheckpoint": "0", "leaseOwner": "kinlog-1"} {
		var got string
		switch v := out.Item[attr].(type) {
		case *types.AttributeValueMemberS:
			got = v.Value
		case *types.AttributeValueMemberN:
			got = v.Value
		}
		if got != want {
			t.Errorf("%s = %q, want %q", attr, got, want)
		}
	}
}

// TestForeignItemOnDynalite: an item with unexpected types, written by another tool into a
// real table, gives an *AttributeError from GetLease and ListLeases, and leaves the other
// leases usable.
func TestForeignItemOnDynalite(t *testing.T) {
	client := testenv.DynamoDBClient(t)
	s := ensured(t, newTable(t, client))
	ctx := t.Context()
	if _, err := s.CreateLease(ctx, checkpoint.Lease{Key: "good", Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
		t.Fatal(err)
	}
	bad := map[string]types.AttributeValue{"leaseKey": av("bad"), "leaseCounter": av("seven"), "leaseOwner": av("x")}
	if _, err := client.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.Table()), Item: bad}); err != nil {
		t.Fatal(err)
	}
	var ae *dynamodb.AttributeError
	if _, err := s.GetLease(ctx, "bad"); !errors.As(err, &ae) || ae.Key != "bad" || ae.Attribute != "leaseCounter" || ae.Got != "S" {
		t.Fatalf("GetLease(bad): %v, want an AttributeError for bad.leaseCounter", err)
	}
	if _, err := s.ListLeases(ctx); !errors.As(err, &ae) || ae.Key != "bad" {
		t.Fatalf("ListLeases: %v, want an AttributeError for bad", err)
	}
	// A take of the bad lease is refused by the condition (the counter is not a number),
	// and the read that explains the refusal names the bad attribute.
	ae = nil
	if _, err := s.TakeLease(ctx, checkpoint.Lease{Key: "bad", Owner: "x"}, "w"); !errors.Is(err, checkpoint.ErrConflict) || !errors.As(err, &ae) || ae.Attribute != "leaseCounter" {
		t.Fatalf("TakeLease(bad): %v", err)
	}
	good, err := s.TakeLease(ctx, mustGet(t, s, "good"), "w")
	if err != nil {
		t.Fatalf("the good lease is unusable: %v", err)
	}
	if _, err := s.Checkpoint(ctx, good, checkpoint.Checkpoint{Sequence: seqA}); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureTableOnDynalite(t *testing.T) {
	client := testenv.DynamoDBClient(t)
	ctx := t.Context()
	t.Run("provisioned", func(t *testing.T) {
		s := ensured(t, newTable(t, client, dynamodb.WithProvisionedThroughput(4, 2)))
		out, err := client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.Table())})
		if err != nil {
			t.Fatal(err)
		}
		pt := out.Table.ProvisionedThroughput
		if pt == nil || aws.ToInt64(pt.ReadCapacityUnits) != 4 || aws.ToInt64(pt.WriteCapacityUnits) != 2 {
			t.Fatalf("throughput %+v, want 4/2", pt)
		}
		if out.Table.TableStatus != types.TableStatusActive {
			t.Fatalf("status %s after EnsureTable", out.Table.TableStatus)
		}
	})
	t.Run("on-demand", func(t *testing.T) {
		s := ensured(t, newTable(t, client))
		out, err := client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.Table())})
		if err != nil {
			t.Fatal(err)
		}
		if bm := out.Table.BillingModeSummary; bm == nil || bm.BillingMode != types.BillingModePayPerRequest {
			t.Fatalf("billing mode summary %+v, want PAY_PER_REQUEST", bm)
		}
	})
	t.Run("concurrent workers", func(t *testing.T) {
		s := newTable(t, client)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				other, err := dynamodb.New(testenv.DynamoDBClient(t), s.Table())
				if err == nil {
					err = other.EnsureTable(ctx)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("worker %d: %v", i, err)
			}
		}
	})
	t.Run("another tool's table", func(t *testing.T) {
		table := createVMwareTable(t, client)
		s, err := dynamodb.New(client, table)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureTable(ctx); !errors.Is(err, dynamodb.ErrSchemaMismatch) {
			t.Fatalf("EnsureTable on a vmware-go-kcl table: %v, want ErrSchemaMismatch", err)
		}
	})
}

// createVMwareTable creates a table shaped like vmware-go-kcl-v2's (hash key ShardID,
// provisioned as that library creates it) and deletes it when the test ends.
func createVMwareTable(t *testing.T, client *ddb.Client) string {
	t.Helper()
	ctx := t.Context()
	table := testenv.Name(t, "vmware-kcl")
	_, err := client.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:             aws.String(table),
		AttributeDefinitions:  []types.AttributeDefinition{{AttributeName: aws.String("ShardID"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:             []types.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: types.KeyTypeHash}},
		ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(10), WriteCapacityUnits: aws.Int64(10)},
	})
	if err != nil {
		t.Fatalf("creating %s: %v", table, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTable(ctx, &ddb.DeleteTableInput{TableName: aws.String(table)})
	})
	w := ddb.NewTableExistsWaiter(client, func(o *ddb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 20*time.Millisecond, 200*time.Millisecond
	})
	if err := w.Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(table)}, 30*time.Second); err != nil {
		t.Fatalf("waiting for %s: %v", table, err)
	}
	return table
}

package dynamodb_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/testenv"
)

// TestOwnerIndex: a store made WithOwnerIndex creates the table with the KCL 3.x owner
// index, and OwnedKeys lists each owner's leases from it (the index is eventually
// consistent, so the test waits for it); a store made WithOwnerIndex refuses a table
// without the index, naming it.
func TestOwnerIndex(t *testing.T) {
	client := testenv.DynamoDBClient(t)
	s := ensured(t, newTable(t, client, dynamodb.WithOwnerIndex()))
	ctx := t.Context()
	keys := []string{"shardId-000000000000", "shardId-000000000001", "shardId-000000000002"}
	for _, k := range keys {
		if _, err := s.CreateLease(ctx, checkpoint.Lease{Key: k, Checkpoint: checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range keys[:2] {
		owner := []string{"w1", "w2"}[i]
		if _, err := s.TakeLease(ctx, mustGet(t, s, k), owner); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		w1, err1 := s.OwnedKeys(ctx, "w1")
		w2, err2 := s.OwnedKeys(ctx, "w2")
		none, err3 := s.OwnedKeys(ctx, "nobody")
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("OwnedKeys: %v", err)
		}
		if slices.Equal(w1, keys[:1]) && slices.Equal(w2, keys[1:2]) && len(none) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("owned keys: w1 %v, w2 %v, nobody %v; want %v, %v, none", w1, w2, none, keys[:1], keys[1:2])
		}
		<-time.After(50 * time.Millisecond) // the index catches up on its own time
	}

	plain := ensured(t, newTable(t, client))
	withIndex, err := dynamodb.New(client, plain.Table(), dynamodb.WithOwnerIndex())
	if err != nil {
		t.Fatal(err)
	}
	if err := withIndex.EnsureTable(ctx); !errors.Is(err, dynamodb.ErrNoOwnerIndex) {
		t.Fatalf("EnsureTable of a table without the index: %v, want ErrNoOwnerIndex", err)
	}
	if err := withIndex.CheckTable(ctx); !errors.Is(err, dynamodb.ErrNoOwnerIndex) {
		t.Fatalf("CheckTable of a table without the index: %v, want ErrNoOwnerIndex", err)
	}
}

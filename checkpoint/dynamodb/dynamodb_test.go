package dynamodb_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/checkpointtest"
	"github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/testenv"
)

// newTable returns a store on a fresh table (not yet created) that is deleted when the test
// ends.
func newTable(t testing.TB, client *ddb.Client, opts ...dynamodb.Option) *dynamodb.Store {
	t.Helper()
	table := testenv.Name(t, "kinlog-lease")
	s, err := dynamodb.New(client, table, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTable(ctx, &ddb.DeleteTableInput{TableName: aws.String(table)})
	})
	return s
}

func TestStore(t *testing.T) {
	client := testenv.DynamoDBClient(t)
	checkpointtest.Run(t, func(t *testing.T) checkpoint.Store { return newTable(t, client) })
}

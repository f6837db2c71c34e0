package dynamodb_test

import (
	"context"
	"sync"

	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
)

// fakeAPI is a dynamodb.API made of function fields; it records every input. A nil field
// panics when called, so a test states every call it expects.
type fakeAPI struct {
	createTable   func(*ddb.CreateTableInput) (*ddb.CreateTableOutput, error)
	describeTable func(*ddb.DescribeTableInput) (*ddb.DescribeTableOutput, error)
	getItem       func(*ddb.GetItemInput) (*ddb.GetItemOutput, error)
	putItem       func(*ddb.PutItemInput) (*ddb.PutItemOutput, error)
	updateItem    func(*ddb.UpdateItemInput) (*ddb.UpdateItemOutput, error)
	deleteItem    func(*ddb.DeleteItemInput) (*ddb.DeleteItemOutput, error)
	scan          func(*ddb.ScanInput) (*ddb.ScanOutput, error)
	query         func(*ddb.QueryInput) (*ddb.QueryOutput, error)

	mu    sync.Mutex
	calls []any // inputs, in order
}

func (f *fakeAPI) record(in any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, in)
}

// count returns how many recorded inputs have type T.
func count[T any](f *fakeAPI) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if _, ok := c.(T); ok {
			n++
		}
	}
	return n
}

// inputs returns the recorded inputs of type T.
func inputs[T any](f *fakeAPI) []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []T
	for _, c := range f.calls {
		if v, ok := c.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func (f *fakeAPI) CreateTable(_ context.Context, in *ddb.CreateTableInput, _ ...func(*ddb.Options)) (*ddb.CreateTableOutput, error) {
	f.record(in)
	return f.createTable(in)
}

func (f *fakeAPI) DescribeTable(_ context.Context, in *ddb.DescribeTableInput, _ ...func(*ddb.Options)) (*ddb.DescribeTableOutput, error) {
	f.record(in)
	return f.describeTable(in)
}

func (f *fakeAPI) GetItem(_ context.Context, in *ddb.GetItemInput, _ ...func(*ddb.Options)) (*ddb.GetItemOutput, error) {
	f.record(in)
	return f.getItem(in)
}

func (f *fakeAPI) PutItem(_ context.Context, in *ddb.PutItemInput, _ ...func(*ddb.Options)) (*ddb.PutItemOutput, error) {
	f.record(in)
	return f.putItem(in)
}

func (f *fakeAPI) UpdateItem(_ context.Context, in *ddb.UpdateItemInput, _ ...func(*ddb.Options)) (*ddb.UpdateItemOutput, error) {
	f.record(in)
	return f.updateItem(in)
}

func (f *fakeAPI) DeleteItem(_ context.Context, in *ddb.DeleteItemInput, _ ...func(*ddb.Options)) (*ddb.DeleteItemOutput, error) {
	f.record(in)
	return f.deleteItem(in)
}

func (f *fakeAPI) Scan(_ context.Context, in *ddb.ScanInput, _ ...func(*ddb.Options)) (*ddb.ScanOutput, error) {
	f.record(in)
	return f.scan(in)
}

func (f *fakeAPI) Query(_ context.Context, in *ddb.QueryInput, _ ...func(*ddb.Options)) (*ddb.QueryOutput, error) {
	f.record(in)
	return f.query(in)
}

// sdkErr wraps err the way SDK v2 returns service errors: inside a
// *smithy.OperationError, so only errors.As finds it.
func sdkErr(op string, err error) error {
	return &smithy.OperationError{ServiceID: "DynamoDB", OperationName: op, Err: err}
}

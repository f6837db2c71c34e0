package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kinlog/kinlog/checkpoint"
)

// API is the subset of the DynamoDB client the store uses. *dynamodb.Client implements it;
// tests pass a small fake.
type API interface {
	CreateTable(ctx context.Context, in *ddb.CreateTableInput, optFns ...func(*ddb.Options)) (*ddb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *ddb.DescribeTableInput, optFns ...func(*ddb.Options)) (*ddb.DescribeTableOutput, error)
	GetItem(ctx context.Context, in *ddb.GetItemInput, optFns ...func(*ddb.Options)) (*ddb.GetItemOutput, error)
	PutItem(ctx context.Context, in *ddb.PutItemInput, optFns ...func(*ddb.Options)) (*ddb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *ddb.UpdateItemInput, optFns ...func(*ddb.Options)) (*ddb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *ddb.DeleteItemInput, optFns ...func(*ddb.Options)) (*ddb.DeleteItemOutput, error)
	Scan(ctx context.Context, in *ddb.ScanInput, optFns ...func(*ddb.Options)) (*ddb.ScanOutput, error)
	Query(ctx context.Context, in *ddb.QueryInput, optFns ...func(*ddb.Options)) (*ddb.QueryOutput, error)
}

// OwnerIndexName is the global secondary index of leaseOwner (hash) and leaseKey (range),
// keys only, that [Store.OwnedKeys] queries: the KCL 3.x's index of the same name and
// schema, so a table shared with the KCL 3.x has one index for both.
const OwnerIndexName = "LeaseOwnerToLeaseKeyIndex"

var _ API = (*ddb.Client)(nil)

// ErrSchemaMismatch means the table exists but its key is not the KCL lease table's
// (leaseKey, a string hash key, and no range key): it belongs to another tool.
var ErrSchemaMismatch = errors.New("checkpoint/dynamodb: table is not a KCL lease table")

// Store is a [checkpoint.Store] on a DynamoDB table with the KCL lease-table schema. It is
// safe for concurrent use.
type Store struct {
	client API
	table  string

	readCapacity, writeCapacity int64 // 0: on-demand
	ownerIndex                  bool  // the table must have OwnerIndexName
	pollMin, pollMax            time.Duration
}

var _ checkpoint.Store = (*Store)(nil)

// Option configures a [Store].
type Option func(*Store)

// WithProvisionedThroughput makes EnsureTable create the table in provisioned mode with
// the given read and write capacity units. The default is on-demand (PAY_PER_REQUEST)
// billing, as the KCL's. It has no effect on an existing table.
func WithProvisionedThroughput(read, write int64) Option {
	return func(s *Store) { s.readCapacity, s.writeCapacity = read, write }
}

// WithOwnerIndex makes [Store.EnsureTable] create the table with the owner index
// ([OwnerIndexName]), and EnsureTable and [Store.CheckTable] refuse an existing table without
// it: a consumer whose leases an elected leader assigns (consumer.WithLeaderAssignment)
// finds its leases through it. DynamoDB adds an index to an existing table with
// UpdateTable (aws dynamodb update-table --attribute-definitions
// AttributeName=leaseOwner,AttributeType=S AttributeName=leaseKey,AttributeType=S
// --global-secondary-index-updates with a Create of the index); kinlog does not alter a
// table it did not create.
func WithOwnerIndex() Option { return func(s *Store) { s.ownerIndex = true } }

// WithTablePoll sets how often EnsureTable polls a table being created: the first wait is
// min, doubling (with jitter) up to max. The defaults are 50ms and 2s.
func WithTablePoll(min, max time.Duration) Option {
	return func(s *Store) { s.pollMin, s.pollMax = min, max }
}

// New returns a store on the named table. It makes no call; use [Store.EnsureTable] to
// create the table.
func New(client API, table string, opts ...Option) (*Store, error) {
	s := &Store{client: client, table: table, pollMin: 50 * time.Millisecond, pollMax: 2 * time.Second}
	for _, o := range opts {
		o(s)
	}
	switch {
	case client == nil:
		return nil, errors.New("checkpoint/dynamodb: nil client")
	case !validTableName(table):
		return nil, fmt.Errorf("checkpoint/dynamodb: invalid table name %q (3-255 of a-z A-Z 0-9 _ - .)", table)
	case s.readCapacity < 0 || s.writeCapacity < 0 || (s.readCapacity == 0) != (s.writeCapacity == 0):
		return nil, fmt.Errorf("checkpoint/dynamodb: provisioned throughput needs positive read and write capacity, got %d and %d", s.readCapacity, s.writeCapacity)
	case s.pollMin <= 0 || s.pollMax < s.pollMin:
		return nil, fmt.Errorf("checkpoint/dynamodb: invalid table poll interval %v..%v", s.pollMin, s.pollMax)
	}
	return s, nil
}

func validTableName(t string) bool {
	if len(t) < 3 || len(t) > 255 {
		return false
	}
	for _, r := range t {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// Table returns the name of the lease table.
func (s *Store) Table() string { return s.table }

// EnsureTable creates the lease table if it does not exist (hash key leaseKey, on-demand
// billing unless [WithProvisionedThroughput]) and waits until it is ACTIVE or ctx ends. An
// existing table must have the lease table's key schema, or EnsureTable returns
// ErrSchemaMismatch. Concurrent calls from many workers are safe.
func (s *Store) EnsureTable(ctx context.Context) error {
	out, err := s.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)})
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		if err := s.createTable(ctx); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("describing lease table %s: %w", s.table, err)
	default:
		if err := s.checkSchema(out.Table); err != nil {
			return fmt.Errorf("checking lease table %s: %w", s.table, err)
		}
		if out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
	}
	return s.waitActive(ctx)
}

// CheckTable checks that the lease table exists with the lease table's key schema, without
// creating it, and waits until it is ACTIVE; a missing table is [checkpoint.ErrNoTable].
func (s *Store) CheckTable(ctx context.Context) error {
	out, err := s.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)})
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		return fmt.Errorf("%w: %s", checkpoint.ErrNoTable, s.table)
	case err != nil:
		return fmt.Errorf("describing lease table %s: %w", s.table, err)
	}
	if err := s.checkSchema(out.Table); err != nil {
		return fmt.Errorf("checking lease table %s: %w", s.table, err)
	}
	if out.Table.TableStatus == types.TableStatusActive {
		return nil
	}
	return s.waitActive(ctx)
}

// ErrNoOwnerIndex means the store was made [WithOwnerIndex] and the table has no
// [OwnerIndexName] index.
var ErrNoOwnerIndex = errors.New("checkpoint/dynamodb: lease table has no " + OwnerIndexName + " index")

// checkSchema checks the key schema and, with WithOwnerIndex, the owner index.
func (s *Store) checkSchema(t *types.TableDescription) error {
	if err := checkKeySchema(t); err != nil {
		return err
	}
	if !s.ownerIndex {
		return nil
	}
	for _, g := range t.GlobalSecondaryIndexes {
		if aws.ToString(g.IndexName) == OwnerIndexName {
			return nil
		}
	}
	return fmt.Errorf("%w (leader assignment finds each worker's leases through it; add it with aws dynamodb update-table, or use scanning assignment)", ErrNoOwnerIndex)
}

func checkKeySchema(t *types.TableDescription) error {
	if t == nil {
		return fmt.Errorf("%w: no table description", ErrSchemaMismatch)
	}
	if len(t.KeySchema) != 1 || aws.ToString(t.KeySchema[0].AttributeName) != AttrLeaseKey || t.KeySchema[0].KeyType != types.KeyTypeHash {
		var keys []string
		for _, k := range t.KeySchema {
			keys = append(keys, fmt.Sprintf("%s (%s)", aws.ToString(k.AttributeName), k.KeyType))
		}
		return fmt.Errorf("%w: key schema is %v, want %s (HASH) only", ErrSchemaMismatch, keys, AttrLeaseKey)
	}
	for _, a := range t.AttributeDefinitions {
		if aws.ToString(a.AttributeName) == AttrLeaseKey && a.AttributeType != types.ScalarAttributeTypeS {
			return fmt.Errorf("%w: %s has type %s, want S", ErrSchemaMismatch, AttrLeaseKey, a.AttributeType)
		}
	}
	return nil
}

func (s *Store) createTable(ctx context.Context) error {
	in := &ddb.CreateTableInput{
		TableName:            aws.String(s.table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrLeaseKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrLeaseKey), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}
	if s.ownerIndex {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(AttrLeaseOwner), AttributeType: types.ScalarAttributeTypeS})
		in.GlobalSecondaryIndexes = []types.GlobalSecondaryIndex{{
			IndexName: aws.String(OwnerIndexName),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(AttrLeaseOwner), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(AttrLeaseKey), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		}}
	}
	if s.readCapacity > 0 {
		in.BillingMode = types.BillingModeProvisioned
		in.ProvisionedThroughput = &types.ProvisionedThroughput{
			ReadCapacityUnits:  aws.Int64(s.readCapacity),
			WriteCapacityUnits: aws.Int64(s.writeCapacity),
		}
		for i := range in.GlobalSecondaryIndexes {
			in.GlobalSecondaryIndexes[i].ProvisionedThroughput = in.ProvisionedThroughput
		}
	}
	_, err := s.client.CreateTable(ctx, in)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) { // in use: another worker is creating it
		return fmt.Errorf("creating lease table %s: %w", s.table, err)
	}
	return nil
}

func (s *Store) waitActive(ctx context.Context) error {
	delay := s.pollMin
	for {
		out, err := s.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)})
		var notFound *types.ResourceNotFoundException
		switch {
		case err == nil:
			if err := s.checkSchema(out.Table); err != nil {
				return fmt.Errorf("checking lease table %s: %w", s.table, err)
			}
			if out.Table.TableStatus == types.TableStatusActive {
				return nil
			}
		case errors.As(err, &notFound):
			// Eventually consistent right after CreateTable; keep waiting.
		default:
			return fmt.Errorf("waiting for lease table %s: %w", s.table, err)
		}
		if err := sleep(ctx, jitter(delay)); err != nil {
			return fmt.Errorf("waiting for lease table %s to become ACTIVE: %w", s.table, err)
		}
		delay = min(2*delay, s.pollMax)
	}
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func conditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

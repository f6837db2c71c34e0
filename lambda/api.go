package lambda

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// S3API is the part of the S3 client the function uses: the archive sink's writes, and
// DeleteObject to remove the objects of an attempt that did not commit. *s3.Client
// implements it.
type S3API interface {
	s3sink.API
	DeleteObject(context.Context, *awss3.DeleteObjectInput, ...func(*awss3.Options)) (*awss3.DeleteObjectOutput, error)
}

// DynamoDBAPI is the part of the DynamoDB client the progress table needs: a consistent read
// and conditional updates. *dynamodb.Client implements it.
type DynamoDBAPI interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// KinesisAPI is the part of the Kinesis client the function uses: ListShards, once per shard
// and execution environment, for the hash-key range that KPL aggregates must fall in.
// *kinesis.Client implements it.
type KinesisAPI interface {
	ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
}

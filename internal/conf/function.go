package conf

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/lambda"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// Function is the configuration of the Lambda function (cmd/kinlog-lambda), read from
// KINLOG_* variables, and of `kinlog replay`, which archives through the same protocol: the
// worker's sink and analytics sections, a log level and the progress table.
type Function struct {
	Sink      Sink      `yaml:"sink"`
	Analytics Analytics `yaml:"analytics"`
	Log       struct {
		// Level is debug, info, warn or error. Default: info. (The function logs JSON,
		// for CloudWatch Logs.)
		Level string `yaml:"level"`
	} `yaml:"log"`
	Progress struct {
		// Table is the DynamoDB table of per-shard progress items (hash key "shard").
		// Required.
		Table string `yaml:"table"`
	} `yaml:"progress"`
}

// DefaultFunction returns the defaults.
func DefaultFunction() Function {
	c := Function{Sink: DefaultSink(), Analytics: DefaultAnalytics()}
	c.Log.Level = "info"
	return c
}

// Validate checks the configuration, naming the key of a wrong value.
func (c *Function) Validate() error {
	if err := c.Sink.Validate(); err != nil {
		return err
	}
	if err := c.Analytics.Validate(); err != nil {
		return err
	}
	if c.Progress.Table == "" {
		return bad("progress.table", errors.New("required: the DynamoDB table of the function's per-shard progress (KINLOG_PROGRESS_TABLE)"))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return bad("log.level", err)
	}
	return nil
}

// Build makes the function from a validated configuration, with clients from awsCfg. It
// makes a sink once, so that a configuration the sink refuses fails here rather than at
// the first batch. It also returns the clients, for callers that need more of them.
func (c *Function) Build(awsCfg aws.Config, log *slog.Logger, opts ...lambda.Option) (*lambda.Function, Clients, error) {
	cl := Clients{
		S3:       s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = c.Sink.S3.PathStyle }),
		Kinesis:  kinesis.NewFromConfig(awsCfg),
		DynamoDB: dynamodb.NewFromConfig(awsCfg),
	}
	newSink := func(stream string) (*s3sink.Sink, error) {
		opts := append(SinkOptions(&c.Sink, &c.Analytics), s3sink.WithLogger(log.With("component", "sink")))
		return s3sink.New(cl.S3, c.Sink.S3.Bucket, stream, opts...)
	}
	if _, err := newSink("init-check"); err != nil {
		return nil, cl, fmt.Errorf("sink.s3: %w", err)
	}
	opts = append([]lambda.Option{lambda.WithChunkSize(int(c.Sink.S3.FlushSize)), lambda.WithLogger(log)}, opts...)
	fn, err := lambda.New(newSink, cl.S3, cl.Kinesis, cl.DynamoDB, c.Progress.Table, opts...)
	return fn, cl, err
}

// Clients are the AWS clients of a built function.
type Clients struct {
	S3       *s3.Client
	Kinesis  *kinesis.Client
	DynamoDB *dynamodb.Client
}

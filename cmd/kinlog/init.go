package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"

	"github.com/kinlog/kinlog/internal/conf"
)

// runInit creates what the worker's configuration names — the stream, the lease table and
// the archive bucket — and says what it did; what exists already is left as it is.
func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", os.Getenv("KINLOG_CONFIG"), "the worker's YAML config file (default $KINLOG_CONFIG)")
	var sets stringList
	fs.Var(&sets, "set", "override a config key: --set stream=logs (repeatable)")
	shards := fs.Int("shards", 1, "shards of the stream, when it is created (on-demand streams: use the console or Terraform)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see kinlog init --help)", errUsage, fs.Arg(0))
	}
	if *shards < 1 {
		return fmt.Errorf("%w: --shards must be at least 1", errUsage)
	}
	cfg := defaultConsumeConfig()
	if err := conf.Load(&cfg, *path, os.Environ(), sets); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, w := range conf.EnvWarnings(&cfg, os.Environ()) {
		fmt.Fprintf(stderr, "kinlog init: warning: %s\n", w)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.resolve()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	where := "region " + awsCfg.Region
	if bad := nonLocalEndpoints(os.Getenv); len(bad) == 0 {
		where = "the local endpoints (" + os.Getenv("AWS_ENDPOINT_URL_KINESIS") + ", …)"
	}
	fmt.Fprintf(stdout, "creating in %s what %s names:\n", where, configName(*path))

	// The streams.
	kc := kinesis.NewFromConfig(awsCfg)
	for _, stream := range cfg.streams() {
		_, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		var knf *ktypes.ResourceNotFoundException
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "  stream %s: exists, left as it is\n", stream)
		case errors.As(err, &knf):
			if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(int32(*shards))}); err != nil {
				return fmt.Errorf("creating stream %s: %w", stream, err)
			}
			if err := kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 200 * time.Millisecond }).
				Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(stream)}, 3*time.Minute); err != nil {
				return fmt.Errorf("waiting for stream %s: %w", stream, err)
			}
			fmt.Fprintf(stdout, "  stream %s: created with %d shards\n", stream, *shards)
		default:
			return fmt.Errorf("describing stream %s: %w", stream, err)
		}
	}

	// The lease table, and with lease_assignment: leader the coordinator table.
	store, coordinator, err := leaseStores(&cfg, dynamodb.NewFromConfig(awsCfg))
	if err != nil {
		return err
	}
	tables := []*ddbstore.Store{store}
	if coordinator != nil {
		tables = append(tables, coordinator)
	}
	for _, st := range tables {
		what := "lease table"
		if st == coordinator {
			what = "coordinator table"
		}
		if err := st.CheckTable(ctx); err == nil {
			fmt.Fprintf(stdout, "  %s %s: exists, left as it is\n", what, st.Table())
		} else if errors.Is(err, ddbstore.ErrNoOwnerIndex) {
			return fmt.Errorf("lease table %s exists without the %s index that consumer.lease_assignment: leader needs: add it with aws dynamodb update-table, or set consumer.lease_assignment: scan", st.Table(), ddbstore.OwnerIndexName)
		} else {
			if err := st.EnsureTable(ctx); err != nil {
				return fmt.Errorf("creating %s %s: %w", what, st.Table(), err)
			}
			fmt.Fprintf(stdout, "  %s %s: created (on-demand)\n", what, st.Table())
		}
	}

	// The bucket.
	sc := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = cfg.Sink.S3.PathStyle })
	if _, err := sc.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Sink.S3.Bucket)}); err == nil {
		fmt.Fprintf(stdout, "  bucket %s: exists, left as it is\n", cfg.Sink.S3.Bucket)
	} else {
		in := &s3.CreateBucketInput{Bucket: aws.String(cfg.Sink.S3.Bucket)}
		if r := awsCfg.Region; r != "" && r != "us-east-1" {
			in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(r)}
		}
		if _, err := sc.CreateBucket(ctx, in); err != nil {
			return fmt.Errorf("creating bucket %s: %w", cfg.Sink.S3.Bucket, err)
		}
		fmt.Fprintf(stdout, "  bucket %s: created\n", cfg.Sink.S3.Bucket)
	}
	fmt.Fprintf(stdout, "next: kinlog consume %s\n", configFlag(*path))
	return nil
}

func configName(path string) string {
	if path == "" {
		return "the configuration"
	}
	return path
}

func configFlag(path string) string {
	if path == "" {
		return "--set ... (the same keys)"
	}
	return "--config " + path
}

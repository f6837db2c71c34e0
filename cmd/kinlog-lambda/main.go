// Command kinlog-lambda is the bootstrap of kinlog's serverless mode: the archive sink as an
// AWS Lambda function (runtime provided.al2023) on a Kinesis event source mapping. See
// package github.com/kinlog/kinlog/lambda for the exactly-once protocol.
//
// Build it for Lambda with `make lambda`, or:
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -tags lambda.norpc -o bootstrap ./cmd/kinlog-lambda
//
// It is configured by environment variables with the keys of the worker's sink and
// analytics sections (KINLOG_SINK_S3_BUCKET, KINLOG_SINK_S3_ENCODING, KINLOG_ANALYTICS_…)
// plus KINLOG_PROGRESS_TABLE. Run outside Lambda with --check, it validates them and prints
// the effective configuration.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	awslambda "github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/config"
	"gopkg.in/yaml.v3"

	"github.com/kinlog/kinlog/internal/conf"
	"github.com/kinlog/kinlog/lambda"
)

const usage = `kinlog-lambda is the bootstrap of kinlog's serverless mode: the archive sink as an AWS
Lambda function (runtime provided.al2023) on a Kinesis event source mapping with
ReportBatchItemFailures and ParallelizationFactor 1. Lambda starts it; there is nothing to
run by hand except the check.

Usage:
  kinlog-lambda --check    validate the configuration in the environment and print it
  kinlog-lambda --help     this text

Configuration (environment; the keys of kinlog consume's sink and analytics sections):
  KINLOG_SINK_S3_BUCKET        the archive bucket (required)
  KINLOG_PROGRESS_TABLE        the DynamoDB progress table, hash key "shard" (required)
  KINLOG_SINK_S3_PREFIX, KINLOG_SINK_S3_ERROR_PREFIX, KINLOG_SINK_S3_ENCODING,
  KINLOG_SINK_S3_COMPRESSION, KINLOG_SINK_S3_FLUSH_SIZE (the chunk size), KINLOG_ANALYTICS_*,
  KINLOG_LOG_LEVEL, …          as for kinlog consume (kinlog-lambda --check lists them all)
  AWS_REGION, AWS_ENDPOINT_URL_S3 / _DYNAMODB / _KINESIS   the SDK's standard variables
`

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kinlog-lambda", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	check := fs.Bool("check", false, "validate the configuration and print it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "kinlog-lambda: %v\n\n%s", err, usage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kinlog-lambda: unexpected argument %q\n\n%s", fs.Arg(0), usage)
		return 2
	}
	cfg := conf.DefaultFunction()
	err := conf.Load(&cfg, "", environ, nil)
	if err == nil {
		err = cfg.Validate()
	}
	for _, w := range conf.EnvWarnings(&cfg, environ) {
		fmt.Fprintf(stderr, "kinlog-lambda: warning: %s\n", w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kinlog-lambda: %v\n", err)
		return 2
	}
	if *check {
		cfg.Sink.Resolve()
		cfg.Analytics.Resolve()
		fmt.Fprintln(stdout, "# the effective configuration, from KINLOG_* variables (KINLOG_<KEY>, dots as underscores)")
		if err := yaml.NewEncoder(stdout).Encode(&cfg); err != nil {
			fmt.Fprintf(stderr, "kinlog-lambda: %v\n", err)
			return 1
		}
		return 0
	}
	if _, ok := lookup(environ, "AWS_LAMBDA_RUNTIME_API"); !ok {
		fmt.Fprintf(stderr, "kinlog-lambda: AWS_LAMBDA_RUNTIME_API is not set: this is a Lambda bootstrap; Lambda (or the Runtime Interface Emulator) starts it\n\n%s", usage)
		return 2
	}
	setMemoryLimit(environ)
	fn, err := build(context.Background(), &cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "kinlog-lambda: %v\n", err)
		return 1
	}
	awslambda.Start(rawHandler{fn})
	return 0
}

// rawHandler hands the payload to the function as it came: a handler taking a
// json.RawMessage would have aws-lambda-go decode it with encoding/json first, which
// scans 6 MB events once more and answers a payload that is not JSON with its own error
// instead of the function's ErrMalformedEvent.
type rawHandler struct{ fn *lambda.Function }

func (h rawHandler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	resp, err := h.fn.Handle(ctx, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

// build makes the function from a validated configuration.
func build(ctx context.Context, cfg *conf.Function, logOut io.Writer) (*lambda.Function, error) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: lvl}))
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading AWS config: %w", err)
	}
	fn, _, err := cfg.Build(awsCfg, log, lambda.WithRequestID(func(ctx context.Context) string {
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			return lc.AwsRequestID
		}
		return ""
	}))
	return fn, err
}

// setMemoryLimit lets the garbage collector work to the function's memory size (Lambda
// sets AWS_LAMBDA_FUNCTION_MEMORY_SIZE, in MB) rather than to twice the live heap, which
// for a 6 MB event can pass a small function's memory: 85% of it, leaving room for the
// runtime's own. GOMEMLIMIT, when set, wins.
func setMemoryLimit(environ []string) {
	if _, ok := lookup(environ, "GOMEMLIMIT"); ok {
		return
	}
	v, _ := lookup(environ, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
	if mb, err := strconv.Atoi(v); err == nil && mb > 0 {
		debug.SetMemoryLimit(int64(mb) << 20 * 85 / 100)
	}
}

func lookup(environ []string, name string) (string, bool) {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

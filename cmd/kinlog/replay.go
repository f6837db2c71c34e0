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
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kinlog/kinlog/internal/conf"
	"github.com/kinlog/kinlog/lambda"
)

// failureRecord is what a Kinesis event source mapping writes to its on-failure destination
// for a discarded batch (https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html);
// S3 destinations also get the invocation payload.
type failureRecord struct {
	Timestamp string `json:"timestamp"`
	Batch     struct {
		ShardID   string `json:"shardId"`
		Start     string `json:"startSequenceNumber"`
		End       string `json:"endSequenceNumber"`
		BatchSize int    `json:"batchSize"`
		StreamARN string `json:"streamArn"`
	} `json:"KinesisBatchInfo"`
	Payload json.RawMessage `json:"payload"`
}

// discarded reads the batch a failure record names; the payload may be the event as JSON
// or as a string holding it.
func (r *failureRecord) discarded() (lambda.Discarded, error) {
	b := r.Batch
	if b.ShardID == "" || b.Start == "" || b.End == "" {
		return lambda.Discarded{}, errors.New("no KinesisBatchInfo with shardId, startSequenceNumber and endSequenceNumber: not a Kinesis on-failure record")
	}
	d := lambda.Discarded{Shard: b.ShardID, Start: b.Start, End: b.End}
	if i := strings.LastIndex(b.StreamARN, ":stream/"); i >= 0 {
		d.Stream = b.StreamARN[i+len(":stream/"):]
	}
	if d.Stream == "" {
		return d, fmt.Errorf("streamArn %q names no stream", b.StreamARN)
	}
	p := r.Payload
	if len(p) > 0 && p[0] == '"' {
		var s string
		if err := json.Unmarshal(p, &s); err != nil {
			return d, fmt.Errorf("payload: %w", err)
		}
		p = []byte(s)
	}
	if len(p) > 0 && string(p) != "null" {
		d.Payload = p
	}
	return d, nil
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", "", "YAML file with the function's configuration (sink, analytics, progress.table: the keys of its KINLOG_* variables, which are read too)")
	var sets stringList
	fs.Var(&sets, "set", "override a config key: --set progress.table=kinlog-progress (repeatable)")
	from := fs.String("from", "", "the on-failure destination: s3://bucket/prefix of the records the event source mapping wrote for discarded batches")
	del := fs.Bool("delete", false, "with --from: delete each on-failure record once its batch is replayed")
	stream := fs.String("stream", "", "without --from: the stream of the batch to replay")
	shard := fs.String("shard", "", "without --from: its shard")
	start := fs.String("start", "", "without --from: the sequence number of its first record")
	end := fs.String("end", "", "without --from: the sequence number of its last record")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	one := *stream != "" || *shard != "" || *start != "" || *end != ""
	switch {
	case *from == "" && !one:
		return fmt.Errorf("%w: say what to replay: --from s3://bucket/prefix, or --stream, --shard, --start and --end (see kinlog replay --help)", errUsage)
	case *from != "" && one:
		return fmt.Errorf("%w: --from and --stream/--shard/--start/--end exclude each other", errUsage)
	case one && (*stream == "" || *shard == "" || *start == "" || *end == ""):
		return fmt.Errorf("%w: a range needs all of --stream, --shard, --start and --end", errUsage)
	case *del && *from == "":
		return fmt.Errorf("%w: --delete needs --from", errUsage)
	}
	var bucket, prefix string
	if *from != "" {
		rest, ok := strings.CutPrefix(*from, "s3://")
		if !ok || rest == "" {
			return fmt.Errorf("%w: --from %q: want s3://bucket/prefix", errUsage, *from)
		}
		bucket, prefix, _ = strings.Cut(rest, "/")
	}
	cfg := conf.DefaultFunction()
	if err := conf.Load(&cfg, *path, os.Environ(), sets); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, w := range conf.EnvWarnings(&cfg, os.Environ()) {
		fmt.Fprintf(stderr, "kinlog replay: warning: %s\n", w)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	log := newLogger("", cfg.Log.Level, stderr)
	fn, cl, err := cfg.Build(awsCfg, log)
	if err != nil {
		return err
	}
	// The sink retries writes until they succeed: a missing archive bucket would never end.
	if _, err := cl.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &cfg.Sink.S3.Bucket}); err != nil {
		return fmt.Errorf("archive bucket %s (sink.s3.bucket): %w", cfg.Sink.S3.Bucket, err)
	}
	replay := func(d lambda.Discarded, source string) error {
		res, err := fn.Replay(ctx, d, cl.Kinesis, cl.S3)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		fmt.Fprintf(stdout, "%s %s %s..%s: %d records, %d already archived, %d archived now\n", d.Stream, d.Shard, d.Start, d.End, res.Records, res.Archived, res.Rearchived)
		return nil
	}
	if one {
		return replay(lambda.Discarded{Stream: *stream, Shard: *shard, Start: *start, End: *end}, "replaying "+*start+".."+*end)
	}
	return replayFrom(ctx, cl.S3, bucket, prefix, *del, log, replay)
}

// replayFrom replays every on-failure record under bucket/prefix, oldest first.
func replayFrom(ctx context.Context, c *s3.Client, bucket, prefix string, del bool, log *slog.Logger, replay func(lambda.Discarded, string) error) error {
	type item struct {
		key string
		at  time.Time
	}
	var items []item
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		var nb *s3types.NoSuchBucket
		if errors.As(err, &nb) {
			return fmt.Errorf("the on-failure bucket %s does not exist: check --from (the event source mapping's on-failure destination), AWS_REGION and AWS_ENDPOINT_URL_S3", bucket)
		}
		if err != nil {
			return fmt.Errorf("listing s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			items = append(items, item{aws.ToString(o.Key), aws.ToTime(o.LastModified)})
		}
	}
	if len(items) == 0 {
		return fmt.Errorf("no objects under s3://%s/%s: check --from (the event source mapping's on-failure destination)", bucket, prefix)
	}
	// Oldest first: batches of a shard in the order Lambda discarded them.
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].at.Before(items[j-1].at); j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
	failed := 0
	for _, it := range items {
		src := "s3://" + bucket + "/" + it.key
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &it.key})
		if err != nil {
			return fmt.Errorf("reading %s: %w", src, err)
		}
		body, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil {
			return fmt.Errorf("reading %s: %w", src, err)
		}
		var rec failureRecord
		if err := json.Unmarshal(body, &rec); err != nil {
			log.Warn("skipping an object that is not an on-failure record", "object", src, "err", err)
			failed++
			continue
		}
		d, err := rec.discarded()
		if err != nil {
			log.Warn("skipping an object that is not a Kinesis on-failure record", "object", src, "err", err)
			failed++
			continue
		}
		if err := replay(d, src); err != nil {
			return err
		}
		if del {
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &it.key}); err != nil {
				return fmt.Errorf("deleting %s: %w", src, err)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d objects under s3://%s/%s were not Kinesis on-failure records (see the log)", failed, len(items), bucket, prefix)
	}
	return nil
}

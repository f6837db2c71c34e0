package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/checkpoint"
	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/conf"
)

// shardStatus is one lease in `kinlog status`.
type shardStatus struct {
	Shard      string `json:"shard"`
	Owner      string `json:"owner"`
	Counter    int64  `json:"lease_counter"`
	Checkpoint string `json:"checkpoint"`
	Pending    string `json:"pending_checkpoint,omitempty"`
	// State is renewing (the owner renewed it during the sample), stale (owned, not renewed:
	// its worker is gone or stuck; another takes it after the failover time), unowned, or
	// finished (SHARD_END).
	State string `json:"state"`
	// BehindMillis is how far the checkpoint is behind the tip of the shard (with --lag).
	BehindMillis *int64 `json:"behind_ms,omitempty"`
}

// runStatus prints the fleet as the lease table shows it: per shard the owner, the
// checkpoint and whether the lease is being renewed, read twice a sample apart (the table
// keeps counters, not times); with --lag, how far each checkpoint is behind the stream.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", os.Getenv("KINLOG_CONFIG"), "the worker's YAML config file: stream, application, consumer.lease_table (default $KINLOG_CONFIG)")
	var sets stringList
	fs.Var(&sets, "set", "override a config key: --set consumer.lease_table=app-leases (repeatable)")
	sample := fs.Duration("sample", 0, "read the table twice this far apart to tell renewed leases from stale ones (default: a third of consumer.failover_time, plus 1s)")
	lag := fs.Bool("lag", false, "also read each open shard at its checkpoint to report how far it is behind (MillisBehindLatest)")
	asJSON := fs.Bool("json", false, "print JSON (snake_case fields, milliseconds)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see kinlog status --help)", errUsage, fs.Arg(0))
	}
	cfg := defaultConsumeConfig()
	if err := conf.Load(&cfg, *path, os.Environ(), sets); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, w := range conf.EnvWarnings(&cfg, os.Environ()) {
		fmt.Fprintf(stderr, "kinlog status: warning: %s\n", w)
	}
	if *lag && cfg.Stream == "" && len(cfg.Streams) == 0 {
		return fmt.Errorf("%w: --lag needs the stream: set stream (or streams) in the config or --set stream=<name>", errUsage)
	}
	table := cfg.Consumer.LeaseTable
	if table == "" {
		table = cfg.Application + "-leases"
	}
	if *sample == 0 {
		*sample = time.Duration(cfg.Consumer.FailoverTime)/3 + time.Second
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	store, err := ddbstore.New(dynamodb.NewFromConfig(awsCfg), table)
	if err != nil {
		return err
	}
	if err := store.CheckTable(ctx); err != nil {
		if errors.Is(err, checkpoint.ErrNoTable) {
			return fmt.Errorf("lease table %s does not exist (check application and consumer.lease_table)", table)
		}
		return err
	}
	first, err := store.ListLeases(ctx)
	if err != nil {
		return fmt.Errorf("listing leases: %w", err)
	}
	select {
	case <-time.After(*sample):
	case <-ctx.Done():
		return ctx.Err()
	}
	second, err := store.ListLeases(ctx)
	if err != nil {
		return fmt.Errorf("listing leases: %w", err)
	}
	before := map[string]checkpoint.Lease{}
	for _, l := range first {
		before[l.Key] = l
	}
	sort.Slice(second, func(i, j int) bool { return second[i].Key < second[j].Key })
	var rows []shardStatus
	owners := map[string]int{}
	for _, l := range second {
		st := shardStatus{Shard: l.Key, Owner: l.Owner, Counter: l.Counter, Checkpoint: l.Checkpoint.String()}
		if l.Pending != nil {
			st.Pending = l.Pending.String()
		}
		switch b, seen := before[l.Key]; {
		case l.Checkpoint.Sequence == checkpoint.ShardEnd:
			st.State = "finished"
		case l.Owner == "":
			st.State = "unowned"
		case !seen || b.Counter != l.Counter:
			st.State = "renewing"
			owners[l.Owner]++
		default:
			st.State = "stale"
			owners[l.Owner]++
		}
		rows = append(rows, st)
	}
	if *lag {
		kc := kinesis.NewFromConfig(awsCfg)
		for i := range rows {
			if rows[i].State == "finished" {
				continue
			}
			stream, shard := cfg.Stream, second[i].Key
			if streamID, id, ok := checkpoint.ParseMultiStreamKey(shard); ok {
				// A multi-stream lease: account:name:epoch:shardId.
				parts := strings.Split(streamID, ":")
				stream, shard = parts[1], id
			}
			if stream == "" {
				continue // a single-stream lease in a table of a multi-stream worker
			}
			ms, err := behind(ctx, kc, stream, shard, second[i].Checkpoint)
			if err != nil {
				fmt.Fprintf(stderr, "kinlog status: lag of %s: %v\n", rows[i].Shard, err)
				continue
			}
			rows[i].BehindMillis = &ms
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"lease_table": table, "sample_ms": sample.Milliseconds(), "shards": rows, "workers": owners})
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	header := "SHARD\tOWNER\tSTATE\tCHECKPOINT\tCOUNTER"
	if *lag {
		header += "\tBEHIND"
	}
	fmt.Fprintln(tw, header)
	states := map[string]int{}
	for _, r := range rows {
		owner := r.Owner
		if owner == "" {
			owner = "-"
		}
		cp := r.Checkpoint
		if r.Pending != "" {
			cp += " (pending " + r.Pending + ")"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%d", r.Shard, owner, r.State, cp, r.Counter)
		if *lag {
			if r.BehindMillis != nil {
				line += "\t" + (time.Duration(*r.BehindMillis) * time.Millisecond).String()
			} else {
				line += "\t-"
			}
		}
		fmt.Fprintln(tw, line)
		states[r.State]++
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, s := range []string{"renewing", "stale", "unowned", "finished"} {
		if states[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", states[s], s))
		}
	}
	fmt.Fprintf(stdout, "\n%d shards in %s (%s), %d workers; leases read %s apart\n", len(rows), table, strings.Join(parts, ", "), len(owners), *sample)
	if states["stale"] > 0 {
		fmt.Fprintf(stdout, "stale: owned but not renewed during the sample; the worker is gone or stuck, and another takes the lease %s after its last renewal\n", time.Duration(cfg.Consumer.FailoverTime))
	}
	return nil
}

// behind returns how far the checkpoint cp of shard is behind the tip, in milliseconds:
// one GetRecords at the checkpoint (read-only; the lease table is not touched).
func behind(ctx context.Context, kc *kinesis.Client, stream, shard string, cp checkpoint.Checkpoint) (int64, error) {
	in := &kinesis.GetShardIteratorInput{ShardId: aws.String(shard)}
	if strings.HasPrefix(stream, "arn:") {
		in.StreamARN = aws.String(stream)
	} else {
		in.StreamName = aws.String(stream)
	}
	switch cp.Sequence {
	case "", checkpoint.TrimHorizon:
		in.ShardIteratorType = ktypes.ShardIteratorTypeTrimHorizon
	case checkpoint.Latest:
		in.ShardIteratorType = ktypes.ShardIteratorTypeLatest
	case checkpoint.AtTimestamp:
		in.ShardIteratorType = ktypes.ShardIteratorTypeTrimHorizon
	default:
		in.ShardIteratorType = ktypes.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(cp.Sequence)
	}
	it, err := kc.GetShardIterator(ctx, in)
	if err != nil {
		return 0, err
	}
	out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(1)})
	if err != nil {
		return 0, err
	}
	return aws.ToInt64(out.MillisBehindLatest), nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dynamotypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/checkpoint"
	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/consumer"
)

const checkpointUsage = `usage:
  kinlog checkpoint list          --table T [--json]
  kinlog checkpoint reset         --table T --shard S --to SEQ|TRIM_HORIZON|LATEST [--sub N]
  kinlog checkpoint import-vmware --table T --from VMWARE_TABLE
  kinlog checkpoint deregister-consumer --stream NAME|ARN --consumer NAME`

// runCheckpoint is the operator's view of the lease table.
func runCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: missing subcommand\n%s", errUsage, checkpointUsage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, "kinlog checkpoint: %s\n\n%s\n\nflags of each subcommand: kinlog checkpoint SUBCOMMAND --help\n\nexamples:\n%s", summaryOf("checkpoint"), checkpointUsage, commandExamples["checkpoint"])
		return errHelp
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("checkpoint "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	table := fs.String("table", "", "lease table name (required)")
	asJSON := fs.Bool("json", false, "list: print JSON instead of a table")
	shard := fs.String("shard", "", "reset: lease key (shard id)")
	to := fs.String("to", "", "reset: sequence number or TRIM_HORIZON / LATEST / SHARD_END")
	subSeq := fs.Uint64("sub", 0, "reset: sub-sequence number")
	from := fs.String("from", "", "import-vmware: the vmware-go-kcl-v2 lease table to import")
	stream := fs.String("stream", "", "deregister-consumer: the stream (name or ARN)")
	consumerName := fs.String("consumer", "", "deregister-consumer: the stream consumer (consumer.stream_consumer_name; default the application)")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			fmt.Fprint(stdout, "\n"+checkpointUsage+"\n")
			return err
		}
		return fmt.Errorf("%w\n%s", err, checkpointUsage)
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if sub == "deregister-consumer" {
		return deregisterConsumer(ctx, *stream, *consumerName, stdout)
	}
	if *table == "" {
		return fmt.Errorf("%w: --table is required\n%s", errUsage, checkpointUsage)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	client := dynamodb.NewFromConfig(cfg)
	store, err := ddbstore.New(client, *table)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		leases, err := store.ListLeases(ctx)
		if err != nil {
			return fmt.Errorf("listing leases: %w", err)
		}
		sort.Slice(leases, func(i, j int) bool { return leases[i].Key < leases[j].Key })
		if *asJSON {
			type leaseJSON struct {
				Shard           string   `json:"shard"`
				Owner           string   `json:"owner"`
				Counter         int64    `json:"lease_counter"`
				Checkpoint      string   `json:"checkpoint"`
				Pending         *string  `json:"pending_checkpoint"`
				OwnerSwitches   int64    `json:"owner_switches_since_checkpoint"`
				Parents         []string `json:"parent_shard_ids"`
				Children        []string `json:"child_shard_ids"`
				StartingHashKey string   `json:"starting_hash_key"`
				EndingHashKey   string   `json:"ending_hash_key"`
			}
			out := make([]leaseJSON, 0, len(leases))
			for _, l := range leases {
				lj := leaseJSON{Shard: l.Key, Owner: l.Owner, Counter: l.Counter, Checkpoint: l.Checkpoint.String(),
					OwnerSwitches: l.OwnerSwitchesSinceCheckpoint, Parents: l.ParentShardIDs, Children: l.ChildShardIDs,
					StartingHashKey: l.StartingHashKey, EndingHashKey: l.EndingHashKey}
				if l.Pending != nil {
					p := l.Pending.String()
					lj.Pending = &p
				}
				out = append(out, lj)
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "SHARD\tOWNER\tCOUNTER\tCHECKPOINT\tPENDING\tPARENTS")
		for _, l := range leases {
			pending := "-"
			if l.Pending != nil {
				pending = l.Pending.String()
			}
			owner := l.Owner
			if owner == "" {
				owner = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%v\n", l.Key, owner, l.Counter, l.Checkpoint, pending, l.ParentShardIDs)
		}
		return tw.Flush()
	case "reset":
		if *shard == "" || *to == "" {
			return fmt.Errorf("%w: reset needs --shard and --to\n%s", errUsage, checkpointUsage)
		}
		cp := checkpoint.Checkpoint{Sequence: *to, SubSequence: *subSeq}
		if err := cp.Validate(); err != nil {
			return fmt.Errorf("%w: --to: %v", errUsage, err)
		}
		if err := store.ResetCheckpoint(ctx, *shard, cp); err != nil {
			return fmt.Errorf("resetting %s: %w", *shard, err)
		}
		fmt.Fprintf(stdout, "%s: checkpoint set to %s; its holder, if any, lost the lease\n", *shard, cp)
		return nil
	case "import-vmware":
		if *from == "" {
			return fmt.Errorf("%w: import-vmware needs --from\n%s", errUsage, checkpointUsage)
		}
		// The source first: a typo in --from must not leave a new, empty target table.
		if _, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: from}); err != nil {
			var nf *dynamotypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				return fmt.Errorf("the vmware-go-kcl-v2 table %s does not exist (nothing was created)", *from)
			}
			return fmt.Errorf("reading %s: %w", *from, err)
		}
		if err := store.EnsureTable(ctx); err != nil {
			return fmt.Errorf("creating lease table %s: %w", *table, err)
		}
		n, err := ddbstore.ImportVMware(ctx, client, *from, store)
		if err != nil {
			return fmt.Errorf("importing %s: %w", *from, err)
		}
		fmt.Fprintf(stdout, "imported %d checkpoints from %s into %s\n", n, *from, *table)
		return nil
	}
	return fmt.Errorf("%w: unknown subcommand %q\n%s", errUsage, sub, checkpointUsage)
}

// deregisterConsumer deregisters the stream consumer that consumer.retrieval: fanout
// registered, so that it stops being billed. The application's workers must be stopped
// first: a running fan-out worker registers it again.
func deregisterConsumer(ctx context.Context, stream, name string, stdout io.Writer) error {
	if stream == "" || name == "" {
		return fmt.Errorf("%w: deregister-consumer needs --stream and --consumer\n%s", errUsage, checkpointUsage)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	kc := kinesis.NewFromConfig(cfg)
	arn := stream
	if !strings.HasPrefix(stream, "arn:") {
		out, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: &stream})
		if err != nil {
			return fmt.Errorf("stream %s: %w", stream, err)
		}
		arn = *out.StreamDescriptionSummary.StreamARN
	}
	if err := consumer.DeregisterStreamConsumer(ctx, kc, arn, name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stream consumer %s of %s deregistered (or was not registered); Kinesis removes it within seconds. A worker still running with consumer.retrieval: fanout registers it again.\n", name, arn)
	return nil
}

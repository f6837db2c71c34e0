// Command kinlog is the kinlog worker and tool: consume, produce, query, demo and admin
// commands. AWS credentials, region and endpoints come from the SDK's default chain and its
// AWS_ENDPOINT_URL_<SERVICE> variables; there is no special local mode.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// command is one subcommand of kinlog.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"demo", "run the pipeline on the local stack (infra/local) and show what it did", runDemo},
		{"init", "create the stream, lease table and bucket the worker's configuration names (what exists is left alone)", runInit},
		{"consume", "run the worker: lease shards, archive records to S3 with rollups, checkpoint", runConsume},
		{"agent", "ship log files, local sockets and syslog to a stream, keeping every file's position until Kinesis confirmed its lines", runAgent},
		{"produce", "ship lines from stdin or files to a stream (one record per line)", runProduce},
		{"query", "query the S3 archive: time range, filters, projections, counts, stats", runQuery},
		{"athena-ddl", "print Athena CREATE TABLE statements with partition projection for the archive and rollups", runAthenaDDL},
		{"tail", "print a stream's records as they arrive (deaggregated, with query's filters and formats); no lease table", runTail},
		{"status", "show the fleet from the lease table: per shard the owner, checkpoint, whether it is renewed and (--lag) how far behind", runStatus},
		{"replay", "re-archive the batches a Lambda deployment discarded (from its S3 on-failure destination, or a range), exactly once", runReplay},
		{"checkpoint", "list, reset or import (from vmware-go-kcl-v2) lease-table checkpoints; deregister a fan-out stream consumer", runCheckpoint},
		{"version", "print kinlog's version, its source revision and the Go it was built with", runVersion},
		{"completion", "print a shell completion script: source <(kinlog completion bash), or zsh, fish", runCompletion},
		{"help", "print a command's help: kinlog help <command>", nil},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error the user made on the command line (exit status 2).
var errUsage = errors.New("usage")

// errHelp says that the user asked for a command's help, which was printed (exit status 0).
var errHelp = errors.New("help requested")

// parseFlags parses a command's flags. On -h or --help it prints the command's purpose,
// usage and flags with their defaults to stdout and returns errHelp; a wrong flag is a
// usage error naming it.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		name := fs.Name()
		fmt.Fprintf(stdout, "kinlog %s: %s\n\n", name, summaryOf(strings.Fields(name)[0]))
		fmt.Fprintf(stdout, "usage: kinlog %s [flags] [arguments]\n\nflags:\n", name)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if ex := commandExamples[strings.Fields(name)[0]]; ex != "" {
			fmt.Fprintf(stdout, "\nexamples:\n%s", ex)
		}
		return errHelp
	}
	if err != nil {
		return fmt.Errorf("%w: %v (see kinlog %s --help)", errUsage, err, fs.Name())
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help":
		usage(stdout)
		return 0
	case "help":
		if len(args) == 1 || args[1] == "-h" || args[1] == "--help" {
			usage(stdout)
			return 0
		}
		if summaryOf(args[1]) == "" {
			fmt.Fprintf(stderr, "kinlog help: unknown command %q\n", args[1])
			usage(stderr)
			return 2
		}
		return run(ctx, []string{args[1], "--help"}, stdout, stderr)
	case "--version", "-version":
		args = []string{"version"}
	case "__complete": // for the completion scripts
		complete(ctx, args[1:], stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] && c.run != nil {
			err := c.run(ctx, args[1:], stdout, stderr)
			switch {
			case err == nil, errors.Is(err, errHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "kinlog %s: %v\n", c.name, err)
				return 2
			default:
				fmt.Fprintf(stderr, "kinlog %s: %v\n", c.name, err)
				if hint := hintFor(err); hint != "" {
					fmt.Fprintf(stderr, "hint: %s\n", hint)
				}
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "kinlog: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// noArgs refuses positional arguments for a command that takes none (they used to be
// ignored in silence).
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see kinlog %s --help)", errUsage, fs.Arg(0), fs.Name())
	}
	return nil
}

// runVersion prints the module version, the VCS revision and time the binary was built
// from, and the Go version: what a bug report needs.
func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}

func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "kinlog (no build information)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, at, dirty string
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.time":
			at = st.Value
		case "vcs.modified":
			if st.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	out := "kinlog " + version
	if rev != "" {
		out += fmt.Sprintf(" (revision %.12s, %s%s)", rev, at, dirty)
	}
	return out + fmt.Sprintf(" %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// commandExamples are the examples a command's --help ends with.
var commandExamples = map[string]string{
	"agent": `  kinlog agent --config agent.yaml             ship what agent.yaml names (files, sockets, syslog)
  kinlog agent --config agent.yaml --check     print the effective configuration and exit
  KINLOG_STREAM=logs kinlog agent --config agent.yaml --set log.level=debug
`,
	"consume": `  kinlog consume --config kinlog.yaml
  kinlog consume --config kinlog.yaml --check
  kinlog consume --set stream=logs --set sink.s3.bucket=archive --set consumer.create_lease_table=true
`,
	"produce": `  kinlog produce --stream logs app.log         send a file once, one record per line
  some-app | kinlog produce --stream logs --partition-key-field user --spool /var/lib/kinlog/spool
`,
	"demo": `  make demo                                     the local stack up, then kinlog demo on it
  kinlog demo --records 5000 --cleanup          on the stack, deleting what it created
  kinlog demo --aws                             in your AWS account (deletes what it created)
`,
	"athena-ddl": `  kinlog athena-ddl --config kinlog.yaml        bucket, prefixes and encoding from the worker's config
  kinlog athena-ddl --bucket logs-archive --encoding parquet --database logs
`,
	"checkpoint": `  kinlog checkpoint list --table kinlog-leases --json
  kinlog checkpoint reset --table kinlog-leases --shard shardId-000000000001 --to TRIM_HORIZON
  kinlog checkpoint import-vmware --table kinlog-leases --from vmware-app
  kinlog checkpoint deregister-consumer --stream app-logs --consumer kinlog
`,
	"replay": `  kinlog replay --from s3://kinlog-failures/ --set progress.table=kinlog-progress --set sink.s3.bucket=logs
  kinlog replay --config fn.yaml --stream logs --shard shardId-000000000001 --start 4959… --end 4959…
`,
	"completion": `  source <(kinlog completion bash)              in ~/.bashrc
  kinlog completion fish | source
`,
	"version": `  kinlog version
`,
	"init": `  kinlog init --config kinlog.yaml --shards 4
  kinlog init --set stream=logs --set sink.s3.bucket=logs-archive --set sink.s3.path_style=true
`,
	"tail": `  kinlog tail --stream logs                                  new records of every shard, until Ctrl-C
  kinlog tail --config kinlog.yaml --from -10m --where level=ERROR --output table
  kinlog tail --stream logs --from TRIM_HORIZON --limit 20 --select time,msg --shard shardId-000000000001
`,
	"status": `  kinlog status --config kinlog.yaml            the worker's lease table, read twice a sample apart
  kinlog status --config kinlog.yaml --lag      and how far each shard's checkpoint is behind
  kinlog status --set application=app --json
`,
	"query": `  kinlog query --bucket archive --from -1h --where level=ERROR --limit 20
  kinlog query --bucket archive --from 2026-12-01 --count-by service
  kinlog query --bucket archive --from -24h --stats --numeric latency_ms
`,
}

// summaryOf returns the one-line purpose of the command named name.
func summaryOf(name string) string {
	for _, c := range commands() {
		if c.name == name {
			return c.summary
		}
	}
	return ""
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kinlog <command> [flags]")
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

package main

import (
	"context"
	"fmt"
	"math/big"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/producer"
)

// putRecord puts one plain (unaggregated) record.
func putRecord(t *testing.T, kc *kinesis.Client, stream, pk, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String(pk), Data: []byte(data)}); err != nil {
		t.Fatalf("putting a record: %v", err)
	}
}

// produceAggregated sends lines through the producer with KPL aggregation.
func produceAggregated(t *testing.T, kc *kinesis.Client, stream string, lines []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := producer.New(kc, stream, producer.WithAggregation(true), producer.WithLinger(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		if err := p.Put(ctx, producer.Record{PartitionKey: fmt.Sprint("user-", i%7), Data: []byte(l)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

func outputLines(s string) []string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	return lines
}

func sorted(ss []string) []string {
	ss = slices.Clone(ss)
	slices.Sort(ss)
	return ss
}

// TestTailCommand: KPL-aggregated records (the producer package) and plain ones (PutRecord:
// JSON, multi-line JSON, text) on a 2-shard stream. `kinlog tail --from TRIM_HORIZON
// --limit N` prints exactly them, deaggregated, each as the NDJSON archive stores it (text
// wrapped as {"raw":...}, multi-line JSON compacted); --where filters and --output/--select
// format as in `kinlog query`; --from takes a relative time too.
func TestTailCommand(t *testing.T) {
	kc := testenv.KinesisClient(t)
	stream := testenv.Name(t, "tail")
	testenv.CreateStream(t, kc, stream, 2)

	var want, wantErrors []string
	var lines []string
	for i := range 60 {
		level := "INFO"
		if i%5 == 0 {
			level = "ERROR"
		}
		l := fmt.Sprintf(`{"level":%q,"msg":"aggregated %d","n":%d}`, level, i, i)
		lines = append(lines, l)
		if level == "ERROR" {
			wantErrors = append(wantErrors, l)
		}
	}
	produceAggregated(t, kc, stream, lines)
	want = append(want, lines...)
	putRecord(t, kc, stream, "a", `{"level":"ERROR","msg":"plain"}`)
	want = append(want, `{"level":"ERROR","msg":"plain"}`)
	wantErrors = append(wantErrors, `{"level":"ERROR","msg":"plain"}`)
	putRecord(t, kc, stream, "b", "plain text, not JSON")
	want = append(want, `{"raw":"plain text, not JSON"}`)
	putRecord(t, kc, stream, "c", "{\n  \"msg\": \"spread over lines\"\n}\n")
	want = append(want, `{"msg":"spread over lines"}`)

	byShard, kinesisRecords := testenv.ReadStream(t, kc, stream)
	if users := len(byShard["shardId-000000000000"]) + len(byShard["shardId-000000000001"]); users != len(want) || kinesisRecords >= len(lines) {
		t.Fatalf("the stream holds %d user records in %d Kinesis records; want %d user records, %d of them aggregated", users, kinesisRecords, len(want), len(lines))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tail := func(args ...string) []string {
		t.Helper()
		stdout, stderr, code := runKinlog(t, ctx, "", append([]string{"tail", "--stream", stream}, args...)...)
		if code != 0 {
			t.Fatalf("kinlog tail %v: exit %d\n%s", args, code, stderr)
		}
		return outputLines(stdout)
	}
	if got := tail("--from", "TRIM_HORIZON", "--limit", fmt.Sprint(len(want))); !slices.Equal(sorted(got), sorted(want)) {
		t.Errorf("tail --from TRIM_HORIZON printed %d records:\n%s\nwant %d:\n%s", len(got), strings.Join(sorted(got), "\n"), len(want), strings.Join(sorted(want), "\n"))
	}
	if got := tail("--from", "-10m", "--limit", fmt.Sprint(len(want))); !slices.Equal(sorted(got), sorted(want)) {
		t.Errorf("tail --from -10m printed %d records, want %d", len(got), len(want))
	}
	if got := tail("--from", "TRIM_HORIZON", "--limit", "3"); len(got) != 3 {
		t.Errorf("tail --limit 3 printed %d records: %q", len(got), got)
	}
	if got := tail("--from", "TRIM_HORIZON", "--where", "level=ERROR", "--limit", fmt.Sprint(len(wantErrors))); !slices.Equal(sorted(got), sorted(wantErrors)) {
		t.Errorf("tail --where level=ERROR printed:\n%s\nwant:\n%s", strings.Join(sorted(got), "\n"), strings.Join(sorted(wantErrors), "\n"))
	}
	if got := tail("--from", "TRIM_HORIZON", "--where", "raw exists", "--limit", "1"); !slices.Equal(got, []string{`{"raw":"plain text, not JSON"}`}) {
		t.Errorf("tail --where 'raw exists' printed %q", got)
	}
	if got := tail("--from", "TRIM_HORIZON", "--where", "msg=plain", "--output", "csv", "--select", "level,msg", "--limit", "1"); !slices.Equal(got, []string{"level,msg", "ERROR,plain"}) {
		t.Errorf("tail --output csv printed %q", got)
	}
	if got := tail("--from", "TRIM_HORIZON", "--where", "n>=58", "--output", "table", "--limit", "2"); len(got) != 3 || !strings.HasPrefix(got[0], "TIME") || !strings.Contains(got[1]+got[2], "aggregated 5") {
		t.Errorf("tail --output table printed %q", got)
	}
}

// TestTailFollowsLatest: from LATEST (the default) tail prints a record put after it started
// and not the older ones, and exits 0 on SIGTERM.
func TestTailFollowsLatest(t *testing.T) {
	kc := testenv.KinesisClient(t)
	stream := testenv.Name(t, "tail-latest")
	testenv.CreateStream(t, kc, stream, 2)
	putRecord(t, kc, stream, "a", `{"msg":"before tail started"}`)

	cmd := exec.Command(kinlogBin, "tail", "--stream", stream)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	// tail says so once it holds an iterator of every shard: what is put from then on is
	// shown.
	waitFor(t, func() (string, bool) {
		return "", strings.Contains(stderr.String(), "reading 2 shards of "+stream+" from LATEST")
	})
	for i := range 4 {
		putRecord(t, kc, stream, fmt.Sprint("key-", i), fmt.Sprintf(`{"msg":"after %d"}`, i))
	}
	waitFor(t, func() (string, bool) { return "", len(outputLines(stdout.String())) >= 4 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail on SIGTERM: %v\n%s", err, stderr.String())
	}
	want := []string{`{"msg":"after 0"}`, `{"msg":"after 1"}`, `{"msg":"after 2"}`, `{"msg":"after 3"}`}
	if got := outputLines(stdout.String()); !slices.Equal(sorted(got), want) {
		t.Errorf("tail from LATEST printed %q, want %q", got, want)
	}
}

// TestTailFollowsChildShards: a shard split while records flow; tail from TRIM_HORIZON
// reads the closed parent to its end and then both children.
func TestTailFollowsChildShards(t *testing.T) {
	kc := testenv.KinesisClient(t)
	stream := testenv.Name(t, "tail-split")
	testenv.CreateStream(t, kc, stream, 1)
	var before, after []string
	for i := range 5 {
		before = append(before, fmt.Sprintf(`{"msg":"before split %d"}`, i))
		putRecord(t, kc, stream, fmt.Sprint("key-", i), before[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	half := new(big.Int).Lsh(big.NewInt(1), 127)
	if _, err := kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(stream), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String(half.String())}); err != nil {
		t.Fatalf("splitting the shard: %v", err)
	}
	if err := testenv.WaitStreamActive(ctx, kc, stream); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		after = append(after, fmt.Sprintf(`{"msg":"after split %d"}`, i))
		putRecord(t, kc, stream, fmt.Sprint("key-", i), after[i])
	}
	stdout, stderr, code := runKinlog(t, ctx, "", "tail", "--stream", stream, "--from", "TRIM_HORIZON", "--limit", "15")
	if code != 0 {
		t.Fatalf("tail: exit %d\n%s", code, stderr)
	}
	got := outputLines(stdout)
	if !slices.Equal(sorted(got), sorted(append(slices.Clone(before), after...))) {
		t.Fatalf("tail printed:\n%s\nwant the 5 records before the split and the 10 after", stdout)
	}
	if !slices.Equal(got[:5], before) {
		t.Errorf("tail printed children's records before the parent's end:\n%s", stdout)
	}
}

// TestTailErrors: a missing stream is an error naming it and what to check (exit 1); bad
// flags are usage errors (exit 2); --help prints purpose, flags and examples.
func TestTailErrors(t *testing.T) {
	testenv.Require(t, testenv.Kinesis)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	missing := testenv.Name(t, "no-such-stream")
	_, stderr, code := runKinlog(t, ctx, "", "tail", "--stream", missing)
	if code != 1 || !strings.Contains(stderr, "stream "+missing+" does not exist") || !strings.Contains(stderr, "AWS_REGION") || !strings.Contains(stderr, "AWS_ENDPOINT_URL_KINESIS") {
		t.Errorf("tail of a missing stream: exit %d, stderr %q", code, stderr)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"tail"}, "no stream"},
		{[]string{"tail", "--stream", "s", "--from", "yesterday-ish"}, "--from"},
		{[]string{"tail", "--stream", "s", "--where", "level"}, "--where"},
		{[]string{"tail", "--stream", "s", "--output", "xml"}, "--output"},
		{[]string{"tail", "--stream", "s", "extra"}, `unexpected argument "extra"`},
	} {
		if _, stderr, code := runKinlog(t, ctx, "", tt.args...); code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("kinlog %v: exit %d, stderr %q; want exit 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
	stdout, stderr, code := runKinlog(t, ctx, "", "tail", "--help")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "kinlog tail: ") || !strings.Contains(stdout, "flags:\n  -") || !strings.Contains(stdout, "examples:\n  kinlog tail") {
		t.Errorf("tail --help: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

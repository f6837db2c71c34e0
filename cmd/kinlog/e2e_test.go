package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gopkg.in/yaml.v3"

	"github.com/kinlog/kinlog/checkpoint"
	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/query"
)

// logLines makes n JSON log lines one second apart from start, and counts them by level.
func logLines(n int, start time.Time) (string, map[string]int) {
	var b strings.Builder
	levels := []string{"INFO", "INFO", "WARN", "ERROR"}
	counts := map[string]int{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		lvl := levels[r.IntN(len(levels))]
		counts[lvl]++
		fmt.Fprintf(&b, `{"time":%q,"level":%q,"service":"api","msg":"request %d","latency_ms":%d,"user":"u%d"}`+"\n",
			start.Add(time.Duration(i)*time.Second).Format(time.RFC3339), lvl, i, 1+r.IntN(1000), i%50)
	}
	return b.String(), counts
}

// countArchived counts the records the archive holds, by scanning it.
func countArchived(t *testing.T, ctx context.Context, sc *s3.Client, bucket string) int64 {
	t.Helper()
	st, err := query.Run(ctx, sc, query.Request{Bucket: bucket}, func([]byte) error { return nil })
	if err != nil {
		t.Fatalf("scanning the archive: %v", err)
	}
	return st.RecordsMatched
}

// consumeUntilArchived runs `kinlog consume` with args until the archive in bucket holds n
// records, then stops it with SIGTERM and checks that it drained and exited cleanly.
func consumeUntilArchived(t *testing.T, ctx context.Context, sc *s3.Client, bucket string, n int, args ...string) {
	t.Helper()
	consume := exec.CommandContext(ctx, kinlogBin, append([]string{"consume", "--set", "log.format=text"}, args...)...)
	var consumeErr bytes.Buffer
	consume.Stderr = &consumeErr
	if err := consume.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for countArchived(t, ctx, sc, bucket) < int64(n) {
		if time.Now().After(deadline) {
			_ = consume.Process.Kill()
			_ = consume.Wait()
			t.Fatalf("archive incomplete after 90s; consume log:\n%s", consumeErr.String())
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond): // polling the archive, an outside observer
		}
	}
	if err := consume.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := consume.Wait(); err != nil {
		t.Fatalf("consume after SIGTERM: %v\n%s", err, consumeErr.String())
	}
	if !strings.Contains(consumeErr.String(), "shutting down") || !strings.Contains(consumeErr.String(), "stopped") {
		t.Errorf("consume log lacks the graceful shutdown:\n%s", consumeErr.String())
	}
	if got := countArchived(t, ctx, sc, bucket); got != int64(n) {
		t.Fatalf("archive holds %d records, want %d", got, n)
	}
}

// TestProduceConsumeQuery drives the real binary end to end: `kinlog produce` ships log
// lines, `kinlog consume` archives them to S3 with rollups and checkpoints, SIGTERM drains
// it, and `kinlog query` reads the archive back with filters, pruning and rollups.
func TestProduceConsumeQuery(t *testing.T) {
	kc := testenv.KinesisClient(t)
	sc := testenv.S3Client(t)
	dc := testenv.DynamoDBClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	stream, bucket, table := testenv.Name(t, "cli-e2e"), testenv.Name(t, "cli-e2e"), testenv.Name(t, "cli-e2e-leases")
	testenv.CreateStream(t, kc, stream, 2)
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // 3000 s: hours 10 and 11
	lines, levels := logLines(n, start)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "app.log")
	if err := os.WriteFile(logFile, []byte(lines+"\n"+strings.Repeat("x", 2<<20)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// produce: every line is shipped; the oversize one is rejected with a clear error and
	// the exit status says so.
	out, stderr, code := runKinlog(t, ctx, "", "produce", "--stream", stream, "--partition-key-field", "user", logFile)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("sent %d records", n)) || !strings.Contains(stderr, "app.log:3002") || !strings.Contains(stderr, "1 rejected") && !strings.Contains(out, "1 rejected") {
		t.Fatalf("produce: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}

	// consume, as a separate process, until everything is archived.
	cfgFile := filepath.Join(dir, "kinlog.yaml")
	cfg := fmt.Sprintf(`stream: %s
http:
  listen: "127.0.0.1:0"
consumer:
  lease_table: %s
  create_lease_table: true
  failover_time: 3s
  idle_time_between_reads: 200ms
sink:
  s3:
    bucket: %s
    flush_interval: 500ms
    path_style: true
analytics:
  numeric_fields: [latency_ms]
`, stream, table, bucket)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	consumeUntilArchived(t, ctx, sc, bucket, n, "--config", cfgFile)
	// The drain checkpointed every shard at its last record and released the leases.
	store, err := ddbstore.New(dc, table)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := store.ListLeases(ctx)
	if err != nil || len(leases) != 2 {
		t.Fatalf("leases %+v, %v", leases, err)
	}
	for _, l := range leases {
		if l.Owner != "" || l.Checkpoint.Compare(checkpoint.Checkpoint{Sequence: "1"}) <= 0 || l.Pending != nil {
			t.Errorf("lease after SIGTERM: %+v (want released, checkpointed, nothing pending)", l)
		}
	}
	q := func(args ...string) (string, string) {
		t.Helper()
		out, stderr, code := runKinlog(t, ctx, "", append([]string{"query", "--bucket", bucket, "--s3-path-style"}, args...)...)
		if code != 0 {
			t.Fatalf("query %v: exit %d: %s", args, code, stderr)
		}
		return out, stderr
	}
	// Filters.
	out, _ = q("--where", "level=ERROR", "--select", "level,msg")
	if got := strings.Count(out, "\n"); got != levels["ERROR"] || !strings.Contains(out, `{"level":"ERROR","msg":"request `) {
		t.Fatalf("--where level=ERROR: %d lines, want %d\n%.300s", got, levels["ERROR"], out)
	}
	// Pruning: the archive is partitioned by arrival time (now), so a range in the past
	// reads no object at all, and a range around now reads them all.
	_, stderr = q("--from", "2020-01-01", "--to", "2020-01-02", "-v")
	if !strings.Contains(stderr, "objects read 0,") {
		t.Fatalf("a time range without data read objects: %s", stderr)
	}
	out, stderr = q("--from", "-1h", "--limit", "10", "--output", "csv", "--select", "time,level", "-v")
	if strings.Count(out, "\n") != 11 || !strings.HasPrefix(out, "time,level\n") || !strings.Contains(stderr, "matched 10") {
		t.Fatalf("--limit 10 csv:\n%s\n%s", out, stderr)
	}
	// Rollups answer count-by without scanning records, and agree with a scan.
	fromRollups, _ := q("--count-by", "level")
	scanned, _ := q("--count-by", "level", "--scan")
	for lvl, c := range levels {
		re := regexp.MustCompile(`(?m)^` + lvl + `\s+` + strconv.Itoa(c) + `\s`)
		if !re.MatchString(fromRollups) || !re.MatchString(scanned) {
			t.Errorf("count of %s (%d) missing:\nrollups:\n%s\nscan:\n%s", lvl, c, fromRollups, scanned)
		}
	}
	if !strings.Contains(fromRollups, "source rollups") || !strings.Contains(scanned, "source scan") {
		t.Errorf("sources: %q / %q", fromRollups, scanned)
	}
	stats, _ := q("--stats")
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^records\s+%d$`, n)).MatchString(stats) || !strings.Contains(stats, "latency_ms") || !regexp.MustCompile(fmt.Sprintf(`(?m)^errors\s+%d `, levels["ERROR"])).MatchString(stats) {
		t.Errorf("--stats:\n%s", stats)
	}
	hist, _ := q("--count-by", "time")
	if !strings.Contains(hist, "█") {
		t.Errorf("--count-by time drew no bars:\n%s", hist)
	}
	// Hostile filters are refused with a clear error and exit status 2.
	for _, bad := range []string{"msg~(", "latency_ms>fast", "=x"} {
		_, stderr, code := runKinlog(t, ctx, "", "query", "--bucket", bucket, "--where", bad)
		if code != 2 || !strings.Contains(stderr, "bad filter") {
			t.Errorf("--where %q: exit %d, %s", bad, code, stderr)
		}
	}
	// The same stream archived as Parquet by a second group of workers (its own lease table
	// and bucket), read back by the same query command.
	pq := testenv.Name(t, "cli-e2e-pq")
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(pq)}); err != nil {
		t.Fatal(err)
	}
	consumeUntilArchived(t, ctx, sc, pq, n, "--config", cfgFile, "--set", "sink.s3.bucket="+pq,
		"--set", "sink.s3.encoding=parquet", "--set", "consumer.lease_table="+table+"-pq")
	out, stderr, code = runKinlog(t, ctx, "", "query", "--bucket", pq, "--s3-path-style", "--where", "level=ERROR", "--select", "level,msg")
	if code != 0 || strings.Count(out, "\n") != levels["ERROR"] || !strings.Contains(out, `{"level":"ERROR","msg":"request `) {
		t.Fatalf("parquet archive --where level=ERROR: exit %d, %d lines, want %d\n%.300s%s", code, strings.Count(out, "\n"), levels["ERROR"], out, stderr)
	}

	var rec map[string]any
	line, _ := q("--limit", "1")
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["service"] != "api" {
		t.Errorf("first record %q: %v", line, err)
	}
}

// TestConsumeConfigErrors checks that configuration errors name the key and exit 2.
func TestConsumeConfigErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--set", "sink.s3.bucket=b"}, "stream"},
		{[]string{"--set", "stream=s"}, "sink.s3.bucket"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "consumer.initial_position=YESTERDAY"}, "consumer.initial_position"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "sink.s3.encoding=xml"}, "sink.s3.encoding"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "sink.s3.flush_size=huge"}, "sink.s3.flush_size"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "sink.s3.sse=KMS"}, "sink.s3.sse"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "analytics.window=7m"}, "analytics.window"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "consumer.lease_scan_interval=-1s"}, "consumer.lease_scan_interval"},
		{[]string{"--set", "nope=1"}, "unknown key"},
		{[]string{"--set", "stream=s", "--set", "streams=s,t", "--set", "sink.s3.bucket=b"}, "streams (value): set with stream"},
		{[]string{"--set", "streams=s,t,s", "--set", "sink.s3.bucket=b"}, "stream s is listed twice"},
		{[]string{"--set", "streams=s", "--set", "sink.s3.bucket=b", "--set", "sink.s3.prefix=logs/!{kinlog:shard}/"}, "sink.s3.prefix"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "consumer.max_records=-5"}, "consumer.max_records (value): -5 is out of range: want 1 to 10000"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "consumer.failover_time=1ms"}, "consumer.failover_time (value): 1ms is out of range"},
		{[]string{"--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "sink.s3.flush_size=0"}, "sink.s3.flush_size (value): 0 is out of range: want 1KiB to 5GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, stderr, code := runKinlog(t, ctx, "", append([]string{"consume"}, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %q", code, stderr, tt.want)
			}
		})
	}
	// --check prints the effective configuration: defaults that depend on other keys resolved.
	checkOut, _, checkCode := runKinlog(t, ctx, "", "consume", "--set", "stream=s", "--set", "sink.s3.bucket=b", "--set", "application=shop", "--set", "sink.s3.encoding=parquet", "--check")
	for _, want := range []string{"lease_table: shop-leases", "compression: zstd", "lease_scan_interval: 1s", "- service"} {
		if checkCode != 0 || !strings.Contains(checkOut, want) {
			t.Errorf("--check: exit %d, output lacks %q:\n%s", checkCode, want, checkOut)
		}
	}
	// The config shipped in the Kubernetes ConfigMap is valid for this binary.
	raw, err := os.ReadFile("../../infra/k8s/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil || cm.Data["kinlog.yaml"] == "" {
		t.Fatalf("configmap: %v", err)
	}
	p := filepath.Join(t.TempDir(), "kinlog.yaml")
	if err := os.WriteFile(p, []byte(cm.Data["kinlog.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runKinlog(t, ctx, "", "consume", "--check", "--config", p)
	if code != 0 {
		t.Fatalf("infra/k8s/configmap.yaml kinlog.yaml: exit %d %s %s", code, stderr, out)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/query"
)

// TestConsumeMultiStream: one `kinlog consume` reads two streams (streams: [...]) through
// one lease table and archives each under its own prefix (!{kinlog:stream}); /status lists
// both streams; `kinlog query` reads each stream's archive with the stream's name in the
// prefix, and refuses the config's unbound prefix when the config has several streams.
func TestConsumeMultiStream(t *testing.T) {
	kc := testenv.KinesisClient(t)
	sc := testenv.S3Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	a, table, bucket := workerResources(t, kc, sc, "cli-ms", 2)
	b := testenv.Name(t, "cli-msb")
	testenv.CreateStream(t, kc, b, 1)

	dir := t.TempDir()
	start := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	counts := map[string]int{a: 500, b: 300}
	for stream, n := range counts {
		lines, _ := logLines(n, start)
		f := filepath.Join(dir, stream+".log")
		if err := os.WriteFile(f, []byte(lines), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, stderr, code := runKinlog(t, ctx, "", "produce", "--stream", stream, f); code != 0 {
			t.Fatalf("produce to %s: exit %d\n%s\n%s", stream, code, out, stderr)
		}
	}
	cfgFile := filepath.Join(dir, "kinlog.yaml")
	cfg := fmt.Sprintf(`streams: [%s, %s]
http:
  listen: "127.0.0.1:0"
log:
  format: json
consumer:
  lease_table: %s
  create_lease_table: true
  failover_time: 3s
  idle_time_between_reads: 200ms
sink:
  s3:
    bucket: %s
    prefix: "logs/!{kinlog:stream}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
    flush_interval: 500ms
    path_style: true
analytics:
  prefix: "analytics/!{kinlog:stream}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
`, a, b, table, bucket)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	streamPrefix := func(stream string) string {
		return "logs/" + stream + "/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
	}
	archived := func(stream string) int64 {
		st, err := query.Run(ctx, sc, query.Request{Bucket: bucket, Prefix: streamPrefix(stream)}, func([]byte) error { return nil })
		if err != nil {
			t.Fatalf("scanning %s's archive: %v", stream, err)
		}
		return st.RecordsMatched
	}

	consume := exec.CommandContext(ctx, kinlogBin, "consume", "--config", cfgFile)
	stderr := &syncBuffer{}
	consume.Stderr = stderr
	if err := consume.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = consume.Process.Kill(); _ = consume.Wait() }()
	addr := probeAddr(t, stderr)
	deadline := time.Now().Add(90 * time.Second)
	for archived(a) < int64(counts[a]) || archived(b) < int64(counts[b]) {
		if time.Now().After(deadline) {
			t.Fatalf("archives incomplete after 90s (%s %d, %s %d); consume log:\n%s", a, archived(a), b, archived(b), stderr.String())
		}
		time.Sleep(200 * time.Millisecond) // polling the archive, an outside observer
	}
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var statuses []struct {
		Stream string            `json:"stream"`
		Shards []json.RawMessage `json:"shards"`
	}
	if err := json.Unmarshal(body, &statuses); err != nil || len(statuses) != 2 || statuses[0].Stream != a || statuses[1].Stream != b ||
		len(statuses[0].Shards) != 2 || len(statuses[1].Shards) != 1 {
		t.Fatalf("/status = %s (%v), want both streams with their shards", body, err)
	}
	if err := consume.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := consume.Wait(); err != nil {
		t.Fatalf("consume after SIGTERM: %v\n%s", err, stderr.String())
	}
	for stream, n := range counts {
		if got := archived(stream); got != int64(n) {
			t.Errorf("%s's archive holds %d records, want %d", stream, got, n)
		}
	}
	// Nothing went under the default prefix or the other stream's.
	out, err := sc.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		k := *o.Key
		if !strings.HasPrefix(k, "logs/"+a+"/") && !strings.HasPrefix(k, "logs/"+b+"/") && !strings.HasPrefix(k, "analytics/"+a+"/") && !strings.HasPrefix(k, "analytics/"+b+"/") {
			t.Errorf("object %s is under no stream's prefix", k)
		}
		if strings.HasPrefix(k, "logs/"+a+"/") && !strings.Contains(k, "/"+a+"-shardId-") {
			t.Errorf("object %s under %s's prefix is named for another stream", k, a)
		}
	}

	// kinlog query: each stream's prefix reads its archive; the config's prefix, unbound with
	// two streams, is refused with what to do.
	qout, qerr, code := runKinlog(t, ctx, "", "query", "--bucket", bucket, "--prefix", streamPrefix(b), "--stats", "--scan")
	if code != 0 || !strings.Contains(qout, fmt.Sprint(counts[b])) {
		t.Errorf("query %s's prefix: exit %d\n%s\n%s", b, code, qout, qerr)
	}
	_, qerr, code = runKinlog(t, ctx, "", "query", "--config", cfgFile, "--stats", "--scan")
	if code == 0 || !strings.Contains(qerr, "!{kinlog:stream}") {
		t.Errorf("query --config with two streams: exit %d, stderr %q; want a refusal naming !{kinlog:stream}", code, qerr)
	}
	if !bytes.Contains([]byte(stderr.String()), []byte(`"streams":"`+a+","+b+`"`)) {
		t.Errorf("consume log does not name both streams:\n%s", stderr.String())
	}
}

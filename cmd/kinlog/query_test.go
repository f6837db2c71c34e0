package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/sinks/encode"
)

// TestQueryOrderAndLimit archives records over three hours on MinIO, two objects per hour
// (NDJSON and Parquet) overlapping in time, and checks that kinlog query prints them in
// time order, newest first with --order desc, and that --limit takes the first in that
// order.
func TestQueryOrderAndLimit(t *testing.T) {
	ctx := context.Background()
	sc := testenv.S3Client(t)
	bucket := testenv.Name(t, "cli-query-order")
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var all []string
	for h := range 3 {
		for o, cfg := range []encode.Config{{}, {Format: encode.Parquet}} {
			enc, err := encode.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			b := enc.NewObject()
			for i := range 10 {
				// Objects of one hour interleave: minutes 0, 2, 4… and 1, 3, 5….
				ts := base.Add(time.Duration(h)*time.Hour + time.Duration(2*i+o)*time.Minute)
				line := fmt.Appendf(nil, `{"time":%q,"level":"INFO","msg":"m%d"}`, ts.Format(time.RFC3339), h*20+2*i+o)
				all = append(all, string(line))
				var d encode.Doc
				_ = d.Parse(line)
				if err := b.Add(&encode.Meta{Shard: "shardId-000000000000", Sequence: fmt.Sprint(i + 1)}, line, &d); err != nil {
					t.Fatal(err)
				}
			}
			body, err := b.Finish(nil)
			if err != nil {
				t.Fatal(err)
			}
			key := fmt.Sprintf("logs/dt=2026-11-22/hour=%02d/s-shardId-00000000000%d-1-0%s", 10+h, o, enc.Extension())
			if _, err := sc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// all is in archive order; by time it is m0, m1, … m59.
	byTime := make([]string, len(all))
	for _, r := range all {
		var n int
		fmt.Sscanf(r[strings.Index(r, `"msg":"m`)+8:], "%d", &n)
		byTime[n] = r
	}
	q := func(args ...string) []string {
		t.Helper()
		out, stderr, code := runKinlog(t, ctx, "", append([]string{"query", "--bucket", bucket, "--s3-path-style"}, args...)...)
		if code != 0 {
			t.Fatalf("query %v: exit %d: %s", args, code, stderr)
		}
		return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	}
	if got := q(); strings.Join(got, "\n") != strings.Join(byTime, "\n") {
		t.Fatalf("default order:\n%s", strings.Join(got, "\n"))
	}
	if got := q("--limit", "5"); strings.Join(got, "\n") != strings.Join(byTime[:5], "\n") {
		t.Fatalf("--limit 5:\n%s", strings.Join(got, "\n"))
	}
	want := []string{byTime[59], byTime[58], byTime[57], byTime[56], byTime[55]}
	if got := q("--order", "desc", "--limit", "5"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("--order desc --limit 5:\n%s", strings.Join(got, "\n"))
	}
	if got := q("--order", "none"); len(got) != len(all) {
		t.Fatalf("--order none: %d records, want %d", len(got), len(all))
	}
	// --count counts what would be printed; a small memory budget changes nothing but
	// how many objects are read at once.
	if got := q("--count"); len(got) != 1 || got[0] != fmt.Sprint(len(all)) {
		t.Fatalf("--count: %v, want %d", got, len(all))
	}
	if got := q("--count", "--where", "msg~^m(7|59)$"); len(got) != 1 || got[0] != "2" {
		t.Fatalf("--count --where msg~^m(7|59)$: %v, want 2", got)
	}
	if got := q("--memory-mb", "1", "--parallel", "2"); strings.Join(got, "\n") != strings.Join(byTime, "\n") {
		t.Fatalf("--memory-mb 1 --parallel 2:\n%s", strings.Join(got, "\n"))
	}
	if _, stderr, code := runKinlog(t, ctx, "", "query", "--bucket", bucket, "--count", "--stats"); code != 2 || !strings.Contains(stderr, "--count") {
		t.Fatalf("--count --stats: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runKinlog(t, ctx, "", "query", "--bucket", bucket, "--order", "sideways"); code != 2 || !strings.Contains(stderr, "--order") {
		t.Fatalf("--order sideways: exit %d: %s", code, stderr)
	}

	// The worker's config gives bucket and path style; results are the same.
	cfg := filepath.Join(t.TempDir(), "kinlog.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "stream: s\nsink:\n  s3:\n    bucket: %s\n    path_style: true\n", bucket), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := runKinlog(t, ctx, "", "query", "--config", cfg, "--limit", "5"); code != 0 || strings.TrimSuffix(out, "\n") != strings.Join(byTime[:5], "\n") {
		t.Fatalf("query --config: exit %d %s\n%s", code, stderr, out)
	}
	// Likely mistakes get a warning on stderr: the results stay as they are.
	warn := func(want string, args ...string) {
		t.Helper()
		_, stderr, code := runKinlog(t, ctx, "", append([]string{"query", "--s3-path-style"}, args...)...)
		if code != 0 || !strings.Contains(stderr, want) {
			t.Errorf("query %v: exit %d, stderr lacks %q: %s", args, code, want, stderr)
		}
	}
	warn(`--where "level==INFO" compares level with "=INFO"; equality is a single =`, "--bucket", bucket, "--where", "level==INFO")
	warn(`no record has the field "nosuchfield"`, "--bucket", bucket, "--count-by", "nosuchfield", "--scan")
	warn("no archive objects in s3://"+bucket+" under wrong/", "--bucket", bucket, "--prefix", "wrong/dt=!{timestamp:yyyy-MM-dd}/")
	if _, stderr, code := runKinlog(t, ctx, "", "query", "--bucket", bucket, "stray"); code != 2 || !strings.Contains(stderr, `unexpected argument "stray"`) {
		t.Errorf("a stray argument: exit %d: %s", code, stderr)
	}
}

// TestQueryKinlogIDFlag archives records with identities as Parquet, beside an NDJSON object
// (which stores none), on MinIO, and checks that kinlog query --kinlog-id shows and filters
// the identity, and warns when a filter names kinlog_id without the flag.
func TestQueryKinlogIDFlag(t *testing.T) {
	ctx := context.Background()
	sc := testenv.S3Client(t)
	bucket := testenv.Name(t, "cli-query-id")
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	put := func(cfg encode.Config, name string, recs, ids []string) {
		t.Helper()
		enc, err := encode.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b := enc.NewObject()
		for i, r := range recs {
			var d encode.Doc
			_ = d.Parse([]byte(r))
			if err := b.Add(&encode.Meta{Shard: "shardId-000000000000", Sequence: fmt.Sprint(i + 1), ID: []byte(ids[i])}, []byte(r), &d); err != nil {
				t.Fatal(err)
			}
		}
		body, err := b.Finish(nil)
		if err != nil {
			t.Fatal(err)
		}
		key := "logs/dt=2026-11-22/hour=10/" + name + enc.Extension()
		if _, err := sc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	put(encode.Config{Format: encode.Parquet}, "s-shardId-000000000000-1-0", []string{
		`{"time":"2026-11-22T10:00:00Z","level":"INFO","msg":"a"}`,
		`{"time":"2026-11-22T10:00:02Z","level":"ERROR","msg":"b"}`,
		`{"time":"2026-11-22T10:00:04Z","level":"INFO","msg":"no identity"}`,
	}, []string{"prod-1/0", "prod-1/1+2", ""})
	put(encode.Config{}, "s-shardId-000000000001-1-0", []string{`{"time":"2026-11-22T10:00:01Z","level":"INFO","msg":"ndjson"}`}, []string{"prod-2/0"})
	q := func(args ...string) (string, string) {
		t.Helper()
		out, stderr, code := runKinlog(t, ctx, "", append([]string{"query", "--bucket", bucket, "--s3-path-style"}, args...)...)
		if code != 0 {
			t.Fatalf("query %v: exit %d: %s", args, code, stderr)
		}
		return out, stderr
	}
	if out, _ := q("--kinlog-id"); out != `{"time":"2026-11-22T10:00:00Z","level":"INFO","msg":"a","kinlog_id":"prod-1/0"}
{"time":"2026-11-22T10:00:01Z","level":"INFO","msg":"ndjson"}
{"time":"2026-11-22T10:00:02Z","level":"ERROR","msg":"b","kinlog_id":"prod-1/1+2"}
{"time":"2026-11-22T10:00:04Z","level":"INFO","msg":"no identity"}
` {
		t.Errorf("--kinlog-id:\n%s", out)
	}
	if out, _ := q(); strings.Contains(out, "kinlog_id") {
		t.Errorf("without --kinlog-id the records carry it:\n%s", out)
	}
	if out, _ := q("--kinlog-id", "--where", "kinlog_id=prod-1/1+2", "--select", "msg,kinlog_id"); out != `{"msg":"b","kinlog_id":"prod-1/1+2"}`+"\n" {
		t.Errorf("--where kinlog_id=prod-1/1+2:\n%s", out)
	}
	if out, _ := q("--kinlog-id", "--where", "kinlog_id missing", "--select", "msg"); out != `{"msg":"ndjson"}`+"\n"+`{"msg":"no identity"}`+"\n" {
		t.Errorf("--where 'kinlog_id missing':\n%s", out)
	}
	out, _ := q("--kinlog-id", "--output", "csv", "--limit", "2")
	if out != "time,level,service,msg,kinlog_id\n2026-11-22T10:00:00Z,INFO,,a,prod-1/0\n2026-11-22T10:00:01Z,INFO,,ndjson,\n" {
		t.Errorf("--output csv: the default columns and kinlog_id:\n%s", out)
	}
	if out, _ := q("--kinlog-id", "--where", "kinlog_id~^prod-1/", "--count-by", "level", "--scan"); !regexp.MustCompile(`(?m)^INFO\s+1\s`).MatchString(out) || !regexp.MustCompile(`(?m)^ERROR\s+1\s`).MatchString(out) {
		t.Errorf("--count-by level of prod-1's records:\n%s", out)
	}
	if out, stderr := q("--where", "kinlog_id=prod-1/0"); out != "" || !strings.Contains(stderr, `--where "kinlog_id=prod-1/0" names kinlog_id`) || !strings.Contains(stderr, "--kinlog-id") {
		t.Errorf("--where kinlog_id without --kinlog-id: stdout %q, stderr %q", out, stderr)
	}
	if _, stderr := q("--kinlog-id", "--where", "kinlog_id=prod-1/0"); stderr != "" {
		t.Errorf("--kinlog-id --where kinlog_id warned: %s", stderr)
	}
}

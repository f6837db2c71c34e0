package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
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

package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
)

// fakeS3 serves objects from a map and records which keys were fetched. Listing pages two
// keys at a time so that pagination is exercised.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte
	fetched []string
	listed  []string
	failGet string
}

func (f *fakeS3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = append(f.listed, aws.ToString(in.Prefix))
	var keys []string
	for k := range f.objects {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) && k > aws.ToString(in.ContinuationToken) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := &s3.ListObjectsV2Output{}
	if len(keys) > 2 {
		keys = keys[:2]
		out.IsTruncated = aws.Bool(true)
		out.NextContinuationToken = aws.String(keys[1])
	}
	for _, k := range keys {
		out.Contents = append(out.Contents, s3types.Object{Key: aws.String(k), Size: aws.Int64(int64(len(f.objects[k])))})
	}
	return out, nil
}

func (f *fakeS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := aws.ToString(in.Key)
	f.fetched = append(f.fetched, k)
	if k == f.failGet {
		return nil, errors.New("injected GetObject failure")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, ok := f.objects[k]
	if !ok {
		return nil, fmt.Errorf("no such key %s", k)
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(b))}, nil
}

// object encodes records with the sink's encoder, as the archive holds them.
func encodeObject(t *testing.T, cfg encode.Config, recs ...string) []byte {
	t.Helper()
	enc, err := encode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := enc.NewObject()
	for i, r := range recs {
		var d encode.Doc
		data := []byte(r)
		_ = d.Parse(encode.Trim(data))
		m := encode.Meta{Shard: "shardId-000000000000", Sequence: fmt.Sprint(100 + i), ArrivalTime: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), PartitionKey: "pk"}
		if err := b.Add(&m, data, &d); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rec(ts, level, msg string, latency int) string {
	return fmt.Sprintf(`{"time":%q,"level":%q,"service":"api","msg":%q,"latency_ms":%d}`, ts, level, msg, latency)
}

func testArchive(t *testing.T) *fakeS3 {
	gz := encode.Config{}
	zs := encode.Config{Compression: encode.CompressionZstd}
	return &fakeS3{objects: map[string][]byte{
		"logs/dt=2026-11-22/hour=09/s-0-1.json.gz": encodeObject(t, gz,
			rec("2026-11-22T09:10:00Z", "INFO", "a", 10), rec("2026-11-22T09:50:00Z", "ERROR", "b", 900)),
		"logs/dt=2026-11-22/hour=10/s-0-3.json.gz": encodeObject(t, gz,
			rec("2026-11-22T10:05:00Z", "ERROR", "c", 1200), rec("2026-11-22T10:20:00Z", "INFO", "d", 5), "not json"),
		"logs/dt=2026-11-22/hour=10/s-1-1.json.zst": encodeObject(t, zs,
			rec("2026-11-22T10:30:00Z", "WARN", "e", 300)),
		"logs/dt=2026-11-22/hour=11/s-0-6.parquet": encodeObject(t, encode.Config{Format: encode.Parquet},
			rec("2026-11-22T11:15:00Z", "ERROR", "f", 450)),
		"logs/dt=2026-11-22/hour=12/s-0-7.json.gz": encodeObject(t, gz,
			rec("2026-11-22T12:00:00Z", "INFO", "g", 1)),
		"logs/dt=2026-11-22/hour=10/_tmp": []byte("ignored: not an archive object"),
	}}
}

func runQuery(t *testing.T, api S3API, req Request) ([]string, Stats) {
	t.Helper()
	var got []string
	st, err := Run(context.Background(), api, req, func(rec []byte) error {
		got = append(got, string(rec))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, st
}

func msgs(recs []string) string {
	var out []string
	for _, r := range recs {
		var m string
		if i := strings.Index(r, `"msg":"`); i >= 0 {
			m = r[i+7 : i+8]
		} else {
			m = "?"
		}
		out = append(out, m)
	}
	return strings.Join(out, "")
}

func TestRunScansEverything(t *testing.T) {
	api := testArchive(t)
	got, st := runQuery(t, api, Request{Bucket: "b"})
	// "not json" is kept as a raw record by the encoder: every record comes back, in time
	// order, the raw record after the one before it in its object (d).
	if msgs(got) != "abcd?efg" {
		t.Fatalf("records %q (%v)", msgs(got), got)
	}
	if st.ObjectsListed != 5 || st.ObjectsRead != 5 || st.RecordsMatched != 8 {
		t.Fatalf("stats %+v", st)
	}
	if got[4] != `{"raw":"not json"}` {
		t.Fatalf("raw record = %s", got[4])
	}
	// In archive order: objects by key (hour 10's s-0-3 before s-1-1), records in order.
	if got, _ = runQuery(t, api, Request{Bucket: "b", Order: OrderNone}); msgs(got) != "abcd?efg" {
		t.Fatalf("archive order: records %q", msgs(got))
	}
	if got, _ = runQuery(t, api, Request{Bucket: "b", Order: OrderDesc}); msgs(got) != "gfe?dcba" {
		t.Fatalf("newest first: records %q", msgs(got))
	}
}

func TestRunPrunesByTime(t *testing.T) {
	api := testArchive(t)
	from := time.Date(2026, 11, 22, 10, 10, 0, 0, time.UTC)
	to := time.Date(2026, 11, 22, 11, 30, 0, 0, time.UTC)
	got, st := runQuery(t, api, Request{Bucket: "b", From: from, To: to})
	// Without time fields the range selects partitions: hours 10 and 11, all their records.
	if msgs(got) != "cd?ef" {
		t.Fatalf("partition-only range: records %q", msgs(got))
	}
	api.fetched = nil
	got, st = runQuery(t, api, Request{Bucket: "b", From: from, To: to, TimeFields: []string{"time"}})
	// Hours 10 and 11 are read; c (10:05) is in a read object but outside the range. The
	// raw record has no time of its own: its partition (hour 10) is all we know, so it stays.
	if msgs(got) != "d?ef" {
		t.Fatalf("records %q", msgs(got))
	}
	if st.ObjectsRead != 3 || st.Prefixes != 2 {
		t.Fatalf("stats %+v, fetched %v", st, api.fetched)
	}
	for _, k := range api.fetched {
		if !strings.Contains(k, "hour=10/") && !strings.Contains(k, "hour=11/") {
			t.Errorf("fetched %s outside the time range", k)
		}
	}
}

func TestRunFiltersAndLimit(t *testing.T) {
	api := testArchive(t)
	where, err := ParseFilter([]string{"level=ERROR", "latency_ms>400"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := runQuery(t, api, Request{Bucket: "b", Where: where})
	if msgs(got) != "bcf" {
		t.Fatalf("records %q", msgs(got))
	}
	// The Parquet record comes back as it was archived, as from NDJSON.
	if want := rec("2026-11-22T11:15:00Z", "ERROR", "f", 450); got[2] != want {
		t.Fatalf("parquet record = %s, want %s", got[2], want)
	}
	got, st := runQuery(t, testArchive(t), Request{Bucket: "b", Where: where, Limit: 2, Parallelism: 1})
	if msgs(got) != "bc" || st.RecordsMatched != 2 {
		t.Fatalf("limit 2: records %q, stats %+v", msgs(got), st)
	}
}

func TestRunErrors(t *testing.T) {
	api := testArchive(t)
	api.failGet = "logs/dt=2026-11-22/hour=10/s-0-3.json.gz"
	_, err := Run(context.Background(), api, Request{Bucket: "b"}, func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "injected GetObject failure") || !strings.Contains(err.Error(), api.failGet) {
		t.Fatalf("err = %v", err)
	}
	api = testArchive(t)
	api.objects["logs/dt=2026-11-22/hour=13/bad.json.gz"] = []byte("not gzip")
	if _, err := Run(context.Background(), api, Request{Bucket: "b"}, func([]byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "bad.json.gz") {
		t.Fatalf("corrupt object: err = %v", err)
	}
	stop := errors.New("reader went away")
	if _, err := Run(context.Background(), testArchive(t), Request{Bucket: "b"}, func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("emit error: %v", err)
	}
	from := time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)
	if _, err := Run(context.Background(), testArchive(t), Request{Bucket: "b", From: from, To: from}, func([]byte) error { return nil }); err == nil {
		t.Fatal("empty range accepted")
	}
}

func TestPrefixes(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 11, 22, h, m, 0, 0, time.UTC) }
	tests := []struct {
		tpl      string
		from, to time.Time
		want     []string
	}{
		{prefix.DefaultArchive, at(9, 30), at(11, 0), []string{"logs/dt=2026-11-22/hour=09/", "logs/dt=2026-11-22/hour=10/"}},
		{prefix.DefaultArchive, time.Time{}, at(11, 0), []string{"logs/dt="}},
		{"logs/!{partitionKeyFromQuery:service}/!{timestamp:yyyy/MM/dd}/", at(9, 0), at(10, 0), []string{"logs/"}},
		{"logs/!{timestamp:yyyy/MM/dd}/!{partitionKeyFromQuery:service}/", at(23, 59), at(23, 59).Add(2 * time.Minute), []string{"logs/2026/11/22/", "logs/2026/11/23/"}},
		{"archive/", at(9, 0), at(10, 0), []string{"archive/"}},
	}
	for _, tt := range tests {
		tpl, err := prefix.Parse(tt.tpl, prefix.AllowTimestamp|prefix.AllowQuery)
		if err != nil {
			t.Fatal(err)
		}
		if got := Prefixes(tpl, tt.from, tt.to); strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("Prefixes(%s, %v, %v) = %v, want %v", tt.tpl, tt.from, tt.to, got, tt.want)
		}
	}
}

// TestRunLargeObjectRecordsIntact checks that every record of an object much larger than
// any read buffer comes back whole and in order (records must not alias reused memory).
func TestRunLargeObjectRecordsIntact(t *testing.T) {
	var recs []string
	for i := range 20000 {
		recs = append(recs, fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", i%97)))
	}
	api := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/big.json.gz": encodeObject(t, encode.Config{}, recs...)}}
	got, _ := runQuery(t, api, Request{Bucket: "b"})
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if got[i] != recs[i] {
			t.Fatalf("record %d = %.80s, want %.80s", i, got[i], recs[i])
		}
	}
}

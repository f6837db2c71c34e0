package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/internal/testlogs"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// countingAPI passes every call to the real client and counts successful PutObject calls per
// key (a decorator, not a fake: S3 does the work).
type countingAPI struct {
	*awss3.Client
	mu   sync.Mutex
	puts map[string]int
}

func (c *countingAPI) PutObject(ctx context.Context, in *awss3.PutObjectInput, opts ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	out, err := c.Client.PutObject(ctx, in, opts...)
	if err == nil {
		c.mu.Lock()
		c.puts[*in.Key]++
		c.mu.Unlock()
	}
	return out, err
}

func createBucket(t *testing.T, c *awss3.Client) string {
	t.Helper()
	name := testenv.Name(t, "kinlog-sink")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for k := range listBucket(t, c, name) {
			_, _ = c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(name), Key: aws.String(k)})
		}
		_, _ = c.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(name)})
	})
	return name
}

// listBucket reads every object of the bucket.
func listBucket(t *testing.T, c *awss3.Client, bucket string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := map[string][]byte{}
	p := awss3.NewListObjectsV2Paginator(c, &awss3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			g, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key, ChecksumMode: types.ChecksumModeEnabled})
			if err != nil {
				t.Fatalf("getting %s: %v", *o.Key, err)
			}
			b, err := io.ReadAll(g.Body)
			g.Body.Close()
			if err != nil {
				t.Fatalf("reading %s: %v", *o.Key, err)
			}
			out[*o.Key] = b
		}
	}
	return out
}

func TestIntegrationMinIOReplayOverwrites(t *testing.T) {
	client := testenv.S3Client(t)
	for _, tc := range []struct {
		name string
		enc  encode.Config
	}{
		{"ndjson-gzip", encode.Config{}},
		{"parquet-zstd", encode.Config{Format: encode.Parquet}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bucket := createBucket(t, client)
			recs := testlogs.New(21).Records(shard, 1, 3000)
			recs[100].Data = []byte("{\"broken\": ")          // not JSON: archived wrapped (NDJSON) or as a message (Parquet)
			recs[200].Data = []byte("{\"msg\":\"\xff\xfe\"}") // invalid UTF-8: archived with U+FFFD by both
			opts := []Option{WithLogger(discard), WithEncoding(tc.enc), WithBufferSize(200 * 240), WithBufferInterval(time.Hour),
				WithRollups(rollup.Config{Numeric: []string{"latency_ms"}})}
			start := checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}

			api := &countingAPI{Client: client, puts: map[string]int{}}
			s, err := New(api, bucket, "it-stream", opts...)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, s, shard, start, nil)
			for i := 0; i < len(recs); i += 250 {
				h.mustDeliver(recs[i:min(i+250, len(recs))])
			}
			shutdown(t, h.proc)
			if h.ackedCount() != len(recs) {
				t.Fatalf("%d acknowledged, want %d", h.ackedCount(), len(recs))
			}
			first := listBucket(t, client, bucket)
			checkExactlyOnce(t, first, recs, tc.enc)

			// A second holder replays the first flush from a pending boundary, with other
			// triggers: the flush's objects are written again, identical.
			pending := h.prep.got()[0]
			api2 := &countingAPI{Client: client, puts: map[string]int{}}
			s2, err := New(api2, bucket, "it-stream", append(opts, WithBufferSize(1), WithBufferInterval(0))...)
			if err != nil {
				t.Fatal(err)
			}
			h2 := newHarness(t, s2, shard, start, &pending)
			cut := slices.IndexFunc(recs, func(r consumer.Record) bool { return r.Position() == pending }) + 1
			for i := 0; i < cut; i += 37 {
				h2.mustDeliver(recs[i:min(i+37, cut)])
			}
			shutdown(t, h2.proc)
			if len(api2.puts) == 0 {
				t.Fatal("the replay wrote nothing")
			}
			for k := range api2.puts {
				if api.puts[k] == 0 {
					t.Errorf("the replay wrote %s, which the first run did not", k)
				}
			}
			second := listBucket(t, client, bucket)
			if !maps.EqualFunc(first, second, bytes.Equal) {
				t.Fatalf("the bucket changed after the replay: %d objects before, %d after", len(first), len(second))
			}
		})
	}
}

// checkExactlyOnce reads the archive and the error output: every record appears exactly
// once, and rollup counts equal archived counts per window.
func checkExactlyOnce(t *testing.T, objs map[string][]byte, recs []consumer.Record, enc encode.Config) {
	t.Helper()
	seen := map[string]int{}
	perMinute := map[time.Time]int64{}
	var rows []rollup.Row
	bySeq := map[string]*consumer.Record{}
	for i := range recs {
		bySeq[recs[i].SequenceNumber] = &recs[i]
	}
	for k, body := range objs {
		switch {
		case strings.HasPrefix(k, "logs/"):
			if enc.Format == encode.Parquet {
				prs, err := encode.ReadParquet(body)
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				for _, r := range prs {
					seen[r.Sequence]++
					perMinute[bySeq[r.Sequence].ArrivalTime.Truncate(time.Minute)]++
				}
				continue
			}
			// NDJSON lines carry no metadata: match them to records by content, in order
			// from the object's first sequence number (its name).
			lines := readNDJSON(t, body, encode.CompressionGzip)
			name := k[strings.LastIndex(k, "/")+1:]
			firstSeq := strings.Split(strings.TrimPrefix(name, "it-stream-"+shard+"-"), "-")[0]
			i := slices.IndexFunc(recs, func(r consumer.Record) bool { return r.SequenceNumber == firstSeq })
			if i < 0 {
				t.Fatalf("object %s names no record", k)
			}
			for _, l := range lines {
				for i < len(recs) && !sameLine(l, recs[i].Data) {
					i++
				}
				if i == len(recs) {
					t.Fatalf("%s: line %q matches no record after %s", k, l, firstSeq)
				}
				seen[recs[i].SequenceNumber]++
				perMinute[recs[i].ArrivalTime.Truncate(time.Minute)]++
				i++
			}
		case strings.HasPrefix(k, "errors/"):
			for _, l := range readNDJSON(t, body, encode.CompressionGzip) {
				var er ErrorRecord
				if err := json.Unmarshal(l, &er); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(er.RawData, bySeq[er.Sequence].Data) {
					t.Errorf("error record %s lost its raw bytes", er.Sequence)
				}
				seen[er.Sequence]++
			}
		case strings.HasPrefix(k, "analytics/"):
			r, err := rollup.DecodeObject(body)
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			rows = append(rows, r...)
		default:
			t.Errorf("unexpected object %s", k)
		}
	}
	for _, r := range recs {
		if seen[r.SequenceNumber] != 1 {
			t.Fatalf("record %s appears %d times", r.SequenceNumber, seen[r.SequenceNumber])
		}
	}
	if len(seen) != len(recs) {
		t.Fatalf("%d distinct records stored, want %d", len(seen), len(recs))
	}
	merged, err := rollup.Merge(rows, rollup.MergeOptions{By: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[time.Time]int64{}
	for _, r := range merged {
		got[r.Start] = r.Count
	}
	if !maps.Equal(got, perMinute) {
		t.Fatalf("rollup counts %v, archived %v", got, perMinute)
	}
}

// sameLine reports whether an NDJSON line holds the record's data.
func sameLine(line, data []byte) bool {
	var d encode.Doc
	_ = d.Parse(encode.Trim(data))
	want := encode.AppendLine(nil, data, &d, encode.FramingLines)
	return bytes.Equal(append(bytes.Clone(line), '\n'), want)
}

func TestIntegrationMinIOMultipart(t *testing.T) {
	client := testenv.S3Client(t)
	bucket := createBucket(t, client)
	s, err := New(client, bucket, "it-stream", WithLogger(discard), WithoutRollups(), WithBufferInterval(0), WithBufferSize(64<<20),
		WithEncoding(encode.Config{Compression: encode.CompressionNone}), WithMultipart(5<<20, 5<<20))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("y", 1<<20)
	var recs []consumer.Record
	for i := range 11 {
		recs = append(recs, consumer.Record{ShardID: shard, SequenceNumber: testlogs.Seq(uint64(i + 1)), ArrivalTime: time.Now(), Data: []byte(`{"pad":"` + big + `"}`)})
	}
	h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
	h.mustDeliver(recs)
	shutdown(t, h.proc)
	objs := listBucket(t, client, bucket)
	if len(objs) != 1 {
		t.Fatalf("%d objects, want 1", len(objs))
	}
	for _, body := range objs {
		if len(body) < 11<<20 || len(readNDJSON(t, body, encode.CompressionNone)) != 11 {
			t.Fatalf("multipart object of %d bytes", len(body))
		}
	}
	if h.ackedCount() != 11 {
		t.Fatalf("%d acknowledged", h.ackedCount())
	}
}

func TestIntegrationMinIOMissingBucketHoldsAcks(t *testing.T) {
	client := testenv.S3Client(t)
	s, err := New(client, testenv.Name(t, "kinlog-missing"), "it-stream", WithLogger(discard), WithBufferInterval(0),
		WithRetryBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
	h.mustDeliver(testlogs.New(22).Records(shard, 1, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.proc.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown succeeded writing to a bucket that does not exist")
	}
	if h.ackedCount() != 0 {
		t.Fatal("records acknowledged")
	}
	if n := testutil.ToFloat64(s.met.errors.WithLabelValues(errTypePut)); n < 1 {
		t.Fatalf("s3_put errors = %v, want at least 1", n)
	}
}

package lambda

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/rollup"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// stack is one test's stream, bucket and progress table on the local stack.
type stack struct {
	// sinkOpts are the options of the stack's sinks (default: sinkOptions).
	sinkOpts []s3sink.Option
	kin      *kinesis.Client
	s3       *awss3.Client
	ddb      *dynamodb.Client
	stream   string
	bucket   string
	table    string
}

func newStack(t *testing.T, shards int32) *stack {
	t.Helper()
	testenv.Require(t, testenv.Kinesis, testenv.DynamoDB, testenv.S3)
	s := &stack{sinkOpts: sinkOptions, kin: testenv.KinesisClient(t), s3: testenv.S3Client(t), ddb: testenv.DynamoDBClient(t)}
	s.stream = testenv.Name(t, "lambda")
	testenv.CreateStream(t, s.kin, s.stream, shards)
	s.bucket = testenv.Name(t, "kinlog-lambda")
	ctx := t.Context()
	if _, err := s.s3.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &s.bucket}); err != nil {
		t.Fatalf("creating bucket: %v", err)
	}
	s.table = testenv.Name(t, "progress")
	if err := CreateProgressTable(ctx, s.ddb, s.table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = s.ddb.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: &s.table})
		for k := range s.objects(t) {
			_, _ = s.s3.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(k)})
		}
		_, _ = s.s3.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: &s.bucket})
	})
	return s
}

// sinkOptions are the options of the tests' sinks: a partitioned prefix, so that records
// that are not JSON go to the error prefix, and rollups.
var sinkOptions = []s3sink.Option{
	s3sink.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	s3sink.WithPrefix("logs/service=!{partitionKeyFromQuery:service}/dt=!{timestamp:yyyy-MM-dd}/"),
	s3sink.WithRollups(rollup.Config{}),
}

// function returns a Function on the stack; clients may be replaced (decorated) by the test.
func (s *stack) function(t testing.TB, s3c S3API, ddb DynamoDBAPI, opts ...Option) *Function {
	t.Helper()
	if s3c == nil {
		s3c = s.s3
	}
	if ddb == nil {
		ddb = s.ddb
	}
	newSink := func(stream string) (*s3sink.Sink, error) {
		return s3sink.New(s3c, s.bucket, stream, s.sinkOpts...)
	}
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	f, err := New(newSink, s3c, s.kin, ddb, s.table, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// put writes n user records with ids from first: every fourth Kinesis record is a KPL
// aggregate of three, every tenth user record is not JSON. It returns the ids of the
// records that are JSON and those that are not.
func (s *stack) put(t *testing.T, first, n int) (good, bad []string) {
	t.Helper()
	var entries []ktypes.PutRecordsRequestEntry
	line := func(i int) (string, []byte) {
		id := fmt.Sprintf("r%06d", i)
		if i%10 == 9 {
			bad = append(bad, id)
			return id, []byte("not json " + id)
		}
		good = append(good, id)
		return id, fmt.Appendf(nil, `{"id":%q,"service":"svc%d","level":"info","msg":"hello %d"}`, id, i%3, i)
	}
	for i := first; i < first+n; {
		if len(entries)%4 == 3 && i+3 <= first+n {
			// The user records share the aggregate's partition key, so that they lie in
			// the range of the shard it goes to (else the consumers drop it whole).
			var a kpl.Aggregator
			pk := fmt.Sprintf("agg%d", i)
			for j := 0; j < 3; j++ {
				_, data := line(i + j)
				a.Add(kpl.Record{PartitionKey: pk, Data: data})
			}
			entries = append(entries, ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(pk), Data: a.AppendEncode(nil)})
			i += 3
			continue
		}
		id, data := line(i)
		entries = append(entries, ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(id), Data: data})
		i++
	}
	for len(entries) > 0 {
		k := min(len(entries), 500)
		out, err := s.kin.PutRecords(t.Context(), &kinesis.PutRecordsInput{StreamName: &s.stream, Records: entries[:k]})
		if err != nil || aws.ToInt32(out.FailedRecordCount) > 0 {
			t.Fatalf("putting records: %v (%v failed)", err, out)
		}
		entries = entries[k:]
	}
	return good, bad
}

// read returns the Kinesis records of a shard, as stored (aggregates not deaggregated).
func (s *stack) read(t *testing.T, shard string) []ktypes.Record {
	t.Helper()
	return testenv.ReadShard(t, s.kin, s.stream, shard)
}

// event is the invocation payload Lambda sends for recs of one shard: the shape of the
// example event in https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html.
func (s *stack) event(shard string, recs []ktypes.Record) []byte {
	type kin struct {
		SchemaVersion string `json:"kinesisSchemaVersion"`
		PartitionKey  string `json:"partitionKey"`
		Sequence      string `json:"sequenceNumber"`
		Data          string `json:"data"`
		Arrival       string `json:"approximateArrivalTimestamp"`
	}
	type rec struct {
		Kinesis           kin    `json:"kinesis"`
		EventSource       string `json:"eventSource"`
		EventVersion      string `json:"eventVersion"`
		EventID           string `json:"eventID"`
		EventName         string `json:"eventName"`
		InvokeIdentityArn string `json:"invokeIdentityArn"`
		AWSRegion         string `json:"awsRegion"`
		EventSourceARN    string `json:"eventSourceARN"`
	}
	ev := struct {
		Records []rec `json:"Records"`
	}{Records: []rec{}}
	for _, r := range recs {
		ms := aws.ToTime(r.ApproximateArrivalTimestamp).UnixMilli()
		ev.Records = append(ev.Records, rec{
			Kinesis: kin{SchemaVersion: "1.0", PartitionKey: *r.PartitionKey, Sequence: *r.SequenceNumber,
				Data: base64.StdEncoding.EncodeToString(r.Data), Arrival: fmt.Sprintf("%d.%03d", ms/1000, ms%1000)},
			EventSource: "aws:kinesis", EventVersion: "1.0", EventID: shard + ":" + *r.SequenceNumber,
			EventName: "aws:kinesis:record", InvokeIdentityArn: "arn:aws:iam::000000000000:role/kinlog",
			AWSRegion: "us-east-1", EventSourceARN: "arn:aws:kinesis:us-east-1:000000000000:stream/" + s.stream,
		})
	}
	b, _ := json.Marshal(ev)
	// The arrival time is a JSON number, not a string.
	return []byte(strings.NewReplacer(`"approximateArrivalTimestamp":"`, `"approximateArrivalTimestamp":`, `"},"eventSource"`, `},"eventSource"`).Replace(string(b)))
}

// objects reads every object of the bucket.
func (s *stack) objects(t testing.TB) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string][]byte{}
	p := awss3.NewListObjectsV2Paginator(s.s3, &awss3.ListObjectsV2Input{Bucket: &s.bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing: %v", err)
		}
		for _, o := range page.Contents {
			g, err := s.s3.GetObject(ctx, &awss3.GetObjectInput{Bucket: &s.bucket, Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(g.Body)
			g.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[*o.Key] = b
		}
	}
	return out
}

// archive counts, by id, the records of the archive objects and of the error objects, and
// sums the record counts of the rollups.
type archive struct {
	records, errors map[string]int
	rollupCount     int64
	objects         int
	// noRollups: the sink wrote none, so problems does not compare their count.
	noRollups bool
}

func (s *stack) archive(t *testing.T) archive {
	t.Helper()
	a := archive{records: map[string]int{}, errors: map[string]int{}}
	var dec encode.Decoder
	for key, body := range s.objects(t) {
		a.objects++
		switch {
		case strings.HasPrefix(key, "logs/"):
			ocfg, ok := encode.ObjectConfig(key)
			if !ok {
				t.Fatalf("object %s: unknown extension", key)
			}
			recs, err := dec.Decode(body, ocfg)
			if err != nil {
				t.Fatalf("decoding %s: %v", key, err)
			}
			for _, r := range recs {
				var v struct{ ID, Raw string }
				if err := json.Unmarshal(r, &v); err == nil && v.ID == "" {
					v.ID = strings.TrimPrefix(v.Raw, "not json ") // a record that is not JSON, wrapped
				}
				if v.ID == "" {
					t.Fatalf("record %s of %s has no id", r, key)
				}
				a.records[v.ID]++
			}
		case strings.HasPrefix(key, "errors/"):
			lines, err := encode.Decompress(body, encode.CompressionGzip)
			if err != nil {
				t.Fatalf("decompressing %s: %v", key, err)
			}
			for _, l := range bytes.Split(bytes.TrimSpace(lines), []byte("\n")) {
				var e s3sink.ErrorRecord
				if err := json.Unmarshal(l, &e); err != nil {
					t.Fatalf("error line %s: %v", l, err)
				}
				a.errors[strings.TrimPrefix(string(e.RawData), "not json ")]++
			}
		case strings.HasPrefix(key, "analytics/"):
			rows, err := rollup.DecodeObject(body)
			if err != nil {
				t.Fatalf("decoding rollup %s: %v", key, err)
			}
			for _, r := range rows {
				a.rollupCount += r.Count
			}
		default:
			t.Fatalf("unexpected object %s", key)
		}
	}
	return a
}

// problems returns what keeps the archive from holding every good id once, every bad one
// once in the error output, nothing else, and rollups that count the archived records;
// "" when nothing does.
func (a archive) problems(good, bad []string) string {
	var out []string
	check := func(what string, got map[string]int, want []string) {
		extra, missing, dup := 0, 0, 0
		wanted := map[string]bool{}
		for _, id := range want {
			wanted[id] = true
			switch got[id] {
			case 0:
				missing++
			case 1:
			default:
				dup++
			}
		}
		for id := range got {
			if !wanted[id] {
				extra++
			}
		}
		if missing+dup+extra > 0 {
			out = append(out, fmt.Sprintf("%s: %d of %d missing, %d more than once, %d unexpected", what, missing, len(want), dup, extra))
		}
	}
	check("archive", a.records, good)
	check("error output", a.errors, bad)
	total := 0
	for _, n := range a.records {
		total += n
	}
	if !a.noRollups && a.rollupCount != int64(total) {
		out = append(out, fmt.Sprintf("rollups count %d records, the archive holds %d", a.rollupCount, total))
	}
	return strings.Join(out, "; ")
}

package query_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kinlog/kinlog/query"
	"github.com/kinlog/kinlog/sinks/encode"
)

// memS3 is an in-memory bucket with the two calls query.S3API needs.
type memS3 map[string][]byte

func (m memS3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := &s3.ListObjectsV2Output{}
	for _, k := range keys {
		out.Contents = append(out.Contents, s3types.Object{Key: aws.String(k), Size: aws.Int64(int64(len(m[k])))})
	}
	return out, nil
}

func (m memS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(m[aws.ToString(in.Key)]))}, nil
}

// archive encodes records into one object as the archive sink does.
func archive(cfg encode.Config, recs ...string) []byte {
	enc, _ := encode.New(cfg)
	o := enc.NewObject()
	for i, r := range recs {
		var d encode.Doc
		_ = d.Parse([]byte(r))
		_ = o.Add(&encode.Meta{Shard: "shardId-000000000000", Sequence: fmt.Sprint(i + 1)}, []byte(r), &d)
	}
	body, _ := o.Finish(nil)
	return body
}

// The two newest errors of an archive written partly as NDJSON and partly as Parquet: the
// records come back in time order across objects and partitions, the same JSON whichever
// encoding holds them.
func ExampleRun() {
	bucket := memS3{
		"logs/dt=2026-11-22/hour=10/app-shardId-000000000000-1-0.json.gz": archive(encode.Config{},
			`{"time":"2026-11-22T10:05:00Z","level":"ERROR","msg":"disk full"}`,
			`{"time":"2026-11-22T10:59:00Z","level":"ERROR","msg":"timeout","http":{"status":504}}`),
		"logs/dt=2026-11-22/hour=11/app-shardId-000000000000-3-0.parquet": archive(encode.Config{Format: encode.Parquet},
			`{"time":"2026-11-22T11:01:00Z","level":"INFO","msg":"recovered"}`,
			`{"ts":1795345320000,"severity":"ERROR","msg":"retry failed","http.status":503}`),
	}
	where, _ := query.ParseFilter([]string{"http.status>=500"})
	req := query.Request{Bucket: "archive", Where: where, Order: query.OrderDesc, Limit: 2}
	_, err := query.Run(context.Background(), bucket, req, func(rec []byte) error {
		fmt.Println(string(rec))
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// ts 1795345320000 is 2026-11-22T11:02:00Z: the newest.

	// Output:
	// {"ts":1795345320000,"severity":"ERROR","msg":"retry failed","http.status":503}
	// {"time":"2026-11-22T10:59:00Z","level":"ERROR","msg":"timeout","http":{"status":504}}
}

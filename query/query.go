package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/jsonx"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// S3API is the subset of the S3 client the query engine calls.
type S3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// DefaultParallelism is how many objects a query reads at once unless told otherwise.
const DefaultParallelism = 8

// maxPruneSteps bounds the minutes a time range is walked to find its partitions; a longer
// range lists the template's literal prefix and prunes keys one by one instead.
const maxPruneSteps = 2_000_000

// Request describes one query of the archive.
type Request struct {
	// Bucket holds the archive.
	Bucket string
	// Prefix is the archive's key template, as the sink was configured. Default:
	// prefix.DefaultArchive.
	Prefix string
	// From and To bound the records' time, inclusive and exclusive; zero means unbounded.
	From, To time.Time
	// Where filters records; every condition must hold.
	Where Filter
	// Limit stops the query after this many matching records; 0 means no limit.
	Limit int
	// Parallelism is how many objects are fetched at once. Default: [DefaultParallelism].
	Parallelism int
	// TimeFields are the JSON members holding a record's time, tried in order, for an exact
	// From/To filter on each record. Set them to what the sink partitions by (its time
	// field). Default: none — the sink's default partitions by arrival time, which NDJSON
	// records do not carry, so the range is applied to partitions only (hour granularity
	// with the default template). Records without a readable time are kept.
	TimeFields []string
}

// Stats counts the work one query did.
type Stats struct {
	Prefixes       int   // key prefixes listed
	ObjectsListed  int   // archive objects found under them
	ObjectsRead    int64 // objects fetched (after pruning)
	BytesRead      int64 // stored (compressed) bytes fetched
	RecordsScanned int64
	RecordsMatched int64
}

// errLimit ends a query that reached its limit.
var errLimit = errors.New("limit reached")

// Run executes req against the archive and calls emit, from one goroutine and in key order,
// with every matching record as one line of JSON (without the newline). The record's bytes
// are valid only during the call (their buffer is reused): copy what you keep. Run fetches
// req.Parallelism objects at once and keeps at most that many decoded in memory.
func Run(ctx context.Context, api S3API, req Request, emit func(rec []byte) error) (Stats, error) {
	var st Stats
	if req.Bucket == "" {
		return st, errors.New("query: no bucket")
	}
	if req.Prefix == "" {
		req.Prefix = prefix.DefaultArchive
	}
	if req.Parallelism <= 0 {
		req.Parallelism = DefaultParallelism
	}
	if !req.From.IsZero() && !req.To.IsZero() && !req.From.Before(req.To) {
		return st, fmt.Errorf("query: --from %s is not before --to %s", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339))
	}
	tpl, err := prefix.Parse(req.Prefix, prefix.AllowTimestamp|prefix.AllowQuery)
	if err != nil {
		return st, fmt.Errorf("query: archive prefix: %w", err)
	}
	prefixes := Prefixes(tpl, req.From, req.To)
	st.Prefixes = len(prefixes)
	var keys []object
	for _, p := range prefixes {
		ks, err := listObjects(ctx, api, req.Bucket, p)
		if err != nil {
			return st, err
		}
		keys = append(keys, ks...)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].key < keys[j].key })
	st.ObjectsListed = len(keys)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// An ordered pipeline: fetchers fill results in parallel, the caller's goroutine emits
	// them in key order. The semaphore bounds objects fetched or held.
	results := make([]chan objectResult, len(keys))
	for i := range results {
		results[i] = make(chan objectResult, 1)
	}
	sem := make(chan struct{}, req.Parallelism)
	var wg sync.WaitGroup
	var scanned, read, bytesRead atomic.Int64
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		for i, o := range keys {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for _, ch := range results[i:] {
					ch <- objectResult{err: ctx.Err()}
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				recs, buf, n, err := readObject(ctx, api, req, o)
				read.Add(1)
				bytesRead.Add(n)
				scanned.Add(int64(len(recs)))
				results[i] <- objectResult{recs: recs, buf: buf, err: err}
			}()
		}
	}()

	var runErr error
	for i := range keys {
		r := <-results[i]
		<-sem
		if r.err != nil {
			runErr = r.err
			break
		}
		err := emitAll(r.recs, &req, &st, emit)
		putBuf(r.buf)
		if err != nil {
			if !errors.Is(err, errLimit) {
				runErr = err
			}
			break
		}
	}
	// Stop fetching (a limit, an error, or the end), then wait for every goroutine.
	cancel()
	<-dispatched
	wg.Wait()
	st.ObjectsRead, st.BytesRead, st.RecordsScanned = read.Load(), bytesRead.Load(), scanned.Load()
	return st, runErr
}

type object struct {
	key  string
	size int64
}

type objectResult struct {
	recs [][]byte
	buf  []byte // what recs point into, returned to bufPool once they are emitted
	err  error
}

// bufPool recycles the buffers objects are read and decompressed into: a scan then
// allocates (and clears) a few buffers instead of two per object.
var bufPool sync.Pool

// maxPooledBuf keeps unusually large buffers out of the pool.
const maxPooledBuf = 64 << 20

func getBuf() []byte {
	if p, ok := bufPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

func putBuf(b []byte) {
	if cap(b) > 0 && cap(b) <= maxPooledBuf {
		bufPool.Put(&b)
	}
}

func emitAll(recs [][]byte, req *Request, st *Stats, emit func([]byte) error) error {
	var doc encode.Doc
	timed := len(req.TimeFields) > 0 && (!req.From.IsZero() || !req.To.IsZero())
	for _, rec := range recs {
		if timed && doc.Parse(rec) == nil {
			if t, _, ok := encode.TimeOf(&doc, req.TimeFields, encode.TimeAuto); ok {
				if (!req.From.IsZero() && t.Before(req.From)) || (!req.To.IsZero() && !t.Before(req.To)) {
					continue
				}
			}
		}
		if !req.Where.Match(rec) {
			continue
		}
		st.RecordsMatched++
		if err := emit(rec); err != nil {
			return err
		}
		if req.Limit > 0 && st.RecordsMatched >= int64(req.Limit) {
			return errLimit
		}
	}
	return nil
}

// Prefixes returns the key prefixes that hold every object whose records' times fall in
// [from, to): the template evaluated at each minute of the range, cut before its first
// partitionKeyFromQuery value, without duplicates or prefixes covered by shorter ones.
// An unbounded or very long range gives the template's literal prefix.
func Prefixes(tpl *prefix.Template, from, to time.Time) []string {
	if from.IsZero() || to.IsZero() || to.Sub(from)/time.Minute > maxPruneSteps {
		return []string{tpl.LiteralPrefix()}
	}
	// A field value no record can have: EscapeValue turns NUL into "%00", where the
	// rendered key is cut.
	fields := make([]string, len(tpl.Fields()))
	for i := range fields {
		fields[i] = "\x00"
	}
	seen := map[string]bool{}
	var out []string
	var buf []byte
	for t := from.UTC().Truncate(time.Minute); t.Before(to); t = t.Add(time.Minute) {
		buf = tpl.Append(buf[:0], &prefix.Values{Time: t, Fields: fields})
		p := string(buf)
		if i := strings.Index(p, "%00"); i >= 0 {
			p = p[:i]
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	// Drop prefixes that a shorter listed prefix already covers.
	kept := out[:0]
	for _, p := range out {
		if n := len(kept); n > 0 && strings.HasPrefix(p, kept[n-1]) {
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// archiveExt reports whether a key names an archive object the engine can read (rollup
// objects are not archive objects, even under the same prefix).
func archiveExt(key string) bool {
	if strings.HasSuffix(key, rollup.Extension) {
		return false
	}
	for _, ext := range []string{".json", ".json.gz", ".json.zst", ".json.snappy", ".parquet"} {
		if strings.HasSuffix(key, ext) {
			return true
		}
	}
	return false
}

func listObjects(ctx context.Context, api S3API, bucket, pfx string) ([]object, error) {
	return listKeys(ctx, api, bucket, pfx, archiveExt)
}

// listKeys lists the objects under pfx whose keys satisfy keep.
func listKeys(ctx context.Context, api S3API, bucket, pfx string, keep func(string) bool) ([]object, error) {
	var out []object
	var token *string
	for {
		resp, err := api.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(pfx), ContinuationToken: token})
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", bucket, pfx, err)
		}
		for _, o := range resp.Contents {
			if k := aws.ToString(o.Key); keep(k) {
				out = append(out, object{key: k, size: aws.ToInt64(o.Size)})
			}
		}
		if !aws.ToBool(resp.IsTruncated) || resp.NextContinuationToken == nil {
			return out, nil
		}
		token = resp.NextContinuationToken
	}
}

// readObject fetches and decodes one object into JSON records. The records point into the
// returned buffer (for putBuf once they are used). It also returns the stored bytes read.
func readObject(ctx context.Context, api S3API, req Request, o object) ([][]byte, []byte, int64, error) {
	resp, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(req.Bucket), Key: aws.String(o.key)})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reading s3://%s/%s: %w", req.Bucket, o.key, err)
	}
	defer resp.Body.Close()
	body := bytes.NewBuffer(getBuf())
	if n := aws.ToInt64(resp.ContentLength); n > 0 {
		body.Grow(int(n) + bytes.MinRead)
	}
	_, err = body.ReadFrom(resp.Body)
	data := body.Bytes()
	if err != nil {
		putBuf(data)
		return nil, nil, int64(len(data)), fmt.Errorf("reading s3://%s/%s: %w", req.Bucket, o.key, err)
	}
	var recs [][]byte
	buf := data
	if strings.HasSuffix(o.key, ".parquet") {
		recs, err = parquetRecords(data) // fresh records: data is not needed after this
		putBuf(data)
		buf = nil
	} else {
		buf, err = decompress(o.key, data)
		putBuf(data)
		if err == nil {
			recs = splitLines(buf)
		}
	}
	if err != nil {
		putBuf(buf)
		return nil, nil, int64(len(data)), fmt.Errorf("decoding s3://%s/%s: %w", req.Bucket, o.key, err)
	}
	return recs, buf, int64(len(data)), nil
}

// decompress decompresses an NDJSON object, by its extension, into a pooled buffer.
func decompress(key string, data []byte) ([]byte, error) {
	c := encode.CompressionNone
	switch {
	case strings.HasSuffix(key, ".gz"):
		c = encode.CompressionGzip
	case strings.HasSuffix(key, ".zst"):
		c = encode.CompressionZstd
	case strings.HasSuffix(key, ".snappy"):
		c = encode.CompressionSnappy
	}
	return encode.DecompressAppend(getBuf(), data, c)
}

// splitLines returns the non-empty lines of raw as sub-slices of it: no copy per record.
func splitLines(raw []byte) [][]byte {
	recs := make([][]byte, 0, bytes.Count(raw, []byte{'\n'})+1)
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(line) > 0 {
			recs = append(recs, line)
		}
	}
	return recs
}

// parquetRecords turns rows of the Parquet log schema back into JSON records: time, level,
// service and msg, the attributes' members, and the Kinesis metadata under "kinesis". A
// column wins over an attribute of the same name. The records are appended to one buffer.
func parquetRecords(data []byte) ([][]byte, error) {
	rows, err := encode.ReadParquet(data)
	if err != nil {
		return nil, err
	}
	recs := make([][]byte, 0, len(rows))
	var (
		buf  []byte
		ends = make([]int, 0, len(rows))
		doc  encode.Doc
	)
	for i := range rows {
		r := &rows[i]
		buf = append(buf, '{')
		n := 0
		member := func(name string) {
			if n > 0 {
				buf = append(buf, ',')
			}
			n++
			buf = jsonx.AppendString(buf, name)
			buf = append(buf, ':')
		}
		if r.Time != nil {
			member("time")
			buf = append(buf, '"')
			buf = r.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
			buf = append(buf, '"')
		}
		columns := [...]struct{ name, value string }{{"level", r.Level}, {"service", r.Service}, {"msg", r.Message}}
		for _, c := range columns {
			if c.value != "" {
				member(c.name)
				buf = jsonx.AppendString(buf, c.value)
			}
		}
		if r.Attributes != "" {
			if err := doc.Parse([]byte(r.Attributes)); err != nil || doc.Kind != encode.Object {
				return nil, fmt.Errorf("row %s/%d: attributes are not a JSON object", r.Sequence, r.SubSequence)
			}
		attributes:
			for k := range doc.Len() {
				f := doc.Field(k)
				name := f.Name()
				if name == "kinesis" || (name == "time" && r.Time != nil) {
					continue
				}
				for _, c := range columns {
					if name == c.name && c.value != "" {
						continue attributes
					}
				}
				member(name)
				buf = append(buf, f.Value...)
			}
		}
		member("kinesis")
		buf = append(buf, `{"shard":`...)
		buf = jsonx.AppendString(buf, r.Shard)
		buf = append(buf, `,"sequence":`...)
		buf = jsonx.AppendString(buf, r.Sequence)
		buf = append(buf, `,"sub_sequence":`...)
		buf = strconv.AppendInt(buf, r.SubSequence, 10)
		buf = append(buf, `,"arrival_time":"`...)
		buf = r.ArrivalTime.UTC().AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, `","partition_key":`...)
		buf = jsonx.AppendString(buf, r.PartitionKey)
		buf = append(buf, "}}"...)
		ends = append(ends, len(buf))
	}
	start := 0
	for _, end := range ends {
		recs = append(recs, buf[start:end:end])
		start = end
	}
	return recs, nil
}

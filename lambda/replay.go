package lambda

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// ReplayKinesisAPI is what [Function.Replay] reads a discarded batch from the stream with.
// *kinesis.Client implements it.
type ReplayKinesisAPI interface {
	GetShardIterator(context.Context, *kinesis.GetShardIteratorInput, ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(context.Context, *kinesis.GetRecordsInput, ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// ReplayS3API is what [Function.Replay] looks objects up in the archive with.
// *s3.Client implements it.
type ReplayS3API interface {
	ListObjectsV2(context.Context, *awss3.ListObjectsV2Input, ...func(*awss3.Options)) (*awss3.ListObjectsV2Output, error)
	HeadObject(context.Context, *awss3.HeadObjectInput, ...func(*awss3.Options)) (*awss3.HeadObjectOutput, error)
}

// ErrNotInStream is returned by [Function.Replay] when the stream no longer holds the
// first records of the batch (its retention passed) and no payload was given.
var ErrNotInStream = errors.New("the batch's records are no longer in the stream")

// Discarded is a batch that Lambda discarded after its retries or record age ran out, as
// an on-failure destination records it.
type Discarded struct {
	Stream, Shard string
	// Start and End are the sequence numbers of its first and last Kinesis record.
	Start, End string
	// Payload is the invocation's event, when the record holds it (S3 destinations do);
	// without it the records are read again from the stream.
	Payload []byte
}

// ReplayResult says what a replay did.
type ReplayResult struct {
	// Records is the user records of the batch; Archived those the archive already held;
	// Rearchived those written by the replay.
	Records, Archived, Rearchived int
	// Objects is how many objects the replay wrote for records at or before the committed
	// position (those after it go through the protocol and its log line).
	Objects int
}

// Replay archives the records of a discarded batch that the archive does not hold,
// exactly once:
//
//   - records after the shard's committed position go through the function's protocol, as
//     a late batch would;
//   - records at or before it were either committed with the batches around them or
//     skipped when Lambda discarded the batch. Replay looks each one up: an object of the
//     record's prefix and shard whose first and last positions enclose it holds it (objects
//     of a run of consecutive records hold every record of their prefix in the run). Those
//     that no object holds are written, under keys named by their first record; objects
//     listed as pending are not counted.
//
// Running a replay again finds every record held and writes nothing: it is idempotent. Two
// replays of one batch must not run at once.
func (f *Function) Replay(ctx context.Context, d Discarded, kin ReplayKinesisAPI, s3c ReplayS3API) (ReplayResult, error) {
	var res ReplayResult
	b, err := f.discardedRecords(ctx, d, kin)
	if err != nil {
		return res, err
	}
	if len(b.records) == 0 {
		return res, nil
	}
	log := f.log.With("stream", b.stream, "shard", b.shard, "replay", d.Start+".."+d.End)
	sink, err := f.sink(b.stream)
	if err != nil {
		return res, err
	}
	users, err := f.userRecords(ctx, b)
	if err != nil {
		return res, err
	}
	key := b.stream + "/" + b.shard
	prog, err := f.progress.load(ctx, key)
	if err != nil {
		return res, err
	}
	var old []consumer.Record
	tail := &batch{stream: b.stream, streamARN: b.streamARN, shard: b.shard}
	for i := range b.records {
		res.Records += len(users[i])
		if prog.Committed.Sequence != "" && (checkpoint.Checkpoint{Sequence: b.records[i].seq}).Compare(checkpoint.Checkpoint{Sequence: prog.Committed.Sequence}) <= 0 {
			for _, u := range users[i] {
				if u.Position().Compare(prog.Committed) <= 0 {
					old = append(old, u)
				}
			}
			if b.records[i].seq != prog.Committed.Sequence || prog.Committed.SubSequence == checkpoint.WholeRecord {
				continue
			}
		}
		tail.records = append(tail.records, b.records[i])
	}
	idx := &archiveIndex{s3: s3c, bucket: sink.Bucket(), pending: prog.Pending, lists: map[string][]listed{}}
	var missing []consumer.Record
	for _, u := range old {
		held, err := idx.holds(ctx, sink, b.shard, u)
		if err != nil {
			return res, err
		}
		if held {
			res.Archived++
		} else {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		// No deduplication state applies here: these records are before the committed
		// position, whose state already holds them.
		objs, err := sink.Build(b.shard, missing, nil)
		if err != nil {
			return res, err
		}
		if err := sink.Write(ctx, objs); err != nil {
			return res, fmt.Errorf("writing the missing records of %s: %w", key, err)
		}
		res.Rearchived += len(missing)
		res.Objects += len(objs.Keys())
	}
	if len(tail.records) > 0 {
		resp, err := f.handle(ctx, tail, time.Now())
		if err != nil {
			return res, err
		}
		if len(resp.BatchItemFailures) > 0 {
			return res, fmt.Errorf("archiving the records of %s after its committed position failed at %s (see the log); run the replay again", key, resp.BatchItemFailures[0].ItemIdentifier)
		}
		res.Rearchived += res.Records - len(old)
	}
	log.Info("replayed a discarded batch", "records", res.Records, "already_archived", res.Archived, "rearchived", res.Rearchived, "objects", res.Objects)
	return res, nil
}

// discardedRecords returns the batch's Kinesis records: from its payload, or read again
// from the stream.
func (f *Function) discardedRecords(ctx context.Context, d Discarded, kin ReplayKinesisAPI) (*batch, error) {
	startCp, endCp := checkpoint.Checkpoint{Sequence: d.Start}, checkpoint.Checkpoint{Sequence: d.End}
	if startCp.Validate() != nil || endCp.Validate() != nil || startCp.Compare(endCp) > 0 {
		return nil, fmt.Errorf("replay: %q..%q is not a range of sequence numbers", d.Start, d.End)
	}
	if len(d.Payload) > 0 {
		b, err := decodeEvent(d.Payload)
		if err != nil {
			return nil, err
		}
		if len(b.records) > 0 && (b.shard != d.Shard || (d.Stream != "" && b.stream != d.Stream)) {
			return nil, fmt.Errorf("replay: the payload holds records of %s %s, not of %s %s", b.stream, b.shard, d.Stream, d.Shard)
		}
		return b, nil
	}
	b := &batch{stream: d.Stream, shard: d.Shard}
	it, err := kin.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: &d.Stream, ShardId: &d.Shard,
		ShardIteratorType: ktypes.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: &d.Start})
	if err != nil {
		return nil, fmt.Errorf("replay: reading %s %s at %s: %w", d.Stream, d.Shard, d.Start, err)
	}
	for iter := it.ShardIterator; iter != nil; {
		out, err := kin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			return nil, fmt.Errorf("replay: reading %s %s: %w", d.Stream, d.Shard, err)
		}
		for _, r := range out.Records {
			seq := aws.ToString(r.SequenceNumber)
			if (checkpoint.Checkpoint{Sequence: seq}).Compare(endCp) > 0 {
				return b, nil
			}
			if len(b.records) == 0 && seq != d.Start {
				return nil, fmt.Errorf("%w: %s %s starts at %s, after %s: replay from the S3 on-failure record, which holds the payload", ErrNotInStream, d.Stream, d.Shard, seq, d.Start)
			}
			b.records = append(b.records, kinesisRecord{seq: seq, partitionKey: aws.ToString(r.PartitionKey),
				arrival: aws.ToTime(r.ApproximateArrivalTimestamp).UTC(), data: r.Data})
		}
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			break
		}
		iter = out.NextShardIterator
	}
	if len(b.records) == 0 {
		return nil, fmt.Errorf("%w: nothing at %s in %s %s", ErrNotInStream, d.Start, d.Stream, d.Shard)
	}
	return b, nil
}

// listed is one archive object of a shard under a prefix.
type listed struct {
	key   string
	first checkpoint.Checkpoint
	last  *checkpoint.Checkpoint // read from its metadata on demand
}

// archiveIndex answers whether the archive holds a record, listing each prefix once.
type archiveIndex struct {
	s3      ReplayS3API
	bucket  string
	pending []string
	lists   map[string][]listed // by list prefix, sorted by first
}

// holds reports whether an object of the record's prefix (archive or error output) holds it.
func (x *archiveIndex) holds(ctx context.Context, sink *s3sink.Sink, shard string, r consumer.Record) (bool, error) {
	objs, err := sink.Build(shard, []consumer.Record{r}, nil)
	if err != nil {
		return false, err
	}
	var obj *s3sink.Object
	for _, o := range objs.List() {
		if o.Kind != s3sink.KindAnalytics {
			obj = &o
			break
		}
	}
	if obj == nil {
		return false, fmt.Errorf("replay: record %s makes no archive or error object", r.Position())
	}
	marker := sink.Stream() + "-" + shard + "-"
	i := strings.LastIndex(obj.Key, marker)
	if i < 0 {
		return false, fmt.Errorf("replay: object key %s does not name %s", obj.Key, marker)
	}
	listPrefix := obj.Key[:i+len(marker)]
	ext := obj.Key[len(s3sink.ObjectName(sink.Stream(), shard, r.Position(), ""))+i:]
	objsListed, err := x.list(ctx, listPrefix, ext)
	if err != nil {
		return false, err
	}
	pos := r.Position()
	// The object with the greatest first position at or before the record.
	j, _ := slices.BinarySearchFunc(objsListed, pos, func(l listed, p checkpoint.Checkpoint) int {
		if l.first.Compare(p) <= 0 {
			return -1
		}
		return 1
	})
	if j == 0 {
		return false, nil
	}
	cand := &objsListed[j-1]
	if cand.last == nil {
		head, err := x.s3.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &x.bucket, Key: &cand.key})
		if err != nil {
			return false, fmt.Errorf("replay: reading %s: %w", cand.key, err)
		}
		last, err := checkpoint.Parse(head.Metadata[s3sink.MetaLast])
		if err != nil {
			return false, fmt.Errorf("replay: object %s has no readable %s metadata: %w", cand.key, s3sink.MetaLast, err)
		}
		cand.last = &last
	}
	return pos.Compare(*cand.last) <= 0, nil
}

// list returns the objects under prefix with extension ext, sorted by first position,
// without the pending ones.
func (x *archiveIndex) list(ctx context.Context, prefix, ext string) ([]listed, error) {
	if l, ok := x.lists[prefix+"\x00"+ext]; ok {
		return l, nil
	}
	var out []listed
	p := awss3.NewListObjectsV2Paginator(x.s3, &awss3.ListObjectsV2Input{Bucket: &x.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("replay: listing %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			rest, ok := strings.CutSuffix(k[len(prefix):], ext)
			if !ok || slices.Contains(x.pending, k) {
				continue
			}
			seq, sub, ok := strings.Cut(rest, "-")
			if !ok {
				continue
			}
			first, err := checkpoint.Parse(seq + "/" + sub)
			if err != nil {
				continue // another stream whose name extends this one's
			}
			out = append(out, listed{key: k, first: first})
		}
	}
	slices.SortFunc(out, func(a, b listed) int { return a.first.Compare(b.first) })
	x.lists[prefix+"\x00"+ext] = out
	return out, nil
}

package producer

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/internal/kpl"
)

// fakeClient is a Client made of function fields; it records the calls it gets.
type fakeClient struct {
	putRecords func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error)
	listShards func(ctx context.Context, in *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error)

	mu    sync.Mutex
	puts  []*kinesis.PutRecordsInput // deep copies
	lists []*kinesis.ListShardsInput
}

func (f *fakeClient) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	cp := &kinesis.PutRecordsInput{StreamName: in.StreamName, StreamARN: in.StreamARN}
	for _, e := range in.Records {
		c := types.PutRecordsRequestEntry{Data: append([]byte(nil), e.Data...), PartitionKey: aws.String(aws.ToString(e.PartitionKey))}
		if e.ExplicitHashKey != nil {
			c.ExplicitHashKey = aws.String(*e.ExplicitHashKey)
		}
		cp.Records = append(cp.Records, c)
	}
	f.mu.Lock()
	f.puts = append(f.puts, cp)
	f.mu.Unlock()
	return f.putRecords(ctx, cp)
}

func (f *fakeClient) ListShards(ctx context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	f.mu.Lock()
	cp := *in
	f.lists = append(f.lists, &cp)
	f.mu.Unlock()
	return f.listShards(ctx, in)
}

func (f *fakeClient) putCalls() []*kinesis.PutRecordsInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*kinesis.PutRecordsInput(nil), f.puts...)
}

// fakeShard is one shard of a fakeStream.
type fakeShard struct {
	id     string
	rng    kpl.HashKeyRange
	closed bool
}

// fakeStream routes PutRecords entries the way Kinesis does — by explicit hash key, else the
// MD5 of the partition key — onto its open shards, and keeps what each shard received.
// Tests use it as the behaviour behind a fakeClient; its shard list can be changed to play
// a reshard, and `listed` (what ListShards answers) can lag behind it.
type fakeStream struct {
	mu     sync.Mutex
	shards []fakeShard // routing truth
	listed []fakeShard // what ListShards returns
	stored map[string][]types.PutRecordsRequestEntry
	seq    int
	// entryError, when set, may return an error code for one entry of one call.
	entryError func(call, i int, e types.PutRecordsRequestEntry) string
	calls      int
}

func newFakeStream(n int) *fakeStream {
	s := evenShards(n, 0)
	return &fakeStream{shards: s, listed: s, stored: map[string][]types.PutRecordsRequestEntry{}}
}

// evenShards splits the hash key space into n shards, as CreateStream does.
func evenShards(n, firstID int) []fakeShard {
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	step := new(big.Int).Div(space, big.NewInt(int64(n)))
	var out []fakeShard
	for i := range n {
		start := new(big.Int).Mul(step, big.NewInt(int64(i)))
		end := new(big.Int).Sub(new(big.Int).Add(start, step), big.NewInt(1))
		if i == n-1 {
			end = new(big.Int).Sub(space, big.NewInt(1))
		}
		rng, err := kpl.ParseHashKeyRange(start.String(), end.String())
		if err != nil {
			panic(err)
		}
		out = append(out, fakeShard{id: fmt.Sprintf("shardId-%012d", firstID+i), rng: rng})
	}
	return out
}

func entryHash(e types.PutRecordsRequestEntry) kpl.HashKey {
	if e.ExplicitHashKey != nil {
		h, err := kpl.ParseHashKey(*e.ExplicitHashKey)
		if err != nil {
			panic(err)
		}
		return h
	}
	return kpl.PartitionKeyHash(aws.ToString(e.PartitionKey))
}

func (fs *fakeStream) client() *fakeClient {
	return &fakeClient{putRecords: fs.putRecords, listShards: fs.listShards}
}

func (fs *fakeStream) putRecords(_ context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	call := fs.calls
	fs.calls++
	out := &kinesis.PutRecordsOutput{}
	for i, e := range in.Records {
		if fs.entryError != nil {
			if code := fs.entryError(call, i, e); code != "" {
				out.Records = append(out.Records, types.PutRecordsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("injected")})
				out.FailedRecordCount = aws.Int32(aws.ToInt32(out.FailedRecordCount) + 1)
				continue
			}
		}
		h := entryHash(e)
		var id string
		for _, s := range fs.shards {
			if !s.closed && s.rng.Contains(h) {
				id = s.id
			}
		}
		if id == "" {
			panic("fake stream: no open shard for hash " + h.String())
		}
		fs.seq++
		fs.stored[id] = append(fs.stored[id], e)
		out.Records = append(out.Records, types.PutRecordsResultEntry{ShardId: aws.String(id), SequenceNumber: aws.String(strconv.Itoa(fs.seq))})
	}
	return out, nil
}

func (fs *fakeStream) listShards(_ context.Context, _ *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := &kinesis.ListShardsOutput{}
	for _, s := range fs.listed {
		sh := types.Shard{
			ShardId: aws.String(s.id),
			HashKeyRange: &types.HashKeyRange{
				StartingHashKey: aws.String(s.rng.Start.String()),
				EndingHashKey:   aws.String(s.rng.End.String()),
			},
			SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String("1")},
		}
		if s.closed {
			sh.SequenceNumberRange.EndingSequenceNumber = aws.String("9")
		}
		out.Shards = append(out.Shards, sh)
	}
	return out, nil
}

// consumed returns the user records a KCL consumer reads from the stream: every shard's
// Kinesis records deaggregated, an aggregate dropped whole when any of its records hashes
// outside the shard's range.
func (fs *fakeStream) consumed(t testing.TB) map[string][]kpl.Record {
	t.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := map[string][]kpl.Record{}
	for _, s := range fs.shards {
		for _, e := range fs.stored[s.id] {
			recs, ok := kpl.Decode(e.Data)
			if !ok {
				recs = []kpl.Record{{PartitionKey: aws.ToString(e.PartitionKey), ExplicitHashKey: aws.ToString(e.ExplicitHashKey), Data: e.Data}}
				out[s.id] = append(out[s.id], recs...)
				continue
			}
			if kpl.AllInRange(recs, s.rng) {
				out[s.id] = append(out[s.id], recs...)
			}
		}
	}
	return out
}

// split splits shard i of the routing truth into two children at the middle of its range;
// the parent is closed. The listed map is not changed.
func (fs *fakeStream) split(i int, firstChildID int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	parent := fs.shards[i]
	start, end := parent.rng.Start.BigInt(), parent.rng.End.BigInt()
	mid := new(big.Int).Rsh(new(big.Int).Add(start, end), 1)
	a, _ := kpl.ParseHashKeyRange(start.String(), mid.String())
	b, _ := kpl.ParseHashKeyRange(new(big.Int).Add(mid, big.NewInt(1)).String(), end.String())
	fs.shards[i].closed = true
	fs.shards = append(fs.shards,
		fakeShard{id: fmt.Sprintf("shardId-%012d", firstChildID), rng: a},
		fakeShard{id: fmt.Sprintf("shardId-%012d", firstChildID+1), rng: b})
}

func (fs *fakeStream) publishMap() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.listed = append([]fakeShard(nil), fs.shards...)
}

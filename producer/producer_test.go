package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"go.uber.org/goleak"

	"github.com/kinlog/kinlog/internal/kpl"
)

func TestMain(m *testing.M) {
	// The integration tests' SDK clients keep idle HTTP connections open; those goroutines
	// belong to net/http, not to the producer.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"))
}

// results collects Results from a producer's handler.
type results struct {
	mu   sync.Mutex
	all  []Result
	byPK map[string][]Result
}

func (r *results) handle(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, res)
	if r.byPK == nil {
		r.byPK = map[string][]Result{}
	}
	r.byPK[res.Record.PartitionKey] = append(r.byPK[res.Record.PartitionKey], res)
}

func (r *results) snapshot() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.all...)
}

func newTestProducer(t *testing.T, c Client, opts ...Option) *Producer {
	t.Helper()
	p, err := New(c, "test-stream", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func mustClose(t *testing.T, p *Producer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	fs := newFakeStream(1)
	tests := []struct {
		name string
		opts []Option
	}{
		{"record size above 10 MiB", []Option{WithMaxRecordSize(MaxRecordSizeLimit + 1), WithMaxRequestBytes(MaxRequestBytesLimit)}},
		{"request bytes above 10 MiB", []Option{WithMaxRequestBytes(MaxRequestBytesLimit + 1)}},
		{"record larger than request", []Option{WithMaxRecordSize(8 << 20), WithMaxRequestBytes(5 << 20)}},
		{"entries above 500", []Option{WithMaxRequestEntries(501)}},
		{"zero entries", []Option{WithMaxRequestEntries(0)}},
		{"buffer below record size", []Option{WithMaxBufferedBytes(1000)}},
		{"zero buffered records", []Option{WithMaxBufferedRecords(0)}},
		{"negative linger", []Option{WithLinger(-time.Second)}},
		{"zero in flight", []Option{WithMaxInFlight(0)}},
		{"aggregate too small", []Option{WithMaxAggregateSize(10)}},
		{"aggregate as large as a record", []Option{WithMaxAggregateSize(DefaultMaxRecordSize)}},
		{"negative rate", []Option{WithRateLimit(-1)}},
		{"negative ttl", []Option{WithRecordTTL(-time.Second)}},
		{"backoff inverted", []Option{WithRetryBackoff(time.Second, time.Millisecond)}},
		{"zero request timeout", []Option{WithRequestTimeout(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(fs.client(), "s", tt.opts...)
			if err == nil {
				mustClose(t, p)
				t.Fatal("New accepted invalid options")
			}
		})
	}
	if _, err := New(nil, "s"); err == nil {
		t.Error("New accepted a nil client")
	}
	if _, err := New(fs.client(), ""); err == nil {
		t.Error("New accepted an empty stream")
	}
	p, err := New(fs.client(), "s", WithMaxRecordSize(MaxRecordSizeLimit), WithMaxRequestBytes(MaxRequestBytesLimit), WithMaxBufferedBytes(64<<20))
	if err != nil {
		t.Fatalf("New rejected 10 MiB records with 10 MiB requests: %v", err)
	}
	mustClose(t, p)
	p, err = New(fs.client(), "s", WithMaxRecordSize(8<<20))
	if err != nil {
		t.Fatalf("New rejected 8 MiB records without an explicit request limit: %v", err)
	}
	if p.cfg.maxRequestBytes != 8<<20 {
		t.Fatalf("request limit %d, want it raised to the 8 MiB record size", p.cfg.maxRequestBytes)
	}
	mustClose(t, p)
}

func TestPutValidation(t *testing.T) {
	fs := newFakeStream(2)
	var res results
	p := newTestProducer(t, fs.client(), WithResultHandler(res.handle))
	ctx := context.Background()
	tests := []struct {
		name string
		rec  Record
		want error
	}{
		{"empty partition key", Record{Data: []byte("x")}, ErrInvalidPartitionKey},
		{"257 characters", Record{PartitionKey: strings.Repeat("k", 257), Data: []byte("x")}, ErrInvalidPartitionKey},
		{"257 multibyte characters", Record{PartitionKey: strings.Repeat("é", 257), Data: []byte("x")}, ErrInvalidPartitionKey},
		{"invalid UTF-8", Record{PartitionKey: "user-\xff", Data: []byte("x")}, ErrInvalidPartitionKey},
		{"too large", Record{PartitionKey: "k", Data: make([]byte, DefaultMaxRecordSize)}, ErrRecordTooLarge},
		{"bad explicit hash key", Record{PartitionKey: "k", ExplicitHashKey: "12x", Data: []byte("x")}, ErrInvalidExplicitHashKey},
		{"explicit hash key too big", Record{PartitionKey: "k", ExplicitHashKey: "340282366920938463463374607431768211456", Data: []byte("x")}, ErrInvalidExplicitHashKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Put(ctx, tt.rec); !errors.Is(err, tt.want) {
				t.Fatalf("Put = %v, want %v", err, tt.want)
			}
			if err := p.TryPut(tt.rec); !errors.Is(err, tt.want) {
				t.Fatalf("TryPut = %v, want %v", err, tt.want)
			}
		})
	}
	// Valid edge cases are accepted, and the rejected ones disturbed nothing.
	valid := []Record{
		{PartitionKey: strings.Repeat("é", 256), Data: []byte("256 two-byte characters")},
		{PartitionKey: "k", Data: make([]byte, DefaultMaxRecordSize-1)},
		{PartitionKey: "k", ExplicitHashKey: "340282366920938463463374607431768211455", Data: []byte("max ehk")},
		{PartitionKey: "empty"},
	}
	for _, r := range valid {
		if err := p.Put(ctx, r); err != nil {
			t.Fatalf("Put(%.20q) = %v", r.PartitionKey, err)
		}
	}
	mustClose(t, p)
	if got := res.snapshot(); len(got) != len(valid) {
		t.Fatalf("%d results, want %d", len(got), len(valid))
	}
	for _, r := range res.snapshot() {
		if r.Err != nil {
			t.Errorf("record %.20q failed: %v", r.Record.PartitionKey, r.Err)
		}
	}
	if err := p.Put(ctx, Record{PartitionKey: "late", Data: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close = %v, want ErrClosed", err)
	}
	if err := p.TryPut(Record{PartitionKey: "late"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryPut after Close = %v, want ErrClosed", err)
	}
}

// TestShardAwareAggregation checks that every user record is delivered once and lands,
// inside an aggregate sent with an explicit hash key, on the shard its own key hashes to.
func TestShardAwareAggregation(t *testing.T) {
	fs := newFakeStream(4)
	fc := fs.client()
	var res results
	p := newTestProducer(t, fc, WithResultHandler(res.handle))
	const n = 5000
	want := map[string]string{}
	for i := range n {
		pk := "user-" + strconv.Itoa(i%700)
		data := fmt.Sprintf(`{"i":%d,"pk":%q}`, i, pk)
		want[data] = pk
		if err := p.Put(context.Background(), Record{PartitionKey: pk, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// What a KCL consumer would read, shard by shard.
	seen := map[string]int{}
	for _, s := range fs.shards {
		for _, r := range fs.consumed(t)[s.id] {
			seen[string(r.Data)]++
			if !s.rng.Contains(kpl.PartitionKeyHash(r.PartitionKey)) {
				t.Fatalf("record with key %s on shard %s outside its range", r.PartitionKey, s.id)
			}
			if want[string(r.Data)] != r.PartitionKey {
				t.Fatalf("record %s came back with partition key %q", r.Data, r.PartitionKey)
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("consumer sees %d distinct records, want %d", len(seen), n)
	}
	for d, c := range seen {
		if c != 1 {
			t.Fatalf("record %s seen %d times", d, c)
		}
	}
	// Every request entry is an aggregate routed by the explicit hash key of a shard start.
	aggregates := 0
	for _, call := range fc.putCalls() {
		if len(call.Records) > MaxRequestEntries {
			t.Fatalf("request with %d entries", len(call.Records))
		}
		for _, e := range call.Records {
			if _, ok := kpl.Decode(e.Data); ok {
				aggregates++
				if e.ExplicitHashKey == nil {
					t.Fatal("aggregate sent without an explicit hash key")
				}
				if len(e.Data) > DefaultMaxAggregateSize {
					t.Fatalf("aggregate of %d bytes", len(e.Data))
				}
			}
		}
	}
	if aggregates == 0 {
		t.Fatal("no aggregates sent")
	}
	// Results: one per record, all delivered, with the shard they are on.
	got := res.snapshot()
	if len(got) != n {
		t.Fatalf("%d results, want %d", len(got), n)
	}
	for _, r := range got {
		if r.Err != nil {
			t.Fatalf("record failed: %v", r.Err)
		}
		var sh fakeShard
		for _, s := range fs.shards {
			if s.id == r.ShardID {
				sh = s
			}
		}
		if !sh.rng.Contains(kpl.PartitionKeyHash(r.Record.PartitionKey)) {
			t.Fatalf("result names shard %q for key %s", r.ShardID, r.Record.PartitionKey)
		}
		if r.SequenceNumber == "" || r.Attempts != 1 {
			t.Fatalf("result %+v", r)
		}
	}
	st := p.Stats()
	if st.RecordsDelivered != n || st.RecordsPut != n || st.BufferedRecords != 0 || st.BufferedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.RecordsPerKinesisRecord() < 10 {
		t.Fatalf("aggregation ratio %.1f, want many records per Kinesis record", st.RecordsPerKinesisRecord())
	}
}

func TestAggregationOffAndOversizeRecords(t *testing.T) {
	fs := newFakeStream(2)
	fc := fs.client()
	p := newTestProducer(t, fc, WithAggregation(false))
	for i := range 1200 {
		if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte("line")}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, p)
	entries := 0
	for _, call := range fc.putCalls() {
		if len(call.Records) > MaxRequestEntries {
			t.Fatalf("request with %d entries", len(call.Records))
		}
		for _, e := range call.Records {
			entries++
			if _, ok := kpl.Decode(e.Data); ok || e.ExplicitHashKey != nil {
				t.Fatal("aggregation off, but an aggregate or explicit hash key was sent")
			}
		}
	}
	if entries != 1200 {
		t.Fatalf("%d entries sent, want 1200", entries)
	}

	// With aggregation on, a record above the aggregate limit goes out alone: as an
	// aggregate of one, which carries its identity, or — without identities — as itself,
	// as the KPL sends it.
	for _, identity := range []bool{true, false} {
		fs2 := newFakeStream(1)
		fc2 := fs2.client()
		p2 := newTestProducer(t, fc2, WithIdentity(identity))
		big := make([]byte, DefaultMaxAggregateSize)
		for _, r := range []Record{{PartitionKey: "a", Data: []byte("small")}, {PartitionKey: "b", Data: big}, {PartitionKey: "c", Data: []byte("small")}} {
			if err := p2.Put(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		mustClose(t, p2)
		var sizes []int
		for _, call := range fc2.putCalls() {
			for _, e := range call.Records {
				recs, ok := kpl.Decode(e.Data)
				switch {
				case ok != identity:
					t.Fatalf("identity %v: entry of %d bytes aggregated=%v", identity, len(e.Data), ok)
				case ok && (len(recs) != 1 || recs[0].ID.Origin != p2.ID()):
					t.Fatalf("aggregate of one holds %d records, identity %+v", len(recs), recs[0].ID)
				case ok:
					sizes = append(sizes, len(recs[0].Data))
				default:
					sizes = append(sizes, len(e.Data))
				}
			}
		}
		// "a" is sealed (alone) before "b" to keep order; then "c".
		if fmt.Sprint(sizes) != fmt.Sprint([]int{5, DefaultMaxAggregateSize, 5}) {
			t.Fatalf("identity %v: entry sizes %v", identity, sizes)
		}
	}
}

func TestRequestByteLimit(t *testing.T) {
	fs := newFakeStream(1)
	fc := fs.client()
	const limit = 100 << 10
	p := newTestProducer(t, fc, WithAggregation(false), WithMaxRequestBytes(limit), WithMaxRecordSize(limit), WithMaxAggregateSize(limit-MaxPartitionKeyLength))
	data := make([]byte, 30<<10)
	for i := range 20 {
		if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, p)
	total, full := 0, 0
	for _, call := range fc.putCalls() {
		size := 0
		for _, e := range call.Records {
			size += len(e.Data) + len(*e.PartitionKey)
			total++
		}
		if size > limit {
			t.Fatalf("request of %d bytes, limit %d", size, limit)
		}
		if len(call.Records) == 3 {
			full++
		}
	}
	if total != 20 {
		t.Fatalf("%d records sent", total)
	}
	if full == 0 {
		t.Fatal("no request packed three 30 KiB records under the 100 KiB limit")
	}
}

func TestLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := newFakeStream(1)
		fc := fs.client()
		p, err := New(fc, "s", WithLinger(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := p.Put(context.Background(), Record{PartitionKey: "k", Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if n := len(fc.putCalls()); n != 0 {
			t.Fatalf("%d requests before the linger time", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := len(fc.putCalls()); n != 1 {
			t.Fatalf("%d requests at the linger time, want 1", n)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("sent after %v", d)
		}
		// A full batch does not wait for the linger time.
		for i := range MaxRequestEntries {
			if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
		p2, err := New(fs.client(), "s", WithLinger(time.Hour), WithAggregation(false))
		if err != nil {
			t.Fatal(err)
		}
		fc2 := p2.client.(*fakeClient)
		for i := range MaxRequestEntries {
			if err := p2.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if calls := fc2.putCalls(); len(calls) != 1 || len(calls[0].Records) != MaxRequestEntries {
			t.Fatalf("500 records with a 1 h linger: %d requests, want one full request at once", len(calls))
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := p2.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPartialFailureIsRetried(t *testing.T) {
	fs := newFakeStream(2)
	// Fail every other entry of the first two calls.
	fs.entryError = func(call, i int, _ types.PutRecordsRequestEntry) string {
		if call < 2 && i%2 == 0 {
			if call == 0 {
				return "ProvisionedThroughputExceededException"
			}
			return "InternalFailure"
		}
		return ""
	}
	fc := fs.client()
	var res results
	p := newTestProducer(t, fc, WithResultHandler(res.handle), WithAggregation(false), WithRetryBackoff(time.Millisecond, 2*time.Millisecond))
	const n = 40
	for i := range n {
		if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, p)
	got := res.snapshot()
	if len(got) != n {
		t.Fatalf("%d results", len(got))
	}
	retried := 0
	for _, r := range got {
		if r.Err != nil {
			t.Fatalf("record failed: %v", r.Err)
		}
		if r.Attempts > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Fatal("no record needed a retry")
	}
	st := p.Stats()
	if st.RecordsRetried != uint64(retried) && st.RecordsRetried < uint64(retried) {
		t.Fatalf("stats count %d retries, results show %d retried records", st.RecordsRetried, retried)
	}
	if st.ThrottledRecords == 0 {
		t.Fatal("throttled entries not counted")
	}
	// Each record is stored exactly once.
	count := 0
	for _, recs := range fs.consumed(t) {
		count += len(recs)
	}
	if count != n {
		t.Fatalf("stream holds %d records, want %d", count, n)
	}
}

func TestRecordTTLExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := newFakeStream(1)
		fs.entryError = func(int, int, types.PutRecordsRequestEntry) string { return "ProvisionedThroughputExceededException" }
		var res results
		p, err := New(fs.client(), "s", WithResultHandler(res.handle), WithRecordTTL(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := p.Put(context.Background(), Record{PartitionKey: "k", Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if err := p.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(start)
		got := res.snapshot()
		if len(got) != 1 {
			t.Fatalf("%d results", len(got))
		}
		r := got[0]
		if !errors.Is(r.Err, ErrRecordExpired) {
			t.Fatalf("result error %v, want ErrRecordExpired", r.Err)
		}
		var ee *EntryError
		if !errors.As(r.Err, &ee) || ee.Code != "ProvisionedThroughputExceededException" {
			t.Fatalf("expiry does not carry the last entry error: %v", r.Err)
		}
		if r.Attempts < 3 {
			t.Fatalf("only %d attempts in 2 s of 100 ms-based backoff", r.Attempts)
		}
		if elapsed < 2*time.Second || elapsed > 2*time.Second+DefaultMaxRetryBackoff {
			t.Fatalf("expired after %v, want about the 2 s TTL", elapsed)
		}
		err = p.Close(context.Background())
		var de *DeliveryError
		if !errors.As(err, &de) || de.Failed != 1 || !errors.Is(err, ErrRecordExpired) {
			t.Fatalf("Close = %v, want a DeliveryError for 1 expired record", err)
		}
	})
}

func TestNonRetryableErrors(t *testing.T) {
	t.Run("entry", func(t *testing.T) {
		fs := newFakeStream(1)
		fs.entryError = func(int, int, types.PutRecordsRequestEntry) string { return "KMSAccessDeniedException" }
		fc := fs.client()
		var res results
		p := newTestProducer(t, fc, WithResultHandler(res.handle))
		r, err := p.PutSync(context.Background(), Record{PartitionKey: "k", Data: []byte("x")})
		var ee *EntryError
		if !errors.As(err, &ee) || ee.Code != "KMSAccessDeniedException" || ee.Retryable() {
			t.Fatalf("PutSync error %v, want the KMS entry error", err)
		}
		if r.Attempts != 1 || len(fc.putCalls()) != 1 {
			t.Fatalf("non-retryable error was retried: %d attempts, %d calls", r.Attempts, len(fc.putCalls()))
		}
	})
}

func TestBackpressure(t *testing.T) {
	fs := newFakeStream(1)
	fc := fs.client()
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	fc.putRecords = func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return fs.putRecords(ctx, in)
	}
	p := newTestProducer(t, fc, WithMaxBufferedRecords(3), WithLinger(0))
	ctx := context.Background()
	for i := range 3 {
		if err := p.Put(ctx, Record{PartitionKey: strconv.Itoa(i), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	<-entered // the pipeline is stuck in PutRecords with the records
	if err := p.TryPut(Record{PartitionKey: "full", Data: []byte("x")}); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("TryPut on a full buffer = %v, want ErrBufferFull", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error)
	go func() { errc <- p.Put(cctx, Record{PartitionKey: "cancelled", Data: []byte("x")}) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context = %v", err)
	}
	// A blocked Put proceeds once room appears.
	go func() { errc <- p.Put(ctx, Record{PartitionKey: "waits", Data: []byte("x")}) }()
	select {
	case err := <-errc:
		t.Fatalf("Put returned %v while the buffer was full", err)
	default:
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatalf("blocked Put = %v after room appeared", err)
	}
	if st := p.Stats(); st.RecordsPut != 4 {
		t.Fatalf("RecordsPut = %d, want 4", st.RecordsPut)
	}
	mustClose(t, p)
	if st := p.Stats(); st.RecordsDelivered != 4 {
		t.Fatalf("RecordsDelivered = %d, want 4", st.RecordsDelivered)
	}
}

func TestBufferByteBound(t *testing.T) {
	fs := newFakeStream(1)
	fc := fs.client()
	block := make(chan struct{})
	fc.putRecords = func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return fs.putRecords(ctx, in)
	}
	p := newTestProducer(t, fc, WithMaxBufferedBytes(DefaultMaxRecordSize), WithMaxRecordSize(DefaultMaxRecordSize))
	half := make([]byte, DefaultMaxRecordSize/2)
	if err := p.TryPut(Record{PartitionKey: "a", Data: half}); err != nil {
		t.Fatal(err)
	}
	if err := p.TryPut(Record{PartitionKey: "b", Data: half}); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("second half-size record = %v, want ErrBufferFull (1 MiB bound)", err)
	}
	if st := p.Stats(); st.BufferedBytes != int64(len(half)+1) {
		t.Fatalf("BufferedBytes = %d", st.BufferedBytes)
	}
	close(block)
	mustClose(t, p)
}

func TestCloseDrainsAndIsIdempotent(t *testing.T) {
	fs := newFakeStream(3)
	var res results
	p := newTestProducer(t, fs.client(), WithResultHandler(res.handle), WithLinger(time.Hour))
	for i := range 1000 {
		if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, p) // the 1 h linger must not delay Close
	if n := len(res.snapshot()); n != 1000 {
		t.Fatalf("%d results after Close, want 1000", n)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Close(context.Background()); err != nil {
				t.Errorf("repeated Close = %v", err)
			}
		}()
	}
	wg.Wait()
	if err := p.Flush(context.Background()); err != nil {
		t.Fatalf("Flush after Close = %v", err)
	}
}

func TestCloseGivesUpWhenContextEnds(t *testing.T) {
	fs := newFakeStream(1)
	fc := fs.client()
	entered := make(chan struct{}, 1)
	fc.putRecords = func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // Kinesis never answers
		return nil, ctx.Err()
	}
	var res results
	p := newTestProducer(t, fc, WithResultHandler(res.handle), WithLinger(0))
	for i := range 10 {
		if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Close(ctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrClosed) {
		t.Fatalf("Close = %v, want context.Canceled and ErrClosed", err)
	}
	var de *DeliveryError
	if !errors.As(err, &de) || de.Failed != 10 {
		t.Fatalf("Close = %v, want a DeliveryError for 10 records", err)
	}
	got := res.snapshot()
	if len(got) != 10 {
		t.Fatalf("%d results, want every record reported", len(got))
	}
	for _, r := range got {
		if !errors.Is(r.Err, ErrClosed) {
			t.Fatalf("result %v, want ErrClosed", r.Err)
		}
	}
	if st := p.Stats(); st.BufferedRecords != 0 || st.InFlightRequests != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
}

func TestPutSyncContext(t *testing.T) {
	fs := newFakeStream(1)
	fc := fs.client()
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	fc.putRecords = func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		entered <- struct{}{}
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return fs.putRecords(ctx, in)
	}
	p := newTestProducer(t, fc, WithLinger(0))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered // cancel once the record is in flight
		cancel()
	}()
	if _, err := p.PutSync(ctx, Record{PartitionKey: "k", Data: []byte("x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutSync = %v, want context.Canceled", err)
	}
	close(block)
	mustClose(t, p)
	if st := p.Stats(); st.RecordsDelivered != 1 {
		t.Fatal("the record abandoned by PutSync was not delivered")
	}
}

func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := newFakeStream(1)
		p, err := New(fs.client(), "s", WithAggregation(false), WithRateLimit(100))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// 3000 records on one shard at 1000 records/s: the full bucket sends 1000 at once,
		// the rest take two more seconds.
		for i := range 3000 {
			if err := p.Put(context.Background(), Record{PartitionKey: "same-key", Data: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(start)
		if elapsed < 1900*time.Millisecond || elapsed > 2100*time.Millisecond {
			t.Fatalf("3000 records at 1000/s took %v, want about 2 s", elapsed)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}

		// Bytes: 3 MiB through a 150% (1.5 MiB/s) limit.
		fs2 := newFakeStream(1)
		p2, err := New(fs2.client(), "s", WithAggregation(false))
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		data := make([]byte, 100<<10)
		for range 30 {
			if err := p2.Put(context.Background(), Record{PartitionKey: "k", Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		if err := p2.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		elapsed = time.Since(start)
		if elapsed < 900*time.Millisecond || elapsed > 1100*time.Millisecond {
			t.Fatalf("3 MiB at 1.5 MiB/s (bucket 1.5 MiB) took %v, want about 1 s", elapsed)
		}
		if err := p2.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReshardWhileProducing(t *testing.T) {
	fs := newFakeStream(2)
	fc := fs.client()
	listed := make(chan struct{}, 100)
	fc.listShards = func(ctx context.Context, in *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
		out, err := fs.listShards(ctx, in)
		select {
		case listed <- struct{}{}:
		default:
		}
		return out, err
	}
	var res results
	p := newTestProducer(t, fc, WithResultHandler(res.handle), WithRetryBackoff(time.Millisecond, 5*time.Millisecond))
	put := func(from, to int) {
		for i := from; i < to; i++ {
			if err := p.Put(context.Background(), Record{PartitionKey: "key-" + strconv.Itoa(i), Data: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(0, 2000)
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-listed // the initial map
	// Split shard 0. ListShards keeps answering the old map at first.
	fs.split(0, 2)
	put(2000, 4000)
	flushed := make(chan error)
	go func() { flushed <- p.Flush(context.Background()) }()
	// Aggregates for shard 0 land on a child: the producer refreshes the map, which does
	// not know the children yet, so it must hold those aggregates (Flush cannot finish)
	// until a later refresh learns them.
	<-listed
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) before the producer could know where its records landed", err)
	default:
	}
	fs.publishMap()
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	put(4000, 6000)
	mustClose(t, p)

	seen := map[string]int{}
	for _, recs := range fs.consumed(t) {
		for _, r := range recs {
			seen[string(r.Data)]++
		}
	}
	for i := range 6000 {
		if c := seen[strconv.Itoa(i)]; c != 1 {
			t.Fatalf("record %d read %d times by a KCL consumer, want once", i, c)
		}
	}
	st := p.Stats()
	if st.ShardMismatches == 0 || st.RecordsResent == 0 || st.ShardMapRefreshes < 2 {
		t.Fatalf("reshard not exercised: %+v", st)
	}
	for _, r := range res.snapshot() {
		if r.Err != nil {
			t.Fatalf("record failed: %v", r.Err)
		}
	}
	if len(res.snapshot()) != 6000 {
		t.Fatalf("%d results", len(res.snapshot()))
	}
}

func TestWithoutShardMap(t *testing.T) {
	fs := newFakeStream(2)
	fc := fs.client()
	fc.listShards = func(context.Context, *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
		return nil, &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no ListShards for you"}
	}
	p := newTestProducer(t, fc)
	for i := range 100 {
		if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, p)
	count := 0
	for _, recs := range fs.consumed(t) {
		count += len(recs)
	}
	if count != 100 {
		t.Fatalf("%d records stored, want 100", count)
	}
	for _, call := range fc.putCalls() {
		for _, e := range call.Records {
			// Each record goes alone, routed by its own key: an aggregate of one, for its
			// identity.
			if recs, ok := kpl.Decode(e.Data); !ok || len(recs) != 1 || e.ExplicitHashKey != nil || *e.PartitionKey != recs[0].PartitionKey {
				t.Fatalf("without a shard map, an entry holds %d records (aggregate %v)", len(recs), ok)
			}
		}
	}
	if st := p.Stats(); st.ShardMapErrors == 0 {
		t.Fatal("ListShards failure not counted")
	}
}

func TestListShardsPagination(t *testing.T) {
	fs := newFakeStream(2)
	fc := fs.client()
	fc.listShards = func(ctx context.Context, in *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
		out, _ := fs.listShards(ctx, in)
		if in.NextToken == nil {
			if in.StreamName == nil || *in.StreamName != "test-stream" {
				t.Errorf("first page without the stream name: %+v", in)
			}
			return &kinesis.ListShardsOutput{Shards: out.Shards[:1], NextToken: aws.String("page-2")}, nil
		}
		if *in.NextToken != "page-2" || in.StreamName != nil || in.StreamARN != nil {
			t.Errorf("second page request %+v: want only the NextToken", in)
		}
		return &kinesis.ListShardsOutput{Shards: out.Shards[1:]}, nil
	}
	var res results
	p := newTestProducer(t, fc, WithResultHandler(res.handle))
	for i := range 200 {
		if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, p)
	if st := p.Stats(); st.ShardMismatches != 0 {
		t.Fatalf("%d mismatches: the second page of shards was not used", st.ShardMismatches)
	}
	for _, r := range res.snapshot() {
		if !r.Aggregated {
			t.Fatal("record not aggregated although the map was known")
		}
	}
}

func TestStreamARN(t *testing.T) {
	fs := newFakeStream(1)
	fc := fs.client()
	arn := "arn:aws:kinesis:eu-west-1:123456789012:stream/logs"
	p, err := New(fc, arn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PutSync(context.Background(), Record{PartitionKey: "k", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	mustClose(t, p)
	call := fc.putCalls()[0]
	if aws.ToString(call.StreamARN) != arn || call.StreamName != nil {
		t.Fatalf("PutRecords named the stream %q / ARN %q", aws.ToString(call.StreamName), aws.ToString(call.StreamARN))
	}
}

func TestPutCopiesData(t *testing.T) {
	fs := newFakeStream(1)
	var res results
	p := newTestProducer(t, fs.client(), WithResultHandler(res.handle))
	buf := []byte("original")
	if err := p.Put(context.Background(), Record{PartitionKey: "k", Data: buf}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXXX")
	mustClose(t, p)
	if got := string(res.snapshot()[0].Record.Data); got != "original" {
		t.Fatalf("delivered %q: Put did not copy the data", got)
	}
}

func TestConcurrentPuts(t *testing.T) {
	fs := newFakeStream(4)
	var mu sync.Mutex
	seen := map[string]int{}
	bad := 0
	p := newTestProducer(t, fs.client(), WithResultHandler(func(r Result) {
		// The data is the producer's copy; it must still read as put.
		ok := r.Err == nil && string(r.Record.Data) == "payload of "+r.Record.PartitionKey
		mu.Lock()
		seen[r.Record.PartitionKey]++
		if !ok {
			bad++
		}
		mu.Unlock()
	}), WithLinger(time.Millisecond))
	var wg sync.WaitGroup
	const goroutines, each = 8, 2000
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 64)
			for i := range each {
				pk := fmt.Sprintf("g%d-%d", g, i)
				buf = append(append(buf[:0], "payload of "...), pk...) // reused: Put must copy
				if err := p.Put(context.Background(), Record{PartitionKey: pk, Data: buf}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	mustClose(t, p)
	if bad != 0 {
		t.Fatalf("%d results failed or carried altered data", bad)
	}
	if len(seen) != goroutines*each {
		t.Fatalf("%d distinct records reported, want %d", len(seen), goroutines*each)
	}
	for pk, n := range seen {
		if n != 1 {
			t.Fatalf("record %s reported %d times", pk, n)
		}
	}
	count := 0
	for _, recs := range fs.consumed(t) {
		count += len(recs)
	}
	if count != goroutines*each {
		t.Fatalf("stream holds %d records, want %d", count, goroutines*each)
	}
}

// TestRateLimitedShardSendsChunks checks that a shard held at its rate limit sends its
// records in chunks (a quarter second of budget per request) rather than one request per
// record as tokens trickle in — at the same throughput. (Unaggregated 10 KiB records: the
// path is the same for aggregates, and the test stays clear of md5-simd, whose global pool
// of channels must not be touched inside a synctest bubble.)
func TestRateLimitedShardSendsChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := newFakeStream(1)
		delivered := 0
		p, err := New(fs.client(), "s", WithRateLimit(100), WithAggregation(false), WithResultHandler(func(r Result) {
			if r.Err == nil {
				delivered++
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		// 4 MiB on one shard at 1 MiB/s: 1 MiB goes at once, the rest takes 3 s.
		data := make([]byte, 10<<10)
		n := 400
		for i := range n {
			if err := p.Put(context.Background(), Record{PartitionKey: strconv.Itoa(i), Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(3100 * time.Millisecond) // virtual time for the limit to let it all through
		synctest.Wait()
		fs.mu.Lock()
		calls := fs.calls
		fs.mu.Unlock()
		got := delivered
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Fatalf("after 3.1 s at 1 MiB/s, %d of %d records delivered", got, n)
		}
		// One request per record would be ~300 after the first burst; chunks of 256 KiB
		// (25 records) need about 12.
		if calls > 20 {
			t.Fatalf("%d PutRecords calls for %d records on a rate-limited shard, want chunks (≤ 20)", calls, n)
		}
	})
}

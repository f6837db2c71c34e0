package s3

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/internal/testlogs"
	"github.com/kinlog/kinlog/sinks/rollup"
)

func TestMain(m *testing.M) {
	// The SDK's HTTP client keeps idle connections to the local stack open.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

const shard = "shardId-000000000007"

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTestSink(t testing.TB, api API, clk Clock, opts ...Option) *Sink {
	t.Helper()
	base := []Option{WithClock(clk), WithLogger(discard), WithRetryBackoff(time.Second, 4*time.Second)}
	s, err := New(api, "bucket", "logs-stream", append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func gen(seed uint64, n int) []consumer.Record {
	return testlogs.New(seed).Records(shard, 1, n)
}

func shutdown(t testing.TB, p consumer.Processor) {
	t.Helper()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// expectedCuts computes where size-triggered flushes end: at the first record whose
// cumulative size reaches size, then again from the next record.
func expectedCuts(recs []consumer.Record, size int) []checkpoint.Checkpoint {
	var cuts []checkpoint.Checkpoint
	acc := 0
	for i := range recs {
		acc += recordSize(&recs[i])
		if acc >= size {
			cuts = append(cuts, recs[i].Position())
			acc = 0
		}
	}
	return cuts
}

func TestSizeTriggerIsAFunctionOfTheRecords(t *testing.T) {
	recs := gen(1, 120)
	const size = 10 * 240
	run := func(splits []int) (map[string][]byte, []checkpoint.Checkpoint, int) {
		var objs map[string][]byte
		var bounds []checkpoint.Checkpoint
		var ackedBeforeShutdown int
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			s := newTestSink(t, fake, newFakeClock(), WithBufferSize(size), WithBufferInterval(time.Hour))
			h := newHarness(t, s, shard, checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}, nil)
			i := 0
			for _, n := range splits {
				h.mustDeliver(recs[i : i+n])
				i += n
			}
			synctest.Wait()
			ackedBeforeShutdown = h.ackedCount()
			shutdown(t, h.proc)
			if got := h.ackedCount(); got != len(recs) {
				t.Errorf("after Shutdown %d records acknowledged, want %d", got, len(recs))
			}
			objs, bounds = fake.snapshot(), h.prep.got()
		})
		return objs, bounds, ackedBeforeShutdown
	}
	objsA, boundsA, ackedA := run([]int{120})
	objsB, boundsB, ackedB := run([]int{7, 13, 1, 50, 29, 20})

	want := expectedCuts(recs, size)
	if len(want) < 5 {
		t.Fatalf("test records give only %d size cuts", len(want))
	}
	if !slices.Equal(boundsA[:len(want)], want) {
		t.Errorf("size cuts at %v, want %v", boundsA, want)
	}
	if last := boundsA[len(boundsA)-1]; last != recs[len(recs)-1].Position() {
		t.Errorf("Shutdown flushed through %v, want the last record %v", last, recs[len(recs)-1].Position())
	}
	if !slices.Equal(boundsA, boundsB) {
		t.Errorf("batch splits changed the cuts:\n%v\n%v", boundsA, boundsB)
	}
	if !maps.EqualFunc(objsA, objsB, bytes.Equal) {
		t.Errorf("batch splits changed the objects: %d vs %d objects", len(objsA), len(objsB))
	}
	// Before Shutdown exactly the size-cut flushes were acknowledged, not the tail.
	wantAcked := slices.IndexFunc(recs, func(r consumer.Record) bool { return r.Position() == want[len(want)-1] }) + 1
	if ackedA != wantAcked || ackedB != wantAcked {
		t.Errorf("acknowledged before Shutdown: %d and %d records, want %d", ackedA, ackedB, wantAcked)
	}
}

func TestIntervalTrigger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		clk := newFakeClock()
		s := newTestSink(t, fake, clk)
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		recs := gen(2, 30)
		h.mustDeliver(recs[:10])
		synctest.Wait()
		clk.Advance(30 * time.Second)
		h.mustDeliver(recs[10:20])
		synctest.Wait()
		clk.Advance(29 * time.Second)
		synctest.Wait()
		if n := len(fake.putKeys()); n != 0 || h.ackedCount() != 0 {
			t.Fatalf("59 s after the first record: %d objects written, %d acknowledged; want none", n, h.ackedCount())
		}
		clk.Advance(time.Second)
		synctest.Wait()
		if got := h.ackedCount(); got != 20 {
			t.Fatalf("60 s after the first record %d records acknowledged, want 20", got)
		}
		if b := h.prep.got(); len(b) != 1 || b[0] != recs[19].Position() {
			t.Fatalf("boundaries %v, want [%v]", b, recs[19].Position())
		}
		// The next interval counts from the next buffer's first record.
		h.mustDeliver(recs[20:])
		synctest.Wait()
		clk.Advance(59 * time.Second)
		synctest.Wait()
		if h.ackedCount() != 20 {
			t.Fatal("second buffer flushed before its interval")
		}
		clk.Advance(time.Second)
		synctest.Wait()
		if h.ackedCount() != 30 {
			t.Fatalf("%d acknowledged, want 30", h.ackedCount())
		}
		shutdown(t, h.proc)
	})
}

func TestIntervalZeroFlushesEveryBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithBufferInterval(0))
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		recs := gen(3, 12)
		h.mustDeliver(recs[:5])
		h.mustDeliver(recs[5:])
		synctest.Wait()
		if got := h.prep.got(); !slices.Equal(got, []checkpoint.Checkpoint{recs[4].Position(), recs[11].Position()}) {
			t.Fatalf("boundaries %v", got)
		}
		if h.ackedCount() != 12 {
			t.Fatalf("%d acknowledged, want 12", h.ackedCount())
		}
		shutdown(t, h.proc)
	})
}

// TestPendingRecut is invariant 2: a worker that takes over a shard with a pending boundary
// re-cuts exactly that batch, whatever its own triggers say, and writes the same keys with
// the same bytes.
func TestPendingRecut(t *testing.T) {
	recs := gen(4, 80)
	start := checkpoint.Checkpoint{Sequence: checkpoint.TrimHorizon}
	var crashed map[string][]byte
	var pending checkpoint.Checkpoint
	// The first holder cuts by interval after 37 records, prepares, writes, and dies before
	// acknowledging (the checkpoint stays at start, the boundary stays pending).
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		clk := newFakeClock()
		s := newTestSink(t, fake, clk, WithPrefix("svc=!{partitionKeyFromQuery:service}/!{timestamp:HH}/"))
		h := newHarness(t, s, shard, start, nil)
		h.mustDeliver(recs[:20])
		h.mustDeliver(recs[20:37])
		synctest.Wait()
		clk.Advance(time.Minute)
		synctest.Wait()
		pending = h.prep.got()[0]
		crashed = fake.snapshot()
		h.proc.LeaseLost(context.Background())
	})
	if pending != recs[36].Position() || len(crashed) < 5 {
		t.Fatalf("first holder prepared %v and wrote %d objects", pending, len(crashed))
	}
	// The next holder has a tiny size trigger, no interval and a partition limit of 2: none
	// of them may cut the pending batch.
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithPrefix("svc=!{partitionKeyFromQuery:service}/!{timestamp:HH}/"),
			WithBufferSize(1), WithBufferInterval(0), WithMaxOpenPartitions(2))
		h := newHarness(t, s, shard, start, &pending)
		for i := 0; i < len(recs); i += 6 {
			h.mustDeliver(recs[i:min(i+6, len(recs))])
		}
		synctest.Wait()
		shutdown(t, h.proc)
		b := h.prep.got()
		if b[0] != pending {
			t.Fatalf("first boundary %v, want the pending %v", b[0], pending)
		}
		if b[1] != recs[37].Position() {
			t.Errorf("after the re-cut the size trigger should cut after every record; second boundary %v", b[1])
		}
		got := fake.snapshot()
		for k, v := range crashed {
			if !bytes.Equal(got[k], v) {
				t.Errorf("object %s of the crashed run was not overwritten with identical bytes", k)
			}
		}
		// Objects of the first flush are exactly the crashed run's objects.
		first := map[string][]byte{}
		for _, k := range fake.putKeys()[:len(crashed)] {
			first[k] = got[k]
		}
		if !maps.EqualFunc(first, crashed, bytes.Equal) {
			t.Errorf("the re-cut flush wrote %d objects, the crashed run %d", len(first), len(crashed))
		}
		if h.ackedCount() != len(recs) {
			t.Errorf("%d acknowledged, want %d", h.ackedCount(), len(recs))
		}
	})
}

func TestPendingEdgeCases(t *testing.T) {
	recs := gen(5, 20)
	t.Run("shutdown before the boundary drops the buffer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			s := newTestSink(t, fake, newFakeClock())
			pending := recs[15].Position()
			h := newHarness(t, s, shard, checkpoint.Checkpoint{}, &pending)
			h.mustDeliver(recs[:10])
			shutdown(t, h.proc)
			if n := len(fake.putKeys()); n != 0 || h.ackedCount() != 0 || len(h.prep.got()) != 0 {
				t.Fatalf("wrote %d objects, acknowledged %d, prepared %v; want nothing", n, h.ackedCount(), h.prep.got())
			}
		})
	})
	t.Run("boundary record missing cuts before the next", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			s := newTestSink(t, fake, newFakeClock())
			pending := checkpoint.Checkpoint{Sequence: recs[9].SequenceNumber, SubSequence: 3} // never delivered
			h := newHarness(t, s, shard, checkpoint.Checkpoint{}, &pending)
			h.mustDeliver(recs)
			synctest.Wait()
			if b := h.prep.got(); len(b) != 1 || b[0] != recs[9].Position() {
				t.Fatalf("boundaries %v, want [%v]", b, recs[9].Position())
			}
			shutdown(t, h.proc)
		})
	})
	t.Run("pending at or before start is ignored", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			s := newTestSink(t, fake, newFakeClock(), WithBufferInterval(0))
			pending := recs[0].Position()
			h := newHarness(t, s, shard, recs[0].Position(), &pending)
			h.mustDeliver(recs[1:5])
			synctest.Wait()
			if b := h.prep.got(); len(b) != 1 || b[0] != recs[4].Position() {
				t.Fatalf("boundaries %v", b)
			}
			shutdown(t, h.proc)
		})
	})
}

func TestLeaseLost(t *testing.T) {
	recs := gen(6, 30)
	t.Run("drops the buffer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			s := newTestSink(t, fake, newFakeClock())
			h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
			h.mustDeliver(recs)
			h.proc.LeaseLost(context.Background())
			if n := len(fake.putKeys()); n != 0 || h.ackedCount() != 0 || len(h.prep.got()) != 0 {
				t.Fatalf("after LeaseLost: %d objects, %d acknowledged, %d prepared", n, h.ackedCount(), len(h.prep.got()))
			}
			if err := h.deliver(context.Background(), recs); !errors.Is(err, checkpoint.ErrLeaseLost) {
				t.Fatalf("ProcessRecords after LeaseLost = %v, want ErrLeaseLost", err)
			}
		})
	})
	t.Run("refused prepare writes nothing", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			s := newTestSink(t, fake, newFakeClock(), WithBufferInterval(0))
			h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
			h.prep.prepare = func(context.Context, checkpoint.Checkpoint) error {
				return fmt.Errorf("preparing: %w", checkpoint.ErrLeaseLost)
			}
			h.mustDeliver(recs[:10])
			synctest.Wait()
			if n := len(fake.putKeys()); n != 0 || h.ackedCount() != 0 {
				t.Fatalf("%d objects written, %d acknowledged after a refused prepare", n, h.ackedCount())
			}
			if err := h.deliver(context.Background(), recs[10:]); !errors.Is(err, checkpoint.ErrLeaseLost) {
				t.Fatalf("ProcessRecords = %v, want ErrLeaseLost", err)
			}
			if err := h.proc.Shutdown(context.Background()); !errors.Is(err, checkpoint.ErrLeaseLost) {
				t.Fatalf("Shutdown = %v, want ErrLeaseLost", err)
			}
		})
	})
	t.Run("stops retrying a failing bucket", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			fake.putObject = func(context.Context, *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
				return nil, &smithy.GenericAPIError{Code: "InternalError", Message: "down"}
			}
			s := newTestSink(t, fake, newFakeClock(), WithBufferInterval(0))
			h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
			h.mustDeliver(recs)
			synctest.Wait()
			h.proc.LeaseLost(context.Background()) // returns: the retry loop honours the lifecycle
			if h.ackedCount() != 0 {
				t.Fatal("records acknowledged although no write succeeded")
			}
		})
	})
}

func TestS3FailureHoldsAcksUntilRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		store := fake.putObject
		broken := true
		fake.putObject = func(ctx context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
			if broken {
				return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "bucket policy"}
			}
			return store(ctx, in)
		}
		clk := newFakeClock()
		reg := prometheus.NewRegistry()
		s := newTestSink(t, fake, clk, WithBufferInterval(0), WithoutRollups(), WithRegisterer(reg))
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		recs := gen(7, 40)
		h.mustDeliver(recs[:10]) // flush 1: being retried
		h.mustDeliver(recs[10:20])
		synctest.Wait()
		for range 5 {
			clk.Advance(4 * time.Second)
			synctest.Wait()
		}
		if h.ackedCount() != 0 {
			t.Fatal("records acknowledged while every write failed")
		}
		if n := testutil.ToFloat64(s.met.errors.WithLabelValues(errTypePut)); n < 5 {
			t.Errorf("s3_put errors = %v, want at least 5", n)
		}
		if age := testutil.ToFloat64(s.met.oldest); age < 20 {
			t.Errorf("oldest unflushed age = %v s, want at least 20", age)
		}
		// Two flushes wait: the next batch blocks (backpressure) until its ctx ends.
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- h.deliver(ctx, recs[20:30]) }()
		synctest.Wait()
		select {
		case err := <-errc:
			t.Fatalf("ProcessRecords returned %v while two flushes wait", err)
		default:
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("blocked ProcessRecords returned %v, want context.Canceled", err)
		}
		// The bucket recovers: everything is written and acknowledged, in order.
		broken = false
		clk.Advance(4 * time.Second)
		synctest.Wait()
		if got := h.ackedCount(); got != 30 {
			t.Fatalf("after recovery %d acknowledged, want 30", got)
		}
		if got := h.prep.got(); len(got) != 3 {
			t.Fatalf("boundaries %v, want 3", got)
		}
		if n := testutil.ToFloat64(s.met.records); n != 30 {
			t.Errorf("records archived metric = %v, want 30", n)
		}
		shutdown(t, h.proc)
	})
}

func TestShutdownTimesOutOnBrokenBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		fake.putObject = func(context.Context, *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
			return nil, errors.New("connection refused")
		}
		s := newTestSink(t, fake, newFakeClock())
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		h.mustDeliver(gen(8, 5))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // synctest time
		defer cancel()
		if err := h.proc.Shutdown(ctx); err == nil {
			t.Fatal("Shutdown succeeded although nothing could be written")
		}
		if h.ackedCount() != 0 {
			t.Fatal("records acknowledged")
		}
	})
}

func TestShardEndedFlushesAndAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock())
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		recs := gen(9, 25)
		h.mustDeliver(recs[:12])
		h.mustDeliver(recs[12:])
		if err := h.proc.ShardEnded(context.Background()); err != nil {
			t.Fatal(err)
		}
		if h.ackedCount() != 25 || len(fake.putKeys()) == 0 {
			t.Fatalf("%d acknowledged, %d objects", h.ackedCount(), len(fake.putKeys()))
		}
		if err := h.deliver(context.Background(), recs); !errors.Is(err, ErrClosed) {
			t.Fatalf("ProcessRecords after ShardEnded = %v, want ErrClosed", err)
		}
	})
}

func readNDJSON(t testing.TB, body []byte, c encode.Compression) [][]byte {
	t.Helper()
	raw, err := encode.Decompress(body, c)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	return lines
}

func TestErrorOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		reg := prometheus.NewRegistry()
		s := newTestSink(t, fake, newFakeClock(), WithBufferInterval(0), WithRegisterer(reg),
			WithPrefix("logs/service=!{partitionKeyFromQuery:service}/"),
			WithEncoding(encode.Config{Format: encode.Parquet}))
		arrival := time.Date(2026, 3, 14, 11, 30, 0, 0, time.UTC)
		mk := func(i int, data string) consumer.Record {
			return consumer.Record{ShardID: shard, SequenceNumber: testlogs.Seq(uint64(i)), PartitionKey: "pk", ArrivalTime: arrival, Data: []byte(data)}
		}
		recs := []consumer.Record{
			mk(1, `{"service":"api","msg":"ok"}`),
			mk(2, `{"msg":"no service"}`),
			mk(3, `{"service":{"name":"api"}}`),
			mk(4, "plain text"),
			mk(5, "{\"service\":\"api\",\"msg\":\"\xff\"}"),
			mk(6, `{"service":""}`),
			mk(7, `{"service":"db","msg":"ok"}`),
		}
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		h.mustDeliver(recs)
		synctest.Wait()
		if h.ackedCount() != len(recs) {
			t.Fatalf("%d acknowledged, want %d: error records are acknowledged once written", h.ackedCount(), len(recs))
		}
		objs := fake.snapshot()
		partKey := "errors/partitioning-failed/dt=2026-03-14/hour=11/logs-stream-" + shard + "-" + testlogs.Seq(2) + "-0.json.gz"
		wantReasons := map[string][]string{
			partKey: {`partition member "service" is missing`, `partition member "service" is not a string, number or boolean but object`, "record is not a JSON object", `partition member "service" is empty`},
		}
		wantRaw := map[string][]string{partKey: {string(recs[1].Data), string(recs[2].Data), string(recs[3].Data), string(recs[5].Data)}}
		for key, reasons := range wantReasons {
			body, ok := objs[key]
			if !ok {
				t.Fatalf("no error object %s; have %v", key, slices.Sorted(maps.Keys(objs)))
			}
			lines := readNDJSON(t, body, encode.CompressionGzip)
			if len(lines) != len(reasons) {
				t.Fatalf("%s has %d lines, want %d", key, len(lines), len(reasons))
			}
			for i, l := range lines {
				var er ErrorRecord
				if err := json.Unmarshal(l, &er); err != nil {
					t.Fatal(err)
				}
				if er.ErrorMessage != reasons[i] || string(er.RawData) != wantRaw[key][i] || er.ShardID != shard || er.ArrivalTimestamp != arrival.UnixMilli() {
					t.Errorf("%s line %d = %+v", key, i, er)
				}
			}
		}
		// The good records are archived; record 5, not valid UTF-8, too, with U+FFFD in
		// place of the bad byte (as NDJSON archives it): no format conversion fails.
		apiKey := "logs/service=api/logs-stream-" + shard + "-" + testlogs.Seq(1) + "-0.parquet"
		rows, err := encode.ReadParquet(objs[apiKey])
		if err != nil || len(rows) != 2 || rows[0].Message != "ok" || rows[1].Message != "\uFFFD" {
			t.Fatalf("api object rows %+v, %v", rows, err)
		}
		if n := testutil.ToFloat64(s.met.errored.WithLabelValues(ErrorPartitioning)); n != 4 {
			t.Errorf("partitioning-failed records = %v, want 4", n)
		}
		if n := testutil.ToFloat64(s.met.errored.WithLabelValues(ErrorFormat)); n != 0 {
			t.Errorf("format-conversion-failed records = %v, want 0", n)
		}
		if n := testutil.ToFloat64(s.met.records); n != 3 {
			t.Errorf("archived records = %v, want 3", n)
		}
		shutdown(t, h.proc)
	})
}

func TestOpenPartitionLimitCutsEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithMaxOpenPartitions(3), WithPrefix("!{partitionKeyFromQuery:service}/"))
		var recs []consumer.Record
		for i, svc := range []string{"a", "b", "a", "c", "b", "d", "a", "e", "f"} {
			recs = append(recs, consumer.Record{ShardID: shard, SequenceNumber: testlogs.Seq(uint64(i + 1)), Data: []byte(`{"service":"` + svc + `"}`)})
		}
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		h.mustDeliver(recs)
		synctest.Wait()
		// a,b,a,c,b | d,a,e | f (on Shutdown)
		want := []checkpoint.Checkpoint{recs[5-1].Position(), recs[8-1].Position()}
		if got := h.prep.got(); !slices.Equal(got, want) {
			t.Fatalf("boundaries %v, want %v", got, want)
		}
		shutdown(t, h.proc)
		if h.ackedCount() != len(recs) {
			t.Fatalf("%d acknowledged", h.ackedCount())
		}
		var archive []string
		for k := range fake.snapshot() {
			if !strings.HasPrefix(k, "analytics/") {
				archive = append(archive, k)
			}
		}
		if len(archive) != 3+3+1 {
			t.Errorf("archive objects %v, want 7 (3 + 3 + 1 partitions)", archive)
		}
	})
}

func TestTimeFieldPartitionsAndRollups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithBufferInterval(0), WithTimeField("ts", "rfc3339"),
			WithRollups(rollup.Config{Numeric: []string{"latency_ms"}}))
		var recs []consumer.Record
		times := []string{"2026-03-14T09:59:58Z", "2026-03-14T10:00:01Z", "2026-03-14T09:59:59Z", "2026-03-14T10:01:30Z", "bad"}
		for i, ts := range times {
			recs = append(recs, consumer.Record{ShardID: shard, SequenceNumber: testlogs.Seq(uint64(i + 1)),
				ArrivalTime: time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC),
				Data:        []byte(fmt.Sprintf(`{"ts":%q,"service":"api","level":"INFO","latency_ms":%d}`, ts, 10*(i+1)))})
		}
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		h.mustDeliver(recs)
		synctest.Wait()
		objs := fake.snapshot()
		name := func(i int, ext string) string {
			return "logs-stream-" + shard + "-" + testlogs.Seq(uint64(i)) + "-0" + ext
		}
		want := map[string]int{ // key -> lines or rows
			"logs/dt=2026-03-14/hour=09/" + name(1, ".json.gz"):                       2,
			"logs/dt=2026-03-14/hour=10/" + name(2, ".json.gz"):                       2,
			"analytics/dt=2026-03-14/hour=09/" + name(1, rollup.Extension):            1,
			"analytics/dt=2026-03-14/hour=10/" + name(2, rollup.Extension):            2,
			"errors/partitioning-failed/dt=2026-03-14/hour=12/" + name(5, ".json.gz"): 1,
		}
		if len(objs) != len(want) {
			t.Fatalf("objects %v", slices.Sorted(maps.Keys(objs)))
		}
		for k, n := range want {
			body, ok := objs[k]
			if !ok {
				t.Fatalf("missing %s; have %v", k, slices.Sorted(maps.Keys(objs)))
			}
			if got := len(readNDJSON(t, body, encode.CompressionGzip)); got != n {
				t.Errorf("%s: %d lines, want %d", k, got, n)
			}
		}
		rows, err := rollup.DecodeObject(objs["analytics/dt=2026-03-14/hour=10/"+name(2, rollup.Extension)])
		if err != nil {
			t.Fatal(err)
		}
		if rows[0].Count != 1 || !rows[0].Start.Equal(time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)) || rows[0].Field("latency_ms").Sum != 20 {
			t.Errorf("rollup rows %+v", rows)
		}
		shutdown(t, h.proc)
	})
}

func TestObjectOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithBufferInterval(0), WithSSEKMS("alias/logs"),
			WithStorageClass(types.StorageClassStandardIa), WithoutRollups())
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		recs := gen(10, 5)
		h.mustDeliver(recs)
		synctest.Wait()
		keys := fake.putKeys()
		if len(keys) != 1 {
			t.Fatalf("objects %v", keys)
		}
		in := fake.inputs[keys[0]]
		if in.ServerSideEncryption != types.ServerSideEncryptionAwsKms || aws.ToString(in.SSEKMSKeyId) != "alias/logs" ||
			in.StorageClass != types.StorageClassStandardIa || aws.ToString(in.ContentType) != "application/x-ndjson" ||
			in.ChecksumCRC32C == nil || in.Metadata[MetaRecords] != "5" || in.Metadata[MetaFirst] != recs[0].SequenceNumber ||
			in.Metadata[MetaLast] != recs[4].SequenceNumber {
			t.Errorf("PutObject input %+v", in)
		}
		shutdown(t, h.proc)
	})
	t.Run("corrupted body is refused and retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			fake := newFakeS3(t)
			store := fake.putObject
			corrupt := 2
			fake.putObject = func(ctx context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
				if corrupt > 0 {
					corrupt--
					body, _ := io.ReadAll(in.Body)
					body[len(body)/2] ^= 0xff // bit flip in transit
					in.Body = bytes.NewReader(body)
				}
				return store(ctx, in)
			}
			clk := newFakeClock()
			s := newTestSink(t, fake, clk, WithBufferInterval(0), WithoutRollups())
			h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
			h.mustDeliver(gen(11, 5))
			for range 3 {
				synctest.Wait()
				clk.Advance(4 * time.Second)
			}
			synctest.Wait()
			if h.ackedCount() != 5 || fake.calledTimes("PutObject") != 3 {
				t.Fatalf("acknowledged %d after %d PutObject calls; want 5 after 3", h.ackedCount(), fake.calledTimes("PutObject"))
			}
			shutdown(t, h.proc)
		})
	})
}

func TestMultipartAboveThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithBufferInterval(0), WithoutRollups(),
			WithEncoding(encode.Config{Compression: encode.CompressionNone}), WithMultipart(5<<20, 5<<20), WithSSES3(),
			WithBufferSize(64<<20))
		big := bytes.Repeat([]byte("x"), 1<<20)
		var recs []consumer.Record
		for i := range 6 {
			recs = append(recs, consumer.Record{ShardID: shard, SequenceNumber: testlogs.Seq(uint64(i + 1)), Data: append(append([]byte(`{"pad":"`), big...), `"}`...)})
		}
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		h.mustDeliver(recs)
		synctest.Wait()
		if fake.calledTimes("CreateMultipartUpload") != 1 || fake.calledTimes("UploadPart") != 2 || fake.calledTimes("CompleteMultipartUpload") != 1 || fake.calledTimes("PutObject") != 0 {
			t.Fatalf("calls %v", fake.calls)
		}
		key := fake.putKeys()[0]
		lines := readNDJSON(t, fake.snapshot()[key], encode.CompressionNone)
		if len(lines) != 6 || h.ackedCount() != 6 {
			t.Fatalf("%d lines, %d acknowledged", len(lines), h.ackedCount())
		}
		in := fake.inputs[key]
		if in.ServerSideEncryption != types.ServerSideEncryptionAes256 || in.ChecksumAlgorithm != types.ChecksumAlgorithmCrc32c || in.Metadata[MetaRecords] != "6" {
			t.Errorf("CreateMultipartUpload input %+v", in)
		}
		shutdown(t, h.proc)
	})
}

func TestRollupsMatchArchive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeS3(t)
		s := newTestSink(t, fake, newFakeClock(), WithBufferSize(50*240))
		h := newHarness(t, s, shard, checkpoint.Checkpoint{}, nil)
		recs := gen(12, 600)
		for i := 0; i < len(recs); i += 100 {
			h.mustDeliver(recs[i : i+100])
		}
		shutdown(t, h.proc)
		archived := map[time.Time]int64{}
		for _, r := range recs {
			archived[r.ArrivalTime.Truncate(time.Minute)]++
		}
		var rows []rollup.Row
		lines := 0
		for k, body := range fake.snapshot() {
			switch {
			case strings.HasPrefix(k, "analytics/"):
				r, err := rollup.DecodeObject(body)
				if err != nil {
					t.Fatal(err)
				}
				rows = append(rows, r...)
			case strings.HasPrefix(k, "logs/"):
				lines += len(readNDJSON(t, body, encode.CompressionGzip))
			default:
				t.Errorf("unexpected object %s", k)
			}
		}
		if lines != len(recs) {
			t.Fatalf("archive holds %d lines, want %d", lines, len(recs))
		}
		merged, err := rollup.Merge(rows, rollup.MergeOptions{By: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		got := map[time.Time]int64{}
		for _, r := range merged {
			got[r.Start] = r.Count
		}
		if !maps.Equal(got, archived) {
			t.Fatalf("rollup counts per minute %v, archived %v", got, archived)
		}
	})
}

func TestNewValidates(t *testing.T) {
	fake := newFakeS3(t)
	for name, opts := range map[string][]Option{
		"random string":        {WithPrefix("!{firehose:random-string}/")},
		"error type in prefix": {WithPrefix("!{firehose:error-output-type}/")},
		"query in error":       {WithErrorPrefix("e/!{partitionKeyFromQuery:a}/")},
		"bad time format":      {WithTimeField("ts", "no layout")},
		"bad window":           {WithRollups(rollup.Config{Window: 7 * time.Minute})},
		"zero buffer":          {WithBufferSize(0)},
		"small part":           {WithMultipart(1<<20, 1<<20)},
		"bad checksum":         {WithChecksum("MD5")},
		"bad encoding":         {WithEncoding(encode.Config{Framing: 9})},
		"negative timeout":     {WithRequestTimeout(-time.Second)},
	} {
		if _, err := New(fake, "b", "s", opts...); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := New(nil, "b", "s"); err == nil {
		t.Error("New accepted a nil client")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(fake, "b", "s", WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(fake, "b", "s", WithRegisterer(reg)); err == nil {
		t.Error("registering the same stream's metrics twice succeeded")
	}
}

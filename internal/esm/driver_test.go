package esm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/internal/testenv"
)

// docsEvent is the example event of https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html
// (its first record).
const docsEvent = `{
    "Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "1",
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                "approximateArrivalTimestamp": 1545084650.987
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
            "awsRegion": "us-east-2",
            "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
        }
    ]
}`

// keyOrder lists the keys of every JSON object in raw, depth first, in document order.
func keyOrder(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	var keys []string
	var stack []bool // true for an object
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, true)
				expectKey = true
				continue
			case '[':
				stack = append(stack, false)
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if expectKey {
				keys = append(keys, v)
				expectKey = false
				continue
			}
		}
		expectKey = len(stack) > 0 && stack[len(stack)-1]
	}
	return keys
}

func TestEventShapeIsTheDocumentedOne(t *testing.T) {
	f := newFixture(t, 1)
	data := []string{"Hello, this is a test.", "<b>&</b> \x00\xff"}
	seqs := f.putKey("1", data...)
	d := f.driver(Config{Region: "us-east-2", Account: "123456789012", ReportBatchItemFailures: true})
	run(t, d)

	raws := f.rawEvents(shard0)
	if len(raws) != 1 {
		t.Fatalf("function received %d events, want 1: %s", len(raws), describe(d.Invocations()))
	}
	wantKeys := keyOrder(t, []byte(docsEvent))
	gotKeys := keyOrder(t, raws[0])
	// Two records: the documented record's keys twice, after "Records".
	want := append(slices.Clone(wantKeys), wantKeys[1:]...)
	if !slices.Equal(gotKeys, want) {
		t.Fatalf("keys in order:\n got %v\nwant %v", gotKeys, want)
	}

	var got, doc struct {
		Records []map[string]any `json:"Records"`
	}
	if err := json.Unmarshal(raws[0], &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(docsEvent), &doc); err != nil {
		t.Fatal(err)
	}
	arrivals := f.readArrivals(shard0)
	for i, r := range got.Records {
		want := map[string]any{
			"eventSource":       "aws:kinesis",
			"eventVersion":      "1.0",
			"eventID":           shard0 + ":" + seqs[i],
			"eventName":         "aws:kinesis:record",
			"invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
			"awsRegion":         "us-east-2",
			"eventSourceARN":    "arn:aws:kinesis:us-east-2:123456789012:stream/" + f.stream,
		}
		for k, v := range want {
			if r[k] != v {
				t.Errorf("record %d: %s = %v, want %v", i, k, r[k], v)
			}
			if _, ok := doc.Records[0][k]; !ok {
				t.Errorf("%s is not in the documented example", k)
			}
		}
		k := r["kinesis"].(map[string]any)
		if k["kinesisSchemaVersion"] != "1.0" || k["partitionKey"] != "1" || k["sequenceNumber"] != seqs[i] {
			t.Errorf("record %d: kinesis = %v", i, k)
		}
		if k["data"] != base64.StdEncoding.EncodeToString([]byte(data[i])) {
			t.Errorf("record %d: data %v, want base64 of %q", i, k["data"], data[i])
		}
		ts, ok := k["approximateArrivalTimestamp"].(float64)
		if !ok {
			t.Fatalf("record %d: approximateArrivalTimestamp %T, want a number", i, k["approximateArrivalTimestamp"])
		}
		if wantTS := float64(arrivals[seqs[i]].UnixMilli()) / 1000; ts != wantTS {
			t.Errorf("record %d: approximateArrivalTimestamp %v, want %v", i, ts, wantTS)
		}
	}
	// The raw number has at most three decimals, as 1545084650.987.
	if m := regexp.MustCompile(`"approximateArrivalTimestamp":([0-9.]+)`).FindSubmatch(raws[0]); m == nil ||
		!regexp.MustCompile(`^[0-9]+(\.[0-9]{1,3})?$`).Match(m[1]) {
		t.Errorf("approximateArrivalTimestamp written as %q", m)
	}
	// And aws-lambda-go, the function's library, reads it.
	evs := f.events(shard0)
	if got := string(evs[0].Records[1].Kinesis.Data); got != data[1] {
		t.Errorf("aws-lambda-go decoded data %q, want %q", got, data[1])
	}
}

func TestBatchSizeAndPayloadLimit(t *testing.T) {
	t.Run("batch size", func(t *testing.T) {
		f := newFixture(t, 1)
		var data []string
		for i := range 25 {
			data = append(data, fmt.Sprintf("record %d", i))
		}
		seqs := f.put(data...)
		d := f.driver(Config{BatchSize: 10, ReportBatchItemFailures: true})
		st := run(t, d)
		var sizes []int
		var all []string
		for _, ev := range f.events(shard0) {
			sizes = append(sizes, len(ev.Records))
			all = append(all, seqsOf(ev)...)
		}
		if !slices.Equal(sizes, []int{10, 10, 5}) || !slices.Equal(all, seqs) {
			t.Fatalf("batches of %v records (%d in all), want 10, 10, 5 in order: %s", sizes, len(all), describe(d.Invocations()))
		}
		if st.RecordsDelivered != 25 || st.Invocations != 3 || st.Retries != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("6 MB payload", func(t *testing.T) {
		f := newFixture(t, 1)
		// 900 KiB records: 1.2 MB each in base64, so five fit in 6 MiB and a sixth does not.
		big := strings.Repeat("x", 900*1024)
		var data []string
		for i := range 12 {
			data = append(data, fmt.Sprintf("%02d", i)+big)
		}
		f.put(data...)
		d := f.driver(Config{ReportBatchItemFailures: true})
		run(t, d)
		var sizes []int
		for _, inv := range d.Invocations() {
			sizes = append(sizes, inv.Records)
			if inv.Bytes > DefaultPayloadLimit {
				t.Errorf("payload of %d bytes, over %d", inv.Bytes, DefaultPayloadLimit)
			}
			if inv.Outcome != OutcomeSuccess {
				t.Errorf("invocation %s: %s %s", inv.FirstSequence, inv.Outcome, inv.Result.Body)
			}
		}
		if !slices.Equal(sizes, []int{5, 5, 2}) {
			t.Fatalf("batches of %v records, want 5, 5, 2", sizes)
		}
		for i, ev := range f.events(shard0) {
			if n := len(ev.Records[0].Kinesis.Data); n != len(data[0]) {
				t.Fatalf("event %d: the function received %d bytes of data, want %d (truncated?)", i, n, len(data[0]))
			}
		}
	})
	t.Run("small limit", func(t *testing.T) {
		f := newFixture(t, 1)
		f.put("a", "b", "c", "d", "e")
		d := f.driver(Config{PayloadLimit: 900})
		run(t, d)
		invs := d.Invocations()
		for _, inv := range invs {
			if inv.Bytes > 900 {
				t.Fatalf("payload %d > 900", inv.Bytes)
			}
		}
		if len(invs) < 2 || invs[0].Records < 1 {
			t.Fatalf("want several small batches: %s", describe(invs))
		}
	})
}

func TestPartialFailureResumesAtLowestItem(t *testing.T) {
	f := newFixture(t, 1)
	seqs := f.put("r0", "r1", "r2", "r3 fail-item=1", "r4", "r5", "r6 fail-item=1", "r7")
	d := f.driver(Config{ReportBatchItemFailures: true, RetryShapes: []Shape{ShapeSame}})
	st := run(t, d)
	evs := f.events(shard0)
	if len(evs) != 2 || !slices.Equal(seqsOf(evs[0]), seqs) || !slices.Equal(seqsOf(evs[1]), seqs[3:]) {
		t.Fatalf("want all 8 records, then 3..7 again: %s", describe(d.Invocations()))
	}
	invs := d.Invocations()
	if invs[0].Outcome != OutcomePartialFailure || invs[0].FailedItem != seqs[3] || invs[1].Attempt != 2 || invs[1].Outcome != OutcomeSuccess {
		t.Fatalf("outcomes: %s", describe(invs))
	}
	if st.RecordsDelivered != 8 || st.Retries != 1 || len(st.Discarded) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWholeBatchFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		marker  string
		outcome Outcome
		fails   int
	}{
		{"function error", "error=2", OutcomeFunctionError, 2},
		{"empty itemIdentifier", "bad-id=1", OutcomeBatchFailure, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1)
			seqs := f.put("r0", "r1 "+tc.marker, "r2")
			d := f.driver(Config{ReportBatchItemFailures: true, RetryShapes: []Shape{ShapeSame}})
			st := run(t, d)
			invs := d.Invocations()
			if len(invs) != tc.fails+1 {
				t.Fatalf("%d invocations, want %d: %s", len(invs), tc.fails+1, describe(invs))
			}
			for i, inv := range invs {
				want := tc.outcome
				if i == tc.fails {
					want = OutcomeSuccess
				}
				if inv.Outcome != want || inv.Attempt != i+1 || inv.FirstSequence != seqs[0] || inv.Records != 3 {
					t.Fatalf("invocation %d: %s", i, describe(invs))
				}
			}
			if tc.outcome == OutcomeFunctionError && invs[0].Result.ErrorType == "" {
				t.Errorf("function error without an errorType: %q", invs[0].Result.Body)
			}
			if st.Retries != tc.fails || st.RecordsDelivered != 3 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestBisectionIsolatesTheBadRecord(t *testing.T) {
	f := newFixture(t, 1)
	seqs := f.put("r0", "r1", "r2", "r3", "r4", "r5 error=always", "r6", "r7")
	d := f.driver(Config{ReportBatchItemFailures: true, BisectBatchOnFunctionError: true, MaximumRetryAttempts: aws.Int(0)})
	st := run(t, d)
	type batch struct {
		first, last string
		outcome     Outcome
	}
	var got []batch
	for _, inv := range d.Invocations() {
		got = append(got, batch{inv.FirstSequence, inv.LastSequence, inv.Outcome})
	}
	fe, ok := OutcomeFunctionError, OutcomeSuccess
	want := []batch{
		{seqs[0], seqs[7], fe}, // bisected: 0..3 and 4..7
		{seqs[0], seqs[3], ok},
		{seqs[4], seqs[7], fe}, // 4..5 and 6..7
		{seqs[4], seqs[5], fe}, // 4 and 5
		{seqs[4], seqs[4], ok},
		{seqs[5], seqs[5], fe}, // alone, no retries left: discarded
		{seqs[6], seqs[7], ok},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("invocations: %s", describe(d.Invocations()))
	}
	if st.Bisections != 3 || st.Retries != 0 || st.RecordsDelivered != 7 ||
		len(st.Discarded) != 1 || st.Discarded[0].FirstSequence != seqs[5] || st.Discarded[0].Records != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRetryLimitDiscardsToS3(t *testing.T) {
	f := newFixture(t, 1)
	sc, bucket := createBucket(t)
	seqs := f.put("r0", "r1 error=always", "r2")
	d := f.driver(Config{
		Region: "us-east-2", Account: "123456789012", FunctionName: "archiver", UUID: "f89f8514-cdd9-4602-9e1f-01a5b77d449b",
		ReportBatchItemFailures: true, MaximumRetryAttempts: aws.Int(2),
		OnFailure: &S3Destination{Client: sc, Bucket: bucket},
	})
	st := run(t, d)
	if st.Invocations != 3 || st.Retries != 2 || len(st.Discarded) != 1 {
		t.Fatalf("stats %+v: %s", st, describe(d.Invocations()))
	}
	dis := st.Discarded[0]
	if dis.FirstSequence != seqs[0] || dis.LastSequence != seqs[2] || dis.Records != 3 || dis.Condition != ConditionRetriesExhausted {
		t.Fatalf("discarded %+v", dis)
	}
	keys := listKeys(t, sc, bucket)
	keyRE := regexp.MustCompile(`^aws/lambda/` + "f89f8514-cdd9-4602-9e1f-01a5b77d449b" + `/` + shard0 +
		`/(\d{4})/(\d{2})/(\d{2})/(\d{4})-(\d{2})-(\d{2})T\d{2}\.\d{2}\.\d{2}-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if len(keys) != 1 || keys[0] != dis.Key {
		t.Fatalf("objects %v, want one, %s", keys, dis.Key)
	}
	if m := keyRE.FindStringSubmatch(keys[0]); m == nil || m[1] != m[4] || m[2] != m[5] || m[3] != m[6] {
		t.Fatalf("key %s does not follow aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>", keys[0])
	}
	raw := getObject(t, sc, bucket, keys[0])
	// The documented S3 record's keys, in its order.
	wantKeys := []string{"requestContext", "requestId", "functionArn", "condition", "approximateInvokeCount",
		"responseContext", "statusCode", "executedVersion", "functionError", "version", "timestamp",
		"KinesisBatchInfo", "shardId", "startSequenceNumber", "endSequenceNumber",
		"approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord", "batchSize", "streamArn", "payload"}
	if got := keyOrder(t, raw); !slices.Equal(got, wantKeys) {
		t.Fatalf("record keys\n got %v\nwant %v", got, wantKeys)
	}
	var rec FailureRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	arrivals := f.readArrivals(shard0)
	iso := func(seq string) string { return arrivals[seq].UTC().Format("2006-01-02T15:04:05.000Z") }
	want := FailureRecord{
		RequestContext: FailureRequestContext{RequestID: rec.RequestContext.RequestID,
			FunctionArn: "arn:aws:lambda:us-east-2:123456789012:function:archiver", Condition: "RetryAttemptsExhausted", ApproximateInvokeCount: 3},
		ResponseContext: &FailureResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"},
		Version:         "1.0", Timestamp: rec.Timestamp,
		KinesisBatchInfo: KinesisBatchInfo{ShardID: shard0, StartSequenceNumber: seqs[0], EndSequenceNumber: seqs[2],
			ApproximateArrivalOfFirstRecord: iso(seqs[0]), ApproximateArrivalOfLastRecord: iso(seqs[2]), BatchSize: 3,
			StreamArn: "arn:aws:kinesis:us-east-2:123456789012:stream/" + f.stream},
		Payload: rec.Payload,
	}
	if !reflect.DeepEqual(rec, want) {
		t.Fatalf("record\n got %+v %+v\nwant %+v %+v", rec, rec.ResponseContext, want, want.ResponseContext)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", rec.Timestamp); err != nil || rec.RequestContext.RequestID == "" {
		t.Fatalf("timestamp %q, requestId %q", rec.Timestamp, rec.RequestContext.RequestID)
	}
	// The payload is the event of the discarded records, the one the function received.
	last := f.rawEvents(shard0)[2]
	if rec.Payload != string(last) {
		t.Fatalf("payload\n%s\nwant the last event\n%s", rec.Payload, last)
	}

	// Processing goes on after the discarded batch.
	more := f.put("r3")
	st = run(t, d)
	evs := f.events(shard0)
	if st.RecordsDelivered != 1 || !slices.Equal(seqsOf(evs[len(evs)-1]), more) {
		t.Fatalf("after the discard: stats %+v: %s", st, describe(d.Invocations()))
	}
}

func TestRecordAge(t *testing.T) {
	t.Run("discarded before invocation", func(t *testing.T) {
		f := newFixture(t, 1)
		sc, bucket := createBucket(t)
		seqs := f.put("r0", "r1")
		d := f.driver(Config{
			MaximumRecordAge: time.Minute, ReportBatchItemFailures: true,
			Now:       func() time.Time { return time.Now().Add(2 * time.Minute) },
			OnFailure: &S3Destination{Client: sc, Bucket: bucket, Prefix: "failed/"},
		})
		st := run(t, d)
		if st.Invocations != 0 || len(st.Discarded) != 1 || st.Discarded[0].Condition != ConditionRecordAge ||
			st.Discarded[0].FirstSequence != seqs[0] || st.Discarded[0].LastSequence != seqs[1] {
			t.Fatalf("stats %+v", st)
		}
		if !strings.HasPrefix(st.Discarded[0].Key, "failed/aws/lambda/") {
			t.Fatalf("key %s", st.Discarded[0].Key)
		}
		var rec FailureRecord
		if err := json.Unmarshal(getObject(t, sc, bucket, st.Discarded[0].Key), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.RequestContext.Condition != ConditionRecordAge || rec.ResponseContext != nil ||
			rec.RequestContext.ApproximateInvokeCount != 0 || rec.KinesisBatchInfo.BatchSize != 2 {
			t.Fatalf("record %+v", rec)
		}
	})
	t.Run("retried until too old", func(t *testing.T) {
		f := newFixture(t, 1)
		var skew atomic.Int64
		seqs := f.put("r0 error=always", "r1")
		// After the first failed invocation the records are two minutes old.
		f.before = func(string, []byte) error { skew.Store(int64(2 * time.Minute)); return nil }
		d := f.driver(Config{
			MaximumRecordAge: time.Minute, ReportBatchItemFailures: true,
			Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
		})
		st := run(t, d)
		if st.Invocations != 1 || len(st.Discarded) != 1 || st.Discarded[0].Condition != ConditionRecordAge ||
			st.Discarded[0].Records != 2 || st.Discarded[0].FirstSequence != seqs[0] {
			t.Fatalf("stats %+v: %s", st, describe(d.Invocations()))
		}
	})
}

func TestTimeoutKillsTheRuntimeAndTheRetryReinitialises(t *testing.T) {
	f := newFixture(t, 1, "AWS_LAMBDA_FUNCTION_TIMEOUT=1")
	seqs := f.put("r0 sleep=1", "r1")
	d := f.driver(Config{ReportBatchItemFailures: true})
	st := run(t, d)
	invs := d.Invocations()
	if len(invs) != 2 {
		t.Fatalf("%d invocations: %s", len(invs), describe(invs))
	}
	to := invs[0].Result
	if invs[0].Outcome != OutcomeFunctionError || !to.FunctionError || !to.Timeout || to.ErrorType != TimeoutErrorType ||
		!strings.HasPrefix(to.ErrorMessage, "Task timed out after 1.00 seconds") {
		t.Fatalf("timed-out invocation: %+v (body %q)", to, to.Body)
	}
	if invs[1].Outcome != OutcomeSuccess || invs[1].Attempt != 2 || invs[1].FirstSequence != seqs[0] {
		t.Fatalf("retry: %s", describe(invs))
	}
	for _, inv := range invs {
		r := inv.Result
		t.Logf("attempt %d: status %d, %q, function %v, init %v, peak RSS %d KiB, round trip %v",
			inv.Attempt, r.StatusCode, r.Body, r.FunctionDuration, r.InitDuration, r.PeakRSS>>10, r.Duration)
	}
	// The RIE killed the runtime: the retry initialised a new one.
	if r := invs[1].Result; invs[0].Result.InitDuration <= 0 || r.InitDuration <= 0 || r.FunctionDuration <= 0 || r.PeakRSS <= 0 {
		t.Fatalf("want an init for each invocation: %+v, then %+v", invs[0].Result, r)
	}
	if st.RecordsDelivered != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRuntimeExitAndInvokeErrors(t *testing.T) {
	f := newFixture(t, 1)
	seqs := f.put("r0 exit=1", "r1")
	var calls atomic.Int32
	f.before = func(string, []byte) error {
		if calls.Add(1) == 2 {
			return errors.New("connection refused") // no invocation: resent, no attempt counted
		}
		return nil
	}
	d := f.driver(Config{ReportBatchItemFailures: true})
	st := run(t, d)
	invs := d.Invocations()
	if len(invs) != 3 || invs[0].Outcome != OutcomeFunctionError || invs[0].Result.ErrorType != ExitErrorType ||
		invs[1].Outcome != OutcomeInvokeError || invs[1].Attempt != 2 ||
		invs[2].Outcome != OutcomeSuccess || invs[2].Attempt != 2 || invs[2].Shape != ShapeResend || invs[2].FirstSequence != seqs[0] {
		t.Fatalf("invocations: %s", describe(invs))
	}
	if st.InvokeErrors != 1 || st.Retries != 2 || st.RecordsDelivered != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestParentShardsBeforeChildren(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	d := f.driver(Config{BatchSize: 5, ReportBatchItemFailures: true})
	keys := func(prefix string, n int) []string {
		var ks []string
		for i := range n {
			ks = append(ks, prefix+strconv.Itoa(i))
		}
		return ks
	}
	putAll := func(ks []string) {
		for _, k := range ks {
			f.putKey(k, k)
		}
	}
	before := keys("parent-", 7)
	putAll(before[:3])
	run(t, d) // the parent is open, read to its current end
	putAll(before[3:])
	if _, err := f.kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: &f.stream, ShardToSplit: aws.String(shard0),
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728")}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	if err := testenv.WaitStreamActive(ctx, f.kc, f.stream); err != nil {
		t.Fatal(err)
	}
	after := keys("child-", 12)
	putAll(after)
	st := run(t, d)

	shards, err := testenv.ListAllShards(ctx, f.kc, f.stream)
	if err != nil {
		t.Fatal(err)
	}
	children := map[string]bool{}
	for _, s := range shards {
		if aws.ToString(s.ParentShardId) == shard0 {
			children[*s.ShardId] = true
		}
	}
	if len(children) != 2 {
		t.Fatalf("shards after the split: %v", shards)
	}
	received := map[string]string{} // data -> shard
	lastParent, firstChild := -1, -1
	for i, inv := range d.Invocations() {
		if inv.Shard == shard0 {
			lastParent = i
		} else if firstChild < 0 {
			firstChild = i
		}
	}
	for s := range children {
		for _, ev := range f.events(s) {
			for _, r := range ev.Records {
				received[string(r.Kinesis.Data)] = s
			}
		}
	}
	for _, ev := range f.events(shard0) {
		for _, r := range ev.Records {
			received[string(r.Kinesis.Data)] = shard0
		}
	}
	for _, k := range before {
		if received[k] != shard0 {
			t.Errorf("%s received on %q, want the parent", k, received[k])
		}
	}
	for _, k := range after {
		if !children[received[k]] {
			t.Errorf("%s received on %q, want a child", k, received[k])
		}
	}
	if firstChild < 0 || lastParent > firstChild {
		t.Fatalf("a child was invoked before the parent's last batch: %s", describe(d.Invocations()))
	}
	if st.RecordsDelivered != len(before)+len(after) {
		t.Fatalf("stats %+v", st)
	}

	// Merging the children back: the merged shard has both as parents and comes after both.
	var kids []ktypes.Shard
	for _, s := range shards {
		if children[*s.ShardId] {
			kids = append(kids, s)
		}
	}
	if _, err := f.kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: &f.stream,
		ShardToMerge: kids[0].ShardId, AdjacentShardToMerge: kids[1].ShardId}); err != nil {
		t.Fatalf("MergeShards: %v", err)
	}
	if err := testenv.WaitStreamActive(ctx, f.kc, f.stream); err != nil {
		t.Fatal(err)
	}
	merged := keys("merged-", 6)
	putAll(merged)
	n := len(d.Invocations())
	if st = run(t, d); st.RecordsDelivered != len(before)+len(after)+len(merged) {
		t.Fatalf("after the merge: stats %+v: %s", st, describe(d.Invocations()))
	}
	for _, inv := range d.Invocations()[n:] {
		if children[inv.Shard] || inv.Shard == shard0 {
			t.Fatalf("after the merge, an invocation on %s: %s", inv.Shard, describe(d.Invocations()[n:]))
		}
	}
}

func TestRetriesVaryWithTheSeed(t *testing.T) {
	// The first batch holds one record; while it fails, four more arrive. A "same" retry
	// resends the one, a "grown" retry adds the four.
	shapes := map[Shape]int{}
	var mu sync.Mutex
	chosen := func(seed uint64) (Shape, int) {
		f := newFixture(t, 1)
		f.put("r0 error=1")
		var once sync.Once
		f.before = func(string, []byte) error { once.Do(func() { f.put("r1", "r2", "r3", "r4") }); return nil }
		d := f.driver(Config{Seed: seed, ReportBatchItemFailures: true})
		run(t, d)
		invs := d.Invocations()
		if len(invs) < 2 || invs[0].Records != 1 || invs[1].Attempt != 2 {
			t.Fatalf("seed %d: %s", seed, describe(invs))
		}
		want := map[Shape]int{ShapeSame: 1, ShapeGrown: 5}[invs[1].Shape]
		if invs[1].Records != want {
			t.Fatalf("seed %d: a %s retry of %d records: %s", seed, invs[1].Shape, invs[1].Records, describe(invs))
		}
		mu.Lock()
		shapes[invs[1].Shape]++
		mu.Unlock()
		return invs[1].Shape, invs[1].Records
	}
	first := map[uint64]Shape{}
	for seed := range uint64(4) {
		first[seed], _ = chosen(seed)
	}
	if shapes[ShapeSame] == 0 || shapes[ShapeGrown] == 0 {
		t.Fatalf("seeds 0..3 chose %v; want both shapes", shapes)
	}
	if again, _ := chosen(1); again != first[1] {
		t.Fatalf("seed 1 chose %s, then %s", first[1], again)
	}
}

func TestShardsRunConcurrently(t *testing.T) {
	f := newFixture(t, 2)
	for i := range 20 {
		f.putKey(fmt.Sprintf("k%d", i), fmt.Sprintf("d%d", i))
	}
	// The first shard's invocation waits until the second shard's has started: a driver that
	// processed shards one after the other would never get there.
	other := make(chan struct{})
	var once sync.Once
	var waited atomic.Bool
	f.before = func(shard string, _ []byte) error {
		if shard != shard0 {
			once.Do(func() { close(other) })
			return nil
		}
		select {
		case <-other:
		case <-time.After(15 * time.Second):
			waited.Store(true)
		}
		return nil
	}
	d := f.driver(Config{ReportBatchItemFailures: true})
	st := run(t, d)
	if waited.Load() {
		t.Fatalf("the second shard was not invoked while the first one's invocation was in flight: %s", describe(d.Invocations()))
	}
	perShard := map[string]int{}
	for _, inv := range d.Invocations() {
		perShard[inv.Shard] += inv.Records
	}
	if len(perShard) != 2 || st.RecordsDelivered != 20 || len(f.ries) != 2 {
		t.Fatalf("records per shard %v, %d RIEs, stats %+v", perShard, len(f.ries), st)
	}
}

// putOnRead puts more records once, right after the first GetRecords that returned some.
type putOnRead struct {
	KinesisAPI
	once sync.Once
	put  func()
}

func (p *putOnRead) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	out, err := p.KinesisAPI.GetRecords(ctx, in, opts...)
	if err == nil && len(out.Records) > 0 {
		p.once.Do(p.put)
	}
	return out, err
}

func TestBatchingWindow(t *testing.T) {
	for _, tc := range []struct {
		window  time.Duration
		batches []int
	}{
		{0, []int{1, 2}},        // invoke as soon as records are read
		{time.Second, []int{3}}, // gather for a second
	} {
		t.Run(tc.window.String(), func(t *testing.T) {
			f := newFixture(t, 1)
			f.put("r0")
			k := &putOnRead{KinesisAPI: f.kc, put: func() { f.put("r1", "r2") }}
			d := f.driver(Config{Kinesis: k, MaximumBatchingWindow: tc.window, ReportBatchItemFailures: true})
			start := time.Now()
			run(t, d)
			var got []int
			for _, inv := range d.Invocations() {
				got = append(got, inv.Records)
			}
			if !slices.Equal(got, tc.batches) {
				t.Fatalf("batches of %v records, want %v", got, tc.batches)
			}
			if elapsed := time.Since(start); elapsed < tc.window {
				t.Fatalf("done after %v, before the window of %v ended", elapsed, tc.window)
			}
		})
	}
}

func TestRunUntilCanceled(t *testing.T) {
	f := newFixture(t, 1)
	d := f.driver(Config{ReportBatchItemFailures: true, PollInterval: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	type ran struct {
		st  Stats
		err error
	}
	done := make(chan ran, 1)
	go func() {
		st, err := d.Run(ctx)
		done <- ran{st, err}
	}()
	f.put("r0", "r1")
	f.put("r2")
	for deadline := time.Now().Add(20 * time.Second); d.Stats().RecordsDelivered < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("Run delivered %d records of 3: %s", d.Stats().RecordsDelivered, describe(d.Invocations()))
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, with a deadline
	}
	cancel()
	select {
	case r := <-done:
		if r.err != nil || r.st.RecordsDelivered != 3 {
			t.Fatalf("Run returned %+v, %v", r.st, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

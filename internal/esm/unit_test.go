package esm

import (
	"regexp"
	"testing"
	"time"
)

func TestResponseFailure(t *testing.T) {
	batch := []record{{seq: "100"}, {seq: "200"}, {seq: "300"}}
	for _, tc := range []struct {
		body  string
		at    int
		whole bool
	}{
		{"", -1, false},
		{"null", -1, false},
		{"{}", -1, false},
		{`{"batchItemFailures":null}`, -1, false},
		{`{"batchItemFailures":[]}`, -1, false},
		{`"ok"`, -1, false},
		{`{"batchItemFailures":[{"itemIdentifier":"300"},{"itemIdentifier":"200"}]}`, 1, false},
		{`{"batchItemFailures":[{"itemIdentifier":"100"}]}`, 0, false},
		{`{"batchItemFailures":[{"itemIdentifier":""}]}`, 0, true},
		{`{"batchItemFailures":[{"itemIdentifier":null}]}`, 0, true},
		{`{"batchItemFailures":[{"itemIdentifer":"200"}]}`, 0, true},  // a bad key name
		{`{"batchItemFailures":[{"itemIdentifier":"999"}]}`, 0, true}, // not in the batch
		{`{"batchItemFailures":[{"itemIdentifier":200}]}`, 0, true},
	} {
		at, whole := responseFailure([]byte(tc.body), batch)
		if at != tc.at || whole != tc.whole {
			t.Errorf("%s: at %d whole %v, want %d %v", tc.body, at, whole, tc.at, tc.whole)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		status    int
		body      string
		fnErr     bool
		timeout   bool
		errType   string
		invokeErr bool
	}{
		{200, `{"batchItemFailures":[]}`, false, false, "", false},
		{200, `null`, false, false, "", false},
		{200, `{"errorMessage":"boom","errorType":"joinError"}`, true, false, "joinError", false},
		{200, `{"errorMessage":"boom"}`, true, false, "", false},
		{200, `{"errorType":"x","batchItemFailures":[]}`, false, false, "", false},
		{200, `Task timed out after 3.00 seconds`, true, true, TimeoutErrorType, false},
		{502, ``, true, false, ExitErrorType, false},
		{500, ``, false, false, "", true},
	} {
		res := Result{StatusCode: tc.status, Body: []byte(tc.body)}
		err := classify(&res)
		if (err != nil) != tc.invokeErr || res.FunctionError != tc.fnErr || res.Timeout != tc.timeout || res.ErrorType != tc.errType {
			t.Errorf("%d %s: %+v, %v", tc.status, tc.body, res, err)
		}
	}
}

func TestEpochSecondsHasMilliseconds(t *testing.T) {
	for ms, want := range map[int64]string{1545084650987: "1545084650.987", 1545084650000: "1545084650", 1545084650100: "1545084650.1"} {
		b, _ := epochSeconds(time.UnixMilli(ms)).MarshalJSON()
		if string(b) != want {
			t.Errorf("%d ms: %s, want %s", ms, b, want)
		}
	}
}

func TestFitStopsBeforeTheLimit(t *testing.T) {
	d := &Driver{cfg: Config{BatchSize: 3, PayloadLimit: len(payloadHead) + len(payloadTail) + 10 + 1 + 10}}
	s := &shard{buf: []record{{json: make([]byte, 10)}, {json: make([]byte, 10)}, {json: make([]byte, 1)}}}
	if n := d.fit(s); n != 2 {
		t.Fatalf("fit %d, want 2 (a third record would exceed the limit)", n)
	}
	if got := len(payload(s.buf[:2])); got != d.cfg.PayloadLimit {
		t.Fatalf("payload of 2 records %d bytes, want %d", got, d.cfg.PayloadLimit)
	}
	s.buf = []record{{json: make([]byte, 100)}}
	if n := d.fit(s); n != 1 {
		t.Fatalf("an oversized record alone: fit %d, want 1", n)
	}
}

func TestFailureKey(t *testing.T) {
	k := FailureKey("", "f89f8514-cdd9-4602-9e1f-01a5b77d449b", "shardId-000000000001", time.Date(2019, 11, 14, 0, 38, 6, 21e6, time.UTC))
	re := `^aws/lambda/f89f8514-cdd9-4602-9e1f-01a5b77d449b/shardId-000000000001/2019/11/14/2019-11-14T00\.38\.06-[0-9a-f-]{36}$`
	if !regexp.MustCompile(re).MatchString(k) {
		t.Fatalf("key %s", k)
	}
}

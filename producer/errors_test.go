package producer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// The tests in this file get their errors the way the producer gets them in production: a
// real *kinesis.Client sends real HTTP requests to a real listener on 127.0.0.1 that
// refuses, hangs, cuts or answers with an error response. No error value is built by hand.

// realClient returns an SDK Kinesis client for endpoint with the SDK's default retryer
// (3 attempts) but short backoffs, so the tests do not wait seconds per call.
func realClient(endpoint string, httpClient *http.Client) *kinesis.Client {
	o := kinesis.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  aws.AnonymousCredentials{},
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.NewExponentialJitterBackoff(5 * time.Millisecond)
		}),
	}
	if httpClient != nil {
		o.HTTPClient = httpClient
	}
	return kinesis.New(o)
}

// closedPort returns an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// rawListener accepts connections and hands each to serve, until the test ends.
func rawListener(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); serve(c) }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// readRequest reads one HTTP request's head from c (enough for the client to have sent it).
func readRequest(c net.Conn) {
	buf := make([]byte, 64<<10)
	_, _ = c.Read(buf)
}

// errorServer answers every request with status and a Kinesis JSON error body of type code
// (no body when code is empty).
func errorServer(t *testing.T, status int, code string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		if code != "" {
			fmt.Fprintf(w, `{"__type":%q,"message":"%s from the test server"}`, code, code)
		}
	}))
	t.Cleanup(s.Close)
	return s.URL
}

func putOnce(ctx context.Context, c *kinesis.Client) error {
	_, err := c.PutRecords(ctx, &kinesis.PutRecordsInput{
		StreamName: aws.String("s"),
		Records:    []types.PutRecordsRequestEntry{{Data: []byte("x"), PartitionKey: aws.String("k")}},
	})
	return err
}

func TestRequestErrorClassification(t *testing.T) {
	tests := []struct {
		name      string
		endpoint  func(t *testing.T) string
		timeout   time.Duration // the per-call deadline, as WithRequestTimeout sets it
		retryable bool
	}{
		{"connection refused", func(t *testing.T) string { return "http://" + closedPort(t) }, 0, true},
		{"no response before the deadline", func(t *testing.T) string {
			return "http://" + rawListener(t, func(c net.Conn) { readRequest(c); _, _ = io.Copy(io.Discard, c) })
		}, 300 * time.Millisecond, true},
		{"connection closed after the request (EOF)", func(t *testing.T) string {
			return "http://" + rawListener(t, func(c net.Conn) { readRequest(c); c.Close() })
		}, 0, true},
		{"connection reset", func(t *testing.T) string {
			return "http://" + rawListener(t, func(c net.Conn) {
				readRequest(c)
				_ = c.(*net.TCPConn).SetLinger(0) // close with RST
				c.Close()
			})
		}, 0, true},
		{"response cut in the middle", func(t *testing.T) string {
			return "http://" + rawListener(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 500\r\n\r\n{\"FailedRecordCount\":0,\"Rec")
				c.Close()
			})
		}, 0, true},
		{"TLS handshake failure", func(t *testing.T) string {
			return "https://" + rawListener(t, func(c net.Conn) { readRequest(c); _, _ = io.WriteString(c, "not tls\r\n"); c.Close() })
		}, 0, true},
		{"DNS failure", func(t *testing.T) string { return "http://kinesis.host-that-does-not-exist.invalid" }, 0, true},
		{"500 InternalFailure", func(t *testing.T) string { return errorServer(t, 500, "InternalFailure") }, 0, true},
		{"503 without a body", func(t *testing.T) string { return errorServer(t, 503, "") }, 0, true},
		{"429 without a body", func(t *testing.T) string { return errorServer(t, 429, "") }, 0, true},
		{"400 throughput exceeded", func(t *testing.T) string { return errorServer(t, 400, "ProvisionedThroughputExceededException") }, 0, true},
		{"400 LimitExceeded", func(t *testing.T) string { return errorServer(t, 400, "LimitExceededException") }, 0, true},
		{"400 KMS throttling", func(t *testing.T) string { return errorServer(t, 400, "KMSThrottlingException") }, 0, true},
		{"400 stream not found", func(t *testing.T) string { return errorServer(t, 400, "ResourceNotFoundException") }, 0, false},
		{"400 access denied", func(t *testing.T) string { return errorServer(t, 400, "AccessDeniedException") }, 0, false},
		{"400 validation", func(t *testing.T) string { return errorServer(t, 400, "ValidationException") }, 0, false},
		{"400 invalid argument", func(t *testing.T) string { return errorServer(t, 400, "InvalidArgumentException") }, 0, false},
		{"400 KMS key disabled", func(t *testing.T) string { return errorServer(t, 400, "KMSDisabledException") }, 0, false},
		{"400 KMS key not found", func(t *testing.T) string { return errorServer(t, 400, "KMSNotFoundException") }, 0, false},
		{"403 unrecognized client", func(t *testing.T) string { return errorServer(t, 403, "UnrecognizedClientException") }, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hc *http.Client
			if strings.HasPrefix(tt.name, "TLS") {
				hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
			}
			c := realClient(tt.endpoint(t), hc)
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			err := putOnce(ctx, c)
			if err == nil {
				t.Fatal("PutRecords succeeded")
			}
			if got := retryableRequestError(err); got != tt.retryable {
				t.Fatalf("retryable = %v, want %v, for %v", got, tt.retryable, err)
			}
		})
	}
	t.Run("parameters the SDK refuses", func(t *testing.T) {
		c := realClient("http://"+closedPort(t), nil)
		_, err := c.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String("s")})
		if err == nil || retryableRequestError(err) {
			t.Fatalf("error %v: want a validation error that is not retried", err)
		}
	})
}

// TestOutageIsRetriedUntilTTL is the first measurement of the issue this fixes: with nothing
// listening, records used to fail after the SDK's own three attempts with "StatusCode: 0".
// They must be retried until their TTL and then reported with ErrRecordExpired.
func TestOutageIsRetriedUntilTTL(t *testing.T) {
	c := realClient("http://"+closedPort(t), nil)
	var res results
	p := newTestProducer(t, c, WithRecordTTL(time.Second), WithRetryBackoff(20*time.Millisecond, 50*time.Millisecond),
		WithResultHandler(res.handle), WithLinger(0))
	for i := range 20 {
		if err := p.Put(context.Background(), Record{PartitionKey: fmt.Sprint(i), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("records reported after %v, before their 1 s TTL", d)
	}
	all := res.snapshot()
	if len(all) != 20 {
		t.Fatalf("%d results, want 20", len(all))
	}
	for _, r := range all {
		if !errors.Is(r.Err, ErrRecordExpired) || r.Attempts < 3 {
			t.Fatalf("result %v after %d attempts: want ErrRecordExpired after several attempts", r.Err, r.Attempts)
		}
	}
	if st := p.Stats(); st.RecordsRetried == 0 {
		t.Fatalf("RecordsRetried = 0: %+v", st)
	}
}

// kinesisAnswer is the minimal valid PutRecords response for in: every entry accepted on
// shard 0.
func kinesisAnswer(w http.ResponseWriter, r *http.Request, seq *atomic.Int64) {
	var in struct{ Records []json.RawMessage }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	type entry struct{ ShardId, SequenceNumber string }
	out := struct {
		FailedRecordCount int
		Records           []entry
	}{}
	for range in.Records {
		out.Records = append(out.Records, entry{"shardId-000000000000", fmt.Sprint(seq.Add(1))})
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

// oneShard answers ListShards with a stream of one shard.
func oneShard(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_, _ = io.WriteString(w, `{"Shards":[{"ShardId":"shardId-000000000000","HashKeyRange":{"StartingHashKey":"0",`+
		`"EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"1"}}]}`)
}

// TestTransportErrorsAreRetried sends through a listener whose first requests are cut by a
// reset, a close and a 500 and a hang past the request timeout, then answered: the record is
// delivered, and each failure counted as a request error.
func TestTransportErrorsAreRetried(t *testing.T) {
	var n atomic.Int64
	var seq atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".ListShards") {
			oneShard(w)
			return
		}
		switch n.Add(1) {
		case 1: // reset
			hj, _, _ := w.(http.Hijacker).Hijack()
			_ = hj.(*net.TCPConn).SetLinger(0)
			hj.Close()
		case 2: // closed without an answer
			hj, _, _ := w.(http.Hijacker).Hijack()
			hj.Close()
		case 3:
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(500)
			_, _ = io.WriteString(w, `{"__type":"InternalFailure","message":"oops"}`)
		case 4: // hangs until the producer's request timeout
			select {
			case <-r.Context().Done():
			case <-release:
			}
		default:
			kinesisAnswer(w, r, &seq)
		}
	}))
	srv.Start()
	t.Cleanup(func() { close(release); srv.Close() }) // Close waits for the handlers
	// One attempt per call, so each failure reaches the producer.
	c := kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.AnonymousCredentials{}, Retryer: aws.NopRetryer{}})
	p := newTestProducer(t, c, WithRetryBackoff(time.Millisecond, time.Millisecond), WithMaxInFlight(1),
		WithRequestTimeout(500*time.Millisecond))
	r, err := p.PutSync(context.Background(), Record{PartitionKey: "k", Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if r.Attempts != 5 {
		t.Fatalf("%d attempts, want 5", r.Attempts)
	}
	if st := p.Stats(); st.RequestErrors != 4 {
		t.Fatalf("RequestErrors = %d, want 4", st.RequestErrors)
	}
}

// TestClientFaultFailsAtOnce: a stream that does not exist fails the record at the first
// answer, without retries.
func TestClientFaultFailsAtOnce(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".PutRecords") {
			n.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(400)
		_, _ = io.WriteString(w, `{"__type":"ResourceNotFoundException","message":"Stream s under account 0 not found."}`)
	}))
	t.Cleanup(srv.Close)
	p := newTestProducer(t, realClient(srv.URL, nil))
	_, err := p.PutSync(context.Background(), Record{PartitionKey: "k", Data: []byte("x")})
	var rnf *types.ResourceNotFoundException
	if !errors.As(err, &rnf) {
		t.Fatalf("PutSync error %v, want ResourceNotFoundException", err)
	}
	if st := p.Stats(); st.RequestErrors != 1 || st.RecordsFailed != 1 || st.RecordsRetried != 0 {
		t.Fatalf("stats %+v: want one failed request, not retried", st)
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("PutRecords called %d times, want once", got)
	}
}

// TestRetriedRequestKeepsOrder: a request that fails whole is sent again with its records in
// the order they were put, ahead of later records (one request in flight).
func TestRetriedRequestKeepsOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var seq atomic.Int64
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".ListShards") {
			oneShard(w)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) <= 3 { // the first three calls fail whole
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(500)
			_, _ = io.WriteString(w, `{"__type":"InternalFailure","message":"try again"}`)
			return
		}
		var in struct{ Records []struct{ Data []byte } }
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		for _, e := range in.Records {
			got = append(got, string(e.Data))
		}
		mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		kinesisAnswer(w, r, &seq)
	}))
	t.Cleanup(srv.Close)
	c := kinesis.New(kinesis.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.AnonymousCredentials{}, Retryer: aws.NopRetryer{}})
	p := newTestProducer(t, c, WithAggregation(false), WithMaxInFlight(1), WithMaxRequestEntries(20),
		WithRetryBackoff(time.Millisecond, 20*time.Millisecond), WithLinger(time.Millisecond))
	const n = 200
	for i := range n {
		if err := p.Put(context.Background(), Record{PartitionKey: "k", Data: fmt.Appendf(nil, "%04d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d records delivered, want %d", len(got), n)
	}
	for i, d := range got {
		if d != fmt.Sprintf("%04d", i) {
			t.Fatalf("record %d delivered as the %dth: order lost on retry (%v...)", i, i, got[:min(len(got), 30)])
		}
	}
}

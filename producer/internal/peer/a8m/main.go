// Command a8m-bench is a peer benchmark for kinlog's producer: it ships the same synthetic
// JSON log lines as producer/internal/bench through github.com/a8m/kinesis-producer v0.2.0
// (KPL aggregation, PutRecords batching, on aws-sdk-go v1) and prints throughput and process
// CPU time per record in the same format.
//
// It creates a temporary stream (deleted at the end) unless -stream names one, and by
// default reads the stream back to check that every line arrived exactly once (not timed).
// a8m/kinesis-producer puts every record into one aggregate whatever its partition key, so
// records do not land on their own key's shard; the check counts lines only.
//
// It is its own Go module so that a8m/kinesis-producer and aws-sdk-go v1 stay out of
// kinlog's go.mod. See README.md.
//
//lint:file-ignore SA1019 the peer measures a library built on aws-sdk-go v1 and golang/protobuf.
package main

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	producer "github.com/a8m/kinesis-producer"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/kinesis"
	"github.com/golang/protobuf/proto"
)

// peerName is the library and version this program measures; keep it in step with go.mod.
const peerName = "a8m/kinesis-producer v0.2.0"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "a8m-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 100000, "log lines to send")
	shards := flag.Int("shards", 4, "shards of the temporary stream")
	stream := flag.String("stream", "", "existing stream to use instead of a temporary one")
	prefix := flag.String("stream-prefix", "a8m-bench-", "name prefix of the temporary stream")
	keys := flag.Int("keys", 1024, "distinct random partition keys")
	conns := flag.Int("connections", 24, "a8m MaxConnections: PutRecords requests in flight (its default)")
	verify := flag.Bool("verify", true, "read the stream back and check every line arrived once")
	flag.Parse()

	client, err := newClient(*conns)
	if err != nil {
		return err
	}
	name := *stream
	if name == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		name = *prefix + hex.EncodeToString(b[:])
		if err := createStream(client, name, int64(*shards)); err != nil {
			return err
		}
		defer func() {
			_, _ = client.DeleteStream(&kinesis.DeleteStreamInput{StreamName: &name})
		}()
	}

	// The same input as producer/internal/bench, prepared before measuring in one
	// pointer-free buffer.
	var data []byte
	ends := make([]int, *n)
	for i := range ends {
		data = fmt.Appendf(data, `{"time":"2026-11-22T10:00:00.%06dZ","level":"INFO","msg":"request served","seq":%08d,"method":"GET","path":"/api/v1/items/%06d","status":200,"duration_ms":12.5,"user":"user-%04d","trace":"4bf92f3577b34da6a3ce929d0e0e4736"}`, i%1000000, i, i%1000000, i%1000)
		ends[i] = len(data)
	}
	pks := make([]string, *keys)
	for i := range pks {
		var b [8]byte
		_, _ = rand.Read(b[:])
		pks[i] = hex.EncodeToString(b[:])
	}
	nbytes := len(data)

	cpu0 := cpuTime()
	start := time.Now()
	log := &countingLogger{}
	p := producer.New(&producer.Config{
		StreamName:     name,
		Client:         client,
		MaxConnections: *conns,
		Logger:         log, // its default logs a line on stdout per PutRecords call
	})
	failures := p.NotifyFailures()
	failed := make(chan int)
	go func() {
		n := 0
		for range failures {
			n++
		}
		failed <- n
	}()
	p.Start()
	start0 := 0
	for i, end := range ends {
		// a8m keeps the slice it is given (no copy); the input is never reused.
		if err := p.Put(data[start0:end], pks[i%len(pks)]); err != nil {
			return err
		}
		start0 = end
	}
	p.Stop()
	nfailed := <-failed
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0

	fmt.Printf("peer              %s\n", peerName)
	fmt.Printf("stream            %s (%d shards), aggregation true, in flight %d\n", name, *shards, *conns)
	fmt.Printf("user records      %d (%.1f MB of data, %d partition keys)\n", *n, float64(nbytes)/1e6, *keys)
	fmt.Printf("elapsed           %v\n", elapsed.Round(time.Millisecond))
	fmt.Printf("records/s         %.0f\n", float64(*n)/elapsed.Seconds())
	fmt.Printf("process CPU       %v total, %.2f µs per record\n", cpu.Round(time.Millisecond), float64(cpu.Nanoseconds())/float64(*n)/1e3)
	fmt.Printf("failed            %d; errors logged %d\n", nfailed, log.errors)
	if nfailed > 0 {
		return fmt.Errorf("%d records failed", nfailed)
	}
	if *verify {
		if err := verifyStream(client, name, *n); err != nil {
			return err
		}
		fmt.Printf("verified          every record once\n")
	}
	return nil
}

// newClient returns a Kinesis client (aws-sdk-go v1) for the SDK's standard variables;
// AWS_ENDPOINT_URL_KINESIS, when set, is the endpoint.
func newClient(conns int) (*kinesis.Kinesis, error) {
	cfg := aws.NewConfig()
	if ep := os.Getenv("AWS_ENDPOINT_URL_KINESIS"); ep != "" {
		cfg = cfg.WithEndpoint(ep)
	}
	// Keep as many idle connections as requests in flight (Go's default keeps 2 per host),
	// as kinlog's SDK v2 client does for its 8.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	cfg = cfg.WithHTTPClient(&http.Client{Transport: tr})
	sess, err := session.NewSessionWithOptions(session.Options{Config: *cfg, SharedConfigState: session.SharedConfigEnable})
	if err != nil {
		return nil, fmt.Errorf("creating AWS session: %w", err)
	}
	return kinesis.New(sess), nil
}

// countingLogger is a producer.Logger that discards messages and counts errors.
type countingLogger struct{ errors int }

func (*countingLogger) Info(string, ...producer.LogValue) {}

func (l *countingLogger) Error(msg string, err error, _ ...producer.LogValue) {
	l.errors++
	fmt.Fprintln(os.Stderr, "a8m:", msg, err)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func createStream(c *kinesis.Kinesis, name string, shards int64) error {
	if _, err := c.CreateStream(&kinesis.CreateStreamInput{StreamName: &name, ShardCount: &shards}); err != nil {
		return fmt.Errorf("creating stream %s: %w", name, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := c.DescribeStreamSummary(&kinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err == nil && aws.StringValue(out.StreamDescriptionSummary.StreamStatus) == kinesis.StreamStatusActive {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for stream %s: %w", name, errors.Join(errors.New("timed out"), err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var magic = []byte{0xF3, 0x89, 0x9A, 0xC2}

// verifyStream reads every shard and checks each line arrived exactly once.
func verifyStream(c *kinesis.Kinesis, name string, n int) error {
	seen := make([]int, n)
	count := func(line []byte) error {
		i, err := seqOf(line)
		if err != nil || i >= n {
			return fmt.Errorf("unexpected record %q", line)
		}
		seen[i]++
		return nil
	}
	ls, err := c.ListShards(&kinesis.ListShardsInput{StreamName: &name})
	if err != nil {
		return fmt.Errorf("listing shards: %w", err)
	}
	for _, s := range ls.Shards {
		it, err := c.GetShardIterator(&kinesis.GetShardIteratorInput{StreamName: &name, ShardId: s.ShardId, ShardIteratorType: aws.String(kinesis.ShardIteratorTypeTrimHorizon)})
		if err != nil {
			return fmt.Errorf("getting iterator: %w", err)
		}
		for iter := it.ShardIterator; iter != nil; {
			out, err := c.GetRecords(&kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				return fmt.Errorf("reading %s: %w", *s.ShardId, err)
			}
			for _, r := range out.Records {
				d := r.Data
				if len(d) > len(magic)+md5.Size && bytes.Equal(d[:len(magic)], magic) {
					body := d[len(magic) : len(d)-md5.Size]
					if sum := md5.Sum(body); bytes.Equal(sum[:], d[len(d)-md5.Size:]) {
						var agg producer.AggregatedRecord
						if err := proto.Unmarshal(body, &agg); err != nil {
							return fmt.Errorf("decoding aggregate: %w", err)
						}
						for _, u := range agg.Records {
							if err := count(u.Data); err != nil {
								return err
							}
						}
						continue
					}
				}
				if err := count(d); err != nil {
					return err
				}
			}
			if len(out.Records) == 0 && aws.Int64Value(out.MillisBehindLatest) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	for i, c := range seen {
		if c != 1 {
			return fmt.Errorf("record %d seen %d times", i, c)
		}
	}
	return nil
}

func seqOf(line []byte) (int, error) {
	const key = `"seq":`
	if i := bytes.Index(line, []byte(key)); i >= 0 && i+len(key)+8 <= len(line) {
		return strconv.Atoi(string(line[i+len(key) : i+len(key)+8]))
	}
	return 0, errors.New("no seq")
}

// Command bench measures the agent shipping log files to Kinesis: it writes synthetic
// ~230-byte JSON log lines into files, runs the agent on them until every line is
// confirmed, and prints lines/s, process CPU per line and peak memory. Endpoints and
// credentials come from the SDK's standard variables, so against the local stack:
//
//	eval "$(infra/local/stack env)"
//	go run ./agent/internal/bench -n 1000000 -files 1
//	go run ./agent/internal/bench -n 200000 -files 1000
//
// It creates a temporary stream (deleted at the end) and, with -verify, reads it back to
// check that every line arrived once (not timed).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/agent"
	"github.com/kinlog/kinlog/internal/benchutil"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/producer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 1000000, "log lines in all")
	files := flag.Int("files", 1, "files the lines are spread over")
	shards := flag.Int("shards", 4, "shards of the temporary stream")
	rate := flag.Int("rate-limit", 0, "producer rate limit in percent of the shard limits (0 = off; kinesalite enforces none)")
	buffer := flag.Int64("buffer", 0, "producer buffer bound in bytes (0: the agent's default)")
	idle := flag.Duration("idle", 5*time.Second, "how long to measure the agent idle after it caught up")
	verify := flag.Bool("verify", true, "read the stream back and check the count")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured part")
	flag.Parse()

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	kc := kinesis.NewFromConfig(cfg)
	stream := fmt.Sprintf("agent-bench-%d", time.Now().UnixNano())
	if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: &stream, ShardCount: aws.Int32(int32(*shards))}); err != nil {
		return err
	}
	defer func() { _, _ = kc.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: &stream}) }()
	w := kinesis.NewStreamExistsWaiter(kc)
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: &stream}, time.Minute); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "agent-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	var bytes int64
	perFile := *n / *files
	for f := range *files {
		fh, err := os.Create(filepath.Join(logs, "app-"+strconv.Itoa(f)+".log"))
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(fh, 1<<20)
		var line []byte
		for i := range perFile {
			line = fmt.Appendf(line[:0], `{"time":"2026-12-01T11:40:18.%06dZ","level":"info","service":"checkout","msg":"order placed","order_id":"o-%08d","file":%d,"user":"u-%06d","latency_ms":%d,"path":"/api/v1/orders","region":"eu-west-1","trace":"4bf92f3577b34da6"}`+"\n",
				i%1000000, i, f, i%100000, i%997)
			bytes += int64(len(line))
			_, _ = bw.Write(line)
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	total := perFile * *files
	fmt.Printf("%d lines (%.0f bytes each) in %d files, %d shards\n", total, float64(bytes)/float64(total), *files, *shards)

	opts := []producer.Option{producer.WithRateLimit(*rate)}
	if *buffer > 0 {
		opts = append(opts, producer.WithMaxBufferedBytes(*buffer))
	}
	a, err := agent.New(kc, agent.Config{Stream: stream, StateDir: filepath.Join(dir, "state"),
		Files:           []agent.FileInput{{Paths: []string{filepath.Join(logs, "*.log")}}},
		ProducerOptions: opts,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	cpu0 := benchutil.CPUTime()
	start := time.Now()
	go func() { done <- a.Run(runCtx, nil) }()
	for {
		st := a.Status()
		caught := len(st.Files) == *files
		for _, f := range st.Files {
			caught = caught && f.Offset == f.Size && f.Size > 0
		}
		if caught {
			break
		}
		select {
		case err := <-done:
			return fmt.Errorf("agent stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	cpu := benchutil.CPUTime() - cpu0
	// Idle: every file tailed and caught up.
	idle0 := benchutil.CPUTime()
	time.Sleep(*idle)
	idleCPU := benchutil.CPUTime() - idle0
	fmt.Printf("idle with %d files tailed: %.2f%% of a core, RSS %s", *files, 100*idleCPU.Seconds()/idle.Seconds(), rss())
	debug.FreeOSMemory()
	fmt.Printf(" (%s once the burst's garbage is returned to the OS)\n", rss())
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("shipped in %s: %.0f lines/s, %.2f µs CPU per line (%.0f lines/s per core of CPU), %.1f MB/s; peak RSS %d MB\n",
		elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), float64(cpu.Microseconds())/float64(total),
		float64(total)/cpu.Seconds(), float64(bytes)/elapsed.Seconds()/1e6, ru.Maxrss/1024)
	if *verify {
		got, err := count(ctx, kc, stream)
		if err != nil {
			return err
		}
		fmt.Printf("read back: %d records (want %d)\n", got, total)
		if got != total {
			return fmt.Errorf("%d records in the stream, want %d", got, total)
		}
	}
	return nil
}

// rss returns the process's resident memory now, from /proc/self/status.
func rss() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// count reads every shard and counts user records.
func count(ctx context.Context, kc *kinesis.Client, stream string) (int, error) {
	out, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: &stream})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range out.Shards {
		it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: &stream, ShardId: s.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			return 0, err
		}
		iter := it.ShardIterator
		for iter != nil {
			r, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
			if err != nil {
				return 0, err
			}
			for _, rec := range r.Records {
				if recs, ok := kpl.Decode(rec.Data); ok {
					n += len(recs)
				} else {
					n++
				}
			}
			if len(r.Records) == 0 && aws.ToInt64(r.MillisBehindLatest) == 0 {
				break
			}
			iter = r.NextShardIterator
		}
	}
	return n, nil
}

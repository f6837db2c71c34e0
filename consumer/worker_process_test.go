package consumer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/checkpoint"
	ckdynamo "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/testenv"
)

// The failover integration test and benchmark run workers as child processes (this test
// binary, re-executed) so that they can be killed with SIGKILL. A child finds its job in
// the environment variable workerSpecEnv and writes one line per user record it processed
// to Out before acknowledging the batch.
const workerSpecEnv = "KINLOG_CONSUMER_TEST_WORKER"

type workerSpec struct {
	Stream   string        `json:"stream"`
	Table    string        `json:"table"`
	WorkerID string        `json:"worker_id"`
	Out      string        `json:"out"`
	Failover time.Duration `json:"failover"`
	// CheckpointInterval is the worker's checkpoint interval (default 100ms).
	CheckpointInterval time.Duration `json:"checkpoint_interval"`
	// FanOut reads with enhanced fan-out from kinesis-mock (KINLOG_KINESIS_MOCK_ENDPOINT)
	// instead of polling the default Kinesis.
	FanOut bool `json:"fan_out"`
	// Leader runs with leader assignment: the table needs the owner index, and the
	// coordinator table is Table + "-coordinator".
	Leader bool `json:"leader"`
}

// maybeRunWorkerProcess runs this test binary as a consumer worker process when started as
// one, and reports whether it did.
func maybeRunWorkerProcess() bool {
	raw := os.Getenv(workerSpecEnv)
	if raw == "" {
		return false
	}
	if err := runWorkerProcess(raw); err != nil {
		fmt.Fprintln(os.Stderr, "worker process:", err)
		os.Exit(1)
	}
	return true
}

func runWorkerProcess(raw string) error {
	var spec workerSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	var storeOpts []ckdynamo.Option
	if spec.Leader {
		storeOpts = append(storeOpts, ckdynamo.WithOwnerIndex())
	}
	store, err := ckdynamo.New(ddb.NewFromConfig(cfg), spec.Table, storeOpts...)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(spec.Out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	factory := func(string) Processor { return &lineWriter{out: out} }
	if spec.CheckpointInterval == 0 {
		spec.CheckpointInterval = 100 * time.Millisecond
	}
	kc := kinesis.NewFromConfig(cfg)
	opts := []Option{WithWorkerID(spec.WorkerID), WithFailoverTime(spec.Failover), WithCheckpointInterval(spec.CheckpointInterval),
		WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))}
	if spec.FanOut {
		kc, _ = newFanOutMockClient(cfg, os.Getenv(string(testenv.KinesisMock)))
		opts = append(opts, fanOutOptions()...)
	}
	if spec.Leader {
		coord, err := ckdynamo.New(ddb.NewFromConfig(cfg), spec.Table+"-coordinator")
		if err != nil {
			return err
		}
		opts = append(opts, WithLeaderAssignment(coord))
	}
	c, err := New(kc, store, spec.Stream, factory, opts...)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// lineWriter makes records "durable" by writing them to a file, then acknowledges them.
type lineWriter struct{ out *os.File }

func (w *lineWriter) Initialize(context.Context, InitInput) error { return nil }
func (w *lineWriter) ProcessRecords(_ context.Context, b *Batch) error {
	var sb strings.Builder
	for _, r := range b.Records {
		fmt.Fprintf(&sb, "%s %s %d %s\n", r.ShardID, r.SequenceNumber, r.SubSequenceNumber, r.Data)
	}
	if _, err := w.out.WriteString(sb.String()); err != nil {
		return err
	}
	b.Ack()
	return nil
}
func (w *lineWriter) ShardEnded(context.Context) error { return nil }
func (w *lineWriter) LeaseLost(context.Context)        {}
func (w *lineWriter) Shutdown(context.Context) error   { return nil }

// workerProcess is a worker running in a child process.
type workerProcess struct {
	cmd *exec.Cmd
	out string
}

func startWorkerProcess(t testing.TB, spec workerSpec) *workerProcess {
	t.Helper()
	spec.Out = t.TempDir() + "/" + spec.WorkerID + ".records"
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerSpecEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &workerProcess{cmd: cmd, out: spec.Out}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

// kill ends the worker with SIGKILL: no shutdown, no release, no last checkpoint.
func (p *workerProcess) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

// processed returns the records the worker wrote: shard, position and data.
func (p *workerProcess) processed(t testing.TB) []Record {
	t.Helper()
	f, err := os.Open(p.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) != 4 {
			continue // a line cut by the kill
		}
		sub, err := strconv.ParseUint(fields[2], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, Record{ShardID: fields[0], SequenceNumber: fields[1], SubSequenceNumber: sub, Data: []byte(fields[3])})
	}
	return out
}

var _ checkpoint.Store = (*ckdynamo.Store)(nil)

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/sirupsen/logrus"

	cfg "github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	wk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"
	"github.com/vmware/vmware-go-kcl-v2/logger"
)

type drainConfig struct {
	stream, table string
	records       int64
	workers       int
	timeout       time.Duration
	maxRecords    int
	idle          time.Duration
	shardSync     time.Duration
	logLevel      string
}

// result is the one JSON line the program prints.
type result struct {
	Peer       string  `json:"peer"`
	Records    int64   `json:"records"`
	Seconds    float64 `json:"seconds"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// counter is shared by every record processor of every worker.
type counter struct {
	target    int64
	n         atomic.Int64
	ckptErrs  atomic.Int64
	done      chan struct{}
	doneOnce  sync.Once
	doneAt    atomic.Int64 // UnixNano when the batch holding the target-th record was checkpointed
	doneCount atomic.Int64
}

type factory struct{ c *counter }

func (f factory) CreateProcessor() kcl.IRecordProcessor { return &processor{c: f.c} }

// processor is a no-op record processor: it counts the records and checkpoints each batch
// at its last sequence number, as an application would after handling the batch.
type processor struct {
	c     *counter
	shard string
}

func (p *processor) Initialize(in *kcl.InitializationInput) { p.shard = in.ShardId }

func (p *processor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	if len(in.Records) == 0 {
		return
	}
	n := p.c.n.Add(int64(len(in.Records)))
	last := in.Records[len(in.Records)-1].SequenceNumber
	if err := in.Checkpointer.Checkpoint(last); err != nil {
		p.c.ckptErrs.Add(1)
		logrus.Warnf("checkpoint %s: %v", p.shard, err)
	}
	if n >= p.c.target {
		p.c.doneOnce.Do(func() {
			p.c.doneAt.Store(time.Now().UnixNano())
			p.c.doneCount.Store(n)
			close(p.c.done)
		})
	}
}

func (p *processor) Shutdown(in *kcl.ShutdownInput) {
	// A closed shard (TERMINATE) must be checkpointed at SHARD_END (nil) so that its
	// children can start; on REQUESTED shutdown there is nothing left to do.
	if in.ShutdownReason == kcl.TERMINATE {
		_ = in.Checkpointer.Checkpoint(nil)
	}
}

func drain(env stackEnv, dc drainConfig) error {
	lvl, err := logrus.ParseLevel(dc.logLevel)
	if err != nil {
		return err
	}
	logrus.SetLevel(lvl)
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})

	c := &counter{target: dc.records, done: make(chan struct{})}
	creds := credentials.NewStaticCredentialsProvider(env.accessKey, env.secretKey, "")
	host, _ := os.Hostname()

	workers := make([]*wk.Worker, 0, dc.workers)
	start := time.Now()
	for i := 0; i < dc.workers; i++ {
		kc := cfg.NewKinesisClientLibConfigWithCredential(dc.table, dc.stream, env.region,
			fmt.Sprintf("%s-%d-%d", host, os.Getpid(), i), creds).
			WithKinesisEndpoint(env.kinesisEndpoint).
			WithDynamoDBEndpoint(env.dynamoEndpoint).
			WithTableName(dc.table).
			WithInitialPositionInStream(cfg.TRIM_HORIZON).
			WithMaxRecords(dc.maxRecords).
			WithIdleTimeBetweenReadsInMillis(ms(dc.idle)).
			WithShardSyncIntervalMillis(ms(dc.shardSync)).
			WithLogger(logger.NewLogrusLogger(logrus.StandardLogger()))
		w := wk.NewWorker(factory{c}, kc)
		if err := w.Start(); err != nil {
			for _, s := range workers {
				s.Shutdown()
			}
			return fmt.Errorf("worker %d start: %w", i, err)
		}
		workers = append(workers, w)
	}

	shutdown := func() {
		// Shutdown waits for each shard consumer to see the stop signal (after its current
		// GetRecords and idle sleep) and to release its lease; bound it.
		ch := make(chan struct{})
		go func() {
			for _, w := range workers {
				w.Shutdown()
			}
			close(ch)
		}()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "vmware-drain: worker shutdown did not finish in 30s")
		}
	}

	select {
	case <-c.done:
	case <-time.After(dc.timeout):
		got := c.n.Load()
		shutdown()
		return fmt.Errorf("timeout after %s: %d of %d records processed", dc.timeout, got, dc.records)
	}

	// Measure before shutdown so that shutdown's cost is not counted.
	res := result{
		Peer:       peerName,
		Records:    c.doneCount.Load(),
		Seconds:    round3(time.Duration(c.doneAt.Load() - start.UnixNano()).Seconds()),
		PeakRSSMB:  round3(peakRSSMB()),
		CPUSeconds: round3(cpuSeconds()),
	}
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	if e := c.ckptErrs.Load(); e > 0 {
		fmt.Fprintf(os.Stderr, "vmware-drain: %d checkpoint errors\n", e)
	}
	shutdown()
	return nil
}

func ms(d time.Duration) int {
	m := int(d / time.Millisecond)
	if m < 1 {
		m = 1 // KCL panics on non-positive values
	}
	return m
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

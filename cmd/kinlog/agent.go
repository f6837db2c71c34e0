package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gopkg.in/yaml.v3"

	"github.com/kinlog/kinlog/agent"
	"github.com/kinlog/kinlog/internal/conf"
	"github.com/kinlog/kinlog/producer"
)

// agentConfig is the configuration of `kinlog agent`, read like consume's: the YAML file,
// then KINLOG_<KEY> variables, then --set key=value.
type agentConfig struct {
	// Stream is the Kinesis stream name or ARN. Required.
	Stream string `yaml:"stream"`
	// StateDir keeps the files' positions and the socket inputs' spool. Required.
	StateDir string `yaml:"state_dir"`
	// Host is put on records built from text lines. Default: the host name.
	Host string `yaml:"host"`
	// PartitionKey is random, origin or field:<member>. Default: random.
	PartitionKey string `yaml:"partition_key"`
	// PositionsInterval is how often the files' positions are stored; lines confirmed
	// since the last store are sent again after a crash. Default: 250ms.
	PositionsInterval conf.Duration `yaml:"positions_interval"`
	// HTTP serves /healthz, /readyz, /metrics and /status. Default listen: 127.0.0.1:8081.
	HTTP     conf.HTTP     `yaml:"http"`
	Shutdown conf.Shutdown `yaml:"shutdown"`
	Log      conf.Log      `yaml:"log"`
	Producer struct {
		// Aggregate KPL-aggregates records. Default: true.
		Aggregate bool `yaml:"aggregate"`
		// RateLimit is the per-shard limit in percent of a shard's write limits; 0 turns
		// it off. Default 150, as in the KPL.
		RateLimit int `yaml:"rate_limit"`
		// MaxRecordSize is the largest record. Default 1MiB.
		MaxRecordSize conf.ByteSize `yaml:"max_record_size"`
		// SpoolSync is write, fsync or batched (the socket inputs' spool). Default: write.
		SpoolSync string `yaml:"spool_sync"`
		// SpoolMaxBytes bounds the spool. Default 1GiB.
		SpoolMaxBytes conf.ByteSize `yaml:"spool_max_bytes"`
	} `yaml:"producer"`
	Files   []agentFileConfig   `yaml:"files"`
	Sockets []agentSocketConfig `yaml:"sockets"`
	Syslog  []agentSocketConfig `yaml:"syslog"`
}

type agentFileConfig struct {
	Paths        []string      `yaml:"paths"`
	Exclude      []string      `yaml:"exclude"`
	Format       string        `yaml:"format"`
	StartAt      string        `yaml:"start_at"`
	Service      string        `yaml:"service"`
	MaxLineBytes conf.ByteSize `yaml:"max_line_bytes"`
	Multiline    struct {
		StartPattern string        `yaml:"start_pattern"`
		MaxBytes     conf.ByteSize `yaml:"max_bytes"`
		FlushTimeout conf.Duration `yaml:"flush_timeout"`
	} `yaml:"multiline"`
	PollInterval conf.Duration `yaml:"poll_interval"`
	RotateWait   conf.Duration `yaml:"rotate_wait"`
}

type agentSocketConfig struct {
	Listen   string        `yaml:"listen"`
	MaxBytes conf.ByteSize `yaml:"max_bytes"`
}

func defaultAgentConfig() agentConfig {
	var c agentConfig
	c.HTTP.Listen = "127.0.0.1:8081"
	c.Shutdown.Timeout = conf.Duration(30 * time.Second)
	c.Log.Level = "info"
	c.PartitionKey = "random"
	c.PositionsInterval = conf.Duration(250 * time.Millisecond)
	c.Producer.Aggregate = true
	c.Producer.RateLimit = producer.DefaultRateLimit
	c.Producer.MaxRecordSize = conf.ByteSize(producer.DefaultMaxRecordSize)
	c.Producer.SpoolSync = producer.SyncWrite.String()
	c.Producer.SpoolMaxBytes = 1 << 30
	return c
}

// library maps the file's configuration onto the agent's, checking it; errors name the key.
func (c *agentConfig) library() (agent.Config, error) {
	bad := func(key string, err error) error { return &conf.Error{Key: key, Source: "value", Err: err} }
	mode, err := producer.ParseSpoolSync(c.Producer.SpoolSync)
	if err != nil {
		return agent.Config{}, bad("producer.spool_sync", err)
	}
	if c.Producer.RateLimit < 0 {
		return agent.Config{}, bad("producer.rate_limit", fmt.Errorf("%d is negative (0 turns the limiter off)", c.Producer.RateLimit))
	}
	lc := agent.Config{
		Stream: c.Stream, StateDir: c.StateDir, Host: c.Host, PartitionKey: c.PartitionKey,
		Spool:             producer.SpoolOptions{Sync: mode, MaxBytes: int64(c.Producer.SpoolMaxBytes)},
		MaxRecordSize:     int(c.Producer.MaxRecordSize),
		ShutdownTimeout:   time.Duration(c.Shutdown.Timeout),
		PositionsInterval: time.Duration(c.PositionsInterval),
		ProducerOptions:   []producer.Option{producer.WithAggregation(c.Producer.Aggregate), producer.WithRateLimit(c.Producer.RateLimit)},
	}
	for _, f := range c.Files {
		lc.Files = append(lc.Files, agent.FileInput{
			Paths: f.Paths, Exclude: f.Exclude, Format: agent.Format(f.Format), StartAt: f.StartAt, Service: f.Service,
			MaxLineBytes: int(f.MaxLineBytes),
			Multiline: agent.Multiline{StartPattern: f.Multiline.StartPattern, MaxBytes: int(f.Multiline.MaxBytes),
				FlushTimeout: time.Duration(f.Multiline.FlushTimeout)},
			PollInterval: time.Duration(f.PollInterval), RotateWait: time.Duration(f.RotateWait),
		})
	}
	for _, s := range c.Sockets {
		lc.Sockets = append(lc.Sockets, agent.Listener{Listen: s.Listen, MaxBytes: int(s.MaxBytes)})
	}
	for _, s := range c.Syslog {
		lc.Syslog = append(lc.Syslog, agent.Listener{Listen: s.Listen, MaxBytes: int(s.MaxBytes)})
	}
	return lc, nil
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", os.Getenv("KINLOG_CONFIG"), "YAML config file (default $KINLOG_CONFIG)")
	var sets stringList
	fs.Var(&sets, "set", "override a config key: --set stream=logs (repeatable)")
	check := fs.Bool("check", false, "validate the configuration, print it with defaults filled in, and exit")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see kinlog agent --help)", errUsage, fs.Arg(0))
	}
	if *path == "" && len(sets) == 0 && os.Getenv("KINLOG_STREAM") == "" {
		return fmt.Errorf("%w: no configuration: run kinlog agent --config agent.yaml (examples: infra/systemd/agent.yaml, examples/celery/agent.yaml; every key is in the README)", errUsage)
	}
	cfg := defaultAgentConfig()
	if err := conf.Load(&cfg, *path, os.Environ(), sets); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, w := range conf.EnvWarnings(&cfg, os.Environ()) {
		fmt.Fprintf(stderr, "kinlog agent: warning: %s\n", w)
	}
	lc, err := cfg.library()
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := newLogger(cfg.Log.Format, cfg.Log.Level, stderr)
	lc.Logger = log
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	kc := kinesis.NewFromConfig(awsCfg)
	a, err := agent.New(kc, lc)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *check {
		return yaml.NewEncoder(stdout).Encode(&cfg)
	}
	runCtx, stop := gracefulContext(ctx, log, time.Duration(cfg.Shutdown.Timeout))
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), a.Collector())
	var srv *http.Server
	if cfg.HTTP.Listen != "" && cfg.HTTP.Listen != "-" {
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
		p := &probes{
			ready: func(context.Context) error {
				if runCtx.Err() != nil {
					return errors.New("shutting down")
				}
				return a.Ready()
			},
			status:   func() any { return a.Status() },
			gatherer: reg,
		}
		srv = &http.Server{Handler: p.handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		log.Info("serving probes and metrics", "addr", ln.Addr().String())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		}()
	}
	go checkStream(runCtx, kc, cfg.Stream, log)
	if err := a.Run(runCtx, nil); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// checkStream says at start, in words, what is wrong when the stream cannot be reached: the
// agent keeps running (lines stay in their files and the spool, and are sent once it can),
// but an operator should not have to read that from a retried PutRecords error.
func checkStream(ctx context.Context, kc *kinesis.Client, stream string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in := &kinesis.DescribeStreamSummaryInput{}
	if strings.HasPrefix(stream, "arn:") {
		in.StreamARN = &stream
	} else {
		in.StreamName = &stream
	}
	_, err := kc.DescribeStreamSummary(ctx, in)
	var nf *kinesistypes.ResourceNotFoundException
	switch {
	case err == nil:
	case errors.As(err, &nf):
		log.Error("the stream does not exist: lines are read and kept until it does (create it, or check the stream name, AWS_REGION and AWS_ENDPOINT_URL_KINESIS)", "stream", stream)
	case ctx.Err() == nil:
		log.Warn("cannot describe the stream; shipping goes on and retries", "stream", stream, "err", err)
	}
}

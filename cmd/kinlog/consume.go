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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gopkg.in/yaml.v3"

	"github.com/kinlog/kinlog/checkpoint"
	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/internal/conf"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// consumeConfig is the configuration of `kinlog consume`. Every key can be set in the YAML
// file, overridden by KINLOG_<KEY> (dots become underscores: KINLOG_SINK_S3_BUCKET) and by
// --set key=value. Zero values mean the documented defaults.
type consumeConfig struct {
	// Stream is the Kinesis stream name or ARN to consume. Required, unless Streams is set.
	Stream string `yaml:"stream"`
	// Streams are several streams (names or ARNs) to consume through one lease table, in the
	// KCL's multi-stream layout (leases keyed account:stream:epoch:shardId). Instead of
	// stream, not with it. Streams may be added and removed between restarts; the leases of
	// a removed stream stay in the table untouched.
	Streams []string `yaml:"streams"`
	// Application names this group of workers. Default: kinlog.
	Application string `yaml:"application"`
	// HTTP serves /healthz, /readyz, /metrics and /status. Default listen: :8080.
	HTTP     conf.HTTP     `yaml:"http"`
	Shutdown conf.Shutdown `yaml:"shutdown"`
	Log      conf.Log      `yaml:"log"`
	Consumer struct {
		// LeaseTable is the DynamoDB lease table (KCL schema). Default: <application>-leases.
		LeaseTable string `yaml:"lease_table"`
		// CreateLeaseTable creates the table (on-demand) when missing. Default: false.
		CreateLeaseTable bool `yaml:"create_lease_table"`
		// WorkerID identifies this worker in the lease table. Default: host name + random.
		WorkerID string `yaml:"worker_id"`
		// InitialPosition is TRIM_HORIZON, LATEST or AT_TIMESTAMP=<RFC 3339>. Default:
		// TRIM_HORIZON.
		InitialPosition string `yaml:"initial_position"`
		// FailoverTime: a lease whose counter has not moved this long is taken over.
		// Default: 10s.
		FailoverTime conf.Duration `yaml:"failover_time"`
		// MaxRecords is the largest Limit of a GetRecords call (a reader asks for half a
		// second of the shard's 2 MB/s, at most this). Default: 10000.
		MaxRecords int `yaml:"max_records"`
		// IdleTimeBetweenReads is the longest pause between polls of a caught-up shard.
		// Default: 1s.
		IdleTimeBetweenReads conf.Duration `yaml:"idle_time_between_reads"`
		// LeaseScanInterval is how often the lease table is scanned to take and balance
		// leases; each scan reads the whole table. Default: failover_time/10.
		LeaseScanInterval conf.Duration `yaml:"lease_scan_interval"`
		// ShardSyncInterval is how often shards are listed. Default: 1m.
		ShardSyncInterval conf.Duration `yaml:"shard_sync_interval"`
		// CheckpointInterval is the shortest time between checkpoints of a shard. Default: 1s.
		CheckpointInterval conf.Duration `yaml:"checkpoint_interval"`
		// MaxBatchesInFlight per shard before reading pauses. Default: 1000.
		MaxBatchesInFlight int `yaml:"max_batches_in_flight"`
		// MaxUnackedBytes bounds the records read and not yet archived, over all shards:
		// readers pause at it. Default: 64MiB.
		MaxUnackedBytes conf.ByteSize `yaml:"max_unacked_bytes"`
		// Retrieval is polling (GetRecords) or fanout (enhanced fan-out: SubscribeToShard
		// with a registered stream consumer). Default: polling.
		Retrieval string `yaml:"retrieval"`
		// StreamConsumerName is the stream consumer fanout registers and subscribes with;
		// all workers of one application share it. Default: the application key.
		StreamConsumerName string `yaml:"stream_consumer_name"`
		// LeaseAssignment is scan (every worker lists the lease table every lease scan
		// interval and takes its share) or leader (one elected worker lists it and assigns
		// leases; the others read only their own, through the table's owner index, and keep
		// heartbeats in <lease_table>-coordinator). Default: scan.
		LeaseAssignment string `yaml:"lease_assignment"`
	} `yaml:"consumer"`
	Sink      conf.Sink      `yaml:"sink"`
	Analytics conf.Analytics `yaml:"analytics"`
}

func defaultConsumeConfig() consumeConfig {
	var c consumeConfig
	c.Application = "kinlog"
	c.HTTP.Listen = ":8080"
	c.Shutdown.Timeout = conf.Duration(30 * time.Second)
	c.Log.Level = "info"
	c.Consumer.InitialPosition = "TRIM_HORIZON"
	c.Consumer.FailoverTime = conf.Duration(consumer.DefaultFailoverTime)
	c.Consumer.MaxRecords = consumer.DefaultMaxRecords
	c.Consumer.IdleTimeBetweenReads = conf.Duration(consumer.DefaultIdleTimeBetweenReads)
	c.Consumer.ShardSyncInterval = conf.Duration(consumer.DefaultShardSyncInterval)
	c.Consumer.CheckpointInterval = conf.Duration(consumer.DefaultCheckpointInterval)
	c.Consumer.MaxBatchesInFlight = consumer.DefaultMaxBatchesInFlight
	c.Consumer.MaxUnackedBytes = conf.ByteSize(consumer.DefaultMaxUnackedBytes)
	c.Consumer.Retrieval = "polling"
	c.Consumer.LeaseAssignment = "scan"
	c.Sink = conf.DefaultSink()
	c.Analytics = conf.DefaultAnalytics()
	return c
}

// built is everything `consume` runs, made from a validated config.
type built struct {
	kinesis  *kinesis.Client
	s3       *s3.Client
	sinks    []*s3sink.Sink // one per stream
	store    checkpoint.Store
	coord    *ddbstore.Store // lease_assignment: leader's coordinator table; nil otherwise
	registry *prometheus.Registry

	// The worker: a Consumer for stream, a MultiStream for streams.
	run      func(context.Context) error
	workerID string
	statuses func() []consumer.Status // one per stream
}

// status is what /status shows: the stream's status, or the list of the streams'.
func (b *built) status(multi bool) func() any {
	if multi {
		return func() any { return b.statuses() }
	}
	return func() any { return b.statuses()[0] }
}

// leasesHeld counts the leases the worker holds over its streams.
func (b *built) leasesHeld() int {
	n := 0
	for _, st := range b.statuses() {
		n += len(st.Shards)
	}
	return n
}

// streams returns the configured streams: streams, or the one stream.
func (c *consumeConfig) streams() []string {
	if len(c.Streams) > 0 {
		return c.Streams
	}
	return []string{c.Stream}
}

// resolve fills in the defaults that depend on other keys, so that --check prints what the
// worker will use.
func (c *consumeConfig) resolve() {
	if c.Consumer.LeaseTable == "" {
		c.Consumer.LeaseTable = c.Application + "-leases"
	}
	if c.Consumer.LeaseScanInterval == 0 {
		c.Consumer.LeaseScanInterval = c.Consumer.FailoverTime / 10
	}
	if c.Consumer.WorkerID == "" {
		c.Consumer.WorkerID = "(host name + random suffix, chosen at start)"
	}
	if r, _ := retrieval(c.Consumer.Retrieval); r == consumer.FanOut && c.Consumer.StreamConsumerName == "" {
		c.Consumer.StreamConsumerName = c.Application
	}
	if c.Log.Format == "" {
		c.Log.Format = "(text on a terminal, json otherwise)"
	}
	c.Sink.Resolve()
	c.Analytics.Resolve()
}

// validate checks values the libraries would only reject without naming the key.
func (c *consumeConfig) validate() error {
	bad := func(key string, err error) error { return &conf.Error{Key: key, Source: "value", Err: err} }
	switch {
	case c.Stream == "" && len(c.Streams) == 0:
		return bad("stream", errors.New("required (or streams, a list, for several streams)"))
	case c.Stream != "" && len(c.Streams) > 0:
		return bad("streams", fmt.Errorf("set with stream %q: use one of them (streams keys leases by stream, stream by shard id alone)", c.Stream))
	}
	seen := map[string]bool{}
	for i, s := range c.Streams {
		name := prefixStreamName(s)
		switch {
		case s == "":
			return bad("streams", fmt.Errorf("entry %d is empty", i+1))
		case seen[name]:
			return bad("streams", fmt.Errorf("stream %s is listed twice", name))
		}
		seen[name] = true
	}
	if err := c.Sink.Validate(); err != nil {
		return err
	}
	if err := c.Analytics.Validate(); err != nil {
		return err
	}
	if _, err := initialPosition(c.Consumer.InitialPosition); err != nil {
		return bad("consumer.initial_position", err)
	}
	r, err := retrieval(c.Consumer.Retrieval)
	if err != nil {
		return bad("consumer.retrieval", err)
	}
	switch c.Consumer.LeaseAssignment {
	case "scan", "":
	case "leader":
		if len(c.Streams) > 0 {
			return bad("consumer.lease_assignment", errors.New("leader is not available with streams (several streams): use scan"))
		}
	default:
		return bad("consumer.lease_assignment", fmt.Errorf("want scan or leader, got %q", c.Consumer.LeaseAssignment))
	}
	if name := c.Consumer.StreamConsumerName; name != "" && !validStreamConsumerName(name) {
		return bad("consumer.stream_consumer_name", fmt.Errorf("want 1 to 128 of a-z A-Z 0-9 _ . -, got %q", name))
	}
	if r == consumer.FanOut && c.Consumer.StreamConsumerName == "" && !validStreamConsumerName(c.Application) {
		return bad("consumer.stream_consumer_name", fmt.Errorf("defaults to application %q, which is not a valid stream consumer name (1 to 128 of a-z A-Z 0-9 _ . -): set it", c.Application))
	}
	switch strings.ToLower(c.Log.Format) {
	case "", "json", "text":
	default:
		return bad("log.format", fmt.Errorf("want json or text, got %q", c.Log.Format))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return bad("log.level", err)
	}
	if c.Consumer.LeaseScanInterval < 0 {
		return bad("consumer.lease_scan_interval", errors.New("must not be negative"))
	}
	// Ranges: the service's limits, and below them values that make a worker thrash.
	for _, r := range []struct {
		key       string
		v, lo, hi int64
		unit      string
	}{
		{"consumer.max_records", int64(c.Consumer.MaxRecords), 1, 10000, ""},
		{"consumer.max_batches_in_flight", int64(c.Consumer.MaxBatchesInFlight), 1, 1 << 20, ""},
		{"consumer.max_unacked_bytes", int64(c.Consumer.MaxUnackedBytes), 1 << 20, 64 << 30, "b"},
		{"consumer.failover_time", int64(c.Consumer.FailoverTime), int64(time.Second), int64(24 * time.Hour), "d"},
		{"consumer.idle_time_between_reads", int64(c.Consumer.IdleTimeBetweenReads), int64(200 * time.Millisecond), int64(time.Hour), "d"},
		{"consumer.shard_sync_interval", int64(c.Consumer.ShardSyncInterval), int64(time.Second), int64(24 * time.Hour), "d"},
		{"consumer.checkpoint_interval", int64(c.Consumer.CheckpointInterval), int64(time.Millisecond), int64(time.Hour), "d"},
	} {
		if err := conf.CheckRange(r.key, r.v, r.lo, r.hi, r.unit); err != nil {
			return err
		}
	}
	if c.Consumer.LeaseScanInterval > 0 && c.Consumer.LeaseScanInterval > c.Consumer.FailoverTime {
		return bad("consumer.lease_scan_interval", fmt.Errorf("%s is longer than consumer.failover_time (%s): leases of dead workers would wait for it", time.Duration(c.Consumer.LeaseScanInterval), time.Duration(c.Consumer.FailoverTime)))
	}
	if c.Shutdown.Timeout <= 0 {
		return bad("shutdown.timeout", errors.New("must be positive"))
	}
	return nil
}

func retrieval(s string) (consumer.Retrieval, error) {
	switch strings.ToLower(s) {
	case "", "polling":
		return consumer.Polling, nil
	case "fanout":
		return consumer.FanOut, nil
	}
	return 0, fmt.Errorf("want polling or fanout, got %q", s)
}

// validStreamConsumerName reports whether s matches the RegisterStreamConsumer API's
// pattern for a consumer name: [a-zA-Z0-9_.-]{1,128}.
func validStreamConsumerName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

func initialPosition(s string) (consumer.InitialPosition, error) {
	switch {
	case s == "" || strings.EqualFold(s, checkpoint.TrimHorizon):
		return consumer.TrimHorizon, nil
	case strings.EqualFold(s, checkpoint.Latest):
		return consumer.Latest, nil
	}
	if at, ok := strings.CutPrefix(s, "AT_TIMESTAMP="); ok {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return consumer.InitialPosition{}, fmt.Errorf("AT_TIMESTAMP needs an RFC 3339 time: %w", err)
		}
		return consumer.AtTimestamp(t), nil
	}
	return consumer.InitialPosition{}, fmt.Errorf("want TRIM_HORIZON, LATEST or AT_TIMESTAMP=<RFC 3339>, got %q", s)
}

func newLogger(format, level string, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	text := strings.EqualFold(format, "text")
	if format == "" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				text = true
			}
		}
	}
	if text {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func runConsume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", os.Getenv("KINLOG_CONFIG"), "YAML config file (default $KINLOG_CONFIG)")
	var sets stringList
	fs.Var(&sets, "set", "override a config key: --set sink.s3.bucket=logs (repeatable)")
	check := fs.Bool("check", false, "validate the configuration, print it with defaults filled in, and exit")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cfg := defaultConsumeConfig()
	if err := conf.Load(&cfg, *path, os.Environ(), sets); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, w := range conf.EnvWarnings(&cfg, os.Environ()) {
		fmt.Fprintf(stderr, "kinlog consume: warning: %s\n", w)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *check {
		cfg.resolve()
		fmt.Fprintln(stdout, "# the effective configuration: every default filled in (there are no secrets in it)")
		return yaml.NewEncoder(stdout).Encode(&cfg)
	}
	log := newLogger(cfg.Log.Format, cfg.Log.Level, stderr)

	runCtx, stop := gracefulContext(ctx, log, time.Duration(cfg.Shutdown.Timeout))
	defer stop()

	b, err := build(runCtx, &cfg, log)
	if err != nil {
		return err
	}
	if err := preflight(runCtx, b, &cfg); err != nil {
		return err
	}
	var srv *http.Server
	if cfg.HTTP.Listen != "" && cfg.HTTP.Listen != "-" {
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
		p := &probes{
			ready: func(ctx context.Context) error {
				if runCtx.Err() != nil {
					return errors.New("shutting down")
				}
				if _, err := b.store.GetLease(ctx, "kinlog-readiness-probe"); err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
					return fmt.Errorf("lease table: %w", err)
				}
				for _, s := range b.sinks {
					if err := s.Healthy(); err != nil {
						return err
					}
				}
				return nil
			},
			status:   b.status(len(cfg.Streams) > 0),
			gatherer: b.registry,
		}
		srv = &http.Server{Handler: p.handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		log.Info("serving probes and metrics", "addr", ln.Addr().String())
	}
	log.Info("consuming", "streams", strings.Join(cfg.streams(), ","), "worker", b.workerID, "lease_table", cfg.Consumer.LeaseTable, "bucket", cfg.Sink.S3.Bucket, "retrieval", cfg.Consumer.Retrieval)
	go logProgress(runCtx, log, b.registry, time.Minute)
	runErr := b.run(runCtx)
	if errors.Is(runErr, checkpoint.ErrNoTable) {
		return noTableError(&cfg)
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	log.Info("stopped")
	return nil
}

// preflight checks, before any lease is taken, that the stream and the bucket exist and
// can be reached, so that a worker with a typo in either fails at once with the key to fix
// instead of taking leases and retrying every flush.
func preflight(ctx context.Context, b *built, cfg *consumeConfig) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	key := "stream"
	if len(cfg.Streams) > 0 {
		key = "streams"
	}
	for _, stream := range cfg.streams() {
		in := &kinesis.DescribeStreamSummaryInput{}
		if strings.HasPrefix(stream, "arn:") {
			in.StreamARN = &stream
		} else {
			in.StreamName = &stream
		}
		if _, err := b.kinesis.DescribeStreamSummary(ctx, in); err != nil {
			var nf *kinesistypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				return fmt.Errorf("stream %s does not exist: check %s, AWS_REGION and AWS_ENDPOINT_URL_KINESIS (kinlog init creates it)", stream, key)
			}
			return fmt.Errorf("stream %s: %w", stream, err)
		}
	}
	if tc, ok := b.store.(checkpoint.TableChecker); ok && !cfg.Consumer.CreateLeaseTable {
		if err := tc.CheckTable(ctx); errors.Is(err, checkpoint.ErrNoTable) {
			return noTableError(cfg)
		} else if errors.Is(err, ddbstore.ErrNoOwnerIndex) {
			return fmt.Errorf("lease table %s has no %s index, which consumer.lease_assignment: leader needs: kinlog init creates new tables with it; add it to this one with aws dynamodb update-table, or set consumer.lease_assignment: scan", cfg.Consumer.LeaseTable, ddbstore.OwnerIndexName)
		} else if err != nil {
			return fmt.Errorf("lease table %s: %w", cfg.Consumer.LeaseTable, err)
		}
		if b.coord != nil {
			if err := b.coord.CheckTable(ctx); errors.Is(err, checkpoint.ErrNoTable) {
				return fmt.Errorf("coordinator table %s does not exist (consumer.lease_assignment: leader keeps heartbeats there): kinlog init creates it, or set consumer.create_lease_table: true", b.coord.Table())
			} else if err != nil {
				return fmt.Errorf("coordinator table %s: %w", b.coord.Table(), err)
			}
		}
	}
	if _, err := b.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &cfg.Sink.S3.Bucket}); err != nil {
		var nf *s3types.NotFound
		var ae smithy.APIError
		switch {
		case errors.As(err, &nf):
			return fmt.Errorf("bucket %s does not exist: check sink.s3.bucket, AWS_REGION and AWS_ENDPOINT_URL_S3 (kinlog init creates it)", cfg.Sink.S3.Bucket)
		case errors.As(err, &ae) && (ae.ErrorCode() == "Forbidden" || ae.ErrorCode() == "AccessDenied"):
			return fmt.Errorf("bucket %s: access denied (the worker needs s3:ListBucket and s3:PutObject on it; infra/terraform has the policy)", cfg.Sink.S3.Bucket)
		}
		return fmt.Errorf("bucket %s: %w", cfg.Sink.S3.Bucket, err)
	}
	return nil
}

func noTableError(cfg *consumeConfig) error {
	return fmt.Errorf("lease table %s does not exist: set consumer.create_lease_table: true to create it, or check consumer.lease_table and application (a new table starts the stream over from consumer.initial_position)", cfg.Consumer.LeaseTable)
}

// logProgress logs, every interval at info level, what the worker did since the last line:
// records processed and archived, objects written, and the largest lag of its shards.
func logProgress(ctx context.Context, log *slog.Logger, g prometheus.Gatherer, interval time.Duration) {
	var last map[string]float64
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := gatherSums(g, "kinlog_consumer_records_processed_total", "kinlog_sink_records_archived_total", "kinlog_sink_objects_written_total", "kinlog_consumer_millis_behind_latest")
		delta := func(k string) float64 { return now[k] - last[k] }
		log.Info("progress", "interval", interval.String(), "records", delta("kinlog_consumer_records_processed_total"),
			"archived", delta("kinlog_sink_records_archived_total"), "objects", delta("kinlog_sink_objects_written_total"),
			"max_behind", (time.Duration(now["kinlog_consumer_millis_behind_latest"]) * time.Millisecond).String())
		last = now
	}
}

// gatherSums sums each named metric over its series (the maximum, for millis_behind_latest).
func gatherSums(g prometheus.Gatherer, names ...string) map[string]float64 {
	out := map[string]float64{}
	mfs, err := g.Gather()
	if err != nil {
		return out
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, mf := range mfs {
		if !want[mf.GetName()] {
			continue
		}
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if strings.HasSuffix(mf.GetName(), "millis_behind_latest") {
				out[mf.GetName()] = max(out[mf.GetName()], v)
			} else {
				out[mf.GetName()] += v
			}
		}
	}
	return out
}

// gracefulContext returns a context that the first SIGTERM or SIGINT cancels, starting a
// graceful shutdown bounded by timeout; a second signal exits at once.
func gracefulContext(ctx context.Context, log *slog.Logger, timeout time.Duration) (context.Context, context.CancelFunc) {
	runCtx, stop := context.WithCancel(ctx)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		defer signal.Stop(sigs)
		select {
		case s := <-sigs:
			log.Info("shutting down", "signal", s.String(), "deadline", timeout.String())
			stop()
		case <-runCtx.Done():
			return
		}
		if s, ok := <-sigs; ok {
			log.Error("second signal: exiting without a graceful shutdown", "signal", s.String())
			os.Exit(1)
		}
	}()
	return runCtx, stop
}

// build makes the clients, store, sink and consumer of a validated config.
func build(ctx context.Context, cfg *consumeConfig, log *slog.Logger) (*built, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading AWS config: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	table := cfg.Consumer.LeaseTable
	if table == "" {
		table = cfg.Application + "-leases"
		cfg.Consumer.LeaseTable = table
	}
	store, coordinator, err := leaseStores(cfg, dynamodb.NewFromConfig(awsCfg))
	if err != nil {
		return nil, err
	}

	sc := cfg.Sink.S3
	opts := append(conf.SinkOptions(&cfg.Sink, &cfg.Analytics),
		s3sink.WithLogger(log.With("component", "sink")),
		s3sink.WithRegisterer(reg))
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = sc.PathStyle })
	b := &built{s3: s3c, store: store, coord: coordinator, registry: reg}
	// One sink per stream: its objects are named by the stream, its metrics labelled with it.
	for _, stream := range cfg.streams() {
		sink, err := s3sink.New(s3c, sc.Bucket, stream, opts...)
		if err != nil {
			return nil, fmt.Errorf("sink.s3: %w", err)
		}
		b.sinks = append(b.sinks, sink)
	}

	pos, _ := initialPosition(cfg.Consumer.InitialPosition)
	cc := cfg.Consumer
	copts := []consumer.Option{
		consumer.WithInitialPosition(pos),
		consumer.WithFailoverTime(time.Duration(cc.FailoverTime)),
		consumer.WithMaxRecords(cc.MaxRecords),
		consumer.WithIdleTimeBetweenReads(time.Duration(cc.IdleTimeBetweenReads)),
		consumer.WithShardSyncInterval(time.Duration(cc.ShardSyncInterval)),
		consumer.WithCheckpointInterval(time.Duration(cc.CheckpointInterval)),
		consumer.WithMaxBatchesInFlight(cc.MaxBatchesInFlight),
		consumer.WithMaxUnackedBytes(int64(cc.MaxUnackedBytes)),
		consumer.WithOutsideShardRecords(), // the sink writes them to the error output
		consumer.WithShutdownTimeout(time.Duration(cfg.Shutdown.Timeout)),
		consumer.WithLogger(log.With("component", "consumer")),
		consumer.WithRegisterer(reg),
	}
	if cc.WorkerID != "" {
		copts = append(copts, consumer.WithWorkerID(cc.WorkerID))
	}
	if cc.LeaseScanInterval > 0 {
		copts = append(copts, consumer.WithLeaseScanInterval(time.Duration(cc.LeaseScanInterval)))
	}
	if coordinator != nil {
		copts = append(copts, consumer.WithLeaderAssignment(coordinator))
	}
	if !cc.CreateLeaseTable {
		copts = append(copts, consumer.WithoutTableCreation())
	}
	if r, _ := retrieval(cc.Retrieval); r == consumer.FanOut {
		// The application names its stream consumer, as it names its lease table: every
		// worker of the application subscribes as the same consumer.
		name := cc.StreamConsumerName
		if name == "" {
			name = cfg.Application
		}
		copts = append(copts, consumer.WithRetrieval(consumer.FanOut), consumer.WithStreamConsumerName(name))
	}
	b.kinesis = kinesis.NewFromConfig(awsCfg)
	if len(cfg.Streams) == 0 {
		c, err := consumer.New(b.kinesis, store, cfg.Stream, b.sinks[0].NewProcessor, copts...)
		if err != nil {
			return nil, err
		}
		b.run, b.workerID, b.statuses = c.Run, c.WorkerID(), func() []consumer.Status { return []consumer.Status{c.Status()} }
		return b, nil
	}
	streams := make([]consumer.Stream, len(cfg.Streams))
	for i, name := range cfg.Streams {
		streams[i] = consumer.Stream{Name: name, Factory: b.sinks[i].NewProcessor}
	}
	m, err := consumer.NewMultiStream(b.kinesis, store, streams, copts...)
	if err != nil {
		return nil, err
	}
	b.run, b.workerID, b.statuses = m.Run, m.WorkerID(), m.Status
	return b, nil
}

// leaseStores returns the lease store of a config and, with lease_assignment: leader, the
// coordinator store (table <lease_table>-coordinator); the lease store then needs the owner
// index.
func leaseStores(cfg *consumeConfig, client *dynamodb.Client) (store, coordinator *ddbstore.Store, err error) {
	if cfg.Consumer.LeaseAssignment != "leader" {
		store, err = ddbstore.New(client, cfg.Consumer.LeaseTable)
		return store, nil, err
	}
	if store, err = ddbstore.New(client, cfg.Consumer.LeaseTable, ddbstore.WithOwnerIndex()); err != nil {
		return nil, nil, err
	}
	coordinator, err = ddbstore.New(client, cfg.Consumer.LeaseTable+"-coordinator")
	return store, coordinator, err
}

// prefixStreamName is a stream's name, from a name or an ARN.
func prefixStreamName(s string) string {
	if i := strings.LastIndex(s, ":stream/"); strings.HasPrefix(s, "arn:") && i >= 0 {
		return s[i+len(":stream/"):]
	}
	return s
}

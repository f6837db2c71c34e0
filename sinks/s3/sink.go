package s3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/consumer"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// API is the part of the S3 client the sink uses: single-request uploads, and the
// multipart calls of feature/s3/manager for large objects. *s3.Client implements it.
type API interface {
	PutObject(context.Context, *awss3.PutObjectInput, ...func(*awss3.Options)) (*awss3.PutObjectOutput, error)
	CreateMultipartUpload(context.Context, *awss3.CreateMultipartUploadInput, ...func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error)
	UploadPart(context.Context, *awss3.UploadPartInput, ...func(*awss3.Options)) (*awss3.UploadPartOutput, error)
	CompleteMultipartUpload(context.Context, *awss3.CompleteMultipartUploadInput, ...func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(context.Context, *awss3.AbortMultipartUploadInput, ...func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error)
}

// Sink archives the records of a stream's shards into one S3 bucket. It makes one
// processor per shard ([Sink.NewProcessor] is a consumer.ProcessorFactory) and is safe for
// concurrent use.
type Sink struct {
	client API
	bucket string
	stream string
	cfg    config
	log    *slog.Logger
	enc    *encode.Encoder
	pfx    *prefix.Template
	pfxRes time.Duration // pfx.Resolution()
	errPfx *prefix.Template
	anaPfx *prefix.Template
	timeFm encode.TimeFormat
	met    *metrics
	// builders are idle object builders, shared by the shards: their buffers are reused
	// from flush to flush instead of growing from empty each time.
	builders sync.Pool

	mu    sync.Mutex
	procs map[*processor]struct{}

	// health: the current streak of failed S3 writes.
	hmu          sync.Mutex
	failingSince time.Time
	lastPutErr   error
}

// UnhealthyAfter is how long S3 writes must keep failing before [Sink.Healthy] reports it.
const UnhealthyAfter = 15 * time.Second

// Healthy returns an error while S3 writes have kept failing for [UnhealthyAfter] or more
// (records then stay unacknowledged; a readiness probe should turn the worker unready), and
// nil once a write succeeds.
func (s *Sink) Healthy() error {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.failingSince.IsZero() {
		return nil
	}
	if d := s.cfg.clock.Now().Sub(s.failingSince); d >= UnhealthyAfter {
		return fmt.Errorf("S3 writes failing for %s: %w", d.Round(time.Second), s.lastPutErr)
	}
	return nil
}

// putResult records the outcome of one S3 write for Healthy.
func (s *Sink) putResult(err error) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if err == nil {
		s.failingSince, s.lastPutErr = time.Time{}, nil
		return
	}
	if s.failingSince.IsZero() {
		s.failingSince = s.cfg.clock.Now()
	}
	s.lastPutErr = err
}

// New returns a sink writing to bucket for stream. The client comes configured by the
// caller (region, credentials, endpoint; path-style addressing for MinIO).
func New(client API, bucket, stream string, opts ...Option) (*Sink, error) {
	if client == nil {
		return nil, errors.New("s3 sink: nil client")
	}
	if bucket == "" || stream == "" {
		return nil, errors.New("s3 sink: bucket and stream are required")
	}
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Sink{client: client, bucket: bucket, stream: stream, cfg: cfg, log: cfg.log, procs: map[*processor]struct{}{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("sink", "s3", "bucket", bucket, "stream", stream)
	var err error
	if s.enc, err = encode.New(cfg.enc); err != nil {
		return nil, fmt.Errorf("s3 sink: %w", err)
	}
	// !{kinlog:stream} in a prefix is this sink's stream.
	if s.pfx, err = prefix.Parse(prefix.BindStream(cfg.prefix, stream), prefix.AllowTimestamp|prefix.AllowQuery); err != nil {
		return nil, fmt.Errorf("s3 sink: archive prefix: %w", err)
	}
	s.pfxRes = s.pfx.Resolution()
	if s.errPfx, err = prefix.Parse(prefix.BindStream(cfg.errorPrefix, stream), prefix.AllowTimestamp|prefix.AllowErrorType); err != nil {
		return nil, fmt.Errorf("s3 sink: error prefix: %w", err)
	}
	if cfg.rollups {
		if _, err := rollup.NewAggregator(cfg.rollupCfg); err != nil {
			return nil, fmt.Errorf("s3 sink: %w", err)
		}
		if s.anaPfx, err = prefix.Parse(prefix.BindStream(cfg.analyticsPfx, stream), prefix.AllowTimestamp); err != nil {
			return nil, fmt.Errorf("s3 sink: analytics prefix: %w", err)
		}
	}
	if cfg.timeField != "" {
		if s.timeFm, err = encode.ParseTimeFormat(cfg.timeFormat); err != nil {
			return nil, fmt.Errorf("s3 sink: %w", err)
		}
	}
	s.met = newMetrics(stream, s.oldestAge, s.bufferedRecords)
	if cfg.reg != nil {
		for _, c := range s.met.collectors() {
			if err := cfg.reg.Register(c); err != nil {
				return nil, fmt.Errorf("s3 sink: registering metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Bucket returns the archive bucket.
func (s *Sink) Bucket() string { return s.bucket }

// Stream returns the stream whose records the sink archives (it names the objects).
func (s *Sink) Stream() string { return s.stream }

// Collectors returns the sink's Prometheus metrics, for callers that register them
// themselves instead of using [WithRegisterer].
func (s *Sink) Collectors() []prometheus.Collector { return s.met.collectors() }

// NewProcessor returns the processor of one shard. Its signature is a
// consumer.ProcessorFactory.
func (s *Sink) NewProcessor(shardID string) consumer.Processor {
	return newProcessor(s, shardID)
}

var _ consumer.ProcessorFactory = (*Sink)(nil).NewProcessor

func (s *Sink) register(p *processor) {
	s.mu.Lock()
	s.procs[p] = struct{}{}
	s.mu.Unlock()
}

func (s *Sink) unregister(p *processor) {
	s.mu.Lock()
	delete(s.procs, p)
	s.mu.Unlock()
}

func (s *Sink) oldestAge() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest time.Time
	for p := range s.procs {
		if t := p.oldestArrival(); !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return math.Max(0, s.cfg.clock.Now().Sub(oldest).Seconds())
}

func (s *Sink) bufferedRecords() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p := range s.procs {
		n += p.unacked()
	}
	return float64(n)
}

// builder returns an empty object builder.
func (s *Sink) builder() *encode.Builder {
	if b, ok := s.builders.Get().(*encode.Builder); ok {
		b.Reset()
		return b
	}
	return s.enc.NewObject()
}

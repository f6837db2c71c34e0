package conf

import (
	"errors"
	"fmt"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kinlog/kinlog/sinks/dedup"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
	s3sink "github.com/kinlog/kinlog/sinks/s3"
)

// Sink is the sink section: where and how the archive is written. The worker (`kinlog
// consume`) and the Lambda function share it, so that both write the same archive.
type Sink struct {
	S3 SinkS3 `yaml:"s3"`
}

// SinkS3 is the sink.s3 section.
type SinkS3 struct {
	// Bucket is the archive bucket. Required.
	Bucket string `yaml:"bucket"`
	// Prefix is the key template of archive objects. Default: Hive-style
	// logs/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/. !{kinlog:stream} is the
	// stream's name (each stream of a multi-stream worker under a prefix of its own).
	Prefix string `yaml:"prefix"`
	// ErrorPrefix is the key template of records that failed. Default:
	// errors/!{firehose:error-output-type}/dt=.../hour=.../.
	ErrorPrefix string `yaml:"error_prefix"`
	// Encoding is ndjson or parquet. Default: ndjson.
	Encoding string `yaml:"encoding"`
	// Compression is gzip, zstd, snappy or none. Default: gzip (zstd for parquet).
	Compression string `yaml:"compression"`
	// FlushSize is the buffered size that triggers a flush. Default: 5MiB.
	FlushSize ByteSize `yaml:"flush_size"`
	// FlushInterval is the age of the oldest buffered record that triggers a flush.
	// Default: 60s.
	FlushInterval Duration `yaml:"flush_interval"`
	// TimeField takes each record's time from a JSON member instead of the arrival
	// time; TimeFormat says how to read it (auto, rfc3339, unix, unix_ms, …).
	TimeField  string `yaml:"time_field"`
	TimeFormat string `yaml:"time_format"`
	// MaxOpenPartitions per flush. Default: 500.
	MaxOpenPartitions int `yaml:"max_open_partitions"`
	// SSE is "", AES256 or aws:kms (with KMSKeyID, or the account's aws/s3 key when
	// empty). Default: the bucket's default encryption.
	SSE      string `yaml:"sse"`
	KMSKeyID string `yaml:"kms_key_id"`
	// StorageClass of archive objects, e.g. STANDARD_IA. Default: STANDARD.
	StorageClass string `yaml:"storage_class"`
	// PathStyle addressing (MinIO and other S3-compatible stores). Default: false.
	PathStyle bool `yaml:"path_style"`
	// Dedup drops a user record whose kinlog identity (kinlog producer or agent) was
	// already archived on the shard or a parent shard: a re-sent record is archived once.
	// Default: true.
	Dedup *bool `yaml:"dedup"`
	// DedupHorizon forgets a producer not heard from for this long (record arrival time);
	// a re-send arriving later is archived again. Default: 24h.
	DedupHorizon Duration `yaml:"dedup_horizon"`
}

// Analytics is the analytics section: the rollups written beside the archive.
type Analytics struct {
	// Enabled writes rollups beside the archive. Default: true.
	Enabled *bool `yaml:"enabled"`
	// Prefix is the key template of rollup objects. Default:
	// analytics/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/.
	Prefix string `yaml:"prefix"`
	// Window is the tumbling window. Default: 1m.
	Window Duration `yaml:"window"`
	// Dimensions grouped by. Default: service, level, status.
	Dimensions []string `yaml:"dimensions"`
	// NumericFields summarized with count/sum/min/max and quantile sketches.
	NumericFields []string `yaml:"numeric_fields"`
}

// DefaultSink returns the sink section's defaults.
func DefaultSink() Sink {
	var s Sink
	s.S3.Prefix = prefix.DefaultArchive
	s.S3.ErrorPrefix = prefix.DefaultError
	s.S3.Encoding = "ndjson"
	s.S3.FlushSize = ByteSize(s3sink.DefaultBufferSize)
	s.S3.FlushInterval = Duration(s3sink.DefaultBufferInterval)
	s.S3.MaxOpenPartitions = s3sink.DefaultMaxOpenPartitions
	s.S3.DedupHorizon = Duration(dedup.DefaultHorizon)
	return s
}

// DefaultAnalytics returns the analytics section's defaults.
func DefaultAnalytics() Analytics {
	return Analytics{Prefix: prefix.DefaultAnalytics, Window: Duration(rollup.DefaultWindow)}
}

// Resolve fills in the defaults that depend on other keys, for printing the effective
// configuration.
func (s *Sink) Resolve() {
	if s.S3.Dedup == nil {
		on := true
		s.S3.Dedup = &on
	}
	if s.S3.Compression == "" {
		s.S3.Compression = "gzip"
		if s.S3.Encoding == "parquet" {
			s.S3.Compression = "zstd"
		}
	}
}

// Resolve fills in the defaults that depend on other keys.
func (a *Analytics) Resolve() {
	if a.Enabled == nil {
		on := true
		a.Enabled = &on
	}
	if len(a.Dimensions) == 0 {
		a.Dimensions = rollup.DefaultDimensions
	}
}

func bad(key string, err error) error { return &Error{Key: key, Source: "value", Err: err} }

// Validate checks the sink section, naming the key of a wrong value.
func (s *Sink) Validate() error {
	c := &s.S3
	if c.Bucket == "" {
		return bad("sink.s3.bucket", errors.New("required"))
	}
	if _, err := encode.ParseFormat(c.Encoding); err != nil {
		return bad("sink.s3.encoding", err)
	}
	if c.Compression != "" {
		if _, err := encode.ParseCompression(c.Compression); err != nil {
			return bad("sink.s3.compression", err)
		}
	}
	// !{kinlog:stream} is bound by the sink; any stream name checks the rest.
	if _, err := prefix.Parse(prefix.BindStream(c.Prefix, "stream"), prefix.AllowTimestamp|prefix.AllowQuery); err != nil {
		return bad("sink.s3.prefix", err)
	}
	if _, err := prefix.Parse(prefix.BindStream(c.ErrorPrefix, "stream"), prefix.AllowTimestamp|prefix.AllowErrorType); err != nil {
		return bad("sink.s3.error_prefix", err)
	}
	switch c.SSE {
	case "", "AES256", "aws:kms":
	default:
		return bad("sink.s3.sse", fmt.Errorf("want AES256 or aws:kms, got %q", c.SSE))
	}
	if c.TimeField == "" && c.TimeFormat != "" {
		return bad("sink.s3.time_format", errors.New("set without sink.s3.time_field"))
	}
	if c.TimeField != "" {
		if _, err := encode.ParseTimeFormat(c.TimeFormat); err != nil {
			return bad("sink.s3.time_format", err)
		}
	}
	if err := CheckRange("sink.s3.flush_size", int64(c.FlushSize), 1<<10, 5<<30, "b"); err != nil {
		return err
	}
	if err := CheckRange("sink.s3.flush_interval", int64(c.FlushInterval), int64(100*time.Millisecond), int64(24*time.Hour), "d"); err != nil {
		return err
	}
	if err := CheckRange("sink.s3.dedup_horizon", int64(c.DedupHorizon), int64(time.Minute), int64(366*24*time.Hour), "d"); err != nil {
		return err
	}
	return CheckRange("sink.s3.max_open_partitions", int64(c.MaxOpenPartitions), 1, 1<<20, "")
}

// Validate checks the analytics section, naming the key of a wrong value.
func (a *Analytics) Validate() error {
	if _, err := prefix.Parse(prefix.BindStream(a.Prefix, "stream"), prefix.AllowTimestamp); err != nil {
		return bad("analytics.prefix", err)
	}
	if a.Window > 0 && (time.Duration(a.Window) < time.Second || time.Hour%time.Duration(a.Window) != 0) {
		return bad("analytics.window", errors.New("must be at least 1s and divide one hour"))
	}
	return nil
}

// CheckRange returns an error naming key when v is outside [lo, hi]. unit is "d" for
// durations, "b" for byte sizes and "" for plain numbers, and says how the values print.
func CheckRange(key string, v, lo, hi int64, unit string) error {
	if v >= lo && v <= hi {
		return nil
	}
	los, his, vs := fmt.Sprint(lo), fmt.Sprint(hi), fmt.Sprint(v)
	switch unit {
	case "d":
		los, his, vs = time.Duration(lo).String(), time.Duration(hi).String(), time.Duration(v).String()
	case "b":
		lb, _ := ByteSize(lo).MarshalText()
		hb, _ := ByteSize(hi).MarshalText()
		vb, _ := ByteSize(v).MarshalText()
		los, his, vs = string(lb), string(hb), string(vb)
	}
	return bad(key, fmt.Errorf("%s is out of range: want %s to %s", vs, los, his))
}

// SinkOptions returns the archive sink's options for a validated sink and analytics
// section (without a logger or registry, which the caller adds).
func SinkOptions(s *Sink, a *Analytics) []s3sink.Option {
	sc := s.S3
	format, _ := encode.ParseFormat(sc.Encoding)
	enc := encode.Config{Format: format}
	if sc.Compression != "" {
		enc.Compression, _ = encode.ParseCompression(sc.Compression)
	}
	opts := []s3sink.Option{
		s3sink.WithEncoding(enc),
		s3sink.WithPrefix(sc.Prefix),
		s3sink.WithErrorPrefix(sc.ErrorPrefix),
		s3sink.WithBufferSize(int(sc.FlushSize)),
		s3sink.WithBufferInterval(time.Duration(sc.FlushInterval)),
		s3sink.WithMaxOpenPartitions(sc.MaxOpenPartitions),
	}
	if sc.TimeField != "" {
		opts = append(opts, s3sink.WithTimeField(sc.TimeField, sc.TimeFormat))
	}
	if sc.Dedup == nil || *sc.Dedup {
		opts = append(opts, s3sink.WithDedupLimits(dedup.Limits{Horizon: time.Duration(sc.DedupHorizon)}))
	} else {
		opts = append(opts, s3sink.WithoutDedup())
	}
	switch sc.SSE {
	case "AES256":
		opts = append(opts, s3sink.WithSSES3())
	case "aws:kms":
		opts = append(opts, s3sink.WithSSEKMS(sc.KMSKeyID))
	}
	if sc.StorageClass != "" {
		opts = append(opts, s3sink.WithStorageClass(s3types.StorageClass(sc.StorageClass)))
	}
	if a.Enabled == nil || *a.Enabled {
		opts = append(opts, s3sink.WithAnalyticsPrefix(a.Prefix), s3sink.WithRollups(rollup.Config{
			Window: time.Duration(a.Window), Dimensions: a.Dimensions, Numeric: a.NumericFields,
		}))
	} else {
		opts = append(opts, s3sink.WithoutRollups())
	}
	return opts
}

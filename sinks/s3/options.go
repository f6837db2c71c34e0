package s3

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/sinks/dedup"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// Defaults of the options.
const (
	// DefaultBufferSize is the buffered record data (about the uncompressed NDJSON size)
	// that triggers a flush: 5 MiB, Firehose's default buffering hint.
	DefaultBufferSize = 5 << 20
	// DefaultBufferInterval is the age of the oldest buffered record that triggers a flush.
	DefaultBufferInterval = 60 * time.Second
	// DefaultMaxOpenPartitions bounds the distinct archive prefixes of one flush
	// (Firehose's limit of active partitions); a record that would open one more is cut
	// into the next flush.
	DefaultMaxOpenPartitions = 500
	// DefaultUploadConcurrency is how many objects of one flush are written at once.
	DefaultUploadConcurrency = 8
	// DefaultMultipartThreshold is the object size from which uploads are multipart.
	DefaultMultipartThreshold = 32 << 20
	// DefaultPartSize is the part size of multipart uploads.
	DefaultPartSize = 16 << 20
	// DefaultRetryMin and DefaultRetryMax bound the jittered exponential backoff between
	// attempts to write an object or prepare a boundary.
	DefaultRetryMin = 200 * time.Millisecond
	DefaultRetryMax = 30 * time.Second
	// DefaultRequestTimeout is the deadline of one attempt to write an object, before
	// [UploadRateFloor] adds time for its size: long enough for S3's own retries of a
	// throttled or failed request, short enough that an attempt stuck on a connection that
	// never answers (packets dropped, nothing closed) is abandoned, with its connection, and
	// retried on a new one within half a minute.
	DefaultRequestTimeout = 30 * time.Second
	// UploadRateFloor is the slowest upload rate an attempt is given time for: each
	// attempt's deadline is the request timeout plus one second per UploadRateFloor bytes
	// of the object (1 MiB/s: 16 s more for a 16 MiB object).
	UploadRateFloor = 1 << 20
	// MaxKeyLength is S3's limit on a key's length in bytes.
	MaxKeyLength = 1024
)

// Clock is the time source of buffering intervals and retry backoff. It has the method set
// of consumer.Clock, so one fake can drive both.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Checksum is the content checksum sent with every object; S3 refuses a body that does not
// match it.
type Checksum string

// Checksums.
const (
	ChecksumCRC32C Checksum = "CRC32C"
	ChecksumCRC32  Checksum = "CRC32"
	ChecksumSHA256 Checksum = "SHA256"
)

// SSE is a server-side encryption mode.
type SSE uint8

// Encryption modes.
const (
	// SSEDefault sends no encryption header: the bucket's default applies.
	SSEDefault SSE = iota
	// SSES3 asks for SSE-S3 (AES256).
	SSES3
	// SSEKMS asks for SSE-KMS with the key given to [WithSSEKMS] (or the account's default
	// key when empty).
	SSEKMS
)

type config struct {
	enc            encode.Config
	prefix         string
	errorPrefix    string
	timeField      string
	timeFormat     string
	bufferSize     int
	bufferInterval time.Duration
	maxPartitions  int
	rollups        bool
	rollupCfg      rollup.Config
	analyticsPfx   string
	sse            SSE
	kmsKeyID       string
	storageClass   types.StorageClass
	checksum       Checksum
	multipartAt    int
	partSize       int
	concurrency    int
	retryMin       time.Duration
	retryMax       time.Duration
	reqTimeout     time.Duration
	clock          Clock
	log            *slog.Logger
	reg            prometheus.Registerer
	dedup          bool
	dedupLimits    dedup.Limits
}

func defaults() config {
	return config{
		prefix:         prefix.DefaultArchive,
		errorPrefix:    prefix.DefaultError,
		bufferSize:     DefaultBufferSize,
		bufferInterval: DefaultBufferInterval,
		maxPartitions:  DefaultMaxOpenPartitions,
		rollups:        true,
		analyticsPfx:   prefix.DefaultAnalytics,
		checksum:       ChecksumCRC32C,
		multipartAt:    DefaultMultipartThreshold,
		partSize:       DefaultPartSize,
		concurrency:    DefaultUploadConcurrency,
		retryMin:       DefaultRetryMin,
		retryMax:       DefaultRetryMax,
		reqTimeout:     DefaultRequestTimeout,
		clock:          realClock{},
		dedup:          true,
	}
}

// Option configures a [Sink].
type Option func(*config)

// WithEncoding sets the object encoding (format, compression, NDJSON framing, Parquet
// member names). Default: NDJSON lines, gzip.
func WithEncoding(c encode.Config) Option { return func(o *config) { o.enc = c } }

// WithPrefix sets the archive key prefix template (see package prefix). It may use
// !{timestamp:...} and !{partitionKeyFromQuery:...}. Default: [prefix.DefaultArchive],
// logs/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/.
func WithPrefix(template string) Option { return func(o *config) { o.prefix = template } }

// WithErrorPrefix sets the key prefix template of the error output. It may use
// !{timestamp:...} (the record's arrival time) and !{firehose:error-output-type}. Default:
// [prefix.DefaultError].
func WithErrorPrefix(template string) Option { return func(o *config) { o.errorPrefix = template } }

// WithTimeField takes each record's time, for prefixes and rollup windows, from a JSON
// member (dotted for nested members) read with format (see encode.ParseTimeFormat: "auto",
// "rfc3339", "unix", "unix_ms", ... or a Go layout). A record without a readable time goes
// to the error output as partitioning-failed. Default: the Kinesis arrival time
// (ApproximateArrivalTimestamp).
func WithTimeField(member, format string) Option {
	return func(o *config) { o.timeField, o.timeFormat = member, format }
}

// WithBufferSize sets the buffered record bytes (each record's data plus a newline if it
// has none, about the uncompressed NDJSON size) that trigger a flush. The flush includes
// the record that reached the size, so the cut is a function of the records alone.
// Default: [DefaultBufferSize] (5 MiB).
func WithBufferSize(n int) Option { return func(o *config) { o.bufferSize = n } }

// WithBufferInterval sets how long the oldest buffered record waits, on the sink's clock,
// before a flush; 0 flushes at the end of every batch handed over. Default:
// [DefaultBufferInterval] (60 s).
func WithBufferInterval(d time.Duration) Option { return func(o *config) { o.bufferInterval = d } }

// WithMaxOpenPartitions bounds the distinct archive prefixes of one flush; a record that
// would open one more starts the next flush. Default: [DefaultMaxOpenPartitions] (500).
func WithMaxOpenPartitions(n int) Option { return func(o *config) { o.maxPartitions = n } }

// WithRollups sets the analytics rollups computed from every flush. Default: enabled, with
// rollup.Config's defaults (1-minute windows by service, level and status).
func WithRollups(c rollup.Config) Option {
	return func(o *config) { o.rollups, o.rollupCfg = true, c }
}

// WithoutRollups turns the analytics rollups off. Default: on.
func WithoutRollups() Option { return func(o *config) { o.rollups = false } }

// WithAnalyticsPrefix sets the key prefix template of rollup objects; it may use
// !{timestamp:...} (the window's start). Default: [prefix.DefaultAnalytics].
func WithAnalyticsPrefix(template string) Option {
	return func(o *config) { o.analyticsPfx = template }
}

// WithSSES3 asks S3 to encrypt objects with SSE-S3 (AES256). Default: no header (the
// bucket's default encryption).
func WithSSES3() Option { return func(o *config) { o.sse, o.kmsKeyID = SSES3, "" } }

// WithSSEKMS asks S3 to encrypt objects with SSE-KMS under keyID (a key id, ARN or alias;
// "" for the AWS managed key). Default: no header (the bucket's default encryption).
func WithSSEKMS(keyID string) Option { return func(o *config) { o.sse, o.kmsKeyID = SSEKMS, keyID } }

// WithStorageClass sets the objects' storage class. Default: none sent (STANDARD).
func WithStorageClass(c types.StorageClass) Option { return func(o *config) { o.storageClass = c } }

// WithChecksum sets the content checksum sent with every object. Default: [ChecksumCRC32C].
func WithChecksum(c Checksum) Option { return func(o *config) { o.checksum = c } }

// WithMultipart sets the object size from which uploads are multipart, and the part size
// (at least 5 MiB). Default: [DefaultMultipartThreshold] (32 MiB), [DefaultPartSize]
// (16 MiB).
func WithMultipart(threshold, partSize int) Option {
	return func(o *config) { o.multipartAt, o.partSize = threshold, partSize }
}

// WithUploadConcurrency sets how many objects of one flush are written at once. Default:
// [DefaultUploadConcurrency] (8).
func WithUploadConcurrency(n int) Option { return func(o *config) { o.concurrency = n } }

// WithRetryBackoff bounds the jittered exponential backoff between attempts to write an
// object or prepare a boundary; attempts go on until they succeed or the lease is lost.
// Default: [DefaultRetryMin] (200 ms) to [DefaultRetryMax] (30 s).
func WithRetryBackoff(min, max time.Duration) Option {
	return func(o *config) { o.retryMin, o.retryMax = min, max }
}

// WithRequestTimeout sets the deadline of each attempt to write an object: d, plus one
// second per [UploadRateFloor] bytes of the object (a multipart upload is one attempt). An
// attempt that does not finish in time is abandoned, closing its connection, and retried
// with backoff like any failed write, so a connection that never answers stalls a shard for
// about d instead of until it closes. 0 means no deadline: an attempt waits as long as its
// connection stays open. Default: [DefaultRequestTimeout] (30 s).
//
// Preparing a flush's boundary in the lease table is bounded by the consumer (a third of
// its failover time per call), not by this option.
func WithRequestTimeout(d time.Duration) Option { return func(o *config) { o.reqTimeout = d } }

// WithDedupLimits bounds the deduplication state kept per shard (see sinks/dedup).
// Deduplication is on by default: a user record whose kinlog identity (from the kinlog
// producer or agent) was already archived on the shard or one of its parents is dropped and
// counted in kinlog_sink_records_deduplicated_total. Records without identity are archived
// as before.
func WithDedupLimits(l dedup.Limits) Option {
	return func(o *config) { o.dedup, o.dedupLimits = true, l }
}

// WithoutDedup archives every user record, duplicates included, and keeps no
// deduplication state (a state already stored with a checkpoint is left as it is).
func WithoutDedup() Option { return func(o *config) { o.dedup = false } }

// WithClock sets the clock of buffering intervals and retry backoff. Default: the system
// clock.
func WithClock(c Clock) Option { return func(o *config) { o.clock = c } }

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *config) { o.log = l } }

// WithRegisterer registers the sink's Prometheus metrics with r. Default: not registered.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *config) { o.reg = r } }

func (c *config) validate() error {
	switch {
	case c.bufferSize < 1:
		return fmt.Errorf("s3 sink: buffer size %d is below 1", c.bufferSize)
	case c.bufferInterval < 0:
		return fmt.Errorf("s3 sink: negative buffer interval %v", c.bufferInterval)
	case c.maxPartitions < 1:
		return fmt.Errorf("s3 sink: max open partitions %d is below 1", c.maxPartitions)
	case c.concurrency < 1:
		return fmt.Errorf("s3 sink: upload concurrency %d is below 1", c.concurrency)
	case c.partSize < 5<<20:
		return fmt.Errorf("s3 sink: part size %d is below 5 MiB", c.partSize)
	case c.multipartAt < c.partSize:
		return fmt.Errorf("s3 sink: multipart threshold %d is below the part size %d", c.multipartAt, c.partSize)
	case c.retryMin <= 0 || c.retryMax < c.retryMin:
		return fmt.Errorf("s3 sink: retry backoff %v..%v is invalid", c.retryMin, c.retryMax)
	case c.reqTimeout < 0:
		return fmt.Errorf("s3 sink: negative request timeout %v", c.reqTimeout)
	case c.clock == nil:
		return fmt.Errorf("s3 sink: nil clock")
	}
	switch c.checksum {
	case ChecksumCRC32C, ChecksumCRC32, ChecksumSHA256:
	default:
		return fmt.Errorf("s3 sink: unknown checksum %q", c.checksum)
	}
	return nil
}

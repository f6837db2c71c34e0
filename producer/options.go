package producer

import (
	"errors"
	"fmt"
	"time"

	"github.com/kinlog/kinlog/internal/kpl"
)

// Kinesis service limits and the producer's defaults.
const (
	// MaxRequestEntries is the most entries one PutRecords request may carry (500).
	MaxRequestEntries = 500
	// DefaultMaxRequestBytes is the default byte limit of one PutRecords request (5 MiB).
	DefaultMaxRequestBytes = 5 << 20
	// MaxRequestBytesLimit is the largest request byte limit accepted (10 MiB).
	MaxRequestBytesLimit = 10 << 20
	// DefaultMaxRecordSize is the default largest record, partition key plus data (1 MiB).
	DefaultMaxRecordSize = 1 << 20
	// MaxRecordSizeLimit is the largest record size a stream can be raised to (10 MiB).
	MaxRecordSizeLimit = 10 << 20
	// MaxPartitionKeyLength is the longest partition key, in characters (256).
	MaxPartitionKeyLength = 256
	// DefaultMaxAggregateSize is the KPL's default AggregationMaxSize (51200 bytes).
	DefaultMaxAggregateSize = kpl.DefaultMaxSize
	// DefaultMaxBufferedBytes is the default byte bound of the buffer (64 MiB).
	DefaultMaxBufferedBytes = 64 << 20
	// DefaultMaxBufferedRecords is the default record bound of the buffer (1,000,000).
	DefaultMaxBufferedRecords = 1_000_000
	// DefaultLinger is the default longest time a record waits to be batched (100 ms, the
	// KPL's RecordMaxBufferedTime).
	DefaultLinger = 100 * time.Millisecond
	// DefaultMaxInFlight is the default number of concurrent PutRecords requests (8).
	DefaultMaxInFlight = 8
	// DefaultRateLimit is the default per-shard rate limit, in percent of the shard's
	// write limits (150, the KPL's RateLimit).
	DefaultRateLimit = 150
	// DefaultRecordTTL is the default time to live of a record (30 s, the KPL's RecordTtl).
	DefaultRecordTTL = 30 * time.Second
	// DefaultRequestTimeout bounds one PutRecords or ListShards call, retries inside the SDK
	// included (30 s).
	DefaultRequestTimeout = 30 * time.Second
	// DefaultRetryBackoff and DefaultMaxRetryBackoff bound the jittered exponential backoff
	// between retries (100 ms doubling up to 5 s).
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxRetryBackoff = 5 * time.Second

	// Per-shard write limits of Kinesis.
	shardBytesPerSecond   = 1 << 20
	shardRecordsPerSecond = 1000
)

type config struct {
	maxBufferedBytes   int64
	maxBufferedRecords int64
	linger             time.Duration
	maxRequestEntries  int
	maxRequestBytes    int
	maxInFlight        int
	aggregate          bool
	maxAggregateSize   int
	maxRecordSize      int
	rateLimit          int
	ttl                time.Duration
	backoff            time.Duration
	maxBackoff         time.Duration
	onResult           func(Result)
	sdkSerializer      bool
	requestTimeout     time.Duration
	requestBytesSet    bool
	ttlSet             bool
	spoolDir           string
	spool              SpoolOptions
	identity           bool
}

func defaultConfig() config {
	return config{
		maxBufferedBytes:   DefaultMaxBufferedBytes,
		maxBufferedRecords: DefaultMaxBufferedRecords,
		linger:             DefaultLinger,
		maxRequestEntries:  MaxRequestEntries,
		maxRequestBytes:    DefaultMaxRequestBytes,
		maxInFlight:        DefaultMaxInFlight,
		aggregate:          true,
		maxAggregateSize:   DefaultMaxAggregateSize,
		maxRecordSize:      DefaultMaxRecordSize,
		rateLimit:          DefaultRateLimit,
		ttl:                DefaultRecordTTL,
		backoff:            DefaultRetryBackoff,
		maxBackoff:         DefaultMaxRetryBackoff,
		requestTimeout:     DefaultRequestTimeout,
		identity:           true,
	}
}

// An Option tunes a [Producer]; pass options to [New].
type Option func(*config)

// WithMaxBufferedBytes bounds the bytes (partition keys plus data) of records accepted but
// not yet reported: Put blocks and TryPut fails beyond it. The default is 64 MiB; it must be
// at least the maximum record size.
func WithMaxBufferedBytes(n int64) Option { return func(c *config) { c.maxBufferedBytes = n } }

// WithMaxBufferedRecords bounds the number of records accepted but not yet reported. The
// default is 1,000,000.
func WithMaxBufferedRecords(n int64) Option { return func(c *config) { c.maxBufferedRecords = n } }

// WithLinger sets the longest time a record waits for others to fill its aggregate and
// request before it is sent. The default is 100 ms; 0 sends as soon as possible.
func WithLinger(d time.Duration) Option { return func(c *config) { c.linger = d } }

// WithMaxRequestEntries sets the most Kinesis records per PutRecords request. The default
// and maximum is 500.
func WithMaxRequestEntries(n int) Option { return func(c *config) { c.maxRequestEntries = n } }

// WithMaxRequestBytes sets the byte limit of one PutRecords request (data plus partition
// keys). The default is 5 MiB; the maximum 10 MiB, which current Kinesis accepts.
func WithMaxRequestBytes(n int) Option {
	return func(c *config) { c.maxRequestBytes, c.requestBytesSet = n, true }
}

// WithMaxInFlight sets how many PutRecords requests may be outstanding at once. The default
// is 8.
func WithMaxInFlight(n int) Option { return func(c *config) { c.maxInFlight = n } }

// WithAggregation turns KPL aggregation on or off. The default is on; off sends every user
// record as its own Kinesis record.
func WithAggregation(on bool) Option { return func(c *config) { c.aggregate = on } }

// WithMaxAggregateSize sets the largest KPL aggregate in bytes. The default is 51200 (the
// KPL's); records bigger than this go out unaggregated.
func WithMaxAggregateSize(n int) Option { return func(c *config) { c.maxAggregateSize = n } }

// WithMaxRecordSize sets the largest record accepted by Put (partition key plus data). The
// default is 1 MiB, the Kinesis default; streams raised with UpdateMaxRecordSize accept up
// to 10 MiB. Unless [WithMaxRequestBytes] is given too, the request byte limit is raised
// to the record size when that is larger.
func WithMaxRecordSize(n int) Option { return func(c *config) { c.maxRecordSize = n } }

// WithRateLimit sets the per-shard rate limit in percent of the shard's write limits
// (1 MiB/s and 1000 records/s). The default is 150, as in the KPL; 0 turns local rate
// limiting off.
func WithRateLimit(percent int) Option { return func(c *config) { c.rateLimit = percent } }

// WithRecordTTL sets how long a record may wait for delivery, retries included, before it
// is reported failed with [ErrRecordExpired]. The default is 30 s without a spool and 0 with
// one ([WithSpool]); 0 means forever.
func WithRecordTTL(d time.Duration) Option { return func(c *config) { c.ttl, c.ttlSet = d, true } }

// WithRetryBackoff sets the first and the largest delay between retries of a failed Kinesis
// record; the delay doubles per attempt and is jittered. The defaults are 100 ms and 5 s.
func WithRetryBackoff(first, max time.Duration) Option {
	return func(c *config) { c.backoff, c.maxBackoff = first, max }
}

// WithRequestTimeout bounds each PutRecords and ListShards call (the SDK's own retries
// included); a call that runs out of time is retried like a transport error. The default is
// 30 s.
func WithRequestTimeout(d time.Duration) Option { return func(c *config) { c.requestTimeout = d } }

// WithResultHandler sets a function called with the outcome of every record. Calls are
// serial, from the producer's own goroutine: the function must return quickly and must not
// call Put, Flush or Close. The default is none (outcomes are only counted in [Stats]).
func WithResultHandler(f func(Result)) Option { return func(c *config) { c.onResult = f } }

// WithSDKSerializer makes PutRecords requests go through the SDK's own request serializer.
// By default the producer writes the JSON body of PutRecords itself — the same document —
// into a reused, exactly sized buffer, which costs a fraction of the CPU; it does so only
// when the client speaks the awsJson1_1 protocol, and leaves every other call and every
// response to the SDK.
func WithSDKSerializer() Option { return func(c *config) { c.sdkSerializer = true } }

// WithIdentity sets whether records carry their kinlog identity (default true): the
// producer id and the record's sequence number, with the producer's acknowledgement floor,
// in the tags of their KPL aggregate (see docs/identity.md). The archive sink drops a
// record whose identity it archived before, so a record the producer sent twice — a
// request that timed out after Kinesis applied it, a spool replayed after a crash — is
// archived once. With it, a record that would go out alone goes out as an aggregate of
// one. Turn it off for output byte-identical to the KPL's (no tags, lone records
// unaggregated); [WithAggregation](false) turns it off too, and a record too large for an
// aggregate goes without it.
func WithIdentity(on bool) Option { return func(c *config) { c.identity = on } }

func (c *config) validate() error {
	if !c.requestBytesSet && c.maxRecordSize > c.maxRequestBytes && c.maxRecordSize <= MaxRequestBytesLimit {
		c.maxRequestBytes = c.maxRecordSize
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.maxRecordSize <= 0 || c.maxRecordSize > MaxRecordSizeLimit {
		bad("max record size %d outside 1..%d", c.maxRecordSize, MaxRecordSizeLimit)
	}
	if c.maxRequestBytes <= 0 || c.maxRequestBytes > MaxRequestBytesLimit {
		bad("max request bytes %d outside 1..%d", c.maxRequestBytes, MaxRequestBytesLimit)
	}
	if c.maxRecordSize > c.maxRequestBytes {
		bad("max record size %d exceeds max request bytes %d: raise WithMaxRequestBytes", c.maxRecordSize, c.maxRequestBytes)
	}
	if c.maxRequestEntries <= 0 || c.maxRequestEntries > MaxRequestEntries {
		bad("max request entries %d outside 1..%d", c.maxRequestEntries, MaxRequestEntries)
	}
	if c.maxBufferedBytes < int64(c.maxRecordSize) {
		bad("max buffered bytes %d is below the max record size %d", c.maxBufferedBytes, c.maxRecordSize)
	}
	if c.maxBufferedRecords <= 0 {
		bad("max buffered records %d must be positive", c.maxBufferedRecords)
	}
	if c.linger < 0 {
		bad("negative linger %v", c.linger)
	}
	if c.maxInFlight <= 0 {
		bad("max in flight %d must be positive", c.maxInFlight)
	}
	if c.maxAggregateSize < kpl.Overhead+8 || c.maxAggregateSize+MaxPartitionKeyLength > c.maxRecordSize {
		bad("max aggregate size %d outside %d..%d (max record size less a partition key)", c.maxAggregateSize, kpl.Overhead+8, c.maxRecordSize-MaxPartitionKeyLength)
	}
	if c.rateLimit < 0 {
		bad("negative rate limit %d", c.rateLimit)
	}
	if c.requestTimeout <= 0 {
		bad("request timeout %v must be positive", c.requestTimeout)
	}
	if c.ttl < 0 {
		bad("negative record TTL %v", c.ttl)
	}
	if !c.aggregate {
		c.identity = false
	}
	if c.spoolDir != "" {
		if !c.ttlSet {
			c.ttl = 0
		}
		if err := c.spool.resolve(c.maxRecordSize); err != nil {
			errs = append(errs, err)
		}
	}
	if c.backoff <= 0 || c.maxBackoff < c.backoff {
		bad("retry backoff %v..%v: first must be positive and at most the largest", c.backoff, c.maxBackoff)
	}
	if len(errs) > 0 {
		return fmt.Errorf("producer: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

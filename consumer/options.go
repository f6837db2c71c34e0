package consumer

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/checkpoint"
)

// Defaults of the options. They follow the Java KCL where it has an equivalent.
const (
	DefaultFailoverTime           = 10 * time.Second
	DefaultMaxRecords             = 10000
	DefaultIdleTimeBetweenReads   = time.Second
	DefaultMaxBatchesInFlight     = 1000
	DefaultShardSyncInterval      = time.Minute
	DefaultCheckpointInterval     = time.Second
	DefaultShutdownTimeout        = 30 * time.Second
	DefaultMaxLeasesToStealAtOnce = 1
	// DefaultMaxUnackedBytes bounds the records a worker read and its processors have not
	// acknowledged yet, over all its shards.
	DefaultMaxUnackedBytes = 64 << 20
)

// Kinesis service limits the reader honours.
const (
	// MaxRecordsPerGetRecords is the most records one GetRecords call returns.
	MaxRecordsPerGetRecords = 10000
	// MinGetRecordsInterval spaces GetRecords calls on one shard: 5 calls per second.
	MinGetRecordsInterval = 200 * time.Millisecond
	// ReadBytesPerSecond is a shard's read throughput: 2 MB/s.
	ReadBytesPerSecond = 2 << 20
)

// InitialPosition is where a worker starts reading a shard that has no checkpoint yet. Use
// [TrimHorizon], [Latest] or [AtTimestamp].
type InitialPosition struct {
	kind string
	at   time.Time
}

var (
	// TrimHorizon starts at the oldest record in the stream.
	TrimHorizon = InitialPosition{kind: checkpoint.TrimHorizon}
	// Latest starts after the newest record: only records put after the lease was created
	// are read. Closed shards are skipped.
	Latest = InitialPosition{kind: checkpoint.Latest}
)

// AtTimestamp starts at the first record that arrived at or after t.
func AtTimestamp(t time.Time) InitialPosition {
	return InitialPosition{kind: checkpoint.AtTimestamp, at: t}
}

func (p InitialPosition) String() string {
	if p.kind == checkpoint.AtTimestamp {
		return p.kind + "(" + p.at.UTC().Format(time.RFC3339Nano) + ")"
	}
	return p.kind
}

// Clock is the time source of a [Consumer]: lease liveness, renewal, polling and backoff
// all read it. Tests inject a fake one (or run inside testing/synctest).
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Option configures a [Consumer].
type Option func(*config)

type config struct {
	outsideShard       bool
	workerID           string
	failover           time.Duration
	renewInterval      time.Duration
	scanInterval       time.Duration // as set; 0 for the default
	takeInterval       time.Duration
	initial            InitialPosition
	maxRecords         int32
	idle               time.Duration
	maxInFlight        int
	maxUnackedBytes    int64
	syncInterval       time.Duration
	checkpointInterval time.Duration
	shutdownTimeout    time.Duration
	maxSteal           int
	clock              Clock
	log                *slog.Logger
	registerer         prometheus.Registerer
	noCreate           bool
	retrieval          Retrieval
	consumerName       string
	coordinator        checkpoint.Store // leader assignment's; nil: every worker scans
}

// Retrieval is how a [Consumer] reads its shards: [Polling] (GetRecords, the default) or
// [FanOut] (enhanced fan-out, SubscribeToShard).
type Retrieval int

const (
	// Polling reads each held shard with GetRecords: at most 5 calls per second and 2 MB/s
	// per shard, shared by every consumer of the stream.
	Polling Retrieval = iota
	// FanOut reads each held shard through an enhanced fan-out subscription
	// (SubscribeToShard over HTTP/2) of a registered stream consumer: records are pushed as
	// they arrive, with 2 MB/s per shard for this consumer alone. The client must implement
	// [FanOutAPI] (*kinesis.Client does, over HTTPS: HTTP/2 needs TLS). Registered consumers
	// are billed by the hour and per GB read; at most 20 per stream. See
	// [WithStreamConsumerName] and [DeregisterStreamConsumer].
	FanOut
)

func (r Retrieval) String() string {
	switch r {
	case Polling:
		return "polling"
	case FanOut:
		return "fanout"
	}
	return fmt.Sprintf("Retrieval(%d)", int(r))
}

// WithRetrieval sets how shards are read: [Polling] (the default) or [FanOut].
func WithRetrieval(r Retrieval) Option { return func(c *config) { c.retrieval = r } }

// WithStreamConsumerName sets the name of the stream consumer that [FanOut] registers (if it
// is not registered yet) and subscribes with. Every worker of one application must use the
// same name — it identifies the application to Kinesis, as the KCL's applicationName does —
// and two applications reading the same stream need different names. The default is the
// lease table's name when the store reports one (checkpoint/dynamodb does: a KCL
// application names both its lease table and its stream consumer after itself); with
// another store, FanOut needs this option. kinlog consume defaults it to its application
// key. Polling ignores it.
func WithStreamConsumerName(name string) Option { return func(c *config) { c.consumerName = name } }

// WithLeaderAssignment makes one elected worker of the application list the lease table and
// assign leases to the others, instead of every worker listing the whole table every lease
// scan interval: each worker then reads only its own leases (through the lease store's
// [checkpoint.OwnerIndex]; kinlog's DynamoDB store needs dynamodb.WithOwnerIndex) and one
// item, so the table's read load grows with the shards, not with shards × workers. The
// workers' heartbeats and the leader lease are kept in coordinator, a store of its own (for
// DynamoDB, a second table: never the lease table, which the KCL may share). Every worker of
// an application must use the same mode and coordinator. Failover and balancing take about
// as long as without it: the leader assigns a dead worker's leases once its heartbeat has
// not moved for the failover time, and moves one lease per under-loaded worker per cycle.
// Not for a [MultiStream] worker.
func WithLeaderAssignment(coordinator checkpoint.Store) Option {
	return func(c *config) { c.coordinator = coordinator }
}

// WithoutTableCreation makes Run require an existing lease table instead of creating a
// missing one: with a store that implements [checkpoint.TableChecker], Run returns an error
// wrapping [checkpoint.ErrNoTable] when the table is missing (a typo in its name would
// otherwise start a new table and read the stream again from the initial position).
func WithoutTableCreation() Option { return func(c *config) { c.noCreate = true } }

// WithWorkerID sets the worker id written as the owner of the leases this worker holds.
// Every worker of a fleet needs a distinct id. The default is the host name followed by a
// random suffix, so a restarted process is a new worker.
func WithWorkerID(id string) Option { return func(c *config) { c.workerID = id } }

// WithFailoverTime sets the time after which a lease whose counter has not moved is
// considered expired and may be taken by another worker (the KCL's failoverTimeMillis).
// Leases are renewed every failover/3 and the lease table is scanned for leases to take
// every failover/10 (see [WithLeaseScanInterval]). The default is 10s.
func WithFailoverTime(d time.Duration) Option { return func(c *config) { c.failover = d } }

// WithLeaseScanInterval sets how often the worker reads the whole lease table to take
// unowned and expired leases and to balance shards between workers. A dead worker's
// leases are taken within the failover time plus this interval. Each scan is a DynamoDB
// Scan of the table (about one read unit per 8 leases, eventually consistent), so a large
// table read by many workers every second costs real money: a longer interval trades
// failover and balancing speed for fewer reads. The default is failover/10 (1s at the
// default failover time).
func WithLeaseScanInterval(d time.Duration) Option { return func(c *config) { c.scanInterval = d } }

// WithInitialPosition sets where shards without a checkpoint start. The default is
// [TrimHorizon]. Children of shards that already have leases always start at
// TRIM_HORIZON, so nothing between a parent's end and its children is skipped.
func WithInitialPosition(p InitialPosition) Option { return func(c *config) { c.initial = p } }

// WithMaxRecords sets the largest Limit of a GetRecords call, 1 to 10000. The default is
// 10000. A reader asks for fewer when fewer fill half a second of the shard's read
// throughput ([ReadBytesPerSecond]), judged by the last response's records, and for 1000
// on its first call (see Reading in the package documentation).
func WithMaxRecords(n int) Option { return func(c *config) { c.maxRecords = int32(n) } }

// WithIdleTimeBetweenReads sets the longest wait between GetRecords calls on a shard that is
// caught up (an empty response with MillisBehindLatest 0). The wait starts at 200ms after
// the first empty read and doubles up to this value; a read that returns records resets it.
// The default is 1s.
func WithIdleTimeBetweenReads(d time.Duration) Option { return func(c *config) { c.idle = d } }

// WithOutsideShardRecords delivers the user records of KPL aggregates that lie outside the
// shard's hash-key range, marked [Record.OutsideShard], instead of dropping them as the KCL
// does. The KPL sends such an aggregate again to the right shard, so for its records they
// are duplicates; another aggregator may not, and then they are the only copy. The archive
// sink writes them to its error output. Default: dropped, counted and logged.
func WithOutsideShardRecords() Option { return func(c *config) { c.outsideShard = true } }

// WithMaxBatchesInFlight caps, per shard, the batches handed to the processor and not yet
// fully acknowledged (counted from the oldest unacknowledged one). When the cap is reached
// the shard's reader waits. The default is 1000, which lets a sink that buffers many small
// batches until its own size or time limit keep reading.
func WithMaxBatchesInFlight(n int) Option { return func(c *config) { c.maxInFlight = n } }

// WithMaxUnackedBytes bounds the bytes of records the worker read and its processors have
// not acknowledged yet, over all its shards (each record counts its data and about 160
// bytes of its own). A shard's reader waits for room before it hands a batch over, so
// memory stays near the bound however many shards the worker holds; a batch larger than
// the bound goes through alone. A processor that holds records must acknowledge them in
// time without being given more (the archive sink flushes on its interval). The default
// is [DefaultMaxUnackedBytes] (64 MiB); 0 or less means no bound.
func WithMaxUnackedBytes(n int64) Option { return func(c *config) { c.maxUnackedBytes = n } }

// WithShardSyncInterval sets how often the worker lists the stream's shards to create leases
// for new shards and delete those of shards gone. A shard reaching its end also triggers a
// sync. The default is 1 minute.
func WithShardSyncInterval(d time.Duration) Option { return func(c *config) { c.syncInterval = d } }

// WithCheckpointInterval sets the shortest time between two checkpoint writes of one shard.
// A write happens as soon as an acknowledgement moves the checkpoint and the previous write
// is at least this old. The default is 1s.
func WithCheckpointInterval(d time.Duration) Option {
	return func(c *config) { c.checkpointInterval = d }
}

// WithShutdownTimeout bounds graceful shutdown: the time processors get in Shutdown and
// ShardEnded callbacks once Run's context has ended, before the final checkpoints and lease
// releases. Leases keep being renewed meanwhile. The default is 30s.
func WithShutdownTimeout(d time.Duration) Option { return func(c *config) { c.shutdownTimeout = d } }

// WithMaxLeasesToStealAtOnce bounds how many leases a worker below its fair share steals
// from the most loaded worker per lease cycle. The default is 1, as in the KCL.
func WithMaxLeasesToStealAtOnce(n int) Option { return func(c *config) { c.maxSteal = n } }

// WithClock sets the clock. The default is the system clock.
func WithClock(clk Clock) Option { return func(c *config) { c.clock = clk } }

// WithLogger sets the logger. The default discards log records.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithRegisterer registers the consumer's Prometheus metrics with r (see the package
// documentation for the list). The default registers nothing.
func WithRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.registerer = r } }

// ErrInvalidOption is wrapped by the errors [New] returns for a bad option.
var ErrInvalidOption = errors.New("consumer: invalid option")

func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

func newConfig(opts []Option) (config, error) {
	c := config{
		failover:           DefaultFailoverTime,
		initial:            TrimHorizon,
		maxRecords:         DefaultMaxRecords,
		idle:               DefaultIdleTimeBetweenReads,
		maxInFlight:        DefaultMaxBatchesInFlight,
		maxUnackedBytes:    DefaultMaxUnackedBytes,
		syncInterval:       DefaultShardSyncInterval,
		checkpointInterval: DefaultCheckpointInterval,
		shutdownTimeout:    DefaultShutdownTimeout,
		maxSteal:           DefaultMaxLeasesToStealAtOnce,
		clock:              realClock{},
	}
	for _, o := range opts {
		o(&c)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
	}
	if c.workerID == "" {
		c.workerID = defaultWorkerID()
	}
	if c.failover < 30*time.Millisecond {
		bad("failover time %v is below 30ms", c.failover)
	}
	switch c.initial.kind {
	case checkpoint.TrimHorizon, checkpoint.Latest:
	case checkpoint.AtTimestamp:
		if c.initial.at.IsZero() {
			bad("AtTimestamp needs a time")
		}
	default:
		bad("unknown initial position %q", c.initial.kind)
	}
	if c.maxRecords < 1 || c.maxRecords > MaxRecordsPerGetRecords {
		bad("max records %d is outside 1..%d", c.maxRecords, MaxRecordsPerGetRecords)
	}
	if c.idle < 0 {
		bad("negative idle time %v", c.idle)
	}
	if c.maxInFlight < 1 {
		bad("max batches in flight %d is below 1", c.maxInFlight)
	}
	if c.syncInterval <= 0 {
		bad("shard sync interval %v is not positive", c.syncInterval)
	}
	if c.checkpointInterval < 0 {
		bad("negative checkpoint interval %v", c.checkpointInterval)
	}
	if c.shutdownTimeout <= 0 {
		bad("shutdown timeout %v is not positive", c.shutdownTimeout)
	}
	if c.maxSteal < 0 {
		bad("max leases to steal %d is negative", c.maxSteal)
	}
	if c.clock == nil {
		bad("nil clock")
	}
	switch c.retrieval {
	case Polling, FanOut:
	default:
		bad("unknown retrieval %v", c.retrieval)
	}
	if c.consumerName != "" && !validConsumerName(c.consumerName) {
		bad("stream consumer name %q: want 1 to 128 of a-z A-Z 0-9 _ . -", c.consumerName)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.renewInterval = c.failover / 3
	switch {
	case c.scanInterval < 0:
		bad("lease scan interval %v is negative", c.scanInterval)
	case c.scanInterval == 0:
		c.takeInterval = c.failover / 10
	default:
		c.takeInterval = c.scanInterval
	}
	return c, errors.Join(errs...)
}

// validConsumerName reports whether s is a valid stream consumer name: 1 to 128 characters
// matching [a-zA-Z0-9_.-]+ (the RegisterStreamConsumer API's pattern).
func validConsumerName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
		default:
			return false
		}
	}
	return true
}

// leaseCallTimeout bounds every call to the lease table made by the worker: one lease
// write (a renewal, checkpoint, prepared boundary or release, with the store's read-back
// after a failed condition), one take, one listing. It is the renewal interval, failover/3:
// a write abandoned after it can still be retried once before the lease would expire, and
// a request on a connection that never answers is given up (the connection with it) instead
// of holding the lease's write lock or the lease scan indefinitely.
func (c *config) leaseCallTimeout() time.Duration { return c.renewInterval }

// listTimeout bounds one listing of the lease table or of the stream's shards, which may
// take several pages.
func (c *config) listTimeout() time.Duration { return c.failover }

package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/backoff"
)

// KinesisAPI is the part of the Kinesis client a [Consumer] uses. *kinesis.Client
// implements it.
type KinesisAPI interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

var _ KinesisAPI = (*kinesis.Client)(nil)

// ErrRunning is returned by [Consumer.Run] when the consumer is already running or has run.
var ErrRunning = errors.New("consumer: Run called more than once")

// Consumer is one worker of a fleet reading a Kinesis stream. Create it with [New] and
// start it with [Consumer.Run].
type Consumer struct {
	client  KinesisAPI
	store   checkpoint.Store
	stream  string
	factory ProcessorFactory
	cfg     config
	log     *slog.Logger
	met     *metrics
	tracker *checkpoint.Tracker
	budget  *byteBudget // bytes read and not yet acknowledged, over all shards; nil: none
	reader  reader
	co      *coordination // leader assignment; nil: every worker scans the table

	// Enhanced fan-out ([FanOut]) only.
	fanout       FanOutAPI
	consumerName string
	consumerARN  atomic.Pointer[string]          // set before the first shard worker starts
	consumerMu   sync.Mutex                      // serializes re-registrations
	closed       atomic.Pointer[map[string]bool] // shards the last shard sync saw closed

	started atomic.Bool
	kick    chan struct{}
	wg      sync.WaitGroup // shard workers

	mu       sync.Mutex
	shards   map[string]*shardWorker
	cooldown map[string]time.Time
}

// New returns a worker for stream (a stream name or ARN) that keeps its leases and
// checkpoints in store and hands records to processors made by factory.
func New(client KinesisAPI, store checkpoint.Store, stream string, factory ProcessorFactory, opts ...Option) (*Consumer, error) {
	cfg, err := newConfig(opts)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if client == nil {
		errs = append(errs, fmt.Errorf("%w: nil Kinesis client", ErrInvalidOption))
	}
	if store == nil {
		errs = append(errs, fmt.Errorf("%w: nil checkpoint store", ErrInvalidOption))
	}
	if stream == "" {
		errs = append(errs, fmt.Errorf("%w: empty stream name", ErrInvalidOption))
	}
	if factory == nil {
		errs = append(errs, fmt.Errorf("%w: nil processor factory", ErrInvalidOption))
	}
	var fanout FanOutAPI
	consumerName := cfg.consumerName
	if cfg.retrieval == FanOut && client != nil {
		var ok bool
		if fanout, ok = client.(FanOutAPI); !ok {
			errs = append(errs, fmt.Errorf("%w: enhanced fan-out needs a client with SubscribeToShard and the stream consumer calls (FanOutAPI; *kinesis.Client has them), got %T", ErrInvalidOption, client))
		}
		if consumerName == "" {
			if t, ok := store.(interface{ Table() string }); ok && validConsumerName(t.Table()) {
				consumerName = t.Table()
			} else {
				errs = append(errs, fmt.Errorf("%w: enhanced fan-out needs a stream consumer name (WithStreamConsumerName)", ErrInvalidOption))
			}
		}
	}
	var index checkpoint.OwnerIndex
	if cfg.coordinator != nil && store != nil {
		var ok bool
		if index, ok = store.(checkpoint.OwnerIndex); !ok {
			errs = append(errs, fmt.Errorf("%w: leader assignment needs a lease store with an owner index (checkpoint.OwnerIndex), got %T", ErrInvalidOption, store))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating consumer: %w", err)
	}
	c := &Consumer{
		client:   client,
		store:    store,
		stream:   stream,
		factory:  factory,
		cfg:      cfg,
		log:      cfg.log.With("stream", stream, "worker", cfg.workerID),
		kick:     make(chan struct{}, 1),
		shards:   make(map[string]*shardWorker),
		cooldown: make(map[string]time.Time),
	}
	c.fanout, c.consumerName = fanout, consumerName
	if cfg.coordinator != nil {
		c.co = newCoordination(c, cfg.coordinator, index)
	}
	c.reader = c.newReader()
	c.tracker = checkpoint.NewTracker(cfg.failover, cfg.clock.Now)
	if cfg.maxUnackedBytes > 0 {
		c.budget = newByteBudget(cfg.maxUnackedBytes)
	}
	c.met = newMetrics(c)
	if cfg.registerer != nil {
		if err := cfg.registerer.Register(c.met); err != nil {
			return nil, fmt.Errorf("creating consumer: registering metrics: %w", err)
		}
	}
	return c, nil
}

// WorkerID returns the id this worker writes as lease owner.
func (c *Consumer) WorkerID() string { return c.cfg.workerID }

func (c *Consumer) streamARN() *string {
	if strings.HasPrefix(c.stream, "arn:") {
		return aws.String(c.stream)
	}
	return nil
}

func (c *Consumer) streamName() *string {
	if strings.HasPrefix(c.stream, "arn:") {
		return nil
	}
	return aws.String(c.stream)
}

// Run makes sure the lease table exists, then discovers shards, takes and renews leases and
// reads the shards it holds until ctx ends. Then it shuts down gracefully: readers stop,
// processors get Shutdown (within the shutdown timeout) and acknowledged positions are
// checkpointed, and the leases are released so that other workers take them at once. Run
// returns nil after a graceful shutdown; it returns an error early only when the lease table
// cannot be made ready, the stream does not exist or — with [FanOut] — the stream consumer
// cannot be registered or does not become ACTIVE in time (see [WithRetrieval]). Run may be
// called once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	ensure := c.store.EnsureTable
	if tc, ok := c.store.(checkpoint.TableChecker); ok && c.cfg.noCreate {
		ensure = tc.CheckTable
	}
	if err := ensure(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ensuring lease table: %w", err)
	}
	if c.co != nil {
		ensure := c.co.store.EnsureTable
		if tc, ok := c.co.store.(checkpoint.TableChecker); ok && c.cfg.noCreate {
			ensure = tc.CheckTable
		}
		if err := ensure(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ensuring the coordinator table: %w", err)
		}
	}
	// life outlives ctx until the shutdown completes: shard workers, renewals and final
	// checkpoints run under it.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()

	stopRenew := make(chan struct{})
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		c.renewLoop(life, stopRenew)
	}()

	err := c.coordinate(ctx, life)

	c.shutdownShards(life)
	if c.co != nil {
		c.resign(life)
	}
	close(stopRenew)
	<-renewDone
	return err
}

// coordinate syncs shards and runs lease cycles until ctx ends.
func (c *Consumer) coordinate(ctx, life context.Context) error {
	clk := c.cfg.clock
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: c.cfg.failover}
	for {
		err := c.syncShards(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		var rnf *types.ResourceNotFoundException
		if errors.As(err, &rnf) {
			return fmt.Errorf("starting consumer of stream %s: %w", c.stream, err)
		}
		c.log.Warn("syncing shards", "err", err)
		if c.sleepUntil(ctx, clk.Now().Add(bo.Next())) != nil {
			return nil
		}
	}
	if c.cfg.retrieval == FanOut {
		// Before any lease is taken: a shard worker subscribes at once.
		if _, err := c.ensureStreamConsumer(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("starting consumer of stream %s: %w", c.stream, err)
		}
	}
	lastSync := clk.Now()
	for {
		if c.co != nil {
			c.coordinatedCycle(ctx, life)
		} else {
			c.leaseCycle(ctx, life)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
			if err := c.syncShards(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("syncing shards", "err", err)
			}
			lastSync = clk.Now()
		case <-clk.After(c.cfg.takeInterval):
			// Under leader assignment only the leader syncs on the interval.
			if clk.Now().Sub(lastSync) >= c.cfg.syncInterval && (c.co == nil || c.leads()) {
				if err := c.syncShards(ctx); err != nil && ctx.Err() == nil {
					c.log.Warn("syncing shards", "err", err)
				}
				lastSync = clk.Now()
			}
		}
	}
}

// kickNow asks the coordinator for a shard sync and a lease cycle now (after a shard ended,
// its children may be ready).
func (c *Consumer) kickNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// coolDown keeps this worker from taking a shard whose processor failed for the failover
// time, so that another worker may try it.
func (c *Consumer) coolDown(shard string) {
	c.mu.Lock()
	c.cooldown[shard] = c.cfg.clock.Now().Add(c.cfg.failover)
	c.mu.Unlock()
}

// cooling returns the shards cooling down at now (see coolDown) and forgets those whose
// cool-down has passed.
func (c *Consumer) cooling(now time.Time) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]bool, len(c.cooldown))
	for k, until := range c.cooldown {
		if now.Before(until) {
			out[k] = true
		} else {
			delete(c.cooldown, k)
		}
	}
	return out
}

func (c *Consumer) startWorker(life context.Context, l checkpoint.Lease) {
	w := newShardWorker(c, life, l)
	c.mu.Lock()
	c.shards[l.Key] = w
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		w.run()
		c.mu.Lock()
		if c.shards[w.id] == w {
			delete(c.shards, w.id)
		}
		c.mu.Unlock()
	}()
}

// held returns the workers of the leases this worker holds.
func (c *Consumer) held() map[string]*shardWorker {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]*shardWorker, len(c.shards))
	for k, w := range c.shards {
		m[k] = w
	}
	return m
}

// maxConcurrentLeaseWrites bounds the concurrent renewals and takes of one worker.
const maxConcurrentLeaseWrites = 32

// renewLoop renews every held lease every failover/3, independently of processing.
func (c *Consumer) renewLoop(life context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-c.cfg.clock.After(c.cfg.renewInterval):
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, maxConcurrentLeaseWrites)
		for _, w := range c.held() {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(life, c.cfg.renewInterval)
				defer cancel()
				w.h.renew(ctx)
			})
		}
		wg.Wait()
	}
}

// shutdownShards stops every shard worker gracefully and waits for them.
func (c *Consumer) shutdownShards(life context.Context) {
	sctx, cancel := context.WithTimeout(life, c.cfg.shutdownTimeout)
	defer cancel()
	held := c.held()
	if len(held) > 0 {
		c.log.Info("shutting down", "shards", len(held))
	}
	stops := make([]func() bool, 0, len(held))
	for _, w := range held {
		stops = append(stops, w.beginShutdown(sctx))
	}
	c.wg.Wait()
	for _, stop := range stops {
		stop()
	}
}

// parentsDone reports whether every parent of l has finished: its lease is at SHARD_END or
// gone from the table.
func parentsDone(l checkpoint.Lease, byKey map[string]checkpoint.Lease) bool {
	for _, p := range l.ParentShardIDs {
		if pl, ok := byKey[p]; ok && pl.Checkpoint.Sequence != checkpoint.ShardEnd {
			return false
		}
	}
	return true
}

// leaseCycle lists the lease table once, takes available leases up to the fair share and,
// when none is available and another worker holds clearly more than this one, steals a
// bounded number from the most loaded worker.
func (c *Consumer) leaseCycle(ctx, life context.Context) {
	lctx, cancel := context.WithTimeout(ctx, c.cfg.listTimeout())
	leases, err := c.store.ListLeases(lctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("listing leases", "err", err)
		}
		return
	}
	leases = shardLeases(leases)
	c.tracker.Observe(leases)
	now := c.cfg.clock.Now()
	self := c.cfg.workerID
	held := c.held()
	byKey := make(map[string]checkpoint.Lease, len(leases))
	for _, l := range leases {
		byKey[l.Key] = l
	}

	// A lease another worker took since this one last wrote it is lost: stop at once
	// rather than at the next renewal.
	for key, w := range held {
		if l, ok := byKey[key]; ok && l.Owner != self && l.Counter > w.h.counter() {
			w.h.markLost("taken by " + l.Owner)
		}
	}

	cooling := c.cooling(now)

	// Leases that need a worker: not finished, and all parents finished.
	var eligible []checkpoint.Lease
	for _, l := range leases {
		if l.Checkpoint.Sequence != checkpoint.ShardEnd && parentsDone(l, byKey) {
			eligible = append(eligible, l)
		}
	}
	if len(eligible) == 0 {
		return
	}
	mine := 0
	for _, w := range held {
		if !w.lost() && !w.stopping.Load() {
			mine++
		}
	}
	counts := map[string]int{}
	var others []string
	for _, l := range eligible {
		if l.Owner == "" || l.Owner == self || c.tracker.Available(l) {
			continue
		}
		if counts[l.Owner] == 0 {
			others = append(others, l.Owner)
		}
		counts[l.Owner]++
	}
	workers := len(others) + 1
	target := (len(eligible) + workers - 1) / workers
	need := target - mine
	if need <= 0 {
		return
	}

	// Available leases: this worker's own (left by an earlier run with the same id), then
	// unowned, then expired; random within each group so that workers spread out.
	var own, free, expired []checkpoint.Lease
	for _, l := range eligible {
		if _, ok := held[l.Key]; ok || cooling[l.Key] {
			continue
		}
		switch {
		case l.Owner == self:
			own = append(own, l)
		case l.Owner == "":
			free = append(free, l)
		case c.tracker.Available(l):
			expired = append(expired, l)
		}
	}
	for _, g := range [][]checkpoint.Lease{own, free, expired} {
		rand.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
	}
	avail := append(append(own, free...), expired...)
	got := c.take(ctx, life, avail[:min(need, len(avail))], false)
	if got >= need || len(avail) > need {
		return
	}
	mine += got

	// Nothing left to take: steal from the most loaded worker when that makes the spread
	// strictly smaller (it holds at least two more than this worker), so that two workers
	// never trade a lease back and forth.
	victim := ""
	for _, o := range others {
		if victim == "" || counts[o] > counts[victim] || (counts[o] == counts[victim] && o < victim) {
			victim = o
		}
	}
	if victim == "" || counts[victim]-mine < 2 || c.cfg.maxSteal == 0 {
		return
	}
	n := min(c.cfg.maxSteal, target-mine, (counts[victim]-mine)/2)
	var theirs []checkpoint.Lease
	for _, l := range eligible {
		if l.Owner == victim && !cooling[l.Key] && !c.tracker.Available(l) {
			theirs = append(theirs, l)
		}
	}
	rand.Shuffle(len(theirs), func(i, j int) { theirs[i], theirs[j] = theirs[j], theirs[i] })
	c.take(ctx, life, theirs[:min(n, len(theirs))], true)
}

// take takes the observed leases concurrently and starts a worker for each one won. It
// returns how many it won.
func (c *Consumer) take(ctx, life context.Context, leases []checkpoint.Lease, steal bool) int {
	var (
		wg  sync.WaitGroup
		won atomic.Int64
	)
	sem := make(chan struct{}, maxConcurrentLeaseWrites)
	for _, l := range leases {
		if ctx.Err() != nil {
			break // shutting down: take nothing more
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			// A take already sent runs under life, not ctx: if shutdown cancelled it, a
			// write DynamoDB applied would leave a lease owned by this worker that nobody
			// releases. Awaited, a lease won gets a shard worker, which shutdown releases.
			tctx, cancel := context.WithTimeout(life, c.cfg.leaseCallTimeout())
			defer cancel()
			got, err := c.store.TakeLease(tctx, l, c.cfg.workerID)
			if err != nil {
				if !errors.Is(err, checkpoint.ErrConflict) && !errors.Is(err, checkpoint.ErrNotFound) && ctx.Err() == nil {
					c.log.Warn("taking lease", "shard", l.Key, "err", err)
				}
				return
			}
			won.Add(1)
			c.met.leaseTakes.Inc()
			if steal {
				c.met.leaseSteals.Inc()
			}
			c.log.Info("took lease", "shard", l.Key, "from", l.Owner, "steal", steal, "checkpoint", got.Checkpoint.String())
			c.startWorker(life, got)
		})
	}
	wg.Wait()
	return int(won.Load())
}

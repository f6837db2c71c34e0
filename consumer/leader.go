package consumer

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
)

// Leader assignment ([WithLeaderAssignment]).
//
// The workers of an application keep two small kinds of items in a coordinator store of
// their own (not in the lease table, which the KCL shares): one heartbeat lease per worker,
// "worker-<id>", renewed like a shard lease, and one leader lease, "leader". Liveness is
// judged by counters on the observer's clock ([checkpoint.Tracker]), never by clocks
// across machines.
//
// Each lease cycle every worker renews its heartbeat, reads the leader lease (one read) and
// takes it when it is unowned or has not been renewed for the failover time, and queries
// the lease store's owner index for the leases it owns ([checkpoint.OwnerIndex]): it takes
// and starts those it does not hold yet (the leader assigned them), and checks with one
// read each the ones it holds that the index no longer lists. That is all a worker reads in
// the steady state: its own leases and a constant.
//
// Only the leader lists the whole lease table and the coordinator store, and only the
// leader syncs shards on the shard-sync interval (others when one of their shards ends). It
// assigns the leases that need a worker — unowned, expired, or owned by a worker whose
// heartbeat expired — to the live workers with the fewest, by taking them on their behalf
// (a conditional take with the worker as owner, fenced like any take), and balances: while
// a worker holds two more than another, it moves one lease of the most loaded to the least
// loaded, at most one per receiving worker per cycle. A worker that took the leader lease
// from a leader that stopped renewing it treats that leader's leases as free at once: the
// leader lease is its heartbeat too.
type coordination struct {
	store checkpoint.Store      // the coordinator store
	index checkpoint.OwnerIndex // the lease store's
	// workers tracks the heartbeats the leader lists; leaderT the leader lease alone.
	workers, leaderT *checkpoint.Tracker

	beat     checkpoint.Lease // this worker's heartbeat as last written; Key "" until taken
	lastBeat time.Time
	leader   checkpoint.Lease // the leader lease as last written, while leading
	lastLead time.Time
	leading  atomic.Bool
	deposed  string // the leader this worker took over from: its leases are free...
	// ...until a failover time after the takeover, when the heartbeats tell again (a
	// restarted worker of that id is then live).
	deposedUntil time.Time
}

const (
	leaderKey       = "leader"
	heartbeatPrefix = "worker-"
)

func newCoordination(c *Consumer, store checkpoint.Store, index checkpoint.OwnerIndex) *coordination {
	return &coordination{
		store:   store,
		index:   index,
		workers: checkpoint.NewTracker(c.cfg.failover, c.cfg.clock.Now),
		leaderT: checkpoint.NewTracker(c.cfg.failover, c.cfg.clock.Now),
	}
}

// leads reports whether this worker leads the lease assignment.
func (c *Consumer) leads() bool { return c.co != nil && c.co.leading.Load() }

// coordinatedCycle is the lease cycle under leader assignment.
func (c *Consumer) coordinatedCycle(ctx, life context.Context) {
	now := c.cfg.clock.Now()
	c.heartbeat(ctx, now)
	c.contend(ctx, now)
	if c.leads() {
		c.assign(ctx, life)
	}
	c.adopt(ctx, life)
}

func (c *Consumer) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.leaseCallTimeout())
}

// heartbeat creates and takes this worker's heartbeat lease, then renews it every renew
// interval.
func (c *Consumer) heartbeat(ctx context.Context, now time.Time) {
	co := c.co
	key := heartbeatPrefix + c.cfg.workerID
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	if co.beat.Key == "" {
		if _, err := co.store.CreateLease(cctx, checkpoint.Lease{Key: key}); err != nil {
			c.log.Warn("creating heartbeat", "err", err)
			return
		}
		l, err := co.store.GetLease(cctx, key)
		if err != nil {
			c.log.Warn("reading heartbeat", "err", err)
			return
		}
		// A take fences an earlier incarnation of this worker id.
		got, err := co.store.TakeLease(cctx, l, c.cfg.workerID)
		if err != nil {
			c.log.Warn("taking heartbeat", "err", err)
			return
		}
		co.beat, co.lastBeat = got, now
		return
	}
	if now.Sub(co.lastBeat) < c.cfg.renewInterval {
		return
	}
	got, err := co.store.RenewLease(cctx, co.beat)
	switch {
	case errors.Is(err, checkpoint.ErrLeaseLost) || errors.Is(err, checkpoint.ErrNotFound):
		c.log.Warn("heartbeat lost: taking it again", "err", err)
		co.beat = checkpoint.Lease{}
	case err != nil:
		c.log.Warn("renewing heartbeat", "err", err)
	default:
		co.beat, co.lastBeat = got, now
	}
}

// contend renews the leader lease while leading; otherwise it reads it and takes it when
// it is free or expired.
func (c *Consumer) contend(ctx context.Context, now time.Time) {
	co := c.co
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	if co.leading.Load() {
		if now.Sub(co.lastLead) < c.cfg.renewInterval {
			return
		}
		got, err := co.store.RenewLease(cctx, co.leader)
		switch {
		case errors.Is(err, checkpoint.ErrLeaseLost) || errors.Is(err, checkpoint.ErrNotFound):
			co.leading.Store(false)
			c.log.Warn("leadership lost", "err", err)
		case err != nil:
			c.log.Warn("renewing leadership", "err", err)
			// Step down before others may consider the leader lease expired: they count
			// the failover time from when they saw the last renewal, never before lastLead.
			if c.cfg.clock.Now().Add(c.cfg.renewInterval).Sub(co.lastLead) >= c.cfg.failover {
				co.leading.Store(false)
				c.log.Warn("leadership given up: the leader lease was not renewed within the failover time")
			}
		default:
			co.leader, co.lastLead = got, now
		}
		return
	}
	l, err := co.store.GetLease(cctx, leaderKey)
	if errors.Is(err, checkpoint.ErrNotFound) {
		if _, err = co.store.CreateLease(cctx, checkpoint.Lease{Key: leaderKey}); err == nil {
			l, err = co.store.GetLease(cctx, leaderKey)
		}
	}
	if err != nil {
		c.log.Warn("reading the leader lease", "err", err)
		return
	}
	co.leaderT.Observe([]checkpoint.Lease{l})
	if l.Owner != "" && l.Owner != c.cfg.workerID && !co.leaderT.Available(l) {
		return
	}
	got, err := co.store.TakeLease(cctx, l, c.cfg.workerID)
	if err != nil {
		if !errors.Is(err, checkpoint.ErrConflict) {
			c.log.Warn("taking the leader lease", "err", err)
		}
		return
	}
	co.leader, co.lastLead, co.deposed = got, now, ""
	if l.Owner != "" && l.Owner != c.cfg.workerID {
		co.deposed = l.Owner // it stopped renewing for the failover time: it is gone
		co.deposedUntil = now.Add(c.cfg.failover)
	}
	co.leading.Store(true)
	c.log.Info("leading the lease assignment", "from", l.Owner)
}

// assign is the leader's: it lists the lease table and the heartbeats, gives the leases that
// need a worker — unowned, not renewed for the failover time, or owned by a worker whose
// heartbeat stopped — to the live workers with the fewest, and moves leases from the most
// loaded worker to the least loaded live one while they differ by two or more.
func (c *Consumer) assign(ctx, life context.Context) {
	co := c.co
	self := c.cfg.workerID
	lctx, cancel := context.WithTimeout(ctx, c.cfg.listTimeout())
	leases, err := c.store.ListLeases(lctx)
	var beats []checkpoint.Lease
	if err == nil {
		beats, err = co.store.ListLeases(lctx)
	}
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("listing leases", "err", err)
		}
		return
	}
	leases = shardLeases(leases)
	c.tracker.Observe(leases)
	co.workers.Observe(beats)

	// live: workers whose heartbeat is renewing, who may be given leases. dead: workers
	// whose heartbeat stopped for the failover time. A worker with no heartbeat yet (just
	// starting) is neither: its leases count as its own while they are renewed.
	live := map[string]bool{self: true}
	dead := map[string]bool{}
	if co.deposed != "" && !c.cfg.clock.Now().Before(co.deposedUntil) {
		co.deposed = ""
	}
	if co.deposed != "" {
		dead[co.deposed] = true
	}
	for _, b := range beats {
		owner, ok := strings.CutPrefix(b.Key, heartbeatPrefix)
		switch {
		case !ok:
		case b.Owner == owner && owner != co.deposed && !co.workers.Available(b):
			live[owner] = true
		case b.Owner == "" || co.workers.Available(b):
			// Released at shutdown, or not renewed for the failover time.
			if owner != self {
				dead[owner] = true
			}
			dctx, cancel := c.callCtx(ctx)
			_ = co.store.DeleteLease(dctx, b.Key)
			cancel()
		}
	}
	byKey := make(map[string]checkpoint.Lease, len(leases))
	for _, l := range leases {
		byKey[l.Key] = l
	}
	cooling := c.cooling(c.cfg.clock.Now())

	load := make(map[string][]checkpoint.Lease, len(live))
	for w := range live {
		load[w] = nil
	}
	var free []checkpoint.Lease
	for _, l := range leases {
		if l.Checkpoint.Sequence == checkpoint.ShardEnd || !parentsDone(l, byKey) {
			continue
		}
		if l.Owner == "" || dead[l.Owner] || c.tracker.Available(l) {
			free = append(free, l)
			continue
		}
		load[l.Owner] = append(load[l.Owner], l)
	}
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	workers := make([]string, 0, len(load))
	for w := range load {
		workers = append(workers, w)
	}
	// least returns the live worker with the fewest leases that may take l.
	least := func(l checkpoint.Lease, not string) string {
		best := ""
		for _, w := range workers {
			if !live[w] || w == not || (w == self && cooling[l.Key]) {
				continue
			}
			if best == "" || len(load[w]) < len(load[best]) || (len(load[w]) == len(load[best]) && w < best) {
				best = w
			}
		}
		return best
	}
	type move struct {
		l     checkpoint.Lease
		to    string
		steal bool
	}
	var moves []move
	for _, l := range free {
		if to := least(l, ""); to != "" {
			moves = append(moves, move{l, to, false})
			load[to] = append(load[to], l)
		}
	}
	// Balance: one lease per receiving worker per cycle, from the most loaded.
	received := map[string]bool{}
	for range workers {
		slices.SortFunc(workers, func(a, b string) int {
			return cmp.Or(cmp.Compare(len(load[b]), len(load[a])), strings.Compare(a, b))
		})
		from := workers[0]
		if len(load[from]) == 0 {
			break
		}
		pick := load[from][rand.N(len(load[from]))]
		to := least(pick, from)
		if to == "" || received[to] || len(load[from])-len(load[to]) < 2 || c.cfg.maxSteal == 0 {
			break
		}
		received[to] = true
		load[from] = slices.DeleteFunc(load[from], func(x checkpoint.Lease) bool { return x.Key == pick.Key })
		load[to] = append(load[to], pick)
		moves = append(moves, move{pick, to, true})
	}
	sem := make(chan struct{}, maxConcurrentLeaseWrites)
	var wg sync.WaitGroup
	for _, m := range moves {
		if ctx.Err() != nil {
			break // shutting down: assign nothing more
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if m.to == self {
				c.take(ctx, life, []checkpoint.Lease{m.l}, m.steal)
				return
			}
			tctx, cancel := c.callCtx(life)
			defer cancel()
			if _, err := c.store.TakeLease(tctx, m.l, m.to); err != nil {
				if !errors.Is(err, checkpoint.ErrConflict) && !errors.Is(err, checkpoint.ErrNotFound) && ctx.Err() == nil {
					c.log.Warn("assigning lease", "shard", m.l.Key, "to", m.to, "err", err)
				}
				return
			}
			c.met.leaseAssignments.Inc()
			c.log.Debug("assigned lease", "shard", m.l.Key, "to", m.to, "from", m.l.Owner, "move", m.steal)
		})
	}
	wg.Wait()
}

// adopt takes and starts the leases the owner index lists for this worker that it does not
// hold (assigned by the leader, or left by an earlier incarnation), and checks the ones it
// holds that the index no longer lists.
func (c *Consumer) adopt(ctx, life context.Context) {
	co := c.co
	self := c.cfg.workerID
	qctx, cancel := c.callCtx(ctx)
	keys, err := co.index.OwnedKeys(qctx, self)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("listing own leases", "err", err)
		}
		return
	}
	listed := make(map[string]bool, len(keys))
	for _, k := range keys {
		listed[k] = true
	}
	held := c.held()
	cooling := c.cooling(c.cfg.clock.Now())
	var toTake []checkpoint.Lease
	for _, k := range keys {
		if _, ok := held[k]; ok || !isShardID(k) {
			continue
		}
		gctx, cancel := c.callCtx(ctx)
		l, err := c.store.GetLease(gctx, k)
		cancel()
		if err != nil || l.Owner != self || l.Checkpoint.Sequence == checkpoint.ShardEnd {
			continue
		}
		if cooling[k] {
			// Its processor failed here lately: hand it back for the leader to give elsewhere.
			rctx, cancel := c.callCtx(ctx)
			_ = c.store.ReleaseLease(rctx, l)
			cancel()
			continue
		}
		toTake = append(toTake, l)
	}
	if len(toTake) > 0 {
		c.take(ctx, life, toTake, false)
	}
	for k, w := range held {
		if listed[k] || w.lost() {
			continue
		}
		gctx, cancel := c.callCtx(ctx)
		l, err := c.store.GetLease(gctx, k)
		cancel()
		if err == nil && l.Owner != self && l.Counter > w.h.counter() {
			w.h.markLost("taken by " + l.Owner)
		}
	}
}

// resign releases the leader lease and the heartbeat at shutdown, so that another worker
// leads at once and the leader stops counting this one.
func (c *Consumer) resign(life context.Context) {
	co := c.co
	ctx, cancel := c.callCtx(life)
	defer cancel()
	if co.leading.Load() {
		if err := co.store.ReleaseLease(ctx, co.leader); err != nil {
			c.log.Warn("releasing the leader lease", "err", err)
		}
		co.leading.Store(false)
	}
	if co.beat.Key != "" {
		if err := co.store.ReleaseLease(ctx, co.beat); err != nil {
			c.log.Warn("releasing the heartbeat", "err", err)
		}
	}
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

// errPartitioned is what a worker's store wrapper returns once the worker is "killed":
// every call fails, as when the process or its network is gone.
var errPartitioned = errors.New("test: worker partitioned away")

// leaseBackend is what kinlog's stores implement, memory and DynamoDB alike.
type leaseBackend interface {
	checkpoint.Store
	checkpoint.OwnerIndex
	checkpoint.StateCheckpointer
	checkpoint.ChildRecorder
}

// workerStore is one worker's view of a shared store: it counts the calls that read the
// lease table, and fails every call once dead is set.
type workerStore struct {
	leaseBackend
	dead              atomic.Bool
	lists, listed     atomic.Int64 // ListLeases calls, and leases they returned
	gets, ownedCalls  atomic.Int64
	ownedKeysReturned atomic.Int64
}

func (w *workerStore) fail() error {
	if w.dead.Load() {
		return errPartitioned
	}
	return nil
}

func (w *workerStore) ListLeases(ctx context.Context) ([]checkpoint.Lease, error) {
	if err := w.fail(); err != nil {
		return nil, err
	}
	ls, err := w.leaseBackend.ListLeases(ctx)
	w.lists.Add(1)
	w.listed.Add(int64(len(ls)))
	return ls, err
}
func (w *workerStore) GetLease(ctx context.Context, key string) (checkpoint.Lease, error) {
	if err := w.fail(); err != nil {
		return checkpoint.Lease{}, err
	}
	w.gets.Add(1)
	return w.leaseBackend.GetLease(ctx, key)
}
func (w *workerStore) OwnedKeys(ctx context.Context, owner string) ([]string, error) {
	if err := w.fail(); err != nil {
		return nil, err
	}
	keys, err := w.leaseBackend.OwnedKeys(ctx, owner)
	w.ownedCalls.Add(1)
	w.ownedKeysReturned.Add(int64(len(keys)))
	return keys, err
}
func (w *workerStore) CreateLease(ctx context.Context, l checkpoint.Lease) (bool, error) {
	if err := w.fail(); err != nil {
		return false, err
	}
	return w.leaseBackend.CreateLease(ctx, l)
}
func (w *workerStore) TakeLease(ctx context.Context, l checkpoint.Lease, owner string) (checkpoint.Lease, error) {
	if err := w.fail(); err != nil {
		return checkpoint.Lease{}, err
	}
	return w.leaseBackend.TakeLease(ctx, l, owner)
}
func (w *workerStore) RenewLease(ctx context.Context, l checkpoint.Lease) (checkpoint.Lease, error) {
	if err := w.fail(); err != nil {
		return checkpoint.Lease{}, err
	}
	return w.leaseBackend.RenewLease(ctx, l)
}
func (w *workerStore) ReleaseLease(ctx context.Context, l checkpoint.Lease) error {
	if err := w.fail(); err != nil {
		return err
	}
	return w.leaseBackend.ReleaseLease(ctx, l)
}
func (w *workerStore) Checkpoint(ctx context.Context, l checkpoint.Lease, cp checkpoint.Checkpoint) (checkpoint.Lease, error) {
	if err := w.fail(); err != nil {
		return checkpoint.Lease{}, err
	}
	return w.leaseBackend.Checkpoint(ctx, l, cp)
}
func (w *workerStore) CheckpointWithState(ctx context.Context, l checkpoint.Lease, cp checkpoint.Checkpoint, st []byte) (checkpoint.Lease, error) {
	if err := w.fail(); err != nil {
		return checkpoint.Lease{}, err
	}
	return w.leaseBackend.CheckpointWithState(ctx, l, cp, st)
}
func (w *workerStore) PrepareCheckpoint(ctx context.Context, l checkpoint.Lease, cp checkpoint.Checkpoint) (checkpoint.Lease, error) {
	if err := w.fail(); err != nil {
		return checkpoint.Lease{}, err
	}
	return w.leaseBackend.PrepareCheckpoint(ctx, l, cp)
}
func (w *workerStore) SetChildShards(ctx context.Context, l checkpoint.Lease, children []string) (checkpoint.Lease, error) {
	if err := w.fail(); err != nil {
		return checkpoint.Lease{}, err
	}
	return w.leaseBackend.SetChildShards(ctx, l, children)
}
func (w *workerStore) DeleteLease(ctx context.Context, key string) error {
	if err := w.fail(); err != nil {
		return err
	}
	return w.leaseBackend.DeleteLease(ctx, key)
}

// leaderFleet runs workers with leader assignment on one lease store and one coordinator.
type leaderFleet struct {
	t             *testing.T
	s             *testStream
	leases, coord *memory.Store
	workers       map[string]*Consumer
	stores        map[string]*workerStore
	coords        map[string]*workerStore
	stops         map[string]func() error
}

func newLeaderFleet(t *testing.T, shards int) *leaderFleet {
	s := newTestStream()
	s.addShards(shards)
	return &leaderFleet{t: t, s: s, leases: memory.New(), coord: memory.New(),
		workers: map[string]*Consumer{}, stores: map[string]*workerStore{}, coords: map[string]*workerStore{}, stops: map[string]func() error{}}
}

func (f *leaderFleet) start(id string) {
	f.t.Helper()
	ws, cs := &workerStore{leaseBackend: f.leases}, &workerStore{leaseBackend: f.coord}
	c, err := New(f.s.api(), ws, testStreamName, newProcLog(true).factory(), WithWorkerID(id), WithLeaderAssignment(cs),
		WithLogger(slog.New(slog.NewTextHandler(f.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))))
	if err != nil {
		f.t.Fatal(err)
	}
	f.workers[id], f.stores[id], f.coords[id] = c, ws, cs
	f.stops[id] = started(f.t, c)
}

// kill cuts a worker off from both stores, then stops it: its shutdown cannot release
// anything, so its leases, heartbeat and (if it led) the leader lease stay as a crash
// leaves them.
func (f *leaderFleet) kill(id string) {
	f.stores[id].dead.Store(true)
	f.coords[id].dead.Store(true)
	_ = f.stops[id]()
	delete(f.workers, id)
}

func (f *leaderFleet) leaders() []string {
	var out []string
	for id, c := range f.workers {
		if c.leads() {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// balanced reports whether every lease is held by a live worker, each lease's holder runs
// its shard, and the live workers' counts differ by at most one.
func (f *leaderFleet) balanced() bool {
	counts := leaseCounts(f.t, f.leases)
	total, lo, hi := 0, 1<<30, 0
	for id, c := range f.workers {
		n := counts[id]
		if len(c.Status().Shards) != n {
			return false
		}
		total += n
		lo, hi = min(lo, n), max(hi, n)
	}
	return total == len(f.s.shards) && hi-lo <= 1
}

// waitFor advances virtual time a second at a time until cond holds and returns how long
// it took; it fails after limit.
func (f *leaderFleet) waitFor(what string, limit time.Duration, cond func() bool) time.Duration {
	f.t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > limit {
			f.t.Fatalf("%s: not after %v; leases %v, leaders %v", what, limit, leaseCounts(f.t, f.leases), f.leaders())
		}
		time.Sleep(time.Second)
		synctest.Wait()
	}
	return time.Since(begin)
}

// TestLeaderAssignment: with leader assignment, one worker leads; it hands out and balances
// the leases of a growing fleet; only it lists the lease table in the steady state (the
// others read their own leases through the owner index and one item); a dead worker's
// leases and a dead leader's are taken over within the failover time and a few cycles, as
// without a leader.
func TestLeaderAssignment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLeaderFleet(t, 16)
		f.start("w1")
		f.waitFor("w1 leading and holding all 16", 10*time.Second, func() bool {
			return fmt.Sprint(f.leaders()) == "[w1]" && f.balanced()
		})
		f.start("w2")
		f.start("w3")
		took := f.waitFor("three workers balanced", time.Minute, f.balanced)
		t.Logf("balanced over three workers in %v", took)
		if got := f.leaders(); fmt.Sprint(got) != "[w1]" {
			t.Fatalf("leaders %v, want w1 alone", got)
		}

		// Steady state: 30 s without a move; only the leader lists the table.
		takes := func() (n float64) {
			for _, c := range f.workers {
				n += counterValue(c.met.leaseTakes) + counterValue(c.met.leaseAssignments)
			}
			return n
		}
		before := takes()
		lists := map[string]int64{}
		owned := map[string]int64{}
		for id, ws := range f.stores {
			lists[id], owned[id] = ws.lists.Load(), ws.ownedCalls.Load()
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if after := takes(); after != before {
			t.Fatalf("%v takes or assignments in a balanced fleet: thrashing", after-before)
		}
		for id, ws := range f.stores {
			n := ws.lists.Load() - lists[id]
			switch {
			case id == "w1" && n < 25:
				t.Errorf("the leader listed the table %d times in 30s, want one per lease cycle", n)
			case id != "w1" && n != 0:
				t.Errorf("%s, not leading, listed the lease table %d times in 30s, want 0", id, n)
			case ws.ownedCalls.Load()-owned[id] < 25:
				t.Errorf("%s queried its own leases %d times in 30s, want one per lease cycle", id, ws.ownedCalls.Load()-owned[id])
			}
		}

		// A worker dies: its leases go to the others.
		f.kill("w3")
		took = f.waitFor("w3's leases taken over", 3*DefaultFailoverTime, f.balanced)
		t.Logf("w3's leases taken over in %v", took)
		if took > DefaultFailoverTime+5*time.Second {
			t.Errorf("takeover of a dead worker took %v, want about the failover time (%v)", took, DefaultFailoverTime)
		}
		// The leader dies: another leads, and takes over its leases too.
		f.kill("w1")
		took = f.waitFor("w2 leading and holding all 16", 3*DefaultFailoverTime, func() bool {
			return fmt.Sprint(f.leaders()) == "[w2]" && f.balanced()
		})
		t.Logf("a dead leader replaced and its leases taken over in %v", took)
		if took > DefaultFailoverTime+5*time.Second {
			t.Errorf("takeover of a dead leader took %v, want about the failover time (%v)", took, DefaultFailoverTime)
		}
		// The dead leader's worker id comes back (a restart): once the new leader stops
		// treating that id as gone, it gets its share again.
		f.start("w1")
		took = f.waitFor("the restarted w1 given its share", 3*DefaultFailoverTime, f.balanced)
		t.Logf("a restarted worker of the deposed leader's id balanced in %v", took)
		if err := f.stops["w1"](); err != nil {
			t.Fatal(err)
		}
		delete(f.workers, "w1")
		f.waitFor("w1's released leases back with w2", 3*DefaultFailoverTime, f.balanced)
		if err := f.stops["w2"](); err != nil {
			t.Fatal(err)
		}
		if got := leaseCounts(t, f.leases); got["w2"] != 0 {
			t.Fatalf("after w2's graceful shutdown: %v, want its leases released", got)
		}
		l, err := f.coord.GetLease(context.Background(), leaderKey)
		if err != nil || l.Owner != "" {
			t.Fatalf("leader lease after the leader's graceful shutdown: %+v, %v; want released", l, err)
		}
	})
}

// TestLeaderCutOffFromTheCoordinator: the leader loses the coordinator store (its lease
// store still answers). It gives up leading before another worker may take the leader
// lease, so there is never more than one leader; another worker leads, and the cut-off
// worker, whose heartbeat stopped, ends up with no lease while the others hold them all.
func TestLeaderCutOffFromTheCoordinator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLeaderFleet(t, 12)
		f.start("w1")
		f.waitFor("w1 leading", 10*time.Second, func() bool { return fmt.Sprint(f.leaders()) == "[w1]" && f.balanced() })
		f.start("w2")
		f.start("w3")
		f.waitFor("three workers balanced", time.Minute, f.balanced)

		f.coords["w1"].dead.Store(true)
		var gaveUp, newLeader time.Duration
		cut := time.Now()
		f.waitFor("another worker leading and w1 without leases", 5*DefaultFailoverTime, func() bool {
			leaders := f.leaders()
			if len(leaders) > 1 {
				t.Fatalf("%v after the cut: two leaders at once", leaders)
			}
			if gaveUp == 0 && !f.workers["w1"].leads() {
				gaveUp = time.Since(cut)
			}
			if newLeader == 0 && len(leaders) == 1 && leaders[0] != "w1" {
				newLeader = time.Since(cut)
			}
			counts := leaseCounts(t, f.leases)
			return newLeader > 0 && counts["w1"] == 0 && counts["w2"]+counts["w3"] == 12 && max(counts["w2"], counts["w3"])-min(counts["w2"], counts["w3"]) <= 1
		})
		if gaveUp == 0 || gaveUp >= newLeader {
			t.Fatalf("w1 gave up leading %v after the cut, another led after %v: want it to give up first", gaveUp, newLeader)
		}
		t.Logf("w1 gave up leading %v after the cut; %v later another worker led", gaveUp, newLeader-gaveUp)
	})
}

// TestLeaderAssignmentNeedsAnOwnerIndex: a lease store without an owner index is refused.
func TestLeaderAssignmentNeedsAnOwnerIndex(t *testing.T) {
	type plain struct{ checkpoint.Store }
	_, err := New(newTestStream().api(), plain{memory.New()}, testStreamName, newProcLog(true).factory(), WithLeaderAssignment(memory.New()))
	if !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("err = %v, want ErrInvalidOption", err)
	}
}

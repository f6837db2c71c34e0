package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/producer"
)

// markInterval is how often committed positions go to the marks file (see marks).
const markInterval = 25 * time.Millisecond

// DefaultFilesBufferBytes bounds the records read from files and not yet confirmed (the
// files producer's buffer; ProducerOptions can change it).
const DefaultFilesBufferBytes = 16 << 20

// Config configures an [Agent].
type Config struct {
	// Stream is the Kinesis stream name or ARN. Required.
	Stream string
	// StateDir keeps the files' positions (positions.json) and the socket inputs' spool
	// (spool/). Required; one agent per directory (it is locked).
	StateDir string
	// Host is put on records built from text lines. Default: os.Hostname().
	Host string
	// PartitionKey is random (the default: records spread over every shard), origin (the
	// file's path or the socket's address: one file's records stay in order on one shard,
	// and a chatty file can make a hot shard) or field:<member> (a member of JSON records;
	// random when it is missing). A file line's random key is picked from its identity, so
	// that a line read again after a restart goes to the shard of its first copy, where the
	// archive recognises it.
	PartitionKey string
	Files        []FileInput
	Sockets      []Listener
	Syslog       []Listener
	// Spool configures the socket inputs' spool (their records have no file to be read
	// again from, so they are kept on disk until Kinesis confirmed them).
	Spool producer.SpoolOptions
	// MaxRecordSize is the largest record (partition key and data). Default: the
	// producer's, 1 MiB.
	MaxRecordSize int
	// PositionsInterval is how often changed positions are stored (written, fsynced and
	// renamed into place). Lines confirmed since the last store are sent again after a crash.
	// Default 250ms.
	PositionsInterval time.Duration
	// ShutdownTimeout bounds delivering what was read when Run's context ends. Default 30s.
	ShutdownTimeout time.Duration
	// ProducerOptions are added to both producers' options (rate limit, aggregation, ...).
	ProducerOptions []producer.Option
	// Logger receives the agent's log; default slog.Default().
	Logger *slog.Logger
}

// Agent ships log lines from files and sockets to a Kinesis stream. A file's stored
// position only moves past a line once Kinesis confirmed its record, so a crash or a
// Kinesis outage loses nothing that reached a file: it is read again from the stored
// position (lines in flight at a crash may be sent twice; they are counted). Socket
// records are kept in an on-disk spool until confirmed.
type Agent struct {
	cfg     Config
	client  producer.Client
	log     *slog.Logger
	host    string
	key     keyPolicy
	maxData int
	metrics *metrics

	files, sockets *producer.Producer
	tailers        []*tailer
	listeners      []*listener

	mu        sync.Mutex
	ready     bool
	lastFail  time.Time
	lastErr   error
	retryQ    []retryRec
	retryWake chan struct{}
	lock      *os.File
	marks     *marks
	pcs       []prometheus.Collector

	// posMu serialises stores of positions.json: the main loop stores them every
	// positions_interval, tailers when a file gets a new origin (persistOrigins).
	posMu   sync.Mutex
	posLast []filePosition
	// unclaimed are the stored positions no tailer opened yet, kept in the stores made
	// during the tailers' first scans (they would drop the files of the tailers after).
	unclaimed map[fileID]filePosition
}

// tailerList returns the tailers started so far.
func (a *Agent) tailerList() []*tailer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.tailers)
}

// producerCollectors returns the producers' metric collectors, made once they exist.
func (a *Agent) producerCollectors() []prometheus.Collector {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pcs == nil && a.ready {
		if a.files != nil {
			a.pcs = append(a.pcs, producer.NewCollector(a.files, prometheus.Labels{"producer": "files"}))
		}
		if a.sockets != nil {
			a.pcs = append(a.pcs, producer.NewCollector(a.sockets, prometheus.Labels{"producer": "sockets"}))
		}
	}
	return a.pcs
}

type retryRec struct {
	rec producer.Record
	due time.Time
	to  *producer.Producer
}

// New checks cfg and returns an agent; Run starts it.
func New(client producer.Client, cfg Config) (*Agent, error) {
	if cfg.Stream == "" {
		return nil, configErr("stream", "required")
	}
	if cfg.StateDir == "" {
		return nil, configErr("state_dir", "required: the files' positions and the socket spool live there")
	}
	if len(cfg.Files)+len(cfg.Sockets)+len(cfg.Syslog) == 0 {
		return nil, configErr("files", "no inputs: configure files, sockets or syslog")
	}
	a := &Agent{cfg: cfg, client: client, log: cfg.Logger, metrics: newMetrics(), retryWake: make(chan struct{}, 1)}
	if a.log == nil {
		a.log = slog.Default()
	}
	var err error
	if a.key, err = parseKeyPolicy(cfg.PartitionKey); err != nil {
		return nil, err
	}
	a.host = cfg.Host
	if a.host == "" {
		a.host, _ = os.Hostname()
	}
	if cfg.MaxRecordSize == 0 {
		a.cfg.MaxRecordSize = producer.DefaultMaxRecordSize
	}
	a.maxData = a.cfg.MaxRecordSize - producer.MaxPartitionKeyLength*4
	if a.maxData < 1024 {
		return nil, configErr("producer.max_record_size", "%d is too small", cfg.MaxRecordSize)
	}
	if a.cfg.PositionsInterval == 0 {
		a.cfg.PositionsInterval = 250 * time.Millisecond
	}
	if a.cfg.ShutdownTimeout == 0 {
		a.cfg.ShutdownTimeout = 30 * time.Second
	}
	a.cfg.Files = slices.Clone(cfg.Files)
	for i := range a.cfg.Files {
		if err := a.cfg.Files[i].validate(fmt.Sprintf("files[%d]", i)); err != nil {
			return nil, err
		}
	}
	for i, s := range cfg.Sockets {
		if err := a.addListener(fmt.Sprintf("sockets[%d]", i), s, false); err != nil {
			return nil, err
		}
	}
	for i, s := range cfg.Syslog {
		if err := a.addListener(fmt.Sprintf("syslog[%d]", i), s, true); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *Agent) addListener(name string, s Listener, isSyslog bool) error {
	network, addr, err := parseListen(name+".listen", s.Listen, isSyslog)
	if err != nil {
		return err
	}
	kind := "socket"
	if isSyslog {
		kind = "syslog"
	}
	a.listeners = append(a.listeners, &listener{a: a, name: name, cfg: s, syslog: isSyslog, network: network, addr: addr,
		origin: originMember(kind, s.Listen), m: a.metrics.input(name)})
	return nil
}

// Collector returns the agent's Prometheus metrics: its own (kinlog_agent_*) and, once Run
// started them, its producers' (kinlog_producer_*, labelled producer="files" or "sockets").
func (a *Agent) Collector() prometheus.Collector { return collector{a} }

// Ready reports nil once every input is open and no record was refused by Kinesis for
// the last 30 seconds.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ready {
		return errors.New("starting: opening inputs")
	}
	if !a.lastFail.IsZero() && time.Since(a.lastFail) < 30*time.Second {
		return fmt.Errorf("records refused by Kinesis %s ago: %v", time.Since(a.lastFail).Round(time.Second), a.lastErr)
	}
	return nil
}

// Status is a snapshot of the agent for /status.
type Status struct {
	Files     []FileStatus      `json:"files"`
	Listeners []string          `json:"listeners"`
	Producers map[string]string `json:"producers"`
}

// Status returns the agent's state.
func (a *Agent) Status() Status {
	st := Status{Producers: map[string]string{}}
	a.mu.Lock()
	ready := a.ready // the producers and listeners exist from then on
	a.mu.Unlock()
	if !ready {
		return st
	}
	for _, t := range a.tailerList() {
		st.Files = append(st.Files, t.state()...)
	}
	for _, l := range a.listeners {
		if l.ln != nil || l.pc != nil {
			st.Listeners = append(st.Listeners, l.network+"://"+l.boundAddr())
		}
	}
	for name, p := range map[string]*producer.Producer{"files": a.files, "sockets": a.sockets} {
		if p != nil {
			s := p.Stats()
			st.Producers[name] = fmt.Sprintf("%d delivered, %d failed, %d buffered", s.RecordsDelivered, s.RecordsFailed, s.BufferedRecords)
		}
	}
	return st
}

// Producers returns the agent's producers once Run started them (nil for one not used):
// files carries file records, sockets socket and syslog records through its spool.
func (a *Agent) Producers() (files, sockets *producer.Producer) { return a.files, a.sockets }

// Run opens the inputs and ships until ctx ends; then it stops reading, delivers what was
// read (within ShutdownTimeout), stores the positions and returns. onStart, when not nil,
// is called once the producers exist and every input is open.
func (a *Agent) Run(ctx context.Context, onStart func()) (err error) {
	if err := os.MkdirAll(a.cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if a.lock, err = lockState(a.cfg.StateDir); err != nil {
		return err
	}
	defer a.lock.Close()
	stored, found, err := loadPositions(a.cfg.StateDir)
	if err != nil {
		return err
	}
	byID := map[fileID]filePosition{}
	for _, p := range stored {
		byID[fileID{p.Dev, p.Inode}] = p
	}
	a.unclaimed = maps.Clone(byID)
	marks, oldMarks, err := openMarks(a.cfg.StateDir)
	if err != nil {
		return err
	}
	a.marks = marks
	defer marks.close()
	base := append([]producer.Option{producer.WithMaxRecordSize(a.cfg.MaxRecordSize)}, a.cfg.ProducerOptions...)
	if len(a.cfg.Files) > 0 {
		// The files are the buffer: reading far ahead of Kinesis only costs memory.
		opts := append([]producer.Option{producer.WithMaxBufferedBytes(DefaultFilesBufferBytes)}, base...)
		opts = append(opts, producer.WithRecordTTL(0), producer.WithResultHandler(a.onFileResult))
		if a.files, err = producer.New(a.client, a.cfg.Stream, opts...); err != nil {
			return err
		}
	}
	if len(a.listeners) > 0 {
		opts := append(slices.Clone(base), producer.WithSpool(filepath.Join(a.cfg.StateDir, "spool"), a.cfg.Spool), producer.WithResultHandler(a.onSocketResult))
		if a.sockets, err = producer.New(a.client, a.cfg.Stream, opts...); err != nil {
			if a.files != nil {
				_ = a.files.Close(context.Background())
			}
			return fmt.Errorf("socket inputs' spool: %w", err)
		}
		if r, ok := a.sockets.SpoolRecovery(); ok && r.Records > 0 {
			a.log.Info("sending records an earlier run left in the spool", "records", r.Records)
		}
	}
	for _, l := range a.listeners {
		if err := l.listen(); err != nil {
			a.closeProducers(context.Background())
			return err
		}
	}

	inputs, stopInputs := context.WithCancel(context.Background())
	defer stopInputs()
	stopOnCtx := context.AfterFunc(ctx, stopInputs)
	defer stopOnCtx()
	// Records read before the stop are still put until the shutdown deadline.
	drain, stopDrain := context.WithCancel(context.Background())
	defer stopDrain()

	var wg sync.WaitGroup
	errs := make(chan error, len(a.cfg.Files)+len(a.listeners)+1)
	started := make(chan struct{}, len(a.cfg.Files))
	for i := range a.cfg.Files {
		t := newTailer(a, &a.cfg.Files[i], fmt.Sprintf("files[%d]", i), byID, oldMarks, !found)
		a.mu.Lock() // Status and the metrics collector may already be reading
		a.tailers = append(a.tailers, t)
		a.mu.Unlock()
	}
	// Tailers share the stored positions map: run their first scans one after another.
	for _, t := range a.tailers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.run(inputs, func() { started <- struct{}{} }); err != nil && inputs.Err() == nil {
				errs <- err
			}
		}()
		select {
		case <-started:
		case err := <-errs:
			stopInputs()
			wg.Wait()
			a.closeProducers(context.Background())
			return err
		case <-ctx.Done():
		}
	}
	for _, l := range a.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.run(inputs, drain); err != nil && inputs.Err() == nil {
				errs <- err
			}
		}()
	}
	// Positions of files not found again are dropped (warned about in scan).
	a.posMu.Lock()
	a.unclaimed = nil
	a.posMu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.redeliver(inputs)
	}()
	a.mu.Lock()
	a.ready = true
	a.mu.Unlock()
	a.log.Info("agent started", "stream", a.cfg.Stream, "files", len(a.cfg.Files), "sockets", len(a.listeners), "state_dir", a.cfg.StateDir)
	if onStart != nil {
		onStart()
	}

	saveTick := time.NewTicker(a.cfg.PositionsInterval)
	defer saveTick.Stop()
	markTick := time.NewTicker(markInterval)
	defer markTick.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-errs:
			a.log.Error("input failed; stopping", "err", runErr)
			break loop
		case <-saveTick.C:
			_ = a.storePositions()
		case <-markTick.C:
			for _, t := range a.tailers {
				t.storeCommitted()
			}
		}
	}
	a.log.Info("stopping: delivering what was read", "timeout", a.cfg.ShutdownTimeout.String())
	stopInputs()
	deadline := time.AfterFunc(a.cfg.ShutdownTimeout, stopDrain)
	defer deadline.Stop()
	wg.Wait()
	closeCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.closeProducers(closeCtx)
	_ = a.storePositions()
	for _, t := range a.tailers {
		t.storeCommitted()
	}
	return runErr
}

func (a *Agent) closeProducers(ctx context.Context) {
	for name, p := range map[string]*producer.Producer{"files": a.files, "sockets": a.sockets} {
		if p == nil {
			continue
		}
		if err := p.Close(ctx); err != nil {
			a.log.Warn("producer closed with undelivered records; file records are read again and socket records stay in the spool on the next start", "producer", name, "err", err)
		}
	}
}

// claimPosition runs add, which makes the file id one of a tailer's, and forgets its stored
// position among the unclaimed ones, at once for storePositions: the file is in every store.
func (a *Agent) claimPosition(add func(), id fileID) {
	a.posMu.Lock()
	defer a.posMu.Unlock()
	add()
	delete(a.unclaimed, id)
}

// storePositions stores the files' positions when they changed since the last store.
func (a *Agent) storePositions() error {
	a.posMu.Lock()
	defer a.posMu.Unlock()
	var pos []filePosition
	for _, t := range a.tailers {
		for _, st := range t.state() {
			pos = append(pos, st.pos)
		}
	}
	for _, p := range a.unclaimed {
		pos = append(pos, p)
	}
	slices.SortFunc(pos, func(x, y filePosition) int {
		if x.Path != y.Path {
			if x.Path < y.Path {
				return -1
			}
			return 1
		}
		return int(x.Inode) - int(y.Inode)
	})
	if slices.Equal(pos, a.posLast) {
		return nil
	}
	if err := savePositions(a.cfg.StateDir, pos); err != nil {
		a.log.Error("cannot store positions", "err", err)
		return err
	}
	a.posLast = pos
	return nil
}

// onFileResult is the files producer's result handler.
func (a *Agent) onFileResult(r producer.Result) {
	led, _ := r.Record.Ref.Source.(*ledger)
	if r.Err == nil {
		if led != nil {
			led.confirm(r.Record.Ref.Offset)
			led.m.shipped.Inc()
		}
		return
	}
	if errors.Is(r.Err, producer.ErrClosed) {
		return // not confirmed: read again on the next start
	}
	if led != nil {
		led.m.failed.Inc()
	}
	a.refused(r, a.files)
}

// onSocketResult is the sockets producer's result handler.
func (a *Agent) onSocketResult(r producer.Result) {
	m, _ := r.Record.Ref.Source.(*inputMetrics)
	if m == nil {
		m = a.metrics.input("spool")
	}
	if r.Err == nil {
		m.shipped.Inc()
		return
	}
	if errors.Is(r.Err, producer.ErrClosed) {
		return
	}
	m.failed.Inc()
	a.refused(r, a.sockets)
}

// refused schedules a record Kinesis refused for good (a missing stream, denied access)
// to be put again after a backoff: nothing read is dropped, and a file's position does
// not pass it.
func (a *Agent) refused(r producer.Result, to *producer.Producer) {
	rec := r.Record
	rec.Data = slices.Clone(rec.Data)
	a.mu.Lock()
	first := a.lastFail.IsZero() || time.Since(a.lastFail) > 10*time.Second
	a.lastFail, a.lastErr = time.Now(), r.Err
	a.retryQ = append(a.retryQ, retryRec{rec: rec, due: time.Now().Add(retryDelay(r.Attempts)), to: to})
	a.mu.Unlock()
	if first {
		a.log.Error("Kinesis refused records; they are sent again after a backoff", "err", r.Err)
	}
	select {
	case a.retryWake <- struct{}{}:
	default:
	}
}

func retryDelay(attempts int) time.Duration {
	return min(30*time.Second, time.Second<<min(attempts, 5))
}

// redeliver puts refused records again when they are due, until ctx ends.
func (a *Agent) redeliver(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		a.mu.Lock()
		var due []retryRec
		next := time.Hour
		now := time.Now()
		keep := a.retryQ[:0]
		for _, r := range a.retryQ {
			if !r.due.After(now) {
				due = append(due, r)
			} else {
				next = min(next, r.due.Sub(now))
				keep = append(keep, r)
			}
		}
		a.retryQ = keep
		a.mu.Unlock()
		for _, r := range due {
			if err := r.to.Put(ctx, r.rec); err != nil {
				if ctx.Err() == nil {
					a.log.Error("cannot put a refused record again", "err", err)
				}
			}
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-a.retryWake:
		}
	}
}

// lockState takes the state directory's lock: two agents on one directory would overwrite
// each other's positions.
func lockState(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("state_dir %s is in use by another kinlog agent (%w)", dir, err)
	}
	return f, nil
}

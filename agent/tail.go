package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/kinlog/kinlog/agent/container"
	"github.com/kinlog/kinlog/internal/jsonx"
	"github.com/kinlog/kinlog/producer"
)

// fingerprintMax is how many of a file's first bytes identify it besides its inode.
const fingerprintMax = 1024

// minCopyEvidence is how many first bytes must be alike before a new file longer than what
// is known of a tailed file's start is taken for its copy.
const minCopyEvidence = 64

// readBudget is how much of one file is read before the others get their turn.
const readBudget = 4 << 20

// fileID is a file's identity on its machine.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true //nolint:unconvert // Dev is int32 on some platforms
}

func nlinkOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink) //nolint:unconvert
	}
	return 1
}

// tfile is one open tailed file. The tailer goroutine owns it; fields read by other
// goroutines (positions, metrics) are guarded by the tailer's mu.
type tfile struct {
	id   fileID
	path string
	f    *os.File
	fpN  int
	fpOK uint64 // FNV-1a 64 of the first fpN bytes

	readOff int64     // next byte to read
	size    int64     // size at the last fstat
	mtime   time.Time // modification time at the last fstat
	led     *ledger

	// An unterminated line: its first byte's offset, up to MaxLineBytes of it, and its
	// size so far.
	lineOff   int64
	carry     []byte
	carrySize int

	replaced bool   // found truncated or replaced at open: see truncated
	isCopy   bool   // a copy of another tailed file, started at its end
	head     []byte // the first fpN bytes
	oldHead  []byte // the first bytes before the last truncation
	matched  bool   // at a matched path in the last scan
	gone     bool   // deleted, or no longer at a matched path
	lastGrow time.Time

	// Records that end at or before resendUntil were read and sent before an unclean stop.
	resendUntil int64
	marked      int64 // the read mark stored for the file (see readMarks)

	// Multiline record being joined.
	mlOpen       bool
	ml           []byte
	mlStart      int64
	mlAt         time.Time
	mlTime       time.Time
	mlSize       int
	mlTruncated  bool
	mlStream     container.Stream
	joiner       *container.Joiner
	joinStart    [2]int64 // per stream: where the record being joined starts
	joinPending  [2]bool
	joinChanged  bool   // joinPending changed since the last storeCommitted
	origin       []byte // "origin":{"file":…}
	kube         []byte // "kubernetes":{…} for container logs
	pendingClose bool

	// The origin of the identity of the file's lines (see origin.go), its hash for keyPick,
	// and whether it still has to be stored durably before a line is put with it. oid is
	// written under the tailer's mu.
	oid        string
	oidHash    uint64
	oidUnsaved bool
}

// setOrigin gives f a new origin (t.mu is held, or f is not shared yet).
func (f *tfile) setOrigin(oid string) {
	f.oid, f.oidHash = oid, originHash(oid)
}

// ident is the position of a record in its file's identity: Seq and Span.
type ident struct{ seq, span uint64 }

// spanIdent is the identity of a record that consumed the bytes [start, end).
func spanIdent(start, end int64) ident { return ident{uint64(start), uint64(end - start)} }

// flushedSeq is added to the offset of the first piece of a container log record that was
// never finished (its final piece did not come) to make its Seq: the record is not a span
// of the file's lines (its pieces sit between the lines of other records), so it gets a
// position outside every byte offset, which no floor reaches and no other record's span
// covers, and which is the same when the pieces are read again.
const flushedSeq = 1 << 62

// tailer reads the files of one file input.
type tailer struct {
	a    *Agent
	in   *FileInput
	name string
	m    *inputMetrics

	mu    sync.Mutex
	files map[fileID]*tfile

	stored      map[fileID]filePosition
	marks       map[fileID]mark      // marks a crashed run left
	deferred    map[fileID]time.Time // new files that may be copies being written, since
	firstStart  bool                 // no positions file existed
	wake        chan struct{}
	watcher     *fsnotify.Watcher
	watched     map[string]bool
	watchWarned map[string]bool
	evMu        sync.Mutex
	events      map[string]struct{}
	rescan      bool
	buf         []byte
	rec         []byte
	now         time.Time
	origins     []producer.Origin // handed out one by one to the records put
}

func newTailer(a *Agent, in *FileInput, name string, stored map[fileID]filePosition, marks map[fileID]mark, firstStart bool) *tailer {
	return &tailer{a: a, marks: marks, in: in, name: name, m: a.metrics.input(name), files: map[fileID]*tfile{}, deferred: map[fileID]time.Time{},
		watched: map[string]bool{}, watchWarned: map[string]bool{}, events: map[string]struct{}{},
		stored: stored, firstStart: firstStart, wake: make(chan struct{}, 1), buf: make([]byte, 256<<10)}
}

// run tails until ctx ends. Records are put with ctx: a Put cut short by the end leaves
// its record unread (it is read again on the next start).
func (t *tailer) run(ctx context.Context, ready func()) error {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close()
		t.watcher = w
		for _, g := range t.in.Paths {
			if dir := filepath.Dir(g); !strings.ContainsAny(dir, "*?[") {
				t.watch(dir) // directories with globs are watched as the scan finds them
			}
		}
		go t.notifications(w)
	} else {
		t.a.log.Warn("no file-system notifications; polling", "input", t.name, "err", err)
	}
	// The full scan (globs, and every file checked) runs every poll_interval; in between,
	// notifications name the files to read. Housekeeping (multiline flush timeouts, closing
	// rotated files) runs on its own short tick.
	tick := time.NewTicker(t.in.PollInterval)
	defer tick.Stop()
	house := time.NewTicker(min(t.in.PollInterval, 100*time.Millisecond))
	defer house.Stop()
	defer t.closeAll()
	t.now = time.Now()
	t.recoverRotated()
	full, first := true, true
	var busy []*tfile // files that had more to read
	for {
		t.now = time.Now()
		var files []*tfile
		if full {
			t.scan(first)
			files = t.sortedFiles()
		} else {
			names, rescan := t.takeEvents()
			if rescan {
				t.scan(false)
			}
			files = append(t.filesAt(names), busy...)
		}
		busy = busy[:0]
		seen := map[*tfile]bool{}
		for _, f := range files {
			if seen[f] {
				continue
			}
			seen[f] = true
			m, err := t.readFile(ctx, f)
			if err != nil {
				return err
			}
			if m {
				busy = append(busy, f)
			}
		}
		if err := t.timers(ctx); err != nil {
			return err
		}
		if first {
			first = false
			// Positions of files not found again are dropped (warned about in scan).
			t.stored, t.marks = nil, nil // shared by the tailers: only their first scans, one after another, read them
			ready()
		}
		full = false
		if len(busy) > 0 {
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			full = true
		case <-house.C:
		case <-t.wake:
		}
	}
}

// watch adds dir to the watched directories once.
func (t *tailer) watch(dir string) {
	if t.watcher == nil || t.watched[dir] {
		return
	}
	if err := t.watcher.Add(dir); err != nil {
		if !t.watchWarned[dir] {
			t.watchWarned[dir] = true
			t.a.log.Warn("cannot watch directory; polling it", "input", t.name, "dir", dir, "err", err)
		}
		return
	}
	t.watched[dir] = true
}

// notifications collects the names of files that changed and wakes the reader.
func (t *tailer) notifications(w *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			t.evMu.Lock()
			t.events[ev.Name] = struct{}{}
			if !ev.Has(fsnotify.Write) {
				t.rescan = true // created, removed, renamed: the globs may match other files
			}
			t.evMu.Unlock()
			select {
			case t.wake <- struct{}{}:
			default:
			}
		case _, ok := <-w.Errors:
			if !ok {
				return
			}
			t.evMu.Lock()
			t.rescan = true // events were lost (queue overflow): check everything
			t.evMu.Unlock()
		}
	}
}

// takeEvents returns the files named by notifications since the last call, and whether
// the globs must be scanned again.
func (t *tailer) takeEvents() (names map[string]struct{}, rescan bool) {
	t.evMu.Lock()
	defer t.evMu.Unlock()
	names, rescan = t.events, t.rescan
	t.events, t.rescan = map[string]struct{}{}, false
	return names, rescan
}

// filesAt returns the open files at the named paths; after a rescan, every file (one may
// have been renamed away).
func (t *tailer) filesAt(names map[string]struct{}) []*tfile {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*tfile
	for _, f := range t.files {
		if _, ok := names[f.path]; ok || f.gone {
			out = append(out, f)
		}
	}
	return out
}

func (t *tailer) sortedFiles() []*tfile {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*tfile, 0, len(t.files))
	for _, f := range t.files {
		out = append(out, f)
	}
	return out
}

func (t *tailer) excluded(path string) bool {
	for _, x := range t.in.Exclude {
		if ok, _ := filepath.Match(x, path); ok {
			return true
		}
		if ok, _ := filepath.Match(x, filepath.Base(path)); ok {
			return true
		}
	}
	return false
}

// scan globs the input's paths, opens new files and marks those no longer matched.
func (t *tailer) scan(first bool) {
	matched := map[fileID]string{}
	for _, g := range t.in.Paths {
		paths, _ := filepath.Glob(g)
		for _, p := range paths {
			if t.excluded(p) {
				continue
			}
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if id, ok := idOf(fi); ok {
				if _, dup := matched[id]; !dup {
					matched[id] = p
				}
			}
			t.watch(filepath.Dir(p))
		}
	}
	t.mu.Lock()
	for id, f := range t.files {
		if p, ok := matched[id]; ok {
			f.path, f.matched, f.gone = p, true, false
			delete(matched, id)
		} else if f.matched {
			f.matched = false
		}
	}
	t.mu.Unlock()
	for id := range t.deferred {
		if _, ok := matched[id]; !ok {
			delete(t.deferred, id) // gone before it was decided on
		}
	}
	for id, p := range matched {
		t.open(id, p, first, false)
	}
	if first {
		// A file rotated away between recoverRotated and this scan (it was still at its
		// stored path then, and the glob no longer matches it now) is looked for again.
		t.recoverRotated()
		for _, sp := range t.stored {
			t.a.log.Warn("a file in the positions file is gone; its unread part (if any) cannot be shipped",
				"input", t.name, "path", sp.Path, "offset", sp.Offset)
		}
	}
	t.persistOrigins()
}

// persistOrigins stores the positions (positions.json, fsynced) when a file has an origin
// they do not hold yet, before any line is put with it: a line read again after a crash,
// even one of the machine, then has the identity it was sent with. When the store fails
// (it is logged) the lines are put anyway, and the next scan tries again: a crash before
// that costs duplicates in the archive, never a line.
func (t *tailer) persistOrigins() {
	var pending []*tfile
	t.mu.Lock()
	for _, f := range t.files {
		if f.oidUnsaved {
			pending = append(pending, f)
		}
	}
	t.mu.Unlock()
	if len(pending) == 0 || t.a.storePositions() != nil {
		return
	}
	for _, f := range pending {
		f.oidUnsaved = false
	}
}

// recoverRotated reopens, at their stored positions, files that were renamed away (the
// rotated file, app.log.1) while the agent was down, so that their end is read.
func (t *tailer) recoverRotated() {
	if len(t.stored) == 0 {
		return
	}
	dirs := map[string]bool{}
	for _, sp := range t.stored {
		if fi, err := os.Stat(sp.Path); err == nil {
			if id, ok := idOf(fi); ok && id == (fileID{sp.Dev, sp.Inode}) {
				continue // still there: the scan finds it, if it still matches
			}
		}
		dirs[filepath.Dir(sp.Path)] = true
	}
	for dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			id, ok := idOf(fi)
			if !ok {
				continue
			}
			if _, ok := t.stored[id]; ok {
				t.open(id, p, false, true)
			}
		}
	}
}

// copyOf tells whether a new file whose first bytes are head is a copy of a tailed file
// (logrotate's copytruncate when the glob matches the copies, or a cp): its head equals
// that file's first bytes, as they are or as they were before its last truncation. maybe
// says head is a strict prefix of them — a copy being written, or a new file that starts
// alike: the caller waits a little before it decides.
func (t *tailer) copyOf(head []byte) (orig *tfile, maybe bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range t.files {
		if o.isCopy {
			continue
		}
		for _, h := range [][]byte{o.head, o.oldHead} {
			n := min(len(head), len(h))
			if n == 0 || !bytes.Equal(head[:n], h[:n]) {
				continue
			}
			// The copy starts with all that is known of the original's first bytes (which
			// may be fewer than the copy has: the original was short when last read); a
			// few bytes alike tell nothing.
			if len(head) == len(h) || len(head) > len(h) && len(h) >= minCopyEvidence {
				return o, false
			}
			maybe = true
		}
	}
	return nil, maybe
}

func fingerprint(f *os.File, n int) (uint64, error) {
	_, sum, err := readHead(f, n)
	return sum, err
}

// readHead returns up to n of a file's first bytes (fewer if it is shorter now) and their
// FNV-1a 64 hash.
func readHead(f *os.File, n int) ([]byte, uint64, error) {
	b := make([]byte, n)
	got, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	h := fnv.New64a()
	h.Write(b[:got])
	return b[:got], h.Sum64(), nil
}

// open starts tailing the file id at path. A file in the positions file resumes at its
// stored offset when its fingerprint matches; otherwise it is read from its beginning, or
// from its end when it was there at the agent's first start and start_at is end.
func (t *tailer) open(id fileID, path string, first, rotated bool) {
	fh, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			t.a.log.Warn("cannot open file", "input", t.name, "path", path, "err", err)
		}
		return
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return
	}
	if real, ok := idOf(fi); ok && real != id {
		// Replaced between the stat and the open: the next scan sees the new one.
		fh.Close()
		return
	}
	f := &tfile{id: id, path: path, f: fh, size: fi.Size(), led: &ledger{m: t.m}, matched: !rotated, gone: rotated,
		lastGrow: t.now, origin: originMember("file", path)}
	if t.in.Format == FormatCRI || t.in.Format == FormatDocker {
		f.joiner = container.NewJoiner(t.in.MaxLineBytes)
		if meta, ok := container.MetaFromPath(path); ok {
			f.kube = meta.AppendJSON(nil)
		}
	}
	f.fpN = int(min(fi.Size(), fingerprintMax))
	if f.head, f.fpOK, err = readHead(fh, f.fpN); err != nil {
		fh.Close()
		return
	}
	f.fpN = len(f.head)
	start := int64(0)
	sp, stored := t.stored[id]
	storedOrigin := sp.Origin // the origin positions.json holds for the file
	mk, marked := t.marks[id]
	if marked {
		delete(t.marks, id)
		// The marks of a crashed process are newer than positions.json; they count when
		// they belong to the file as it is now.
		if sum, err := fingerprint(fh, mk.fpN); err != nil || mk.fpN > f.fpN || sum != mk.fp || mk.committed > fi.Size() {
			marked = false
		}
	}
	if marked {
		delete(t.stored, id)
		stored = false
		start, f.resendUntil = mk.committed, mk.read
		f.oid = mk.origin // "" in the marks of an agent before identities
	} else if !stored && !first && !rotated {
		if fi.Size() == 0 {
			fh.Close() // tracked once it has something to tell it by
			return
		}
		orig, maybe := t.copyOf(f.head)
		if since, ok := t.deferred[id]; maybe && (!ok || t.now.Sub(since) < t.in.RotateWait) {
			if !ok {
				t.deferred[id] = t.now
			}
			fh.Close()
			return
		}
		delete(t.deferred, id)
		if orig != nil {
			// What the copy holds was shipped from the original, or is read from the copy
			// when the original is found truncated (readCopy).
			t.a.log.Info("a copy of a tailed file: not shipped again", "input", t.name, "path", path, "original", orig.path)
			start, f.isCopy = fi.Size(), true
		}
	}
	if stored {
		delete(t.stored, id)
		same := false
		if sp.FingerprintBytes <= f.fpN {
			sum, err := fingerprint(fh, sp.FingerprintBytes)
			same = err == nil && fmt.Sprintf("%016x", sum) == sp.Fingerprint && sp.Offset <= fi.Size()
		}
		start = sp.Offset
		f.resendUntil = sp.ReadOffset
		// When the file was truncated or replaced, this is the origin of its previous content,
		// whose end readCopy may still read from a copy; truncated gives it a new one.
		f.oid = sp.Origin
		if !same {
			// Truncated or replaced while the agent was down (copytruncate, or the inode
			// reused by another file): the first read looks for the copy of what was not
			// read yet, then reads the file from its beginning.
			t.a.log.Info("a stored file was truncated or replaced while the agent was down", "input", t.name, "path", path, "stored_offset", sp.Offset)
			f.fpN = sp.FingerprintBytes
			_, _ = fmt.Sscanf(sp.Fingerprint, "%x", &f.fpOK)
			f.replaced = true
		}
	} else if first && t.firstStart && t.in.StartAt == "end" {
		start = fi.Size()
	}
	f.readOff, f.lineOff = start, start
	f.led.committed = start
	f.led.changed.Store(true)
	if f.oid == "" {
		f.oid = newOrigin()
	}
	f.setOrigin(f.oid)
	f.oidUnsaved = f.oid != storedOrigin
	// The marks hold the origin before a line is put with it (a crash of the process keeps
	// them; persistOrigins covers one of the machine).
	t.a.marks.setCommitted(id, start, f.fpN, f.fpOK, f.oid)
	t.a.claimPosition(func() {
		t.mu.Lock()
		t.files[id] = f
		t.mu.Unlock()
	}, id)
	t.a.log.Debug("tailing", "input", t.name, "path", path, "offset", start, "rotated", rotated, "origin", f.oid)
}

// readFile reads what f has beyond its position, up to readBudget; more says there is more.
func (t *tailer) readFile(ctx context.Context, f *tfile) (more bool, err error) {
	fi, err := f.f.Stat()
	if err != nil {
		return false, nil
	}
	size := fi.Size()
	if (nlinkOf(fi) == 0 || !f.matched) && !f.gone {
		t.mu.Lock()
		f.gone = true
		t.mu.Unlock()
		f.lastGrow = t.now // kept open rotate_wait from now at least
	}
	// Any change (size or time) has the first bytes checked: a file truncated and written
	// again to the same size or beyond is told from one that grew.
	changed := size != f.size || !fi.ModTime().Equal(f.mtime)
	f.mtime = fi.ModTime()
	if f.replaced || size < f.readOff || (changed && !t.sameStart(f, size)) {
		if err := t.truncated(ctx, f, size); err != nil {
			return false, err
		}
		t.persistOrigins()
	}
	t.mu.Lock()
	f.size = size
	t.mu.Unlock()
	if size <= f.readOff {
		return false, nil
	}
	if f.fpN < fingerprintMax && size > int64(f.fpN) {
		n := int(min(size, fingerprintMax))
		if head, sum, err := readHead(f.f, n); err == nil {
			if !bytes.HasPrefix(head, f.head) {
				// Truncated and written again since sameStart: the next read handles it.
				f.replaced = true
				return true, nil
			}
			t.mu.Lock()
			f.fpN, f.fpOK, f.head = len(head), sum, head
			t.mu.Unlock()
		}
	}
	read := 0
	for read < readBudget {
		n, rerr := f.f.ReadAt(t.buf, f.readOff)
		if n > 0 {
			f.lastGrow = t.now
			if err := t.chunk(ctx, f, t.buf[:n]); err != nil {
				return false, err
			}
			t.mu.Lock()
			f.readOff += int64(n)
			t.mu.Unlock()
			read += n
			t.m.bytesRead.Add(float64(n))
		}
		if rerr != nil || n < len(t.buf) {
			return false, nil
		}
	}
	return true, nil
}

// sameStart tells whether f's first bytes are still the ones it was opened with.
func (t *tailer) sameStart(f *tfile, size int64) bool {
	if f.fpN == 0 || size < int64(f.fpN) {
		return f.fpN == 0
	}
	sum, err := fingerprint(f.f, f.fpN)
	return err != nil || sum == f.fpOK
}

// truncated handles a file whose content was cut (copytruncate) or replaced in place: the
// bytes the agent had not read yet are looked for in the copy that copytruncate made, and
// the file is read again from its beginning.
func (t *tailer) truncated(ctx context.Context, f *tfile, size int64) error {
	t.m.truncations.Inc()
	t.a.log.Info("file truncated; reading it from its beginning", "input", t.name, "path", f.path, "size", size, "was_at", f.readOff)
	if err := t.readCopy(ctx, f); err != nil {
		return err
	}
	t.mu.Lock()
	f.led = &ledger{m: t.m}
	f.led.changed.Store(true)
	f.readOff, f.lineOff, f.carry, f.carrySize = 0, 0, f.carry[:0], 0
	f.mlOpen, f.joinPending = false, [2]bool{}
	if f.joiner != nil {
		f.joiner = container.NewJoiner(t.in.MaxLineBytes)
	}
	f.oldHead = f.head
	f.fpN = int(min(size, fingerprintMax))
	f.head, f.fpOK, _ = readHead(f.f, f.fpN)
	f.fpN = len(f.head)
	f.resendUntil, f.replaced, f.marked = 0, false, 0
	// New content: a new origin, so that its lines never take the identities of the lines
	// that were at the same offsets before (the same bytes written again included).
	f.setOrigin(newOrigin())
	f.oidUnsaved = true
	t.mu.Unlock()
	t.a.marks.setCommitted(f.id, 0, f.fpN, f.fpOK, f.oid)
	t.a.log.Debug("truncated file has a new origin", "input", t.name, "path", f.path, "origin", f.oid)
	return nil
}

// readCopy ships the tail of a truncated file from the copy copytruncate made beside it:
// a file in the same directory that starts with the same bytes and is at least as long
// as what was read.
func (t *tailer) readCopy(ctx context.Context, f *tfile) error {
	if f.fpN == 0 {
		return nil
	}
	ents, err := os.ReadDir(filepath.Dir(f.path))
	if err != nil {
		return nil
	}
	for _, e := range ents {
		p := filepath.Join(filepath.Dir(f.path), e.Name())
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() < f.readOff {
			continue
		}
		if id, ok := idOf(fi); !ok || id == f.id {
			continue
		}
		id, _ := idOf(fi)
		t.mu.Lock()
		other, tracked := t.files[id]
		t.mu.Unlock()
		if tracked && !other.isCopy {
			continue // tailed on its own
		}
		c, err := os.Open(p)
		if err != nil {
			continue
		}
		sum, err := fingerprint(c, f.fpN)
		if err != nil || sum != f.fpOK {
			c.Close()
			continue
		}
		t.a.log.Info("reading the rest of a truncated file from its copy", "input", t.name, "path", f.path, "copy", p, "from", f.readOff)
		for {
			n, rerr := c.ReadAt(t.buf, f.readOff)
			if n > 0 {
				if err := t.chunk(ctx, f, t.buf[:n]); err != nil {
					c.Close()
					return err
				}
				// chunk numbers the lines from readOff: it moves on with every chunk.
				t.mu.Lock()
				f.readOff += int64(n)
				t.mu.Unlock()
			}
			if rerr != nil || n == 0 {
				break
			}
		}
		c.Close()
		return t.finishFile(ctx, f)
	}
	return nil
}

// chunk splits bytes read at f.readOff into lines.
func (t *tailer) chunk(ctx context.Context, f *tfile, data []byte) error {
	pos := f.readOff
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			f.appendCarry(data, t.in.MaxLineBytes)
			return nil
		}
		end := pos + int64(i) + 1
		var err error
		if f.carrySize > 0 {
			f.appendCarry(data[:i], t.in.MaxLineBytes)
			err = t.line(ctx, f, f.carry, f.lineOff, end, f.carrySize)
			f.carry, f.carrySize = f.carry[:0], 0
		} else {
			line := data[:i]
			orig := len(line)
			if len(line) > t.in.MaxLineBytes {
				line = line[:t.in.MaxLineBytes]
			}
			err = t.line(ctx, f, line, pos, end, orig)
		}
		if err != nil {
			return err
		}
		f.lineOff = end
		pos = end
		data = data[i+1:]
	}
	return nil
}

func (f *tfile) appendCarry(b []byte, limit int) {
	if room := limit - len(f.carry); room > 0 {
		f.carry = append(f.carry, b[:min(room, len(b))]...)
	}
	f.carrySize += len(b)
}

// line handles one line [start, end) of f; orig is its size before it was cut.
func (t *tailer) line(ctx context.Context, f *tfile, line []byte, start, end int64, orig int) error {
	t.m.linesRead.Inc()
	truncated := orig > len(line)
	if !truncated && len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	at := t.now
	stream := container.Stream(0)
	if f.joiner != nil {
		var cl container.Line
		var err error
		if t.in.Format == FormatCRI {
			cl, err = container.ParseCRI(line)
		} else {
			cl, err = container.ParseDocker(line)
		}
		if err != nil {
			t.m.malformed.Inc()
			if f.mlOpen {
				// It ends the multiline record being joined: records are put, and enter the
				// ledger, in file order.
				if err := t.flushML(ctx, f, start); err != nil {
					return err
				}
			}
			// Shipped as a text line, with the reason.
			return t.emit(ctx, f, line, start, end, spanIdent(start, end), at, stream, truncated, orig, "not a "+string(t.in.Format)+" log line: "+err.Error())
		}
		// Partial lines are joined per stream, and stdout and stderr pieces interleave: the
		// stored position stays at the first piece of a record still being joined (see
		// storedOffset); the joined record's own span is its final piece.
		s := cl.Stream & 1
		t.mu.Lock()
		if cl.Partial && !f.joinPending[s] {
			f.joinPending[s], f.joinStart[s], f.joinChanged = true, start, true
		} else if !cl.Partial && f.joinPending[s] {
			f.joinPending[s], f.joinChanged = false, true
		}
		t.mu.Unlock()
		rec, first, cut, done := f.joiner.Add(cl)
		if !done {
			if !cl.Partial && !f.mlOpen {
				// The end of a record cut short, dropped. (With a multiline record open, its
				// span covers these bytes: a skipped span here would move the committed offset
				// past the record before it is even put.)
				f.led.add(start, end, 0, true)
			}
			return nil
		}
		line, at, stream, truncated = rec, first.Time, first.Stream, truncated || cut
		if cut {
			orig = len(rec) + 1 // the original size of a joined line is not kept
		}
	}
	if re := t.in.startPattern; re != nil {
		if f.mlOpen && !re.Match(line) {
			f.mlSize += 1 + len(line)
			if room := t.in.Multiline.MaxBytes - len(f.ml); room > 0 {
				f.ml = append(f.ml, '\n')
				f.ml = append(f.ml, line[:min(room-1, len(line))]...)
			}
			f.mlTruncated = f.mlTruncated || truncated || f.mlSize > t.in.Multiline.MaxBytes
			f.mlAt = t.now
			// The record's end moves on: kept in lineOff by the caller.
			return nil
		}
		if f.mlOpen {
			if err := t.flushML(ctx, f, start); err != nil {
				return err
			}
		}
		f.mlOpen, f.mlStart, f.mlAt, f.mlTime, f.mlStream = true, start, t.now, at, stream
		f.ml = append(f.ml[:0], line[:min(len(line), t.in.Multiline.MaxBytes)]...)
		f.mlSize, f.mlTruncated = orig, truncated || orig > t.in.Multiline.MaxBytes
		return nil
	}
	return t.emit(ctx, f, line, start, end, spanIdent(start, end), at, stream, truncated, orig, "")
}

// flushML ships the multiline record being joined; it ends at end.
func (t *tailer) flushML(ctx context.Context, f *tfile, end int64) error {
	f.mlOpen = false
	return t.emit(ctx, f, f.ml, f.mlStart, end, spanIdent(f.mlStart, end), f.mlTime, f.mlStream, f.mlTruncated, f.mlSize, "")
}

// timers ships multiline records whose flush timeout passed and closes files that were
// rotated away or deleted once they are read, idle for RotateWait and confirmed.
func (t *tailer) timers(ctx context.Context) error {
	for _, f := range t.sortedFiles() {
		if f.mlOpen && t.now.Sub(f.mlAt) >= t.in.Multiline.FlushTimeout {
			if err := t.flushML(ctx, f, f.lineOff); err != nil {
				return err
			}
		}
		if f.gone && f.readOff >= f.size && t.now.Sub(f.lastGrow) >= t.in.RotateWait {
			if !f.pendingClose {
				if err := t.finishFile(ctx, f); err != nil {
					return err
				}
				f.pendingClose = true
			}
			if _, inflight, _ := f.led.state(); inflight == 0 {
				t.mu.Lock()
				delete(t.files, f.id)
				t.mu.Unlock()
				f.f.Close()
				t.a.marks.drop(f.id)
				t.a.log.Debug("closed rotated or deleted file", "input", t.name, "path", f.path)
			}
		}
	}
	return nil
}

// finishFile ships what is left of a file that no one writes any more: an unterminated
// last line, a partial container line, a multiline record.
func (t *tailer) finishFile(ctx context.Context, f *tfile) error {
	if f.carrySize > 0 {
		end := f.lineOff + int64(f.carrySize)
		if err := t.line(ctx, f, f.carry, f.lineOff, end, f.carrySize); err != nil {
			return err
		}
		f.carry, f.carrySize, f.lineOff = f.carry[:0], 0, end
	}
	if f.joiner != nil {
		// The last pieces of lines no one will finish (a container that exited mid-line).
		for {
			rec, first, ok := f.joiner.Flush()
			if !ok {
				break
			}
			s := first.Stream & 1
			t.mu.Lock()
			f.joinPending[s], f.joinChanged = false, true
			t.mu.Unlock()
			id := ident{flushedSeq + uint64(f.joinStart[s]), 1}
			if err := t.emit(ctx, f, rec, f.lineOff, f.lineOff, id, first.Time, first.Stream, false, len(rec), ""); err != nil {
				return err
			}
		}
	}
	if f.mlOpen {
		return t.flushML(ctx, f, f.lineOff)
	}
	return nil
}

// storedOffset is the position to store for f: its committed offset, but not past the
// first piece of a container log record still being joined. t.mu is held.
func (f *tfile) storedOffset(committed int64) int64 {
	for s, p := range f.joinPending {
		if p {
			committed = min(committed, f.joinStart[s])
		}
	}
	return committed
}

func (t *tailer) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.files {
		f.f.Close()
	}
}

// emit builds the record of a line (or joined lines) [start, end) and puts it, with the
// identity id in the file's origin.
func (t *tailer) emit(ctx context.Context, f *tfile, line []byte, start, end int64, id ident, at time.Time, stream container.Stream, truncated bool, orig int, problem string) error {
	if len(bytes.TrimSpace(line)) == 0 {
		f.led.add(start, end, 0, true)
		return nil
	}
	var extra []byte
	if f.joiner != nil && problem == "" { // a container log
		if f.kube != nil {
			extra = append(extra, f.kube...)
			extra = append(extra, ',')
		}
		extra = append(extra, `"stream":"`...)
		extra = append(extra, stream.String()...)
		extra = append(extra, '"')
	}
	if problem != "" {
		if len(extra) > 0 {
			extra = append(extra, ',')
		}
		extra = append(extra, `"parse_error":`...)
		extra = jsonx.AppendString(extra, problem)
	}
	t.rec = t.rec[:0]
	asIs := t.in.Format != FormatText && !truncated && problem == "" && isJSONObject(line)
	if t.in.Format == FormatJSON && !asIs && !truncated {
		t.m.malformed.Inc()
	}
	if asIs {
		t.rec = spliceMembers(t.rec, line, extra)
	}
	if !asIs || len(t.rec) > t.a.maxData {
		tr := textRecord{line: line, time: at, host: t.a.host, service: t.in.Service, origin: f.origin, extra: extra, truncated: truncated, original: orig}
		for {
			t.rec = appendText(t.rec[:0], &tr)
			if len(t.rec) <= t.a.maxData {
				break
			}
			// Escaping made it bigger than a record may be: cut more.
			tr.line = tr.line[:len(tr.line)*3/4]
			tr.truncated = true
		}
		truncated = tr.truncated
	}
	if truncated {
		t.m.truncated.Inc()
	}
	if end <= f.resendUntil {
		t.m.resent.Inc()
	}
	if end > f.marked {
		f.marked = end + markAhead
		t.a.marks.setRead(f.id, f.marked)
	}
	f.led.add(start, end, t.now.UnixNano(), false)
	err := t.a.files.Put(ctx, producer.Record{PartitionKey: t.a.key.key(t.rec, f.path, keyPick(f.oidHash, int64(id.seq))), Data: t.rec,
		Ref: producer.Ref{Source: f.led, Offset: start}, Origin: t.newOriginRef(f, id)})
	if err != nil {
		f.led.unadd()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("putting a record of %s: %w", f.path, err)
	}
	t.m.recordsSent.Inc()
	return nil
}

// newOriginRef returns the identity of f's record id. Its floor is the file's stored
// position: every record that starts below it was confirmed by Kinesis (the ledger's
// committed offset, held back by container log records still being joined), and no
// record not yet put starts below it (a multiline record being joined starts at mlStart).
func (t *tailer) newOriginRef(f *tfile, id ident) *producer.Origin {
	committed, _, _ := f.led.state()
	floor := uint64(f.storedOffset(committed))
	if f.mlOpen {
		floor = min(floor, uint64(f.mlStart))
	}
	floor = min(floor, id.seq)
	if len(t.origins) == cap(t.origins) {
		t.origins = make([]producer.Origin, 0, 256) // the producer keeps the pointers: never reused
	}
	t.origins = append(t.origins, producer.Origin{ID: f.oid, Seq: id.seq, Span: id.span, Floor: floor})
	return &t.origins[len(t.origins)-1]
}

// storeCommitted writes every open file's committed position to the marks file.
func (t *tailer) storeCommitted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.files {
		if !f.led.takeChanged() && !f.joinChanged {
			continue
		}
		f.joinChanged = false
		committed, _, _ := f.led.state()
		t.a.marks.setCommitted(f.id, f.storedOffset(committed), f.fpN, f.fpOK, f.oid)
	}
}

// FileStatus is one tailed file, for /status and metrics.
type FileStatus struct {
	Path string `json:"path"`
	// Size is the file's size when last checked; Offset its stored position (everything
	// before it confirmed by Kinesis); ReadOffset how far it was read.
	Size       int64 `json:"size"`
	Offset     int64 `json:"offset"`
	ReadOffset int64 `json:"read_offset"`
	InFlight   int   `json:"records_in_flight"`
	// Rotated says the file was renamed away or deleted: it is read to its end and closed.
	Rotated bool `json:"rotated"`
	// Origin names the file's lines in their identity (the archive's kinlog_id is
	// <origin>/<offset>+<length>); a truncation gives the file a new one.
	Origin string `json:"origin"`

	oldest int64
	pos    filePosition
}

// state returns every open file's state.
func (t *tailer) state() []FileStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]FileStatus, 0, len(t.files))
	for _, f := range t.files {
		committed, inflight, oldest := f.led.state()
		committed = f.storedOffset(committed)
		out = append(out, FileStatus{Path: f.path, Size: f.size, Offset: committed, ReadOffset: f.readOff, InFlight: inflight, Rotated: f.gone, Origin: f.oid, oldest: oldest,
			pos: filePosition{Path: f.path, Dev: f.id.dev, Inode: f.id.ino, FingerprintBytes: f.fpN,
				Fingerprint: fmt.Sprintf("%016x", f.fpOK), Origin: f.oid, Offset: committed, ReadOffset: f.readOff}})
	}
	return out
}

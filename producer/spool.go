package producer

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kinlog/kinlog/internal/kpl"
)

// SpoolSync says when a record accepted by Put is on disk; see [SpoolOptions].
type SpoolSync int

const (
	// SyncWrite writes each record to its spool file (a write(2) to the operating system)
	// before Put returns, and flushes the files to the device (fsync) every SyncInterval.
	// An accepted record survives a crash of the process (SIGKILL, OOM kill, panic); a
	// crash of the machine or a power loss can lose the records of the last SyncInterval.
	// This is the default.
	SyncWrite SpoolSync = iota
	// SyncBatched collects records in memory and writes and fsyncs them every SyncInterval.
	// It costs the least CPU; any crash, of the process or the machine, can lose the
	// records accepted in the last SyncInterval.
	SyncBatched
	// SyncFsync writes and fsyncs each record before Put returns (concurrent Puts share one
	// fsync). An accepted record survives a crash of the process and of the machine; each
	// Put waits for the device, typically 0.1 to 10 ms.
	SyncFsync
)

// String returns the mode's name.
func (m SpoolSync) String() string {
	switch m {
	case SyncWrite:
		return "write"
	case SyncBatched:
		return "batched"
	case SyncFsync:
		return "fsync"
	}
	return "SpoolSync(" + strconv.Itoa(int(m)) + ")"
}

// ParseSpoolSync parses "write", "batched" or "fsync".
func ParseSpoolSync(s string) (SpoolSync, error) {
	for _, m := range []SpoolSync{SyncWrite, SyncBatched, SyncFsync} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown spool sync mode %q (want write, batched or fsync)", s)
}

// Spool defaults.
const (
	// DefaultSpoolSyncInterval is the default SpoolOptions.SyncInterval (100 ms).
	DefaultSpoolSyncInterval = 100 * time.Millisecond
	// DefaultSpoolMaxBytes is the default SpoolOptions.MaxBytes (1 GiB).
	DefaultSpoolMaxBytes = 1 << 30
	// DefaultSpoolSegmentBytes is the default SpoolOptions.SegmentBytes (16 MiB, or a
	// quarter of MaxBytes when that is smaller).
	DefaultSpoolSegmentBytes = 16 << 20
)

// SpoolOptions configures the on-disk spool of [WithSpool]. The zero value of each field
// means its default.
type SpoolOptions struct {
	// Sync says when an accepted record is on disk: [SyncWrite] (the default),
	// [SyncBatched] or [SyncFsync].
	Sync SpoolSync
	// SyncInterval is how often written records are flushed to the device (and, with
	// SyncBatched, written). The default is 100 ms.
	SyncInterval time.Duration
	// MaxBytes bounds the spool's files. When a record does not fit, Put waits until
	// delivered records free room (or its context ends) and TryPut fails with
	// [ErrBufferFull], as with the memory buffer: nothing accepted is ever dropped to make
	// room. The default is 1 GiB; it must be at least the maximum record size.
	MaxBytes int64
	// SegmentBytes is the size at which a spool file is closed and a new one begun; a file
	// is deleted once Kinesis confirmed all its records. The default is 16 MiB, or a
	// quarter of MaxBytes when that is smaller.
	SegmentBytes int64
}

// Spool errors.
var (
	// ErrSpoolLocked is returned by New when another producer (in this process or another)
	// holds the spool directory.
	ErrSpoolLocked = errors.New("producer: spool directory in use by another producer")
	// ErrSpool is returned by Put after writing the spool failed (a full or failing disk):
	// records can no longer be made durable. The producer keeps delivering what it holds.
	ErrSpool = errors.New("producer: spool write failed")
)

// SpoolRecovery describes what a producer found in its spool directory when it started;
// see [Producer.SpoolRecovery].
type SpoolRecovery struct {
	// Dir is the spool directory and ProducerID the identity kept in it: random when the
	// directory was first used, the same for every later producer on it.
	Dir        string
	ProducerID string
	// Segments and Records count the spool files and the records in them left by an
	// earlier run that had not been confirmed by Kinesis; they are sent again, in order.
	Segments int
	Records  uint64
	// Damaged lists the damage found (a crash in the middle of a write leaves a torn last
	// record): the good records before it are kept and sent.
	Damaged []SpoolDamage
}

// SpoolDamage is one damaged spool file.
type SpoolDamage struct {
	// File is the spool file; Offset the first damaged byte; Bytes how many bytes from
	// there to its end were cut off (and kept in SavedAs for inspection).
	File    string
	Offset  int64
	Bytes   int64
	SavedAs string
	// Reason says what was wrong: a truncated record, a checksum mismatch, a bad header.
	Reason string
}

// WithSpool makes the producer keep every accepted record in segment files under dir until
// Kinesis confirmed it, so that records survive a crash and outages longer than the memory
// buffer holds. A record is accepted once it is in the spool (see [SpoolSync] for when that
// means on disk); the memory bounds then only limit what is held in memory for sending,
// and records beyond them wait on disk. On start, New sends again, in order, the records an
// earlier producer on dir left unconfirmed. One directory is used by one producer at a
// time: New fails with [ErrSpoolLocked] while another holds it.
//
// With a spool, the record TTL defaults to 0 (records are retried until delivered); set
// [WithRecordTTL] to bound it. Delivery remains at-least-once: a record whose request was
// applied by Kinesis but not confirmed (a lost response, a crash after the send) is sent
// again. Every spooled record keeps the identity (producer id, sequence number) it got when
// it was accepted, across restarts.
//
// The default is no spool.
func WithSpool(dir string, o SpoolOptions) Option {
	return func(c *config) { c.spoolDir, c.spool = dir, o }
}

func (o *SpoolOptions) resolve(maxRecordSize int) error {
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSpoolSyncInterval
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultSpoolMaxBytes
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = min(DefaultSpoolSegmentBytes, o.MaxBytes/4)
	}
	var errs []error
	if o.Sync < SyncWrite || o.Sync > SyncFsync {
		errs = append(errs, fmt.Errorf("spool sync mode %d unknown", o.Sync))
	}
	if o.SyncInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("spool sync interval %v below 1ms", o.SyncInterval))
	}
	if o.MaxBytes < int64(maxRecordSize)+frameOverhead+MaxPartitionKeyLength*4 {
		errs = append(errs, fmt.Errorf("spool max bytes %d is below the max record size %d", o.MaxBytes, maxRecordSize))
	}
	if o.SegmentBytes <= 0 || o.SegmentBytes > o.MaxBytes {
		errs = append(errs, fmt.Errorf("spool segment bytes %d outside 1..%d (max bytes)", o.SegmentBytes, o.MaxBytes))
	}
	return errors.Join(errs...)
}

// On disk, a spool directory holds:
//
//	lock              flock(2)ed by the producer using the directory; holds its pid
//	id                the producer id, 32 hex digits
//	acked             the acknowledgement watermark: every record below it was reported
//	<first seq>.seg   segment files named by the sequence number of their first record
//
// A segment is the 8-byte header "KLSPOOL1" followed by frames:
//
//	uint32 length of the payload (little endian)
//	uint32 CRC-32C of the payload
//	payload: uint64 sequence number, int64 put time (Unix ns), uvarint length and bytes of
//	         the partition key, uvarint length and bytes of the explicit hash key, data
//
// Frames are only appended; a segment is written by one producer run and never reopened
// for writing. The acked file has two 24-byte slots (generation, watermark, CRC-32C),
// written alternately, so that a torn write leaves the other slot valid.
const (
	segmentMagic  = "KLSPOOL1"
	frameHeader   = 8
	frameOverhead = frameHeader + 16 + 2*binary.MaxVarintLen32
	maxFrame      = MaxRecordSizeLimit + 64<<10
	ackSlot       = 24
	ageEvery      = 1024 // a put time is remembered every ageEvery records
	loadChunk     = 4 << 20
	// spoolWriteChunk is how much is collected before it is written without waiting for
	// the sync interval, so that the write buffer stays small and is reused.
	spoolWriteChunk = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segment is one spool file.
type segment struct {
	path  string
	first uint64 // sequence number of its first record
	end   uint64 // sequence number after its last record
	size  int64  // bytes in the file
	open  bool   // being written
}

type ageMark struct {
	seq uint64
	at  int64 // Unix ns
}

// spool keeps accepted records on disk. Its counters are guarded by buf.mu (the spool is
// part of the buffer's state); file writes are serialised by wmu, and happen outside buf.mu.
type spool struct {
	dir      string
	opts     SpoolOptions
	buf      *buffer
	lockFile *os.File
	ackFile  *os.File
	recovery SpoolRecovery

	// Guarded by buf.mu.
	nextSeq     uint64 // sequence number of the next record appended
	memSeq      uint64 // records below it are in memory or reported; from it on, on disk only
	startSeq    uint64 // first sequence number of this run: those below are replayed
	wbuf        []byte // frames appended and not yet written
	appended    int64  // bytes ever appended to wbuf
	diskBytes   int64  // bytes of segment files plus wbuf
	pending     uint64 // records appended and not yet reported
	acks        ackTracker
	ages        []ageMark
	segs        []*segment
	syncWaiters map[uint64]chan Result // PutSync waiters of records on disk only
	err         error                  // sticky write error
	writtenSeq  uint64                 // records below it are in the files (or lost to a failed write)
	replayed    uint64
	lost        uint64

	// Guarded by wmu, held while writing.
	wmu     sync.Mutex
	spare   []byte
	written int64 // appended bytes written to files
	cur     *segment
	curFile *os.File
	retired []*os.File // full segments' files, to be synced and closed by syncUpTo

	// Guarded by smu, held while flushing files to the device; writes go on meanwhile.
	smu    sync.Mutex
	synced int64 // written bytes flushed to the device

	// The flusher's own (and stop's, after the flusher ended).
	ackGen uint64
	ackWM  uint64 // watermark last written to the acked file

	clock atomic.Int64 // Unix ns, updated every SyncInterval: the put time of records

	// Loader's own.
	rseg   *segment
	rfile  *os.File
	roff   int64  // offset in rseg of the frame of sequence number rseq
	rseq   uint64 //
	rbuf   []byte
	lbatch []entry

	loadWake   chan struct{}
	loaderStop chan struct{}
	stopLoad   sync.Once
	stopc      chan struct{}
	wg         sync.WaitGroup
	closeError error
}

// openSpool locks dir (creating it), reads what an earlier producer left there, and returns
// the spool; records found are the backlog its loader queues once started.
func openSpool(dir string, o SpoolOptions, buf *buffer) (s *spool, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("producer: creating spool directory: %w", err)
	}
	s = &spool{dir: dir, opts: o, buf: buf, syncWaiters: map[uint64]chan Result{},
		loadWake: make(chan struct{}, 1), loaderStop: make(chan struct{}), stopc: make(chan struct{})}
	s.lockFile, err = lockDir(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	id, err := producerID(dir)
	if err != nil {
		return nil, err
	}
	s.recovery = SpoolRecovery{Dir: dir, ProducerID: id}
	s.ackFile, err = os.OpenFile(filepath.Join(dir, "acked"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("producer: opening spool: %w", err)
	}
	wm := s.readAcked()
	s.ackWM = wm
	if err = s.recover(wm); err != nil {
		return nil, err
	}
	return s, nil
}

// producerID reads the directory's producer id, creating it the first time.
func producerID(dir string) (string, error) {
	path := filepath.Join(dir, "id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if _, herr := hex.DecodeString(id); herr == nil && len(id) == 32 {
			return id, nil
		}
		// A torn or foreign id file: a new identity is safer than a wrong one.
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("producer: reading spool id: %w", err)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("producer: writing spool id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("producer: writing spool id: %w", err)
	}
	syncDir(dir)
	return id, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// readAcked returns the watermark in the acked file (0 when there is none).
func (s *spool) readAcked() uint64 {
	var b [2 * ackSlot]byte
	n, _ := s.ackFile.ReadAt(b[:], 0)
	var bestGen, wm uint64
	for i := 0; i+ackSlot <= n; i += ackSlot {
		slot := b[i : i+ackSlot]
		gen, w := binary.LittleEndian.Uint64(slot), binary.LittleEndian.Uint64(slot[8:])
		if crc32.Checksum(slot[:16], castagnoli) != binary.LittleEndian.Uint32(slot[16:]) {
			continue
		}
		if gen >= bestGen {
			bestGen, wm = gen, w
		}
	}
	s.ackGen = bestGen
	return wm
}

// writeAcked records the watermark wm. It is not fsynced: a lost update only
// makes the next start send again records that were delivered.
func (s *spool) writeAcked(wm uint64) error {
	if wm == s.ackWM {
		return nil
	}
	s.ackGen++
	var slot [ackSlot]byte
	binary.LittleEndian.PutUint64(slot[:], s.ackGen)
	binary.LittleEndian.PutUint64(slot[8:], wm)
	binary.LittleEndian.PutUint32(slot[16:], crc32.Checksum(slot[:16], castagnoli))
	if _, err := s.ackFile.WriteAt(slot[:], int64(s.ackGen%2)*ackSlot); err != nil {
		return err
	}
	s.ackWM = wm
	return nil
}

// recover scans the segments left in the directory: it keeps the records from wm on,
// deletes segments that hold none, and cuts damaged tails off.
func (s *spool) recover(wm uint64) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("producer: reading spool directory: %w", err)
	}
	var segs []*segment
	for _, de := range entries {
		name := de.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			continue // not ours
		}
		segs = append(segs, &segment{path: filepath.Join(s.dir, name), first: first})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	next := wm
	for _, sg := range segs {
		if err := s.scan(sg, wm); err != nil {
			return err
		}
		if sg.end <= wm || sg.end == sg.first {
			if err := os.Remove(sg.path); err != nil {
				return fmt.Errorf("producer: removing spent spool segment: %w", err)
			}
			continue
		}
		s.segs = append(s.segs, sg)
		s.diskBytes += sg.size
		s.recovery.Segments++
		s.recovery.Records += sg.end - max(sg.first, wm)
		next = max(next, sg.end)
	}
	s.nextSeq, s.memSeq, s.startSeq, s.writtenSeq = next, wm, next, next
	s.acks.reset(wm)
	s.pending = s.recovery.Records
	// Sequence numbers between wm and next that no segment holds were lost to damage;
	// the loader acknowledges them as it passes.
	return nil
}

// scan reads a segment's frames, sets its end and size, and truncates it after the last good
// frame (saving the damaged bytes beside it). Records below wm are counted for the put
// times only.
func (s *spool) scan(sg *segment, wm uint64) error {
	f, err := os.OpenFile(sg.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("producer: opening spool segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("producer: reading spool segment: %w", err)
	}
	size := st.Size()
	var hdr [len(segmentMagic)]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:]) != segmentMagic {
		sg.end, sg.size = sg.first, 0
		return s.damage(f, sg, 0, size, "missing or bad segment header")
	}
	r := &frameReader{f: f, off: int64(len(segmentMagic))}
	seq := sg.first
	for {
		fr, err := r.next()
		if err == io.EOF {
			break
		}
		if err == nil && fr.seq != seq {
			err = fmt.Errorf("record %d where %d was expected", fr.seq, seq)
		}
		if err != nil {
			sg.end, sg.size = seq, r.off
			return s.damage(f, sg, r.off, size-r.off, err.Error())
		}
		if seq >= wm && (seq == max(sg.first, wm) || seq%ageEvery == 0) {
			s.ages = append(s.ages, ageMark{seq: seq, at: fr.at})
		}
		seq++
	}
	sg.end, sg.size = seq, r.off
	return nil
}

// damage records that bytes from off to the end of sg are bad, saves them beside the
// segment and cuts them off.
func (s *spool) damage(f *os.File, sg *segment, off, n int64, reason string) error {
	d := SpoolDamage{File: sg.path, Offset: off, Bytes: n, Reason: reason}
	if n > 0 {
		saved := fmt.Sprintf("%s.damaged-%d", sg.path, off)
		if out, err := os.Create(saved); err == nil {
			if _, err := io.Copy(out, io.NewSectionReader(f, off, n)); err == nil {
				d.SavedAs = saved
			}
			out.Close()
		}
		if err := f.Truncate(off); err != nil {
			return fmt.Errorf("producer: cutting the damaged end off spool segment %s: %w", sg.path, err)
		}
	}
	s.recovery.Damaged = append(s.recovery.Damaged, d)
	return nil
}

// frameReader reads frames sequentially from a file.
type frameReader struct {
	f   *os.File
	off int64  // offset of the next frame
	buf []byte // bytes read from off on
	pos int
}

type frame struct {
	seq      uint64
	at       int64
	pk, ehk  []byte
	data     []byte
	frameLen int
}

var errTorn = errors.New("truncated record (a write cut short)")

// next returns the next frame; io.EOF at a clean end. The frame's slices are valid until the
// next call.
func (r *frameReader) next() (frame, error) {
	if err := r.fill(frameHeader); err != nil {
		return frame{}, err
	}
	h := r.buf[r.pos:]
	n := int(binary.LittleEndian.Uint32(h))
	sum := binary.LittleEndian.Uint32(h[4:])
	if n < 16 || n > maxFrame {
		return frame{}, fmt.Errorf("record length %d out of range", n)
	}
	if err := r.fill(frameHeader + n); err != nil {
		if err == io.EOF {
			err = errTorn
		}
		return frame{}, err
	}
	payload := r.buf[r.pos+frameHeader : r.pos+frameHeader+n]
	if crc32.Checksum(payload, castagnoli) != sum {
		return frame{}, errors.New("checksum mismatch")
	}
	fr, ok := parsePayload(payload)
	if !ok {
		return frame{}, errors.New("malformed record")
	}
	fr.frameLen = frameHeader + n
	r.pos += fr.frameLen
	r.off += int64(fr.frameLen)
	return fr, nil
}

// fill makes n bytes available at r.pos: io.EOF when the file ends before any, errTorn when
// it ends within them.
func (r *frameReader) fill(n int) error {
	if len(r.buf)-r.pos >= n {
		return nil
	}
	rest := copy(r.buf, r.buf[r.pos:])
	r.buf = r.buf[:rest]
	r.pos = 0
	want := max(n, 1<<20)
	if cap(r.buf) < want {
		r.buf = slices.Grow(r.buf, want-len(r.buf))
	}
	for len(r.buf) < n {
		m, err := r.f.ReadAt(r.buf[len(r.buf):cap(r.buf)], r.off+int64(len(r.buf)))
		r.buf = r.buf[:len(r.buf)+m]
		if err == io.EOF || (err == nil && m == 0) {
			if len(r.buf) == 0 {
				return io.EOF
			}
			if len(r.buf) < n {
				return errTorn
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parsePayload(p []byte) (frame, bool) {
	var fr frame
	fr.seq = binary.LittleEndian.Uint64(p)
	fr.at = int64(binary.LittleEndian.Uint64(p[8:]))
	p = p[16:]
	for _, dst := range []*[]byte{&fr.pk, &fr.ehk} {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return frame{}, false
		}
		*dst = p[n : n+int(l)]
		p = p[n+int(l):]
	}
	fr.data = p
	return fr, true
}

func frameSize(r *Record) int {
	return frameHeader + 16 + uvarintLen(len(r.PartitionKey)) + len(r.PartitionKey) +
		uvarintLen(len(r.ExplicitHashKey)) + len(r.ExplicitHashKey) + len(r.Data)
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// --- appending (buf.mu held) ---

func (s *spool) errLocked() error { return s.err }

// roomLocked reports whether r fits in the spool.
func (s *spool) roomLocked(r *Record) bool {
	return s.pending == 0 || s.diskBytes+int64(frameSize(r)) <= s.opts.MaxBytes
}

// backlogLocked reports whether records are on disk only, waiting to be loaded.
func (s *spool) backlogLocked() bool { return s.memSeq < s.nextSeq }

func (s *spool) pendingLocked() uint64 { return s.pending }

// appendLocked encodes r as the next frame and returns its sequence number.
func (s *spool) appendLocked(r *Record) uint64 {
	seq := s.nextSeq
	s.nextSeq++
	n := frameSize(r)
	start := len(s.wbuf)
	if cap(s.wbuf)-start < n {
		// A fresh buffer (the other one is being written), or one outgrown: size it for a
		// chunk and then some, so that appends rarely copy it.
		s.wbuf = slices.Grow(s.wbuf, max(n, 2*spoolWriteChunk))
	}
	s.wbuf = s.wbuf[:start+n]
	b := s.wbuf[start:]
	binary.LittleEndian.PutUint32(b, uint32(n-frameHeader))
	p := b[frameHeader:]
	now := s.clock.Load()
	binary.LittleEndian.PutUint64(p, seq)
	binary.LittleEndian.PutUint64(p[8:], uint64(now))
	i := 16
	i += binary.PutUvarint(p[i:], uint64(len(r.PartitionKey)))
	i += copy(p[i:], r.PartitionKey)
	i += binary.PutUvarint(p[i:], uint64(len(r.ExplicitHashKey)))
	i += copy(p[i:], r.ExplicitHashKey)
	copy(p[i:], r.Data)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(p, castagnoli))
	s.appended += int64(n)
	s.diskBytes += int64(n)
	s.pending++
	if seq%ageEvery == 0 || len(s.ages) == 0 {
		s.ages = append(s.ages, ageMark{seq: seq, at: now})
	}
	return seq
}

// ackLocked records that the record seq was reported.
func (s *spool) ackLocked(seq uint64) {
	if s.acks.ack(seq) {
		s.pending--
	}
}

// wantLoad wakes the loader.
func (s *spool) wantLoad() {
	select {
	case s.loadWake <- struct{}{}:
	default:
	}
}

// statsLocked adds the spool's figures to st.
func (s *spool) statsLocked(st *Stats) {
	st.SpooledRecords = s.pending
	st.SpooledBytes = s.diskBytes
	st.RecordsReplayed = s.replayed
	st.SpoolLostRecords = s.lost
	if s.pending > 0 {
		wm := s.acks.wm
		i := sort.Search(len(s.ages), func(i int) bool { return s.ages[i].seq > wm })
		if i > 0 {
			i--
		}
		if i < len(s.ages) {
			st.OldestSpooledAge = time.Duration(max(0, time.Now().UnixNano()-s.ages[i].at))
		}
	}
}

// --- writing ---

// commit returns once the bytes appended up to end are as durable as the sync mode
// promises before Put returns.
func (s *spool) commit(end int64) error {
	if s.opts.Sync == SyncBatched {
		return nil
	}
	s.wmu.Lock()
	var err error
	if s.written < end {
		err = s.writeLocked()
	}
	s.wmu.Unlock()
	if err == nil && s.opts.Sync == SyncFsync {
		err = s.syncUpTo(end)
	}
	return err
}

// writeEarly writes what was appended unless another goroutine is writing already.
func (s *spool) writeEarly() {
	if s.wmu.TryLock() {
		_ = s.writeLocked()
		s.wmu.Unlock()
	}
}

// writeLocked writes every appended frame to the current segment, starting a new one when
// it is full (wmu held).
func (s *spool) writeLocked() error {
	b := s.buf
	b.mu.Lock()
	if s.err != nil {
		// Nothing more is written after a failed write: frames appended meanwhile are
		// lost, and the loader counts them when it passes.
		s.wbuf = s.wbuf[:0]
		s.writtenSeq = s.nextSeq
		err := s.err
		b.mu.Unlock()
		return err
	}
	data, upto := s.wbuf, s.appended
	if len(data) == 0 {
		b.mu.Unlock()
		return nil
	}
	first, end := binary.LittleEndian.Uint64(data[frameHeader:]), s.nextSeq
	// wbuf and spare take turns: one is written while the other collects.
	s.wbuf, s.spare = s.spare[:0], nil
	b.mu.Unlock()
	err := s.writeFrames(data, first, end)
	s.spare = data[:0]
	if cap(s.spare) > 16<<20 {
		s.spare = nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s.writtenSeq = end
	if err != nil {
		s.err = fmt.Errorf("%w: %w", ErrSpool, err)
		b.notifyLocked()
		return s.err
	}
	s.written = upto
	return nil
}

// writeFrames writes data, the frames of records first..end-1 (wmu held).
func (s *spool) writeFrames(data []byte, first, end uint64) error {
	if s.cur != nil && s.cur.size >= s.opts.SegmentBytes {
		s.rotateLocked()
	}
	if s.cur == nil {
		sg := &segment{path: filepath.Join(s.dir, fmt.Sprintf("%020d.seg", first)), first: first, end: first, open: true}
		f, err := os.OpenFile(sg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("creating spool segment: %w", err)
		}
		if _, err := f.Write([]byte(segmentMagic)); err != nil {
			f.Close()
			return fmt.Errorf("writing spool segment: %w", err)
		}
		if s.opts.Sync != SyncWrite {
			syncDir(s.dir)
		}
		sg.size = int64(len(segmentMagic))
		s.cur, s.curFile = sg, f
		s.buf.mu.Lock()
		s.segs = append(s.segs, sg)
		s.diskBytes += sg.size
		s.buf.mu.Unlock()
	}
	if _, err := s.curFile.Write(data); err != nil {
		return fmt.Errorf("writing spool segment %s: %w", s.cur.path, err)
	}
	s.buf.mu.Lock()
	s.cur.size += int64(len(data))
	s.cur.end = end
	s.buf.mu.Unlock()
	return nil
}

// rotateLocked ends the current segment (wmu held); syncUpTo flushes and closes its file.
func (s *spool) rotateLocked() {
	s.retired = append(s.retired, s.curFile)
	s.buf.mu.Lock()
	s.cur.open = false
	s.buf.mu.Unlock()
	s.cur, s.curFile = nil, nil
}

// syncUpTo returns once the bytes written up to end are flushed to the device. Concurrent
// callers share one fsync; writes go on while it runs.
func (s *spool) syncUpTo(end int64) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.synced >= end {
		return nil
	}
	s.wmu.Lock()
	cur, retired, upto := s.curFile, s.retired, s.written
	s.retired = nil
	s.wmu.Unlock()
	var err error
	for _, f := range retired {
		if serr := f.Sync(); serr != nil && err == nil {
			err = serr
		}
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if cur != nil && err == nil {
		err = cur.Sync()
	}
	if err != nil {
		s.buf.mu.Lock()
		s.err = fmt.Errorf("%w: syncing spool segment: %w", ErrSpool, err)
		s.buf.mu.Unlock()
		return s.err
	}
	s.synced = max(s.synced, upto)
	return nil
}

// --- background work ---

// start runs the spool's flusher and loader.
func (s *spool) start() {
	s.clock.Store(time.Now().UnixNano())
	s.wg.Add(2)
	go s.flusher()
	go s.loader()
	s.wantLoad()
}

// flusher writes, syncs and collects every SyncInterval until stop.
func (s *spool) flusher() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.clock.Store(now.UnixNano())
			s.flush(false)
		case <-s.stopc:
			return
		}
	}
}

// flush writes and syncs what was appended, deletes segments whose records were all
// reported, and records the watermark. final (at Close) also removes the current segment
// when nothing is pending.
func (s *spool) flush(final bool) {
	s.wmu.Lock()
	err := s.writeLocked()
	written := s.written
	s.wmu.Unlock()
	if err != nil || s.syncUpTo(written) != nil {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	b := s.buf
	b.mu.Lock()
	wm := s.acks.wm
	if final && s.pending == 0 && s.cur != nil {
		s.cur.open = false
	}
	var dead []*segment
	keep := s.segs[:0]
	for _, sg := range s.segs {
		if !sg.open && sg.end <= wm {
			dead = append(dead, sg)
			continue
		}
		keep = append(keep, sg)
	}
	clear(s.segs[len(keep):])
	s.segs = keep
	b.mu.Unlock()
	if final && s.pending == 0 && s.curFile != nil {
		s.curFile.Close()
		s.cur, s.curFile = nil, nil
	}
	var freed int64
	for _, sg := range dead {
		if err := os.Remove(sg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			continue
		}
		freed += sg.size
	}
	if err := s.writeAcked(wm); err != nil && final {
		s.closeError = fmt.Errorf("producer: writing the spool's acknowledgements: %w", err)
	}
	if freed > 0 {
		b.mu.Lock()
		s.diskBytes -= freed
		b.notifyLocked()
		b.mu.Unlock()
	}
}

// stopLoader stops the loader: nothing more is queued from disk.
func (s *spool) stopLoader() { s.stopLoad.Do(func() { close(s.loaderStop) }) }

// stop stops the background work, flushes, closes the files and releases the directory. It
// returns how many records stay in the spool for the next start.
func (s *spool) stop() uint64 {
	s.stopLoader()
	close(s.stopc)
	s.wg.Wait()
	if s.rfile != nil {
		s.rfile.Close()
		s.rfile, s.rseg = nil, nil
	}
	s.flush(true)
	s.buf.mu.Lock()
	kept := s.pending
	for seq, ch := range s.syncWaiters { // records on disk only, which Close gave up on
		select {
		case ch <- Result{Err: fmt.Errorf("%w: the record stays in the spool for the next start", ErrClosed)}:
		default:
		}
		delete(s.syncWaiters, seq)
	}
	s.buf.mu.Unlock()
	s.wmu.Lock()
	if s.curFile != nil {
		if err := s.curFile.Close(); err != nil && s.closeError == nil {
			s.closeError = fmt.Errorf("producer: closing spool segment: %w", err)
		}
		s.cur, s.curFile = nil, nil
	}
	s.wmu.Unlock()
	s.closeFiles()
	return kept
}

func (s *spool) closeErr() error { return s.closeError }

func (s *spool) closeFiles() {
	if s.ackFile != nil {
		s.ackFile.Close()
		s.ackFile = nil
	}
	if s.lockFile != nil {
		unlockDir(s.lockFile)
		s.lockFile = nil
	}
}

// loader queues records that are on disk only (left by an earlier run, or put while memory
// was full) as memory frees room, in sequence order.
func (s *spool) loader() {
	defer s.wg.Done()
	for {
		select {
		case <-s.loadWake:
		case <-s.loaderStop:
			return
		}
		for s.loadSome() {
			select {
			case <-s.loaderStop:
				return
			default:
			}
		}
	}
}

// loadSome queues a chunk of the backlog; it reports whether to go on at once.
func (s *spool) loadSome() bool {
	s.wmu.Lock()
	_ = s.writeLocked() // the files must hold what is to be read; a failure is counted below
	s.wmu.Unlock()
	b := s.buf
	b.mu.Lock()
	if !s.backlogLocked() {
		b.mu.Unlock()
		return false
	}
	roomBytes := b.maxBytes - b.bytes
	roomRecs := b.maxRecords - b.records
	from := s.memSeq
	var sg *segment
	for _, x := range s.segs {
		if x.end > from {
			sg = x
			break
		}
	}
	if from >= s.writtenSeq {
		// What is left is being written right now: look again once it is in the files.
		b.mu.Unlock()
		return true
	}
	if sg == nil || sg.first > from {
		// Records from..(sg.first, or all written) are in no file: lost to damage or to a
		// failed write. Acknowledge them so that the watermark passes.
		to := s.writtenSeq
		if sg != nil {
			to = sg.first
		}
		for q := from; q < to; q++ {
			s.ackLocked(q)
		}
		s.lost += to - from
		s.memSeq = to
		b.notifyLocked()
		b.mu.Unlock()
		return true
	}
	segEnd, segSize := sg.end, sg.size
	b.mu.Unlock()
	if roomRecs <= 0 || roomBytes <= 0 {
		return false // release wakes the loader again
	}
	if s.rseg != sg {
		if s.rfile != nil {
			s.rfile.Close()
		}
		f, err := os.Open(sg.path)
		if err != nil {
			b.mu.Lock()
			s.err = fmt.Errorf("%w: reading spool segment: %w", ErrSpool, err)
			b.mu.Unlock()
			return false
		}
		s.rfile, s.rseg, s.roff, s.rseq = f, sg, int64(len(segmentMagic)), sg.first
	}
	r := &frameReader{f: s.rfile, off: s.roff, buf: s.rbuf[:0]}
	batch := s.lbatch[:0]
	var slab []byte // the batch's data, copied out of the read buffer, which moves
	var bytes int64
	var readErr error
	for s.rseq < segEnd && r.off < segSize && bytes < loadChunk && int64(len(batch)) < roomRecs {
		fr, err := r.next()
		if err != nil {
			readErr = err
			break
		}
		seq := s.rseq
		s.rseq++
		s.roff = r.off
		if seq < from {
			continue // acknowledged before this run started
		}
		size := len(fr.pk) + len(fr.data)
		if int64(size) > roomBytes-bytes && len(batch) > 0 {
			s.rseq--
			s.roff -= int64(fr.frameLen)
			break
		}
		if slab == nil {
			slab = make([]byte, 0, min(loadChunk, roomBytes))
		}
		if cap(slab)-len(slab) < len(fr.data) {
			slab = make([]byte, 0, max(len(fr.data), loadChunk/4))
		}
		at := len(slab)
		slab = append(slab, fr.data...)
		e := entry{rec: Record{PartitionKey: string(fr.pk), ExplicitHashKey: string(fr.ehk), Data: slab[at:len(slab):len(slab)]},
			seq: seq, spooled: true, size: int32(size)}
		if len(fr.ehk) > 0 {
			h, err := kpl.ParseHashKey(e.rec.ExplicitHashKey)
			if err == nil {
				e.hash, e.hashed = h, true
			} else {
				e.rec.ExplicitHashKey = "" // validated when put; routed by its key if damaged
			}
		}
		batch = append(batch, e)
		bytes += int64(size)
	}
	s.rbuf = r.buf[:0]
	defer func() { clear(batch); s.lbatch = batch[:0] }()
	if len(batch) == 0 {
		if readErr == nil {
			return false
		}
		// A record of this run's files is unreadable (the disk altered it): the rest of
		// the segment is lost. Count it and go on with the next one rather than stall.
		b.mu.Lock()
		for q := max(from, s.rseq); q < segEnd; q++ {
			s.ackLocked(q)
		}
		s.lost += segEnd - max(from, s.rseq)
		s.memSeq = max(s.memSeq, segEnd)
		s.rseq, s.roff = segEnd, segSize
		b.notifyLocked()
		b.mu.Unlock()
		return true
	}
	b.mu.Lock()
	for i := range batch {
		e := batch[i] // e.seq == s.memSeq: the loader alone moves memSeq while there is a backlog
		if ch, ok := s.syncWaiters[e.seq]; ok {
			e.sync = ch
			delete(s.syncWaiters, e.seq)
		}
		if e.seq < s.startSeq {
			s.replayed++
		}
		b.queueOwnedLocked(e) // the data is in the batch's own slab
		s.memSeq++
	}
	more := s.backlogLocked()
	b.mu.Unlock()
	b.signal()
	return more
}

// ackTracker keeps the watermark below which every sequence number is acknowledged, and a
// bitmap of those acknowledged above it.
type ackTracker struct {
	wm    uint64 // every sequence number below is acknowledged
	base  uint64 // sequence number of bit 0 of words[head]
	words []uint64
	head  int
}

func (a *ackTracker) reset(wm uint64) {
	a.wm, a.base, a.words, a.head = wm, wm&^63, a.words[:0], 0
}

// ack acknowledges seq; it reports false if it already was.
func (a *ackTracker) ack(seq uint64) bool {
	if seq < a.wm {
		return false
	}
	off := seq - a.base
	i := a.head + int(off/64)
	for i >= len(a.words) {
		a.words = append(a.words, 0)
	}
	bit := uint64(1) << (off % 64)
	if a.words[i]&bit != 0 {
		return false
	}
	a.words[i] |= bit
	if seq == a.wm {
		a.advance()
	}
	return true
}

func (a *ackTracker) advance() {
	for a.head < len(a.words) {
		shift := (a.wm - a.base) % 64
		run := uint64(bits.TrailingZeros64(^(a.words[a.head] >> shift)))
		run = min(run, 64-shift)
		a.wm += run
		if a.wm-a.base < 64 {
			break
		}
		a.words[a.head] = 0
		a.head++
		a.base += 64
	}
	switch {
	case a.head == len(a.words):
		a.words, a.head = a.words[:0], 0
	case a.head > 1024 && a.head*2 > len(a.words):
		n := copy(a.words, a.words[a.head:])
		a.words, a.head = a.words[:n], 0
	}
}

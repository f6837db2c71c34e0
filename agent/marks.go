package agent

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// marksFile, in the state directory, holds for each open file how far the agent read it,
// its committed position and the origin its lines are named by, written in place (not
// fsynced) as they move: a crash of the process loses none of them. positions.json, fsynced
// every positions_interval and whenever a file gets a new origin, is what survives a crash
// of the machine. After a process crash the agent therefore resumes at the exact committed
// position (only records in flight are sent again, with the identity they had) and counts
// those re-sent records (kinlog_agent_records_resent_total) to within 16 KiB of lines;
// after a machine crash it resumes at the last stored position and the count is a lower
// bound.
//
// legacyMarksFile is the format of agents before origins (48-byte slots, no origin): read
// once on an upgrade, then removed.
const (
	marksFile       = "marks2"
	legacyMarksFile = "marks"
)

const (
	markSlot       = 64       // dev, inode, read, committed, fingerprint bytes, fingerprint, origin
	legacyMarkSlot = 48       // the same without the origin
	markAhead      = 16 << 10 // a read mark covers this much beyond the record being put
)

// mark is one file's slot.
type mark struct {
	read, committed int64
	fpN             int
	fp              uint64
	origin          string // "" in a legacy slot
}

type marks struct {
	mu    sync.Mutex
	f     *os.File
	slots map[fileID]*markSlotState
	free  []int64
	next  int64
	buf   [markSlot]byte
}

type markSlotState struct {
	at int64
	mark
}

// openMarks reads the marks a previous run left and starts a new file.
func openMarks(dir string) (*marks, map[fileID]mark, error) {
	path := filepath.Join(dir, marksFile)
	old := map[fileID]mark{}
	slot := markSlot
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		slot = legacyMarkSlot
		data, err = os.ReadFile(filepath.Join(dir, legacyMarksFile))
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	le := binary.LittleEndian
	for i := 0; i+slot <= len(data); i += slot {
		id := fileID{le.Uint64(data[i:]), le.Uint64(data[i+8:])}
		if id == (fileID{}) {
			continue
		}
		m := mark{read: int64(le.Uint64(data[i+16:])), committed: int64(le.Uint64(data[i+24:])),
			fpN: int(le.Uint64(data[i+32:])), fp: le.Uint64(data[i+40:])}
		if slot == markSlot {
			m.origin = decodeOrigin(data[i+48 : i+64])
		}
		old[id] = m
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("state_dir: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, legacyMarksFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Close()
		return nil, nil, fmt.Errorf("state_dir: %w", err)
	}
	return &marks{f: f, slots: map[fileID]*markSlotState{}}, old, nil
}

// decodeOrigin reads the 16 bytes of a slot's origin: "" when they are zero.
func decodeOrigin(b []byte) string {
	for _, c := range b {
		if c != 0 {
			return hex.EncodeToString(b)
		}
	}
	return ""
}

// slot returns id's slot, allocating one. m.mu is held.
func (m *marks) slot(id fileID) *markSlotState {
	s, ok := m.slots[id]
	if !ok {
		s = &markSlotState{}
		if n := len(m.free); n > 0 {
			s.at, m.free = m.free[n-1], m.free[:n-1]
		} else {
			s.at, m.next = m.next, m.next+markSlot
		}
		m.slots[id] = s
	}
	return s
}

// write stores s. m.mu is held. A failed write only costs duplicates after a crash.
func (m *marks) write(id fileID, s *markSlotState) {
	le := binary.LittleEndian
	le.PutUint64(m.buf[0:], id.dev)
	le.PutUint64(m.buf[8:], id.ino)
	le.PutUint64(m.buf[16:], uint64(s.read))
	le.PutUint64(m.buf[24:], uint64(s.committed))
	le.PutUint64(m.buf[32:], uint64(s.fpN))
	le.PutUint64(m.buf[40:], s.fp)
	clear(m.buf[48:])
	if o, err := hex.DecodeString(s.origin); err == nil && len(o) == markSlot-48 {
		copy(m.buf[48:], o)
	}
	_, _ = m.f.WriteAt(m.buf[:], s.at)
}

// setRead records that the agent read the file id up to off.
func (m *marks) setRead(id fileID, off int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slot(id)
	s.read = off
	m.write(id, s)
}

// setCommitted records the file's committed position, and the fingerprint and origin of
// the file generation it belongs to; it writes only what changed.
func (m *marks) setCommitted(id fileID, committed int64, fpN int, fp uint64, origin string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slot(id)
	if s.committed == committed && s.fpN == fpN && s.fp == fp && s.origin == origin {
		return
	}
	s.committed, s.fpN, s.fp, s.origin = committed, fpN, fp, origin
	m.write(id, s)
}

// drop forgets a closed file.
func (m *marks) drop(id fileID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.slots[id]
	if !ok {
		return
	}
	delete(m.slots, id)
	m.free = append(m.free, s.at)
	_, _ = m.f.WriteAt(make([]byte, markSlot), s.at)
}

func (m *marks) close() error { return m.f.Close() }

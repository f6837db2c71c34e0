package agent

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestMarksKeepOrigin: a file's origin goes through the marks file with its positions, and
// an agent before identities left marks (48-byte slots, no origin) that are read once
// without one and removed.
func TestMarksKeepOrigin(t *testing.T) {
	dir := t.TempDir()
	m, old, err := openMarks(dir)
	if err != nil || len(old) != 0 {
		t.Fatalf("first open: %v %v", old, err)
	}
	a, b := fileID{1, 2}, fileID{1, 3}
	oa, ob := newOrigin(), newOrigin()
	m.setCommitted(a, 100, 64, 0xfeed, oa)
	m.setRead(a, 500)
	m.setCommitted(b, 7, 7, 0xbeef, ob)
	m.setCommitted(b, 0, 9, 0xcafe, oa) // b truncated: a new generation
	m.setCommitted(b, 0, 9, 0xcafe, ob)
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
	m, old, err = openMarks(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if got, want := old[a], (mark{read: 500, committed: 100, fpN: 64, fp: 0xfeed, origin: oa}); got != want {
		t.Errorf("a: %+v, want %+v", got, want)
	}
	if got, want := old[b], (mark{committed: 0, fpN: 9, fp: 0xcafe, origin: ob}); got != want {
		t.Errorf("b: %+v, want %+v", got, want)
	}

	legacy := t.TempDir()
	slot := make([]byte, legacyMarkSlot)
	le := binary.LittleEndian
	for i, v := range []uint64{5, 6, 300, 200, 32, 0xabc} {
		le.PutUint64(slot[8*i:], v)
	}
	if err := os.WriteFile(filepath.Join(legacy, legacyMarksFile), slot, 0o600); err != nil {
		t.Fatal(err)
	}
	m2, old, err := openMarks(legacy)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.close()
	if got, want := old[fileID{5, 6}], (mark{read: 300, committed: 200, fpN: 32, fp: 0xabc}); got != want || len(old) != 1 {
		t.Errorf("legacy marks: %+v, want %+v", old, want)
	}
	if _, err := os.Stat(filepath.Join(legacy, legacyMarksFile)); !os.IsNotExist(err) {
		t.Errorf("legacy marks file kept: %v", err)
	}
}

// TestRandomKeysStable: the random keys are the same in every run, and a file record's
// pick depends only on its identity.
func TestRandomKeysStable(t *testing.T) {
	r, _ := parseKeyPolicy("random")
	h := originHash("0123456789abcdef0123456789abcdef")
	if a, b := r.key(nil, "", keyPick(h, 4096)), r.key(nil, "", keyPick(originHash("0123456789abcdef0123456789abcdef"), 4096)); a != b {
		t.Fatal("the same identity picks different keys")
	}
	if randomKeys[0] != "17rtww9qhzcrb" {
		t.Errorf("randomKeys[0] = %q: the keys changed, so lines read again after an upgrade go to other shards", randomKeys[0])
	}
	seen := map[string]bool{}
	for off := range int64(2000) {
		seen[r.key(nil, "", keyPick(h, off*97))] = true
	}
	if len(seen) < 1000 {
		t.Errorf("file records spread over %d keys in 2000", len(seen))
	}
}

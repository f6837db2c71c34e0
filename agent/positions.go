package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// positionsFile is the name of the file, in the state directory, that keeps every tailed
// file's position.
const positionsFile = "positions.json"

// filePosition is one tailed file in the positions file.
type filePosition struct {
	// Path is where the file was last seen.
	Path string `json:"path"`
	// Dev and Inode identify the file; Fingerprint (FNV-1a 64 of its first FingerprintBytes
	// bytes) tells a file from a later one that got the same inode.
	Dev              uint64 `json:"dev"`
	Inode            uint64 `json:"inode"`
	FingerprintBytes int    `json:"fingerprint_bytes"`
	Fingerprint      string `json:"fingerprint"`
	// Origin names the file's lines in their kinlog identity (kpl.Identity.Origin): 32 hex
	// digits drawn at random when the agent first opened this generation of the file (a
	// truncation starts a new one), so that lines read again after a restart keep the
	// identity they were sent with. Empty in files written by agents before identities.
	Origin string `json:"origin,omitempty"`
	// Offset is the committed position: every record that came from the bytes before it
	// was confirmed by Kinesis. A restart reads on from here.
	Offset int64 `json:"offset"`
	// ReadOffset is how far the agent had read when it stored the file. Records re-read
	// between Offset and ReadOffset after an unclean stop were sent before it and may be
	// in the stream twice: they are counted.
	ReadOffset int64 `json:"read_offset"`
}

type positionsDoc struct {
	Version int            `json:"version"`
	Files   []filePosition `json:"files"`
}

// loadPositions reads the positions file; found is false when there is none (the agent's
// first start in this state directory).
func loadPositions(dir string) (pos []filePosition, found bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, positionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var doc positionsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, true, fmt.Errorf("positions file %s is damaged (%v); move it away to start over (files are then read as on a first start)", filepath.Join(dir, positionsFile), err)
	}
	if doc.Version != 1 {
		return nil, true, fmt.Errorf("positions file %s has version %d; this agent reads version 1", filepath.Join(dir, positionsFile), doc.Version)
	}
	return doc.Files, true, nil
}

// savePositions replaces the positions file atomically and durably: a temporary file is
// written and fsynced, renamed over the old one, and the directory fsynced.
func savePositions(dir string, pos []filePosition) error {
	sort.Slice(pos, func(i, j int) bool { return pos[i].Path < pos[j].Path })
	data, err := json.MarshalIndent(positionsDoc{Version: 1, Files: pos}, "", " ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, positionsFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, positionsFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

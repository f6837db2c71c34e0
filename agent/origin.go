package agent

import (
	"crypto/rand"
	"encoding/hex"
	"hash/fnv"
)

// A file's lines are named, in their kinlog identity (kpl.Identity, see docs/identity.md),
// by an origin of the file and their byte span in it: Seq is the offset of a record's first
// byte, Span the bytes it consumed (its newline, the lines a multiline record joined, a
// line cut to max_line_bytes whole), and Floor the file's stored position when the record
// was put (every record that starts below it was confirmed by Kinesis). The archive drops a
// record whose (origin, Seq) it already archived on the shard or that starts below a floor
// it saw: a line the agent reads again after a crash is archived once.
//
// The origin is drawn at random (newOrigin) when the agent first opens a file, and again
// when it finds the file truncated or replaced: it names one generation of the file's
// content. Nothing the agent sees of a file could name it both stably and uniquely: the
// fingerprint of a file shorter than a kilobyte changes as it grows, and an inode reused by
// a new file, a file truncated and written again, or a cloned host can show the same device,
// inode and first bytes with other lines behind them, whose identities must not collide. The
// origin is kept with the file's position (positions.json, marks2) instead, and stored
// durably before the first line of a new generation is put (tailer.persistOrigins), so
// that a restart, even after a crash of the machine, resumes with the origin it had. Two
// agents, or two state directories, never share an origin: each archives its own copy.

// newOrigin returns a new file origin: 32 hex digits.
func newOrigin() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// originHash hashes an origin for keyPick.
func originHash(origin string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(origin))
	return h.Sum64()
}

// keyPick chooses the random partition key of a file record from its identity, so that a
// line read again after a restart goes to the shard of its first copy, where the archive's
// per-shard state recognises it (a key drawn anew would send it to any shard).
func keyPick(originHash uint64, seq int64) uint64 {
	// SplitMix64's finaliser.
	z := originHash ^ uint64(seq)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

package agent_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kinlog/kinlog/agent"
	"github.com/kinlog/kinlog/internal/kpl"
	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/sinks/dedup"
)

// userRecord is a user record of the stream as the archive sink meets it: its shard, its
// KPL record (with the identity decoded) and its Kinesis record's arrival time.
type userRecord struct {
	shard   string
	rec     kpl.Record
	arrival time.Time
}

// streamRecords reads every shard from TRIM_HORIZON, parents before children, and returns
// the user records in that order (each shard's in shard order). Aggregates are
// deaggregated, and skipped whole when a user record hashes outside the shard's range, as
// the sink does.
func streamRecords(t *testing.T, c *kinesis.Client, stream string) []userRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shards, err := testenv.ListAllShards(ctx, c, stream)
	if err != nil {
		t.Fatal(err)
	}
	var out []userRecord
	done := map[string]bool{}
	for len(done) < len(shards) {
		progress := false
		for _, s := range shards {
			id := *s.ShardId
			if done[id] {
				continue
			}
			ready := true
			for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
				if p != nil && !done[*p] && hasShard(shards, *p) {
					ready = false
				}
			}
			if !ready {
				continue
			}
			rng, err := kpl.ParseHashKeyRange(*s.HashKeyRange.StartingHashKey, *s.HashKeyRange.EndingHashKey)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range testenv.ReadShard(t, c, stream, id) {
				recs, ok := kpl.Decode(r.Data)
				if !ok {
					out = append(out, userRecord{shard: id, rec: kpl.Record{PartitionKey: *r.PartitionKey, Data: r.Data}, arrival: *r.ApproximateArrivalTimestamp})
					continue
				}
				if !kpl.AllInRange(recs, rng) {
					continue
				}
				for _, u := range recs {
					out = append(out, userRecord{shard: id, rec: u, arrival: *r.ApproximateArrivalTimestamp})
				}
			}
			done[id], progress = true, true
		}
		if !progress {
			t.Fatalf("shards with parents that never end: %v", shards)
		}
	}
	return out
}

func hasShard(shards []ktypes.Shard, id string) bool {
	for _, s := range shards {
		if *s.ShardId == id {
			return true
		}
	}
	return false
}

// dedupStream runs the archive sink's deduplication over recs as streamRecords returns
// them: one dedup state per shard (a child starting from the merge of its parents' final
// states; none here, the tests do not reshard), each record observed in shard order. It
// returns the records kept and the number dropped.
func dedupStream(t *testing.T, c *kinesis.Client, stream string, recs []userRecord) (kept []userRecord, dropped int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shards, err := testenv.ListAllShards(ctx, c, stream)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]*dedup.State{}
	state := func(shard string) *dedup.State {
		if s := states[shard]; s != nil {
			return s
		}
		s := dedup.New(dedup.Limits{})
		for _, sh := range shards {
			if *sh.ShardId != shard {
				continue
			}
			for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
				if p != nil && states[*p] != nil {
					s.Merge(states[*p])
				}
			}
		}
		states[shard] = s
		return s
	}
	for _, r := range recs {
		if state(r.shard).Observe(r.rec.ID, r.arrival) {
			dropped++
			continue
		}
		kept = append(kept, r)
	}
	return kept, dropped
}

// positionsOrigins returns the origin positions.json holds for each file, by path.
func positionsOrigins(t *testing.T, state string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(state, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Files []struct {
			Path   string `json:"path"`
			Origin string `json:"origin"`
		} `json:"files"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range doc.Files {
		if b, err := hex.DecodeString(f.Origin); err != nil || len(b) != 16 {
			t.Errorf("origin %q of %s is not 32 hex digits", f.Origin, f.Path)
		}
		out[f.Path] = f.Origin
	}
	return out
}

// lineIdentity is what a record of a file line must carry.
type lineIdentity struct {
	path      string
	seq, span uint64
	minFloor  uint64 // the position the run that read it started at
}

// TestIntegrationFileLineIdentity: every record of a file line carries the file's origin (as
// positions.json holds it), the line's offset and the bytes it consumed, and a floor between
// the position the run started at and the line's offset. The lines of a file keep its
// origin across restarts, also while the file grows past the kilobyte its fingerprint reads;
// different files have different origins. Covered: JSON lines, a text line cut to
// max_line_bytes, a multiline record, CRI lines with a partial line joined across a line of
// the other stream.
func TestIntegrationFileLineIdentity(t *testing.T) {
	c, stream := newStream(t, 2)
	dir, state := t.TempDir(), t.TempDir()
	small, text, ml := filepath.Join(dir, "small.log"), filepath.Join(dir, "text.log"), filepath.Join(dir, "ml.txt")
	pod := filepath.Join(dir, "pod.cri")
	cfg := agent.Config{Stream: stream, StateDir: state, Host: "h1", Files: []agent.FileInput{
		{Paths: []string{small}},
		{Paths: []string{text}, MaxLineBytes: 100},
		{Paths: []string{ml}, Format: agent.FormatText, Multiline: agent.Multiline{StartPattern: `^\d{4}-`, FlushTimeout: 100 * time.Millisecond}},
		{Paths: []string{pod}, Format: agent.FormatCRI},
	}}
	want := map[string]lineIdentity{} // by record key (see recordKey)
	offsets := map[string]int64{}     // each file's size so far
	add := func(path string, minFloor int64, lines ...string) {
		for _, l := range lines {
			off := offsets[path]
			offsets[path] += int64(len(l) + 1)
			if strings.HasPrefix(l, "{") {
				want[l] = lineIdentity{path, uint64(off), uint64(len(l) + 1), uint64(minFloor)}
			}
		}
		appendLines(t, path, lines...)
	}

	add(small, 0, jsonLines("i", 0, 3)...) // 177 bytes: its fingerprint grows with it
	if offsets[small] >= 1024 {
		t.Fatalf("small.log starts with %d bytes", offsets[small])
	}
	textLines := []string{"plain line", "", strings.Repeat("x", 300), "after the long one"}
	add(text, 0, textLines...)
	want["plain line"] = lineIdentity{text, 0, 11, 0}
	want["x*"] = lineIdentity{text, 12, 301, 0} // cut to 100 bytes; consumed 301
	want["after the long one"] = lineIdentity{text, 313, 19, 0}
	mlLines := []string{"2026-12-01 ERROR boom", "Traceback (most recent call last):", `  File "t.py", line 1`, "2026-12-01 INFO next"}
	add(ml, 0, mlLines...)
	first := len(mlLines[0]) + len(mlLines[1]) + len(mlLines[2]) + 3
	want[strings.Join(mlLines[:3], "\n")] = lineIdentity{ml, 0, uint64(first), 0}
	want[mlLines[3]] = lineIdentity{ml, uint64(first), uint64(len(mlLines[3]) + 1), 0}
	criLines := []string{
		"2026-12-01T11:40:18.000000001Z stdout P part one, ",
		"2026-12-01T11:40:18.000000002Z stderr F an error in between",
		"2026-12-01T11:40:18.000000003Z stdout F part two",
	}
	add(pod, 0, criLines...)
	// The joined record's span is its final piece's, as in the ledger.
	want["an error in between"] = lineIdentity{pod, uint64(len(criLines[0]) + 1), uint64(len(criLines[1]) + 1), 0}
	want["part one, part two"] = lineIdentity{pod, uint64(len(criLines[0]) + len(criLines[1]) + 2), uint64(len(criLines[2]) + 1), 0}

	r := start(t, c, cfg)
	r.waitCaughtUp(small, text, ml, pod)
	add(small, 0, jsonLines("i", 3, 30)...) // past 1 KiB while tailed
	r.waitCaughtUp(small)
	status := map[string]string{}
	for _, f := range r.a.Status().Files {
		status[f.Path] = f.Origin
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	origins := positionsOrigins(t, state)
	if !maps.Equal(status, origins) {
		t.Errorf("origins in /status %v, in positions.json %v", status, origins)
	}
	restartAt := offsets[small]
	add(small, restartAt, jsonLines("i", 30, 40)...) // while the agent is down
	r = start(t, c, cfg)
	r.waitCaughtUp(small)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	after := positionsOrigins(t, state)
	for _, p := range []string{small, text, ml, pod} {
		if origins[p] == "" || after[p] != origins[p] {
			t.Errorf("%s: origin %q before the restart, %q after", p, origins[p], after[p])
		}
	}
	distinct := map[string]bool{}
	for _, o := range origins {
		distinct[o] = true
	}
	if len(distinct) != 4 {
		t.Errorf("4 files, %d origins: %v", len(distinct), origins)
	}

	recs := streamRecords(t, c, stream)
	seen := map[string]int{}
	for _, u := range recs {
		k := recordKey(t, u.rec.Data)
		w, ok := want[k]
		if !ok {
			t.Errorf("unexpected record %s", u.rec.Data)
			continue
		}
		seen[k]++
		id := u.rec.ID
		if id.Origin != origins[w.path] || id.Seq != w.seq || max(id.Span, 1) != w.span || id.Floor > id.Seq || id.Floor < w.minFloor {
			t.Errorf("%s: identity %+v, want origin %s (%s), seq %d, span %d, floor in [%d, seq]", k, id, origins[w.path], filepath.Base(w.path), w.seq, w.span, w.minFloor)
		}
	}
	for k := range want {
		if seen[k] != 1 {
			t.Errorf("%q: %d records, want 1", k, seen[k])
		}
	}
	kept, dropped := dedupStream(t, c, stream, recs)
	t.Logf("%d records, %d files, %d dropped by the dedup state", len(recs), len(origins), dropped)
	if dropped != 0 || len(kept) != len(recs) {
		t.Errorf("the dedup state dropped %d of %d distinct lines", dropped, len(recs))
	}
}

// recordKey names a record of TestIntegrationFileLineIdentity: a JSON line itself, or the
// message of a wrapped one ("x*" for the cut one).
func recordKey(t *testing.T, data []byte) string {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("record is not JSON: %q", data)
	}
	msg, ok := m["message"].(string)
	if !ok {
		return string(data)
	}
	if strings.HasPrefix(msg, "xxx") {
		if m["truncated"] != true {
			t.Errorf("long line not marked truncated: %s", data)
		}
		return "x*"
	}
	return msg
}

// TestIntegrationCopyTruncateIdentity: after a copytruncate the file is written again with
// the very bytes it began with — the same lines at the same offsets — and more. The new
// content has a new origin: its lines are new records for the archive, and a dedup state
// over the stream drops none of them; the old content's tail, read from the copy, keeps the
// old origin and the old offsets.
func TestIntegrationCopyTruncateIdentity(t *testing.T) {
	c, stream := newStream(t, 2)
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendLines(t, log, jsonLines("c", 0, 100)...)
	r := start(t, c, agent.Config{Stream: stream, StateDir: state, Files: []agent.FileInput{{Paths: []string{log}}}})
	r.waitCaughtUp(log)
	oldOrigin := positionsOrigins(t, state)[log]
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range jsonLines("c", 100, 120) {
		fmt.Fprintln(f, l)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.log.1"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	again := append(jsonLines("c", 0, 5), jsonLines("c", 120, 125)...)
	for _, l := range again {
		fmt.Fprintln(f, l) // O_APPEND: from the new end, 0
	}
	r.waitCaughtUp(log)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	newOrigin := positionsOrigins(t, state)[log]
	if newOrigin == oldOrigin {
		t.Fatalf("origin %s kept through the truncation", newOrigin)
	}
	// Where each line is: its origin and offset.
	type at struct {
		origin string
		seq    uint64
	}
	where := map[string][]at{}
	off := uint64(0)
	for _, l := range jsonLines("c", 0, 120) {
		where[l] = append(where[l], at{oldOrigin, off})
		off += uint64(len(l) + 1)
	}
	off = 0
	for _, l := range again {
		where[l] = append(where[l], at{newOrigin, off})
		off += uint64(len(l) + 1)
	}
	recs := streamRecords(t, c, stream)
	kept, dropped := dedupStream(t, c, stream, recs)
	var got []string
	for _, u := range kept {
		got = append(got, string(u.rec.Data))
		ok := false
		for _, w := range where[string(u.rec.Data)] {
			ok = ok || (u.rec.ID.Origin == w.origin && u.rec.ID.Seq == w.seq)
		}
		if !ok {
			t.Errorf("%s: identity %v, want one of %v", u.rec.Data, u.rec.ID, where[string(u.rec.Data)])
		}
	}
	t.Logf("%d records in the stream (5 lines written twice, at the same offsets), %d dropped by the dedup state", len(recs), dropped)
	if dropped != 0 {
		t.Errorf("the dedup state dropped %d records", dropped)
	}
	diff(t, got, append(jsonLines("c", 0, 125), jsonLines("c", 0, 5)...))
}

// TestIntegrationSocketIdentity: socket and syslog records go through the spooled producer
// and carry the spool's identity: the sockets producer's id as their origin, kept in the
// state directory across a restart, with distinct sequence numbers; file records of the
// same agent carry their file's origin.
func TestIntegrationSocketIdentity(t *testing.T) {
	c, stream := newStream(t, 2)
	dir, state := t.TempDir(), t.TempDir()
	sock, dgram, log := filepath.Join(dir, "lines.sock"), filepath.Join(dir, "log.sock"), filepath.Join(dir, "app.log")
	appendLines(t, log, jsonLines("f", 0, 5)...)
	cfg := agent.Config{Stream: stream, StateDir: state, Host: "h1", Files: []agent.FileInput{{Paths: []string{log}}},
		Sockets: []agent.Listener{{Listen: "unix://" + sock}}, Syslog: []agent.Listener{{Listen: "unixgram://" + dgram}}}
	var ids []string
	for run := range 2 {
		r := start(t, c, cfg)
		_, sockets := r.a.Producers()
		ids = append(ids, sockets.ID())
		send(t, "unix", sock, fmt.Sprintf("socket line %d.0\nsocket line %d.1\n", run, run))
		send(t, "unixgram", dgram, fmt.Sprintf("<14>app: syslog message %d\x00", run))
		waitDelivered(t, r, 3)
		r.waitCaughtUp(log)
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] == "" || ids[1] != ids[0] {
		t.Fatalf("sockets producer ids %q: want the spool's, the same in both runs", ids)
	}
	fileOrigin := positionsOrigins(t, state)[log]
	if fileOrigin == "" || fileOrigin == ids[0] {
		t.Fatalf("file origin %q, spool id %q", fileOrigin, ids[0])
	}
	recs := streamRecords(t, c, stream)
	seqs := map[uint64]bool{}
	sockets, files := 0, 0
	for _, u := range recs {
		id := u.rec.ID
		var m map[string]any
		if err := json.Unmarshal(u.rec.Data, &m); err != nil {
			t.Fatalf("record is not JSON: %q", u.rec.Data)
		}
		if _, ok := m["n"]; ok { // a file line
			files++
			if id.Origin != fileOrigin {
				t.Errorf("file record %s: origin %q, want %q", u.rec.Data, id.Origin, fileOrigin)
			}
			continue
		}
		sockets++
		if id.Origin != ids[0] || seqs[id.Seq] || id.Floor > id.Seq {
			t.Errorf("socket record %s: identity %+v, want origin %s and a new sequence number", u.rec.Data, id, ids[0])
		}
		seqs[id.Seq] = true
	}
	if sockets != 6 || files != 5 {
		t.Errorf("%d socket and syslog records, want 6; %d file records, want 5", sockets, files)
	}
	_, dropped := dedupStream(t, c, stream, recs)
	t.Logf("spool id %s in both runs: %d socket and syslog records with it (sequence numbers %v), %d file records with origin %s; %d dropped by the dedup state",
		ids[0], sockets, seqs, files, fileOrigin, dropped)
	if dropped != 0 {
		t.Errorf("the dedup state dropped %d records", dropped)
	}
}

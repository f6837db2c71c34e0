package agent

import (
	"math/rand/v2"
	"testing"
)

// TestLedgerCommitsOnlyContiguousConfirmations confirms records in a random order: the
// committed offset is always the end of the longest confirmed prefix.
func TestLedgerCommitsOnlyContiguousConfirmations(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		l := &ledger{}
		n := 3000
		ends := make([]int64, n)
		off := int64(0)
		var skipped []bool
		for i := range n {
			size := int64(1 + r.IntN(300))
			skip := r.IntN(10) == 0 // an empty line: nothing to confirm
			l.add(off, off+size, int64(i+1), skip)
			skipped = append(skipped, skip)
			off += size
			ends[i] = off
		}
		done := make([]bool, n)
		order := r.Perm(n)
		starts := func(i int) int64 {
			if i == 0 {
				return 0
			}
			return ends[i-1]
		}
		for _, i := range order {
			if !skipped[i] {
				l.confirm(starts(i))
			}
			done[i] = true
			want := int64(0)
			for j := 0; j < n && (done[j] || skipped[j]); j++ {
				want = ends[j]
			}
			got, inflight, _ := l.state()
			if got != want {
				t.Fatalf("seed %d: committed %d, want %d", seed, got, want)
			}
			wantInflight := 0
			for j := range n {
				if !done[j] && !skipped[j] {
					wantInflight++
				}
			}
			if inflight != wantInflight {
				t.Fatalf("seed %d: %d in flight, want %d", seed, inflight, wantInflight)
			}
		}
		// A confirmation twice, or of an offset it never had, changes nothing.
		l.confirm(0)
		l.confirm(12345678)
		if got, _, _ := l.state(); got != off {
			t.Fatalf("committed %d after all, want %d", got, off)
		}
	}
}

func TestLedgerUnaddAndOldest(t *testing.T) {
	l := &ledger{}
	l.add(0, 10, 100, false)
	l.add(10, 20, 200, false)
	l.unadd()
	if c, n, oldest := l.state(); c != 0 || n != 1 || oldest != 100 {
		t.Fatalf("state %d %d %d", c, n, oldest)
	}
	l.add(10, 20, 300, false)
	l.confirm(0)
	if c, n, oldest := l.state(); c != 10 || n != 1 || oldest != 300 {
		t.Fatalf("state %d %d %d", c, n, oldest)
	}
}

func TestSpliceMembers(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1}`:       `{"a":1,"k":2}`,
		` {"a":1} `:     `{"a":1,"k":2}`,
		`{}`:            `{"k":2}`,
		"{\n\"a\":1\n}": "{\n\"a\":1,\"k\":2}",
	} {
		if got := string(spliceMembers(nil, []byte(in), []byte(`"k":2`))); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

func TestParseListen(t *testing.T) {
	for _, tt := range []struct {
		in, network, addr string
		syslog, ok        bool
	}{
		{"unix:///run/kinlog/agent.sock", "unix", "/run/kinlog/agent.sock", false, true},
		{"unixgram:///dev/log", "unixgram", "/dev/log", true, true},
		{"unixgram:///dev/log", "", "", false, false},
		{"tcp://127.0.0.1:5170", "tcp", "127.0.0.1:5170", false, true},
		{"udp://127.0.0.1:514", "udp", "127.0.0.1:514", true, true},
		{"udp://127.0.0.1:514", "", "", false, false},
		{"127.0.0.1:514", "", "", true, false},
		{"tcp://127.0.0.1", "", "", true, false},
		{"http://x:1", "", "", true, false},
	} {
		n, a, err := parseListen("k", tt.in, tt.syslog)
		if (err == nil) != tt.ok || n != tt.network || a != tt.addr {
			t.Errorf("parseListen(%q, %v) = %q %q %v", tt.in, tt.syslog, n, a, err)
		}
	}
}

func TestKeyPolicy(t *testing.T) {
	if _, err := parseKeyPolicy("shard"); err == nil {
		t.Error("bad policy accepted")
	}
	k, _ := parseKeyPolicy("field:user.id")
	if got := k.key([]byte(`{"user":{"id":"u1"}}`), "/f", 1); got != "u1" {
		t.Errorf("field key %q", got)
	}
	if got := k.key([]byte(`{"user":{}}`), "/f", 1); got == "" || got == "/f" {
		t.Errorf("missing field: key %q, want a random one", got)
	}
	o, _ := parseKeyPolicy("origin")
	if got := o.key(nil, "/var/log/app.log", 1); got != "/var/log/app.log" {
		t.Errorf("origin key %q", got)
	}
	r, _ := parseKeyPolicy("")
	seen := map[string]bool{}
	for range 1000 {
		seen[r.key(nil, "/f", rand.Uint64())] = true
	}
	if len(seen) < 500 {
		t.Errorf("random keys: only %d distinct in 1000", len(seen))
	}
}

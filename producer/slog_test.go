package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kinlog/kinlog/internal/kpl"
)

type logValuer struct{ v string }

func (l logValuer) LogValue() slog.Value { return slog.StringValue("resolved-" + l.v) }

type marshaler struct{}

func (marshaler) MarshalJSON() ([]byte, error) { return []byte(`{"custom":true}`), nil }

type badMarshaler struct{}

func (badMarshaler) MarshalJSON() ([]byte, error) { return nil, errors.New("cannot") }

// TestHandlerMatchesJSONHandler checks that Handler encodes records byte for byte as
// slog.JSONHandler does (without its trailing newline).
func TestHandlerMatchesJSONHandler(t *testing.T) {
	when := time.Date(2026, 11, 22, 10, 4, 5, 123456000, time.UTC)
	type logFn func(l *slog.Logger)
	cases := []struct {
		name string
		opts *slog.HandlerOptions
		log  logFn
	}{
		{"plain", nil, func(l *slog.Logger) { l.Info("hello") }},
		{"kinds", nil, func(l *slog.Logger) {
			l.Warn("kinds", "s", "str", "i", -42, "u", uint64(7), "f", 1.5, "big", 1e21, "tiny", 1e-7,
				"zero", 0.0, "b", true, "d", 1500*time.Millisecond, "t", when, "nan", math.NaN(),
				"err", errors.New("boom"), "m", marshaler{}, "bad", badMarshaler{},
				"map", map[string]int{"a": 1}, "nil", nil, "lv", logValuer{"x"}, "html", "<a&b>")
		}},
		{"escaping", nil, func(l *slog.Logger) {
			l.Info("quote\" backslash\\ newline\n tab\t ctrl\x01 bad\xff sep\u2028 emoji😀", "k\"ey", "v\\al")
		}},
		{"groups", nil, func(l *slog.Logger) {
			l.Info("g", slog.Group("req", slog.String("method", "GET"), slog.Group("inner", slog.Int("n", 1))), slog.Group("", slog.Int("inlined", 2)))
		}},
		{"with attrs and group", nil, func(l *slog.Logger) {
			l.With("app", "kinlog").WithGroup("request").With("id", 7).Info("m", "path", "/x")
		}},
		{"with group no attrs", nil, func(l *slog.Logger) { l.WithGroup("empty").Info("m") }},
		{"nested with", nil, func(l *slog.Logger) {
			l.WithGroup("a").With("x", 1).WithGroup("b").With("y", 2).WithGroup("c").Info("m", "z", 3)
		}},
		{"level filtered debug", &slog.HandlerOptions{Level: slog.LevelDebug}, func(l *slog.Logger) { l.Debug("dbg", "k", 1) }},
		{"custom level", nil, func(l *slog.Logger) { l.Log(context.Background(), slog.LevelWarn+2, "w2") }},
		{"source", &slog.HandlerOptions{AddSource: true}, func(l *slog.Logger) { l.Info("src") }},
		{"replace attr", &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			switch {
			case a.Key == slog.TimeKey:
				return slog.Attr{}
			case a.Key == "secret":
				return slog.String("secret", "***")
			case a.Key == "drop":
				return slog.Attr{}
			case len(groups) > 0 && a.Key == "n":
				return slog.String("n", strings.Join(groups, "."))
			}
			return a
		}}, func(l *slog.Logger) {
			l.WithGroup("g").With("n", 0).Info("r", "secret", "pw", slog.Group("h", "n", 1, "drop", 2), slog.Group("gone", "drop", 3))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want bytes.Buffer
			ref := slog.New(slog.NewJSONHandler(&want, tc.opts))
			var got []byte
			ch := &captureHandler{out: &got}
			hopts := &HandlerOptions{}
			if tc.opts != nil {
				hopts.Level, hopts.AddSource, hopts.ReplaceAttr = tc.opts.Level, tc.opts.AddSource, tc.opts.ReplaceAttr
			}
			ch.h = NewHandler(nil, hopts)
			tc.log(ref)
			tc.log(slog.New(ch))
			wantB := bytes.TrimSuffix(want.Bytes(), []byte("\n"))
			// Times differ between the two calls; compare with the time field normalised.
			if !bytes.Equal(normTime(got), normTime(wantB)) {
				t.Fatalf("\n got %s\nwant %s", got, wantB)
			}
			if len(got) > 0 && !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
		})
	}
}

// captureHandler wraps a Handler and keeps the JSON of the last record instead of putting it.
type captureHandler struct {
	h   *Handler
	out *[]byte // shared by derived handlers
}

func (c *captureHandler) Enabled(ctx context.Context, l slog.Level) bool { return c.h.Enabled(ctx, l) }
func (c *captureHandler) Handle(_ context.Context, r slog.Record) error {
	*c.out = c.h.AppendJSON(nil, r)
	return nil
}
func (c *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &captureHandler{h: c.h.WithAttrs(as).(*Handler), out: c.out}
}
func (c *captureHandler) WithGroup(name string) slog.Handler {
	return &captureHandler{h: c.h.WithGroup(name).(*Handler), out: c.out}
}

func normTime(b []byte) []byte {
	const key = `"time":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return b
	}
	j := bytes.IndexByte(b[i+len(key):], '"')
	out := append([]byte{}, b[:i+len(key)]...)
	out = append(out, "T"...)
	// Keep source line numbers comparable: both calls come from the same closure line.
	return append(out, b[i+len(key)+j:]...)
}

func TestHandlerEmptyGroupIsValidJSON(t *testing.T) {
	// slog.JSONHandler emits invalid JSON here (a missing comma); ours must not.
	h := NewHandler(nil, nil)
	r := slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)
	r.AddAttrs(slog.Group("g", slog.Attr{}), slog.Int("b", 1))
	out := h.AppendJSON(nil, r)
	if string(out) != `{"level":"INFO","msg":"m","b":1}` {
		t.Fatalf("got %s", out)
	}
}

func TestHandlerPutsRecords(t *testing.T) {
	fs := newFakeStream(4)
	var res results
	p := newTestProducer(t, fs.client(), WithResultHandler(res.handle))
	logger := slog.New(NewHandler(p, &HandlerOptions{PartitionKey: "user"}))
	logger.Info("with key", "user", "alice", "n", 1)
	logger.With("user", "bob").Info("key from With")
	logger.WithGroup("g").Info("key in a group", "user", "carol")
	logger.Info("no key", "n", 2)
	logger.Info("random 1")
	logger.Info("random 2")
	logger.Info("unusable key", "user", "bad\xff")
	logger.Info("too long key", "user", strings.Repeat("x", 300))
	logger.Debug("filtered out")
	mustClose(t, p)

	got := res.snapshot()
	if len(got) != 8 {
		t.Fatalf("%d records put, want 8", len(got))
	}
	byMsg := map[string]Result{}
	for _, r := range got {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		var m map[string]any
		if err := json.Unmarshal(r.Record.Data, &m); err != nil {
			t.Fatalf("record is not JSON: %s", r.Record.Data)
		}
		if m["level"] != "INFO" || m["time"] == nil {
			t.Fatalf("record %s lacks level or time", r.Record.Data)
		}
		byMsg[m["msg"].(string)] = r
	}
	for msg, pk := range map[string]string{"with key": "alice", "key from With": "bob", "key in a group": "carol"} {
		if byMsg[msg].Record.PartitionKey != pk {
			t.Errorf("%q put with partition key %q, want %q", msg, byMsg[msg].Record.PartitionKey, pk)
		}
	}
	for _, msg := range []string{"no key", "random 1", "random 2", "unusable key", "too long key"} {
		if pk := byMsg[msg].Record.PartitionKey; len(pk) != 16 {
			t.Errorf("%q got partition key %q, want a random 16-hex-digit key", msg, pk)
		}
	}
	// Records land on the shard their key hashes to.
	for _, r := range got {
		for _, s := range fs.shards {
			if s.id == r.ShardID && !s.rng.Contains(kpl.PartitionKeyHash(r.Record.PartitionKey)) {
				t.Fatalf("record with key %q on shard %s", r.Record.PartitionKey, s.id)
			}
		}
	}
}

func TestRandomKeysSpreadOverShards(t *testing.T) {
	kp := newKeyPool()
	shards := evenShards(8, 0)
	counts := make([]int, len(shards))
	for _, k := range kp.keys {
		h := kpl.PartitionKeyHash(k)
		for i, s := range shards {
			if s.rng.Contains(h) {
				counts[i]++
			}
		}
	}
	// 1024 keys over 8 shards: 128 each on average; allow wide statistical slack.
	for i, c := range counts {
		if c < 80 || c > 180 {
			t.Fatalf("shard %d gets %d of 1024 random keys: %v", i, c, counts)
		}
	}
}

func TestHandlerNonBlocking(t *testing.T) {
	fs := newFakeStream(1)
	fc := fs.client()
	p := newTestProducer(t, fc, WithMaxBufferedRecords(1), WithLinger(time.Hour))
	h := NewHandler(p, &HandlerOptions{NonBlocking: true})
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "one", 0)
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(context.Background(), r); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("Handle on a full buffer = %v, want ErrBufferFull", err)
	}
	// The blocking handler waits and honours the context instead.
	hb := NewHandler(p, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := hb.Handle(ctx, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("blocking Handle with a cancelled context = %v", err)
	}
	mustClose(t, p)
}

func TestWriter(t *testing.T) {
	fs := newFakeStream(2)
	var res results
	p := newTestProducer(t, fs.client(), WithResultHandler(res.handle))
	w := NewWriter(p, &WriterOptions{PartitionKey: func(line []byte) string {
		if bytes.Contains(line, []byte("alice")) {
			return "alice"
		}
		return ""
	}})
	buf := []byte("{\"user\":\"alice\"}\n")
	n, err := w.Write(buf)
	if err != nil || n != len(buf) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	copy(buf, "XXXXXXXXXXXXXXXX") // io.Writer must not retain the slice
	if n, err := w.Write([]byte("{\"user\":\"bob\"}")); err != nil || n != 14 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := w.Write([]byte("\n")); err != nil || n != 1 {
		t.Fatalf("empty line: Write = %d, %v", n, err)
	}
	mustClose(t, p)
	got := res.snapshot()
	if len(got) != 2 {
		t.Fatalf("%d records, want 2 (the empty line puts nothing)", len(got))
	}
	datas := map[string]string{}
	for _, r := range got {
		datas[string(r.Record.Data)] = r.Record.PartitionKey
	}
	if datas[`{"user":"alice"}`] != "alice" {
		t.Fatalf("records %v: alice's line missing, altered or with the wrong key", datas)
	}
	if pk := datas[`{"user":"bob"}`]; len(pk) != 16 {
		t.Fatalf("bob's line has partition key %q, want a random one", pk)
	}
	if _, err := w.Write([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
	wn := NewWriter(p, &WriterOptions{NonBlocking: true})
	if _, err := wn.Write([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("non-blocking Write after Close = %v", err)
	}
}

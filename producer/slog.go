package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kinlog/kinlog/internal/jsonx"
)

// HandlerOptions configures a [Handler]. The zero value is valid.
type HandlerOptions struct {
	// Level is the minimum level handled. The default is slog.LevelInfo.
	Level slog.Leveler
	// AddSource adds a "source" object (function, file, line) to each record. The default
	// is off.
	AddSource bool
	// ReplaceAttr rewrites or drops attributes before they are encoded, with the semantics of
	// slog.HandlerOptions.ReplaceAttr. The default is none.
	ReplaceAttr func(groups []string, a slog.Attr) slog.Attr
	// PartitionKey names an attribute whose value becomes the record's partition key (for
	// example "user" or "request_id"): the first attribute with that key, in the record or
	// added with WithAttrs, at any group depth. Records without it, and all records when
	// PartitionKey is empty (the default), get a random partition key from a fixed pool of
	// 1024 keys, which spreads them evenly over shards.
	PartitionKey string
	// NonBlocking makes Handle use [Producer.TryPut]: when the buffer is full the record is
	// dropped and Handle returns [ErrBufferFull]. The default is to wait for room (until
	// the context passed to Handle ends), so no log line is lost.
	NonBlocking bool
}

// Handler is a log/slog Handler that encodes each record as one JSON object — "time",
// "level", "msg", optional "source", then the attributes, with groups as nested objects,
// exactly as slog.JSONHandler does — and puts it through a [Producer] as one Kinesis user
// record. Create it with [NewHandler].
type Handler struct {
	p           *Producer
	opts        HandlerOptions
	keys        *keyPool
	pre         []byte   // attributes from WithAttrs, encoded, with their groups opened
	groups      []string // every group from WithGroup
	nOpenGroups int      // how many of groups are opened in pre
	preKey      string   // value of the partition-key attribute found among WithAttrs
}

// NewHandler returns a slog handler that puts records through p. opts may be nil.
func NewHandler(p *Producer, opts *HandlerOptions) *Handler {
	h := &Handler{p: p, keys: newKeyPool()}
	if opts != nil {
		h.opts = *opts
	}
	return h
}

// Enabled reports whether level is at least the handler's minimum level.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	min := slog.LevelInfo
	if h.opts.Level != nil {
		min = h.opts.Level.Level()
	}
	return level >= min
}

// WithAttrs returns a handler whose records carry attrs (inside the current groups).
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.pre = slices.Clip(h.pre)
	h2.groups = slices.Clip(h.groups)
	s := encoder{buf: h2.pre, rep: h.opts.ReplaceAttr}
	if len(h.pre) > 0 {
		s.sep = h.pre[len(h.pre)-1] != '{'
	}
	pos, sep := len(s.buf), s.sep
	s.groups = append(s.groups, h.groups[:h.nOpenGroups]...)
	for _, g := range h.groups[h.nOpenGroups:] {
		s.openGroup(g)
	}
	if !s.attrs(attrs) {
		s.buf, s.sep = s.buf[:pos], sep
	} else {
		h2.nOpenGroups = len(h2.groups)
	}
	h2.pre = s.buf
	if h2.preKey == "" && h.opts.PartitionKey != "" {
		h2.preKey = findKey(attrs, h.opts.PartitionKey)
	}
	return &h2
}

// WithGroup returns a handler whose later attributes nest under name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(slices.Clip(h.groups), name)
	return &h2
}

var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle encodes r and puts it. It returns the Put error, if any.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	bp := encodeBufs.Get().(*[]byte)
	data := h.AppendJSON((*bp)[:0], r)
	pk := ""
	if h.opts.PartitionKey != "" {
		r.Attrs(func(a slog.Attr) bool {
			pk = keyOf(a, h.opts.PartitionKey)
			return pk == ""
		})
		if pk == "" {
			pk = h.preKey
		}
	}
	if pk == "" {
		pk = h.keys.pick()
	}
	var err error
	rec := Record{PartitionKey: pk, Data: data}
	if h.opts.NonBlocking {
		err = h.p.TryPut(rec)
	} else {
		err = h.p.Put(ctx, rec)
	}
	if cap(data) <= 64<<10 {
		*bp = data[:0]
		encodeBufs.Put(bp)
	}
	return err
}

// AppendJSON appends the JSON object the handler puts for r to dst (without a newline).
func (h *Handler) AppendJSON(dst []byte, r slog.Record) []byte {
	s := encoder{buf: dst, rep: h.opts.ReplaceAttr}
	s.buf = append(s.buf, '{')
	rep := h.opts.ReplaceAttr
	if !r.Time.IsZero() {
		t := r.Time.Round(0)
		if rep == nil {
			s.key(slog.TimeKey)
			s.time(t)
		} else {
			s.attr(slog.Time(slog.TimeKey, t))
		}
	}
	if rep == nil {
		s.key(slog.LevelKey)
		s.string(r.Level.String())
	} else {
		s.attr(slog.Any(slog.LevelKey, r.Level))
	}
	if h.opts.AddSource {
		src := r.Source()
		if src == nil {
			src = &slog.Source{}
		}
		s.attr(slog.Any(slog.SourceKey, src))
	}
	if rep == nil {
		s.key(slog.MessageKey)
		s.string(r.Message)
	} else {
		s.attr(slog.String(slog.MessageKey, r.Message))
	}
	if len(h.pre) > 0 {
		if s.sep {
			s.buf = append(s.buf, ',')
		}
		s.buf = append(s.buf, h.pre...)
		s.sep = h.pre[len(h.pre)-1] != '{'
	}
	open := h.nOpenGroups
	if r.NumAttrs() > 0 {
		if rep != nil {
			s.groups = append(s.groups[:0], h.groups[:h.nOpenGroups]...)
		}
		pos, sep := len(s.buf), s.sep
		for _, g := range h.groups[h.nOpenGroups:] {
			s.openGroup(g)
		}
		open = len(h.groups)
		empty := true
		r.Attrs(func(a slog.Attr) bool {
			if s.attr(a) {
				empty = false
			}
			return true
		})
		if empty {
			s.buf, s.sep = s.buf[:pos], sep
			open = h.nOpenGroups
		}
	}
	for range open {
		s.buf = append(s.buf, '}')
	}
	return append(s.buf, '}')
}

// findKey returns the string value of the first attribute named key in attrs (searching
// groups too), or "".
func findKey(attrs []slog.Attr, key string) string {
	for _, a := range attrs {
		if v := keyOf(a, key); v != "" {
			return v
		}
	}
	return ""
}

func keyOf(a slog.Attr, key string) string {
	if a.Value.Kind() == slog.KindGroup {
		return findKey(a.Value.Group(), key)
	}
	if a.Key != key {
		return ""
	}
	v := a.Value.Resolve()
	s := v.String() // no allocation for string values
	if utf8.RuneCountInString(s) > MaxPartitionKeyLength || !utf8.ValidString(s) {
		return "" // unusable as a partition key: fall back to a random one
	}
	return s
}

// encoder writes slog values as JSON, as slog.JSONHandler does.
type encoder struct {
	buf    []byte
	sep    bool     // a comma is due before the next key
	groups []string // open groups, for ReplaceAttr
	rep    func([]string, slog.Attr) slog.Attr
}

func (s *encoder) key(k string) {
	if s.sep {
		s.buf = append(s.buf, ',')
	}
	s.string(k)
	s.buf = append(s.buf, ':')
	s.sep = true
}

func (s *encoder) openGroup(name string) {
	s.key(name)
	s.buf = append(s.buf, '{')
	s.sep = false
	if s.rep != nil {
		s.groups = append(s.groups, name)
	}
}

func (s *encoder) closeGroup() {
	s.buf = append(s.buf, '}')
	s.sep = true
	if s.rep != nil {
		s.groups = s.groups[:len(s.groups)-1]
	}
}

func (s *encoder) attrs(as []slog.Attr) bool {
	appended := false
	for _, a := range as {
		if s.attr(a) {
			appended = true
		}
	}
	return appended
}

// attr appends a (key and value) and reports whether anything was appended.
func (s *encoder) attr(a slog.Attr) bool {
	a.Value = a.Value.Resolve()
	if s.rep != nil && a.Value.Kind() != slog.KindGroup {
		a = s.rep(s.groups, a)
		a.Value = a.Value.Resolve()
	}
	if a.Key == "" && a.Value.Kind() == slog.KindAny && a.Value.Any() == nil {
		return false
	}
	if a.Value.Kind() == slog.KindAny {
		if src, ok := a.Value.Any().(*slog.Source); ok {
			if src == nil || *src == (slog.Source{}) {
				return false
			}
			var as []slog.Attr
			if src.Function != "" {
				as = append(as, slog.String("function", src.Function))
			}
			if src.File != "" {
				as = append(as, slog.String("file", src.File))
			}
			if src.Line != 0 {
				as = append(as, slog.Int("line", src.Line))
			}
			a.Value = slog.GroupValue(as...)
		}
	}
	if a.Value.Kind() != slog.KindGroup {
		s.key(a.Key)
		s.value(a.Value)
		return true
	}
	as := a.Value.Group()
	if len(as) == 0 {
		return true // like slog: an empty group prints nothing but counts
	}
	pos, sep := len(s.buf), s.sep
	if a.Key != "" {
		s.openGroup(a.Key)
	}
	if !s.attrs(as) {
		s.buf, s.sep = s.buf[:pos], sep
		if a.Key != "" && s.rep != nil {
			s.groups = s.groups[:len(s.groups)-1]
		}
		return false
	}
	if a.Key != "" {
		s.closeGroup()
	}
	return true
}

func (s *encoder) value(v slog.Value) {
	defer func() {
		if r := recover(); r != nil {
			if rv := reflect.ValueOf(v.Any()); v.Kind() == slog.KindAny && rv.Kind() == reflect.Pointer && rv.IsNil() {
				s.string("<nil>")
				return
			}
			s.string(fmt.Sprintf("!PANIC: %v", r))
		}
	}()
	switch v.Kind() {
	case slog.KindString:
		s.string(v.String())
	case slog.KindInt64:
		s.buf = strconv.AppendInt(s.buf, v.Int64(), 10)
	case slog.KindUint64:
		s.buf = strconv.AppendUint(s.buf, v.Uint64(), 10)
	case slog.KindFloat64:
		s.float(v.Float64())
	case slog.KindBool:
		s.buf = strconv.AppendBool(s.buf, v.Bool())
	case slog.KindDuration:
		s.buf = strconv.AppendInt(s.buf, int64(v.Duration()), 10)
	case slog.KindTime:
		s.time(v.Time())
	default:
		a := v.Any()
		_, jm := a.(json.Marshaler)
		if err, ok := a.(error); ok && !jm {
			s.string(err.Error())
			return
		}
		b, err := marshalJSON(a)
		if err != nil {
			s.string("!ERROR:" + err.Error())
			return
		}
		s.buf = append(s.buf, b...)
	}
}

// float writes f as encoding/json does; NaN and infinities are not JSON numbers.
func (s *encoder) float(f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		s.string("!ERROR:json: unsupported value: " + strconv.FormatFloat(f, 'g', -1, 64))
		return
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	s.buf = strconv.AppendFloat(s.buf, f, format, -1, 64)
	if format == 'e' {
		// Like encoding/json: e-09 becomes e-9.
		if n := len(s.buf); n >= 4 && s.buf[n-4] == 'e' && s.buf[n-3] == '-' && s.buf[n-2] == '0' {
			s.buf[n-2] = s.buf[n-1]
			s.buf = s.buf[:n-1]
		}
	}
}

func (s *encoder) time(t time.Time) {
	if y := t.Year(); y < 0 || y >= 10000 {
		s.string("!ERROR:time.Time year outside of range [0,9999]")
		return
	}
	s.buf = append(s.buf, '"')
	s.buf = t.AppendFormat(s.buf, time.RFC3339Nano)
	s.buf = append(s.buf, '"')
}

func marshalJSON(v any) ([]byte, error) {
	var b jsonBuf
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil // drop Encode's newline
}

type jsonBuf []byte

func (b *jsonBuf) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// string writes str as a JSON string, escaping as slog.JSONHandler does.
func (s *encoder) string(str string) { s.buf = jsonx.AppendString(s.buf, str) }

// keyPool is a fixed set of random partition keys; picking from it spreads records evenly
// over shards while letting aggregates share key-table entries.
type keyPool struct{ keys [1024]string }

func newKeyPool() *keyPool {
	kp := &keyPool{}
	var b [8]byte
	for i := range kp.keys {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		kp.keys[i] = hex.EncodeToString(b[:])
	}
	return kp
}

func (kp *keyPool) pick() string { return kp.keys[mrand.IntN(len(kp.keys))] }

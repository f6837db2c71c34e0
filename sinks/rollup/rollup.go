package rollup

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"

	"github.com/kinlog/kinlog/sinks/encode"
)

// Defaults.
const (
	// DefaultWindow is the default tumbling window.
	DefaultWindow = time.Minute
	// DefaultRelativeAccuracy is the default relative accuracy of the quantile sketches: a
	// quantile estimate is within 1% of the true value.
	DefaultRelativeAccuracy = 0.01
	// SketchBins bounds each sketch's bins; past it the lowest bins collapse (so the low
	// quantiles lose accuracy first, never the high ones).
	SketchBins = 2048
)

// DefaultDimensions are the dimensions grouped by when Config.Dimensions is empty.
var DefaultDimensions = []string{"service", "level", "status"}

// Config says how records are rolled up.
type Config struct {
	// Window is the tumbling window, aligned on the Unix epoch in UTC. It must divide one
	// hour (so windows never straddle hourly partitions) and be at least one second.
	// Default: 1 minute.
	Window time.Duration
	// Dimensions are the JSON members (dotted for nested ones) grouped by. A record without
	// a member, or whose member is not a string, number or boolean, has no value for that
	// dimension and is grouped with the others lacking it. Default: service, level, status.
	Dimensions []string
	// Numeric are JSON members (dotted for nested ones) whose numeric values are summarized
	// with count, sum, min, max and a quantile sketch. Members that are absent or not JSON
	// numbers are skipped. Default: none.
	Numeric []string
	// RelativeAccuracy of the quantile sketches. Default: 0.01.
	RelativeAccuracy float64
}

func (c Config) withDefaults() (Config, error) {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window < time.Second || time.Hour%c.Window != 0 {
		return c, fmt.Errorf("rollup: window %v must be at least 1s and divide one hour", c.Window)
	}
	if len(c.Dimensions) == 0 {
		c.Dimensions = DefaultDimensions
	}
	if c.RelativeAccuracy == 0 {
		c.RelativeAccuracy = DefaultRelativeAccuracy
	}
	if c.RelativeAccuracy <= 0 || c.RelativeAccuracy >= 1 {
		return c, fmt.Errorf("rollup: relative accuracy %v must be in (0, 1)", c.RelativeAccuracy)
	}
	seen := map[string]bool{}
	for _, d := range c.Dimensions {
		if d == "" || seen[d] {
			return c, fmt.Errorf("rollup: dimension %q is empty or repeated", d)
		}
		seen[d] = true
	}
	return c, nil
}

// Dim is one dimension's value in a rollup row.
type Dim struct {
	Name, Value string
}

// Numeric summarizes one numeric member over a row's records.
type Numeric struct {
	Name          string
	Count         int64
	Sum, Min, Max float64
	// Sketch estimates quantiles within the configured relative accuracy.
	Sketch *ddsketch.DDSketch
}

// Quantile returns the sketch's estimate of quantile q (0 to 1).
func (n *Numeric) Quantile(q float64) (float64, error) {
	if n.Sketch == nil || n.Sketch.IsEmpty() {
		return 0, errors.New("rollup: empty sketch")
	}
	return n.Sketch.GetValueAtQuantile(q)
}

// Row is the rollup of one window and one combination of dimension values.
type Row struct {
	// Start is the window's start in UTC.
	Start time.Time
	// Window is the window's length.
	Window time.Duration
	// Dims are the dimensions present, sorted by name.
	Dims []Dim
	// Count is the number of records; Bytes the sum of their sizes.
	Count, Bytes int64
	// Fields summarize the configured numeric members present, sorted by name.
	Fields []Numeric
}

// Dim returns the value of a dimension and whether the row has it.
func (r *Row) Dim(name string) (string, bool) {
	for _, d := range r.Dims {
		if d.Name == name {
			return d.Value, true
		}
	}
	return "", false
}

// Field returns the summary of a numeric member, or nil.
func (r *Row) Field(name string) *Numeric {
	for i := range r.Fields {
		if r.Fields[i].Name == name {
			return &r.Fields[i]
		}
	}
	return nil
}

// key identifies the row's window and dimensions (names and values length-prefixed, so no
// two rows share a key).
func (r *Row) key() string {
	k := binary.AppendVarint(nil, r.Start.UnixNano())
	k = binary.AppendVarint(k, int64(r.Window))
	for _, d := range r.Dims {
		k = binary.AppendUvarint(k, uint64(len(d.Name)))
		k = append(k, d.Name...)
		k = binary.AppendUvarint(k, uint64(len(d.Value)))
		k = append(k, d.Value...)
	}
	return string(k)
}

// Aggregator rolls up the records of one batch. It is not safe for concurrent use.
type Aggregator struct {
	cfg    Config
	rows   map[string]*Row
	sorted []string // the dimensions sorted by name, the order of Row.Dims
	found  []int    // per record: indexes into sorted of the dimensions present
	vals   []encode.Field
	key    []byte
	text   []byte
}

// NewAggregator validates cfg and returns an empty Aggregator.
func NewAggregator(cfg Config) (*Aggregator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := newSketch(cfg.RelativeAccuracy); err != nil {
		return nil, fmt.Errorf("rollup: %w", err)
	}
	sorted := slices.Clone(cfg.Dimensions)
	slices.Sort(sorted)
	return &Aggregator{cfg: cfg, rows: map[string]*Row{}, sorted: sorted}, nil
}

// Config returns the aggregator's configuration with defaults filled in.
func (a *Aggregator) Config() Config { return a.cfg }

func newSketch(acc float64) (*ddsketch.DDSketch, error) {
	return ddsketch.LogCollapsingLowestDenseDDSketch(acc, SketchBins)
}

// Add counts one record of size bytes at time t. d is the parsed record (any kind).
func (a *Aggregator) Add(t time.Time, size int, d *encode.Doc) {
	start := t.UTC().Truncate(a.cfg.Window)
	a.found, a.vals = a.found[:0], a.vals[:0]
	// The row's key: the window, then each present dimension's index and text, each text
	// length-prefixed so that no two sets of values share a key. It is built in a reused
	// buffer and looked up without allocating.
	k := binary.AppendVarint(a.key[:0], start.UnixNano())
	if d.Kind == encode.Object {
		for i, name := range a.sorted {
			f, ok := d.Lookup(name)
			if !ok || !f.Kind.Scalar() {
				continue
			}
			a.found, a.vals = append(a.found, i), append(a.vals, f)
			a.text, _ = f.AppendText(a.text[:0]) // a scalar
			k = binary.AppendUvarint(k, uint64(i))
			k = binary.AppendUvarint(k, uint64(len(a.text)))
			k = append(k, a.text...)
		}
	}
	a.key = k
	r := a.rows[string(k)]
	if r == nil {
		r = &Row{Start: start, Window: a.cfg.Window, Dims: make([]Dim, len(a.found))}
		for j, i := range a.found {
			v, _ := a.vals[j].Text()
			r.Dims[j] = Dim{Name: a.sorted[i], Value: v}
		}
		a.rows[string(k)] = r
	}
	r.Count++
	r.Bytes += int64(size)
	if d.Kind != encode.Object {
		return
	}
	for _, name := range a.cfg.Numeric {
		f, ok := d.Lookup(name)
		if !ok || f.Kind != encode.Number {
			continue
		}
		v, err := strconv.ParseFloat(string(f.Value), 64)
		if err != nil || math.IsInf(v, 0) {
			continue
		}
		n := r.Field(name)
		if n == nil {
			sk, _ := newSketch(a.cfg.RelativeAccuracy)
			r.Fields = append(r.Fields, Numeric{Name: name, Min: v, Max: v, Sketch: sk})
			slices.SortFunc(r.Fields, func(x, y Numeric) int { return strings.Compare(x.Name, y.Name) })
			n = r.Field(name)
		}
		n.Count++
		n.Sum += v
		n.Min = min(n.Min, v)
		n.Max = max(n.Max, v)
		_ = n.Sketch.Add(v) // values are finite: Add cannot fail
	}
}

// Len returns the number of rows so far.
func (a *Aggregator) Len() int { return len(a.rows) }

// Rows returns the rows sorted by window start, then dimensions.
func (a *Aggregator) Rows() []Row {
	out := make([]Row, 0, len(a.rows))
	for _, r := range a.rows {
		out = append(out, *r)
	}
	sortRows(out)
	return out
}

// Reset empties the aggregator.
func (a *Aggregator) Reset() { clear(a.rows) }

func sortRows(rows []Row) {
	slices.SortFunc(rows, func(x, y Row) int {
		if c := x.Start.Compare(y.Start); c != 0 {
			return c
		}
		if x.Window != y.Window {
			return int(x.Window - y.Window)
		}
		return slices.CompareFunc(x.Dims, y.Dims, func(p, q Dim) int {
			if c := strings.Compare(p.Name, q.Name); c != 0 {
				return c
			}
			return strings.Compare(p.Value, q.Value)
		})
	})
}

// wireRow is the NDJSON form of a Row. Field order is fixed and maps marshal with sorted
// keys, so encoding is deterministic.
type wireRow struct {
	Start   string                 `json:"start"`
	WindowS float64                `json:"window_s"`
	Dims    map[string]string      `json:"dims"`
	Count   int64                  `json:"count"`
	Bytes   int64                  `json:"bytes"`
	Fields  map[string]wireNumeric `json:"fields,omitempty"`
}

type wireNumeric struct {
	Count  int64   `json:"count"`
	Sum    float64 `json:"sum"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Sketch string  `json:"sketch"` // base64 of the DDSketch binary encoding
}

// Marshal appends rows as NDJSON (one JSON object per line) to dst. Sketches are stored in
// the sketches-go binary encoding, base64. The output is a pure function of the rows.
func Marshal(dst []byte, rows []Row) ([]byte, error) {
	for i := range rows {
		r := &rows[i]
		w := wireRow{
			Start:   r.Start.UTC().Format(time.RFC3339Nano),
			WindowS: r.Window.Seconds(),
			Dims:    make(map[string]string, len(r.Dims)),
			Count:   r.Count,
			Bytes:   r.Bytes,
		}
		for _, d := range r.Dims {
			w.Dims[d.Name] = d.Value
		}
		if len(r.Fields) > 0 {
			w.Fields = make(map[string]wireNumeric, len(r.Fields))
			for _, n := range r.Fields {
				var sk []byte
				n.Sketch.Encode(&sk, false)
				w.Fields[n.Name] = wireNumeric{Count: n.Count, Sum: n.Sum, Min: n.Min, Max: n.Max, Sketch: base64.StdEncoding.EncodeToString(sk)}
			}
		}
		b, err := json.Marshal(&w)
		if err != nil {
			return dst, fmt.Errorf("encoding rollup row: %w", err)
		}
		dst = append(dst, b...)
		dst = append(dst, '\n')
	}
	return dst, nil
}

// Unmarshal reads NDJSON rows written by [Marshal].
func Unmarshal(r io.Reader) ([]Row, error) {
	var out []Row
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var w wireRow
		if err := json.Unmarshal(b, &w); err != nil {
			return nil, fmt.Errorf("decoding rollup line %d: %w", line, err)
		}
		start, err := time.Parse(time.RFC3339Nano, w.Start)
		if err != nil {
			return nil, fmt.Errorf("decoding rollup line %d: start: %w", line, err)
		}
		win := time.Duration(math.Round(w.WindowS * float64(time.Second)))
		if win <= 0 {
			return nil, fmt.Errorf("decoding rollup line %d: window %vs", line, w.WindowS)
		}
		row := Row{Start: start.UTC(), Window: win, Count: w.Count, Bytes: w.Bytes}
		for name, v := range w.Dims {
			row.Dims = append(row.Dims, Dim{Name: name, Value: v})
		}
		slices.SortFunc(row.Dims, func(x, y Dim) int { return strings.Compare(x.Name, y.Name) })
		for name, n := range w.Fields {
			raw, err := base64.StdEncoding.DecodeString(n.Sketch)
			if err != nil {
				return nil, fmt.Errorf("decoding rollup line %d: sketch of %s: %w", line, name, err)
			}
			sk, err := ddsketch.DecodeDDSketch(raw, collapsingStore, nil)
			if err != nil {
				return nil, fmt.Errorf("decoding rollup line %d: sketch of %s: %w", line, name, err)
			}
			row.Fields = append(row.Fields, Numeric{Name: name, Count: n.Count, Sum: n.Sum, Min: n.Min, Max: n.Max, Sketch: sk})
		}
		slices.SortFunc(row.Fields, func(x, y Numeric) int { return strings.Compare(x.Name, y.Name) })
		out = append(out, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading rollup rows: %w", err)
	}
	return out, nil
}

func collapsingStore() store.Store { return store.NewCollapsingLowestDenseStore(SketchBins) }

// Extension is the name suffix of rollup objects (gzip-compressed NDJSON). It differs from
// every archive extension, so a rollup object never shares a key with an archive object.
const Extension = ".rollup.json.gz"

// ContentType is the MIME type of rollup objects.
const ContentType = "application/x-ndjson"

// EncodeObject returns the bytes of a rollup object: [Marshal] compressed with gzip.
func EncodeObject(rows []Row) ([]byte, error) {
	raw, err := Marshal(nil, rows)
	if err != nil {
		return nil, err
	}
	return encode.Compress(nil, raw, encode.CompressionGzip)
}

// DecodeObject reads the rows of a rollup object written by [EncodeObject].
func DecodeObject(data []byte) ([]Row, error) {
	r, err := encode.NewReader(bytes.NewReader(data), encode.CompressionGzip)
	if err != nil {
		return nil, fmt.Errorf("decompressing rollup object: %w", err)
	}
	defer r.Close()
	return Unmarshal(r)
}

// MergeOptions say how [Merge] regroups rows.
type MergeOptions struct {
	// Window re-buckets rows into coarser windows: it must be a multiple of every input
	// row's window. Default (0): keep each row's window.
	Window time.Duration
	// By keeps only these dimensions (rows that differ only in the others are combined).
	// Default (nil): keep every dimension.
	By []string
}

// ErrIncompatible is returned when rows cannot be merged: a window that is not a multiple of
// a row's window, or sketches of different accuracies.
var ErrIncompatible = errors.New("rollup: rows cannot be merged")

// Merge combines rows (for example from many rollup objects, shards and batches) that share
// a window and dimension values: counts and sums add, minima and maxima combine, sketches
// merge. The result is sorted like [Aggregator.Rows]. Inputs are not modified.
func Merge(rows []Row, opts MergeOptions) ([]Row, error) {
	byKey := map[string]*Row{}
	var keep map[string]bool
	if opts.By != nil {
		keep = make(map[string]bool, len(opts.By))
		for _, b := range opts.By {
			keep[b] = true
		}
	}
	for i := range rows {
		src := &rows[i]
		win := src.Window
		start := src.Start.UTC()
		if opts.Window != 0 {
			if src.Window <= 0 || opts.Window%src.Window != 0 {
				return nil, fmt.Errorf("%w: window %v is not a multiple of %v", ErrIncompatible, opts.Window, src.Window)
			}
			win = opts.Window
			start = start.Truncate(win)
		}
		r := Row{Start: start, Window: win}
		for _, d := range src.Dims {
			if keep == nil || keep[d.Name] {
				r.Dims = append(r.Dims, d)
			}
		}
		k := r.key()
		dst := byKey[k]
		if dst == nil {
			dst = &r
			byKey[k] = dst
		}
		dst.Count += src.Count
		dst.Bytes += src.Bytes
		for _, n := range src.Fields {
			m := dst.Field(n.Name)
			if m == nil {
				c := Numeric{Name: n.Name, Count: n.Count, Sum: n.Sum, Min: n.Min, Max: n.Max}
				if n.Sketch != nil {
					c.Sketch = n.Sketch.Copy()
				}
				dst.Fields = append(dst.Fields, c)
				slices.SortFunc(dst.Fields, func(x, y Numeric) int { return strings.Compare(x.Name, y.Name) })
				continue
			}
			m.Count += n.Count
			m.Sum += n.Sum
			m.Min = min(m.Min, n.Min)
			m.Max = max(m.Max, n.Max)
			switch {
			case n.Sketch == nil:
			case m.Sketch == nil:
				m.Sketch = n.Sketch.Copy()
			default:
				if err := m.Sketch.MergeWith(n.Sketch); err != nil {
					return nil, fmt.Errorf("%w: merging sketches of %s: %v", ErrIncompatible, n.Name, err)
				}
			}
		}
	}
	out := make([]Row, 0, len(byKey))
	for _, r := range byKey {
		out = append(out, *r)
	}
	sortRows(out)
	return out, nil
}

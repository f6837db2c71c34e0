package query

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kinlog/kinlog/internal/jsonx"
	"github.com/kinlog/kinlog/sinks/encode"
)

// The columnar read of Parquet objects.
//
// A Parquet object is read a row group at a time, and of each row group only the columns a
// query needs: the layout column (which says, for each kind of record, which member each
// column holds), then the columns of each condition in turn, for the rows still in play.
// A condition on a member that a dictionary-encoded column holds (level, service) is
// tested once per dictionary entry. A row group whose time statistics lie outside the
// query's range, or where no row passes the conditions on its small columns, is skipped
// without reading its other columns. Records are rebuilt only for rows that match (to be
// returned), and for rows where the columns alone cannot give the answer exactly (a
// member inside an object-valued message, a file written before the layout column): those
// take the row path, so the answers are those of [encode.Decoder] followed by the
// filters, record for record.

// mode is what reading an object gives back.
type mode uint8

const (
	modeRecords mode = iota // the matching records ([Run])
	modeCount               // how many records match ([Count])
	modeRollup              // what ScanRollup aggregates: time, size and the members it reads
)

// scan is what a query asks of every object, worked out once.
type scan struct {
	mode mode
	// exact: req.TimeFields with a bound, applied to each record.
	exact bool
	// sorting: records need their sort times.
	sorting bool
	// timeFields are the members read for a record's time: req.TimeFields, else the
	// default (for sorting and rollups).
	timeFields []string
	// rollupNames are the members a rollup reads (dimensions and numeric fields).
	rollupNames []string
	// order is the order in which conditions are tested: those on small columns first.
	order []int
}

func newScan(req *Request, m mode, rollupNames []string) *scan {
	sc := &scan{mode: m, rollupNames: rollupNames}
	sc.sorting = m == modeRecords && req.Order != OrderNone
	sc.exact = len(req.TimeFields) > 0 && (!req.From.IsZero() || !req.To.IsZero())
	sc.timeFields = req.TimeFields
	if len(sc.timeFields) == 0 {
		sc.timeFields = encode.DefaultFields.Time
	}
	// Conditions on the columns that the sink dictionary-encodes first: they are cheapest,
	// and the rows they rule out need no other column.
	for i := range req.Where {
		sc.order = append(sc.order, i)
	}
	cheap := func(c *Cond) bool {
		for _, names := range [][]string{encode.DefaultFields.Level, encode.DefaultFields.Service} {
			if slices.Contains(names, c.Field) {
				return true
			}
		}
		return false
	}
	slices.SortStableFunc(sc.order, func(a, b int) int {
		ca, cb := cheap(&req.Where[a]), cheap(&req.Where[b])
		switch {
		case ca && !cb:
			return -1
		case cb && !ca:
			return 1
		}
		return 0
	})
	return sc
}

// verdict is a test of one row from its columns.
type verdict int8

const (
	unknown verdict = iota // the columns cannot say: rebuild the record
	yes
	no
)

func verdictOf(b bool) verdict {
	if b {
		return yes
	}
	return no
}

// pathCache caches, for one field path and the row group being read, where each layout key
// puts it, and for fields in dictionary columns the verdict of each dictionary entry.
type pathCache struct {
	path  string
	place []locEntry  // by layout key + 1
	vals  [][]verdict // by layout key + 1, then entry + 1 (0: null)
}

type locEntry struct {
	known bool
	place encode.Place
	col   encode.Column
	// rfc3339: the time column, written in RFC 3339 (see encode.RowGroup.TimeIsRFC3339).
	rfc3339 bool
}

// colState is a decoder's scratch for the columnar read.
type colState struct {
	groups []*encode.RowGroup
	conds  []pathCache // by condition
	paths  []pathCache // by other path (time fields, rollup members)
	sel    []int32     // rows of the row group still in play
	slow   []bool      // rows whose record must be rebuilt to be tested
	rec    []byte      // a rebuilt record
	idRec  []byte      // the same with its identity (Request.KinlogID)
	field  []byte      // scratch for a field's value
	doc    encode.Doc
	starts []int // first row of each row group in the object
}

func (cs *colState) group(g int) *encode.RowGroup {
	for len(cs.groups) <= g {
		cs.groups = append(cs.groups, new(encode.RowGroup))
	}
	return cs.groups[g]
}

func (pc *pathCache) reset(path string, keys int) {
	pc.path = path
	pc.place = slices.Grow(pc.place[:0], keys+1)[:keys+1]
	clear(pc.place)
	if cap(pc.vals) < keys+1 {
		pc.vals = make([][]verdict, keys+1)
	}
	pc.vals = pc.vals[:keys+1]
	for i := range pc.vals {
		pc.vals[i] = pc.vals[i][:0]
	}
}

// locate is rg.Locate for key, cached; with the identity added to records, the member
// [IDField] is the kinlog_id column and paths below it are left to the rebuilt record.
func (pc *pathCache) locate(rg *encode.RowGroup, key int32, req *Request) locEntry {
	e := &pc.place[key+1]
	if !e.known {
		switch {
		case req.KinlogID && pc.path == IDField:
			e.place, e.col = encode.PlaceColumn, encode.ColKinlogID
		case req.KinlogID && strings.HasPrefix(pc.path, IDField+"."):
			e.place = encode.PlaceUnknown
		default:
			e.place, e.col = rg.Locate(key, pc.path)
			e.rfc3339 = e.place == encode.PlaceColumn && e.col == encode.ColTime && rg.TimeIsRFC3339(key)
		}
		e.known = true
	}
	return *e
}

// columns adds to cols the columns that the path needs in rg.
func (pc *pathCache) columns(rg *encode.RowGroup, req *Request, cols encode.Columns) encode.Columns {
	if !rg.Read.Has(encode.ColLayout) || rg.LayoutKeys() == 0 {
		return cols | encode.RecordColumns
	}
	for k := range rg.LayoutKeys() {
		switch e := pc.locate(rg, int32(k), req); e.place {
		case encode.PlaceColumn:
			cols = cols.With(e.col)
		case encode.PlaceAttributes:
			cols = cols.With(encode.ColAttributes)
		case encode.PlaceUnknown:
			cols |= encode.RecordColumns
		}
	}
	return cols
}

// lookup finds the path in row i as [encode.Doc.Lookup] finds it in the row's record (with
// its identity when req.KinlogID); known is false when only the rebuilt record can say.
func (cs *colState) lookup(pc *pathCache, rg *encode.RowGroup, i int, req *Request) (f encode.Field, found, known bool) {
	e := pc.locate(rg, rg.LayoutKey(i), req)
	switch e.place {
	case encode.PlaceMissing:
		return f, false, true
	case encode.PlaceColumn:
		if e.col == encode.ColKinlogID {
			id := rg.ID(i)
			if len(id) == 0 {
				return f, false, true
			}
			if !utf8.Valid(id) {
				return f, false, false
			}
			cs.field = jsonx.AppendString(cs.field[:0], id)
			return encode.Field{Value: cs.field, Kind: encode.String}, true, true
		}
		f, ok := rg.ColumnField(i, e.col)
		return f, ok, ok
	case encode.PlaceAttributes:
		f, found, ok := rg.AttributeField(i, pc.path)
		return f, found, ok
	}
	return f, false, false
}

// test tests condition c (cached as pc) on row i.
func (cs *colState) test(c *Cond, pc *pathCache, rg *encode.RowGroup, i int, req *Request) verdict {
	key := rg.LayoutKey(i)
	e := pc.locate(rg, key, req)
	switch e.place {
	case encode.PlaceUnknown:
		return unknown
	case encode.PlaceMissing:
		return verdictOf(c.matchField(&encode.Field{}, false))
	case encode.PlaceColumn:
		if e.col != encode.ColTime && e.col != encode.ColKinlogID && rg.Strings[e.col].Dictionary() {
			vals := pc.vals[key+1]
			if len(vals) == 0 {
				vals = make([]verdict, rg.Strings[e.col].Entries()+1)
				pc.vals[key+1] = vals
			}
			v := &vals[rg.Strings[e.col].Index(i)+1]
			if *v == unknown {
				f, found, known := cs.lookup(pc, rg, i, req)
				if !known {
					return unknown
				}
				*v = verdictOf(c.matchField(&f, found))
			}
			return *v
		}
	}
	f, found, known := cs.lookup(pc, rg, i, req)
	if !known {
		return unknown
	}
	return verdictOf(c.matchField(&f, found))
}

// inRange reports whether t is in [req.From, req.To).
func inRange(req *Request, t time.Time) bool {
	return (req.From.IsZero() || !t.Before(req.From)) && (req.To.IsZero() || t.Before(req.To))
}

// readParquet is readObject's columnar path: it fills r as the row path (decode, then
// match) would, for the scan's mode.
func (dec *decoder) readParquet(data []byte, req *Request, sc *scan, start int64, r *objectResult) error {
	po, err := encode.OpenParquetObject(data)
	if err != nil {
		return err
	}
	cs := &dec.col
	r.scanned = int(po.NumRows())
	dec.out, dec.spans, dec.times, dec.tts, dec.sizes = dec.out[:0], dec.spans[:0], dec.times[:0], dec.tts[:0], dec.sizes[:0]
	if len(cs.conds) < len(req.Where) {
		cs.conds = make([]pathCache, len(req.Where))
	}
	// Paths other than conditions: the exact range's time fields, then for rollups the
	// time fields (again, at their own positions) and the rollup's members.
	others := dec.otherPaths(req, sc)
	nExact := 0
	if sc.exact {
		nExact = len(req.TimeFields)
	}
	if len(cs.paths) < len(others) {
		cs.paths = make([]pathCache, len(others))
	}
	cs.starts = cs.starts[:0]
	row0 := 0
	ng := po.NumRowGroups()
	for g := range ng {
		cs.starts = append(cs.starts, row0)
		rg := cs.group(0)
		if sc.sorting {
			rg = cs.group(g) // kept: a record without a time takes a neighbour's
		}
		rows, pruned, err := dec.filterGroup(po, g, rg, req, sc, others, nExact)
		if err != nil {
			return err
		}
		r.groups++
		if pruned {
			r.pruned++
		}
		row0 += rg.Rows
		if len(rows) == 0 {
			continue
		}
		switch sc.mode {
		case modeCount:
			r.count += int64(len(rows))
			continue
		}
		cols := encode.RecordColumns
		if req.KinlogID {
			cols = cols.With(encode.ColKinlogID)
		}
		if err := po.ReadRowGroup(g, cols, rg); err != nil {
			return err
		}
		for _, i := range rows {
			if sc.mode == modeRollup {
				if err := dec.rollupRow(rg, int(i), req, sc, nExact); err != nil {
					return rowError(cs.starts[g]+int(i), err)
				}
				continue
			}
			rec, err := dec.record(rg, int(i), req)
			if err != nil {
				return rowError(cs.starts[g]+int(i), err)
			}
			s := len(dec.out)
			dec.out = append(dec.out, rec...)
			dec.spans = append(dec.spans, span{s, len(dec.out), g, int(i)})
		}
	}
	if sc.mode == modeRollup {
		r.recs = dec.recsOf()
		r.tts, r.sizes = dec.tts, dec.sizes
		return nil
	}
	if sc.mode != modeRecords {
		return nil
	}
	r.recs = dec.recsOf()
	if sc.sorting {
		if err := dec.sortTimes(po, req, sc, start); err != nil {
			return err
		}
		r.times = dec.times
	}
	return nil
}

// span locates a record in dec.out, with its row.
type span struct {
	start, end int
	group, row int
}

func (dec *decoder) recsOf() [][]byte {
	recs := slices.Grow(dec.recs[:0], len(dec.spans))
	for _, s := range dec.spans {
		recs = append(recs, dec.out[s.start:s.end:s.end])
	}
	dec.recs = recs
	return recs
}

func rowError(row int, err error) error {
	return &rowErr{row: row, err: err}
}

type rowErr struct {
	row int
	err error
}

func (e *rowErr) Error() string { return "row " + itoa(e.row) + ": " + e.err.Error() }
func (e *rowErr) Unwrap() error { return e.err }

func itoa(n int) string { return strconv.Itoa(n) }

// record rebuilds row i's record as the row path sees it: decoded, with its identity when
// req.KinlogID. The result is valid until the next call.
func (dec *decoder) record(rg *encode.RowGroup, i int, req *Request) ([]byte, error) {
	cs := &dec.col
	var err error
	if cs.rec, err = rg.AppendRecord(cs.rec[:0], i); err != nil {
		return nil, err
	}
	if !req.KinlogID {
		return cs.rec, nil
	}
	id := rg.ID(i)
	if len(id) == 0 && !bytes.Contains(cs.rec, idMember) {
		return cs.rec, nil
	}
	cs.idRec = appendID(cs.idRec[:0], cs.rec, string(id), &dec.doc)
	return cs.idRec, nil
}

// filterGroup returns the rows of row group g that match req, in order, reading only the
// columns that tell; pruned reports that the row group was ruled out before any column
// but the small ones was read.
func (dec *decoder) filterGroup(po *encode.ParquetObject, g int, rg *encode.RowGroup, req *Request, sc *scan, others []string, nExact int) (rows []int32, pruned bool, err error) {
	cs := &dec.col
	if err := po.ReadRowGroup(g, encode.Columns(0).With(encode.ColLayout), rg); err != nil {
		return nil, false, err
	}
	keys := rg.LayoutKeys()
	for k := range req.Where {
		cs.conds[k].reset(req.Where[k].Field, keys)
	}
	for k, p := range others {
		cs.paths[k].reset(p, keys)
	}
	sel := cs.sel[:0]
	for i := range rg.Rows {
		sel = append(sel, int32(i))
	}
	cs.slow = slices.Grow(cs.slow[:0], rg.Rows)[:rg.Rows]
	clear(cs.slow)
	defer func() { cs.sel = sel[:0] }()

	// The time range, from the row group's statistics, when every record's first time
	// field is the time column written in RFC 3339 (what TimeAuto reads back exactly).
	timeCheck := sc.exact
	if sc.exact && keys > 0 && rg.Strings[encode.ColLayout].Dictionary() && !rg.Strings[encode.ColLayout].HasNull() {
		if lo, hi, nulls, ok := po.TimeBounds(g); ok && nulls == 0 && dec.timeIsColumn(rg, req) {
			tlo, thi := time.UnixMicro(lo), time.UnixMicro(hi)
			switch {
			case tlo.Year() < 1000 || thi.Year() > 9999:
			case !req.To.IsZero() && !tlo.Before(req.To), !req.From.IsZero() && thi.Before(req.From):
				return nil, true, nil
			case inRange(req, tlo) && inRange(req, thi):
				timeCheck = false
			}
		}
	}
	anySlow := false
	keep := func(test func(i int) verdict) {
		n := 0
		for _, i := range sel {
			if !cs.slow[i] {
				switch test(int(i)) {
				case no:
					continue
				case unknown:
					cs.slow[i], anySlow = true, true
				}
			}
			sel[n] = i
			n++
		}
		sel = sel[:n]
	}
	small := true // only small columns read so far
	for _, k := range sc.order {
		c, pc := &req.Where[k], &cs.conds[k]
		cols := pc.columns(rg, req, 0)
		if cols.Has(encode.ColAttributes) || cols.Has(encode.ColMessage) {
			if len(sel) == 0 {
				return nil, small, nil
			}
			small = false
		}
		if err := po.ReadRowGroup(g, cols, rg); err != nil {
			return nil, false, err
		}
		keep(func(i int) verdict { return cs.test(c, pc, rg, i, req) })
		if len(sel) == 0 {
			return nil, small, nil
		}
	}
	if timeCheck {
		var cols encode.Columns
		for k := range nExact {
			cols = cs.paths[k].columns(rg, req, cols)
		}
		if err := po.ReadRowGroup(g, cols, rg); err != nil {
			return nil, false, err
		}
		keep(func(i int) verdict {
			t, ok, known := dec.timeOfRow(rg, i, req, 0, nExact)
			switch {
			case !known:
				return unknown
			case ok && !inRange(req, t):
				return no
			}
			return yes
		})
	}
	if !anySlow {
		return sel, false, nil
	}
	// The rows the columns could not settle: as the row path tests them.
	cols := encode.RecordColumns
	if req.KinlogID {
		cols = cols.With(encode.ColKinlogID)
	}
	if err := po.ReadRowGroup(g, cols, rg); err != nil {
		return nil, false, err
	}
	n := 0
	for _, i := range sel {
		if cs.slow[i] {
			rec, err := dec.record(rg, int(i), req)
			if err != nil {
				return nil, false, rowError(cs.starts[g]+int(i), err)
			}
			if !dec.matchRecord(rec, req, sc) {
				continue
			}
		}
		sel[n] = i
		n++
	}
	return sel[:n], false, nil
}

// matchRecord tests a rebuilt record as match does.
func (dec *decoder) matchRecord(rec []byte, req *Request, sc *scan) bool {
	if req.Where.skip(rec) {
		return false
	}
	d := &dec.col.doc
	_ = d.Parse(rec)
	if sc.exact {
		if t, _, ok := encode.TimeOf(d, req.TimeFields, encode.TimeAuto); ok && !inRange(req, t) {
			return false
		}
	}
	return req.Where.matchDoc(rec, d)
}

// otherPaths lists the paths cached in colState.paths: the exact range's time fields, then
// for rollups the record time's fields and the rollup's members.
func (dec *decoder) otherPaths(req *Request, sc *scan) []string {
	var out []string
	if sc.exact {
		out = append(out, req.TimeFields...)
	}
	if sc.mode == modeRollup {
		out = append(out, sc.timeFields...)
		out = append(out, sc.rollupNames...)
	}
	return out
}

// timeIsColumn reports whether, for every layout of rg, the first exact time field is the
// time column written in RFC 3339: a record's time is then the column's.
func (dec *decoder) timeIsColumn(rg *encode.RowGroup, req *Request) bool {
	pc := &dec.col.paths[0]
	for k := range rg.LayoutKeys() {
		e := pc.locate(rg, int32(k), req)
		if e.place != encode.PlaceColumn || e.col != encode.ColTime || !rg.TimeIsRFC3339(int32(k)) {
			return false
		}
	}
	return true
}

// timeOfRow reads row i's time from the time fields cached at paths[lo:hi].
func (dec *decoder) timeOfRow(rg *encode.RowGroup, i int, req *Request, lo, hi int) (t time.Time, ok, known bool) {
	cs := &dec.col
	for k := lo; k < hi; k++ {
		pc := &cs.paths[k]
		if e := pc.locate(rg, rg.LayoutKey(i), req); e.rfc3339 {
			// The member is the column's time written in RFC 3339, which reads back as
			// the column's instant (for the years 1000 to 9999).
			if us, ok := rg.Time(i); ok {
				if t := time.UnixMicro(us); t.Year() >= 1000 && t.Year() <= 9999 {
					return t, true, true
				}
			}
		}
		f, found, kn := cs.lookup(pc, rg, i, req)
		if !kn {
			return t, false, false
		}
		if !found {
			continue
		}
		if t, err := encode.TimeAuto.Parse(f); err == nil {
			return t, true, true
		}
	}
	return t, false, true
}

// rollupRow adds what the rollup reads of row i: the record's time and size, and a small
// JSON object of the members the rollup looks up, which gives the same answers as the
// record ([encode.Doc.Lookup] finds a member named by the whole path first). The record is
// rebuilt only when the columns cannot say one of these.
func (dec *decoder) rollupRow(rg *encode.RowGroup, i int, req *Request, sc *scan, nExact int) error {
	cs := &dec.col
	lo, hi := nExact, nExact+len(sc.timeFields)
	t, _, known := dec.timeOfRow(rg, i, req, lo, hi)
	size, sized := 0, false
	if known && !req.KinlogID {
		size, sized = rg.RecordSize(i)
	}
	var rec []byte
	if !sized {
		var err error
		if rec, err = dec.record(rg, i, req); err != nil {
			return err
		}
		size = len(rec)
	}
	s := len(dec.out)
	if known {
		dec.out = append(dec.out, '{')
		for k := hi; k < hi+len(sc.rollupNames) && known; k++ {
			var f encode.Field
			var found bool
			f, found, known = cs.lookup(&cs.paths[k], rg, i, req)
			if !found {
				continue
			}
			if len(dec.out) > s+1 {
				dec.out = append(dec.out, ',')
			}
			dec.out = jsonx.AppendString(dec.out, cs.paths[k].path)
			dec.out = append(dec.out, ':')
			dec.out = append(dec.out, f.Value...)
		}
		dec.out = append(dec.out, '}')
	}
	if !known {
		if rec == nil {
			var err error
			if rec, err = dec.record(rg, i, req); err != nil {
				return err
			}
		}
		dec.out = append(dec.out[:s], rec...)
		d := &dec.col.doc
		_ = d.Parse(rec)
		t, _, _ = encode.TimeOf(d, sc.timeFields, encode.TimeAuto)
	}
	dec.spans = append(dec.spans, span{s, len(dec.out), 0, i})
	dec.tts = append(dec.tts, t)
	dec.sizes = append(dec.sizes, size)
	return nil
}

// sortTimes gives each record of the last readParquet its sort time, as match does: its
// own, or its nearest neighbour's in the object (rebuilt as needed), or start.
func (dec *decoder) sortTimes(po *encode.ParquetObject, req *Request, sc *scan, start int64) error {
	cs := &dec.col
	d := &cs.doc
	dec.times = slices.Grow(dec.times[:0], len(dec.spans))
	cols := encode.RecordColumns
	if req.KinlogID {
		cols = cols.With(encode.ColKinlogID)
	}
	own := func(rec []byte) int64 {
		_ = d.Parse(rec)
		if t, _, ok := encode.TimeOf(d, sc.timeFields, encode.TimeAuto); ok {
			return unixNano(t)
		}
		return noTime
	}
	total := 0
	if n := len(cs.starts); n > 0 {
		total = cs.starts[n-1] + cs.groups[n-1].Rows
	}
	// at returns the sort time of the object's row j (its own, or noTime).
	at := func(j int) (int64, error) {
		g, _ := slices.BinarySearch(cs.starts, j+1)
		g--
		rg := cs.groups[g]
		if err := po.ReadRowGroup(g, cols, rg); err != nil {
			return 0, err
		}
		rec, err := dec.record(rg, j-cs.starts[g], req)
		if err != nil {
			return 0, rowError(j, err)
		}
		return own(rec), nil
	}
	for _, s := range dec.spans {
		t := own(dec.out[s.start:s.end])
		if t == noTime {
			j0 := cs.starts[s.group] + s.row
			for j := j0 - 1; j >= 0 && t == noTime; j-- {
				var err error
				if t, err = at(j); err != nil {
					return err
				}
			}
			for j := j0 + 1; j < total && t == noTime; j++ {
				var err error
				if t, err = at(j); err != nil {
					return err
				}
			}
			if t == noTime {
				t = start
			}
		}
		dec.times = append(dec.times, t)
	}
	return nil
}

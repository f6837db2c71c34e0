package encode

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendRFC3339MatchesAppendFormat checks the fast RFC 3339 writer against
// time.AppendFormat for every layout rfc3339Form gives, zones and times around the edges,
// and that it declines what it does not write.
func TestAppendRFC3339MatchesAppendFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	layouts := []string{"2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05-07:00"}
	for n := 1; n <= 9; n++ {
		frac := "." + "000000000"[:n]
		layouts = append(layouts, "2006-01-02T15:04:05"+frac+"Z07:00", "2006-01-02T15:04:05"+frac+"-07:00")
	}
	zones := []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", -(5*3600 + 30*60)), time.FixedZone("", 14*3600), time.FixedZone("", 0)}
	times := []time.Time{time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Unix(0, 0)}
	for range 2000 {
		times = append(times, time.Unix(r.Int64N(400_000_000_000)-62_000_000_000, r.Int64N(1e9)))
	}
	for _, l := range layouts {
		for _, z := range zones {
			for _, tm := range times {
				tm := tm.In(z)
				want := tm.AppendFormat(nil, l)
				got, ok := appendRFC3339(nil, tm, l)
				if tm.Year() < 0 || tm.Year() > 9999 {
					if ok {
						t.Fatalf("%s in %s: wrote %q for a year it does not handle", tm, l, got)
					}
					continue
				}
				if !ok || string(got) != string(want) {
					t.Fatalf("%s in %s: %q (%v), AppendFormat %q", tm, l, got, ok, want)
				}
			}
		}
	}
	for _, l := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05.000000000000Z07:00", "2006-01-02T15:04:05Z", time.RFC3339Nano} {
		if got, ok := appendRFC3339(nil, time.Now(), l); ok {
			t.Errorf("layout %q: wrote %q, want it declined", l, got)
		}
	}
	if got, ok := appendRFC3339(nil, time.Now().In(time.FixedZone("", 30)), layouts[0]); ok {
		t.Errorf("a zone of seconds: wrote %q, want it declined", got)
	}
}

// TestRowGroupMatchesDecoder checks the column reader against the records [Decoder] gives
// and [ReadParquet]'s rows: every row group read column by column rebuilds the same
// records, RecordSize is their length wherever it answers (and answers for plain log
// records), and Locate and ColumnField/AttributeField give the member Lookup finds in the
// record.
func TestRowGroupMatchesDecoder(t *testing.T) {
	cases := duckEdges()
	data, metas := records(3000)
	for i := range data {
		cases = append(cases, duckCase{data: data[i], meta: metas[i]})
	}
	_, obj := writeObject(t, t.TempDir(), Config{Format: Parquet}, cases)
	var dec Decoder
	want, err := dec.Decode(obj, Config{Format: Parquet})
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenParquetObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	var rg RowGroup
	row, sized := 0, 0
	var rec []byte
	var d Doc
	for g := range o.NumRowGroups() {
		if err := o.ReadRowGroup(g, RecordColumns.With(ColKinlogID), &rg); err != nil {
			t.Fatal(err)
		}
		for i := range rg.Rows {
			if rec, err = rg.AppendRecord(rec[:0], i); err != nil {
				t.Fatal(err)
			}
			if string(rec) != string(want[row]) {
				t.Fatalf("row %d: %s, Decoder %s", row, rec, want[row])
			}
			if string(rg.ID(i)) != dec.ID(row) {
				t.Fatalf("row %d: ID %q, Decoder %q", row, rg.ID(i), dec.ID(row))
			}
			if n, ok := rg.RecordSize(i); ok {
				sized++
				if n != len(rec) {
					t.Fatalf("row %d: RecordSize %d, record %d bytes: %s", row, n, len(rec), rec)
				}
			}
			if err := d.Parse(rec); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{"time", "level", "service", "msg", "message", "k", "status", "raw", "ts", "severity", "nested.a", "absent"} {
				wf, wok := d.Lookup(path)
				var f Field
				var found, known bool
				switch place, col := rg.Locate(rg.LayoutKey(i), path); place {
				case PlaceMissing:
					found, known = false, true
				case PlaceColumn:
					f, known = rg.ColumnField(i, col)
					found = known
				case PlaceAttributes:
					f, found, known = rg.AttributeField(i, path)
				}
				if known && (found != wok || found && (f.Kind != wf.Kind || string(f.Value) != string(wf.Value))) {
					t.Fatalf("row %d, %s: %v %s %q, record %v %s %q (%s)", row, path, found, f.Kind, f.Value, wok, wf.Kind, wf.Value, rec)
				}
			}
			row++
		}
	}
	if row != len(want) {
		t.Fatalf("%d rows, Decoder %d records", row, len(want))
	}
	if sized < 3000 {
		t.Errorf("RecordSize answered for %d of %d rows, want at least the 3000 plain log records", sized, row)
	}
}

// FuzzParquetObject reads damaged Parquet objects column by column: it must return an
// error or rows, never panic, and what it rebuilds is what the Decoder gives.
func FuzzParquetObject(f *testing.F) {
	cases := duckEdges()
	_, obj := writeObject(f, f.TempDir(), Config{Format: Parquet}, cases[:4])
	f.Add(obj)
	f.Add(obj[:len(obj)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := OpenParquetObject(data)
		if err != nil {
			return
		}
		var rg RowGroup
		for g := range o.NumRowGroups() {
			if err := o.ReadRowGroup(g, RecordColumns.With(ColKinlogID), &rg); err != nil {
				return
			}
			for i := range rg.Rows {
				_, _ = rg.AppendRecord(nil, i)
				_, _ = rg.RecordSize(i)
				for _, p := range []string{"level", "a.b", "raw"} {
					if place, col := rg.Locate(rg.LayoutKey(i), p); place == PlaceColumn {
						_, _ = rg.ColumnField(i, col)
					} else if place == PlaceAttributes {
						_, _, _ = rg.AttributeField(i, p)
					}
				}
			}
		}
	})
}

// TestParquetRowGroups checks that the encoder cuts files into row groups of
// ParquetRowGroupRows rows and that every reader reads all of them: ReadParquet, the
// Decoder, the column reader.
func TestParquetRowGroups(t *testing.T) {
	data, metas := records(2*ParquetRowGroupRows + 5)
	enc, err := New(Config{Format: Parquet})
	if err != nil {
		t.Fatal(err)
	}
	b := enc.NewObject()
	var d Doc
	for i := range data {
		_ = d.Parse(Trim(data[i]))
		if err := b.Add(&metas[i], data[i], &d); err != nil {
			t.Fatal(err)
		}
	}
	obj, err := b.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenParquetObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	if o.NumRowGroups() != 3 || o.NumRows() != int64(len(data)) {
		t.Fatalf("%d row groups of %d rows, want 3 of %d", o.NumRowGroups(), o.NumRows(), len(data))
	}
	rows, err := ReadParquet(obj)
	if err != nil || len(rows) != len(data) {
		t.Fatalf("ReadParquet: %d rows, %v; want %d", len(rows), err, len(data))
	}
	for i, r := range rows {
		if r.Sequence != metas[i].Sequence {
			t.Fatalf("row %d: sequence %s, want %s", i, r.Sequence, metas[i].Sequence)
		}
	}
	var dec Decoder
	recs, err := dec.Decode(obj, Config{Format: Parquet})
	if err != nil || len(recs) != len(data) {
		t.Fatalf("Decode: %d records, %v; want %d", len(recs), err, len(data))
	}
	// Each row group's statistics bound its rows' times and count those without.
	for g := range 3 {
		lo, hi, nulls, ok := o.TimeBounds(g)
		var wantNulls int64
		wlo, whi := int64(math.MaxInt64), int64(math.MinInt64)
		for _, r := range rows[g*ParquetRowGroupRows : min((g+1)*ParquetRowGroupRows, len(rows))] {
			if r.Time == nil {
				wantNulls++
				continue
			}
			wlo, whi = min(wlo, r.Time.UnixMicro()), max(whi, r.Time.UnixMicro())
		}
		if !ok || lo != wlo || hi != whi || nulls != wantNulls {
			t.Errorf("row group %d: time bounds %d..%d, %d nulls, %v; want %d..%d, %d nulls", g, lo, hi, nulls, ok, wlo, whi, wantNulls)
		}
	}
}

package query

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// ReadRollups reads the analytics rollup rows whose windows start in [from, to) (zero bounds
// are open) from the rollup objects under the analytics template. It returns the rows as
// stored, one per batch, window and dimension values; combine them with the functions below.
func ReadRollups(ctx context.Context, api S3API, bucket, analyticsPrefix string, from, to time.Time) ([]rollup.Row, Stats, error) {
	var st Stats
	if analyticsPrefix == "" {
		analyticsPrefix = prefix.DefaultAnalytics
	}
	tpl, err := prefix.Parse(analyticsPrefix, prefix.AllowTimestamp|prefix.AllowQuery)
	if err != nil {
		return nil, st, fmt.Errorf("query: analytics prefix: %w", err)
	}
	var rows []rollup.Row
	for _, p := range Prefixes(tpl, from, to) {
		st.Prefixes++
		objs, err := listKeys(ctx, api, bucket, p, func(k string) bool { return strings.HasSuffix(k, rollup.Extension) })
		if err != nil {
			return nil, st, err
		}
		for _, o := range objs {
			st.ObjectsListed++
			resp, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(o.key)})
			if err != nil {
				return nil, st, fmt.Errorf("reading s3://%s/%s: %w", bucket, o.key, err)
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, st, fmt.Errorf("reading s3://%s/%s: %w", bucket, o.key, err)
			}
			st.ObjectsRead++
			st.BytesRead += int64(len(data))
			rs, err := rollup.DecodeObject(data)
			if err != nil {
				return nil, st, fmt.Errorf("decoding s3://%s/%s: %w", bucket, o.key, err)
			}
			for _, r := range rs {
				if (!from.IsZero() && r.Start.Before(from.Truncate(r.Window))) || (!to.IsZero() && !r.Start.Before(to)) {
					continue
				}
				st.RecordsScanned += r.Count
				rows = append(rows, r)
			}
		}
	}
	return rows, st, nil
}

// ScanRollup answers an aggregate question by scanning the archive: every record that
// matches req is rolled up with cfg, as the sink would have, so the result can be read with
// the same functions as stored rollups. Records are read in archive order ([OrderNone]),
// whatever req.Order says: nothing is held for sorting.
func ScanRollup(ctx context.Context, api S3API, req Request, cfg rollup.Config) ([]rollup.Row, Stats, error) {
	req.Order = OrderNone
	agg, err := rollup.NewAggregator(cfg)
	if err != nil {
		return nil, Stats{}, err
	}
	// Each record's time and size, and the members the rollup reads, come from the objects'
	// columns where they can (Parquet), else from the record.
	names := append(slices.Clone(cfg.Dimensions), cfg.Numeric...)
	if len(cfg.Dimensions) == 0 {
		names = append(slices.Clone(rollup.DefaultDimensions), cfg.Numeric...)
	}
	var doc encode.Doc
	st, err := run(ctx, api, req, modeRollup, names, nil, func(t time.Time, size int, rec []byte) {
		_ = doc.Parse(rec)
		agg.Add(t, size, &doc)
	})
	if err != nil {
		return nil, st, err
	}
	return agg.Rows(), st, nil
}

// Group is one value of a count-by field.
type Group struct {
	Value string
	Count int64
	Bytes int64
}

// CountBy totals rows by one dimension, largest count first. Rows without the dimension
// count under "(none)".
func CountBy(rows []rollup.Row, dim string) []Group {
	by := map[string]*Group{}
	for i := range rows {
		v, ok := rows[i].Dim(dim)
		if !ok {
			v = "(none)"
		}
		g := by[v]
		if g == nil {
			g = &Group{Value: v}
			by[v] = g
		}
		g.Count += rows[i].Count
		g.Bytes += rows[i].Bytes
	}
	out := make([]Group, 0, len(by))
	for _, g := range by {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// HasDim reports whether any row carries the dimension, i.e. whether rollups can answer a
// count by it.
func HasDim(rows []rollup.Row, dim string) bool {
	for i := range rows {
		if _, ok := rows[i].Dim(dim); ok {
			return true
		}
	}
	return false
}

// Summary is what `--stats` prints.
type Summary struct {
	Records, Bytes int64
	// Errors counts records whose level is error, fatal, critical or panic, or whose status
	// is 500 or more.
	Errors int64
	// Fields summarize numeric members, merged over all rows.
	Fields []rollup.Numeric
}

// IsError reports whether a row's dimensions mark its records as errors.
func IsError(r *rollup.Row) bool {
	if lvl, ok := r.Dim("level"); ok {
		switch strings.ToLower(lvl) {
		case "error", "fatal", "critical", "panic", "err", "crit", "emerg", "alert":
			return true
		}
	}
	if s, ok := r.Dim("status"); ok {
		if n, err := strconv.Atoi(s); err == nil && n >= 500 {
			return true
		}
	}
	return false
}

// Summarize totals rows and merges their numeric summaries.
func Summarize(rows []rollup.Row) (Summary, error) {
	var s Summary
	flat := make([]rollup.Row, len(rows))
	for i := range rows {
		r := &rows[i]
		s.Records += r.Count
		s.Bytes += r.Bytes
		if IsError(r) {
			s.Errors += r.Count
		}
		// Same window start and no dimensions: Merge folds everything into one row.
		flat[i] = rollup.Row{Window: time.Minute, Count: r.Count, Bytes: r.Bytes, Fields: r.Fields}
	}
	merged, err := rollup.Merge(flat, rollup.MergeOptions{By: []string{}})
	if err != nil {
		return s, err
	}
	if len(merged) == 1 {
		s.Fields = merged[0].Fields
	}
	return s, nil
}

// Bucket is one bar of a time histogram.
type Bucket struct {
	Start time.Time
	Count int64
}

// HistogramWidth picks a bucket width giving at most 30 bars over [from, to).
func HistogramWidth(from, to time.Time) time.Duration {
	span := to.Sub(from)
	for _, w := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour} {
		if span/w <= 30 {
			return w
		}
	}
	return 7 * 24 * time.Hour
}

// Histogram counts rows per bucket of the given width, in time order, including empty
// buckets between the first and the last.
func Histogram(rows []rollup.Row, width time.Duration) []Bucket {
	if len(rows) == 0 {
		return nil
	}
	counts := map[time.Time]int64{}
	var lo, hi time.Time
	for i := range rows {
		t := rows[i].Start.UTC().Truncate(width)
		counts[t] += rows[i].Count
		if lo.IsZero() || t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	var out []Bucket
	for t := lo; !t.After(hi); t = t.Add(width) {
		out = append(out, Bucket{Start: t, Count: counts[t]})
	}
	return out
}

// RenderHistogram draws buckets as horizontal bars, width characters for the largest.
func RenderHistogram(w io.Writer, buckets []Bucket, width int) {
	var peak int64
	for _, b := range buckets {
		peak = max(peak, b.Count)
	}
	for _, b := range buckets {
		n := 0
		if peak > 0 {
			n = int((b.Count*int64(width) + peak - 1) / peak)
		}
		fmt.Fprintf(w, "%s  %s%s %d\n", b.Start.UTC().Format("2006-01-02 15:04"), strings.Repeat("█", n), strings.Repeat(" ", width-n), b.Count)
	}
}

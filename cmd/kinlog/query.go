package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/query"
	"github.com/kinlog/kinlog/sinks/prefix"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// envBool reads a KINLOG_* boolean default for a flag.
func envBool(name string) bool {
	v := os.Getenv(name)
	return v == "1" || strings.EqualFold(v, "true")
}

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bucket := fs.String("bucket", os.Getenv("KINLOG_ARCHIVE_BUCKET"), "archive bucket (default $KINLOG_ARCHIVE_BUCKET)")
	archivePrefix := fs.String("prefix", prefix.DefaultArchive, "archive key template, as the sink writes it")
	analyticsPrefix := fs.String("analytics-prefix", prefix.DefaultAnalytics, "rollup key template")
	from := fs.String("from", "", "start of the time range: RFC 3339, a date, or relative (-1h)")
	to := fs.String("to", "", "end of the time range (exclusive); default now when --from is set")
	var where stringList
	fs.Var(&where, "where", "filter: field=value, !=, ~regex, !~regex, <, <=, >, >=, 'field exists', 'field missing' (repeatable; all must hold)")
	sel := fs.String("select", "", "comma-separated fields to print (dotted paths for nested fields)")
	limit := fs.Int("limit", 0, "print the first N matching records in --order (0: no limit)")
	order := fs.String("order", "asc", "order of the records by their time: asc (oldest first), desc (newest first), or none (archive order, streamed without sorting: for exports too large to sort)")
	output := fs.String("output", "ndjson", "output format: ndjson, table or csv")
	parallel := fs.Int("parallel", query.DefaultParallelism, "objects fetched and decoded at once, in parallel")
	memoryMB := fs.Int64("memory-mb", query.DefaultMemoryBudget>>20, fmt.Sprintf("memory budget in MiB of the objects read at once (each counts %d× its stored size)", query.ObjectMemoryFactor))
	count := fs.Bool("count", false, "print the number of matching records instead of the records (Parquet objects are counted from their columns)")
	kinlogID := fs.Bool("kinlog-id", false, "add each record's kinlog identity (origin/seq, by which the sink drops duplicates) as its last member kinlog_id, for --where, --select and the output; only Parquet archives store it (NDJSON records, and records sent without one, have none)")
	timeFields := fs.String("time-field", "", "JSON members holding a record's time, for an exact --from/--to on each record (set it to the sink's time_field; default: partitions only) and for --order (default: time, timestamp, ts, @timestamp)")
	stats := fs.Bool("stats", false, "print totals, error rate and numeric field quantiles instead of records")
	countBy := fs.String("count-by", "", "count records by a field, or by time for a histogram")
	numeric := fs.String("numeric", "", "numeric fields to summarize with --stats when scanning")
	scan := fs.Bool("scan", false, "answer --stats/--count-by by scanning records even when rollups could")
	pathStyle := fs.Bool("s3-path-style", envBool("KINLOG_S3_PATH_STYLE"), "path-style S3 addressing, for MinIO (default $KINLOG_S3_PATH_STYLE)")
	showStats := fs.Bool("v", false, "print what the query read to stderr")
	var sets stringList
	cfgPath := addConfigFlags(fs, &sets)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := applyArchiveConfig(fs, *cfgPath, sets, "query", map[string]func(archiveConfig) string{
		"bucket":           func(a archiveConfig) string { return a.Bucket },
		"prefix":           func(a archiveConfig) string { return a.Prefix },
		"analytics-prefix": func(a archiveConfig) string { return a.AnalyticsPrefix },
		"s3-path-style": func(a archiveConfig) string {
			if a.PathStyle {
				return "true"
			}
			return ""
		},
	}); err != nil {
		return err
	}
	if *bucket == "" {
		return fmt.Errorf("%w: --bucket is required (or --config with the worker's kinlog.yaml)", errUsage)
	}
	for _, w := range where {
		if f, v, ok := strings.Cut(w, "=="); ok {
			fmt.Fprintf(stderr, "kinlog query: warning: --where %q compares %s with %q; equality is a single =: --where '%s=%s'\n", w, f, "="+v, f, v)
		}
	}
	if !*kinlogID {
		if what, ok := namesID(where, splitList(*sel), *countBy); ok {
			fmt.Fprintf(stderr, "kinlog query: warning: %s names %s, the record's kinlog identity, which records carry only with --kinlog-id\n", what, query.IDField)
		}
	}
	now := time.Now().UTC()
	var req query.Request
	req.Bucket, req.Prefix, req.Limit, req.Parallelism = *bucket, *archivePrefix, *limit, *parallel
	req.MemoryBudget = *memoryMB << 20
	req.TimeFields = splitList(*timeFields)
	req.KinlogID = *kinlogID
	var err error
	if *from != "" {
		if req.From, err = query.ParseTime(*from, now); err != nil {
			return fmt.Errorf("%w: --from: %v", errUsage, err)
		}
		req.To = now
	}
	if *to != "" {
		if req.To, err = query.ParseTime(*to, now); err != nil {
			return fmt.Errorf("%w: --to: %v", errUsage, err)
		}
	}
	if req.Order, err = query.ParseOrder(*order); err != nil {
		return fmt.Errorf("%w: --order: %v", errUsage, err)
	}
	if req.Where, err = query.ParseFilter(where); err != nil {
		return fmt.Errorf("%w: --where: %v", errUsage, err)
	}
	format, err := query.ParseFormat(*output)
	if err != nil {
		return fmt.Errorf("%w: --output: %v", errUsage, err)
	}
	if *limit < 0 || *parallel < 1 || *memoryMB < 1 {
		return fmt.Errorf("%w: --limit must be ≥ 0, --parallel and --memory-mb ≥ 1", errUsage)
	}
	if *count && (*stats || *countBy != "") {
		return fmt.Errorf("%w: --count prints a number; use it without --stats and --count-by", errUsage)
	}

	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	api := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = *pathStyle })

	var st query.Stats
	defer func() {
		if *showStats {
			fmt.Fprintf(stderr, "prefixes listed %d, objects listed %d, objects read %d, bytes read %d, records scanned %d, matched %d, Parquet row groups %d (%d pruned)\n",
				st.Prefixes, st.ObjectsListed, st.ObjectsRead, st.BytesRead, st.RecordsScanned, st.RecordsMatched, st.RowGroups, st.RowGroupsPruned)
		}
	}()

	if *stats || *countBy != "" {
		var rows []rollup.Row
		source := "rollups"
		// Rollups answer when there is no record filter and they carry the dimension asked.
		if !*scan && len(req.Where) == 0 {
			rows, st, err = query.ReadRollups(ctx, api, req.Bucket, *analyticsPrefix, req.From, req.To)
			if err != nil {
				return err
			}
			if len(rows) == 0 || (*countBy != "" && *countBy != "time" && !query.HasDim(rows, *countBy)) {
				rows = nil
			}
		}
		if rows == nil {
			source = "scan"
			rc := rollup.Config{Numeric: splitList(*numeric)}
			if *countBy != "" && *countBy != "time" {
				rc.Dimensions = []string{*countBy}
			} else {
				rc.Dimensions = rollup.DefaultDimensions
			}
			req.Limit = 0
			rows, st, err = query.ScanRollup(ctx, api, req, rc)
			if err != nil {
				return err
			}
		}
		if st.ObjectsListed == 0 && len(rows) == 0 {
			warnNothing(stderr, &req)
		} else if *countBy != "" && *countBy != "time" && onlyNone(rows, *countBy) {
			fmt.Fprintf(stderr, "kinlog query: warning: no record has the field %q (check its name; dotted paths reach nested members)\n", *countBy)
		}
		return printAggregate(stdout, rows, *stats, *countBy, source, req.From, req.To)
	}

	if *count {
		st, err = query.Count(ctx, api, req)
		if err != nil {
			return err
		}
		if st.ObjectsListed == 0 {
			warnNothing(stderr, &req)
		}
		_, err = fmt.Fprintln(stdout, st.RecordsMatched)
		return err
	}

	fields := splitList(*sel)
	if *kinlogID && len(fields) == 0 && format != query.NDJSON {
		fields = append(slices.Clone(query.DefaultColumns), query.IDField)
	}
	w, err := query.NewWriter(stdout, format, fields)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	st, err = query.Run(ctx, api, req, w.Write)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if errors.Is(err, query.ErrSortBuffer) {
		return fmt.Errorf("%w (narrow --from/--to or --where, add --limit, or use --order none)", err)
	}
	if err == nil && st.ObjectsListed == 0 {
		warnNothing(stderr, &req)
	}
	return err
}

// namesID reports which flag, if any, names the identity member (see --kinlog-id): a
// --where condition, --select or --count-by on kinlog_id itself.
func namesID(where, sel []string, countBy string) (string, bool) {
	for _, w := range where {
		if c, err := query.ParseCond(w); err == nil && c.Field == query.IDField {
			return fmt.Sprintf("--where %q", w), true
		}
	}
	if slices.Contains(sel, query.IDField) {
		return "--select", true
	}
	if countBy == query.IDField {
		return "--count-by", true
	}
	return "", false
}

// warnNothing says that no archive object was found, which is more often a wrong bucket,
// prefix or time range than an empty archive.
func warnNothing(stderr io.Writer, req *query.Request) {
	when := "any time"
	if !req.From.IsZero() {
		when = req.From.Format(time.RFC3339) + " to " + req.To.Format(time.RFC3339)
	}
	fmt.Fprintf(stderr, "kinlog query: warning: no archive objects in s3://%s under %s for %s (check --prefix or the worker's sink.s3.prefix, and --from/--to)\n", req.Bucket, req.Prefix, when)
}

// onlyNone tells whether every row lacks the dimension (CountBy would print only "(none)").
func onlyNone(rows []rollup.Row, dim string) bool {
	for _, g := range query.CountBy(rows, dim) {
		if g.Value != "(none)" {
			return false
		}
	}
	return true
}

func printAggregate(w io.Writer, rows []rollup.Row, stats bool, countBy, source string, from, to time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if stats {
		s, err := query.Summarize(rows)
		if err != nil {
			return err
		}
		rate := 0.0
		if s.Records > 0 {
			rate = 100 * float64(s.Errors) / float64(s.Records)
		}
		fmt.Fprintf(tw, "records\t%d\n", s.Records)
		fmt.Fprintf(tw, "bytes\t%d\n", s.Bytes)
		fmt.Fprintf(tw, "errors\t%d (%.2f%%)\n", s.Errors, rate)
		for _, f := range s.Fields {
			p50, _ := f.Quantile(0.5)
			p90, _ := f.Quantile(0.9)
			p99, _ := f.Quantile(0.99)
			fmt.Fprintf(tw, "%s\tcount %d  min %g  p50 %.4g  p90 %.4g  p99 %.4g  max %g\n", f.Name, f.Count, f.Min, p50, p90, p99, f.Max)
		}
		fmt.Fprintf(tw, "source\t%s\n", source)
		if countBy == "" {
			return tw.Flush()
		}
		fmt.Fprintln(tw)
	}
	if countBy == "time" {
		if err := tw.Flush(); err != nil {
			return err
		}
		width := time.Minute
		if !from.IsZero() && !to.IsZero() {
			width = query.HistogramWidth(from, to)
		} else if len(rows) > 0 {
			lo, hi := rows[0].Start, rows[0].Start
			for _, r := range rows {
				lo, hi = minTime(lo, r.Start), maxTime(hi, r.Start)
			}
			width = query.HistogramWidth(lo, hi.Add(time.Minute))
		}
		query.RenderHistogram(w, query.Histogram(rows, width), 50)
		_, err := fmt.Fprintf(w, "(%s per bar; source %s)\n", width, source)
		return err
	}
	if countBy != "" {
		fmt.Fprintf(tw, "%s\tCOUNT\tBYTES\n", strings.ToUpper(countBy))
		for _, g := range query.CountBy(rows, countBy) {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", g.Value, g.Count, g.Bytes)
		}
		if !stats {
			fmt.Fprintf(tw, "(source %s)\n", source)
		}
	}
	return tw.Flush()
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kinlog/kinlog/query"
	"github.com/kinlog/kinlog/sinks/prefix"
)

// runAthenaDDL prints CREATE EXTERNAL TABLE statements for the archive and rollups.
func runAthenaDDL(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("athena-ddl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bucket := fs.String("bucket", os.Getenv("KINLOG_ARCHIVE_BUCKET"), "archive bucket (default $KINLOG_ARCHIVE_BUCKET)")
	pfx := fs.String("prefix", prefix.DefaultArchive, "archive key template, as the sink writes it")
	analytics := fs.String("analytics-prefix", prefix.DefaultAnalytics, "rollup key template")
	encoding := fs.String("encoding", "ndjson", "archive encoding: ndjson or parquet")
	database := fs.String("database", "kinlog", "Athena database")
	table := fs.String("table", "logs", "table name (the rollups table is <table>_rollups)")
	columns := fs.String("columns", "", "NDJSON columns as name:type,... (default: time, level, service, msg, message, status, latency_ms, raw)")
	start := fs.String("projection-start", "NOW-1YEARS", "first date partition projection covers")
	var sets stringList
	cfgPath := addConfigFlags(fs, &sets)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (see kinlog athena-ddl --help)", errUsage, fs.Arg(0))
	}
	if err := applyArchiveConfig(fs, *cfgPath, sets, "athena-ddl", map[string]func(archiveConfig) string{
		"bucket":           func(a archiveConfig) string { return a.Bucket },
		"prefix":           func(a archiveConfig) string { return a.Prefix },
		"analytics-prefix": func(a archiveConfig) string { return a.AnalyticsPrefix },
		"encoding":         func(a archiveConfig) string { return a.Encoding },
	}); err != nil {
		return err
	}
	o := query.DDLOptions{Database: *database, Table: *table, Bucket: *bucket, Prefix: *pfx, AnalyticsPrefix: *analytics, ProjectionStart: *start}
	switch *encoding {
	case "ndjson":
	case "parquet":
		o.Parquet = true
	default:
		return fmt.Errorf("%w: --encoding: want ndjson or parquet, got %q", errUsage, *encoding)
	}
	for _, c := range splitList(*columns) {
		name, typ, ok := strings.Cut(c, ":")
		if !ok || name == "" || typ == "" {
			return fmt.Errorf("%w: --columns: %q is not name:type", errUsage, c)
		}
		o.Columns = append(o.Columns, query.Column{Name: name, Type: typ})
	}
	ddl, err := query.AthenaDDL(o)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	_, err = io.WriteString(stdout, ddl)
	return err
}

package query

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/kinlog/kinlog/sinks/prefix"
)

// Column is a table column for Athena DDL.
type Column struct {
	Name, Type string
}

// DefaultNDJSONColumns are the columns declared for an NDJSON archive: the common log
// members, and raw for records that were not a JSON object. Add the members your logs carry.
// NDJSON objects hold the records alone: no Kinesis metadata, no kinlog identity (a Parquet
// archive has them as columns, kinlog_id among them).
var DefaultNDJSONColumns = []Column{
	{"time", "string"}, {"level", "string"}, {"service", "string"}, {"msg", "string"},
	{"message", "string"}, {"status", "int"}, {"latency_ms", "double"}, {"raw", "string"},
}

// parquetColumns is the Parquet log schema of sinks/encode (encode.Row), but its layout
// column, which only kinlog's decoder reads. Parquet tables are read by column name, so
// kinlog_id is NULL in the rows of files written before the column existed.
var parquetColumns = []Column{
	{"time", "timestamp"}, {"level", "string"}, {"service", "string"}, {"message", "string"},
	{"attributes", "string"}, {"shard", "string"}, {"sequence", "string"},
	{"sub_sequence", "bigint"}, {"arrival_time", "timestamp"}, {"partition_key", "string"},
	{IDField, "string"},
}

// DDLOptions describe the archive for [AthenaDDL].
type DDLOptions struct {
	// Database and Table name the tables; the rollup table is <Table>_rollups.
	// Defaults: kinlog, logs.
	Database, Table string
	// Bucket holds the archive. Required.
	Bucket string
	// Prefix and AnalyticsPrefix are the sink's templates. Defaults: prefix.DefaultArchive,
	// prefix.DefaultAnalytics.
	Prefix, AnalyticsPrefix string
	// Parquet says the archive is Parquet rather than NDJSON.
	Parquet bool
	// Columns are the NDJSON columns. Default: DefaultNDJSONColumns.
	Columns []Column
	// ProjectionStart is the first day date projections cover. Default: NOW-1YEARS.
	ProjectionStart string
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// projection maps a template onto Athena partition projection: the partition columns, their
// table properties, and the storage.location.template.
type projection struct {
	cols     []Column
	props    [][2]string
	location string
}

// timeUnit maps the finest pattern letter of a date format to Athena's interval unit.
func timeUnit(pattern string) (string, bool) {
	for _, u := range []struct{ letters, unit string }{{"s", "SECONDS"}, {"m", "MINUTES"}, {"Hhk", "HOURS"}, {"d", "DAYS"}, {"M", "MONTHS"}, {"yu", "YEARS"}} {
		if strings.ContainsAny(pattern, u.letters) {
			return u.unit, true
		}
	}
	return "", false
}

// integerRanges are the single-field patterns projected as integers.
var integerRanges = map[byte]string{'H': "0,23", 'm': "0,59", 's': "0,59", 'd': "1,31", 'M': "1,12"}

func project(tpl *prefix.Template, bucket, start string) (projection, error) {
	var pr projection
	loc := "s3://" + bucket + "/"
	used := map[string]bool{}
	parts := tpl.Parts()
	for i, p := range parts {
		if p.Kind == prefix.PartLiteral {
			loc += p.Literal
			continue
		}
		// A Hive-style segment (".../name=!{...}") names its column.
		name := ""
		if i > 0 && parts[i-1].Kind == prefix.PartLiteral && strings.HasSuffix(parts[i-1].Literal, "=") {
			lit := parts[i-1].Literal[:len(parts[i-1].Literal)-1]
			name = lit[strings.LastIndexByte(lit, '/')+1:]
		}
		switch p.Kind {
		case prefix.PartTimestamp:
			if name == "" {
				name = "ts"
			}
			name = unique(strings.ToLower(name), used)
			if !identRE.MatchString(name) {
				return pr, fmt.Errorf("partition column name %q is not an Athena identifier", name)
			}
			if r, ok := integerRanges[p.Pattern[0]]; ok && strings.Count(p.Pattern, p.Pattern[:1]) == len(p.Pattern) {
				pr.cols = append(pr.cols, Column{name, "int"})
				pr.props = append(pr.props, [2]string{"projection." + name + ".type", "integer"},
					[2]string{"projection." + name + ".range", r},
					[2]string{"projection." + name + ".digits", fmt.Sprint(len(p.Pattern))})
				break
			}
			unit, ok := timeUnit(p.Pattern)
			if !ok || !strings.ContainsAny(p.Pattern, "yu") {
				return pr, fmt.Errorf("timestamp pattern %q: Athena can project a full date (with a year) or one numeric field (HH, mm, dd, MM)", p.Pattern)
			}
			pr.cols = append(pr.cols, Column{name, "string"})
			pr.props = append(pr.props, [2]string{"projection." + name + ".type", "date"},
				[2]string{"projection." + name + ".format", p.Pattern},
				[2]string{"projection." + name + ".range", start + ",NOW"},
				[2]string{"projection." + name + ".interval", "1"},
				[2]string{"projection." + name + ".interval.unit", unit})
		case prefix.PartField:
			if name == "" {
				name = strings.ReplaceAll(p.Field, ".", "_")
			}
			name = unique(strings.ToLower(name), used)
			if !identRE.MatchString(name) {
				return pr, fmt.Errorf("partition column name %q is not an Athena identifier", name)
			}
			pr.cols = append(pr.cols, Column{name, "string"})
			pr.props = append(pr.props, [2]string{"projection." + name + ".type", "injected"})
		default:
			return pr, errors.New("the error-output type cannot be projected")
		}
		loc += "${" + name + "}"
	}
	pr.location = loc
	return pr, nil
}

func unique(name string, used map[string]bool) string {
	n := name
	for i := 2; used[n]; i++ {
		n = fmt.Sprintf("%s%d", name, i)
	}
	used[n] = true
	return n
}

// AthenaDDL returns CREATE EXTERNAL TABLE statements for the archive and its rollups, with
// partition projection matching the sink's key templates, so queries prune partitions
// without crawlers or MSCK REPAIR.
func AthenaDDL(o DDLOptions) (string, error) {
	if o.Bucket == "" {
		return "", errors.New("athena ddl: bucket is required")
	}
	if o.Database == "" {
		o.Database = "kinlog"
	}
	if o.Table == "" {
		o.Table = "logs"
	}
	if o.Prefix == "" {
		o.Prefix = prefix.DefaultArchive
	}
	if o.AnalyticsPrefix == "" {
		o.AnalyticsPrefix = prefix.DefaultAnalytics
	}
	if o.ProjectionStart == "" {
		o.ProjectionStart = "NOW-1YEARS"
	}
	if len(o.Columns) == 0 {
		o.Columns = DefaultNDJSONColumns
	}
	for _, id := range []string{o.Database, o.Table} {
		if !identRE.MatchString(id) {
			return "", fmt.Errorf("athena ddl: %q is not an Athena identifier (lower case letters, digits, _)", id)
		}
	}
	archive, err := prefix.Parse(o.Prefix, prefix.AllowTimestamp|prefix.AllowQuery)
	if err != nil {
		return "", fmt.Errorf("athena ddl: archive prefix: %w", err)
	}
	analytics, err := prefix.Parse(o.AnalyticsPrefix, prefix.AllowTimestamp)
	if err != nil {
		return "", fmt.Errorf("athena ddl: analytics prefix: %w", err)
	}
	ap, err := project(archive, o.Bucket, o.ProjectionStart)
	if err != nil {
		return "", fmt.Errorf("athena ddl: archive prefix %s: %w", o.Prefix, err)
	}
	rp, err := project(analytics, o.Bucket, o.ProjectionStart)
	if err != nil {
		return "", fmt.Errorf("athena ddl: analytics prefix %s: %w", o.AnalyticsPrefix, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE DATABASE IF NOT EXISTS %s;\n\n", o.Database)
	cols, format := o.Columns, "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\nWITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')\nSTORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\nOUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'"
	if o.Parquet {
		cols, format = parquetColumns, "STORED AS PARQUET"
	}
	for _, c := range cols {
		if !identRE.MatchString(c.Name) {
			return "", fmt.Errorf("athena ddl: column %q is not an Athena identifier", c.Name)
		}
	}
	writeTable(&b, o.Database+"."+o.Table, "kinlog archive", cols, ap, format)
	b.WriteString("\n")
	rollupCols := []Column{
		{"start", "string"}, {"window_s", "double"}, {"dims", "map<string,string>"}, {"count", "bigint"}, {"bytes", "bigint"},
		{"fields", "map<string,struct<count:bigint,sum:double,min:double,max:double,sketch:string>>"},
	}
	writeTable(&b, o.Database+"."+o.Table+"_rollups", "kinlog analytics rollups (one row per window and dimension values; merge sketches with kinlog query)", rollupCols, rp,
		"ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\nSTORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\nOUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'")
	return b.String(), nil
}

func writeTable(b *strings.Builder, name, comment string, cols []Column, pr projection, format string) {
	fmt.Fprintf(b, "CREATE EXTERNAL TABLE IF NOT EXISTS %s (\n", name)
	for i, c := range cols {
		sep := ","
		if i == len(cols)-1 {
			sep = ""
		}
		fmt.Fprintf(b, "  `%s` %s%s\n", c.Name, c.Type, sep)
	}
	fmt.Fprintf(b, ")\nCOMMENT '%s'\n", comment)
	if len(pr.cols) > 0 {
		b.WriteString("PARTITIONED BY (")
		for i, c := range pr.cols {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(b, "`%s` %s", c.Name, c.Type)
		}
		b.WriteString(")\n")
	}
	fmt.Fprintf(b, "%s\n", format)
	loc := pr.location
	if i := strings.Index(loc, "${"); i >= 0 {
		loc = loc[:strings.LastIndexByte(loc[:i], '/')+1]
	}
	fmt.Fprintf(b, "LOCATION '%s'\nTBLPROPERTIES (\n", loc)
	props := [][2]string{}
	if len(pr.cols) > 0 {
		props = append(props, [2]string{"projection.enabled", "true"})
		props = append(props, pr.props...)
		props = append(props, [2]string{"storage.location.template", pr.location})
	}
	props = append(props, [2]string{"classification", "kinlog"})
	for i, p := range props {
		sep := ","
		if i == len(props)-1 {
			sep = ""
		}
		fmt.Fprintf(b, "  '%s' = '%s'%s\n", p[0], p[1], sep)
	}
	b.WriteString(");\n")
}

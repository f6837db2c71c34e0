package query

import (
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/kinlog/kinlog/sinks/encode"
)

func TestAthenaDDLDefault(t *testing.T) {
	ddl, err := AthenaDDL(DDLOptions{Bucket: "arch"})
	if err != nil {
		t.Fatal(err)
	}
	// NDJSON objects do not carry the identity: the table does not declare it.
	if strings.Contains(ddl, "kinlog_id") {
		t.Errorf("NDJSON DDL declares kinlog_id:\n%s", ddl)
	}
	for _, want := range []string{
		"CREATE DATABASE IF NOT EXISTS kinlog;",
		"CREATE EXTERNAL TABLE IF NOT EXISTS kinlog.logs (",
		"PARTITIONED BY (`dt` string, `hour` int)",
		"org.openx.data.jsonserde.JsonSerDe",
		"LOCATION 's3://arch/logs/'",
		"'projection.dt.type' = 'date'",
		"'projection.dt.format' = 'yyyy-MM-dd'",
		"'projection.dt.range' = 'NOW-1YEARS,NOW'",
		"'projection.dt.interval.unit' = 'DAYS'",
		"'projection.hour.type' = 'integer'",
		"'projection.hour.range' = '0,23'",
		"'projection.hour.digits' = '2'",
		"'storage.location.template' = 's3://arch/logs/dt=${dt}/hour=${hour}/'",
		"CREATE EXTERNAL TABLE IF NOT EXISTS kinlog.logs_rollups (",
		"'storage.location.template' = 's3://arch/analytics/dt=${dt}/hour=${hour}/'",
		"`fields` map<string,struct<count:bigint,sum:double,min:double,max:double,sketch:string>>",
	} {
		if !strings.Contains(ddl, want) {
			t.Errorf("DDL lacks %q:\n%s", want, ddl)
		}
	}
}

func TestAthenaDDLLayouts(t *testing.T) {
	tests := []struct {
		name string
		o    DDLOptions
		want []string
	}{
		{"Firehose-style path", DDLOptions{Bucket: "b", Prefix: "app/!{timestamp:yyyy/MM/dd/HH}/"}, []string{
			"PARTITIONED BY (`ts` string)", "'projection.ts.format' = 'yyyy/MM/dd/HH'", "'projection.ts.interval.unit' = 'HOURS'",
			"'storage.location.template' = 's3://b/app/${ts}/'", "LOCATION 's3://b/app/'",
		}},
		{"field partition", DDLOptions{Bucket: "b", Prefix: "logs/service=!{partitionKeyFromQuery:service}/!{partitionKeyFromQuery:http.region}/dt=!{timestamp:yyyy-MM-dd}/"}, []string{
			"PARTITIONED BY (`service` string, `http_region` string, `dt` string)", "'projection.service.type' = 'injected'",
			"'projection.http_region.type' = 'injected'", "'storage.location.template' = 's3://b/logs/service=${service}/${http_region}/dt=${dt}/'",
		}},
		{"parquet, custom names", DDLOptions{Bucket: "b", Parquet: true, Database: "obs", Table: "app_logs", ProjectionStart: "2026-01-01"}, []string{
			"CREATE EXTERNAL TABLE IF NOT EXISTS obs.app_logs (", "STORED AS PARQUET", "`arrival_time` timestamp", "'projection.dt.range' = '2026-01-01,NOW'",
			"  `partition_key` string,\n  `kinlog_id` string\n)\nCOMMENT 'kinlog archive'",
		}},
		{"no partitions", DDLOptions{Bucket: "b", Prefix: "flat/"}, []string{"LOCATION 's3://b/flat/'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ddl, err := AthenaDDL(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(ddl, w) {
					t.Errorf("DDL lacks %q:\n%s", w, ddl)
				}
			}
			if tt.name == "no partitions" && strings.Contains(ddl[:strings.Index(ddl, "_rollups")], "projection.enabled") {
				t.Errorf("unpartitioned archive got projection:\n%s", ddl)
			}
		})
	}
}

func TestAthenaDDLErrors(t *testing.T) {
	for _, o := range []DDLOptions{
		{},
		{Bucket: "b", Table: "Logs-2"},
		{Bucket: "b", Prefix: "logs/!{timestamp:EEE}/"},
		{Bucket: "b", Prefix: "logs/!{bogus:x}/"},
		{Bucket: "b", Columns: []Column{{"bad name", "string"}}},
	} {
		if _, err := AthenaDDL(o); err == nil {
			t.Errorf("AthenaDDL(%+v) accepted", o)
		}
	}
}

// TestAthenaParquetColumnsMatchSchema checks the Parquet table's columns against the schema
// the encoder writes: every column but layout (kinlog's own), in order, with its type.
func TestAthenaParquetColumnsMatchSchema(t *testing.T) {
	var want []Column
	for _, f := range encode.ParquetSchema.Fields() {
		typ := "string"
		switch {
		case f.Type().LogicalType() != nil && strings.HasPrefix(f.Type().LogicalType().String(), "TIMESTAMP"):
			typ = "timestamp"
		case f.Type().Kind() == parquet.Int64:
			typ = "bigint"
		}
		if f.Name() != "layout" {
			want = append(want, Column{f.Name(), typ})
		}
	}
	if !slices.Equal(parquetColumns, want) {
		t.Fatalf("Parquet DDL columns %v, want %v", parquetColumns, want)
	}
	if last := parquetColumns[len(parquetColumns)-1]; last != (Column{"kinlog_id", "string"}) {
		t.Errorf("last Parquet column %v, want kinlog_id string", last)
	}
}

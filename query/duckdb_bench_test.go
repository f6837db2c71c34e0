package query

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/sinks/encode"
	"github.com/kinlog/kinlog/sinks/rollup"
)

// duckCount is one question asked of kinlog and of DuckDB over the same Parquet objects.
type duckCount struct {
	name string
	req  Request
	// where is the SQL condition DuckDB tests: the same records, since every record of
	// the benchmark archive has its level, service and time in the columns of those
	// names and latency_ms in the attributes.
	where string
	// countBy is a --count-by dimension (answered with ScanRollup and GROUP BY).
	countBy string
}

// BenchmarkCountVsDuckDB answers filtered counts, and a count by level, over a sink-written
// Parquet zstd archive of 1M records (4 hours of 2 objects of 125,000, in the records'
// time order as a shard delivers them), with kinlog (objects in memory, one at a time:
// the CPU of the scan alone) and with DuckDB on one thread (the same objects as local
// files), checks that the answers agree, and reports rows per second per core for both.
// DuckDB's time per query is the difference between running the query duckReps+1 times and
// once in one process, over duckReps, so that starting it is not counted.
func BenchmarkCountVsDuckDB(b *testing.B) {
	duck := testenv.DuckDB(b)
	api, n, stored := benchArchive(b, encode.Config{Format: encode.Parquet, Compression: encode.CompressionZstd}, 4, 2, 125000)
	dir := b.TempDir()
	var files []string
	for _, k := range slices.Sorted(maps.Keys(api.objects)) {
		path := filepath.Join(dir, strings.ReplaceAll(k, "/", "_"))
		if err := os.WriteFile(path, api.objects[k], 0o600); err != nil {
			b.Fatal(err)
		}
		files = append(files, "'"+path+"'")
	}
	table := "read_parquet([" + strings.Join(files, ",") + "])"
	from := time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	sqlTime := func(t time.Time) string { return "TIMESTAMPTZ '" + t.Format("2006-01-02 15:04:05") + "+00'" }
	latency := "TRY_CAST(json_extract(attributes, '$.latency_ms') AS DOUBLE)"
	for _, q := range []duckCount{
		{name: "level", req: Request{Where: mustFilter(b, "level=ERROR")}, where: "level = 'ERROR'"},
		{name: "level+service", req: Request{Where: mustFilter(b, "level=ERROR", "service=svc-3")}, where: "level = 'ERROR' AND service = 'svc-3'"},
		{name: "level+latency", req: Request{Where: mustFilter(b, "level=ERROR", "latency_ms>500")}, where: "level = 'ERROR' AND " + latency + " > 500"},
		{name: "time+level", req: Request{Where: mustFilter(b, "level=ERROR"), From: from, To: to, TimeFields: []string{"time"}},
			where: "level = 'ERROR' AND time >= " + sqlTime(from) + " AND time < " + sqlTime(to)},
		{name: "count-by-level", countBy: "level"},
	} {
		b.Run(q.name, func(b *testing.B) {
			req := q.req
			req.Bucket, req.Parallelism = "b", 1
			ctx := context.Background()
			// kinlog's answer: a count, or counts by value.
			answer := func() (map[string]int64, error) {
				if q.countBy == "" {
					st, err := Count(ctx, api, req)
					return map[string]int64{"": st.RecordsMatched}, err
				}
				rows, _, err := ScanRollup(ctx, api, req, rollup.Config{Dimensions: []string{q.countBy}})
				out := map[string]int64{}
				for _, g := range CountBy(rows, q.countBy) {
					out[g.Value] = g.Count
				}
				return out, err
			}
			sql := "SELECT count(*) AS n, '' AS v FROM " + table + " WHERE " + q.where
			if q.countBy != "" {
				sql = fmt.Sprintf("SELECT count(*) AS n, coalesce(%[1]s, '(none)') AS v FROM %[2]s GROUP BY %[1]s", q.countBy, table)
			}
			duckAnswer := map[string]int64{}
			for _, row := range duck(b, "SET threads=1; "+sql) {
				var c int64
				if _, err := fmt.Sscan(fmt.Sprint(row["n"]), &c); err != nil {
					b.Fatal(err)
				}
				duckAnswer[fmt.Sprint(row["v"])] = c
			}
			b.SetBytes(stored)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			var got map[string]int64
			for b.Loop() {
				var err error
				if got, err = answer(); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cpuTime() - cpu0
			b.StopTimer()
			if fmt.Sprint(got) != fmt.Sprint(duckAnswer) {
				b.Fatalf("kinlog %v, DuckDB %v", got, duckAnswer)
			}
			once := timeDuck(b, duck, "SET threads=1; "+sql+";")
			many := timeDuck(b, duck, "SET threads=1; "+strings.Repeat(sql+"; ", duckReps+1))
			per := (many - once) / duckReps
			b.ReportMetric(float64(n)*float64(b.N)/cpu.Seconds()/1e6, "Mrows/cpu-s")
			if per > 0 {
				b.ReportMetric(float64(n)/per.Seconds()/1e6, "duckdb-Mrows/cpu-s")
			}
			b.ReportMetric(float64(got[""]), "matched")
		})
	}
}

// duckReps is how many more times DuckDB runs a query to time it.
const duckReps = 20

func timeDuck(b *testing.B, duck testenv.DuckDBQuery, sql string) time.Duration {
	b.Helper()
	start := time.Now()
	duck(b, sql)
	return time.Since(start)
}

package deploytest

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboardMetrics are the metric names the dashboard queries, each checked against what
// producer/, consumer/ and sinks/s3 export (TestDashboardMetricsExist); histograms are
// queried through _bucket.
var dashboardMetrics = []string{
	"kinlog_consumer_checkpoint_age_seconds",
	"kinlog_consumer_lease_losses_total",
	"kinlog_consumer_lease_steals_total",
	"kinlog_consumer_lease_takes_total",
	"kinlog_consumer_leases_held",
	"kinlog_consumer_millis_behind_latest",
	"kinlog_consumer_read_errors_total",
	"kinlog_consumer_records_processed_total",
	"kinlog_producer_buffered_bytes",
	"kinlog_producer_buffered_records",
	"kinlog_producer_delivery_latency_seconds_bucket",
	"kinlog_producer_kinesis_bytes_total",
	"kinlog_producer_kinesis_records_total",
	"kinlog_producer_records_delivered_total",
	"kinlog_producer_records_failed_total",
	"kinlog_producer_records_put_total",
	"kinlog_producer_records_retried_total",
	"kinlog_producer_throttled_kinesis_records_total",
	"kinlog_sink_buffered_records",
	"kinlog_sink_bytes_written_total",
	"kinlog_sink_errors_total",
	"kinlog_sink_flush_duration_seconds_bucket",
	"kinlog_sink_objects_written_total",
	"kinlog_sink_oldest_unflushed_record_age_seconds",
	"kinlog_sink_records_archived_total",
	"kinlog_sink_records_errored_total",
}

type gridPos struct{ H, W, X, Y int }

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	GridPos    gridPos         `json:"gridPos"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		RefID      string          `json:"refId"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	metricName = regexp.MustCompile(`\b(kinlog_[a-z0-9_]+)`)
	// identifiers directly followed by a selector or range are metric names in PromQL.
	anyMetric = regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)
)

// promFuncs are PromQL functions and keywords that may precede "(" or "{" in the queries.
var promFuncs = []string{"sum", "max", "min", "avg", "rate", "increase", "histogram_quantile", "by", "without", "label_values"}

func checkDashboard(raw []byte) problems {
	var ps problems
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		ps.addf("dashboard JSON: %v", err)
		return ps
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		ps.addf("dashboard needs uid, title and schemaVersion")
	}
	hasDS := slices.ContainsFunc(d.Templating.List, func(v struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	})
	if !hasDS {
		ps.addf("dashboard has no datasource variable: it would be bound to one Prometheus")
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	type cell struct{ x, y int }
	occupied := map[cell]string{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			ps.addf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			ps.addf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := occupied[cell{x, y}]; ok {
					ps.addf("panels %q and %q overlap", other, p.Title)
					x, y = 1<<30, 1<<30
				}
				occupied[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			ps.addf("panel %d: needs a title and queries", p.ID)
		}
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			ps.addf("panel %q: datasource is not the ${datasource} variable", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				ps.addf("panel %q: unbalanced query %q", p.Title, tg.Expr)
			}
			for _, m := range anyMetric.FindAllStringSubmatch(tg.Expr, -1) {
				if !slices.Contains(promFuncs, m[1]) && !strings.HasPrefix(m[1], "kinlog_") {
					ps.addf("panel %q: metric %s lacks the kinlog_ prefix", p.Title, m[1])
				}
			}
			ms := metricName.FindAllString(tg.Expr, -1)
			if len(ms) == 0 {
				ps.addf("panel %q: query %q uses no kinlog_ metric", p.Title, tg.Expr)
			}
			for _, m := range ms {
				used[m] = true
				if !slices.Contains(dashboardMetrics, m) {
					ps.addf("panel %q: metric %s is not in dashboardMetrics", p.Title, m)
				}
			}
		}
	}
	for _, m := range dashboardMetrics {
		if !used[m] {
			ps.addf("no panel shows %s", m)
		}
	}
	return ps
}

func TestGrafanaDashboard(t *testing.T) {
	requireNone(t, "infra/grafana/kinlog-dashboard.json", checkDashboard(readFile(t, "infra/grafana/kinlog-dashboard.json")))
}

func TestGrafanaDashboardChecksCatch(t *testing.T) {
	src := string(readFile(t, "infra/grafana/kinlog-dashboard.json"))
	for _, tc := range []struct{ name, old, new, want string }{
		{"truncated", `"panels": [`, `"panels": [[`, "dashboard JSON"},
		{"foreign metric", "kinlog_sink_errors_total{", "sink_errors_total{", "lacks the kinlog_ prefix"},
		{"unknown metric", "kinlog_consumer_leases_held{", "kinlog_consumer_leases_owned{", "not in dashboardMetrics"},
		{"fixed datasource", `"uid": "${datasource}"`, `"uid": "prometheus-prod"`, "not the ${datasource} variable"},
		{"overlap", `"x": 12,`, `"x": 0,`, "overlap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(src, tc.old) {
				t.Fatalf("dashboard no longer contains %q; update the test", tc.old)
			}
			requireProblem(t, checkDashboard([]byte(strings.ReplaceAll(src, tc.old, tc.new))), tc.want)
		})
	}
}

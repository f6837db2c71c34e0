// Package testlogs generates deterministic, realistic log records for the sinks' tests and
// benchmarks: JSON lines as log/slog's JSON handler writes them, with varied services,
// levels, paths, statuses and latencies.
package testlogs

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/kinlog/kinlog/consumer"
)

var (
	services = []string{"api", "billing", "search", "auth", "worker"}
	levels   = []string{"DEBUG", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR"}
	methods  = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths    = []string{"/v1/items", "/v1/items/%d", "/v1/users/%d/orders", "/healthz", "/v1/search"}
	msgs     = []string{"request served", "cache miss", "upstream slow", "retrying request", "user signed in", "payment declined"}
	statuses = []int{200, 200, 200, 200, 201, 204, 304, 400, 404, 429, 500, 503}
)

// Gen produces log lines from a seeded generator.
type Gen struct {
	r    *rand.Rand
	Base time.Time
	i    int
}

// New returns a generator; the same seed gives the same lines.
func New(seed uint64) *Gen {
	return &Gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), Base: time.Date(2026, 3, 14, 9, 58, 0, 0, time.UTC)}
}

// Line returns the next JSON log line (about 230 bytes, ending in "\n") and its time.
func (g *Gen) Line() ([]byte, time.Time) {
	g.i++
	t := g.Base.Add(time.Duration(g.i) * 7 * time.Millisecond)
	p := paths[g.r.IntN(len(paths))]
	if p[len(p)-1] == 'd' || containsVerb(p) {
		p = fmt.Sprintf(p, g.r.IntN(100000))
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"`...)
	b = append(b, levels[g.r.IntN(len(levels))]...)
	b = append(b, `","msg":"`...)
	b = append(b, msgs[g.r.IntN(len(msgs))]...)
	b = append(b, `","service":"`...)
	b = append(b, services[g.r.IntN(len(services))]...)
	b = append(b, `","method":"`...)
	b = append(b, methods[g.r.IntN(len(methods))]...)
	b = append(b, `","path":"`...)
	b = append(b, p...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(statuses[g.r.IntN(len(statuses))]), 10)
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendFloat(b, float64(g.r.IntN(500000))/1000, 'f', -1, 64)
	b = append(b, `,"trace_id":"`...)
	b = fmt.Appendf(b, "%016x%016x", g.r.Uint64(), g.r.Uint64())
	b = append(b, `","user_agent":"kinlog-test/1.0"}`...)
	b = append(b, '\n')
	return b, t
}

func containsVerb(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '%' {
			return true
		}
	}
	return false
}

// Records returns n records of shard shard whose sequence numbers count up from seq0 (plain,
// sub-sequence 0), arriving 7 ms apart from g.Base.
func (g *Gen) Records(shard string, seq0 uint64, n int) []consumer.Record {
	out := make([]consumer.Record, n)
	for i := range out {
		data, t := g.Line()
		out[i] = consumer.Record{
			ShardID:        shard,
			SequenceNumber: Seq(seq0 + uint64(i)),
			PartitionKey:   "pk-" + strconv.Itoa(g.r.IntN(64)),
			ArrivalTime:    t.Add(20 * time.Millisecond).Truncate(time.Millisecond),
			Data:           data,
		}
	}
	return out
}

// Seq formats n as a Kinesis-like 56-digit sequence number that orders like n.
func Seq(n uint64) string {
	return fmt.Sprintf("4963%052d", n)
}

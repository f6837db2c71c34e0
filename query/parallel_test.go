package query

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kinlog/kinlog/sinks/encode"
)

// TestMain checks that queries leave no goroutine behind (the S3 client's idle connections
// to MinIO, in integration tests, are the transport's).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

// parallelArchive is 3 hours of 3 objects each of 50 records, NDJSON and Parquet mixed,
// each object's records overlapping the others' in time.
func parallelArchive(t *testing.T) *fakeS3 {
	t.Helper()
	api := &fakeS3{objects: map[string][]byte{}}
	base := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for h := range 3 {
		for o := range 3 {
			var recs []string
			for i := range 50 {
				ts := base.Add(time.Duration(h)*time.Hour + time.Duration((i*7+o*13)%60)*time.Minute).Format(time.RFC3339)
				lvl := []string{"INFO", "WARN", "ERROR"}[(i+o)%3]
				recs = append(recs, rec(ts, lvl, fmt.Sprintf("h%d o%d r%d", h, o, i), i*10))
			}
			cfg, ext := encode.Config{}, ".json.gz"
			if o == 1 {
				cfg, ext = encode.Config{Format: encode.Parquet}, ".parquet"
			}
			api.objects[fmt.Sprintf("logs/dt=2026-11-22/hour=%02d/s-%d%s", h, o, ext)] = encodeObject(t, cfg, recs...)
		}
	}
	return api
}

// TestParallelSameAsSequential checks that reading objects in parallel, with any memory
// budget, returns what reading them one at a time returns: the same records in the same
// order, for every order, limits and filters.
func TestParallelSameAsSequential(t *testing.T) {
	api := parallelArchive(t)
	for _, order := range []Order{OrderAsc, OrderDesc, OrderNone} {
		for _, limit := range []int{0, 7} {
			for _, where := range []string{"", "level=ERROR", "latency_ms>200"} {
				base := Request{Bucket: "b", Order: order, Limit: limit, TimeFields: []string{"time"}}
				if where != "" {
					base.Where = mustFilter(t, where)
				}
				seq := base
				seq.Parallelism = 1
				want, _, err := runAll(t, api, seq)
				if err != nil {
					t.Fatal(err)
				}
				for _, par := range []int{2, 8, 64} {
					for _, budget := range []int64{1, 3000 * ObjectMemoryFactor, 0} {
						req := base
						req.Parallelism, req.MemoryBudget = par, budget
						got, _, err := runAll(t, api, req)
						if err != nil {
							t.Fatal(err)
						}
						if !reflect.DeepEqual(got, want) {
							t.Fatalf("order %v, limit %d, --where %q, parallelism %d, budget %d:\n%s\nsequential:\n%s",
								order, limit, where, par, budget, strings.Join(got, "\n"), strings.Join(want, "\n"))
						}
					}
				}
			}
		}
	}
}

// TestMemoryBudgetBoundsObjectsInFlight checks that no more objects are fetched ahead of
// the one being returned than the memory budget has room for.
func TestMemoryBudgetBoundsObjectsInFlight(t *testing.T) {
	api := &fakeS3{objects: map[string][]byte{}}
	var size int64
	for o := range 6 {
		var recs []string
		for i := range 20 {
			recs = append(recs, rec("2026-11-22T10:00:00Z", "INFO", fmt.Sprintf("object %d record %02d", o, i), i))
		}
		body := encodeObject(t, encode.Config{Format: encode.Parquet}, recs...)
		api.objects[fmt.Sprintf("logs/dt=2026-11-22/hour=10/s-%d.parquet", o)] = body
		size = max(size, int64(len(body)))
	}
	for _, tc := range []struct {
		name   string
		budget int64
		ahead  int // objects that may be fetched beyond the one being returned
	}{
		{"smaller than one object", 1, 0},
		{"one object", size * ObjectMemoryFactor, 0},
		{"two objects", 2 * size * ObjectMemoryFactor, 1},
		{"three objects", 3 * size * ObjectMemoryFactor, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.mu.Lock()
			api.fetched = nil
			api.mu.Unlock()
			maxAhead := 0
			st, err := Run(context.Background(), api, Request{Bucket: "b", Order: OrderNone, Parallelism: 8, MemoryBudget: tc.budget}, func(rec []byte) error {
				var o int
				if _, err := fmt.Sscanf(string(rec[strings.Index(string(rec), "object "):]), "object %d", &o); err != nil {
					return err
				}
				api.mu.Lock()
				maxAhead = max(maxAhead, len(api.fetched)-1-o)
				api.mu.Unlock()
				return nil
			})
			if err != nil || st.RecordsMatched != 120 {
				t.Fatalf("%+v, %v", st, err)
			}
			if maxAhead > tc.ahead {
				t.Fatalf("%d objects fetched ahead of the one returned, want at most %d", maxAhead, tc.ahead)
			}
		})
	}
}

package consumer

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	ckdynamo "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/internal/testenv"
)

// BenchmarkIntegrationLeaseTableCost measures the lease table's read load on dynalite with a
// kinesalite stream of many shards (1,000 by default; KINLOG_LEASECOST_SHARDS), 4 workers,
// for both lease assignments: time until the fleet holds every lease evenly, reads of the
// table per worker per second in the steady state (items listed plus items read one by one
// plus keys from the owner index), and the takeover of a worker that dies. One run per
// assignment, whatever b.N (make bench-leases); it fails only when the fleet never balances
// or never takes over. Reported: balance_s, items_read/s (the fleet's), items_read/s_max
// (the busiest worker's) and takeover_s.
func BenchmarkIntegrationLeaseTableCost(b *testing.B) {
	shards := 1000
	if n, err := strconv.Atoi(os.Getenv("KINLOG_LEASECOST_SHARDS")); err == nil && n > 0 {
		shards = n
	}
	kc := testenv.KinesisClient(b)
	stream := testenv.Name(b, "leasecost")
	testenv.CreateStream(b, kc, stream, int32(shards))
	for _, mode := range []string{"scan", "leader"} {
		b.Run(mode, func(b *testing.B) {
			t := b
			var opts []ckdynamo.Option
			if mode == "leader" {
				opts = append(opts, ckdynamo.WithOwnerIndex())
			}
			store, table := leaseTable(t, opts...)
			coord, _ := leaseTableNamed(t, table+"-coordinator")
			type worker struct {
				c      *Consumer
				ws, cs *workerStore
				stop   func() error
			}
			workers := map[string]*worker{}
			for i := range 4 {
				id := fmt.Sprintf("w%d", i)
				w := &worker{ws: &workerStore{leaseBackend: store}, cs: &workerStore{leaseBackend: coord}}
				o := []Option{WithWorkerID(id), WithIdleTimeBetweenReads(30 * time.Second), WithLogger(quietLog)}
				if mode == "leader" {
					o = append(o, WithLeaderAssignment(w.cs))
				}
				c, err := New(kc, w.ws, stream, newProcLog(true).factory(), o...)
				if err != nil {
					t.Fatal(err)
				}
				w.c = c
				w.stop = started(t, c)
				workers[id] = w
			}
			begin := time.Now()
			balanced := func() bool {
				counts := ownerCounts(t, store)
				total, lo, hi := 0, shards, 0
				for id := range workers {
					total += counts[id]
					lo, hi = min(lo, counts[id]), max(hi, counts[id])
				}
				return total == shards && hi-lo <= 1
			}
			pollUntil(t, 15*time.Minute, 500*time.Millisecond, "the fleet balanced", balanced)
			balance := time.Since(begin)

			const window = 20 * time.Second
			reads := func(w *worker) int64 {
				return w.ws.listed.Load() + w.ws.gets.Load() + w.ws.ownedKeysReturned.Load() + w.cs.listed.Load() + w.cs.gets.Load()
			}
			before := map[string]int64{}
			for id, w := range workers {
				before[id] = reads(w)
			}
			<-time.After(window) // the measurement window of a real-time run
			var perWorker []string
			var total, most float64
			for _, id := range []string{"w0", "w1", "w2", "w3"} {
				r := float64(reads(workers[id])-before[id]) / window.Seconds()
				total, most = total+r, max(most, r)
				perWorker = append(perWorker, fmt.Sprintf("%s %.0f", id, r))
			}

			// w3 dies (partitioned away, then stopped: it releases nothing).
			workers["w3"].ws.dead.Store(true)
			workers["w3"].cs.dead.Store(true)
			_ = workers["w3"].stop()
			delete(workers, "w3")
			killed := time.Now()
			pollUntil(t, 2*time.Minute, 200*time.Millisecond, "the dead worker's leases taken over", balanced)
			takeover := time.Since(killed)
			for _, w := range workers {
				if err := w.stop(); err != nil {
					t.Error(err)
				}
			}
			b.ReportMetric(balance.Seconds(), "balance_s")
			b.ReportMetric(total, "items_read/s")
			b.ReportMetric(most, "items_read/s_max")
			b.ReportMetric(takeover.Seconds(), "takeover_s")
			b.ReportMetric(0, "ns/op")
			t.Logf("%s, %d shards, 4 workers on dynalite: balanced in %v; steady state %.0f items read per second in all (%v per worker); a dead worker's leases taken over in %v",
				mode, shards, balance.Round(100*time.Millisecond), total, perWorker, takeover.Round(100*time.Millisecond))
		})
	}
	_, _ = kc.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: aws.String(stream), EnforceConsumerDeletion: aws.Bool(true)})
}

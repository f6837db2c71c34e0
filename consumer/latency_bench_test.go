package consumer

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/internal/testenv"
)

// BenchmarkIntegrationTwoApplications measures, on kinesis-mock, two applications reading
// one stream at once — each with its own lease table and, with fan-out, its own stream
// consumer — as BenchmarkIntegrationPutToProcessor does for one: every put is timed until
// both applications got the record. It reports each application's p50/p99 and the reads
// each had refused (read_errors_total: throttled GetRecords for polling, subscriptions in
// use for fan-out). Run with -benchtime=100x.
func BenchmarkIntegrationTwoApplications(b *testing.B) {
	polling := retrieval{name: "polling", client: fanOutKinesisClient}
	for _, rt := range []retrieval{polling, fanOutMock} {
		b.Run(rt.name, func(b *testing.B) {
			kc := rt.client(b)
			stream := testenv.Name(b, "bench-two-apps")
			testenv.CreateStream(b, kc, stream, 1)
			type app struct {
				c       *Consumer
				arrived chan time.Time
			}
			var apps []app
			for i, name := range []string{"kinlog-app-a", "kinlog-app-b"} {
				store, _ := leaseTable(b)
				arrived := make(chan time.Time, 16)
				opts := append([]Option{WithLogger(quietLog), WithWorkerID(name)}, rt.opts...)
				if rt.name == "fanout" {
					opts = append(opts, WithStreamConsumerName(name)) // after fanOutOptions' name: wins
				}
				c, err := New(kc, store, stream, func(string) Processor { return latencyProc{arrived} }, opts...)
				if err != nil {
					b.Fatal(err)
				}
				stop := started(b, c)
				defer func() {
					if err := stop(); err != nil {
						b.Errorf("application %d: %v", i, err)
					}
				}()
				apps = append(apps, app{c, arrived})
			}
			put := func() []time.Duration {
				t0 := time.Now()
				if _, err := kc.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String("k"), Data: []byte("x")}); err != nil {
					b.Fatal(err)
				}
				out := make([]time.Duration, len(apps))
				for i, a := range apps {
					select {
					case at := <-a.arrived:
						out[i] = at.Sub(t0)
					case <-time.After(60 * time.Second):
						b.Fatalf("application %d: no delivery within 60s", i)
					}
				}
				return out
			}
			put() // both applications' leases taken and readers in place
			lat := make([][]time.Duration, len(apps))
			b.ResetTimer()
			for range b.N {
				<-time.After(time.Duration(rand.N(500)) * time.Millisecond)
				for i, d := range put() {
					lat[i] = append(lat[i], d)
				}
			}
			b.StopTimer()
			for i, l := range lat {
				slices.Sort(l)
				q := func(p float64) float64 { return float64(l[min(len(l)-1, int(p*float64(len(l))))]) / 1e6 }
				name := string(rune('a' + i))
				b.ReportMetric(q(0.50), "p50_ms_app_"+name)
				b.ReportMetric(q(0.99), "p99_ms_app_"+name)
				refused := 0.0
				for _, kind := range []string{"throttled", "subscription_in_use"} {
					refused += counterVecValue(apps[i].c.met.readErrors, kind)
				}
				b.ReportMetric(refused, "refused_reads_app_"+name)
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

package kpl

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// logLine returns a ~230-byte JSON log line.
func logLine(i int) []byte {
	return fmt.Appendf(nil, `{"time":"2026-11-22T10:00:00.000000Z","level":"INFO","msg":"request served","method":"GET","path":"/api/v1/items/%06d","status":200,"duration_ms":12.5,"user":"user-%04d","trace":"4bf92f3577b34da6a3ce929d0e0e4736"}`, i, i%1000)
}

func BenchmarkAggregate(b *testing.B) {
	const n = 1024
	keys := make([]string, n)
	lines := make([][]byte, n)
	for i := range n {
		keys[i] = "user-" + strconv.Itoa(i)
		lines[i] = logLine(i)
	}
	var a Aggregator
	buf := make([]byte, 0, DefaultMaxSize)
	b.SetBytes(int64(len(lines[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := Record{PartitionKey: keys[i%n], Data: lines[i%n]}
		if !a.TryAdd(r, DefaultMaxSize) {
			buf = a.AppendEncode(buf[:0])
			a.Reset()
			a.Add(r)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	var a Aggregator
	for i := 0; ; i++ {
		if !a.TryAdd(Record{PartitionKey: "user-" + strconv.Itoa(i), Data: logLine(i)}, DefaultMaxSize) {
			break
		}
	}
	enc := a.AppendEncode(nil)
	var recs []Record
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var ok bool
		recs, ok = AppendDecode(recs[:0], enc)
		if !ok {
			b.Fatal("not an aggregate")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

func BenchmarkPartitionKeyHash(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = PartitionKeyHash("user-1234-abcdef")
	}
}

func BenchmarkParseHashKey(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParseHashKey("170141183460469231731687303715884105727"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSum(b *testing.B) {
	var a Aggregator
	for i := 0; a.TryAdd(Record{PartitionKey: "user-" + strconv.Itoa(i), Data: logLine(i)}, DefaultMaxSize); i++ {
	}
	aggs := make([][]byte, 64)
	for i := range aggs {
		aggs[i] = a.AppendEncodeUnsummed(nil)
	}
	b.Run("crypto-md5", func(b *testing.B) {
		b.SetBytes(int64(len(aggs[0])))
		c0 := cpuTime()
		for i := 0; i < b.N; i++ {
			SetSum(aggs[i%len(aggs)])
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/aggregate")
	})
	b.Run("summer-batch-64", func(b *testing.B) {
		s := NewSummer()
		defer s.Close()
		b.SetBytes(int64(len(aggs[0])))
		b.ReportAllocs()
		c0 := cpuTime()
		for i := 0; i < b.N; i += len(aggs) {
			s.SumAll(aggs)
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/aggregate")
	})
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package consumer

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kinlog/kinlog/checkpoint/memory"
)

// TestReadPacingStaysWithin2MBps reads a shard of 24 records of 512 KiB, at most 4 per
// GetRecords call: a shard serves reads at ReadBytesPerSecond, so each call after a response
// of B bytes must wait B / ReadBytesPerSecond (a second after 2 MiB), not the 200 ms
// minimum. The small records read afterwards go at the minimum interval again.
func TestReadPacingStaysWithin2MBps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		const bigSize = 512 << 10
		big := bytes.Repeat([]byte("x"), bigSize)
		for range 24 {
			s.put(id, "k", big)
		}
		for range 8 {
			s.put(id, "k", []byte("small"))
		}
		api := s.api()
		store := memory.New()
		pl := newProcLog(true)
		c := newTestConsumer(t, api, store, pl, WithMaxRecords(4))
		stop := started(t, c)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := len(pl.records(id)); got != 32 {
			t.Fatalf("%d records delivered, want 32", got)
		}
		calls := api.callsOf("GetRecords", id)
		if len(calls) < 8 {
			t.Fatalf("%d GetRecords calls", len(calls))
		}
		// What each call returned, from its iterator (the fake's "shard#index") and Limit.
		returned := func(c call) (bigs, smalls int) {
			in := c.in.(*kinesis.GetRecordsInput)
			_, idx, _ := strings.Cut(aws.ToString(in.ShardIterator), "#")
			from, _ := strconv.Atoi(idx)
			to := min(from+int(aws.ToInt32(in.Limit)), 32)
			return max(0, min(to, 24)-from), max(0, to-max(from, 24))
		}
		sawBig := false
		for i := 1; i < len(calls); i++ {
			bigs, smalls := returned(calls[i-1])
			if bigs == 0 && smalls == 0 {
				break // caught up: the idle back-off applies
			}
			sawBig = sawBig || bigs > 1
			n := bigs*bigSize + smalls*len("small")
			want := max(time.Duration(n)*time.Second/ReadBytesPerSecond, MinGetRecordsInterval)
			gap := calls[i].at.Sub(calls[i-1].at)
			if gap < want {
				t.Fatalf("GetRecords %d came %v after a response of %d bytes; the shard's 2 MB/s needs %v", i, gap, n, want)
			}
			if bigs == 0 && gap >= 2*MinGetRecordsInterval {
				t.Fatalf("after a small response the next GetRecords came %v later, want the %v minimum", gap, MinGetRecordsInterval)
			}
		}
		if !sawBig {
			t.Fatal("no response held more than one large record: the pacing was not exercised")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGetRecordsLimitFollowsRecordSize: a reader asks for what half a second of the shard's
// read throughput holds, judged by the last response's records, so that large records do
// not make responses of many megabytes; small records get the whole WithMaxRecords.
func TestGetRecordsLimitFollowsRecordSize(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size, n    int
		maxRecords int32
		want       int32
	}{
		{"230-byte records", 230 * 10000, 10000, 10000, int32(ReadBytesPerSecond / 2 / 230)},
		{"256 KiB records", 4 << 18, 4, 10000, 4},
		{"1 MiB records", 3 << 20, 3, 10000, 1},
		{"tiny records: the maximum", 50 * 100, 100, 10000, 10000},
		{"tiny records: a lower maximum", 50 * 100, 100, 500, 500},
		{"empty records", 0, 7, 10000, 10000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readLimit(tc.size, tc.n, tc.maxRecords); got != tc.want {
				t.Fatalf("readLimit(%d bytes, %d records, max %d) = %d, want %d", tc.size, tc.n, tc.maxRecords, got, tc.want)
			}
		})
	}

	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		for range 1100 {
			s.put(id, "k", bytes.Repeat([]byte("L"), 4<<10))
		}
		for range 3000 {
			s.put(id, "k", bytes.Repeat([]byte("s"), 100))
		}
		api := s.api()
		pl := newProcLog(true)
		c := newTestConsumer(t, api, memory.New(), pl)
		stop := started(t, c)
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if got := len(pl.records(id)); got != 4100 {
			t.Fatalf("%d records delivered, want 4100", got)
		}
		var limits []int32
		for _, c := range api.callsOf("GetRecords", id) {
			limits = append(limits, aws.ToInt32(c.in.(*kinesis.GetRecordsInput).Limit))
		}
		// 1000 before any size is known, all 4 KiB records; then 256 at a time (1 MiB); after
		// the first response of small records only, the maximum.
		if len(limits) < 3 || limits[0] != firstLimit || limits[1] != 256 {
			t.Fatalf("GetRecords limits %v, want %d, then 256 after 4 KiB records", limits, firstLimit)
		}
		if last := limits[len(limits)-1]; last != DefaultMaxRecords {
			t.Fatalf("GetRecords limits %v: after small records %d, want %d", limits, last, DefaultMaxRecords)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

package consumer

import (
	"bytes"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kinlog/kinlog/checkpoint/memory"
)

// TestReadPacingStaysWithin2MBps reads a shard of 24 records of 512 KiB, 4 per GetRecords
// call (2 MiB a response): a shard serves reads at ReadBytesPerSecond, so each call after a
// full response must wait a second (2 MiB at 2 MiB/s), not the 200 ms minimum. The small
// records read afterwards go at the minimum interval again.
func TestReadPacingStaysWithin2MBps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStream()
		id := s.addShards(1)[0]
		big := bytes.Repeat([]byte("x"), 512<<10)
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
		const perResponse = 4 * (512 << 10)
		want := time.Duration(perResponse) * time.Second / ReadBytesPerSecond
		for i := 1; i < 6; i++ { // calls 0..5 each returned 2 MiB
			if gap := calls[i].at.Sub(calls[i-1].at); gap < want {
				t.Fatalf("GetRecords %d came %v after a 2 MiB response; the shard's 2 MB/s needs %v", i, gap, want)
			}
		}
		// Call 6 returned the small records: the next one waits the minimum interval only.
		if gap := calls[7].at.Sub(calls[6].at); gap >= want || gap < MinGetRecordsInterval {
			t.Fatalf("after a small response the next GetRecords came %v later, want the %v minimum", gap, MinGetRecordsInterval)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

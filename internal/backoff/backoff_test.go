package backoff

import (
	"testing"
	"time"
)

func TestBackoffDoublesWithinJitterUpToMax(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for i, d := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		d *= time.Millisecond
		for range 50 {
			c := b
			got := c.Next()
			if got < d/2 || got >= d {
				t.Fatalf("step %d: wait %v outside [%v, %v)", i, got, d/2, d)
			}
		}
		b.Next()
	}
	b.Reset()
	if got := b.Next(); got < 50*time.Millisecond || got >= 100*time.Millisecond {
		t.Fatalf("after Reset: %v, want within [50ms, 100ms)", got)
	}
	var zero Backoff
	if got := zero.Next(); got != 0 {
		t.Fatalf("zero Backoff waits %v", got)
	}
}

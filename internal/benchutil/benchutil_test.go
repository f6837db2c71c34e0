package benchutil

import "testing"

// TestMeasures: a process that did work has used CPU and holds memory.
func TestMeasures(t *testing.T) {
	before := CPUTime()
	x := 0
	for i := range 50_000_000 {
		x ^= i
	}
	_ = x
	if after := CPUTime(); after <= before {
		t.Errorf("CPU time %v after a busy loop, was %v", after, before)
	}
	if PeakRSS() <= 0 {
		t.Error("peak RSS not read from /proc/self/status")
	}
}

package deploytest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests: TestDashboardMetricsExist starts a
// real producer to read its metric descriptions and must close it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

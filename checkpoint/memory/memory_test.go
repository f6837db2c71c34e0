package memory_test

import (
	"testing"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/checkpoint/checkpointtest"
	"github.com/kinlog/kinlog/checkpoint/memory"
)

func TestStore(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) checkpoint.Store { return memory.New() })
}

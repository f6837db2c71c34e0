package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kinlog/kinlog/internal/testenv"
)

// TestProduceStopsOnSIGTERM: `kinlog produce` reading a pipe that stays open (tail -F)
// stops on SIGTERM, delivers what it read and exits 0. It used to block in the read.
func TestProduceStopsOnSIGTERM(t *testing.T) {
	kc := testenv.KinesisClient(t)
	stream := testenv.Name(t, "produce-term")
	testenv.CreateStream(t, kc, stream, 1)
	cmd := exec.Command(kinlogBin, "produce", "--stream", stream, "--progress", "100ms")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stderr, stdout syncBuffer
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	for i := range 100 {
		fmt.Fprintf(stdin, `{"msg":"line %d"}`+"\n", i)
	}
	// The lines reach the stream while stdin stays open.
	waitFor(t, func() (string, bool) {
		n := 0
		byShard, _ := testenv.ReadStream(t, kc, stream)
		for _, recs := range byShard {
			n += len(recs)
		}
		return "", n == 100
	})
	waitFor(t, func() (string, bool) { return "", strings.Contains(stderr.String(), "kinlog produce: 100 sent (") })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("produce after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("produce did not exit within 20 s of SIGTERM with stdin open\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped by a signal") || !strings.Contains(stdout.String(), "sent 100 records") {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
}

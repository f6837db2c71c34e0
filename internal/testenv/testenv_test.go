package testenv

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// recordingTB records how Require ended the test. Skip and Fatal stop the caller the way
// the testing package does (the goroutine does not continue), here by panicking.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

type stopped struct{}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skip(args ...any) {
	r.skipped = fmt.Sprint(args...)
	panic(stopped{})
}
func (r *recordingTB) Fatal(args ...any) {
	r.failed = fmt.Sprint(args...)
	panic(stopped{})
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func require(tb *recordingTB, s Service) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopped); !ok {
				panic(v)
			}
		}
	}()
	Require(tb, s)
}

func TestRequire(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	live := "http://" + ln.Addr().String()
	// A port that was just free: listen, note it, close.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln2.Addr().String()
	ln2.Close()

	tests := []struct {
		name, ci, endpoint string
		wantSkip, wantFail string
	}{
		{name: "unset locally skips", ci: "", endpoint: "", wantSkip: "make test"},
		{name: "unset in CI fails", ci: "true", endpoint: "", wantFail: "CI=true"},
		{name: "set and reachable passes", ci: "true", endpoint: live},
		{name: "set but unreachable fails locally", ci: "", endpoint: dead, wantFail: "not reachable"},
		{name: "set but unreachable fails in CI", ci: "true", endpoint: dead, wantFail: "not reachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			t.Setenv(string(S3), tt.endpoint)
			tb := &recordingTB{}
			require(tb, S3)
			if tt.wantSkip == "" && tb.skipped != "" {
				t.Errorf("skipped: %s", tb.skipped)
			}
			if tt.wantSkip != "" && !strings.Contains(tb.skipped, tt.wantSkip) {
				t.Errorf("skip message %q, want one containing %q", tb.skipped, tt.wantSkip)
			}
			if tt.wantFail == "" && tb.failed != "" {
				t.Errorf("failed: %s", tb.failed)
			}
			if tt.wantFail != "" && !strings.Contains(tb.failed, tt.wantFail) {
				t.Errorf("failure message %q, want one containing %q", tb.failed, tt.wantFail)
			}
		})
	}
}

package main

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kinlog/kinlog/internal/testenv"
)

// TestAWSErrorHints: AWS errors that have a known fix get a hint line after the error. The
// errors come from the real SDK against the local stack (a missing table and bucket), a
// closed port, and an empty credential chain.
func TestAWSErrorHints(t *testing.T) {
	testenv.Require(t, testenv.DynamoDB, testenv.S3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	run := func(env []string, args ...string) string {
		cmd := exec.Command(kinlogBin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	withoutCreds := func() []string {
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") && !strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY=") && !strings.HasPrefix(kv, "AWS_PROFILE=") {
				env = append(env, kv)
			}
		}
		return append(env, "AWS_EC2_METADATA_DISABLED=true", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_CONFIG_FILE=/nonexistent")
	}
	for _, tt := range []struct {
		name string
		out  string
		want string
	}{
		{"missing table", run(nil, "checkpoint", "list", "--table", testenv.Name(t, "nope")), "hint: a stream or table named in the configuration does not exist"},
		{"missing bucket", run(nil, "query", "--bucket", testenv.Name(t, "nope"), "--s3-path-style"), "hint: the bucket does not exist"},
		{"closed endpoint", run([]string{"AWS_ENDPOINT_URL_DYNAMODB=http://" + closed}, "checkpoint", "list", "--table", "some-table"), "hint: nothing answers at " + closed},
	} {
		if !strings.Contains(tt.out, tt.want) {
			t.Errorf("%s: output lacks %q:\n%s", tt.name, tt.want, tt.out)
		}
	}
	cmd := exec.Command(kinlogBin, "checkpoint", "list", "--table", "some-table")
	cmd.Env = withoutCreds()
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "hint: no AWS credentials") {
		t.Errorf("no credentials: output lacks the hint:\n%s", out)
	}
}

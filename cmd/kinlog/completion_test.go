package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletion: the bash script, sourced in a real bash, completes commands and a
// command's flags by asking the binary; zsh and fish scripts are printed.
func TestCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := `source <(kinlog completion bash)
COMP_WORDS=(kinlog ag); COMP_CWORD=1; _kinlog; echo "1:${COMPREPLY[*]}"
COMP_WORDS=(kinlog agent --c); COMP_CWORD=2; _kinlog; echo "2:${COMPREPLY[*]}"
COMP_WORDS=(kinlog checkpoint ""); COMP_CWORD=2; _kinlog; echo "3:${COMPREPLY[*]}"
`
	cmd := exec.Command(bash, "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(kinlogBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	for _, want := range []string{"1:agent", "2:--check --config", "3:list reset import-vmware deregister-consumer"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("completion output lacks %q:\n%s", want, out)
		}
	}
	for _, sh := range []string{"zsh", "fish"} {
		out, _, code := runKinlog(t, context.Background(), "", "completion", sh)
		if code != 0 || !strings.Contains(out, "kinlog __complete") {
			t.Errorf("completion %s: exit %d %q", sh, code, out)
		}
	}
	if _, stderr, code := runKinlog(t, context.Background(), "", "completion", "tcsh"); code != 2 || !strings.Contains(stderr, "bash, zsh, fish") {
		t.Errorf("completion tcsh: exit %d %q", code, stderr)
	}
}

// TestAthenaDDLReadsWorkerConfig: athena-ddl takes bucket, prefix and encoding from the
// worker's config (a custom prefix had to be retyped); a flag still wins.
func TestAthenaDDLReadsWorkerConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kinlog.yaml")
	if err := os.WriteFile(p, []byte("stream: s\nsink:\n  s3:\n    bucket: my-archive\n    prefix: \"custom/dt=!{timestamp:yyyy-MM-dd}/\"\n    encoding: parquet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runKinlog(t, context.Background(), "", "athena-ddl", "--config", p)
	if code != 0 || !strings.Contains(out, "LOCATION 's3://my-archive/custom/'") || !strings.Contains(out, "STORED AS PARQUET") {
		t.Fatalf("exit %d %s\n%s", code, stderr, out)
	}
	out, _, _ = runKinlog(t, context.Background(), "", "athena-ddl", "--config", p, "--bucket", "other")
	if !strings.Contains(out, "LOCATION 's3://other/custom/'") {
		t.Errorf("--bucket did not win over the config:\n%s", out)
	}
}

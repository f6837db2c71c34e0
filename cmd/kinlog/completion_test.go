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
	for _, want := range []string{"1:agent", "2:--check --config", "3:list reset import-vmware"} {
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

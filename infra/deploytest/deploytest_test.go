package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// repoRoot is the repository root, found from this file's location so the tests work from
// any working directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("locating the test file")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s has no go.mod: %v", root, err)
	}
	return root
}

func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problems collects the findings of one check.
type problems []error

func (p *problems) addf(format string, args ...any) {
	*p = append(*p, fmt.Errorf(format, args...))
}

// requireNone fails the test with every problem found.
func requireNone(t testing.TB, what string, ps problems) {
	t.Helper()
	for _, p := range ps {
		t.Errorf("%s: %v", what, p)
	}
}

// requireProblem fails the test unless some problem mentions want.
func requireProblem(t testing.TB, ps problems, want string) {
	t.Helper()
	for _, p := range ps {
		if strings.Contains(p.Error(), want) {
			return
		}
	}
	t.Errorf("no problem mentions %q; got %v", want, ps)
}

func osWriteFile(name, src string) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return os.WriteFile(name, []byte(src), 0o644)
}

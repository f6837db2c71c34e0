package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:3: boom\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestB"}`,
		`{"Action":"skip","Package":"p","Test":"TestC"}`,
		`{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}`,
		`{"Action":"fail","Package":"p"}`,
		`# p [build failed]`,
	}, "\n")
	var out bytes.Buffer
	code := run(strings.NewReader(in), &out)
	want := "    b_test.go:3: boom\nFAIL\tp\t0.01s\n# p [build failed]\n1 passed, 1 failed, 1 skipped\n"
	if code != 1 || out.String() != want {
		t.Fatalf("exit %d, output\n%q\nwant\n%q", code, out.String(), want)
	}
	out.Reset()
	if code := run(strings.NewReader(`{"Action":"pass","Package":"p","Test":"TestA"}`+"\n"+`{"Action":"pass","Package":"p"}`), &out); code != 0 || out.String() != "1 passed, 0 failed, 0 skipped\n" {
		t.Fatalf("all passing: exit %d, %q", code, out.String())
	}
}

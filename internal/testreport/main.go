// Command testreport reads `go test -json` on stdin and prints what plain `go test` prints —
// each package's ok/FAIL line and the output of failing tests — followed by the number of
// tests that passed, failed and were skipped, so a CI log shows how many tests ran without
// the noise of -v. It exits 1 if any test or package failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() { os.Exit(run(os.Stdin, os.Stdout)) }

func run(in io.Reader, out io.Writer) int {
	type key struct{ pkg, test string }
	logs := map[key][]string{}
	var passed, failed, skipped int
	pkgFailed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not JSON: build errors and the like come through as plain text.
			fmt.Fprintln(out, sc.Text())
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			if e.Test == "" {
				fmt.Fprint(out, e.Output)
			} else {
				logs[k] = append(logs[k], e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action == "fail" {
					pkgFailed = true
				}
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				failed++
				for _, l := range logs[k] {
					fmt.Fprint(out, l)
				}
			case "skip":
				skipped++
			}
			delete(logs, k)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testreport:", err)
		return 1
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed {
		return 1
	}
	return 0
}

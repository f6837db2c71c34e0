package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
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

// duckDB calls DuckDB the way require calls Require, and reports whether it returned a query
// function.
func duckDB(tb *recordingTB) (returned bool) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopped); !ok {
				panic(v)
			}
		}
	}()
	return DuckDB(tb) != nil
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

// writeScript writes an executable shell script standing in for the DuckDB query script.
func writeScript(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "duckdb-query")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDuckDBGate(t *testing.T) {
	exe := writeScript(t, "exit 0\n", 0o755)
	notExe := writeScript(t, "exit 0\n", 0o644)
	tests := []struct {
		name, ci, script   string
		wantSkip, wantFail string
	}{
		{name: "unset locally skips", ci: "", script: "", wantSkip: "make test"},
		{name: "unset in CI fails", ci: "true", script: "", wantFail: "CI=true"},
		{name: "executable passes", ci: "true", script: exe},
		{name: "missing file fails locally", ci: "", script: filepath.Join(t.TempDir(), "nope"), wantFail: "unusable"},
		{name: "not executable fails", ci: "", script: notExe, wantFail: "not an executable"},
		{name: "directory fails", ci: "", script: t.TempDir(), wantFail: "not an executable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			t.Setenv(DuckDBVar, tt.script)
			tb := &recordingTB{}
			returned := duckDB(tb)
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
			if want := tt.wantSkip == "" && tt.wantFail == ""; returned != want {
				t.Errorf("returned a query function: %v, want %v", returned, want)
			}
		})
	}
}

// TestQueryDuckDB checks the Go side of the script's protocol with stand-in scripts: SQL on
// stdin, JSON lines out with exact integers, DuckDB's message on failure.
func TestQueryDuckDB(t *testing.T) {
	ctx := context.Background()
	t.Run("rows", func(t *testing.T) {
		got := filepath.Join(t.TempDir(), "sql")
		script := writeScript(t, `cat >"`+got+`"
printf '%s\n' '{"n":18446744073709551615,"s":"a\"b","t":null}' '{"n":-1,"s":"","t":[1,{"k":2.5}]}'
`, 0o755)
		const sql = "SELECT 'it''s' AS s;\nSELECT 2"
		rows, err := QueryDuckDB(ctx, script, sql)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(got); err != nil || string(b) != sql {
			t.Fatalf("script read %q (%v) on stdin, want %q", b, err, sql)
		}
		if len(rows) != 2 {
			t.Fatalf("%d rows, want 2: %v", len(rows), rows)
		}
		if n := rows[0]["n"]; n != json.Number("18446744073709551615") {
			t.Errorf("row 0 n = %#v, want the exact json.Number", n)
		}
		if rows[0]["s"] != `a"b` || rows[0]["t"] != nil {
			t.Errorf("row 0 = %v", rows[0])
		}
		if fmt.Sprint(rows[1]["t"]) != "[1 map[k:2.5]]" || rows[1]["n"] != json.Number("-1") {
			t.Errorf("row 1 = %v", rows[1])
		}
	})
	t.Run("no rows", func(t *testing.T) {
		rows, err := QueryDuckDB(ctx, writeScript(t, "cat >/dev/null\n", 0o755), "SELECT 1 WHERE false")
		if err != nil || len(rows) != 0 {
			t.Fatalf("rows %v, err %v; want none, nil", rows, err)
		}
	})
	t.Run("failure carries stderr", func(t *testing.T) {
		script := writeScript(t, "cat >/dev/null\necho 'duckdb-query: Catalog Error: Table with name nope does not exist!' >&2\nexit 1\n", 0o755)
		_, err := QueryDuckDB(ctx, script, "SELECT * FROM nope")
		var de *DuckDBError
		if !errors.As(err, &de) {
			t.Fatalf("error %v (%T), want a *DuckDBError", err, err)
		}
		if !strings.Contains(de.Stderr, "Table with name nope") || !strings.Contains(err.Error(), "SELECT * FROM nope") {
			t.Errorf("error %q does not carry the query and DuckDB's message", err)
		}
	})
	for name, out := range map[string]string{
		"output not JSON":   `echo 'not json'`,
		"row not an object": `echo '[1,2]'`,
		"row null":          `echo 'null'`,
		"truncated row":     `printf '{"a":'`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := QueryDuckDB(ctx, writeScript(t, "cat >/dev/null\n"+out+"\n", 0o755), "SELECT 1")
			var de *DuckDBError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), "decoding row 0") {
				t.Fatalf("error %v, want a *DuckDBError decoding row 0", err)
			}
		})
	}
	t.Run("context ends the query", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := QueryDuckDB(ctx, writeScript(t, "cat >/dev/null\n", 0o755), "SELECT 1")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	})
}

// TestDuckDBScript runs the real script (infra/local/duckdb-query.js) and checks how it
// renders DuckDB's types.
func TestDuckDBScript(t *testing.T) {
	query := DuckDB(t)
	rows := query(t, `SET TimeZone = 'America/New_York';
SELECT 9223372036854775807::BIGINT AS big, 18446744073709551615::UBIGINT AS ubig,
  -170141183460469231731687303715884105727::HUGEINT AS huge, 7::INTEGER AS i, 1.5::DOUBLE AS d,
  'NaN'::DOUBLE AS nan, true AS b, NULL AS n, 'é"' || chr(10) || '☃' AS s,
  TIMESTAMPTZ '2026-03-14 09:58:01.123456+00' AS tz, TIMESTAMPTZ '1969-12-31 23:59:59.5+00' AS before_epoch,
  TIMESTAMP '2026-03-14 09:58:01.5' AS naive, make_timestamp(1773482281123456)::TIMESTAMP_MS AS ms,
  '2026-03-14 09:58:01.123456789'::TIMESTAMP_NS AS ns, 'infinity'::TIMESTAMPTZ AS inf,
  [1::BIGINT, NULL] AS l, {'x': 2::BIGINT, 'y': [TIMESTAMPTZ '2026-03-14 00:00:00+00']} AS st,
  3.25::DECIMAL(5,2) AS dec5, DATE '2026-03-14' AS dt`)
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	want := map[string]any{
		"big": json.Number("9223372036854775807"), "ubig": json.Number("18446744073709551615"),
		"huge": json.Number("-170141183460469231731687303715884105727"), "i": json.Number("7"),
		"d": json.Number("1.5"), "nan": "NaN", "b": true, "n": nil, "s": "é\"\n☃",
		"tz": "2026-03-14T09:58:01.123456Z", "before_epoch": "1969-12-31T23:59:59.500000Z",
		"naive": "2026-03-14T09:58:01.500000", "ms": "2026-03-14T09:58:01.123000",
		"ns": "2026-03-14T09:58:01.123456789", "inf": "infinity",
		"l": []any{json.Number("1"), nil}, "st": map[string]any{"x": json.Number("2"), "y": []any{"2026-03-14T00:00:00.000000Z"}},
		"dec5": "3.25", "dt": "2026-03-14",
	}
	got := rows[0]
	for k, w := range want {
		if fmt.Sprintf("%#v", got[k]) != fmt.Sprintf("%#v", w) {
			t.Errorf("%s = %#v, want %#v", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("row has %d columns, want %d: %v", len(got), len(want), got)
	}
	if rows := query(t, "SELECT range AS r FROM range(5000)"); len(rows) != 5000 || rows[4999]["r"] != json.Number("4999") {
		t.Errorf("range(5000): %d rows, last %v", len(rows), rows[len(rows)-1])
	}

	_, err := QueryDuckDB(context.Background(), os.Getenv(DuckDBVar), "SELECT * FROM no_such_table")
	var de *DuckDBError
	if !errors.As(err, &de) || !strings.Contains(de.Stderr, "no_such_table") || !strings.Contains(de.Stderr, "Catalog Error") {
		t.Errorf("failing query: error %v, want a *DuckDBError with DuckDB's Catalog Error", err)
	}
	_, err = QueryDuckDB(context.Background(), os.Getenv(DuckDBVar), "SELECT 1 AS a, 2 AS a")
	if !errors.As(err, &de) || !strings.Contains(de.Stderr, "more than once") {
		t.Errorf("duplicate column names: error %v, want the script to refuse them", err)
	}
}

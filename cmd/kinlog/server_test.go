package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestProbes(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "kinlog_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	readyErr := errors.New("lease table unreachable")
	p := &probes{
		ready:    func(context.Context) error { return readyErr },
		status:   func() any { return map[string]int{"leases": 2} },
		gatherer: reg,
	}
	srv := httptest.NewServer(p.handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "lease table unreachable") {
		t.Errorf("/readyz while not ready = %d %q", code, body)
	}
	readyErr = nil
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "kinlog_test_total 3") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, body := get("/status"); code != 200 || !strings.Contains(body, `"leases": 2`) {
		t.Errorf("/status = %d %q", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Errorf("/nope = %d", code)
	}
}

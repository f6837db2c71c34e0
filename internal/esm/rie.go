package esm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kinlog/kinlog/internal/testenv"
)

// RIEVar names the variable that holds the path of the aws-lambda-rie binary, which
// `infra/local/stack env` exports.
const RIEVar = "KINLOG_LAMBDA_RIE"

// InvokePath is the RIE's invoke endpoint (the Lambda Invoke API's path).
const InvokePath = "/2015-03-31/functions/function/invocations"

// TimeoutErrorType is the ErrorType of a [Result] whose invocation ran out of
// AWS_LAMBDA_FUNCTION_TIMEOUT: the RIE answers 200 with the plain text "Task timed out after
// N.00 seconds" and SIGKILLs the runtime; the next invocation initialises a new one. Lambda
// reports a timeout under this errorType.
const TimeoutErrorType = "Sandbox.Timedout"

// ExitErrorType is the ErrorType of a [Result] whose runtime exited during the invocation or
// its init: the RIE answers 502 with no body and logs Runtime.ExitError.
const ExitErrorType = "Runtime.ExitError"

// Result is what one invocation returned.
type Result struct {
	StatusCode int
	Body       []byte
	// FunctionError is a failed invocation as an event source mapping sees it: an error
	// body, a timeout or an exited runtime. The RIE never sets X-Amz-Function-Error: an error
	// is a body that is a JSON object with errorType or errorMessage and no batchItemFailures.
	FunctionError bool
	Timeout       bool // the function timed out (ErrorType TimeoutErrorType)
	ErrorType     string
	ErrorMessage  string
	Duration      time.Duration // the HTTP round trip

	// From the RIE's log, when it printed them (zero otherwise).
	FunctionDuration time.Duration // REPORT ... Duration: the function's run time
	InitDuration     time.Duration // INIT REPORT durationMs of an init done for this invocation
	// PeakRSS is the runtime process's peak resident set (VmHWM, bytes) after the invocation
	// (the RIE's "Max Memory Used" only repeats the memory size); zero if the runtime is gone.
	PeakRSS int64
}

// Invoker invokes one function with one payload. An error means there was no invocation or
// its outcome is unknown (the ESM resends it without counting an attempt); a failure of the
// function is a Result with FunctionError set.
type Invoker interface {
	Invoke(ctx context.Context, payload []byte) (Result, error)
}

// RIE is one AWS Lambda Runtime Interface Emulator process running a bootstrap binary: one
// execution environment. Its invocations never overlap (two overlapping ones crash it).
type RIE struct {
	Addr    string // the emulator's address, 127.0.0.1:port
	LogPath string // the RIE's stdout and stderr, the function's logs included

	cmd    *exec.Cmd
	client *http.Client
	sem    chan struct{} // one invocation at a time
	logged chan struct{} // closed when the RIE's output has ended

	mu          sync.Mutex
	waiting     map[string]chan report // by request id
	pendingInit time.Duration          // inits logged since the last REPORT
}

type report struct{ duration, init time.Duration }

// rieDefaults are what Lambda sets for a function, with a 30 s timeout and Lambda's default
// memory size; StartRIE adds those env leaves unset.
var rieDefaults = []string{
	"AWS_LAMBDA_FUNCTION_TIMEOUT=30", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
	"AWS_LAMBDA_FUNCTION_NAME=function", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
	"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1", "TZ=:UTC", "PATH=/usr/local/bin:/usr/bin:/bin",
}

// StartRIE starts $KINLOG_LAMBDA_RIE on 127.0.0.1 (free ports) with bootstrap as the function,
// waits until it accepts connections, and kills it and its runtime (by pid) when t ends. Its
// environment, which the function sees too, is env plus rieDefaults for the variables env
// does not set. Its output goes to LogPath, whose tail is logged if t failed. Without
// KINLOG_LAMBDA_RIE the test is skipped, or fails under CI=true ([RequireRIE]).
func StartRIE(t testing.TB, bootstrap string, env []string) *RIE {
	t.Helper()
	bin := RequireRIE(t)
	set := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	env = slices.Clone(env)
	for _, kv := range rieDefaults {
		if k, _, _ := strings.Cut(kv, "="); !set[k] {
			env = append(env, kv)
		}
	}
	dir := t.TempDir()
	var err error
	for try := range 3 { // a free port can be taken before the RIE binds it: try others
		var r *RIE
		if r, err = startRIE(bin, bootstrap, env, filepath.Join(dir, fmt.Sprintf("rie-%d.log", try))); err == nil {
			t.Cleanup(func() {
				r.stop()
				if t.Failed() {
					t.Logf("RIE %s log %s, last lines:\n%s", r.Addr, r.LogPath, tail(r.LogPath, 40))
				}
			})
			return r
		}
	}
	t.Fatalf("starting the RIE: %v", err)
	return nil
}

// RequireRIE returns $KINLOG_LAMBDA_RIE, or skips the test without it (fails it under CI=true).
func RequireRIE(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(RIEVar)
	if bin == "" {
		msg := "test needs " + RIEVar + " (aws-lambda-rie, installed by the local stack); `make test` sets it"
		if testenv.InCI() {
			t.Fatal(msg + " — CI=true, so a missing variable is a failure")
		}
		t.Skip(msg)
	}
	return bin
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startRIE(bin, bootstrap string, env []string, logPath string) (*RIE, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd := exec.Command(bin, "--runtime-interface-emulator-address", addr, "--runtime-api-address", apiAddr, bootstrap)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, filepath.Dir(bootstrap), pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close() // the RIE and its runtime hold the write end
	if err != nil {
		pr.Close()
		logFile.Close()
		return nil, err
	}
	r := &RIE{Addr: addr, LogPath: logPath, cmd: cmd, client: &http.Client{Transport: &http.Transport{}},
		sem: make(chan struct{}, 1), logged: make(chan struct{}), waiting: map[string]chan report{}}
	go r.readLog(pr, logFile)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return r, nil
		}
		select {
		case <-r.logged:
			r.stop()
			return nil, fmt.Errorf("aws-lambda-rie exited before it listened on %s: %s", addr, tail(logPath, 10))
		case <-time.After(20 * time.Millisecond): // readiness poll interval
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("aws-lambda-rie not listening on %s after 10s", addr)
		}
	}
}

var (
	reReport = regexp.MustCompile(`^REPORT RequestId: (\S+)\t(?:.*\t)?Duration: ([0-9.]+) ms`)
	reInit   = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
)

func millis(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Millisecond))
}

// readLog copies the RIE's output to the log file and hands REPORT lines (with the INIT
// REPORTs logged since the previous one) to the invocations waiting for them.
func (r *RIE) readLog(pr, logFile *os.File) {
	defer close(r.logged)
	defer logFile.Close()
	defer pr.Close()
	sc := bufio.NewScanner(pr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(logFile, line)
		r.mu.Lock()
		if m := reInit.FindStringSubmatch(line); m != nil {
			r.pendingInit += millis(m[1])
		} else if m := reReport.FindStringSubmatch(line); m != nil {
			select {
			case r.waiting[m[1]] <- report{millis(m[2]), r.pendingInit}: // nil (no waiter) blocks: skipped
			default:
			}
			r.pendingInit = 0
		}
		r.mu.Unlock()
	}
	_, _ = io.Copy(logFile, pr)
}

// Invoke posts payload to the RIE and classifies the answer. Invocations are serialised;
// when ctx ends first, Invoke returns ctx's error and the invocation finishes in the
// background (the next one waits for it).
func (r *RIE) Invoke(ctx context.Context, payload []byte) (Result, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	type answer struct {
		res Result
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		defer func() { <-r.sem }()
		res, err := r.invoke(payload)
		ch <- answer{res, err}
	}()
	select {
	case a := <-ch:
		return a.res, a.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

func (r *RIE) invoke(payload []byte) (Result, error) {
	id, reported := newUUID(), make(chan report, 1)
	r.mu.Lock()
	r.waiting[id] = reported
	r.mu.Unlock()
	defer func() { r.mu.Lock(); delete(r.waiting, id); r.mu.Unlock() }()
	req, err := http.NewRequest(http.MethodPost, "http://"+r.Addr+InvokePath, bytes.NewReader(payload))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("X-Amzn-RequestId", id) // the RIE names its REPORT line after it
	start := time.Now()
	resp, err := r.client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("invoking the RIE at %s: %w", r.Addr, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return Result{}, fmt.Errorf("reading the RIE's answer: %w", err)
	}
	res := Result{StatusCode: resp.StatusCode, Body: body, Duration: time.Since(start), PeakRSS: r.peakRSS()}
	if err := classify(&res); err != nil {
		return res, err
	}
	if res.StatusCode == http.StatusOK { // the RIE printed REPORT before it answered
		select {
		case rep := <-reported:
			res.FunctionDuration, res.InitDuration = rep.duration, rep.init
		case <-r.logged:
		case <-time.After(2 * time.Second):
		}
	}
	return res, nil
}

// classify sets the function-error fields of res, or returns an error for an answer that is
// no invocation outcome (the RIE refused or failed the request).
func classify(res *Result) error {
	switch {
	case res.StatusCode == http.StatusBadGateway: // the runtime exited
		res.FunctionError, res.ErrorType, res.ErrorMessage = true, ExitErrorType, "the runtime exited"
	case res.StatusCode != http.StatusOK:
		return fmt.Errorf("the RIE answered %d: %q", res.StatusCode, res.Body)
	case bytes.HasPrefix(res.Body, []byte("Task timed out after")):
		res.FunctionError, res.Timeout, res.ErrorType, res.ErrorMessage = true, true, TimeoutErrorType, string(res.Body)
		return nil
	}
	var e struct { // field names match case-insensitively
		ErrorType, ErrorMessage *string
		BatchItemFailures       json.RawMessage
	}
	if json.Unmarshal(res.Body, &e) == nil && (e.ErrorType != nil || e.ErrorMessage != nil) && e.BatchItemFailures == nil {
		res.FunctionError = true
		res.ErrorType, res.ErrorMessage = cmp.Or(deref(e.ErrorType), res.ErrorType), cmp.Or(deref(e.ErrorMessage), res.ErrorMessage)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// children returns the pids of the RIE's child processes: the runtime, which the RIE starts
// in a process group of its own.
func (r *RIE) children() []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", r.cmd.Process.Pid))
	var pids []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, p := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(p); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func (r *RIE) peakRSS() int64 {
	var peak int64
	for _, pid := range r.children() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				peak = max(peak, kb*1024)
			}
		}
	}
	return peak
}

// stop kills the RIE and its runtime, by pid and process group, and waits for them.
func (r *RIE) stop() {
	kids := r.children()
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(-k, syscall.SIGKILL)
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	_ = r.cmd.Wait()
	select {
	case <-r.logged: // every writer of the pipe is gone
	case <-time.After(5 * time.Second):
	}
	r.client.CloseIdleConnections()
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

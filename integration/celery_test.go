package integration

import (
	"bufio"
	"bytes"
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
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kinlog/kinlog/internal/testenv"
	"github.com/kinlog/kinlog/sinks/encode"
)

// The workload of TestCeleryAgent: log_lines tasks of celeryLines lines each, every
// celeryFailEvery-th failing its first attempt (Celery retries it and the retry logs its
// lines again), and celeryRecords tasks sending a record with boto3 put_record.
const (
	celeryTasks     = 60
	celeryLines     = 50
	celeryFailEvery = 10
	celeryRecords   = 30
	// celeryPause is the seconds between a task's lines: about 10 s of logging over the 4
	// prefork processes, long enough to rotate the file twice and kill the agent meanwhile.
	celeryPause = "0.012"
)

// celeryAptLine installs what TestCeleryAgent needs on Debian (bookworm).
const celeryAptLine = "apt-get update && apt-get install -y --no-install-recommends python3-celery python3-kombu python3-redis redis-server python3-boto3 logrotate"

// celeryLevels is tasks.level_of: the level of line i is celeryLevels[i%4].
var celeryLevels = [4]string{"ERROR", "INFO", "INFO", "WARNING"}

// TestCeleryAgent reproduces the app kinlog was made for, with real parts: a Celery worker
// (Debian's python3-celery, prefork pool of 4, Redis broker) whose tasks log through the
// standard logging module to a JSON-lines file and to a syslog socket, both read by
// `kinlog agent` running the example's agent.yaml, plus the app's own boto3 put_record
// task. During the run, real logrotate rotates the file by rename and later by
// copytruncate, and the agent is SIGKILLed and restarted on its state directory. Then
// `kinlog consume` archives the stream to S3, and the test reads the archive back: every
// line written to the file is there with its content; every syslog line is there except
// those the sender reported it could not send (and at most the datagrams the kernel held
// for the killed agent); every put_record record is there; duplicates are counted and
// bounded by the agent's own count of lines it sent again after the crash and by the
// lines after its stored positions; `kinlog query` answers per task and per level agree.
//
// It needs the local stack and Debian's python3-celery, python3-redis, redis-server,
// python3-boto3 and logrotate (see requireCeleryTools); KINLOG_CELERY_KEEP=<dir> keeps a
// failed run's files.
func TestCeleryAgent(t *testing.T) {
	kc := testenv.KinesisClient(t)
	testenv.Require(t, testenv.DynamoDB)
	sc := testenv.S3Client(t)
	tools := requireCeleryTools(t)
	started := time.Now()

	example, err := filepath.Abs(filepath.Join("..", "examples", "celery"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kinlog := filepath.Join(dir, "kinlog")
	if out, err := exec.Command("go", "build", "-race", "-o", kinlog, "github.com/kinlog/kinlog/cmd/kinlog").CombinedOutput(); err != nil {
		t.Fatalf("building kinlog: %v\n%s", err, out)
	}
	t.Logf("built kinlog in %s", time.Since(started).Round(100*time.Millisecond))

	stream, bucket, table := testenv.Name(t, "celery"), testenv.Name(t, "celery"), testenv.Name(t, "celery-leases")
	testenv.CreateStream(t, kc, stream, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emptyBucket(t, sc, bucket) })
	t.Cleanup(func() {
		_, _ = testenv.DynamoDBClient(t).DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})

	logDir := filepath.Join(dir, "log") // the example's /var/log/celery
	stateDir := filepath.Join(dir, "agent-state")
	sock := filepath.Join(dir, "syslog.sock")
	undelivered := filepath.Join(dir, "undelivered.jsonl")
	for _, d := range []string{logDir, stateDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	procs := &celeryProcs{t: t, dir: dir}
	t.Cleanup(procs.cleanup)
	if keep := os.Getenv("KINLOG_CELERY_KEEP"); keep != "" {
		// Debugging: a failed run's files (logs, rotated copies, the agent's state and
		// output) are copied to $KINLOG_CELERY_KEEP/<test name>.
		t.Cleanup(func() {
			if t.Failed() {
				dst := filepath.Join(keep, t.Name())
				_ = os.RemoveAll(dst)
				_ = os.MkdirAll(keep, 0o755)
				if out, err := exec.Command("cp", "-a", dir, dst).CombinedOutput(); err != nil {
					t.Logf("keeping %s: %v %s", dir, err, out)
				} else {
					t.Logf("files kept in %s", dst)
				}
			}
		})
	}

	// The example's logrotate.conf must stay valid (a dry run on its stanzas, paths moved).
	celeryCheckLogrotateExample(t, tools, example, dir)

	// Redis, on a free port, for the broker and the result backend.
	redisPort := celeryFreePort(t)
	procs.start("redis", dir, nil, tools.redisServer, "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if !poll(15*time.Second, 50*time.Millisecond, func() bool { return redisPing(redisPort) }) {
		t.Fatalf("redis-server on port %d did not answer PING", redisPort)
	}

	// The agent, with the example's agent.yaml: its paths moved into the test's directory.
	httpAddr := fmt.Sprintf("127.0.0.1:%d", celeryFreePort(t))
	agentConfig := filepath.Join(dir, "agent.yaml")
	celeryAgentConfig(t, example, agentConfig, map[string]string{
		"stream: logs":            "stream: " + stream,
		"/var/lib/kinlog-agent":   stateDir,
		"127.0.0.1:8081":          httpAddr,
		"/var/log/celery":         logDir,
		"/run/kinlog/syslog.sock": sock,
	})
	// The agent and consume read KINLOG_<KEY> variables as config; the stack's own
	// (KINLOG_STACK_DIR, ...) must not reach them.
	kinlogEnv := celeryEnvWithout("KINLOG_")
	startAgent := func(run int) *celeryProc {
		p := procs.start(fmt.Sprintf("agent-%d", run), dir, kinlogEnv, kinlog, "agent", "--config", agentConfig, "--set", "log.format=text")
		if !poll(30*time.Second, 50*time.Millisecond, func() bool { return p.exited() || httpOK("http://"+httpAddr+"/readyz") }) || p.exited() {
			t.Fatalf("agent run %d not ready on %s (exited: %v)", run, httpAddr, p.exited())
		}
		return p
	}
	agent := startAgent(1)

	// The Celery worker, from the example's directory, as its README runs it; its stdout
	// and stderr go to worker.log, which the agent tails too (text lines).
	broker := fmt.Sprintf("redis://127.0.0.1:%d", redisPort)
	env := append(os.Environ(),
		"CELERY_BROKER_URL="+broker+"/0", "CELERY_RESULT_BACKEND="+broker+"/1",
		"KINESIS_STREAM="+stream,
		"LOG_FILE="+filepath.Join(logDir, "tasks.log"), "LOG_SYSLOG_SOCKET="+sock,
		"LOG_UNDELIVERED="+undelivered, "LOG_SERVICE=celery-example",
		"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	worker := procs.startLog("celery-worker", filepath.Join(logDir, "worker.log"), example, env, tools.python,
		"-m", "celery", "-A", "tasks", "worker", "--pool", "prefork", "--concurrency", "4", "--loglevel", "INFO",
		"--without-gossip", "--without-mingle", "--without-heartbeat", "-n", "celery-test@%h")

	// Enqueue, and wait for the results in the background.
	enq := startEnqueue(t, procs, example, env, "--tasks", strconv.Itoa(celeryTasks), "--lines", strconv.Itoa(celeryLines),
		"--fail-every", strconv.Itoa(celeryFailEvery), "--records", strconv.Itoa(celeryRecords), "--pause", celeryPause, "--timeout", "120")
	attempts := celeryTasks + (celeryTasks+celeryFailEvery-1)/celeryFailEvery
	total := attempts * celeryLines
	progress := func() int { return celeryTaskLinesOnDisk(logDir) }
	waitProgress := func(frac float64, what string) {
		t.Helper()
		if !poll(60*time.Second, 20*time.Millisecond, func() bool { return progress() >= int(frac*float64(total)) || enq.exited() }) {
			t.Fatalf("before %s: only %d of %d task lines written in 60s", what, progress(), total)
		}
		if enq.exited() && progress() < total {
			t.Fatalf("enqueue exited (%v) with %d of %d task lines written", enq.proc.err, progress(), total)
		}
		t.Logf("%s at %d of %d task lines (%s)", what, progress(), total, time.Since(started).Round(10*time.Millisecond))
	}

	// 1. Rename rotation, while the tasks log.
	waitProgress(0.2, "logrotate (rename)")
	celeryLogrotate(t, tools, dir, "rename", logDir, "nocreate")

	// 2. SIGKILL the agent; it stays down while the tasks log on (their syslog lines fail
	// at the sender), then restarts on the same state directory.
	waitProgress(0.4, "SIGKILL of the agent")
	before, err := scrapeMetrics("http://" + httpAddr + "/metrics")
	killedAt := time.Now()
	agent.kill()
	rereadable := celeryRereadable(t, stateDir, logDir)
	if err != nil {
		t.Logf("agent killed at %s; scraping it just before failed: %v", killedAt.UTC().Format(time.RFC3339Nano), err)
	} else {
		t.Logf("agent killed at %s; just before: %v file records in flight, %v file lines and %v syslog lines read",
			killedAt.UTC().Format(time.RFC3339Nano), before.sum("kinlog_agent_records_in_flight", ""),
			before.sum("kinlog_agent_lines_read_total", `input="files[0]"`), before.sum("kinlog_agent_lines_read_total", `input="syslog[0]"`))
	}
	waitProgress(0.5, "agent restart")
	agent = startAgent(2)

	// 3. Copytruncate rotation of the same file.
	waitProgress(0.7, "logrotate (copytruncate)")
	celeryLogrotate(t, tools, dir, "copytruncate", logDir, "copytruncate")

	// The tasks finish; the worker stops (warm shutdown), so nothing more is logged.
	select {
	case <-enq.proc.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("tasks not finished after 90s (%d of %d task lines written)", progress(), total)
	}
	if enq.proc.err != nil {
		t.Fatalf("enqueue: %v", enq.proc.err)
	}
	results := enq.results()
	t.Logf("tasks done at %s: %d results", time.Since(started).Round(10*time.Millisecond), len(results))
	if err := worker.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("celery worker after SIGTERM: %v", err)
	}

	// The agent catches up (every file confirmed to its end, the syslog socket drained),
	// then SIGTERM: it delivers what it read, stores positions and exits 0.
	var m celeryMetrics
	var lastSyslog float64 = -1
	caughtUp := poll(60*time.Second, 250*time.Millisecond, func() bool {
		m, _ = scrapeMetrics("http://" + httpAddr + "/metrics")
		syslogRead := m.sum("kinlog_agent_lines_read_total", `input="syslog[0]"`)
		stable := syslogRead == lastSyslog
		lastSyslog = syslogRead
		return stable && m.has("kinlog_agent_file_bytes_behind") && m.sum("kinlog_agent_file_bytes_behind", "") == 0 &&
			m.sum("kinlog_agent_records_in_flight", "") == 0
	})
	if !caughtUp {
		t.Errorf("agent did not catch up in 60s: file_bytes_behind %v, records_in_flight %v",
			m.sum("kinlog_agent_file_bytes_behind", ""), m.sum("kinlog_agent_records_in_flight", ""))
	}
	t.Logf("agent metrics before SIGTERM:\n%s", m.agentLines())
	termAt := time.Now()
	if err := agent.stop(syscall.SIGTERM, 45*time.Second); err != nil {
		t.Errorf("agent after SIGTERM: %v (want exit 0)", err)
	}
	t.Logf("agent stopped %s after SIGTERM", time.Since(termAt).Round(time.Millisecond))

	// What should be in the archive.
	want := celeryExpected(t, results)
	onDisk, where := celeryDiskLines(t, logDir)
	failed, failedOther := celeryUndelivered(t, undelivered)

	// Archive the stream with `kinlog consume` until every file line and record is there
	// and the archive stops growing; SIGTERM drains it.
	consumeConfig := filepath.Join(dir, "kinlog.yaml")
	if err := os.WriteFile(consumeConfig, fmt.Appendf(nil, `stream: %s
http:
  listen: "127.0.0.1:0"
consumer:
  lease_table: %s
  create_lease_table: true
  failover_time: 3s
  idle_time_between_reads: 200ms
sink:
  s3:
    bucket: %s
    flush_interval: 500ms
    path_style: true
`, stream, table, bucket), 0o600); err != nil {
		t.Fatal(err)
	}
	consume := procs.start("consume", dir, kinlogEnv, kinlog, "consume", "--config", consumeConfig, "--set", "log.format=text")
	var arch celeryArchive
	lastRecords := -1
	complete := poll(90*time.Second, time.Second, func() bool {
		arch = readCeleryArchive(t, sc, bucket)
		grew := arch.records != lastRecords
		lastRecords = arch.records
		return !grew && arch.covers(want.file, onDisk, want.seed)
	})
	if err := consume.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("consume after SIGTERM: %v", err)
	}
	arch = readCeleryArchive(t, sc, bucket)
	if !complete {
		t.Errorf("the archive did not complete in 90s (%d records)", arch.records)
	}
	t.Logf("archive: %d records in %d objects (%s)", arch.records, arch.objects, time.Since(started).Round(10*time.Millisecond))
	for _, b := range arch.bad {
		t.Errorf("archive: %s", b)
	}

	// File lines: every one, with its content (byte for byte where the disk still has it).
	fileDups, copyLost := 0, 0
	for _, k := range sortedKeys(want.file) {
		got := arch.file[k]
		switch {
		case got == nil && onDisk[k] == "":
			// logrotate's own copytruncate window: written after the copy and before the
			// truncation, so on no disk; the agent had not read it before the truncation.
			copyLost++
			t.Logf("file line %s is on no disk and not in the archive (lost in logrotate's copytruncate window)", k)
		case got == nil:
			t.Errorf("file line %s missing from the archive (on disk: %s)", k, onDisk[k])
		default:
			fileDups += got.n - 1
			if got.n > 1 {
				t.Logf("file line %s archived %d times (%s, logged %s)", k, got.n, where[k], got.doc.Time)
			}
			if raw := onDisk[k]; raw != "" && got.raw != raw {
				t.Errorf("file line %s archived as\n%s\nbut the file has\n%s", k, got.raw, raw)
			}
			if err := celeryCheckContent(k, got.doc, "file"); err != nil {
				t.Error(err)
			}
		}
	}
	// logrotate(8): "there is a very small time slice between copying the file and
	// truncating it, so some logging data might be lost". A line written in it is in no
	// file; the agent has it only if it read it before the truncation. The slice is about a
	// millisecond here: a line from each of the 4 writing processes at most.
	if copyLost > 4 {
		t.Errorf("%d file lines lost in logrotate's copytruncate window; more than one per writing process means the agent lagged behind the file", copyLost)
	}
	for k, got := range arch.file {
		if want.file[k] == 0 {
			t.Errorf("unexpected file line %s in the archive (%d times)", k, got.n)
		}
	}

	// Syslog lines: every one the sender did not report failing, except at most the
	// datagrams the kernel queued for the killed agent, lost with its socket: the queue
	// holds max_dgram_qlen+1, and each of the 5 sending processes (the worker and its 4
	// children) may slip one more past the check as it wakes.
	silentBound := celeryDgramQueueLen() + 1 + 5
	syslogDups, silent, failedArchived := 0, 0, 0
	for _, k := range sortedKeys(want.file) { // the syslog handler got the same records
		got := arch.syslog[k]
		switch {
		case failed[k] && got != nil:
			failedArchived++
			t.Errorf("syslog line %s reported undelivered by the sender, yet archived", k)
		case failed[k]:
		case got == nil:
			silent++
			var d celeryDoc
			_ = json.Unmarshal([]byte(onDisk[k]), &d)
			t.Logf("syslog line %s (logged %s) neither archived nor reported undelivered", k, d.Time)
		default:
			syslogDups += got.n - 1
			if got.n > 1 {
				t.Logf("syslog line %s archived %d times (logged %s)", k, got.n, got.doc.Time)
			}
			if err := celeryCheckContent(k, got.doc, "syslog"); err != nil {
				t.Error(err)
			}
		}
	}
	if silent > silentBound {
		t.Errorf("%d syslog lines lost without the sender knowing; at most %d can be in the kernel's queue of the killed agent's socket", silent, silentBound)
	}

	// put_record records: every one.
	seedDups := 0
	for id := range celeryRecords {
		switch n := arch.seed[id]; {
		case n == 0:
			t.Errorf("put_record record %d missing from the archive", id)
		default:
			seedDups += n - 1
		}
	}

	// Duplicates: only lines the agent sent again after the crash, which it counts: file
	// lines read again from the stored position, and the spool's records that the killed
	// run had not marked shipped.
	resent, named := m.sum("kinlog_agent_records_resent_total", `input="files[0]"`), "kinlog_agent_records_resent_total"
	if !m.has(named) {
		resent, named = m.sum("kinlog_agent_duplicates_on_restart_total", `input="files[0]"`), "kinlog_agent_duplicates_on_restart_total"
	}
	respooled := m.sum("kinlog_agent_records_shipped_total", `input="spool"`)
	t.Logf("file: %d lines expected (%d tasks, %d attempts), %d duplicates, %d lost in logrotate's copytruncate window",
		len(want.file), celeryTasks, attempts, fileDups, copyLost)
	t.Logf("syslog: %d task lines sent, %d reported undelivered by the sender (and %d of Celery's own lines), %d lost silently (kernel queue bound %d), %d duplicates",
		len(want.file), len(failed), failedOther, silent, silentBound, syslogDups)
	t.Logf("put_record: %d records, %d duplicates", celeryRecords, seedDups)
	t.Logf("agent after the restart: %s{files[0]} = %v, records_shipped_total{spool} = %v", named, resent, respooled)
	if !m.has(named) {
		t.Errorf("the agent exports neither kinlog_agent_records_resent_total nor kinlog_agent_duplicates_on_restart_total")
	} else if float64(fileDups) > resent {
		t.Errorf("%d file lines archived twice, but the agent counted %v lines sent again after the crash", fileDups, resent)
	}
	// Whatever the counter says: a restart re-reads only from the stored positions, so at
	// most the lines between them and the files' ends at the kill can be twice in the stream.
	if fileDups > rereadable {
		t.Errorf("%d file lines archived twice, more than the %d lines between the stored positions and the files' ends at the kill", fileDups, rereadable)
	}
	if float64(syslogDups) > respooled {
		t.Errorf("%d syslog lines archived twice, but the agent sent only %v records again from its spool", syslogDups, respooled)
	}
	if seedDups > 0 {
		t.Errorf("%d put_record records archived more than once (boto3 retried a put Kinesis had stored?)", seedDups)
	}

	// `kinlog query` agrees with the archive, per level and per task.
	query := func(args ...string) map[string]int {
		t.Helper()
		cmd := exec.CommandContext(ctx, kinlog, append([]string{"query", "--bucket", bucket, "--s3-path-style"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kinlog query %v: %v\n%s", args, err, stderr.String())
		}
		return celeryCountTable(string(out))
	}
	wantLevels, wantTasks := arch.fileCounts()
	if got := query("--where", "via=file", "--where", "logger=tasks", "--count-by", "level"); !equalCounts(got, wantLevels) {
		t.Errorf("query --count-by level (file task lines): %v, archive has %v", got, wantLevels)
	}
	if got := query("--where", "via=file", "--where", "logger=tasks", "--count-by", "task_id"); !equalCounts(got, wantTasks) {
		t.Errorf("query --count-by task_id: %d tasks, archive has %d; differences: %v", len(got), len(wantTasks), diffCounts(got, wantTasks))
	}
	for task := range want.expectedPerTask(wantTasks, 3) { // a few tasks, retried ones first
		got := query("--where", "task_id="+task, "--where", "via=file", "--where", "logger=tasks", "--count-by", "level")
		if w := arch.taskLevels(task); !equalCounts(got, w) {
			t.Errorf("query task_id=%s --count-by level: %v, archive has %v", task, got, w)
		}
	}
	// Without filters, the rollups answer; they count every record (Celery's own lines,
	// worker.log, put_record) and must agree with a scan.
	rolled, scanned := query("--count-by", "level"), query("--count-by", "level", "--scan")
	if !equalCounts(rolled, scanned) || !equalCounts(scanned, arch.byLevel) {
		t.Errorf("query --count-by level: rollups %v, scan %v, archive %v", rolled, scanned, arch.byLevel)
	}
	t.Logf("done in %s", time.Since(started).Round(10*time.Millisecond))
}

// ---------------------------------------------------------------- tools and processes

type celeryTools struct{ python, redisServer, logrotate string }

// requireCeleryTools finds Debian's python3 with Celery, kombu, redis and boto3, and
// redis-server and logrotate (paths from `infra/local/stack env`, Debian's by default). It
// skips the test without them, or fails it under CI.
func requireCeleryTools(t *testing.T) celeryTools {
	t.Helper()
	tools := celeryTools{
		python:      envOr("KINLOG_PYTHON", "/usr/bin/python3"),
		redisServer: envOr("KINLOG_REDIS_SERVER", "/usr/bin/redis-server"),
		logrotate:   envOr("KINLOG_LOGROTATE", "/usr/sbin/logrotate"),
	}
	var missing []string
	for _, p := range []string{tools.python, tools.redisServer, tools.logrotate} {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		out, err := exec.Command(tools.python, "-c", "import celery, kombu, redis, boto3; assert celery.VERSION[0] == 5, celery.__version__").CombinedOutput()
		if err != nil {
			missing = append(missing, fmt.Sprintf("Celery 5, kombu, redis and boto3 for %s (%v: %s)", tools.python, err, lastLine(out)))
		}
	}
	if len(missing) > 0 {
		msg := "the Celery test needs Debian's python3-celery, redis-server, python3-boto3 and logrotate; missing: " +
			strings.Join(missing, ", ") + ". As root, `infra/local/stack up` installs them, or run: " + celeryAptLine
		if testenv.InCI() {
			t.Fatal(msg + " — CI=true, so this is a failure")
		}
		t.Skip(msg)
	}
	return tools
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// celeryProcs are the processes a test started; cleanup kills those still running (and
// their process groups: Celery's prefork children) and, when the test failed, logs the
// tail of each one's output.
type celeryProcs struct {
	t     *testing.T
	dir   string // where their output goes: <name>.log
	mu    sync.Mutex
	procs []*celeryProc
}

type celeryProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // the exit status; read after done is closed
}

func (ps *celeryProcs) start(name, dir string, env []string, bin string, args ...string) *celeryProc {
	return ps.startLog(name, filepath.Join(ps.dir, name+".log"), dir, env, bin, args...)
}

func (ps *celeryProcs) startLog(name, logPath, dir string, env []string, bin string, args ...string) *celeryProc {
	ps.t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		ps.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		ps.t.Fatalf("starting %s: %v", name, err)
	}
	p := &celeryProc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	return p
}

func (p *celeryProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process (not its group) and waits for it.
func (p *celeryProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends sig and waits up to timeout for the exit, then SIGKILLs the process group.
// It returns the exit status (nil for 0).
func (p *celeryProc) stop(sig syscall.Signal, timeout time.Duration) error {
	if p.exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within %s of %v (killed)", p.name, timeout, sig)
	}
}

func (ps *celeryProcs) cleanup() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i := len(ps.procs) - 1; i >= 0; i-- {
		p := ps.procs[i]
		if !p.exited() {
			_ = p.stop(syscall.SIGTERM, 10*time.Second)
		}
		// Prefork children left behind by a killed parent share its process group.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	if !ps.t.Failed() {
		return
	}
	for _, p := range ps.procs {
		data, _ := os.ReadFile(p.log)
		if len(data) > 6000 {
			data = data[len(data)-6000:]
		}
		ps.t.Logf("--- %s (exit %v), %s:\n%s", p.name, p.err, p.log, data)
	}
}

// celeryEnqueue is enqueue.py running: it prints a JSON line per enqueued task, then one per
// result.
type celeryEnqueue struct {
	proc *celeryProc
	mu   sync.Mutex
	docs []map[string]any
}

func startEnqueue(t *testing.T, ps *celeryProcs, example string, env []string, args ...string) *celeryEnqueue {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	e := &celeryEnqueue{}
	logPath := filepath.Join(ps.dir, "enqueue.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(envOr("KINLOG_PYTHON", "/usr/bin/python3"), append([]string{"enqueue.py"}, args...)...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = example, env, w, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p := &celeryProc{name: "enqueue", cmd: cmd, log: logPath, done: make(chan struct{})}
	e.proc = p
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			var doc map[string]any
			if json.Unmarshal(sc.Bytes(), &doc) == nil {
				e.mu.Lock()
				e.docs = append(e.docs, doc)
				e.mu.Unlock()
			}
		}
	}()
	go func() {
		<-read
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	return e
}

func (e *celeryEnqueue) exited() bool { return e.proc.exited() }

// results are the {"done": ...} lines.
func (e *celeryEnqueue) results() []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []map[string]any
	for _, d := range e.docs {
		if d["done"] != nil {
			out = append(out, d)
		}
	}
	return out
}

func celeryFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func redisPing(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func httpOK(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// celeryDgramQueueLen is how many datagrams the kernel queues on a Unix datagram socket.
func celeryDgramQueueLen() int {
	b, err := os.ReadFile("/proc/sys/net/unix/max_dgram_qlen")
	if err != nil {
		return 10
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 10
	}
	return n
}

// ---------------------------------------------------------------- the example's files

// celeryAgentConfig writes the example's agent.yaml with each old string replaced by its new
// one; every old string must occur exactly once, so an edit of the example that the test
// no longer follows fails here.
func celeryAgentConfig(t *testing.T, example, path string, replace map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(example, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, repl := range replace {
		if n := strings.Count(s, old); n != 1 {
			t.Fatalf("examples/celery/agent.yaml has %q %d times, want once", old, n)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// celeryCheckLogrotateExample dry-runs the example's logrotate.conf with its paths moved
// into dir, so that a broken stanza fails the test.
func celeryCheckLogrotateExample(t *testing.T, tools celeryTools, example, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(example, "logrotate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	ex := filepath.Join(dir, "logrotate-example")
	if err := os.Mkdir(ex, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(ex, "logrotate.conf")
	if err := os.WriteFile(conf, bytes.ReplaceAll(b, []byte("/var/log/celery"), []byte(ex)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tools.logrotate, "-d", "-s", filepath.Join(ex, "state"), conf).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("error:")) {
		t.Fatalf("examples/celery/logrotate.conf: logrotate -d: %v\n%s", err, out)
	}
}

// celeryLogrotate runs real logrotate -f on logDir/tasks.log with one stanza: the rotation
// method (nocreate for a rename, copytruncate) and no compression, so that the test reads
// every rotated file back.
func celeryLogrotate(t *testing.T, tools celeryTools, dir, name, logDir, method string) {
	t.Helper()
	conf := filepath.Join(dir, "logrotate-"+name+".conf")
	stanza := fmt.Sprintf("%s {\n    rotate 9\n    missingok\n    %s\n}\n", filepath.Join(logDir, "tasks.log"), method)
	if err := os.WriteFile(conf, []byte(stanza), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tools.logrotate, "-f", "-v", "-s", filepath.Join(dir, "logrotate-"+name+".state"), conf).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate (%s): %v\n%s", name, err, out)
	}
	var did []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "renaming "+logDir) || strings.HasPrefix(l, "copying ") || strings.HasPrefix(l, "truncating ") {
			did = append(did, strings.TrimSpace(l))
		}
	}
	t.Logf("logrotate (%s): %s", name, strings.Join(did, "; "))
}

// celeryTaskLinesOnDisk counts the task lines in tasks.log and its rotated copies.
func celeryTaskLinesOnDisk(logDir string) int {
	files, _ := filepath.Glob(filepath.Join(logDir, "tasks.log*"))
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n += bytes.Count(b, []byte(`"logger":"tasks"`))
	}
	return n
}

// celeryLineKey identifies a task line: task id, attempt, line number.
func celeryLineKey(task string, attempt, line int) string {
	return fmt.Sprintf("%s/%d/%d", task, attempt, line)
}

// celeryDiskLines reads tasks.log and its rotated copies: each task line's key → the line,
// and → where it is (file:line number).
func celeryDiskLines(t *testing.T, logDir string) (lines, where map[string]string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(logDir, "tasks.log*"))
	lines, where = map[string]string{}, map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			var d celeryDoc
			if json.Unmarshal([]byte(l), &d) == nil && d.Logger == "tasks" {
				k := celeryLineKey(d.TaskID, d.Attempt, d.Line)
				lines[k] = l
				where[k] += fmt.Sprintf("%s:%d ", filepath.Base(f), i+1)
			}
		}
	}
	return lines, where
}

// celeryRereadable reads the positions the agent stored (positions.json in its state
// directory) and counts the lines after them in the files, found by inode in logDir: the
// lines a restart reads again. It logs what it found; 0 when the file is not there.
func celeryRereadable(t *testing.T, stateDir, logDir string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(stateDir, "positions.json"))
	if err != nil {
		t.Logf("positions after the kill: %v", err)
		return 0
	}
	var doc struct {
		Files []struct {
			Path       string `json:"path"`
			Inode      uint64 `json:"inode"`
			Offset     int64  `json:"offset"`
			ReadOffset int64  `json:"read_offset"`
		} `json:"files"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Logf("positions after the kill: %v", err)
		return 0
	}
	entries, _ := os.ReadDir(logDir)
	total := 0
	for _, f := range doc.Files {
		for _, e := range entries {
			fi, err := e.Info()
			if st, ok := fi.Sys().(*syscall.Stat_t); err != nil || !ok || st.Ino != f.Inode {
				continue
			}
			b, err := os.ReadFile(filepath.Join(logDir, e.Name()))
			if err != nil || int64(len(b)) < f.Offset {
				continue
			}
			n := bytes.Count(b[f.Offset:], []byte("\n"))
			total += n
			t.Logf("positions after the kill: %s (now %s) stored at %d (read to %d) of %d bytes: %d lines to read again",
				filepath.Base(f.Path), e.Name(), f.Offset, f.ReadOffset, len(b), n)
		}
	}
	return total
}

// celeryEnvWithout is the environment without the variables starting with prefix.
func celeryEnvWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// celeryUndelivered reads the ids of the task lines the syslog handler could not send,
// and counts the other lines it could not send (Celery's own, without a line number).
func celeryUndelivered(t *testing.T, path string) (map[string]bool, int) {
	t.Helper()
	out := map[string]bool{}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return out, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	other := 0
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var d celeryDoc
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("%s: %q: %v", path, l, err)
		}
		if d.Line == 0 {
			other++ // Celery's own lines (no line number)
			continue
		}
		out[celeryLineKey(d.TaskID, d.Attempt, d.Line)] = true
	}
	return out, other
}

// ---------------------------------------------------------------- expectations and archive

type celeryDoc struct {
	Time    string `json:"time"`
	Level   string `json:"level"`
	Service string `json:"service"`
	Logger  string `json:"logger"`
	Via     string `json:"via"`
	TaskID  string `json:"task_id"`
	Attempt int    `json:"attempt"`
	Line    int    `json:"line"`
	SeedID  *int   `json:"seed_id"`
	Msg     string `json:"msg"`
}

type celeryWant struct {
	file    map[string]int // every task line, by key → 1
	seed    map[int]int
	retried map[string]bool // tasks with more than one attempt
}

// celeryExpected derives the task lines from the results: a task whose last attempt is n
// logged celeryLines lines in each of attempts 1..n.
func celeryExpected(t *testing.T, results []map[string]any) celeryWant {
	t.Helper()
	w := celeryWant{file: map[string]int{}, seed: map[int]int{}, retried: map[string]bool{}}
	tasks, retried := 0, 0
	for _, r := range results {
		switch r["done"] {
		case "log_lines":
			task, _ := r["task_id"].(string)
			attempt, _ := r["attempt"].(float64)
			lines, _ := r["lines"].(float64)
			tasks++
			if attempt > 1 {
				retried++
				w.retried[task] = true
			}
			for a := 1; a <= int(attempt); a++ {
				for l := 1; l <= int(lines); l++ {
					w.file[celeryLineKey(task, a, l)] = 1
				}
			}
		case "ship_record":
			id, _ := r["seed_id"].(float64)
			w.seed[int(id)] = 1
		}
	}
	wantRetried := (celeryTasks + celeryFailEvery - 1) / celeryFailEvery
	if tasks != celeryTasks || retried != wantRetried || len(w.seed) != celeryRecords {
		t.Fatalf("results: %d log_lines tasks (%d retried), %d put_record tasks; want %d (%d retried), %d",
			tasks, retried, len(w.seed), celeryTasks, wantRetried, celeryRecords)
	}
	return w
}

// expectedPerTask picks n tasks to query one by one: retried ones first.
func (w celeryWant) expectedPerTask(tasks map[string]int, n int) map[string]bool {
	out := map[string]bool{}
	for _, task := range sortedKeys(tasks) {
		if len(out) < n-1 && w.retried[task] {
			out[task] = true
		}
	}
	for _, task := range sortedKeys(tasks) {
		if len(out) < n && !w.retried[task] {
			out[task] = true
		}
	}
	return out
}

type celeryCopy struct {
	n   int
	raw string
	doc celeryDoc
}

type celeryArchive struct {
	objects, records int
	file, syslog     map[string]*celeryCopy // task lines by key
	seed             map[int]int
	byLevel          map[string]int // every record
	bad              []string
}

// readCeleryArchive reads every archive object (gzip NDJSON) and sorts the records.
func readCeleryArchive(t *testing.T, sc *s3.Client, bucket string) celeryArchive {
	t.Helper()
	a := celeryArchive{file: map[string]*celeryCopy{}, syslog: map[string]*celeryCopy{}, seed: map[int]int{}, byLevel: map[string]int{}}
	for key, body := range readBucket(t, sc, bucket) {
		if !strings.HasPrefix(key, "logs/") {
			if strings.HasPrefix(key, "errors/") {
				a.bad = append(a.bad, "error output object "+key)
			}
			continue
		}
		a.objects++
		raw, err := encode.Decompress(body, encode.CompressionGzip)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		for _, l := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
			a.records++
			var d celeryDoc
			if err := json.Unmarshal([]byte(l), &d); err != nil {
				a.bad = append(a.bad, fmt.Sprintf("%s: record %q: %v", key, l, err))
				continue
			}
			lvl := d.Level
			if lvl == "" {
				lvl = "(none)"
			}
			a.byLevel[lvl]++
			switch {
			case d.Via == "put_record" && d.SeedID != nil:
				a.seed[*d.SeedID]++
			case d.Logger == "tasks" && (d.Via == "file" || d.Via == "syslog"):
				m := a.file
				if d.Via == "syslog" {
					m = a.syslog
				}
				k := celeryLineKey(d.TaskID, d.Attempt, d.Line)
				if c := m[k]; c != nil {
					c.n++
				} else {
					m[k] = &celeryCopy{n: 1, raw: l, doc: d}
				}
			}
		}
	}
	return a
}

// covers reports whether every expected file line that is on disk and every put_record
// record is archived.
func (a celeryArchive) covers(file map[string]int, onDisk map[string]string, seed map[int]int) bool {
	for k := range file {
		if a.file[k] == nil && onDisk[k] != "" {
			return false
		}
	}
	for id := range seed {
		if a.seed[id] == 0 {
			return false
		}
	}
	return true
}

// fileCounts counts the archived file task lines (duplicates included) by level and by task.
func (a celeryArchive) fileCounts() (byLevel, byTask map[string]int) {
	byLevel, byTask = map[string]int{}, map[string]int{}
	for _, c := range a.file {
		byLevel[c.doc.Level] += c.n
		byTask[c.doc.TaskID] += c.n
	}
	return byLevel, byTask
}

func (a celeryArchive) taskLevels(task string) map[string]int {
	out := map[string]int{}
	for _, c := range a.file {
		if c.doc.TaskID == task {
			out[c.doc.Level] += c.n
		}
	}
	return out
}

// celeryCheckContent checks an archived task line against what the task logged.
func celeryCheckContent(key string, d celeryDoc, via string) error {
	wantMsg := fmt.Sprintf("task line %d of %d", d.Line, celeryLines)
	if d.Msg != wantMsg || d.Level != celeryLevels[d.Line%4] || d.Service != "celery-example" || d.Via != via {
		return fmt.Errorf("%s line %s archived as %+v; want msg %q, level %s, service celery-example", via, key, d, wantMsg, celeryLevels[d.Line%4])
	}
	return nil
}

// celeryCountTable parses the table `kinlog query --count-by` prints: VALUE COUNT BYTES.
func celeryCountTable(out string) map[string]int {
	re := regexp.MustCompile(`(?m)^(\S+)\s+(\d+)\s+\d+\s*$`)
	got := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		got[m[1]] += n
	}
	return got
}

func equalCounts(a, b map[string]int) bool { return len(diffCounts(a, b)) == 0 }

func diffCounts(got, want map[string]int) map[string][2]int {
	d := map[string][2]int{}
	for k, v := range got {
		if want[k] != v {
			d[k] = [2]int{v, want[k]}
		}
	}
	for k, v := range want {
		if _, ok := got[k]; !ok {
			d[k] = [2]int{0, v}
		}
	}
	return d
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---------------------------------------------------------------- agent metrics

// celeryMetrics is one scrape of the agent's /metrics (Prometheus text format).
type celeryMetrics []celerySample

type celerySample struct {
	name, labels string
	value        float64
}

func scrapeMetrics(url string) (celeryMetrics, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var out celeryMetrics
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		name, labels := l[:i], ""
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name, labels = name[:j], name[j:]
		}
		out = append(out, celerySample{name, labels, v})
	}
	return out, sc.Err()
}

func (m celeryMetrics) has(name string) bool {
	for _, s := range m {
		if s.name == name {
			return true
		}
	}
	return false
}

// sum adds the samples of name whose labels contain label ("" for all).
func (m celeryMetrics) sum(name, label string) float64 {
	v := 0.0
	for _, s := range m {
		if s.name == name && strings.Contains(s.labels, label) {
			v += s.value
		}
	}
	return v
}

// agentLines prints the kinlog_agent_ samples, for the log.
func (m celeryMetrics) agentLines() string {
	var b strings.Builder
	for _, s := range m {
		if strings.HasPrefix(s.name, "kinlog_agent_") && s.value != 0 {
			fmt.Fprintf(&b, "  %s%s %v\n", s.name, s.labels, s.value)
		}
	}
	return b.String()
}

package deploytest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The systemd unit infra/systemd/kinlog-agent.service is parsed as systemd reads unit files,
// as far as kinlog's unit uses the syntax: [Section] headers, Key=Value assignments (a key may
// repeat; an empty value resets a list), '#' and ';' comments, and lines continued with a
// trailing backslash. When systemd-analyze is installed, `systemd-analyze verify` checks the
// unit as systemd itself would load it.

type unitFile struct {
	sections map[string]map[string][]string // section -> key -> values in file order
}

func parseUnit(src string) (*unitFile, error) {
	u := &unitFile{sections: map[string]map[string][]string{}}
	var section map[string][]string
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		for strings.HasSuffix(line, `\`) {
			line = strings.TrimSuffix(line, `\`)
			i++
			if i >= len(lines) {
				return nil, fmt.Errorf("line %d: continuation at end of file", start)
			}
			line += " " + strings.TrimSpace(lines[i])
		}
		if strings.HasPrefix(line, "[") {
			name, ok := strings.CutSuffix(line[1:], "]")
			if !ok || name == "" {
				return nil, fmt.Errorf("line %d: bad section header %q", start, line)
			}
			if u.sections[name] != nil {
				return nil, fmt.Errorf("line %d: section [%s] repeated", start, name)
			}
			section = map[string][]string{}
			u.sections[name] = section
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("line %d: %q is not Key=Value", start, line)
		}
		if section == nil {
			return nil, fmt.Errorf("line %d: %s before the first section", start, key)
		}
		section[key] = append(section[key], strings.TrimSpace(val))
	}
	return u, nil
}

// get returns the last value of key in section ("" when unset) and whether it is set.
func (u *unitFile) get(section, key string) (string, bool) {
	vs := u.sections[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// list returns a list setting's items: the space-separated words of every assignment after
// the last empty one.
func (u *unitFile) list(section, key string) []string {
	var out []string
	for _, v := range u.sections[section][key] {
		if v == "" {
			out = nil
			continue
		}
		out = append(out, strings.Fields(v)...)
	}
	return out
}

var timespanRe = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)`)

// parseTimespan reads a systemd time span ("90", "60s", "1min 30s", "infinity").
func parseTimespan(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "infinity" {
		return time.Duration(1<<63 - 1), nil
	}
	units := map[string]time.Duration{
		"": time.Second, "us": time.Microsecond, "usec": time.Microsecond, "ms": time.Millisecond, "msec": time.Millisecond,
		"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
		"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	}
	var d time.Duration
	rest := s
	for strings.TrimSpace(rest) != "" {
		m := timespanRe.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("time span %q", s)
		}
		unit, ok := units[m[2]]
		if !ok {
			return 0, fmt.Errorf("time span %q: unknown unit %q", s, m[2])
		}
		f, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, err
		}
		d += time.Duration(f * float64(unit))
		rest = rest[len(m[0]):]
	}
	if s == "" {
		return 0, fmt.Errorf("empty time span")
	}
	return d, nil
}

const agentBinary = "/usr/local/bin/kinlog"

// checkSystemdUnit returns everything wrong with the unit, given the configuration it runs.
func checkSystemdUnit(src string, cfg agentConfig) problems {
	var ps problems
	u, err := parseUnit(src)
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	svc := func(key string) string { v, _ := u.get("Service", key); return v }
	yes := func(key string) bool { return slices.Contains([]string{"yes", "true", "on", "1"}, svc(key)) }

	if d, _ := u.get("Unit", "Description"); d == "" {
		ps.addf("[Unit] Description= is empty")
	}
	if t := svc("Type"); t != "" && t != "simple" && t != "exec" {
		ps.addf("Type=%s: the agent does not notify systemd or fork; want simple or exec", t)
	}
	switch execs := u.sections["Service"]["ExecStart"]; {
	case len(execs) != 1:
		ps.addf("%d ExecStart= lines, want 1", len(execs))
	default:
		if f, want := strings.Fields(execs[0]), []string{agentBinary, "agent", "--config", agentConfigFile}; !slices.Equal(f, want) {
			ps.addf("ExecStart=%s, want %s", execs[0], strings.Join(want, " "))
		}
	}
	if r := svc("Restart"); r != "always" {
		ps.addf("Restart=%q, want always", r)
	}
	if s := svc("KillSignal"); s != "" && s != "SIGTERM" && s != "TERM" && s != "15" {
		ps.addf("KillSignal=%s: the agent drains and stores positions on SIGTERM", s)
	}
	if m := svc("KillMode"); m == "none" || m == "process" {
		ps.addf("KillMode=%s leaves processes behind", m)
	}
	stop := svc("TimeoutStopSec")
	if stop == "" {
		stop = svc("TimeoutSec")
	}
	deadline, errDeadline := time.ParseDuration(cfg.Shutdown.Timeout)
	switch d, err := parseTimespan(stop); {
	case stop == "":
		ps.addf("TimeoutStopSec= not set (systemd's default, 90s, may be shorter than shutdown.timeout)")
	case err != nil:
		ps.addf("TimeoutStopSec=%s: %v", stop, err)
	case errDeadline == nil && d <= deadline:
		ps.addf("TimeoutStopSec=%s is not longer than the agent's shutdown.timeout %s: systemd would kill it mid-flush", stop, deadline)
	}

	// Directories: the state directory is the config's state_dir, the runtime directory
	// holds the unix sockets, and nothing else is writable.
	state := u.list("Service", "StateDirectory")
	if len(state) != 1 || "/var/lib/"+state[0] != cfg.StateDir {
		ps.addf("StateDirectory=%v does not give the config's state_dir %s", state, cfg.StateDir)
	}
	runtime := u.list("Service", "RuntimeDirectory")
	rw := u.list("Service", "ReadWritePaths")
	needRW := map[string]bool{}
	for _, listen := range append(socketPaths(cfg.Sockets), socketPaths(cfg.Syslog)...) {
		dir := path.Dir(listen)
		if len(runtime) == 1 && dir == "/run/"+runtime[0] {
			continue
		}
		needRW[dir] = true
		if !slices.Contains(rw, dir) {
			ps.addf("unix socket %s: its directory is neither RuntimeDirectory= nor in ReadWritePaths=, and ProtectSystem=strict makes it read-only", listen)
		}
	}
	for _, p := range rw {
		if !needRW[strings.TrimPrefix(p, "-")] {
			ps.addf("ReadWritePaths=%s: the agent does not need it", p)
		}
	}
	if len(runtime) != 1 || runtime[0] != "kinlog" {
		ps.addf("RuntimeDirectory=%v, want kinlog (for /run/kinlog/agent.sock)", runtime)
	}

	// Identity.
	switch user := svc("User"); {
	case user == "" && !yes("DynamicUser"):
		ps.addf("no User=: the agent would run as root")
	case user == "root" || user == "0":
		ps.addf("User=%s: the agent must not run as root", user)
	}
	if !slices.Contains(u.list("Service", "SupplementaryGroups"), "adm") {
		ps.addf("SupplementaryGroups= lacks adm, the group that reads /var/log on Debian and Ubuntu")
	}

	// Hardening.
	for _, k := range []string{"NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID"} {
		if !yes(k) {
			ps.addf("%s= must be yes", k)
		}
	}
	if v := svc("ProtectSystem"); v != "strict" {
		ps.addf("ProtectSystem=%q, want strict", v)
	}
	if v := svc("ProtectHome"); !slices.Contains([]string{"yes", "true", "read-only", "tmpfs"}, v) {
		ps.addf("ProtectHome=%q, want yes, read-only or tmpfs", v)
	}
	lowPort := false
	for _, l := range append(append([]string{}, listenAddrs(cfg.Sockets)...), listenAddrs(cfg.Syslog)...) {
		if _, rest, ok := strings.Cut(l, "://"); ok && !strings.HasPrefix(l, "unix") {
			if i := strings.LastIndexByte(rest, ':'); i >= 0 {
				if p, err := strconv.Atoi(rest[i+1:]); err == nil && p < 1024 {
					lowPort = true
				}
			}
		}
	}
	caps := u.list("Service", "CapabilityBoundingSet")
	ambient := u.list("Service", "AmbientCapabilities")
	switch {
	case lowPort && (!slices.Equal(caps, []string{"CAP_NET_BIND_SERVICE"}) || !slices.Equal(ambient, []string{"CAP_NET_BIND_SERVICE"})):
		ps.addf("a listener below port 1024 needs exactly CAP_NET_BIND_SERVICE in CapabilityBoundingSet= and AmbientCapabilities=")
	case !lowPort && (len(caps) > 0 || len(ambient) > 0 || len(u.sections["Service"]["CapabilityBoundingSet"]) == 0):
		ps.addf("the agent needs no capability: want an empty CapabilityBoundingSet= and no AmbientCapabilities=")
	}
	if v := svc("ProtectHome"); v == "yes" || v == "true" || v == "tmpfs" {
		for _, f := range cfg.Files {
			for _, p := range f.Paths {
				if p == "/home" || p == "/root" || strings.HasPrefix(p, "/home/") || strings.HasPrefix(p, "/root/") || strings.HasPrefix(p, "/run/user/") {
					ps.addf("files path %s is hidden by ProtectHome=%s", p, v)
				}
			}
		}
	}
	if w := u.list("Install", "WantedBy"); !slices.Contains(w, "multi-user.target") {
		ps.addf("[Install] WantedBy=%v, want multi-user.target", w)
	}
	return ps
}

// socketPaths returns the file system paths of the unix listeners.
func socketPaths(ls []agentListener) []string {
	var out []string
	for _, l := range listenAddrs(ls) {
		if scheme, rest, ok := strings.Cut(l, "://"); ok && strings.HasPrefix(scheme, "unix") {
			out = append(out, rest)
		}
	}
	return out
}

func loadSystemdConfig(t *testing.T) agentConfig {
	t.Helper()
	cfg, err := decodeAgentConfig(string(readFile(t, "infra/systemd/agent.yaml")))
	if err != nil {
		t.Fatalf("infra/systemd/agent.yaml: %v", err)
	}
	return cfg
}

func TestSystemdUnit(t *testing.T) {
	src := string(readFile(t, "infra/systemd/kinlog-agent.service"))
	cfg := loadSystemdConfig(t)
	requireNone(t, "infra/systemd/agent.yaml", checkAgentConfig(cfg))
	requireNone(t, "infra/systemd/kinlog-agent.service", checkSystemdUnit(src, cfg))

	// The example ships to the stream the consumer reads, and uses every kind of input.
	consumer, err := loadManifests(t).kinlogConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Stream != consumer.Stream {
		t.Errorf("infra/systemd/agent.yaml stream %q, but the consumer reads %q", cfg.Stream, consumer.Stream)
	}
	if len(cfg.Files) == 0 || len(cfg.Sockets) == 0 || len(cfg.Syslog) == 0 {
		t.Errorf("infra/systemd/agent.yaml: want an example of each input (files, sockets, syslog)")
	}
	if port, err := cfg.listenPort(); err != nil || !strings.HasPrefix(cfg.HTTP.Listen, "127.0.0.1:") || port == "" {
		t.Errorf("infra/systemd/agent.yaml: http.listen %q should be local: the host's network is not a pod's", cfg.HTTP.Listen)
	}

	// systemd's own reading of the unit. Only where systemd-analyze is installed: it is a
	// part of systemd, not of the Go toolchain, and without it this one sub-check is not
	// run (the structural checks above still are).
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not found: systemd-analyze verify not run")
		return
	}
	requireNone(t, "systemd-analyze", systemdAnalyze(t.TempDir(), src))

	// And it does complain.
	unhardened := src
	if i, j := strings.Index(src, "\nNoNewPrivileges=yes"), strings.Index(src, "\n[Install]"); i >= 0 && j > i {
		unhardened = src[:i] + src[j:]
	}
	for _, tc := range []struct{ name, unit, want string }{
		{"unknown key", strings.Replace(src, "\nRestart=always", "\nRestart=always\nRestartSecs=1", 1), "systemd-analyze verify"},
		{"bad value", strings.Replace(src, "\nProtectSystem=strict", "\nProtectSystem=very", 1), "systemd-analyze verify"},
		{"exposure", unhardened, "exposure above 2.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.unit == src {
				t.Fatal("the edit did not apply; update the test")
			}
			if n, _ := systemdVersion(); tc.want == "exposure above 2.5" && n < 250 {
				t.Skipf("systemd %d has no offline security analysis", n)
			}
			requireProblem(t, systemdAnalyze(t.TempDir(), tc.unit), tc.want)
		})
	}
}

// systemdAnalyze runs `systemd-analyze verify` on a copy of the unit (in dir) whose
// ExecStart binary is a stub, since verify requires it to exist. Any complaint about the unit
// is a problem: verify exits 0 on unknown keys and bad values and only warns. With systemd
// 250 or later, an exposure level above 2.5 from `systemd-analyze security --offline` is one
// too.
func systemdAnalyze(dir, src string) problems {
	var ps problems
	stub := filepath.Join(dir, "kinlog")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		return append(ps, err)
	}
	if !strings.Contains(src, "ExecStart="+agentBinary+" ") {
		ps.addf("ExecStart does not run %s", agentBinary)
		return ps
	}
	unit := filepath.Join(dir, "kinlog-agent.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(src, "ExecStart="+agentBinary+" ", "ExecStart="+stub+" ")), 0o644); err != nil {
		return append(ps, err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput()
	var complaints []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "kinlog-agent.service") {
			complaints = append(complaints, l)
		}
	}
	if err != nil || len(complaints) > 0 {
		ps.addf("systemd-analyze verify: %v: %s", err, strings.TrimSpace(string(out)))
	}

	if n, err := systemdVersion(); err != nil || n < 250 {
		return append(ps, err...) // no offline security analysis before systemd 250
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=25", "--no-pager", unit).CombinedOutput()
	if err != nil {
		ps.addf("systemd-analyze security: exposure above 2.5: %v: %s", err, lastLines(out, 1))
	}
	return ps
}

// systemdVersion returns the version of the installed systemd-analyze.
func systemdVersion() (int, problems) {
	var ps problems
	v, err := exec.Command("systemd-analyze", "--version").Output()
	m := regexp.MustCompile(`^systemd ([0-9]+)`).FindSubmatch(v)
	if err != nil || m == nil {
		ps.addf("systemd-analyze --version: %v %q", err, v)
		return 0, ps
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestSystemdUnitChecksCatch edits one thing at a time in the real unit and configuration
// and requires the check to report it.
func TestSystemdUnitChecksCatch(t *testing.T) {
	src := string(readFile(t, "infra/systemd/kinlog-agent.service"))
	for _, tc := range []struct {
		name, old, new string
		cfg            func(c *agentConfig)
		want           string
	}{
		{"exec", "ExecStart=/usr/local/bin/kinlog agent --config /etc/kinlog/agent.yaml", "ExecStart=/usr/bin/kinlog agent", nil, "ExecStart=/usr/bin/kinlog agent, want"},
		{"two execs", "ExecStart=/usr/local/bin/kinlog agent --config /etc/kinlog/agent.yaml", "ExecStart=/bin/true\nExecStart=/usr/local/bin/kinlog agent --config /etc/kinlog/agent.yaml", nil, "2 ExecStart= lines"},
		{"restart", "Restart=always", "Restart=on-failure", nil, "want always"},
		{"notify", "Type=simple", "Type=notify", nil, "want simple or exec"},
		{"kill signal", "KillSignal=SIGTERM", "KillSignal=SIGKILL", nil, "drains and stores positions"},
		{"stop timeout", "TimeoutStopSec=60s", "TimeoutStopSec=30s", nil, "not longer than the agent's shutdown.timeout"},
		{"stop timeout minutes", "TimeoutStopSec=60s", "TimeoutStopSec=0min 20s", nil, "not longer than"},
		{"no stop timeout", "TimeoutStopSec=60s", "", nil, "TimeoutStopSec= not set"},
		{"longer shutdown", "", "", func(c *agentConfig) { c.Shutdown.Timeout = "2m" }, "not longer than"},
		{"state dir", "StateDirectory=kinlog-agent", "StateDirectory=kinlog", nil, "does not give the config's state_dir"},
		{"runtime dir", "RuntimeDirectory=kinlog", "RuntimeDirectory=kinlog-agent", nil, "neither RuntimeDirectory= nor in ReadWritePaths="},
		{"socket elsewhere", "", "", func(c *agentConfig) { c.Sockets[0].Listen = "unix:///var/run/app/agent.sock" }, "neither RuntimeDirectory="},
		{"needless write", "NoNewPrivileges=yes", "NoNewPrivileges=yes\nReadWritePaths=/var/log", nil, "ReadWritePaths=/var/log: the agent does not need it"},
		{"root", "User=kinlog", "User=root", nil, "must not run as root"},
		{"no user", "User=kinlog\n", "", nil, "would run as root"},
		{"no adm", "SupplementaryGroups=adm", "SupplementaryGroups=", nil, "lacks adm"},
		{"new privileges", "NoNewPrivileges=yes", "NoNewPrivileges=no", nil, "NoNewPrivileges= must be yes"},
		{"protect system", "ProtectSystem=strict", "ProtectSystem=full", nil, "want strict"},
		{"protect home", "ProtectHome=yes", "ProtectHome=no", nil, "ProtectHome="},
		{"private tmp", "PrivateTmp=yes", "", nil, "PrivateTmp= must be yes"},
		{"capabilities", "CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_DAC_OVERRIDE\n", nil, "needs no capability"},
		{"no bounding set", "CapabilityBoundingSet=\n", "", nil, "needs no capability"},
		{"low port", "", "", func(c *agentConfig) { c.Syslog[0].Listen = "udp://127.0.0.1:514" }, "CAP_NET_BIND_SERVICE"},
		{"hidden path", "", "", func(c *agentConfig) { c.Files[0].Paths = []string{"/home/app/logs/*.log"} }, "hidden by ProtectHome"},
		{"install", "WantedBy=multi-user.target", "WantedBy=", nil, "want multi-user.target"},
		{"syntax", "[Install]", "[Install", nil, "bad section header"},
		{"key", "Restart=always", "Restart always", nil, "is not Key=Value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whole lines only: the comments mention settings too.
			if tc.old != "" && !strings.Contains(src, "\n"+tc.old) {
				t.Fatalf("the unit no longer has a line %q; update the test", tc.old)
			}
			cfg := loadSystemdConfig(t)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			mutated := src
			if tc.old != "" {
				mutated = strings.Replace(src, "\n"+tc.old, "\n"+tc.new, 1)
			}
			requireProblem(t, checkSystemdUnit(mutated, cfg), tc.want)
		})
	}
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit("# c\n[Service]\n; c\nExecStart=/bin/a \\\n  --b\nX=1\nX=\nX=2 3\n")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := u.get("Service", "ExecStart"); v != "/bin/a  --b" {
		t.Errorf("continued ExecStart = %q", v)
	}
	if l := u.list("Service", "X"); !slices.Equal(l, []string{"2", "3"}) {
		t.Errorf("list after reset = %v", l)
	}
	for _, bad := range []string{"X=1\n", "[A]\n[A]\n", "[A]\nno value\n", "[A]\nX=\\"} {
		if _, err := parseUnit(bad); err == nil {
			t.Errorf("parseUnit(%q) accepted it", bad)
		}
	}
}

func TestParseTimespan(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90": 90 * time.Second, "60s": time.Minute, "1min 30s": 90 * time.Second, "1m30s": 90 * time.Second,
		"2h": 2 * time.Hour, "500ms": 500 * time.Millisecond, "1.5s": 1500 * time.Millisecond,
	} {
		if got, err := parseTimespan(in); err != nil || got != want {
			t.Errorf("parseTimespan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "s", "10 parsecs", "-1s"} {
		if _, err := parseTimespan(bad); err == nil {
			t.Errorf("parseTimespan(%q) accepted it", bad)
		}
	}
}

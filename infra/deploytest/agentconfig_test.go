package deploytest

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// agentConfig is the part of `kinlog agent`'s configuration that the deployment checks
// cross-reference (ports, paths, timeouts). The agent itself is the authority on its keys:
// cmd/kinlog's TestAgentShippedConfigs runs `kinlog agent --check` on every shipped
// agent.yaml. Sizes and durations are strings here: they may be numbers or carry units.
type agentConfig struct {
	Stream   string `yaml:"stream"`
	StateDir string `yaml:"state_dir"`
	Host     string `yaml:"host"`
	HTTP     struct {
		Listen string `yaml:"listen"`
	} `yaml:"http"`
	Log struct {
		Format string `yaml:"format"`
		Level  string `yaml:"level"`
	} `yaml:"log"`
	Shutdown struct {
		Timeout string `yaml:"timeout"`
	} `yaml:"shutdown"`
	PartitionKey string `yaml:"partition_key"`
	Producer     struct {
		Aggregate     *bool  `yaml:"aggregate"`
		RateLimit     string `yaml:"rate_limit"`
		MaxRecordSize string `yaml:"max_record_size"`
		SpoolSync     string `yaml:"spool_sync"`
		SpoolMaxBytes string `yaml:"spool_max_bytes"`
	} `yaml:"producer"`
	PositionsInterval string           `yaml:"positions_interval"`
	Files             []agentFileInput `yaml:"files"`
	Sockets           []agentListener  `yaml:"sockets"`
	Syslog            []agentListener  `yaml:"syslog"`
}

type agentListener struct {
	Listen   string `yaml:"listen"`
	MaxBytes string `yaml:"max_bytes"`
}

type agentFileInput struct {
	Paths        []string `yaml:"paths"`
	Exclude      []string `yaml:"exclude"`
	Format       string   `yaml:"format"`
	StartAt      string   `yaml:"start_at"`
	Service      string   `yaml:"service"`
	MaxLineBytes string   `yaml:"max_line_bytes"`
	Multiline    *struct {
		StartPattern string `yaml:"start_pattern"`
		MaxBytes     string `yaml:"max_bytes"`
		FlushTimeout string `yaml:"flush_timeout"`
	} `yaml:"multiline"`
	PollInterval string `yaml:"poll_interval"`
	RotateWait   string `yaml:"rotate_wait"`
}

// decodeAgentConfig decodes an agent.yaml: syntax, duplicate keys and wrong types are
// errors (unknown keys are the agent's to reject).
func decodeAgentConfig(src string) (agentConfig, error) {
	var c agentConfig
	if _, err := decodeAll(strings.NewReader(src)); err != nil {
		return c, err
	}
	if err := yaml.NewDecoder(strings.NewReader(src)).Decode(&c); err != nil {
		return c, err
	}
	return c, nil
}

// listenPort returns the port of an http.listen address ("" for "-").
func (c agentConfig) listenPort() (string, error) {
	if c.HTTP.Listen == "-" {
		return "", nil
	}
	_, port, err := net.SplitHostPort(c.HTTP.Listen)
	if err != nil || port == "" {
		return "", fmt.Errorf("http.listen %q is not host:port", c.HTTP.Listen)
	}
	return port, nil
}

var sizeRe = regexp.MustCompile(`^[0-9]+(B|KiB|MiB|GiB|KB|MB|GB)?$`)

// checkAgentConfig returns what the agent would reject in c, or what makes an example
// configuration useless. It is structural: it checks the schema's values, not the agent's
// behaviour.
func checkAgentConfig(c agentConfig) problems {
	var ps problems
	if c.Stream == "" {
		ps.addf("agent.yaml: stream is required")
	}
	if !path.IsAbs(c.StateDir) || path.Clean(c.StateDir) != c.StateDir {
		ps.addf("agent.yaml: state_dir %q must be a clean absolute path", c.StateDir)
	}
	if len(c.Files)+len(c.Sockets)+len(c.Syslog) == 0 {
		ps.addf("agent.yaml: no input (files, sockets or syslog)")
	}
	if _, err := c.listenPort(); err != nil {
		ps.addf("agent.yaml: %v", err)
	}
	if d, err := time.ParseDuration(c.Shutdown.Timeout); err != nil || d <= 0 {
		ps.addf("agent.yaml: shutdown.timeout %q is not a positive duration", c.Shutdown.Timeout)
	}
	oneOf := func(what, v string, allowed ...string) {
		if v != "" && !slices.Contains(allowed, v) {
			ps.addf("agent.yaml: %s %q, want one of %v", what, v, allowed)
		}
	}
	oneOf("log.format", c.Log.Format, "json", "text")
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	if pk := c.PartitionKey; pk != "" && pk != "random" && pk != "origin" && (!strings.HasPrefix(pk, "field:") || pk == "field:") {
		ps.addf("agent.yaml: partition_key %q, want random, origin or field:<member>", pk)
	}
	oneOf("producer.spool_sync", c.Producer.SpoolSync, "write", "fsync", "batched")
	for _, s := range []struct{ name, v string }{
		{"producer.max_record_size", c.Producer.MaxRecordSize},
		{"producer.spool_max_bytes", c.Producer.SpoolMaxBytes},
	} {
		if s.v != "" && !sizeRe.MatchString(s.v) {
			ps.addf("agent.yaml: %s %q is not a size", s.name, s.v)
		}
	}
	for i, f := range c.Files {
		where := fmt.Sprintf("agent.yaml: files[%d]", i)
		if len(f.Paths) == 0 {
			ps.addf("%s: no paths", where)
		}
		for _, p := range append(slices.Clone(f.Paths), f.Exclude...) {
			if _, err := path.Match(p, ""); err != nil {
				ps.addf("%s: glob %q: %v", where, p, err)
			}
		}
		for _, p := range f.Paths {
			if !path.IsAbs(p) {
				ps.addf("%s: path %q is not absolute", where, p)
			}
		}
		oneOf(where+" format", f.Format, "auto", "json", "text", "cri", "docker")
		oneOf(where+" start_at", f.StartAt, "beginning", "end")
		durations := []struct{ name, v string }{{"poll_interval", f.PollInterval}, {"rotate_wait", f.RotateWait}}
		sizes := []struct{ name, v string }{{"max_line_bytes", f.MaxLineBytes}}
		if m := f.Multiline; m != nil {
			if _, err := regexp.Compile(m.StartPattern); err != nil || m.StartPattern == "" {
				ps.addf("%s: multiline.start_pattern %q is not a regular expression: %v", where, m.StartPattern, err)
			}
			durations = append(durations, struct{ name, v string }{"multiline.flush_timeout", m.FlushTimeout})
			sizes = append(sizes, struct{ name, v string }{"multiline.max_bytes", m.MaxBytes})
		}
		for _, d := range durations {
			if v, err := time.ParseDuration(d.v); d.v != "" && (err != nil || v <= 0) {
				ps.addf("%s: %s %q is not a positive duration", where, d.name, d.v)
			}
		}
		for _, s := range sizes {
			if s.v != "" && !sizeRe.MatchString(s.v) {
				ps.addf("%s: %s %q is not a size", where, s.name, s.v)
			}
		}
	}
	listens := func(what string, addrs []string, schemes ...string) {
		for _, a := range addrs {
			scheme, rest, ok := strings.Cut(a, "://")
			switch {
			case !ok || !slices.Contains(schemes, scheme):
				ps.addf("agent.yaml: %s listen %q, want one of the schemes %v", what, a, schemes)
			case strings.HasPrefix(scheme, "unix"):
				if !path.IsAbs(rest) {
					ps.addf("agent.yaml: %s listen %q: the socket path must be absolute", what, a)
				}
			default:
				if _, _, err := net.SplitHostPort(rest); err != nil {
					ps.addf("agent.yaml: %s listen %q: %v", what, a, err)
				}
			}
		}
	}
	listens("sockets", listenAddrs(c.Sockets), "unix", "tcp")
	listens("syslog", listenAddrs(c.Syslog), "udp", "tcp", "unix", "unixgram")
	for _, l := range append(slices.Clone(c.Sockets), c.Syslog...) {
		if l.MaxBytes != "" && !sizeRe.MatchString(l.MaxBytes) {
			ps.addf("agent.yaml: listener %s: max_bytes %q is not a size", l.Listen, l.MaxBytes)
		}
	}
	if v, err := time.ParseDuration(c.PositionsInterval); c.PositionsInterval != "" && (err != nil || v <= 0) {
		ps.addf("agent.yaml: positions_interval %q is not a positive duration", c.PositionsInterval)
	}
	return ps
}

func listenAddrs(ls []agentListener) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Listen)
	}
	return out
}

// excluded reports whether an agent file input skips name: an exclude glob matches the full
// path or the base name.
func (f agentFileInput) excluded(name string) bool {
	for _, g := range f.Exclude {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
		if ok, _ := path.Match(g, path.Base(name)); ok {
			return true
		}
	}
	return false
}

// reads reports whether the input reads name: a path glob matches and no exclude does.
func (f agentFileInput) reads(name string) bool {
	for _, g := range f.Paths {
		if ok, _ := path.Match(g, name); ok {
			return !f.excluded(name)
		}
	}
	return false
}

// agentConfigFile is where the systemd unit and the DaemonSet read the configuration.
const agentConfigFile = "/etc/kinlog/agent.yaml"

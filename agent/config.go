package agent

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Format says how the lines of a file are read.
type Format string

// The formats of a file input.
const (
	// FormatAuto ships a line that is a JSON object as it is and wraps any other line in a
	// JSON object (see [FormatText]). The default.
	FormatAuto Format = "auto"
	// FormatJSON is FormatAuto, but a line that is not a JSON object is counted as
	// malformed (kinlog_agent_lines_malformed_total) before it is wrapped like text.
	FormatJSON Format = "json"
	// FormatText wraps every line: {"time":…,"message":<line>,"host":…,"origin":{"file":…}}.
	FormatText Format = "text"
	// FormatCRI reads the CRI log format of containerd and CRI-O (Kubernetes pod logs):
	// partial lines are joined; the log line inside is read as FormatAuto and gets the
	// pod, namespace and container from the file's path.
	FormatCRI Format = "cri"
	// FormatDocker reads Docker's json-file log driver, like FormatCRI.
	FormatDocker Format = "docker"
)

// Defaults of a file input.
const (
	DefaultMaxLineBytes      = 1 << 20
	DefaultMultilineMaxBytes = 512 << 10
	DefaultMultilineFlush    = time.Second
	DefaultPollInterval      = time.Second
	DefaultRotateWait        = 5 * time.Second
)

// FileInput tails the files that match its globs.
type FileInput struct {
	// Paths are globs (filepath.Match syntax, plus ** for any number of directories is not
	// supported); files that appear later are picked up.
	Paths []string
	// Exclude are globs matched against a file's full path and its base name.
	Exclude []string
	// Format of the lines. Default: FormatAuto.
	Format Format
	// StartAt is "beginning" (the default) or "end": where to start in a file that is
	// already there at the agent's first start in its state directory. Files that appear
	// later, and every file after the first start, are read from their beginning or their
	// stored position, so no line is skipped.
	StartAt string
	// Service, when set, is put as "service" on records built from text lines.
	Service string
	// MaxLineBytes bounds a line (a record, with multiline). A longer line is cut to this
	// size, shipped with "truncated":true and its original size, and counted. Default 1 MiB.
	MaxLineBytes int
	// Multiline joins lines into records.
	Multiline Multiline
	// PollInterval is how often the globs are scanned and every file checked for new
	// data; in between, file-system notifications name the files to read at once (and
	// the directories of matched files are watched as they are found). Default 1s.
	PollInterval time.Duration
	// RotateWait is how long a file that was renamed away or deleted is kept open after it
	// last grew (a writer may still append before it reopens its log). Default 5s.
	RotateWait time.Duration

	startPattern *regexp.Regexp
}

// Multiline joins a record's lines: a record starts at a line matching StartPattern and
// takes every following line that does not.
type Multiline struct {
	// StartPattern is a regular expression (Go RE2 syntax); empty turns multiline off.
	StartPattern string
	// MaxBytes bounds a joined record; at the bound it is shipped truncated. Default
	// 512 KiB.
	MaxBytes int
	// FlushTimeout ships a record when no line came for this long. Default 1s.
	FlushTimeout time.Duration
}

// Listener is one socket input.
type Listener struct {
	// Listen is unix:///path (stream), unixgram:///path (datagram, syslog only),
	// tcp://127.0.0.1:port or udp://127.0.0.1:port (syslog only).
	Listen string
	// MaxBytes bounds a line or message; longer ones are cut and counted. Default 1 MiB.
	MaxBytes int
}

// ErrConfig marks a configuration error; the message names the key.
var ErrConfig = errors.New("agent configuration")

func configErr(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, key, fmt.Sprintf(format, args...))
}

func (in *FileInput) validate(key string) error {
	if len(in.Paths) == 0 {
		return configErr(key+".paths", "at least one glob is required")
	}
	for _, p := range append(append([]string(nil), in.Paths...), in.Exclude...) {
		if _, err := filepath.Match(p, ""); err != nil {
			return configErr(key+".paths", "bad glob %q: %v", p, err)
		}
	}
	switch in.Format {
	case "":
		in.Format = FormatAuto
	case FormatAuto, FormatJSON, FormatText, FormatCRI, FormatDocker:
	default:
		return configErr(key+".format", "%q is not one of auto, json, text, cri, docker", in.Format)
	}
	switch in.StartAt {
	case "":
		in.StartAt = "beginning"
	case "beginning", "end":
	default:
		return configErr(key+".start_at", "%q is not beginning or end", in.StartAt)
	}
	if in.MaxLineBytes == 0 {
		in.MaxLineBytes = DefaultMaxLineBytes
	}
	if in.MaxLineBytes < 64 {
		return configErr(key+".max_line_bytes", "%d is below 64", in.MaxLineBytes)
	}
	if in.PollInterval == 0 {
		in.PollInterval = DefaultPollInterval
	}
	if in.PollInterval < time.Millisecond {
		return configErr(key+".poll_interval", "%s is below 1ms", in.PollInterval)
	}
	if in.RotateWait == 0 {
		in.RotateWait = DefaultRotateWait
	}
	if in.Multiline.StartPattern != "" {
		re, err := regexp.Compile(in.Multiline.StartPattern)
		if err != nil {
			return configErr(key+".multiline.start_pattern", "%v", err)
		}
		in.startPattern = re
		if in.Multiline.MaxBytes == 0 {
			in.Multiline.MaxBytes = DefaultMultilineMaxBytes
		}
		if in.Multiline.MaxBytes < 64 {
			return configErr(key+".multiline.max_bytes", "%d is below 64", in.Multiline.MaxBytes)
		}
		if in.Multiline.FlushTimeout == 0 {
			in.Multiline.FlushTimeout = DefaultMultilineFlush
		}
	}
	return nil
}

// parseListen splits a listener address into the network and address net.Listen takes.
func parseListen(key, s string, syslog bool) (network, addr string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "", "", configErr(key, "%q is not an address such as unix:///run/kinlog/agent.sock or tcp://127.0.0.1:5170", s)
	}
	switch u.Scheme {
	case "unix", "unixgram":
		if u.Scheme == "unixgram" && !syslog {
			return "", "", configErr(key, "unixgram is for syslog inputs; lines need a stream (unix://)")
		}
		p := u.Path
		if u.Host != "" { // unix://relative/path
			p = u.Host + u.Path
		}
		if p == "" {
			return "", "", configErr(key, "%q has no socket path", s)
		}
		return u.Scheme, p, nil
	case "tcp", "udp":
		if u.Scheme == "udp" && !syslog {
			return "", "", configErr(key, "udp is for syslog inputs; lines need a stream (tcp://)")
		}
		if u.Host == "" || !strings.Contains(u.Host, ":") {
			return "", "", configErr(key, "%q needs host:port", s)
		}
		return u.Scheme, u.Host, nil
	}
	return "", "", configErr(key, "scheme %q is not unix, unixgram, tcp or udp", u.Scheme)
}

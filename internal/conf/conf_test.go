// Package conf loads kinlog's configuration: a YAML file, then KINLOG_* environment
// variables, then --set key=value overrides, with errors that name the dotted key. Every
// command of the kinlog binary and the Lambda function (cmd/kinlog-lambda) load theirs
// through it, so a key means the same everywhere.
package conf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Stream  string   `yaml:"stream"`
	Workers int      `yaml:"workers"`
	Verbose bool     `yaml:"verbose"`
	Every   Duration `yaml:"every"`
	Archive struct {
		Bucket string   `yaml:"bucket"`
		Size   ByteSize `yaml:"buffer_size"`
		Dims   []string `yaml:"dimensions"`
	} `yaml:"archive"`
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kinlog.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigLayers(t *testing.T) {
	cfg := testConfig{Stream: "default", Workers: 1}
	cfg.Archive.Size = 5 << 20
	path := writeFile(t, "stream: from-file\nevery: 30s\narchive:\n  bucket: b1\n  dimensions: [service]\n")
	env := []string{"KINLOG_ARCHIVE_BUCKET=from-env", "KINLOG_WORKERS=3", "OTHER=1", "KINLOG_ARCHIVE_BUFFER_SIZE=128KiB"}
	if err := Load(&cfg, path, env, []string{"verbose=true", "archive.dimensions=service, level"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Stream != "from-file" || cfg.Workers != 3 || !cfg.Verbose || time.Duration(cfg.Every) != 30*time.Second ||
		cfg.Archive.Bucket != "from-env" || cfg.Archive.Size != 128<<10 || strings.Join(cfg.Archive.Dims, "|") != "service|level" {
		t.Fatalf("layers applied wrongly: %+v", cfg)
	}
}

func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, file string
		env, sets  []string
		want       []string
	}{
		{"unknown key in file", "stream: s\narchve:\n  bucket: b\n", nil, nil, []string{"config archve (file ", "line 2", "unknown key", "archive"}},
		{"unknown nested key in file", "archive:\n  bucket: b\n  bukket: c\n", nil, nil, []string{"archive.bukket", "line 3", "known keys here: bucket, buffer_size, dimensions"}},
		{"bad duration in file", "every: soon\n", nil, nil, []string{"config every", "line 1", "duration"}},
		{"bad int in file", "workers: lots\n", nil, nil, []string{"config workers", "line 1", "want an integer, got `lots`"}},
		{"bad size in file", "archive:\n  buffer_size: 5 parsecs\n", nil, nil, []string{"archive.buffer_size", "line 2", "5MiB"}},
		{"mapping for a list", "archive:\n  dimensions: {a: b}\n", nil, nil, []string{"archive.dimensions", "want a list"}},
		{"bad size in env", "", []string{"KINLOG_ARCHIVE_BUFFER_SIZE=lots"}, nil, []string{"archive.buffer_size", "KINLOG_ARCHIVE_BUFFER_SIZE", "5MiB"}},
		{"bad int in env", "", []string{"KINLOG_WORKERS=two"}, nil, []string{"workers", "integer"}},
		{"unknown key in --set", "", nil, []string{"archive.bukket=x"}, []string{"archive.bukket", "unknown key", "archive.bucket"}},
		{"--set without value", "", nil, []string{"verbose"}, []string{"key=value"}},
		{"bad bool in --set", "", nil, []string{"verbose=maybe"}, []string{"verbose", "true or false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg testConfig
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			err := Load(&cfg, path, tt.env, tt.sets)
			if err == nil {
				t.Fatal("Load accepted bad input")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	var ce *Error
	var cfg testConfig
	if err := Load(&cfg, "", []string{"KINLOG_WORKERS=x"}, nil); !errors.As(err, &ce) || ce.Key != "workers" {
		t.Errorf("error %v is not a Error for key workers", err)
	}
	if err := Load(&cfg, writeFile(t, ""), nil, nil); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestByteSizeText(t *testing.T) {
	for in, want := range map[string]ByteSize{"5MiB": 5 << 20, "512 KiB": 512 << 10, "1MB": 1e6, "1048576": 1 << 20, "0": 0} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q → %d, %v; want %d", in, s, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "5XB", "99999999999GiB"} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if b, _ := ByteSize(5 << 20).MarshalText(); string(b) != "5MiB" {
		t.Errorf("5MiB prints as %s", b)
	}
}

func TestConfigDidYouMean(t *testing.T) {
	var cfg testConfig
	err := Load(&cfg, writeFile(t, "archive:\n  buckt: b\n"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "did you mean bucket?") {
		t.Errorf("file: %v", err)
	}
	err = Load(&cfg, "", nil, []string{"archive.bukket=b"})
	if err == nil || !strings.Contains(err.Error(), "did you mean archive.bucket?") {
		t.Errorf("--set: %v", err)
	}
	if err := Load(&cfg, writeFile(t, "zzzzzz: 1\n"), nil, nil); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("a key far from all: %v", err)
	}
}

func TestEnvWarnings(t *testing.T) {
	var cfg testConfig
	got := EnvWarnings(&cfg, []string{"KINLOG_ARCHIVE_BUCKT=x", "KINLOG_WORKERS=2", "KINLOG_DUCKDB=/x", "KINLOG_CONFIG=a.yaml", "KINLOG_STREEM=s", "PATH=/bin"})
	want := []string{
		"KINLOG_ARCHIVE_BUCKT is not a configuration key and is ignored; did you mean KINLOG_ARCHIVE_BUCKET?",
		"KINLOG_STREEM is not a configuration key and is ignored; did you mean KINLOG_STREAM?",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings %q, want %q", got, want)
	}
}

// TestOptionalKeysFromEnvAndSet sets the optional (pointer) keys of the shared sections —
// sink.s3.dedup, analytics.enabled — from the environment and --set, and names the key of
// a bad value.
func TestOptionalKeysFromEnvAndSet(t *testing.T) {
	var cfg struct {
		Sink      Sink      `yaml:"sink"`
		Analytics Analytics `yaml:"analytics"`
	}
	if err := Load(&cfg, "", []string{"KINLOG_SINK_S3_DEDUP=false"}, []string{"analytics.enabled=false"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Sink.S3.Dedup == nil || *cfg.Sink.S3.Dedup || cfg.Analytics.Enabled == nil || *cfg.Analytics.Enabled {
		t.Fatalf("dedup %v, analytics.enabled %v", cfg.Sink.S3.Dedup, cfg.Analytics.Enabled)
	}
	err := Load(&cfg, "", []string{"KINLOG_SINK_S3_DEDUP=maybe"}, nil)
	if err == nil || !strings.Contains(err.Error(), "sink.s3.dedup") || !strings.Contains(err.Error(), "want true or false") {
		t.Fatalf("bad bool: %v", err)
	}
}

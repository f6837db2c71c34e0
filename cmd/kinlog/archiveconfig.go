package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kinlog/kinlog/internal/conf"
	"github.com/kinlog/kinlog/sinks/prefix"
)

// archiveConfig is where and how the worker writes the archive, as its configuration says:
// what `query` and `athena-ddl` need to read it without the user retyping it.
type archiveConfig struct {
	Bucket, Prefix, AnalyticsPrefix, Encoding string
	PathStyle                                 bool
}

// addConfigFlags adds --config and --set (the worker's configuration) to fs.
func addConfigFlags(fs *flag.FlagSet, sets *stringList) *string {
	fs.Var(sets, "set", "override a key of the worker's config: --set sink.s3.bucket=logs (repeatable)")
	return fs.String("config", os.Getenv("KINLOG_CONFIG"), "the worker's YAML config file: bucket, prefixes, encoding and path style come from it (default $KINLOG_CONFIG)")
}

// applyArchiveConfig fills the archive flags of fs that the user did not set from the
// worker's configuration (when one is given: a file or --set).
func applyArchiveConfig(fs *flag.FlagSet, path string, sets []string, cmd string, flags map[string]func(archiveConfig) string) error {
	if path == "" && len(sets) == 0 {
		return nil
	}
	cfg := defaultConsumeConfig()
	if err := conf.Load(&cfg, path, os.Environ(), sets); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	a := archiveConfig{Bucket: cfg.Sink.S3.Bucket, Prefix: cfg.Sink.S3.Prefix, AnalyticsPrefix: cfg.Analytics.Prefix,
		Encoding: cfg.Sink.S3.Encoding, PathStyle: cfg.Sink.S3.PathStyle}
	// !{kinlog:stream} is the stream's name, as the sink binds it. With several streams it
	// stays unbound: the reader refuses it, asking for a prefix with one stream's name.
	if streams := cfg.streams(); len(streams) == 1 && streams[0] != "" {
		a.Prefix, a.AnalyticsPrefix = prefix.BindStream(a.Prefix, streams[0]), prefix.BindStream(a.AnalyticsPrefix, streams[0])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, value := range flags {
		if set[name] {
			continue // the flag wins over the file
		}
		if v := value(a); v != "" {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%w: %s from the config: %v (see kinlog %s --help)", errUsage, name, err, cmd)
			}
		}
	}
	return nil
}

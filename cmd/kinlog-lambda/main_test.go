package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	base := []string{"KINLOG_SINK_S3_BUCKET=logs", "KINLOG_PROGRESS_TABLE=kinlog-progress"}
	for _, tt := range []struct {
		name           string
		args, env      []string
		code           int
		stdout, stderr []string
	}{
		{"help", []string{"--help"}, nil, 0, []string{"bootstrap of kinlog's serverless mode", "KINLOG_PROGRESS_TABLE"}, nil},
		{"wrong flag", []string{"--chek"}, base, 2, nil, []string{"flag provided but not defined: -chek", "Usage:"}},
		{"argument", []string{"serve"}, base, 2, nil, []string{`unexpected argument "serve"`}},
		{"no bucket", []string{"--check"}, base[1:], 2, nil, []string{"sink.s3.bucket", "required"}},
		{"no table", []string{"--check"}, base[:1], 2, nil, []string{"progress.table", "KINLOG_PROGRESS_TABLE"}},
		{"bad encoding", []string{"--check"}, append(base, "KINLOG_SINK_S3_ENCODING=avro"), 2, nil, []string{"sink.s3.encoding"}},
		{"bad size", []string{"--check"}, append(base, "KINLOG_SINK_S3_FLUSH_SIZE=lots"), 2, nil, []string{"sink.s3.flush_size", "KINLOG_SINK_S3_FLUSH_SIZE"}},
		{"typo warned", []string{"--check"}, append(base, "KINLOG_SINK_S3_ENCODNG=parquet"), 0, []string{"bucket: logs"}, []string{"did you mean KINLOG_SINK_S3_ENCODING?"}},
		{"check", []string{"--check"}, append(base, "KINLOG_SINK_S3_ENCODING=parquet"), 0, []string{"encoding: parquet", "compression: zstd", "table: kinlog-progress"}, nil},
		{"outside Lambda", nil, base, 2, nil, []string{"AWS_LAMBDA_RUNTIME_API is not set"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, tt.env, &stdout, &stderr); code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, stderr.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout does not say %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

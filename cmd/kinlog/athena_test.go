package main

import (
	"context"
	"strings"
	"testing"
)

// TestAthenaDDLKinlogID checks that the Parquet table declares the identity column, last, and
// the NDJSON table (whose objects do not store identities) does not.
func TestAthenaDDLKinlogID(t *testing.T) {
	out, stderr, code := runKinlog(t, context.Background(), "", "athena-ddl", "--bucket", "arch", "--encoding", "parquet")
	if code != 0 || !strings.Contains(out, "  `partition_key` string,\n  `kinlog_id` string\n)\nCOMMENT 'kinlog archive'") {
		t.Fatalf("athena-ddl --encoding parquet: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = runKinlog(t, context.Background(), "", "athena-ddl", "--bucket", "arch")
	if code != 0 || strings.Contains(out, "kinlog_id") {
		t.Fatalf("athena-ddl --encoding ndjson: exit %d\n%s%s", code, out, stderr)
	}
}

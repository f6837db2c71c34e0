// Command interop deaggregates KPL aggregates with awslabs' Go deaggregator
// (github.com/awslabs/kinesis-aggregation/go/v2) and prints the user records it returns, so
// that a test of the main module (internal/kpl/interop_test.go) can check that aggregates
// built by kinlog's kpl.Aggregator, identity tags included, read back unchanged there.
//
// This is a module of its own, so that the deaggregator never becomes a dependency of
// kinlog: `go test ./...` at the repository root does not enter this directory.
//
//	go run . <aggregates.b64
//
// Input: one aggregate per line, base64 (standard encoding). Output: one JSON object per
// user record, in order:
//
//	{"agg":0,"sub":0,"pk":"…","ehk":"…","data":"<base64>","tags":[["kl.s","7"]]}
//
// agg is the input line of the aggregate (carried through DeaggregateRecords as the
// Kinesis record's SequenceNumber), pk and data are what DeaggregateRecords returns. It
// returns neither explicit hash keys nor tags (a kinesis types.Record has no field for
// them), so ehk (null when the record has none) and tags come from unmarshalling the same
// aggregate with the package's own protobuf schema (.../go/v2/records), the one
// DeaggregateRecords uses.
package main

import (
	"bufio"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/awslabs/kinesis-aggregation/go/v2/deaggregator"
	rec "github.com/awslabs/kinesis-aggregation/go/v2/records"
	"github.com/golang/protobuf/proto" //nolint:staticcheck // the deaggregator's own protobuf API
)

type userRecord struct {
	Agg  int        `json:"agg"`
	Sub  int        `json:"sub"`
	PK   string     `json:"pk"`
	EHK  *string    `json:"ehk"`
	Data []byte     `json:"data"`
	Tags [][]string `json:"tags"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
}

func run() error {
	var in []types.Record
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		data, err := base64.StdEncoding.DecodeString(sc.Text())
		if err != nil {
			return fmt.Errorf("line %d: %w", len(in)+1, err)
		}
		pk, seq := "aggregate", strconv.Itoa(len(in))
		in = append(in, types.Record{Data: data, PartitionKey: &pk, SequenceNumber: &seq})
	}
	if err := sc.Err(); err != nil {
		return err
	}
	out, err := deaggregator.DeaggregateRecords(in)
	if err != nil {
		return fmt.Errorf("DeaggregateRecords: %w", err)
	}
	// The same aggregates through the package's protobuf schema, for the explicit hash keys
	// and tags DeaggregateRecords drops.
	var schema [][]*rec.Record
	var ehkTables [][]string
	for i, r := range in {
		const magic, digest = 4, md5.Size
		if len(r.Data) <= magic+digest {
			return fmt.Errorf("aggregate %d: too short", i)
		}
		var agg rec.AggregatedRecord
		if err := proto.Unmarshal(r.Data[magic:len(r.Data)-digest], &agg); err != nil {
			return fmt.Errorf("aggregate %d: records schema: %w", i, err)
		}
		schema = append(schema, agg.Records)
		ehkTables = append(ehkTables, agg.ExplicitHashKeyTable)
	}
	enc := json.NewEncoder(os.Stdout)
	sub := make([]int, len(in))
	for _, r := range out {
		if r.SequenceNumber == nil || r.PartitionKey == nil {
			return fmt.Errorf("a user record without sequence number or partition key")
		}
		agg, err := strconv.Atoi(*r.SequenceNumber)
		if err != nil || agg < 0 || agg >= len(in) {
			return fmt.Errorf("user record with sequence number %q", *r.SequenceNumber)
		}
		i := sub[agg]
		sub[agg]++
		if i >= len(schema[agg]) {
			return fmt.Errorf("aggregate %d: DeaggregateRecords returned more records than the schema holds (not an aggregate to it?)", agg)
		}
		sr := schema[agg][i]
		u := userRecord{Agg: agg, Sub: i, PK: *r.PartitionKey, Data: r.Data, Tags: [][]string{}}
		if sr.ExplicitHashKeyIndex != nil {
			x := *sr.ExplicitHashKeyIndex
			if x >= uint64(len(ehkTables[agg])) {
				return fmt.Errorf("aggregate %d record %d: explicit hash key index %d out of range", agg, i, x)
			}
			u.EHK = &ehkTables[agg][x]
		}
		for _, t := range sr.Tags {
			u.Tags = append(u.Tags, []string{t.GetKey(), t.GetValue()})
		}
		if err := enc.Encode(u); err != nil {
			return err
		}
	}
	for agg, n := range sub {
		if n != len(schema[agg]) {
			return fmt.Errorf("aggregate %d: DeaggregateRecords returned %d records, the schema holds %d", agg, n, len(schema[agg]))
		}
	}
	// Say which deaggregator ran (stderr, for the test's log).
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/awslabs/kinesis-aggregation/go/v2" {
				fmt.Fprintln(os.Stderr, "interop:", d.Path, d.Version)
			}
		}
	}
	return nil
}

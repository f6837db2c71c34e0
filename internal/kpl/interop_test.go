package kpl_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kinlog/kinlog/internal/kpl"
)

// TestDeaggregatorsIgnoreIdentityTags shows that awslabs' deaggregators read aggregates
// built by kpl.Aggregator with identities (several origins and their runs, spans, floors,
// records with and without identity and with and without explicit hash key, an origin too
// long to be encoded) as the same user records, in the same order, as the aggregates
// without them: the same data, partition keys and explicit hash keys as were added, and as
// many. It runs the Go deaggregator (github.com/awslabs/kinesis-aggregation/go/v2, pinned
// in the separate module internal/kpl/interop, so that it is no dependency of kinlog) and
// the Node one (npm aws-kinesis-agg, pinned in infra/local/stack, which installs it), each
// on the aggregates and on their twins built without identities.
//
// Neither returns tags with its user records. Both programs also print the tags that the
// package's own protobuf schema reads from each record, and the test checks them against
// the identity tags the records were given (docs/identity.md).
//
// The Go toolchain, Node.js or aws-kinesis-agg missing: skipped, or failed under CI=true.
func TestDeaggregatorsIgnoreIdentityTags(t *testing.T) {
	aggs := interopAggregates()
	tagged := make([][]byte, len(aggs))
	plain := make([][]byte, len(aggs))
	for i, recs := range aggs {
		var a, b kpl.Aggregator
		for _, r := range recs {
			a.Add(r)
			r.ID = kpl.Identity{}
			b.Add(r)
		}
		tagged[i] = a.AppendEncode(nil)
		plain[i] = b.AppendEncode(nil)
		if len(tagged[i]) <= len(plain[i]) && hasIdentity(recs) {
			t.Fatalf("aggregate %d: the identities took no room (%d bytes, %d without)", i, len(tagged[i]), len(plain[i]))
		}
	}
	total := 0
	for _, recs := range aggs {
		total += len(recs)
	}

	t.Run("go", func(t *testing.T) {
		goBin, err := exec.LookPath("go")
		if err != nil {
			missingTool(t, "the Go toolchain (go on PATH) to run awslabs' Go deaggregator in internal/kpl/interop")
		}
		run := func(in [][]byte) []deaggRecord {
			return runDeaggregator(t, in, 5*time.Minute, "interop", goBin, "run", ".")
		}
		check(t, "awslabs/kinesis-aggregation/go/v2", aggs, run(tagged), run(plain), total, false)
	})

	t.Run("node", func(t *testing.T) {
		nodeBin, err := exec.LookPath("node")
		if err != nil {
			missingTool(t, "Node.js (node on PATH) to run awslabs' Node deaggregator aws-kinesis-agg")
		}
		run := func(in [][]byte) []deaggRecord {
			return runDeaggregator(t, in, time.Minute, "interop", nodeBin, "deagg.js")
		}
		check(t, "aws-kinesis-agg", aggs, run(tagged), run(plain), total, true)
	})
}

// deaggRecord is one user record as internal/kpl/interop/main.go and deagg.js print it.
type deaggRecord struct {
	Agg  int        `json:"agg"`
	Sub  int        `json:"sub"`
	PK   string     `json:"pk"`
	EHK  *string    `json:"ehk"`
	Data []byte     `json:"data"`
	Tags [][]string `json:"tags"`
}

// deaggMissingStatus is the exit status of deagg.js: aws-kinesis-agg is not installed.
const deaggMissingStatus = 3

// runDeaggregator runs name args in dir with the aggregates on stdin, one base64 line each,
// and parses the JSON lines it prints.
func runDeaggregator(t *testing.T, aggs [][]byte, timeout time.Duration, dir, name string, args ...string) []deaggRecord {
	t.Helper()
	var in bytes.Buffer
	for _, a := range aggs {
		in.WriteString(base64.StdEncoding.EncodeToString(a))
		in.WriteByte('\n')
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// The nested module alone: no go.work, its own go.sum.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdin = &in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == deaggMissingStatus && filepath.Base(args[len(args)-1]) == "deagg.js" {
		missingTool(t, "the npm package aws-kinesis-agg: "+strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, stderr.Bytes())
	}
	t.Logf("%s %s: %d bytes of records in %v; %s", filepath.Base(name), strings.Join(args, " "),
		stdout.Len(), time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	var out []deaggRecord
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r deaggRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("output line %d %q: %v", len(out)+1, sc.Text(), err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// check compares a deaggregator's user records of the tagged aggregates (got) with those it
// returned for the same aggregates without identities (control), and with what was added.
// nodeEHK: the deaggregator reads a record without explicit hash key as having the first of
// its aggregate's table (aws-kinesis-agg: protobufjs defaults the absent index to 0).
func check(t *testing.T, lib string, aggs [][]kpl.Record, got, control []deaggRecord, total int, nodeEHK bool) {
	t.Helper()
	if len(got) != total || len(control) != total {
		t.Fatalf("%s: %d user records from the aggregates with identities, %d without; %d were added", lib, len(got), len(control), total)
	}
	i, quirks := 0, 0
	for a, recs := range aggs {
		var firstEHK *string
		for _, r := range recs {
			if r.ExplicitHashKey != "" {
				firstEHK = &r.ExplicitHashKey
				break
			}
		}
		want := expectedTags(recs)
		for s, r := range recs {
			g, c := got[i], control[i]
			i++
			where := fmt.Sprintf("%s: aggregate %d record %d", lib, a, s)
			if g.Agg != a || g.Sub != s {
				t.Fatalf("%s: came out as aggregate %d record %d", where, g.Agg, g.Sub)
			}
			if len(c.Tags) != 0 {
				t.Fatalf("%s: tags %q in the aggregate without identities", where, c.Tags)
			}
			gt, ct := g, c
			gt.Tags, ct.Tags = nil, nil
			if !reflect.DeepEqual(gt, ct) {
				t.Errorf("%s: with identity tags %+v, without %+v", where, gt, ct)
			}
			if g.PK != r.PartitionKey {
				t.Errorf("%s: partition key %q, want %q", where, g.PK, r.PartitionKey)
			}
			if !bytes.Equal(g.Data, r.Data) {
				t.Errorf("%s: %d bytes of data %.40q…, want %d bytes %.40q…", where, len(g.Data), g.Data, len(r.Data), r.Data)
			}
			switch {
			case r.ExplicitHashKey != "":
				if g.EHK == nil || *g.EHK != r.ExplicitHashKey {
					t.Errorf("%s: explicit hash key %s, want %q", where, fmtEHK(g.EHK), r.ExplicitHashKey)
				}
			case g.EHK == nil:
			case nodeEHK && firstEHK != nil && *g.EHK == *firstEHK:
				quirks++ // the same without tags (checked above): not the tags' doing
			default:
				t.Errorf("%s: explicit hash key %s, want none", where, fmtEHK(g.EHK))
			}
			if !reflect.DeepEqual(nonNil(g.Tags), want[s]) {
				t.Errorf("%s: tags %q, want %q", where, g.Tags, want[s])
			}
		}
	}
	if quirks > 0 {
		t.Logf("%s: %d records without explicit hash key came out with their aggregate's first one, with and without identity tags alike", lib, quirks)
	}
	if t.Failed() {
		return
	}
	t.Logf("%s: %d user records of %d aggregates: data, partition keys, explicit hash keys (where set) and order as added, identical with and without identity tags; the tags read back", lib, total, len(aggs))
}

func fmtEHK(p *string) string {
	if p == nil {
		return "none"
	}
	return strconv.Quote(*p)
}

func nonNil(tags [][]string) [][]string {
	if tags == nil {
		return [][]string{}
	}
	return tags
}

func hasIdentity(recs []kpl.Record) bool {
	for _, r := range recs {
		if !r.ID.IsZero() && len(r.ID.Origin) <= kpl.MaxOriginLen {
			return true
		}
	}
	return false
}

// expectedTags returns the tags each record of an aggregate should carry, by the rule of
// kpl.Identity's documentation, worked out here independently of the encoder.
func expectedTags(recs []kpl.Record) [][][]string {
	out := make([][][]string, len(recs))
	prev := ""
	for i, r := range recs {
		id := r.ID
		if len(id.Origin) > kpl.MaxOriginLen {
			id = kpl.Identity{}
		}
		tags := [][]string{}
		if id.Origin != "" {
			if i == 0 || id.Origin != prev {
				tags = append(tags, []string{kpl.TagOrigin, id.Origin}, []string{kpl.TagFloor, strconv.FormatUint(id.Floor, 10)})
			}
			seq := strconv.FormatUint(id.Seq, 10)
			if id.Span > 1 {
				seq += "+" + strconv.FormatUint(id.Span, 10)
			}
			tags = append(tags, []string{kpl.TagSeq, seq})
		}
		out[i] = tags
		prev = id.Origin
	}
	return out
}

// interopAggregates returns the user records of the aggregates the test builds.
func interopAggregates() [][]kpl.Record {
	const maxEHK = "340282366920938463463374607431768211455"
	long := strings.Repeat("o", kpl.MaxOriginLen)
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	mixed := []kpl.Record{
		{PartitionKey: "a", Data: []byte("1"), ID: kpl.Identity{Origin: "p1", Seq: 7, Floor: 3}},
		{PartitionKey: "a", ExplicitHashKey: maxEHK, Data: []byte("2"), ID: kpl.Identity{Origin: "p1", Seq: 9, Floor: 3}},
		{PartitionKey: "b", Data: []byte("3"), ID: kpl.Identity{Origin: "/var/log/app.log", Seq: 1000, Span: 42, Floor: 900}},
		{PartitionKey: "b", Data: []byte{}},
		{PartitionKey: "a", ExplicitHashKey: "0", Data: binary, ID: kpl.Identity{Origin: "p1", Seq: 10, Floor: 4}},
		{PartitionKey: "ключ-κλειδί-🔑", Data: []byte("x"), ID: kpl.Identity{Origin: long, Seq: 1, Span: 1}},
		{PartitionKey: "c", Data: []byte("y"), ID: kpl.Identity{Origin: long + "x", Seq: 5}}, // too long: none
		{PartitionKey: "a", Data: []byte("z"), ID: kpl.Identity{Origin: "p1", Seq: math.MaxUint64 - 1, Span: 2, Floor: math.MaxUint64}},
		{PartitionKey: "a", ExplicitHashKey: "1", Data: []byte("w"), ID: kpl.Identity{Origin: "p1"}},
		{PartitionKey: "a", ExplicitHashKey: maxEHK, Data: []byte("v"), ID: kpl.Identity{Origin: "p2", Seq: 3, Span: 3, Floor: 1}},
	}
	plain := []kpl.Record{
		{PartitionKey: "a", Data: []byte("no identity")},
		{PartitionKey: "b", ExplicitHashKey: "12345", Data: []byte("nor this one")},
		{PartitionKey: "a", Data: []byte("")},
	}
	one := []kpl.Record{
		{PartitionKey: "only", ExplicitHashKey: "170141183460469231731687303715884105728", Data: []byte("one"), ID: kpl.Identity{Origin: "producer-1", Seq: 42, Floor: 40}},
	}
	// Every record starts a run: origins alternate.
	var alternating []kpl.Record
	for i := range 12 {
		alternating = append(alternating, kpl.Record{
			PartitionKey: "pk-" + strconv.Itoa(i%3),
			Data:         []byte("line " + strconv.Itoa(i)),
			ID:           kpl.Identity{Origin: []string{"p1", "p2", "p3"}[i%3], Seq: uint64(i / 3), Floor: uint64(i / 6)},
		})
	}
	// A full aggregate of the default size: five origins in runs of random length, spans,
	// explicit hash keys on some records, no identity on some.
	rng := rand.New(rand.NewPCG(1, 2))
	var full []kpl.Record
	var a kpl.Aggregator
	seqs := make([]uint64, 5)
	origin := 0
	for {
		if rng.IntN(4) == 0 {
			origin = rng.IntN(5)
		}
		r := kpl.Record{PartitionKey: "pk-" + strconv.Itoa(rng.IntN(20))}
		r.Data = make([]byte, rng.IntN(300))
		for j := range r.Data {
			r.Data[j] = byte(rng.Uint32())
		}
		if rng.IntN(3) == 0 {
			r.ExplicitHashKey = strconv.FormatUint(rng.Uint64(), 10) + strconv.Itoa(rng.IntN(10))
		}
		if rng.IntN(7) != 0 {
			span := uint64(1)
			if origin >= 3 { // agent-like: byte offsets and line lengths
				span = uint64(len(r.Data) + 1)
			}
			r.ID = kpl.Identity{Origin: "origin-" + strconv.Itoa(origin), Seq: seqs[origin], Span: span, Floor: seqs[origin] / 2}
			seqs[origin] += span
		}
		if !a.TryAdd(r, kpl.DefaultMaxSize) {
			break
		}
		full = append(full, r)
	}
	return [][]kpl.Record{mixed, plain, one, alternating, full}
}

// missingTool skips the test for want missing, or fails it under CI=true.
func missingTool(t *testing.T, want string) {
	t.Helper()
	if v := strings.ToLower(os.Getenv("CI")); v == "true" || v == "1" {
		t.Fatalf("this test needs %s — CI=true, so it is a failure (`infra/local/stack up` installs aws-kinesis-agg)", want)
	}
	t.Skipf("this test needs %s; `make test` (infra/local/stack up) installs aws-kinesis-agg", want)
}

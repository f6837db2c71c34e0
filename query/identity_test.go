package query

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/kinlog/kinlog/sinks/encode"
)

// idRecord is a record with the identity the sink archives it with ("" for none).
type idRecord struct{ data, id string }

// idRecords exercise the identity member: records with and without one, an empty object,
// text, a record with a kinlog_id member of its own (at the top level and nested), and an
// identity that JSON must escape.
var idRecords = []idRecord{
	{`{"time":"2026-11-22T10:00:00Z","level":"INFO","msg":"a"}`, "prod-1/0"},
	{`{"time":"2026-11-22T10:00:01Z","level":"ERROR","msg":"b"}`, "prod-1/1"},
	{`{"time":"2026-11-22T10:00:02Z","msg":"no identity"}`, ""},
	{`{}`, "prod-2/7+3"},
	{"plain text", "agent:/var/log/app.log/4096+120"},
	{`{"kinlog_id":"mine","time":"2026-11-22T10:00:03Z","msg":"own member"}`, "prod-1/2"},
	{`{"msg":"own member, no identity","kinlog\u005fid":1}`, ""},
	{`{"msg":"nested","meta":{"kinlog_id":"inner"}}`, "prod-1/3"},
	{`{"msg":"quoted origin"}`, "o\"ri\u2028gin/9"},
}

// idWant is what --kinlog-id gives for idRecords from Parquet.
var idWant = []string{
	`{"time":"2026-11-22T10:00:00Z","level":"INFO","msg":"a","kinlog_id":"prod-1/0"}`,
	`{"time":"2026-11-22T10:00:01Z","level":"ERROR","msg":"b","kinlog_id":"prod-1/1"}`,
	`{"time":"2026-11-22T10:00:02Z","msg":"no identity"}`,
	`{"kinlog_id":"prod-2/7+3"}`,
	`{"raw":"plain text","kinlog_id":"agent:/var/log/app.log/4096+120"}`,
	`{"time":"2026-11-22T10:00:03Z","msg":"own member","kinlog_id":"prod-1/2"}`,
	`{"msg":"own member, no identity"}`,
	`{"msg":"nested","meta":{"kinlog_id":"inner"},"kinlog_id":"prod-1/3"}`,
	`{"msg":"quoted origin","kinlog_id":"o\"ri\u2028gin/9"}`,
}

func idObject(t *testing.T, cfg encode.Config) []byte {
	t.Helper()
	enc, err := encode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := enc.NewObject()
	for i, r := range idRecords {
		var d encode.Doc
		data := []byte(r.data)
		_ = d.Parse(encode.Trim(data))
		m := encode.Meta{Shard: "shardId-000000000000", Sequence: fmt.Sprint(100 + i), PartitionKey: "pk", ID: []byte(r.id)}
		if err := b.Add(&m, data, &d); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQueryKinlogID checks Request.KinlogID: Parquet records get their identity as the last
// member kinlog_id, which filters and projections find; without it, and for NDJSON objects,
// records are as archived.
func TestQueryKinlogID(t *testing.T) {
	pq := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.parquet": idObject(t, encode.Config{Format: encode.Parquet})}}
	nd := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.json.gz": idObject(t, encode.Config{})}}
	plain := mustRun(t, nd, Request{Bucket: "b", Order: OrderNone})
	if got := mustRun(t, pq, Request{Bucket: "b", Order: OrderNone}); strings.Join(got, "\n") != strings.Join(plain, "\n") {
		t.Fatalf("Parquet records without KinlogID:\n%s\nwant them as from NDJSON:\n%s", strings.Join(got, "\n"), strings.Join(plain, "\n"))
	}
	got := mustRun(t, pq, Request{Bucket: "b", Order: OrderNone, KinlogID: true})
	if strings.Join(got, "\n") != strings.Join(idWant, "\n") {
		t.Fatalf("Parquet records with KinlogID:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(idWant, "\n"))
	}
	// NDJSON stores no identity: records come without, their own kinlog_id members dropped.
	got = mustRun(t, nd, Request{Bucket: "b", Order: OrderNone, KinlogID: true})
	for i, r := range got {
		want := plain[i]
		if strings.Contains(want, `"own member`) {
			want = idWant[i]
			want = strings.Replace(want, `,"kinlog_id":"prod-1/2"`, "", 1)
		}
		if r != want {
			t.Errorf("NDJSON record %d with KinlogID = %s, want %s", i, r, want)
		}
	}
	// Time order holds with the member.
	if got := mustRun(t, pq, Request{Bucket: "b", KinlogID: true}); len(got) != len(idWant) {
		t.Fatalf("time-ordered: %d records, want %d", len(got), len(idWant))
	}

	filter := func(api S3API, conds ...string) []string {
		t.Helper()
		where, err := ParseFilter(conds)
		if err != nil {
			t.Fatal(err)
		}
		return mustRun(t, api, Request{Bucket: "b", Order: OrderNone, Where: where, KinlogID: true})
	}
	for _, tt := range []struct {
		conds []string
		want  []int // indexes into idWant
	}{
		{[]string{"kinlog_id=prod-1/1"}, []int{1}},
		{[]string{"kinlog_id=prod-2/7+3"}, []int{3}},
		{[]string{"kinlog_id~^prod-1/"}, []int{0, 1, 5, 7}},
		{[]string{"kinlog_id missing"}, []int{2, 6}},
		{[]string{"kinlog_id exists", "level=ERROR"}, []int{1}},
		{[]string{"kinlog_id=mine"}, nil},
		{[]string{"meta.kinlog_id=inner"}, []int{7}},
		{[]string{`kinlog_id=o"ri` + "\u2028" + `gin/9`}, []int{8}},
	} {
		var want []string
		for _, i := range tt.want {
			want = append(want, idWant[i])
		}
		if got := filter(pq, tt.conds...); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("--where %q:\n%s\nwant\n%s", tt.conds, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if got := filter(nd, "kinlog_id exists"); len(got) != 0 {
		t.Errorf("NDJSON records with an identity: %q", got)
	}

	var buf bytes.Buffer
	w, err := NewWriter(&buf, CSV, []string{"msg", IDField})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), pq, Request{Bucket: "b", Order: OrderNone, KinlogID: true, Limit: 3}, w.Write); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "msg,kinlog_id\na,prod-1/0\nb,prod-1/1\nno identity,\n"; buf.String() != want {
		t.Errorf("CSV of msg,kinlog_id:\n%s\nwant\n%s", buf.String(), want)
	}
}

// TestQueryKinlogIDOldParquet reads a Parquet file written before the kinlog_id column (the
// schema of layout 1.1.0): its records come back as before, without an identity.
func TestQueryKinlogIDOldParquet(t *testing.T) {
	type oldRow struct {
		Time         *time.Time `parquet:"time,optional,timestamp(microsecond:utc)"`
		Level        string     `parquet:"level,optional,dict"`
		Service      string     `parquet:"service,optional,dict"`
		Message      string     `parquet:"message,optional"`
		Attributes   string     `parquet:"attributes,optional"`
		Shard        string     `parquet:"shard,dict"`
		Sequence     string     `parquet:"sequence"`
		SubSequence  int64      `parquet:"sub_sequence"`
		ArrivalTime  time.Time  `parquet:"arrival_time,timestamp(millisecond:utc)"`
		PartitionKey string     `parquet:"partition_key"`
		Layout       string     `parquet:"layout,optional"`
	}
	rows, err := encode.ReadParquet(idObject(t, encode.Config{Format: encode.Parquet}))
	if err != nil {
		t.Fatal(err)
	}
	old := make([]oldRow, len(rows))
	for i, r := range rows {
		old[i] = oldRow{r.Time, r.Level, r.Service, r.Message, r.Attributes, r.Shard, r.Sequence, r.SubSequence, r.ArrivalTime, r.PartitionKey, r.Layout}
	}
	var b bytes.Buffer
	w := parquet.NewGenericWriter[oldRow](&b, parquet.NewSchema("log", parquet.SchemaOf(oldRow{})))
	if _, err := w.Write(old); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	api := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.parquet": b.Bytes()}}
	nd := &fakeS3{objects: map[string][]byte{"logs/dt=2026-11-22/hour=10/s-0-1.json.gz": idObject(t, encode.Config{})}}
	want := mustRun(t, nd, Request{Bucket: "b", Order: OrderNone, KinlogID: true})
	if got := mustRun(t, api, Request{Bucket: "b", Order: OrderNone, KinlogID: true}); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("old Parquet file with KinlogID:\n%s\nwant (no identities)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

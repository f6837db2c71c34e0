package kpl

import (
	"bytes"
	"reflect"

	"google.golang.org/protobuf/proto"
	"testing"
)

// TestIdentityRoundTrip encodes records with identities — two origins in runs, a span, a
// record without one in the middle, an origin that comes back — and decodes them back.
func TestIdentityRoundTrip(t *testing.T) {
	recs := []Record{
		{PartitionKey: "a", Data: []byte("1"), ID: Identity{Origin: "p1", Seq: 7, Floor: 3}},
		{PartitionKey: "a", Data: []byte("2"), ID: Identity{Origin: "p1", Seq: 9, Floor: 3}},
		{PartitionKey: "b", Data: []byte("3"), ID: Identity{Origin: "file-x", Seq: 1000, Span: 42, Floor: 900}},
		{PartitionKey: "b", Data: []byte("4")},
		{PartitionKey: "a", Data: []byte("5"), ID: Identity{Origin: "p1", Seq: 10, Floor: 4}},
		{PartitionKey: "a", Data: []byte("6"), ID: Identity{Origin: "p1", Seq: 18446744073709551615, Floor: 4}},
	}
	var a Aggregator
	for _, r := range recs {
		a.Add(r)
	}
	enc := a.AppendEncode(nil)
	if len(enc) != a.Size() {
		t.Fatalf("encoded %d bytes, Size() said %d", len(enc), a.Size())
	}
	got, ok := Decode(enc)
	if !ok {
		t.Fatal("Decode refused the aggregate")
	}
	if !reflect.DeepEqual(got, recs) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, recs)
	}
	// The same records through the reference protobuf decoder: the tags are ordinary KPL
	// tags, and the data and keys are untouched.
	mt := aggregatedRecordType(t)
	body := enc[len(Magic) : len(enc)-16]
	ref, ok := libraryDecode(mt, body)
	if !ok || len(ref) != len(recs) {
		t.Fatalf("protobuf library read %d records ok=%v", len(ref), ok)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(body, m); err != nil {
		t.Fatal(err)
	}
	if lib, err := (proto.MarshalOptions{Deterministic: true}).Marshal(m); err != nil || !bytes.Equal(lib, body) {
		t.Fatalf("the protobuf library re-encodes the tags differently (err %v)", err)
	}
	for i := range ref {
		if string(ref[i].Data) != string(recs[i].Data) || ref[i].PartitionKey != recs[i].PartitionKey {
			t.Fatalf("reference record %d = %+v", i, ref[i])
		}
	}
}

// TestIdentityMalformedTags decodes identity tags a producer could get wrong: they give no
// identity, and the records themselves still decode.
func TestIdentityMalformedTags(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   Identity
	}{
		{"origin too long", Identity{Origin: string(make([]byte, MaxOriginLen+1)), Seq: 1}},
	} {
		var a Aggregator
		a.Add(Record{PartitionKey: "k", Data: []byte("d"), ID: tc.id})
		got, ok := Decode(a.AppendEncode(nil))
		if !ok || len(got) != 1 || !got[0].ID.IsZero() {
			t.Fatalf("%s: got %+v ok=%v", tc.name, got, ok)
		}
	}
	var ir idReader
	for _, v := range []string{"", "x", "1+", "1+0", "1+x", "99999999999999999999"} {
		var id Identity
		have := false
		ir.str = "o"
		ir.tag([]byte(TagSeq), []byte(v), &id, &have)
		if have {
			t.Errorf("sequence tag %q accepted as %+v", v, id)
		}
	}
}

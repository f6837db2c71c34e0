package kpl

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// withTrailer frames a protobuf body as an aggregate: magic + body + MD5(body).
func withTrailer(body []byte) []byte {
	out := append([]byte{}, Magic[:]...)
	out = append(out, body...)
	sum := md5.Sum(body)
	return append(out, sum[:]...)
}

// vectorBody is a hand-built AggregatedRecord: tables ["a","b"], ["123"], and records
// {pk 0, "hi"}, {pk 1, ehk 0, ""}, {pk 0, "x"}.
var vectorBody = []byte{
	0x0A, 0x01, 'a',
	0x0A, 0x01, 'b',
	0x12, 0x03, '1', '2', '3',
	0x1A, 0x06, 0x08, 0x00, 0x1A, 0x02, 'h', 'i',
	0x1A, 0x06, 0x08, 0x01, 0x10, 0x00, 0x1A, 0x00,
	0x1A, 0x05, 0x08, 0x00, 0x1A, 0x01, 'x',
}

var vectorRecords = []Record{
	{PartitionKey: "a", Data: []byte("hi")},
	{PartitionKey: "b", ExplicitHashKey: "123", Data: []byte{}},
	{PartitionKey: "a", Data: []byte("x")},
}

func TestEncodeVector(t *testing.T) {
	var a Aggregator
	for _, r := range vectorRecords {
		a.Add(r)
	}
	want := withTrailer(vectorBody)
	if a.Size() != len(want) {
		t.Fatalf("Size() = %d, want %d", a.Size(), len(want))
	}
	got := a.AppendEncode(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got % x\nwant % x", got, want)
	}
	if a.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", a.Len())
	}
	// Appending to a prefix keeps the prefix and MD5s only the protobuf.
	got = a.AppendEncode([]byte("prefix"))
	if !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("AppendEncode with prefix\n got % x", got)
	}
}

func TestDecodeVector(t *testing.T) {
	recs, ok := Decode(withTrailer(vectorBody))
	if !ok {
		t.Fatal("Decode: ok=false for a valid aggregate")
	}
	if !reflect.DeepEqual(recs, vectorRecords) {
		t.Fatalf("Decode = %+v, want %+v", recs, vectorRecords)
	}
}

func TestDecodeAcceptsValidVariants(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want []Record
	}{
		{
			name: "records before tables",
			body: []byte{0x1A, 0x05, 0x08, 0x00, 0x1A, 0x01, 'x', 0x0A, 0x01, 'k'},
			want: []Record{{PartitionKey: "k", Data: []byte("x")}},
		},
		{
			name: "unknown fields and tags are skipped",
			body: []byte{
				0x0A, 0x01, 'k',
				0x28, 0x07, // field 5 varint
				0x1A, 0x0F,
				0x08, 0x00,
				0x22, 0x05, 0x0A, 0x01, 't', 0x12, 0x00, // tag {key "t", value ""}
				0x30, 0x01, // field 6 varint
				0x1A, 0x02, 'h', 'i',
			},
			want: []Record{{PartitionKey: "k", Data: []byte("hi")}},
		},
		{
			name: "tables only, no records",
			body: []byte{0x0A, 0x01, 'k', 0x0A, 0x01, 'j'},
			want: []Record{},
		},
		{
			name: "multi-byte varints",
			body: append([]byte{0x0A, 0x01, 'k', 0x1A, 0x86, 0x01, 0x08, 0x80, 0x00, 0x1A, 0x80, 0x01}, bytes.Repeat([]byte{'z'}, 128)...),
			want: []Record{{PartitionKey: "k", Data: bytes.Repeat([]byte{'z'}, 128)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Decode(withTrailer(tt.body))
			if !ok {
				t.Fatal("ok=false")
			}
			if got == nil {
				got = []Record{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeNotAggregate(t *testing.T) {
	valid := withTrailer(vectorBody)
	badMD5 := bytes.Clone(valid)
	badMD5[len(badMD5)-1] ^= 1
	badMagic := bytes.Clone(valid)
	badMagic[0] = 0xF4
	tests := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"magic only", Magic[:]},
		{"16 bytes after magic", append(Magic[:], make([]byte, 16)...)},
		{"empty protobuf with valid md5", withTrailer(nil)},
		{"wrong magic", badMagic},
		{"md5 mismatch", badMD5},
		{"plain json", []byte(`{"level":"info","msg":"hello world, this is a log line"}`)},
		{"truncated varint tag", withTrailer([]byte{0x0A, 0x01, 'k', 0x80})},
		{"length beyond end", withTrailer([]byte{0x0A, 0x05, 'k'})},
		{"record missing partition key index", withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x03, 0x1A, 0x01, 'x'})},
		{"record missing data", withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x02, 0x08, 0x00})},
		{"partition key index out of range", withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x05, 0x08, 0x01, 0x1A, 0x01, 'x'})},
		{"no partition key table", withTrailer([]byte{0x1A, 0x05, 0x08, 0x00, 0x1A, 0x01, 'x'})},
		{"explicit hash key index out of range", withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x07, 0x08, 0x00, 0x10, 0x00, 0x1A, 0x01, 'x'})},
		{"huge index", withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x0E, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x1A, 0x01, 'x'})},
		{"tag without key", withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x09, 0x08, 0x00, 0x22, 0x02, 0x12, 0x00, 0x1A, 0x01, 'x'})},
		{"field number zero", withTrailer([]byte{0x02, 0x01, 'k'})},
		{"bad inner record", withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x02, 0x08, 0x80})},
		{"stray end group", withTrailer([]byte{0x0A, 0x01, 'k', 0x0C})},
		{"field number above 2^29-1", withTrailer([]byte{0x0A, 0x01, 'k', 0xa5, 0xbb, 0xcc, 0x91, 0x30, 0x30})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []Record{{PartitionKey: "keep"}}
			got, ok := AppendDecode(prefix, tt.data)
			if ok {
				t.Fatalf("ok=true, records %+v", got)
			}
			if len(got) != 1 || got[0].PartitionKey != "keep" {
				t.Fatalf("AppendDecode changed dst on failure: %+v", got)
			}
			if IsAggregate(tt.data) && tt.name != "empty protobuf with valid md5" && len(tt.data) > Overhead {
				// Framing is fine; only the protobuf is bad. Nothing to check beyond ok=false.
				return
			}
		})
	}
}

func TestSizeTracksEncoding(t *testing.T) {
	var a Aggregator
	for i := range 300 {
		r := Record{PartitionKey: "pk-" + strconv.Itoa(i%37), Data: bytes.Repeat([]byte{byte(i)}, i)}
		if i%5 == 0 {
			r.ExplicitHashKey = strconv.Itoa(i % 11)
		}
		predicted := a.SizeWith(r)
		a.Add(r)
		if a.Size() != predicted {
			t.Fatalf("record %d: SizeWith predicted %d, Size after Add %d", i, predicted, a.Size())
		}
		if got := len(a.AppendEncode(nil)); got != a.Size() {
			t.Fatalf("record %d: encoded %d bytes, Size() %d", i, got, a.Size())
		}
	}
}

func TestTryAddRespectsLimit(t *testing.T) {
	var a Aggregator
	line := bytes.Repeat([]byte("x"), 230)
	added := 0
	for i := 0; ; i++ {
		if !a.TryAdd(Record{PartitionKey: "key-" + strconv.Itoa(i), Data: line}, DefaultMaxSize) {
			break
		}
		added++
	}
	if a.Size() > DefaultMaxSize {
		t.Fatalf("Size %d exceeds limit %d", a.Size(), DefaultMaxSize)
	}
	// One more 230-byte record must not fit: the aggregate is full to within one record.
	if DefaultMaxSize-a.Size() > 230+20 {
		t.Fatalf("aggregate stopped early: %d bytes free with %d records", DefaultMaxSize-a.Size(), added)
	}
	recs, ok := Decode(a.AppendEncode(nil))
	if !ok || len(recs) != added {
		t.Fatalf("decoded %d records (ok=%v), want %d", len(recs), ok, added)
	}

	var b Aggregator
	if b.TryAdd(Record{PartitionKey: "k", Data: make([]byte, DefaultMaxSize)}, DefaultMaxSize) {
		t.Fatal("TryAdd accepted a record bigger than the limit into an empty aggregate")
	}
	if b.Len() != 0 || b.Size() != Overhead {
		t.Fatalf("refused record changed the aggregate: len %d size %d", b.Len(), b.Size())
	}
}

func TestAddCopiesData(t *testing.T) {
	var a Aggregator
	buf := []byte("original")
	a.Add(Record{PartitionKey: "k", Data: buf})
	copy(buf, "XXXXXXXX")
	recs, ok := Decode(a.AppendEncode(nil))
	if !ok || string(recs[0].Data) != "original" {
		t.Fatalf("got %q ok=%v, want the data as it was at Add", recs[0].Data, ok)
	}
}

func TestResetReusesWithoutAllocating(t *testing.T) {
	var a Aggregator
	keys := make([]string, 150)
	for i := range keys {
		keys[i] = "partition-key-" + strconv.Itoa(i)
	}
	line := bytes.Repeat([]byte("y"), 230)
	dst := make([]byte, 0, DefaultMaxSize)
	fill := func() {
		a.Reset()
		for _, k := range keys {
			a.TryAdd(Record{PartitionKey: k, Data: line}, DefaultMaxSize)
		}
		dst = a.AppendEncode(dst[:0])
	}
	fill() // warm up capacity
	fill()
	if allocs := testing.AllocsPerRun(20, fill); allocs != 0 {
		t.Fatalf("reused aggregator allocated %.1f times per aggregate, want 0", allocs)
	}
	recs, ok := Decode(dst)
	if !ok || len(recs) != len(keys) || recs[149].PartitionKey != keys[149] {
		t.Fatalf("after reuse decoded %d records ok=%v", len(recs), ok)
	}
}

// TestAppendDecodeGrowsGeometrically appends many aggregates to one slice, as the consumer
// does with a GetRecords response: the slice must be reallocated a logarithmic number of
// times, not once per aggregate (which made decoding quadratic in the response's records).
func TestAppendDecodeGrowsGeometrically(t *testing.T) {
	var a Aggregator
	for i := range 50 {
		a.Add(Record{PartitionKey: strconv.Itoa(i % 7), Data: []byte("line")})
	}
	agg := a.AppendEncode(nil)
	var dst []Record
	reallocs := 0
	for range 1000 {
		before := cap(dst)
		var ok bool
		if dst, ok = AppendDecode(dst, agg); !ok {
			t.Fatal("aggregate did not decode")
		}
		if cap(dst) != before {
			reallocs++
		}
	}
	if len(dst) != 50*1000 {
		t.Fatalf("decoded %d records, want %d", len(dst), 50*1000)
	}
	if reallocs > 40 {
		t.Fatalf("the slice was reallocated %d times for 1000 aggregates, want a logarithmic number", reallocs)
	}
}

func TestDecodeDoesNotCopyData(t *testing.T) {
	enc := withTrailer(vectorBody)
	recs, _ := Decode(enc)
	d := recs[0].Data
	if &d[0] != &enc[len(Magic)+17] { // "hi" starts at byte 17 of the body
		t.Fatal("Decode copied record data; it should alias the input")
	}
}

// --- hash keys ---

func TestParseHashKey(t *testing.T) {
	tests := []struct {
		in      string
		want    string // decimal of the expected value; "" means error
		wantErr bool
	}{
		{in: "0", want: "0"},
		{in: "000", want: "0"},
		{in: "1", want: "1"},
		{in: "18446744073709551615", want: "18446744073709551615"},
		{in: "18446744073709551616", want: "18446744073709551616"},
		{in: "85070591730234615865843651857942052863", want: "85070591730234615865843651857942052863"},
		{in: "340282366920938463463374607431768211455", want: "340282366920938463463374607431768211455"},
		{in: "0000340282366920938463463374607431768211455", want: "340282366920938463463374607431768211455"},
		{in: "340282366920938463463374607431768211456", wantErr: true},
		{in: "3402823669209384634633746074317682114550", wantErr: true},
		{in: "999999999999999999999999999999999999999999999", wantErr: true},
		{in: "", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "12a", wantErr: true},
		{in: " 1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			h, err := ParseHashKey(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseHashKey(%q) = %s, want error", tt.in, h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.String() != tt.want {
				t.Fatalf("ParseHashKey(%q).String() = %s, want %s", tt.in, h, tt.want)
			}
			want, _ := new(big.Int).SetString(tt.want, 10)
			if h.BigInt().Cmp(want) != 0 {
				t.Fatalf("BigInt() = %s, want %s", h.BigInt(), want)
			}
		})
	}
	if MaxHashKey.String() != "340282366920938463463374607431768211455" {
		t.Fatalf("MaxHashKey = %s", MaxHashKey)
	}
}

func TestHashKeyStringMatchesBigInt(t *testing.T) {
	// Walk values across every decimal chunk boundary.
	for i := range 2000 {
		var h HashKey
		binary.BigEndian.PutUint64(h[:8], uint64(i)*0x9E3779B97F4A7C15>>(i%64))
		binary.BigEndian.PutUint64(h[8:], uint64(i)*0xBF58476D1CE4E5B9)
		if got, want := h.String(), h.BigInt().String(); got != want {
			t.Fatalf("% x: String() = %s, big.Int %s", h[:], got, want)
		}
		back, err := ParseHashKey(h.String())
		if err != nil || back != h {
			t.Fatalf("round trip of %s: %s %v", h, back, err)
		}
	}
}

func TestPartitionKeyHash(t *testing.T) {
	tests := []struct{ pk, want string }{
		{"", "281949768489412648962353822266799178366"},
		{"user-42", "157107139746365290205026809710278036035"},
	}
	for _, tt := range tests {
		if got := PartitionKeyHash(tt.pk).String(); got != tt.want {
			t.Errorf("PartitionKeyHash(%q) = %s, want %s", tt.pk, got, tt.want)
		}
	}
	long := string(bytes.Repeat([]byte("é"), 200)) // longer than the stack buffer
	sum := md5.Sum([]byte(long))
	if PartitionKeyHash(long) != HashKey(sum) {
		t.Error("PartitionKeyHash of a long key differs from MD5")
	}
	if allocs := testing.AllocsPerRun(100, func() { PartitionKeyHash("some-partition-key-1234") }); allocs != 0 {
		t.Errorf("PartitionKeyHash allocated %.1f times", allocs)
	}
}

func TestHashKeyRange(t *testing.T) {
	// The first of four equal shards.
	rng, err := ParseHashKeyRange("0", "85070591730234615865843651857942052863")
	if err != nil {
		t.Fatal(err)
	}
	edge, _ := ParseHashKey("85070591730234615865843651857942052863")
	next, _ := ParseHashKey("85070591730234615865843651857942052864")
	if !rng.Contains(HashKey{}) || !rng.Contains(edge) || rng.Contains(next) || rng.Contains(MaxHashKey) {
		t.Fatal("Contains is wrong at the range edges")
	}
	if _, err := ParseHashKeyRange("5", "4"); err == nil {
		t.Fatal("inverted range accepted")
	}
	if _, err := ParseHashKeyRange("x", "4"); err == nil {
		t.Fatal("bad start accepted")
	}
	if _, err := ParseHashKeyRange("1", "x"); err == nil {
		t.Fatal("bad end accepted")
	}

	// "user-42" hashes to 1.57e38: in the second quarter.
	in := []Record{{PartitionKey: "x", ExplicitHashKey: "0"}, {PartitionKey: "y", ExplicitHashKey: "85070591730234615865843651857942052863"}}
	if !AllInRange(in, rng) {
		t.Fatal("AllInRange false for records inside the range")
	}
	if AllInRange(append(in, Record{PartitionKey: "user-42"}), rng) {
		t.Fatal("AllInRange true with a partition key hashing outside the range")
	}
	if AllInRange([]Record{{PartitionKey: "x", ExplicitHashKey: "nope"}}, rng) {
		t.Fatal("AllInRange true with an unparsable explicit hash key")
	}
	if !AllInRange(nil, rng) {
		t.Fatal("AllInRange of no records should be true")
	}
}

// --- cross-check with the protobuf library ---

// aggregatedRecordType builds the AggregatedRecord message type from the schema in
// shared/docs/interop.md, so tests can check our hand-rolled encoding against the protobuf
// library's own.
func aggregatedRecordType(t testing.TB) protoreflect.MessageType {
	t.Helper()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	req := descriptorpb.FieldDescriptorProto_LABEL_REQUIRED.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	u64 := descriptorpb.FieldDescriptorProto_TYPE_UINT64.Enum()
	byt := descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum()
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	field := func(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label, typ *descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Label: label, Type: typ}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("kpl_test.proto"),
		Package: proto.String("kpltest"),
		Syntax:  proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("AggregatedRecord"), Field: []*descriptorpb.FieldDescriptorProto{
				field("partition_key_table", 1, rep, str, ""),
				field("explicit_hash_key_table", 2, rep, str, ""),
				field("records", 3, rep, msg, ".kpltest.Record"),
			}},
			{Name: proto.String("Record"), Field: []*descriptorpb.FieldDescriptorProto{
				field("partition_key_index", 1, req, u64, ""),
				field("explicit_hash_key_index", 2, opt, u64, ""),
				field("data", 3, req, byt, ""),
				field("tags", 4, rep, msg, ".kpltest.Tag"),
			}},
			{Name: proto.String("Tag"), Field: []*descriptorpb.FieldDescriptorProto{
				field("key", 1, req, str, ""),
				field("value", 2, opt, str, ""),
			}},
		},
	}
	file, err := protodesc.NewFile(fd, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dynamicpb.NewMessageType(file.Messages().ByName("AggregatedRecord"))
}

// libraryDecode parses body with the protobuf library and resolves the key tables. ok is
// false when the library rejects the message or an index is out of range.
func libraryDecode(mt protoreflect.MessageType, body []byte) ([]Record, bool) {
	m := mt.New().Interface()
	if err := proto.Unmarshal(body, m); err != nil {
		return nil, false
	}
	d := m.ProtoReflect().Descriptor()
	pr := m.ProtoReflect()
	pks := pr.Get(d.Fields().ByNumber(1)).List()
	ehks := pr.Get(d.Fields().ByNumber(2)).List()
	recs := pr.Get(d.Fields().ByNumber(3)).List()
	out := []Record{}
	for i := range recs.Len() {
		r := recs.Get(i).Message()
		rd := r.Descriptor()
		pki := r.Get(rd.Fields().ByNumber(1)).Uint()
		if pki >= uint64(pks.Len()) {
			return nil, false
		}
		rec := Record{PartitionKey: pks.Get(int(pki)).String(), Data: r.Get(rd.Fields().ByNumber(3)).Bytes()}
		if r.Has(rd.Fields().ByNumber(2)) {
			ei := r.Get(rd.Fields().ByNumber(2)).Uint()
			if ei >= uint64(ehks.Len()) {
				return nil, false
			}
			rec.ExplicitHashKey = ehks.Get(int(ei)).String()
		}
		if rec.Data == nil {
			rec.Data = []byte{}
		}
		out = append(out, rec)
	}
	return out, true
}

func TestEncodingMatchesProtobufLibrary(t *testing.T) {
	mt := aggregatedRecordType(t)
	var a Aggregator
	var want []Record
	for i := range 50 {
		r := Record{PartitionKey: fmt.Sprintf("k%d", i%7), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		if i%3 == 0 {
			r.ExplicitHashKey = strconv.Itoa(i % 4)
		}
		a.Add(r)
		want = append(want, r)
	}
	enc := a.AppendEncode(nil)
	body := enc[len(Magic) : len(enc)-md5.Size]
	got, ok := libraryDecode(mt, body)
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("protobuf library read %d records ok=%v, want %d", len(got), ok, len(want))
	}
	// And the library's own encoding of the same message decodes with ours.
	m := mt.New().Interface()
	if err := proto.Unmarshal(body, m); err != nil {
		t.Fatal(err)
	}
	libBody, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(libBody, body) {
		t.Fatalf("library re-encoding differs from ours:\n lib % x\nours % x", libBody, body)
	}
}

func TestSummerMatchesMD5(t *testing.T) {
	s := NewSummer()
	defer s.Close()
	for _, n := range []int{0, 1, 2, 3, 8, 9, 17, 40} {
		var want, aggs [][]byte
		for i := range n {
			var a Aggregator
			for j := range 20 + i*13 {
				a.Add(Record{PartitionKey: "k" + strconv.Itoa(j%7), Data: bytes.Repeat([]byte{byte(i + j)}, 100+j*i)})
			}
			want = append(want, a.AppendEncode(nil))
			u := a.AppendEncodeUnsummed(nil)
			if !bytes.Equal(u[:len(u)-16], want[i][:len(u)-16]) || !bytes.Equal(u[len(u)-16:], make([]byte, 16)) {
				t.Fatal("AppendEncodeUnsummed differs from AppendEncode before the trailer, or left a non-zero trailer")
			}
			aggs = append(aggs, u)
		}
		s.SumAll(aggs)
		for i := range aggs {
			if !bytes.Equal(aggs[i], want[i]) {
				t.Fatalf("batch of %d: aggregate %d has the wrong trailer", n, i)
			}
			if _, ok := Decode(aggs[i]); !ok {
				t.Fatalf("batch of %d: aggregate %d does not decode", n, i)
			}
		}
	}
}

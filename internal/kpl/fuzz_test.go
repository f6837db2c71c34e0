package kpl

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"reflect"
	"testing"
)

func FuzzDecode(f *testing.F) {
	f.Add(withTrailer(vectorBody))
	f.Add(withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x05, 0x08, 0x01, 0x1A, 0x01, 'x'}))
	f.Add(withTrailer([]byte{0x0A, 0x01, 'k', 0x1A, 0x09, 0x08, 0x00, 0x22, 0x02, 0x12, 0x00, 0x1A, 0x01, 'x'}))
	f.Add([]byte(`{"msg":"plain"}`))
	f.Add(Magic[:])
	mt := aggregatedRecordType(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, ok := Decode(data)
		// The fuzzer mostly mutates the body; also try it with a fixed-up trailer so the
		// protobuf parser itself is exercised.
		framed := withTrailer(data)
		frecs, fok := Decode(framed)
		libRecs, libOK := libraryDecode(mt, data)
		// An empty body leaves exactly 16 bytes after the magic: not an aggregate by the
		// framing rule, whatever the protobuf says.
		libOK = libOK && len(data) > 0
		if fok != libOK {
			t.Fatalf("Decode ok=%v but protobuf library ok=%v for body % x", fok, libOK, data)
		}
		if fok && !(len(frecs) == 0 && len(libRecs) == 0) && !reflect.DeepEqual(frecs, libRecs) {
			t.Fatalf("Decode = %+v, library = %+v", frecs, libRecs)
		}
		for _, c := range []struct {
			recs []Record
			ok   bool
		}{{recs, ok}, {frecs, fok}} {
			if !c.ok || len(c.recs) == 0 {
				continue // an empty aggregate re-encodes as 16 bytes after the magic: plain
			}
			// Whatever decodes re-encodes to something that decodes to the same records.
			var a Aggregator
			for _, r := range c.recs {
				a.Add(r)
			}
			again, ok := Decode(a.AppendEncode(nil))
			if !ok {
				t.Fatal("re-encoding of decoded records does not decode")
			}
			if !reflect.DeepEqual(again, c.recs) {
				t.Fatalf("re-encoded records differ: %+v vs %+v", again, c.recs)
			}
		}
	})
}

// recordsFromBytes derives a sequence of records from fuzz input: each record takes a
// length-prefixed partition key, optional explicit hash key and data.
func recordsFromBytes(b []byte) []Record {
	var recs []Record
	take := func(n int) []byte {
		if n > len(b) {
			n = len(b)
		}
		v := b[:n]
		b = b[n:]
		return v
	}
	for len(b) > 0 && len(recs) < 200 {
		ctl := take(1)[0]
		pk := string(take(int(ctl & 0x0F)))
		var ehk string
		if ctl&0x10 != 0 {
			ehk = string(take(int(ctl >> 5)))
		}
		var n int
		if l := take(2); len(l) == 2 {
			n = int(binary.LittleEndian.Uint16(l)) % 600
		}
		data := bytes.Clone(take(n))
		if data == nil {
			data = []byte{}
		}
		recs = append(recs, Record{PartitionKey: pk, ExplicitHashKey: ehk, Data: data})
	}
	return recs
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0x03, 'a', 'b', 'c', 0x02, 0x00, 'h', 'i'})
	f.Add([]byte{0x31, 'k', '1', 0x01, 0x00, 'x', 0x00})
	f.Add(bytes.Repeat([]byte{0x12, 'p', 'q', '7', 0x05, 0x00, 'd', 'a', 't', 'a', '!'}, 20))
	mt := aggregatedRecordType(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		recs := recordsFromBytes(in)
		if len(recs) == 0 {
			return
		}
		var a Aggregator
		a.Reset()
		for _, r := range recs {
			predicted := a.SizeWith(r)
			a.Add(r)
			if a.Size() != predicted {
				t.Fatalf("SizeWith %d != Size %d", predicted, a.Size())
			}
		}
		enc := a.AppendEncode(nil)
		// Layout: magic, protobuf, MD5 of the protobuf.
		if len(enc) != a.Size() {
			t.Fatalf("encoded %d bytes, Size() %d", len(enc), a.Size())
		}
		if !bytes.Equal(enc[:4], Magic[:]) {
			t.Fatalf("magic % x", enc[:4])
		}
		body := enc[4 : len(enc)-16]
		if sum := md5.Sum(body); !bytes.Equal(sum[:], enc[len(enc)-16:]) {
			t.Fatal("trailer is not the MD5 of the protobuf")
		}
		lib, ok := libraryDecode(mt, body)
		if !ok || !reflect.DeepEqual(lib, recs) {
			t.Fatalf("protobuf library reads %+v (ok=%v), want %+v", lib, ok, recs)
		}
		got, ok := Decode(enc)
		if !ok || !reflect.DeepEqual(got, recs) {
			t.Fatalf("Decode = %+v (ok=%v), want %+v", got, ok, recs)
		}
		// Reuse after Reset gives identical bytes.
		a.Reset()
		for _, r := range recs {
			a.Add(r)
		}
		if again := a.AppendEncode(nil); !bytes.Equal(again, enc) {
			t.Fatal("encoding after Reset differs")
		}
	})
}

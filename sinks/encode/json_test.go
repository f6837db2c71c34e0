package encode

import (
	"bytes"
	"encoding/json"
	"math/bits"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDocParse(t *testing.T) {
	tests := []struct {
		in        string
		kind      Kind
		fields    []string // name=value
		multiline bool
	}{
		{in: `{}`, kind: Object},
		{in: ` {"a":1, "b" : "x\"y", "c":[1,{"d":null}],"e":{"f":true}} `, kind: Object,
			fields: []string{`a=1`, `b="x\"y"`, `c=[1,{"d":null}]`, `e={"f":true}`}},
		{in: "{\n  \"a\": 1\n}", kind: Object, fields: []string{"a=1"}, multiline: true},
		{in: `{"k\u00e9y":"v"}`, kind: Object, fields: []string{`kéy="v"`}},
		{in: `"str"`, kind: String},
		{in: `-0.5e+10`, kind: Number},
		{in: `[1, 2]`, kind: Array},
		{in: `null`, kind: Null},
		{in: `false`, kind: Bool},
		{in: `{"a":1,}`, kind: Invalid},
		{in: `{"a" 1}`, kind: Invalid},
		{in: `{"a":01}`, kind: Invalid},
		{in: `{"a":"\x"}`, kind: Invalid},
		{in: "{\"a\":\"tab\there\"}", kind: Invalid},
		{in: `{"a":1} {"b":2}`, kind: Invalid},
		{in: `plain text`, kind: Invalid},
		{in: ``, kind: Invalid},
		{in: `{"a":tru}`, kind: Invalid},
		{in: `{"a":"\u12G4"}`, kind: Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Doc
			err := d.Parse([]byte(tt.in))
			if (err != nil) != (tt.kind == Invalid) {
				t.Fatalf("Parse error = %v, want kind %v", err, tt.kind)
			}
			if d.Kind != tt.kind {
				t.Fatalf("kind = %v, want %v", d.Kind, tt.kind)
			}
			if tt.kind == Invalid {
				return
			}
			var got []string
			for i := range d.Len() {
				f := d.Field(i)
				got = append(got, f.Name()+"="+string(f.Value))
			}
			if strings.Join(got, "|") != strings.Join(tt.fields, "|") {
				t.Errorf("fields = %q, want %q", got, tt.fields)
			}
			if d.Multiline != tt.multiline {
				t.Errorf("Multiline = %v, want %v", d.Multiline, tt.multiline)
			}
		})
	}
}

func TestDocLookup(t *testing.T) {
	var d Doc
	if err := d.Parse([]byte(`{"http":{"status":503,"req":{"path":"/x"}},"a.b":"flat","a":{"b":"nested"},"n":null}`)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"http.status", "503", true},
		{"http.req.path", "/x", true},
		{"a.b", "flat", true}, // the flat member wins
		{"http.missing", "", false},
		{"missing", "", false},
		{"n", "", false},
	}
	for _, tt := range tests {
		f, ok := d.Lookup(tt.path)
		got, _ := f.Text()
		if ok && f.Kind == Null {
			ok = false
		}
		if ok != tt.ok || got != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSpecialMaskFindsFirst(t *testing.T) {
	// Every word of two special bytes among ordinary ones: the lowest set bit is the first.
	specials := []byte{'"', '\\', 0, 0x1f, '\n', 0x80, 0xff}
	for _, a := range specials {
		for _, b := range specials {
			for pa := 0; pa < 8; pa++ {
				for pb := pa + 1; pb < 8; pb++ {
					w := uint64(lsb * 'a')
					w &^= 0xff<<(8*pa) | 0xff<<(8*pb)
					w |= uint64(a)<<(8*pa) | uint64(b)<<(8*pb)
					if got := bits.TrailingZeros64(specialMask(w)) >> 3; got != pa {
						t.Fatalf("bytes %#x@%d %#x@%d: first special at %d", a, pa, b, pb, got)
					}
				}
			}
		}
	}
}

func TestHasSpecial(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			w := uint64(lsb * 'a')
			w &^= 0xff << (8 * pos)
			w |= uint64(c) << (8 * pos)
			if got, want := hasSpecial(w), strSpecial[c]; got != want {
				t.Fatalf("hasSpecial(byte %#x at %d) = %v, want %v", c, pos, got, want)
			}
		}
	}
}

// FuzzDocParse checks the scanner against encoding/json: same acceptance, and for objects
// the same top-level members.
func FuzzDocParse(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,2,{"c":"d"}]}}`, `"x"`, `[]`, `{"a":"\u00e9\n"}`,
		"{\n\"a\" :\t1 }", `{"a":1e5,"b":-0.1,"c":true,"d":null}`, `nope`, `{"a":}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Doc
		err := d.Parse(data)
		if valid := json.Valid(data); valid != (err == nil) {
			t.Fatalf("Parse(%q) error = %v, json.Valid = %v", data, err, valid)
		}
		if err != nil {
			return
		}
		if want := bytes.ContainsAny(data, "\r\n"); d.Multiline != want {
			t.Fatalf("Parse(%q).Multiline = %v, want %v", data, d.Multiline, want)
		}
		if want := utf8.Valid(data); d.UTF8 != want {
			t.Fatalf("Parse(%q).UTF8 = %v, want %v", data, d.UTF8, want)
		}
		if d.Kind != Object {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("encoding/json rejects an object the scanner accepted: %v", err)
		}
		seen := map[string]bool{}
		for i := range d.Len() {
			f := d.Field(i)
			seen[f.Name()] = true
			if !json.Valid(f.Value) {
				t.Fatalf("member value %q is not valid JSON", f.Value)
			}
		}
		for k := range m {
			if !seen[k] && utf8.Valid(data) {
				t.Fatalf("member %q missing from %q", k, data)
			}
		}
	})
}

func TestFieldAppendText(t *testing.T) {
	var d Doc
	if err := d.Parse([]byte(`{"s":"a\u00e9\"b","p":"plain","n":-1.5e3,"b":true,"z":null,"o":{"k":1},"a":[1]}`)); err != nil {
		t.Fatal(err)
	}
	for i := range d.Len() {
		f := d.Field(i)
		want, wantOK := f.Text()
		got, ok := f.AppendText([]byte("pre:"))
		if ok != wantOK || (ok && string(got) != "pre:"+want) || (!ok && string(got) != "pre:") {
			t.Errorf("%s: AppendText = %q, %v; Text = %q, %v", f.Key, got, ok, want, wantOK)
		}
	}
}

package syslog

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// frame is what one Reader.Next call returned.
type frame struct {
	data string
	err  error
}

func (f frame) String() string { return fmt.Sprintf("{%q %v}", f.data, f.err) }

// readAll calls Next until it fails with something other than ErrTooLong, and returns
// every result including that last one.
func readAll(t testing.TB, r io.Reader, max int) []frame {
	t.Helper()
	sr := NewReader(r, max)
	var out []frame
	for range 100_000 {
		b, err := sr.Next()
		out = append(out, frame{string(b), err})
		if err != nil && !errors.Is(err, ErrTooLong) {
			return out
		}
	}
	t.Fatalf("no end after 100000 frames")
	return nil
}

func octets(msg string) string { return fmt.Sprintf("%d %s", len(msg), msg) }

// readers wraps a stream in readers that hand it over in different pieces.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
}

func TestReader(t *testing.T) {
	protocol23 := "<30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - message\n"
	tests := []struct {
		name string
		in   string
		max  int
		want []frame
	}{
		{
			name: "mixed framing in one stream",
			in: octets(protocol23) + // rsyslog octet-counted, the LF inside the count
				"<30>Dec  1 11:40:18 myhost myapp[1234]: message\n" + // rsyslog traditional
				"<14>python over TCP\x00<11>myapp: second\x00" + // SysLogHandler SOCK_STREAM: NUL only
				"<14>crlf\r\n" +
				"\n\r\n\x00" + // empty frames are skipped
				octets("<14>counted, no LF after it") +
				"2 ab\n" + // a LF after a counted frame is an empty frame
				"<14>last, no terminator",
			want: []frame{
				{protocol23, nil},
				{"<30>Dec  1 11:40:18 myhost myapp[1234]: message", nil},
				{"<14>python over TCP", nil},
				{"<11>myapp: second", nil},
				{"<14>crlf", nil},
				{"<14>counted, no LF after it", nil},
				{"ab", nil},
				{"<14>last, no terminator", nil},
				{"", io.EOF},
			},
		},
		{
			name: "rsyslog octet-counted protocol23",
			in:   "95 <30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - the message framed by octet count\n95 <30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - the message framed by octet count\n",
			want: []frame{
				{"<30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - the message framed by octet count\n", nil},
				{"<30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - the message framed by octet count\n", nil},
				{"", io.EOF},
			},
		},
		{
			name: "counted frame holding NUL and LF",
			in:   "9 <14>a\x00b\nc" + "<14>next\n",
			want: []frame{{"<14>a\x00b\nc", nil}, {"<14>next", nil}, {"", io.EOF}},
		},
		{
			name: "digits without a space are a line",
			in:   "2026-12-01 11:40:18 plain text\n12345\n",
			want: []frame{{"2026-12-01 11:40:18 plain text", nil}, {"12345", nil}, {"", io.EOF}},
		},
		{
			name: "ten digits are a line",
			in:   "1234567890 x\n",
			want: []frame{{"1234567890 x", nil}, {"", io.EOF}},
		},
		{
			name: "count of zero is skipped",
			in:   "0 <14>a\n",
			want: []frame{{"<14>a", nil}, {"", io.EOF}},
		},
		{
			name: "stream ends in digits",
			in:   "<14>a\n123",
			want: []frame{{"<14>a", nil}, {"123", nil}, {"", io.EOF}},
		},
		{
			name: "stream ends inside a counted frame",
			in:   "10 <14>abc",
			want: []frame{{"<14>abc", nil}, {"", io.EOF}},
		},
		{
			name: "stream ends after a count",
			in:   "<14>a\n12 ",
			want: []frame{{"<14>a", nil}, {"", io.EOF}},
		},
		{
			name: "stream ends after a CR",
			in:   "<14>a\r",
			want: []frame{{"<14>a", nil}, {"", io.EOF}},
		},
		{
			name: "empty stream",
			in:   "",
			want: []frame{{"", io.EOF}},
		},
		{
			name: "line too long",
			in:   "<14>0123456789\n<14>ok\n",
			max:  8,
			want: []frame{{"<14>0123", ErrTooLong}, {"<14>ok", nil}, {"", io.EOF}},
		},
		{
			name: "line of max bytes, with CR LF",
			in:   "<14>0123\r\n<14>01234\r\n<14>0123\x00",
			max:  8,
			want: []frame{{"<14>0123", nil}, {"<14>0123", ErrTooLong}, {"<14>0123", nil}, {"", io.EOF}},
		},
		{
			name: "very long line",
			in:   "<14>" + strings.Repeat("x", 10000) + "\n<14>ok\n",
			max:  100,
			want: []frame{{"<14>" + strings.Repeat("x", 96), ErrTooLong}, {"<14>ok", nil}, {"", io.EOF}},
		},
		{
			name: "too long final line",
			in:   "<14>0123456789",
			max:  8,
			want: []frame{{"<14>0123", ErrTooLong}, {"", io.EOF}},
		},
		{
			name: "octet count too large",
			in:   octets("<14>0123456789") + octets("<14>ok") + "<14>line\n",
			max:  8,
			want: []frame{{"<14>0123", ErrTooLong}, {"<14>ok", nil}, {"<14>line", nil}, {"", io.EOF}},
		},
		{
			name: "octet count far too large",
			in:   "999999999 <14>" + strings.Repeat("y", 5000),
			max:  8,
			want: []frame{{"<14>yyyy", ErrTooLong}, {"", io.EOF}},
		},
		{
			name: "octet count too large, stream ends before max",
			in:   "100 <14>",
			max:  8,
			want: []frame{{"<14>", ErrTooLong}, {"", io.EOF}},
		},
		{
			name: "max of 1",
			in:   "ab\n3 xyz\nc\n",
			max:  1,
			want: []frame{{"a", ErrTooLong}, {"x", ErrTooLong}, {"c", nil}, {"", io.EOF}},
		},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				got := readAll(t, rd.wrap(strings.NewReader(tt.in)), tt.max)
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("frames of %q:\n got %v\nwant %v", tt.in, got, tt.want)
				}
			})
		}
	}
}

func TestReaderError(t *testing.T) {
	boom := errors.New("connection reset")
	r := NewReader(io.MultiReader(strings.NewReader("<14>a\n<14>partial"), iotest.ErrReader(boom)), 0)
	for _, want := range []frame{{"<14>a", nil}, {"<14>partial", nil}, {"", boom}, {"", boom}} {
		b, err := r.Next()
		if got := (frame{string(b), err}); got.String() != want.String() {
			t.Fatalf("Next = %v, want %v", got, want)
		}
	}
}

func TestReaderEOFRepeats(t *testing.T) {
	r := NewReader(strings.NewReader("<14>a"), 0)
	if b, err := r.Next(); string(b) != "<14>a" || err != nil {
		t.Fatalf("Next = %q, %v", b, err)
	}
	for range 3 {
		if b, err := r.Next(); b != nil || err != io.EOF {
			t.Fatalf("Next = %q, %v; want io.EOF", b, err)
		}
	}
}

// zeroReader returns no bytes and no error, forever.
type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	if _, err := NewReader(zeroReader{}, 0).Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("Next = %v, want io.ErrNoProgress", err)
	}
}

func TestReaderDefaultMax(t *testing.T) {
	long := "<14>" + strings.Repeat("z", DefaultMaxFrame)
	got := readAll(t, strings.NewReader(long+"\n"+octets(long)), -1)
	want := []frame{{long[:DefaultMaxFrame], ErrTooLong}, {long[:DefaultMaxFrame], ErrTooLong}, {"", io.EOF}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %d frames %.80v", len(got), got)
	}
}

func TestReaderDoesNotAllocate(t *testing.T) {
	stream := strings.Repeat("<30>Dec  1 11:40:18 myhost myapp[1234]: message\n"+octets("<14>counted"), 1000)
	src := strings.NewReader(stream)
	r := NewReader(src, 1024)
	if _, err := r.Next(); err != nil { // the buffer is allocated on first use
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(500, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}

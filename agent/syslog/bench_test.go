package syslog

import (
	"strings"
	"testing"
)

// msg3164 is a 200-byte RFC 3164 message as rsyslog forwards it.
var msg3164 = func() []byte {
	s := "<30>Dec  1 11:40:18 web-17.prod.example.com nginx[2817]: 10.1.2.3 - - \"GET /api/v1/items?page=2 HTTP/1.1\" 200 5120 \"-\" \"Mozilla/5.0\" rt=0.042 "
	return []byte(s + strings.Repeat("x", 199-len(s)) + "\n")
}()

var msg5424 = []byte("<165>1 2026-12-01T11:40:18.123456+00:00 web-17.prod.example.com nginx 2817 ACCESS [meta@32473 env=\"prod\" zone=\"eu-west-1a\"] 10.1.2.3 \"GET /api/v1/items?page=2 HTTP/1.1\" 200 5120 rt=0.042\n")

var msgJSON = []byte(`<14>myapp: {"time":"2026-12-01T11:40:18.123Z","level":"INFO","msg":"request served","path":"/api/v1/items","status":200,"duration_ms":42,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}` + "\x00")

func benchParseAppendJSON(b *testing.B, in []byte) {
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse(in, testNow)
		if err != nil {
			b.Fatal(err)
		}
		buf = m.AppendJSON(buf[:0], "agent-host", "tcp://127.0.0.1:5514", testNow)
	}
}

func BenchmarkParseAppendJSON(b *testing.B) {
	if len(msg3164) != 200 {
		b.Fatalf("msg3164 is %d bytes", len(msg3164))
	}
	b.Run("rfc3164", func(b *testing.B) { benchParseAppendJSON(b, msg3164) })
	b.Run("rfc5424", func(b *testing.B) { benchParseAppendJSON(b, msg5424) })
	b.Run("json", func(b *testing.B) { benchParseAppendJSON(b, msgJSON) })
}

func BenchmarkParse(b *testing.B) {
	b.SetBytes(int64(len(msg3164)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(msg3164, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReader(b *testing.B) {
	stream := []byte(strings.Repeat(string(msg3164), 1000))
	b.SetBytes(int64(len(msg3164)))
	b.ReportAllocs()
	r := NewReader(&loopReader{data: stream}, 0)
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader repeats data forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

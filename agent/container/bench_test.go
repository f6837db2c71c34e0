package container

import (
	"encoding/json"
	"strings"
	"testing"
)

// The benchmark lines are 230 bytes long, a typical container log line.

func benchCRI() []byte {
	prefix := "2024-03-14T09:58:00.123456789Z stdout F "
	msg := `{"level":"info","ts":"2024-03-14T09:58:00.123Z","msg":"request served","method":"GET","path":"/api/v1/orders","status":200,"latency_ms":12.5,"user":"u-42","trace":"`
	line := prefix + msg
	line += strings.Repeat("a", 230-len(line)-3) + `"}` + "\n"
	return []byte(line)
}

func benchDocker(content string) []byte {
	b, err := json.Marshal(map[string]string{"log": content + "\n", "stream": "stdout", "time": "2024-03-14T09:58:00.123456789Z"})
	if err != nil {
		panic(err)
	}
	return b
}

// fill pads content so that its Docker line is 230 bytes.
func fill(content string) []byte {
	for pad := ""; ; pad += "x" {
		if b := benchDocker(content + pad); len(b) >= 230 {
			return b
		}
	}
}

func BenchmarkParseCRI(b *testing.B) {
	line := benchCRI()
	if len(line) != 230 {
		b.Fatalf("line is %d bytes", len(line))
	}
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCRI(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDocker(b *testing.B) {
	for _, bc := range []struct {
		name string
		line []byte
	}{
		{"text", fill("2024-03-14 09:58:00.123 INFO  [main] c.e.OrderService - request served GET /api/v1/orders status=200 latency=12.5ms user=u-42 ")},
		{"json", fill(`{"level":"info","ts":"2024-03-14T09:58:00.123Z","msg":"request served","method":"GET","path":"/api/v1/orders","status":200,"trace":"`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if len(bc.line) != 230 {
				b.Fatalf("line is %d bytes", len(bc.line))
			}
			b.SetBytes(int64(len(bc.line)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseDocker(bc.line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkJoinerWholeLines(b *testing.B) {
	l, err := ParseCRI(benchCRI())
	if err != nil {
		b.Fatal(err)
	}
	j := NewJoiner(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, done := j.Add(l); !done {
			b.Fatal("not done")
		}
	}
}

func BenchmarkMetaFromPath(b *testing.B) {
	path := "/var/log/pods/default_web-7d4b9c8f6-x2x9q_0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/nginx/0.log"
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		m, _ := MetaFromPath(path)
		buf = m.AppendJSON(buf[:0])
	}
}

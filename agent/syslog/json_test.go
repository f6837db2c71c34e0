package syslog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestAppendJSON(t *testing.T) {
	const origin = "tcp://127.0.0.1:5514"
	tests := []struct {
		name   string
		in     string
		host   string
		origin string
		want   map[string]any
	}{
		{
			name: "rsyslog traditional", in: "<30>Dec  1 11:40:18 myhost myapp[1234]: message\n", host: "agent", origin: origin,
			want: map[string]any{
				"time": "2026-12-01T11:40:18+01:00", "level": "info", "facility": "daemon", "host": "myhost",
				"app": "myapp", "pid": "1234", "message": "message", "origin": map[string]any{"syslog": origin},
			},
		},
		{
			name: "python bare: agent host and read time", in: "<11>myapp: disk full\x00", host: "agent", origin: "unixgram:///dev/log",
			want: map[string]any{
				"time": "2026-12-01T12:00:00+01:00", "level": "error", "facility": "user", "host": "agent",
				"app": "myapp", "message": "disk full", "origin": map[string]any{"syslog": "unixgram:///dev/log"},
			},
		},
		{
			name: "rfc5424 structured data", host: "agent", origin: origin,
			in: `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] ` + bom + "An application event log entry...",
			want: map[string]any{
				"time": "2003-10-11T22:14:15.003Z", "level": "notice", "facility": "local4", "host": "mymachine.example.com",
				"app": "evntslog", "msgid": "ID47", "message": "An application event log entry...",
				"structured_data": `[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]`,
				"origin":          map[string]any{"syslog": origin},
			},
		},
		{
			name: "rfc5424 nanoseconds and offset", in: "<30>1 2026-12-01T11:40:18.123456789-07:00 h a 1 - - m",
			want: map[string]any{
				"time": "2026-12-01T11:40:18.123456789-07:00", "level": "info", "facility": "daemon", "host": "h",
				"app": "a", "pid": "1", "message": "m",
			},
		},
		{
			name: "empty fields left out", in: "<14>", host: "", origin: "",
			want: map[string]any{"time": "2026-12-01T12:00:00+01:00", "level": "info", "facility": "user"},
		},
		{
			name: "invalid UTF-8 and control characters", in: "<14>bad \xff\xfe \"q\" \t\x01 \u2028", host: "agent",
			want: map[string]any{
				"time": "2026-12-01T12:00:00+01:00", "level": "info", "facility": "user", "host": "agent",
				"message": "bad \ufffd\ufffd \"q\" \t\x01 \u2028",
			},
		},
		{
			name: "JSON array is a message", in: `<14>[1,2]`,
			want: map[string]any{"time": "2026-12-01T12:00:00+01:00", "level": "info", "facility": "user", "message": "[1,2]"},
		},
		{
			name: "broken JSON is a message", in: `<14>{"msg":"x",}`,
			want: map[string]any{"time": "2026-12-01T12:00:00+01:00", "level": "info", "facility": "user", "message": `{"msg":"x",}`},
		},
		{
			name: "JSON object with invalid UTF-8 is a message", in: "<14>{\"msg\":\"\xff\"}",
			want: map[string]any{"time": "2026-12-01T12:00:00+01:00", "level": "info", "facility": "user", "message": "{\"msg\":\"\ufffd\"}"},
		},
		{
			name: "JSON message merged", in: `<14>myapp: {"msg": "x", "level": "INFO", "task": "a1"}` + "\x00", host: "agent", origin: "udp://127.0.0.1:5514",
			want: map[string]any{
				"msg": "x", "level": "INFO", "task": "a1",
				"syslog": map[string]any{
					"time": "2026-12-01T12:00:00+01:00", "level": "info", "facility": "user", "host": "agent", "app": "myapp",
					"origin": map[string]any{"syslog": "udp://127.0.0.1:5514"},
				},
			},
		},
		{
			name: "JSON message in RFC 3164 merged", in: "<134>Dec  1 11:40:18 web1 api[7]:  \t{\"time\":\"2026-12-01T11:40:18.5Z\",\"msg\":\"GET /\",\"status\":200}  ", origin: origin,
			want: map[string]any{
				"time": "2026-12-01T11:40:18.5Z", "msg": "GET /", "status": 200.0,
				"syslog": map[string]any{
					"time": "2026-12-01T11:40:18+01:00", "level": "info", "facility": "local0", "host": "web1", "app": "api", "pid": "7",
					"origin": map[string]any{"syslog": origin},
				},
			},
		},
		{
			name: "empty JSON object merged", in: "<14>{ }",
			want: map[string]any{"syslog": map[string]any{"time": "2026-12-01T12:00:00+01:00", "level": "info", "facility": "user"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in), testNow)
			if err != nil {
				t.Fatal(err)
			}
			out := m.AppendJSON([]byte("prefix:"), tt.host, tt.origin, testNow)
			out, ok := bytes.CutPrefix(out, []byte("prefix:"))
			if !ok {
				t.Fatalf("AppendJSON did not append to dst: %s", out)
			}
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("decoding %s: %v", out, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("AppendJSON of %q =\n%s\nwant members %v", tt.in, out, tt.want)
			}
		})
	}
}

func TestAppendJSONMergeKeepsAppBytes(t *testing.T) {
	app := `{"msg": "x",  "level":"INFO", "nested": {"a": [1, 2.50, null]}, "u": "\u00e9"}`
	m, err := Parse([]byte("<14>myapp: "+app), testNow)
	if err != nil {
		t.Fatal(err)
	}
	out := string(m.AppendJSON(nil, "agent", "udp://x", testNow))
	prefix := strings.TrimSuffix(app, "}") + `,"syslog":{`
	if !strings.HasPrefix(out, prefix) {
		t.Fatalf("merged output\n%s\ndoes not start with the application's bytes\n%s", out, prefix)
	}
	if !json.Valid([]byte(out)) {
		t.Fatalf("invalid JSON: %s", out)
	}
}

func TestAppendJSONMemberOrder(t *testing.T) {
	m, err := Parse([]byte(`<165>1 2003-10-11T22:14:15.003Z h app 12 ID47 [a@1 b="c"] hi`), testNow)
	if err != nil {
		t.Fatal(err)
	}
	got := string(m.AppendJSON(nil, "agent", "tcp://x", testNow))
	want := `{"time":"2003-10-11T22:14:15.003Z","level":"notice","facility":"local4","host":"h","app":"app","pid":"12","msgid":"ID47","structured_data":"[a@1 b=\"c\"]","message":"hi","origin":{"syslog":"tcp://x"}}`
	if got != want {
		t.Fatalf("AppendJSON =\n%s\nwant\n%s", got, want)
	}
}

func TestAppendJSONDoesNotAllocate(t *testing.T) {
	m, err := Parse([]byte("<30>Dec  1 11:40:18 myhost myapp[1234]: message with \"quotes\" and \xff\n"), testNow)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = m.AppendJSON(buf[:0], "agent", "tcp://127.0.0.1:5514", testNow) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

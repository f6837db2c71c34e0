package syslog_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kinlog/kinlog/agent/syslog"
)

func ExampleParse() {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	m, err := syslog.Parse([]byte("<30>Dec  1 11:40:18 myhost myapp[1234]: message\n"), now)
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Format, syslog.FacilityName(m.Facility), syslog.SeverityName(m.Severity), m.Hostname, m.AppName, m.ProcID)
	fmt.Printf("%s\n", m.AppendJSON(nil, "agent-host", "tcp://127.0.0.1:5514", now))
	// Output:
	// rfc3164 daemon info myhost myapp 1234
	// {"time":"2026-12-01T11:40:18Z","level":"info","facility":"daemon","host":"myhost","app":"myapp","pid":"1234","message":"message","origin":{"syslog":"tcp://127.0.0.1:5514"}}
}

func ExampleMessage_AppendJSON_jsonMessage() {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	// Python's SysLogHandler with ident "myapp: " and a JSON formatter.
	m, _ := syslog.Parse([]byte(`<14>myapp: {"msg":"x","level":"INFO","task":"a1"}`+"\x00"), now)
	fmt.Printf("%s\n", m.AppendJSON(nil, "agent-host", "udp://127.0.0.1:5514", now))
	// Output:
	// {"msg":"x","level":"INFO","task":"a1","syslog":{"time":"2026-12-01T12:00:00Z","level":"info","facility":"user","host":"agent-host","app":"myapp","origin":{"syslog":"udp://127.0.0.1:5514"}}}
}

func ExampleReader() {
	stream := "69 <30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - message\n" +
		"<30>Dec  1 11:40:18 myhost myapp[1234]: message\n" +
		"<14>from python\x00"
	r := syslog.NewReader(strings.NewReader(stream), 64<<10)
	for {
		frame, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, syslog.ErrTooLong) {
			panic(err) // the connection failed
		}
		// With ErrTooLong, frame holds the first 64 KiB of the message: ship it, marked truncated.
		fmt.Printf("%q\n", frame)
	}
	// Output:
	// "<30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - message\n"
	// "<30>Dec  1 11:40:18 myhost myapp[1234]: message"
	// "<14>from python"
}

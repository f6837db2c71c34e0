package syslog

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/kinlog/kinlog/internal/jsonx"
)

// AppendJSON appends m to dst as one JSON object, the record the agent ships:
//
//	{"time":"2026-12-01T11:40:18Z","level":"info","facility":"daemon","host":"myhost",
//	 "app":"myapp","pid":"1234","msgid":"ID47","structured_data":"[a@1 b=\"c\"]",
//	 "message":"...","origin":{"syslog":"tcp://127.0.0.1:5514"}}
//
// time is m.Time, or now when m carries none, in RFC 3339 with nanoseconds; host is
// m.Hostname, or the host argument when m has none; origin names the input the message
// came from. Members with an empty value are left out.
//
// When m.Msg is a JSON object (valid UTF-8, and valid JSON after trimming white space),
// its members are shipped as they are, byte for byte, and the syslog members go under a
// "syslog" member appended to them (without "message"):
//
//	{"msg":"x","level":"INFO","syslog":{"time":"...","level":"info","facility":"user",...}}
//
// The application's members keep their names, so its own "time" and "level" are the
// ones the sink reads. Any other Msg, invalid UTF-8 included, becomes the "message" string,
// with invalid bytes as U+FFFD. The result is always valid JSON.
func (m *Message) AppendJSON(dst []byte, host, origin string, now time.Time) []byte {
	t := m.Time
	if t.IsZero() {
		t = now
	}
	if obj, ok := jsonObject(m.Msg); ok {
		dst = append(dst, obj[:len(obj)-1]...)
		if !emptyObject(obj) {
			dst = append(dst, ',')
		}
		dst = append(dst, `"syslog":`...)
		dst = m.appendMembers(dst, t, host, origin, false)
		return append(dst, '}')
	}
	return m.appendMembers(dst, t, host, origin, true)
}

// appendMembers appends the syslog object, with the message when withMsg is set.
func (m *Message) appendMembers(dst []byte, t time.Time, host, origin string, withMsg bool) []byte {
	dst = append(dst, `{"time":"`...)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	dst = appendMember(dst, `,"level":`, SeverityName(m.Severity))
	dst = appendMember(dst, `,"facility":`, FacilityName(m.Facility))
	if m.Hostname != "" {
		host = m.Hostname
	}
	dst = appendMember(dst, `,"host":`, host)
	dst = appendMember(dst, `,"app":`, m.AppName)
	dst = appendMember(dst, `,"pid":`, m.ProcID)
	dst = appendMember(dst, `,"msgid":`, m.MsgID)
	dst = appendMember(dst, `,"structured_data":`, m.StructuredData)
	if withMsg && len(m.Msg) > 0 {
		dst = append(dst, `,"message":`...)
		dst = jsonx.AppendString(dst, m.Msg)
	}
	if origin != "" {
		dst = append(dst, `,"origin":{"syslog":`...)
		dst = jsonx.AppendString(dst, origin)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendMember appends key (`,"name":`) and the string v, unless v is empty.
func appendMember(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, key...)
	return jsonx.AppendString(dst, v)
}

// jsonObject returns b without surrounding JSON white space when that is a JSON object
// in valid UTF-8.
func jsonObject(b []byte) ([]byte, bool) {
	for len(b) > 0 && isJSONSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, false
	}
	return b, utf8.Valid(b) && json.Valid(b)
}

// emptyObject reports whether the JSON object obj has no members.
func emptyObject(obj []byte) bool {
	for _, c := range obj[1 : len(obj)-1] {
		if !isJSONSpace(c) {
			return false
		}
	}
	return true
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

package agent

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/kinlog/kinlog/internal/jsonx"
	"github.com/kinlog/kinlog/producer"
)

// isJSONObject tells whether b (trimmed of spaces) is one JSON object.
func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' && gjson.ValidBytes(b)
}

// spliceMembers appends obj (a JSON object) to dst with members — JSON text of the form
// "k":v,"k2":v2 — added before its closing brace.
func spliceMembers(dst, obj, members []byte) []byte {
	obj = bytes.TrimSpace(obj)
	if len(members) == 0 {
		return append(dst, obj...)
	}
	body := bytes.TrimSpace(obj[:len(obj)-1])
	dst = append(dst, body...)
	if len(body) > 1 { // more than "{"
		dst = append(dst, ',')
	}
	dst = append(dst, members...)
	return append(dst, '}')
}

// textRecord describes a text line to wrap in a JSON object.
type textRecord struct {
	line      []byte
	time      time.Time
	host      string
	service   string
	origin    []byte // rendered member: "origin":{…}
	extra     []byte // more rendered members, or nil
	truncated bool
	original  int // the line's size before it was cut
}

// appendText renders r as {"time":…,"message":…,"host":…,"service":…,"origin":…,…}.
func appendText(dst []byte, r *textRecord) []byte {
	dst = append(dst, `{"time":"`...)
	dst = r.time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","message":`...)
	dst = jsonx.AppendString(dst, r.line)
	if r.host != "" {
		dst = append(dst, `,"host":`...)
		dst = jsonx.AppendString(dst, r.host)
	}
	if r.service != "" {
		dst = append(dst, `,"service":`...)
		dst = jsonx.AppendString(dst, r.service)
	}
	if len(r.origin) > 0 {
		dst = append(dst, ',')
		dst = append(dst, r.origin...)
	}
	if len(r.extra) > 0 {
		dst = append(dst, ',')
		dst = append(dst, r.extra...)
	}
	if r.truncated {
		dst = append(dst, `,"truncated":true,"original_bytes":`...)
		dst = strconv.AppendInt(dst, int64(r.original), 10)
	}
	return append(dst, '}')
}

// originMember renders "origin":{"<kind>":"<where>"}.
func originMember(kind, where string) []byte {
	b := []byte(`"origin":{`)
	b = jsonx.AppendString(b, kind)
	b = append(b, ':')
	b = jsonx.AppendString(b, where)
	return append(b, '}')
}

// keyPolicy picks a record's partition key.
type keyPolicy struct {
	kind  byte // 'r' random, 'o' origin, 'f' field
	field string
}

// parseKeyPolicy reads random, origin or field:<member>.
func parseKeyPolicy(s string) (keyPolicy, error) {
	switch {
	case s == "" || s == "random":
		return keyPolicy{kind: 'r'}, nil
	case s == "origin":
		return keyPolicy{kind: 'o'}, nil
	case strings.HasPrefix(s, "field:") && len(s) > len("field:"):
		return keyPolicy{kind: 'f', field: s[len("field:"):]}, nil
	}
	return keyPolicy{}, configErr("partition_key", "%q is not random, origin or field:<member>", s)
}

// key returns the partition key of a record: its origin (file path or socket), a member of
// the record (falling back to random when it is missing), or a random key: randomKeys[pick
// mod their number] (file records pick by their identity, see keyPick).
func (k keyPolicy) key(data []byte, origin string, pick uint64) string {
	switch k.kind {
	case 'o':
		if origin != "" {
			return truncKey(origin)
		}
	case 'f':
		if v := gjson.GetBytes(data, k.field); v.Exists() && v.String() != "" {
			return truncKey(v.String())
		}
	}
	return randomKeys[pick%uint64(len(randomKeys))]
}

// randomKeys are the keys the random policy picks from: enough to spread records evenly
// over any number of shards a stream is likely to have, few enough that the producer's
// cache keeps their hashes (a new key per record costs an MD5 each). They are the same in
// every run (a fixed seed): a file line read again after a restart picks the key, and so
// the shard, of its first copy.
var randomKeys = func() []string {
	r := rand.New(rand.NewPCG(0x6b696e6c6f67, 0x6167656e74)) // "kinlog", "agent"
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = strconv.FormatUint(r.Uint64(), 36)
	}
	return keys
}()

func truncKey(k string) string {
	if len(k) <= producer.MaxPartitionKeyLength {
		return k
	}
	if r := []rune(k); len(r) > producer.MaxPartitionKeyLength {
		// Keep the end: paths differ at their end.
		return string(r[len(r)-producer.MaxPartitionKeyLength:])
	}
	return k
}

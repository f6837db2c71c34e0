package container

import "bytes"

var (
	errCRITime   = syntaxError("CRI: no RFC 3339 timestamp")
	errCRIStream = syntaxError(`CRI: stream is not "stdout" or "stderr"`)
	errCRITag    = syntaxError(`CRI: tag is not "F" or "P"`)
)

// ParseCRI parses one line of the CRI log format, which containerd, CRI-O and the kubelet
// write (the kubelet's /var/log/pods files):
//
//	<RFC 3339 time> <stdout|stderr> <tags> <content>
//
// The first of the ':'-separated tags is F (a full line) or P (a partial line: the output
// line continues in the stream's next entry); further tags are ignored, as the kubelet does.
// One trailing "\n" of b is dropped; the content is everything after the space that follows
// the tags, unchanged (a missing space counts as empty content). Log aliases b.
//
// Errors wrap [ErrSyntax].
func ParseCRI(b []byte) (Line, error) {
	var l Line
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return l, errCRITime
	}
	t, ok := parseTime(b[:i])
	if !ok {
		return l, errCRITime
	}
	l.Time = t
	rest := b[i+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("stdout ")):
		l.Stream = Stdout
	case bytes.HasPrefix(rest, []byte("stderr ")):
		l.Stream = Stderr
	default:
		return Line{}, errCRIStream
	}
	rest = rest[len("stdout "):]
	tags := rest
	if j := bytes.IndexByte(rest, ' '); j >= 0 {
		tags, l.Log = rest[:j], rest[j+1:]
	} else {
		l.Log = rest[len(rest):]
	}
	if j := bytes.IndexByte(tags, ':'); j >= 0 {
		tags = tags[:j]
	}
	switch {
	case len(tags) == 1 && tags[0] == 'F':
	case len(tags) == 1 && tags[0] == 'P':
		l.Partial = true
	default:
		return Line{}, errCRITag
	}
	return l, nil
}

package container

import (
	"errors"
	"strconv"
	"time"

	"github.com/kinlog/kinlog/internal/timefmt"
)

// rfc3339Fast is internal/timefmt's, shared by the encoder and the agent.
var rfc3339Fast = timefmt.RFC3339Fast

// Stream is the output stream a line was written to.
type Stream uint8

// The streams. The zero value is Stdout.
const (
	Stdout Stream = iota
	Stderr
)

// String returns "stdout" or "stderr" (and "Stream(N)" for other values).
func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return "Stream(" + strconv.Itoa(int(s)) + ")"
}

// Line is one entry of a container log file.
type Line struct {
	// Time is when the runtime read the output, in UTC.
	Time time.Time
	// Stream is the stream the container wrote the output to.
	Stream Stream
	// Partial reports that the line continues in the next entry of the same stream: the
	// runtime cut a long output line into pieces. [Joiner] joins them.
	Partial bool
	// Log is the content, without the newline that ended it. It aliases the parsed input
	// (see [ParseDocker] for the exception).
	Log []byte
}

// ErrSyntax is the error every parse failure wraps: the input is not a line of the format.
var ErrSyntax = errors.New("container: invalid log line")

// The parse errors are values, not built per call: with format detection most lines of a
// file of the other format fail, and failing must stay cheap.
func syntaxError(msg string) error { return &syntaxErr{msg} }

type syntaxErr struct{ msg string }

func (e *syntaxErr) Error() string { return "container: invalid log line: " + e.msg }
func (e *syntaxErr) Unwrap() error { return ErrSyntax }

// parseTime reads an RFC 3339 time as time.Parse(time.RFC3339Nano, ...) does, returning it
// in UTC. The common forms are read without allocating.
func parseTime(b []byte) (time.Time, bool) {
	if t, ok := rfc3339Fast(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

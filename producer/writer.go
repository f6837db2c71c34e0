package producer

import (
	"context"
)

// WriterOptions configures a [Writer]. The zero value is valid.
type WriterOptions struct {
	// PartitionKey returns the partition key for one line. The default picks a random key
	// from a fixed pool of 1024, spreading lines evenly over shards.
	PartitionKey func(line []byte) string
	// NonBlocking makes Write use [Producer.TryPut] and fail with [ErrBufferFull] when the
	// buffer is full. The default is to wait for room, so no line is lost.
	NonBlocking bool
}

// Writer is an io.Writer that puts each Write as one record, for loggers that write one
// JSON line per call (zap, zerolog, logrus). A single trailing newline is removed; an empty
// write puts nothing. Write copies its input, as io.Writer requires. Create it with
// [NewWriter].
type Writer struct {
	p    *Producer
	opts WriterOptions
	keys *keyPool
}

// NewWriter returns a Writer putting into p. opts may be nil.
func NewWriter(p *Producer, opts *WriterOptions) *Writer {
	w := &Writer{p: p, keys: newKeyPool()}
	if opts != nil {
		w.opts = *opts
	}
	return w
}

// Write puts b as one record. It returns len(b) once the record is buffered, or 0 and the
// Put error.
func (w *Writer) Write(b []byte) (int, error) {
	line := b
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if len(line) == 0 {
		return len(b), nil
	}
	var pk string
	if w.opts.PartitionKey != nil {
		pk = w.opts.PartitionKey(line)
	}
	if pk == "" {
		pk = w.keys.pick()
	}
	rec := Record{PartitionKey: pk, Data: line}
	var err error
	if w.opts.NonBlocking {
		err = w.p.TryPut(rec)
	} else {
		err = w.p.Put(context.Background(), rec)
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

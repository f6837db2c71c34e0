package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kinlog/kinlog/agent/syslog"
	"github.com/kinlog/kinlog/producer"
)

// listener is one socket input: newline-delimited records or syslog messages.
type listener struct {
	a       *Agent
	name    string
	cfg     Listener
	syslog  bool
	network string
	addr    string
	origin  []byte // "origin":{…}
	m       *inputMetrics

	ln   net.Listener    // stream sockets
	pc   net.PacketConn  // datagram sockets
	stop context.Context // ends when the agent stops reading
}

// listen binds the socket. A stale Unix socket file (left by a crash) is removed first;
// the socket is made writable by every local user, like /dev/log.
func (l *listener) listen() error {
	if l.network == "unix" || l.network == "unixgram" {
		if fi, err := os.Lstat(l.addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(l.addr)
		}
		if err := os.MkdirAll(filepath.Dir(l.addr), 0o755); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	var err error
	switch l.network {
	case "udp", "unixgram":
		l.pc, err = net.ListenPacket(l.network, l.addr)
	default:
		l.ln, err = net.Listen(l.network, l.addr)
	}
	if err != nil {
		return fmt.Errorf("%s: listening on %s: %w", l.name, l.cfg.Listen, err)
	}
	if l.network == "unix" || l.network == "unixgram" {
		if err := os.Chmod(l.addr, 0o666); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	return nil
}

// Addr returns the bound address (the port chosen for :0).
func (l *listener) boundAddr() string {
	if l.pc != nil {
		return l.pc.LocalAddr().String()
	}
	return l.ln.Addr().String()
}

// run serves the socket until ctx ends. Records read are put with drain, which outlives
// ctx until the shutdown deadline.
func (l *listener) run(ctx, drain context.Context) error {
	l.stop = ctx
	stop := context.AfterFunc(ctx, func() {
		if l.ln != nil {
			l.ln.Close()
		}
		if l.pc != nil {
			l.pc.Close()
		}
	})
	defer stop()
	if l.pc != nil {
		return l.readPackets(drain)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	conns := map[net.Conn]struct{}{}
	var mu sync.Mutex
	closeConns := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			// Stop reading at once; what was read is put before the connection ends.
			_ = c.SetReadDeadline(time.Now())
		}
	})
	defer closeConns()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("%s: accept: %w", l.name, err)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			var err error
			if l.syslog {
				err = l.readSyslogStream(drain, c)
			} else {
				err = l.readLines(drain, c)
			}
			if err != nil && ctx.Err() == nil {
				l.a.log.Warn("socket connection ended", "input", l.name, "err", err)
			}
		}()
	}
}

func (l *listener) maxBytes() int {
	if l.cfg.MaxBytes > 0 {
		return l.cfg.MaxBytes
	}
	return DefaultMaxLineBytes
}

// readLines reads newline-delimited records from one connection.
func (l *listener) readLines(ctx context.Context, c net.Conn) error {
	br := bufio.NewReaderSize(c, 64<<10)
	limit := l.maxBytes()
	var line []byte
	size := 0
	var rec []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if room := limit - len(line); room > 0 {
				line = append(line, chunk[:min(room, len(chunk))]...)
			}
			size += len(chunk)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(line) > 0 && (err == nil || errors.Is(err, io.EOF) || isTimeout(err)) {
			full := size
			if line[len(line)-1] == '\n' {
				line, full = line[:len(line)-1], full-1
			}
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line, full = line[:len(line)-1], full-1
			}
			var perr error
			rec, perr = l.put(ctx, rec, line, full > len(line), full)
			if perr != nil {
				return perr
			}
		}
		line, size = line[:0], 0
		if err != nil {
			if errors.Is(err, io.EOF) || isTimeout(err) {
				return nil
			}
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readSyslogStream reads framed syslog messages (RFC 6587) from one connection.
func (l *listener) readSyslogStream(ctx context.Context, c net.Conn) error {
	r := syslog.NewReader(c, l.maxBytes())
	var rec []byte
	for {
		msg, err := r.Next()
		if len(msg) > 0 {
			var perr error
			if rec, perr = l.putSyslog(ctx, rec, msg, errors.Is(err, syslog.ErrTooLong)); perr != nil {
				return perr
			}
		}
		if err != nil && !errors.Is(err, syslog.ErrTooLong) {
			if errors.Is(err, io.EOF) || isTimeout(err) {
				return nil
			}
			return err
		}
	}
}

// readPackets reads syslog datagrams (UDP, Unix datagram).
func (l *listener) readPackets(ctx context.Context) error {
	buf := make([]byte, 64<<10+1)
	var rec []byte
	for {
		n, _, err := l.pc.ReadFrom(buf)
		if n > 0 {
			var perr error
			if rec, perr = l.putSyslog(ctx, rec, buf[:n], false); perr != nil {
				return perr
			}
		}
		if err != nil {
			if l.stop.Err() != nil {
				return nil
			}
			if isTimeout(err) {
				continue
			}
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
}

// putSyslog parses one syslog message and puts its record; a message without a valid
// priority is shipped as a text line, counted as malformed.
func (l *listener) putSyslog(ctx context.Context, rec, msg []byte, truncated bool) ([]byte, error) {
	now := time.Now()
	m, err := syslog.Parse(msg, now)
	if err != nil {
		l.m.malformed.Inc()
		return l.put(ctx, rec, msg, truncated, len(msg))
	}
	l.m.linesRead.Inc()
	if truncated {
		l.m.truncated.Inc()
	}
	rec = m.AppendJSON(rec[:0], l.a.host, l.cfg.Listen, now)
	return rec, l.send(ctx, rec, l.cfg.Listen)
}

// put ships a line: a JSON object as it is, anything else wrapped as text.
func (l *listener) put(ctx context.Context, rec, line []byte, truncated bool, orig int) ([]byte, error) {
	if len(line) == 0 {
		return rec, nil
	}
	l.m.linesRead.Inc()
	if truncated {
		l.m.truncated.Inc()
	}
	rec = rec[:0]
	if !truncated && isJSONObject(line) {
		rec = append(rec, line...)
	} else {
		tr := textRecord{line: line, time: time.Now(), host: l.a.host, origin: l.origin, truncated: truncated, original: orig}
		for {
			rec = appendText(rec[:0], &tr)
			if len(rec) <= l.a.maxData {
				break
			}
			tr.line, tr.truncated = tr.line[:len(tr.line)*3/4], true
		}
	}
	return rec, l.send(ctx, rec, l.cfg.Listen)
}

func (l *listener) send(ctx context.Context, rec []byte, origin string) error {
	if len(rec) > l.a.maxData {
		// A JSON object as it came, too big for a record: wrap and cut it.
		tr := textRecord{line: rec, time: time.Now(), host: l.a.host, origin: l.origin, truncated: true, original: len(rec)}
		for len(rec) > l.a.maxData {
			tr.line = tr.line[:len(tr.line)*3/4]
			rec = appendText(nil, &tr)
		}
		l.m.truncated.Inc()
	}
	err := l.a.sockets.Put(ctx, producer.Record{PartitionKey: l.a.key.key(rec, origin, rand.Uint64()), Data: rec, Ref: producer.Ref{Source: l.m}})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w", l.name, err)
	}
	l.m.recordsSent.Inc()
	return nil
}

// Package syslog parses syslog messages as they reach a log agent, frames them on stream
// transports and renders them as the JSON records the agent ships. It does no I/O of its
// own: the agent's listeners hand it datagrams and connections.
//
// # Parsing
//
// [Parse] reads one message and tells its [Format] apart by its header. RFC 5424, as
// rsyslog's RSYSLOG_SyslogProtocol23Format and most modern senders write it:
//
//	<30>1 2026-12-01T11:40:18.123456+00:00 myhost myapp 1234 - - message
//
// RFC 3164, the BSD format of rsyslog's traditional forwarding, with or without the host
// (glibc's syslog(3) leaves it out), and also with an RFC 3339 timestamp
// (RSYSLOG_ForwardFormat). BSD timestamps have no year: Parse takes it from the time it is
// given.
//
//	<30>Dec  1 11:40:18 myhost myapp[1234]: message
//	<38>Dec  1 11:40:18 sshd[4242]: Accepted publickey for root
//	<30>2026-12-01T11:40:18.123+01:00 myhost myapp[1234]: message
//
// Bare: a priority and the message, what Python's logging.handlers.SysLogHandler sends
// (with ident "myapp: ", and the NUL it appends), and whatever else follows a valid
// priority. A leading "word: " is taken as the tag, as rsyslog does.
//
//	<14>myapp: message\x00
//
// Like rsyslog, Parse rejects only input without a valid priority ([ErrNoPriority]); a
// header it cannot read becomes part of the message. The parsed [Message] refers to the
// input rather than copying the message text, so parsing does not allocate.
//
// # Framing
//
// A datagram (UDP, unixgram, /dev/log) is one message. On a stream (TCP, a Unix stream
// socket) a [Reader] splits messages per RFC 6587, octet-counted or terminated by LF or
// NUL, deciding frame by frame, and cuts frames longer than a limit ([ErrTooLong]).
//
// # Records
//
// [Message.AppendJSON] renders a message as the archive's JSON record: time, level (the
// severity name, see [SeverityName]), facility, host, app, pid, msgid, structured_data,
// message and origin. When the message text is itself a JSON object, as it is for
// applications that log JSON through syslog, its members are shipped unchanged and the
// syslog fields go under a "syslog" member.
package syslog

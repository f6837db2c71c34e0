// Package agent is `kinlog agent` as a library: it ships log lines from files, local
// sockets and syslog to a Kinesis stream through the producer, for apps in any language.
//
// Files are tailed with their positions stored in a state directory. A position moves past
// a line only once Kinesis confirmed the line's record (a per-file ledger of the records in
// flight commits the longest confirmed prefix, whatever order confirmations arrive in), so
// a crash, a reboot or a Kinesis outage loses nothing written to a file: the agent reads on
// from the stored position. Lines confirmed after the last store are sent again after a
// crash and counted. Files are identified by device, inode and a fingerprint of their first
// bytes; rotation by rename and by copytruncate, deletion, and files rotated while the agent
// was down are handled (see [FileInput]).
//
// Every file record carries a kinlog identity (docs/identity.md): an origin drawn when the
// agent first opens the file (and again when it finds it truncated), stored with the file's
// position, and the line's byte offset and length. A line read again after a crash has the
// identity of its first copy, so the archive sink keeps one; socket and syslog records have
// the spool's identity.
//
// Socket and syslog records, which no file keeps, go through a second producer with an
// on-disk spool in the state directory.
//
// Records: a JSON-object line is shipped as it is; other lines are wrapped in a JSON object
// with the line, its time, host and origin; syslog messages (package agent/syslog) and
// container logs (package agent/container) become JSON objects with their fields.
package agent

"""Logging for the Celery worker: JSON lines that the kinlog agent ships.

Two handlers on the root logger, both writing one JSON object per record:

- a ``WatchedFileHandler`` on a file the agent tails. It reopens the path when logrotate
  renames the file, so rotate it by rename (see logrotate.conf);
- a ``SysLogHandler`` on the agent's syslog socket (a Unix datagram socket, like /dev/log).
  The agent merges the JSON message into its record. A line the handler cannot send (the
  agent is down) is not retried: ``handleError`` appends its ids to LOG_UNDELIVERED, when set.

The worker calls :func:`configure` from Celery's ``setup_logging`` signal (tasks.py), so
Celery leaves the root logger alone and every prefork child inherits these handlers.

Environment:

  LOG_FILE           the JSON-lines file            [/var/log/celery/tasks.log]
  LOG_SYSLOG_SOCKET  the agent's syslog socket;     [/run/kinlog/syslog.sock]
                     empty: no syslog handler
  LOG_SERVICE        the records' "service"         [celery-example]
  LOG_LEVEL          the root logger's level        [INFO]
  LOG_UNDELIVERED    a file that gets one JSON line per record the syslog handler could
                     not send (task_id, attempt, line, error); unset: logging's default
                     (a traceback on stderr)
"""

import json
import logging
import logging.handlers
import os
import socket
import sys
from datetime import datetime, timezone

from celery import current_task

_configured = False

# The attributes every LogRecord has; the others came from extra={...}.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def record_ids(record):
    """The ids that tie a log record to its task: task_id, attempt (1 for the first run,
    2 for the first retry, ...) and the task's line number, when known."""
    ids = {}
    task = current_task
    if task and task.request.id:
        ids["task_id"] = task.request.id
        ids["attempt"] = (task.request.retries or 0) + 1
    line = getattr(record, "line", None)
    if line is not None:
        ids["line"] = line
    return ids


class JSONFormatter(logging.Formatter):
    """One compact JSON object per record: time, level, service, logger, via, task_id,
    attempt, the members passed with extra={...} (line, in tasks.py), msg, and exc when
    there is a traceback. "via" names the handler, so the archive tells the file's copy of
    a line from the syslog copy."""

    def __init__(self, service, via):
        super().__init__()
        self.service = service
        self.via = via

    def format(self, record):
        doc = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "via": self.via,
        }
        doc.update(record_ids(record))
        for k, v in vars(record).items():
            if k not in _RECORD_ATTRS and k not in doc:
                doc[k] = v
        doc["msg"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), default=str)


class AgentSyslogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler on the agent's Unix datagram socket. A record it cannot send is
    dropped (as with any syslog sender) and, when ``undelivered`` names a file, its ids are
    appended there, so the loss is counted instead of silent."""

    def __init__(self, path, undelivered=None):
        # SOCK_DGRAM explicitly: with None, SysLogHandler falls back to a stream socket.
        super().__init__(address=path, socktype=socket.SOCK_DGRAM)
        self.undelivered = undelivered

    def handleError(self, record):
        if not self.undelivered:
            super().handleError(record)
            return
        ids = record_ids(record)
        ids["error"] = repr(sys.exc_info()[1])
        # One write of one line, O_APPEND: safe from every prefork child at once.
        with open(self.undelivered, "a", encoding="utf-8") as f:
            f.write(json.dumps(ids, separators=(",", ":")) + "\n")


def configure():
    """Install the handlers on the root logger, once per process tree."""
    global _configured
    if _configured:
        # Prefork children run Celery's logging setup again; they inherited our handlers.
        return
    _configured = True
    service = os.environ.get("LOG_SERVICE", "celery-example")
    root = logging.getLogger()
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

    file_handler = logging.handlers.WatchedFileHandler(
        os.environ.get("LOG_FILE", "/var/log/celery/tasks.log"), encoding="utf-8")
    file_handler.setFormatter(JSONFormatter(service, "file"))
    root.addHandler(file_handler)

    sock = os.environ.get("LOG_SYSLOG_SOCKET", "/run/kinlog/syslog.sock")
    if sock:
        syslog_handler = AgentSyslogHandler(sock, os.environ.get("LOG_UNDELIVERED") or None)
        syslog_handler.ident = service + ": "  # the RFC 3164 TAG: the agent's "app"
        syslog_handler.setFormatter(JSONFormatter(service, "syslog"))
        root.addHandler(syslog_handler)

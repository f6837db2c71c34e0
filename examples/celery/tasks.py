"""The Celery app of the example: tasks that log through the standard logging module,
and the original app's own task that sends a record to Kinesis with boto3.

    celery -A tasks worker --pool prefork --concurrency 4

Environment: CELERY_BROKER_URL, CELERY_RESULT_BACKEND (Redis), KINESIS_STREAM and the
AWS variables for ship_record (AWS_ENDPOINT_URL_KINESIS for a local Kinesis), and the
LOG_* variables of logconfig.py.
"""

import json
import logging
import os
import time
from datetime import datetime, timezone

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from celery import Celery
from celery.signals import setup_logging, worker_process_init

import logconfig

app = Celery("tasks")
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1"),
    # Keep our handlers: Celery must not replace the root logger's handlers.
    worker_hijack_root_logger=False,
)


@setup_logging.connect
def _setup_logging(**kwargs):
    # Connecting this signal tells Celery not to configure logging itself, in the main
    # process and in every prefork child.
    logconfig.configure()


log = logging.getLogger("tasks")

# The level of line i (1-based): INFO, INFO, WARNING, ERROR, INFO, ...
LEVELS = (logging.ERROR, logging.INFO, logging.INFO, logging.WARNING)


def level_of(line):
    return LEVELS[line % len(LEVELS)]


class Flaky(Exception):
    """What a task's first attempt raises when asked to; Celery retries the task."""


@app.task(bind=True, autoretry_for=(Flaky,), retry_kwargs={"max_retries": 3, "countdown": 0.2})
def log_lines(self, n, fail_first=False, pause=0.0):
    """Log n lines (line=1..n), pausing between them; when fail_first, the first attempt
    raises after its lines and the retry logs them all again."""
    attempt = self.request.retries + 1
    for line in range(1, n + 1):
        log.log(level_of(line), "task line %d of %d", line, n, extra={"line": line})
        if pause:
            time.sleep(pause)
    if fail_first and attempt == 1:
        raise Flaky(f"attempt {attempt} of task {self.request.id} fails, as asked")
    return {"task_id": self.request.id, "attempt": attempt, "lines": n}


_kinesis = None


@worker_process_init.connect
def _forget_clients(**kwargs):
    # boto3 clients must not cross a fork: each prefork child makes its own.
    global _kinesis
    _kinesis = None


def kinesis():
    global _kinesis
    if _kinesis is None:
        # boto3 1.26 reads neither AWS_ENDPOINT_URL_KINESIS nor AWS_REGION by itself.
        _kinesis = boto3.client(
            "kinesis",
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_KINESIS") or None,
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        )
    return _kinesis


@app.task(bind=True, max_retries=5)
def ship_record(self, seed_id):
    """The original app's way: one put_record per log record, partition key 'logfile'."""
    doc = {
        "time": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "level": "INFO",
        "service": os.environ.get("LOG_SERVICE", "celery-example"),
        "logger": "seed",
        "via": "put_record",
        "task_id": self.request.id,
        "seed_id": seed_id,
        "msg": f"record {seed_id} sent with put_record",
    }
    try:
        out = kinesis().put_record(
            StreamName=os.environ["KINESIS_STREAM"],
            Data=json.dumps(doc, separators=(",", ":")).encode(),
            PartitionKey="logfile",
        )
    except (BotoCoreError, ClientError) as e:
        raise self.retry(exc=e, countdown=1)
    return {"task_id": self.request.id, "seed_id": seed_id, "shard": out["ShardId"]}

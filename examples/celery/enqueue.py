"""Enqueue the example's tasks and wait for their results.

    python3 enqueue.py --tasks 60 --lines 50 --fail-every 10 --records 30

Prints one JSON line per enqueued task ({"enqueued": ...}) at once, then one per result
({"done": ...}, with the attempt that succeeded), and exits 0 when every task succeeded.
"""

import argparse
import json
import sys

from celery.result import ResultSet

from tasks import log_lines, ship_record


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=60, help="log_lines tasks")
    p.add_argument("--lines", type=int, default=50, help="lines each task logs per attempt")
    p.add_argument("--fail-every", type=int, default=10,
                   help="every Nth task fails its first attempt and is retried (0: none)")
    p.add_argument("--pause", type=float, default=0.0, help="seconds between a task's lines")
    p.add_argument("--records", type=int, default=30, help="ship_record tasks (boto3 put_record)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for each result")
    args = p.parse_args()

    pending = []
    for i in range(args.tasks):
        fail = args.fail_every > 0 and i % args.fail_every == 0
        r = log_lines.delay(args.lines, fail_first=fail, pause=args.pause)
        pending.append(("log_lines", r))
        emit({"enqueued": "log_lines", "task_id": r.id, "lines": args.lines, "fail_first": fail})
    for i in range(args.records):
        r = ship_record.delay(i)
        pending.append(("ship_record", r))
        emit({"enqueued": "ship_record", "task_id": r.id, "seed_id": i})
    # One ResultSet joined natively: calling get() on each result in turn makes Celery
    # 5.2's Redis backend wait a second for every result that arrived out of order.
    results = ResultSet([r for _, r in pending])
    names = {r.id: name for name, r in pending}
    for task_id, meta in results.iter_native(timeout=args.timeout):
        if meta["status"] != "SUCCESS":
            emit({"failed": names[task_id], "task_id": task_id, "status": meta["status"],
                  "error": repr(meta["result"])})
            return 1
        emit({"done": names[task_id], **meta["result"]})
    return 0


def emit(doc):
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())

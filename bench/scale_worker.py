"""`python -m bench.scale_worker READY_FILE`: one dispatch worker of bench/scale.py, alone in
its process.

It plays a Lambda container behind the SQS event source: it takes batches off the dispatch
queue (moto) as the event source would, hands each to functions/hsm_worker's handler, and
settles the answer (devstack.queues). It writes its ready file once loaded, starts when its
standard input says "go", and runs until its standard input closes. Its environment is the
bench stack's; its standard output (the function's logs) goes where the driver sends it.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from devstack.queues import invoke, queue_arn, queue_url, receive, settle
from devstack.template import queue_consumers

QUEUE = "HsmDispatchQueue"


def main() -> int:
    consumer = next(c for c in queue_consumers() if c.queue == QUEUE)
    import functions.hsm_worker.app  # noqa: F401 - a warm container: loaded before the clock

    stop = threading.Event()
    Path(sys.argv[1]).write_text("ready")
    if sys.stdin.readline().strip() != "go":
        return 0
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    url = queue_url(QUEUE)
    arn = queue_arn(url)
    while not stop.is_set():
        event, url = receive(consumer, url=url, arn=arn, wait_seconds=1)  # a long poll
        if event["Records"]:
            settle(url, event, invoke(consumer, event))
    return 0


if __name__ == "__main__":
    sys.exit(main())

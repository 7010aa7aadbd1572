"""`python -m bench.scale_worker READY_FILE [QUEUE]`: one queue consumer of bench/scale.py and
bench/speed_to_lead.py, alone in its process (QUEUE: a logical id of template.yaml, default
HsmDispatchQueue; LeadReadQueue for the lead reader).

It plays a Lambda container behind the SQS event source: it takes batches off its queue (moto)
as the event source would, hands each to the consuming function's handler, and settles the
answer (devstack.queues). It writes its ready file once loaded, starts when its
standard input says "go", and runs until its standard input closes. Its environment is the
bench stack's; its standard output (the function's logs) goes where the driver sends it.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

from devstack.queues import invoke, queue_arn, queue_url, receive, settle
from devstack.template import queue_consumers

QUEUE = "HsmDispatchQueue"


def main() -> int:
    queue = sys.argv[2] if len(sys.argv) > 2 else QUEUE
    consumer = next(c for c in queue_consumers() if c.queue == queue)
    importlib.import_module(consumer.module)  # a warm container: loaded before the clock

    stop = threading.Event()
    Path(sys.argv[1]).write_text("ready")
    if sys.stdin.readline().strip() != "go":
        return 0
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    url = queue_url(queue)
    arn = queue_arn(url)
    while not stop.is_set():
        event, url = receive(consumer, url=url, arn=arn, wait_seconds=1)  # a long poll
        if event["Records"]:
            settle(url, event, invoke(consumer, event))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.scale_worker READY_FILE [QUEUE [WARM_TENANT]]`: one queue consumer of
bench/scale.py and bench/speed_to_lead.py, alone in its process (QUEUE: a logical id of
template.yaml, default HsmDispatchQueue; LeadReadQueue for the lead reader).

It plays a Lambda container behind the SQS event source: it takes batches off its queue (moto)
as the event source would, hands each to the consuming function's handler, and settles the
answer (devstack.queues). A container the benches measure is warm: its module is loaded, and
with WARM_TENANT it has already served one event for that tenant, so the lazy imports, the
database connection, the HTTP pools and the tenant's data key were paid for before the clock,
as by a container's earlier invocations. That event is handed to the handler directly, never
taken from the queue.

Its poller fills a batch as Lambda's does: a long poll, then, for a queue with a batching window
(MaximumBatchingWindowInSeconds), more polls until the batch is full or the window has passed.

It writes its ready file once warm, starts polling when its standard input says "go", and runs
until its standard input closes; then it writes READY_FILE's `.cpu` sibling: its CPU seconds
after "go". Its environment is the bench stack's; its standard output (the function's logs) goes
where the driver sends it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from devstack.queues import invoke, lambda_event, queue_arn, queue_url, receive, settle
from devstack.template import QueueConsumer, queue_consumers

QUEUE = "HsmDispatchQueue"


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def next_batch(consumer: QueueConsumer, url: str, arn: str) -> dict[str, Any]:
    """The next batch the event source would hand the function (no records: nothing came)."""
    event, _ = receive(consumer, url=url, arn=arn, wait_seconds=1)  # a long poll
    records = event["Records"]
    window_ends = time.monotonic() + consumer.batching_window
    while records and len(records) < consumer.batch_size and time.monotonic() < window_ends:
        more, _ = receive(consumer, url=url, arn=arn, most=consumer.batch_size - len(records))
        records += more["Records"]
        if not more["Records"]:
            time.sleep(0.05)
    return event


def main() -> int:
    ready = Path(sys.argv[1])
    queue = sys.argv[2] if len(sys.argv) > 2 else QUEUE
    warm_tenant = sys.argv[3] if len(sys.argv) > 3 else None
    consumer = next(c for c in queue_consumers() if c.queue == queue)
    importlib.import_module(consumer.module)  # a warm container: loaded before the clock
    url = queue_url(queue)
    arn = queue_arn(url)
    if warm_tenant:
        body = json.dumps({"tenant_id": warm_tenant, "reason": "warm-up"})
        invoke(consumer, lambda_event([{"MessageId": str(uuid.uuid4()),
                                        "ReceiptHandle": "warm-up", "Body": body}], arn))

    stop = threading.Event()
    ready.write_text("ready")
    if sys.stdin.readline().strip() != "go":
        return 0
    started_cpu = cpu_seconds()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        event = next_batch(consumer, url, arn)
        if event["Records"]:
            settle(url, event, invoke(consumer, event))
    ready.with_suffix(".cpu").write_text(f"{cpu_seconds() - started_cpu:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

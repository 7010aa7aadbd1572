"""Lambda's SQS event sources, locally: deliver what waits on the template's work queues to the
functions that consume them, in batches, as AWS does (CONTRACT "Scheduled functions and
workers": outside tests drive the job the same way).

A batch is received from moto with the queue's visibility timeout, handed to the consumer's
`lambda_handler` as Lambda's SQS event, and the records the answer does not list in
`batchItemFailures` are deleted. A failed record (or every record, when the handler raised)
stays on the queue; here it becomes visible again at once rather than after the visibility
timeout, and moto moves it to the dead-letter queue after the redrive policy's receive count,
as SQS would. `QueuePump` does the same in the background for `make dev`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import threading
from collections import Counter
from typing import Any

from devstack.aws_local import REGION
from devstack.lambda_context import LocalContext
from devstack.template import QueueConsumer, queue_consumers

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _sqs() -> Any:
    """One client per emulator endpoint, as a poller keeps one (creating a botocore client
    costs milliseconds of CPU, which a bench would count against the function it drives)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    with _clients_lock:
        if endpoint not in _clients:
            import boto3  # the local stack has set AWS_ENDPOINT_URL (moto) by now

            _clients[endpoint] = boto3.client("sqs", region_name=REGION)
        return _clients[endpoint]


def queue_url(logical_id: str) -> str:
    return _sqs().get_queue_url(QueueName=f"local-{logical_id}")["QueueUrl"]


def queue_arn(url: str) -> str:
    return _sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]


def lambda_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Lambda's SQS batch event for messages as ReceiveMessage returned them."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(m["Body"].encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    } for m in messages]}


def receive(consumer: QueueConsumer, *, url: str | None = None, arn: str | None = None,
            wait_seconds: int = 0, most: int | None = None) -> tuple[dict, str]:
    """One batch as the event source would take it: (Lambda event, queue URL). With
    `wait_seconds`, a long poll, as the event source's pollers do; with `most`, at most that
    many messages (a poller topping up a batch); a poller that knows its queue's URL and ARN
    passes them."""
    url = url or queue_url(consumer.queue)
    answer = _sqs().receive_message(
        QueueUrl=url, MaxNumberOfMessages=min(10, consumer.batch_size, most or 10),
        VisibilityTimeout=6 * consumer.timeout, AttributeNames=["All"],
        WaitTimeSeconds=wait_seconds)
    return lambda_event(answer.get("Messages", []), arn or queue_arn(url)), url


def invoke(consumer: QueueConsumer, event: dict[str, Any]) -> dict[str, Any]:
    """The consumer's handler on one batch, with its template timeout; a handler that raises
    fails the whole batch, as a failed Lambda invocation does."""
    module = importlib.import_module(consumer.module)
    context = LocalContext(function_name=consumer.function, timeout_seconds=consumer.timeout)
    try:
        answer = module.lambda_handler(event, context)
    except Exception:  # noqa: BLE001 - Lambda reports the error; SQS keeps the whole batch
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]}
                                      for r in event["Records"]]}
    return answer if isinstance(answer, dict) else {}


def settle(url: str, event: dict[str, Any], answer: dict[str, Any]) -> int:
    """Delete what the batch did; make its failures visible again. Returns the failures."""
    sqs = _sqs()
    failed = {f.get("itemIdentifier") for f in answer.get("batchItemFailures") or []}
    done = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
            for i, r in enumerate(event["Records"]) if r["messageId"] not in failed]
    again = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": 0}
             for i, r in enumerate(event["Records"]) if r["messageId"] in failed]
    if done:
        sqs.delete_message_batch(QueueUrl=url, Entries=done)
    if again:
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=again)
    return len(failed)


def deliver_all(*, queues: set[str] | None = None, max_batches: int = 10_000) -> Counter[str]:
    """Deliver batches until every work queue (or those named) stays empty. Returns counts per
    queue: messages delivered, and `<queue>:failed` for records that failed."""
    counts: Counter[str] = Counter()
    consumers = [c for c in queue_consumers() if queues is None or c.queue in queues]
    for _ in range(max_batches):
        delivered = False
        for consumer in consumers:
            event, url = receive(consumer)
            if not event["Records"]:
                continue
            delivered = True
            counts[consumer.queue] += len(event["Records"])
            counts[f"{consumer.queue}:failed"] += settle(url, event, invoke(consumer, event))
        if not delivered:
            return counts
    raise RuntimeError(f"queues still busy after {max_batches} rounds: {dict(counts)}")


class QueuePump:
    """`make dev`'s event sources: delivers in the background every `interval` seconds."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-pump", daemon=True)

    def start(self) -> QueuePump:
        self._thread.start()
        return self

    def _run(self) -> None:
        from shared.platform.observability import logger

        while not self._stop.wait(self.interval):
            try:
                deliver_all(max_batches=100)
            except Exception as exc:  # noqa: BLE001 - keep serving; the log says what broke
                logger.warning("queue_pump_error", extra={"error_type": type(exc).__name__})

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):  # never started
            self._thread.join(timeout=30)

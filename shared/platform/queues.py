"""SQS between a planner and its workers (CONTRACT.md "Scheduled functions and workers").

A planner sends one small JSON message per unit of work (a tenant, an ad account), ten per call.
A worker takes Lambda's SQS batch event through Powertools' batch utility and answers with
partial batch failures: a record whose handler raised is retried alone (and dead-lettered after
the queue's maxReceiveCount), the rest of its batch is done. Handlers must be idempotent: SQS
delivers at least once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.platform.aws import client
from shared.platform.observability import logger

SEND_BATCH_LIMIT = 10  # SendMessageBatch takes at most 10 entries
SEND_THREADS = 8  # a planner with thousands of messages sends this many batches at once


def send(queue_url: str, bodies: list[dict[str, Any]], *, delay_seconds: int = 0
         ) -> list[dict[str, Any]]:
    """Send each body as one message; returns the bodies SQS accepted. Refused entries are
    logged by error code (never their bodies) and not raised: the caller decides, and a planner
    that runs again finds the same work again."""
    chunks = [bodies[i:i + SEND_BATCH_LIMIT] for i in range(0, len(bodies), SEND_BATCH_LIMIT)]
    if len(chunks) <= 1:
        results = [_send_chunk(queue_url, chunk, delay_seconds) for chunk in chunks]
    else:
        with ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="sqs-send") as pool:
            results = list(pool.map(lambda c: _send_chunk(queue_url, c, delay_seconds), chunks))
    return [body for accepted in results for body in accepted]


def send_paged(queue_url: str,
               read_page: Callable[[Any, tuple[str, str]], list[tuple[str, str]]],
               body: Callable[[str, str], dict[str, Any]], page_size: int) -> tuple[int, int]:
    """A planner's loop: read a due list a keyset page at a time (`read_page(conn, after)`, rows
    of (tenant_id, id) in key order, at most `page_size`), and queue `body(tenant_id, id)` for
    each row, so no list is held whole however long it grows. Returns (rows read, messages SQS
    accepted)."""
    from shared.platform.db import system_tx

    due = queued = 0
    after = ("", "")
    while True:
        with system_tx() as conn:
            page = read_page(conn, after)
        due += len(page)
        queued += len(send(queue_url, [body(*row) for row in page]))
        if len(page) < page_size:
            return due, queued
        after = page[-1]


def _send_chunk(queue_url: str, chunk: list[dict[str, Any]], delay_seconds: int
                ) -> list[dict[str, Any]]:
    result = client("sqs").send_message_batch(QueueUrl=queue_url, Entries=[
        {"Id": str(index), "MessageBody": json.dumps(body, separators=(",", ":")),
         "DelaySeconds": delay_seconds}
        for index, body in enumerate(chunk)])
    failed = result.get("Failed") or []
    if failed:
        logger.error("queue_send_failed", extra={
            "queue": queue_url.rsplit("/", 1)[-1], "failed": len(failed),
            "codes": sorted({str(f.get("Code")) for f in failed})})
    refused = {int(f["Id"]) for f in failed}
    return [body for index, body in enumerate(chunk) if index not in refused]


def consume(event: dict[str, Any], context: Any,
            handle: Callable[[dict[str, Any]], Awaitable[None]]) -> dict[str, Any]:
    """Run `handle(body)` for every record of an SQS batch event, concurrently on one event loop;
    returns {"batchItemFailures": [...]} naming the records whose handler raised. A body that
    is not a JSON object fails its record like any other error."""
    from aws_lambda_powertools.utilities.batch import (
        AsyncBatchProcessor,
        EventType,
        async_process_partial_response,
    )

    async def record_handler(record: Any) -> None:
        body = json.loads(record.body)
        if not isinstance(body, dict):
            raise ValueError("an SQS message body must be a JSON object")
        await handle(body)

    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return async_process_partial_response(event=event, record_handler=record_handler,
                                          processor=processor, context=context)

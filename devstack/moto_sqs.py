"""moto's SQS without its whole-queue scans on every send: the same answers, at any depth.

moto 5 reads one flag (`ContentBasedDeduplication`) of `Queue.attributes` on every message it
sends, and that property computes every attribute, three of them by walking every message in
the queue and turning the clock into a datetime twice per message. A SendMessageBatch therefore
costs ten walks of the queue: 17 ms on an empty queue, 190 ms at 500 messages, 3 s at 2,000
(measured here). Deletes walk the queue twice more per receipt handle. SQS answers in
milliseconds at any depth, so at the scale bench's depth the emulator, not the planner or the
workers, set the pace (BENCHMARKS.md "Dispatch at scale").

What changes, and only in the process that serves moto:
- `Queue.attributes` becomes a read-only mapping that computes an attribute when it is read, by
  the same rules as moto's property, so reading the FIFO flag no longer counts the messages;
  `GetQueueAttributes` still gets every attribute, counted at that moment.
- moto's millisecond clock for SQS messages reads `time.time()` directly instead of building
  two datetimes: the same value (moto's is `utcnow() - epoch`), without the allocations.
- A delete finds its message in one pass and keeps moto's rules (an unknown handle is
  refused, a handle already deleted is accepted again, old receipt handles still delete).
tests/test_moto_sqs.py holds both against moto's own behaviour.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from moto.core.utils import camelcase_to_underscores, unix_time_millis

_APPLIED = False
MOTO_ATTRIBUTES: property | None = None  # moto's own property, kept for tests/test_moto_sqs.py


class QueueAttributes(Mapping):
    """`Queue.attributes`, computed per key on read (moto's property computes all of them)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def _names(self) -> list[str]:
        queue = self._queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            raise KeyError(name)
        queue = self._queue
        if name == "Policy":
            return queue.policy or None
        if name == "RedrivePolicy":
            policy = queue.redrive_policy
            return json.dumps(policy) if policy else policy
        value = getattr(queue, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value


def _now_millis(dt: Any = None) -> float:
    if dt is not None:  # a datetime given: moto's own conversion
        return unix_time_millis(dt)
    return time.time() * 1000.0


def _delete_message(queue: Any, receipt_handle: str) -> None:
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle in queue.deleted_messages:
        return  # already deleted: accepted again, as moto and SQS do
    messages = queue._messages
    for index, message in enumerate(messages):
        if message.receipt_handle == receipt_handle or \
                receipt_handle in message._old_receipt_handles:
            queue.pending_messages.discard(message)
            queue.deleted_messages.update(message.all_receipt_handles)
            # A new list, as moto builds one: a receive iterating the old list is unaffected.
            queue._messages = messages[:index] + messages[index + 1:]
            return
    raise ReceiptHandleIsInvalid()


def apply() -> None:
    """Patch moto's SQS models in this process (idempotent)."""
    global _APPLIED, MOTO_ATTRIBUTES
    if _APPLIED:
        return
    from moto.sqs import models

    MOTO_ATTRIBUTES = models.Queue.attributes
    models.Queue.attributes = property(QueueAttributes)
    models.unix_time_millis = _now_millis
    models.Queue.delete_message = _delete_message
    _APPLIED = True

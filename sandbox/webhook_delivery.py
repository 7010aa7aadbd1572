"""Meta's webhook delivery, for the sandbox areas that notify the app (WhatsApp message statuses,
Lead Ads leadgen): what an area queued goes out in batches of its configured size, one POST per
app secret, signed as Meta signs (X-Hub-Signature-256: HMAC-SHA256 of the raw body), with a few
quick retries; each POST is recorded for the area's control API.

An area keeps `outbox` (queued items, each with the "secret" of the app to sign for), `webhook`
(a config with `url`, `enabled` and `batch_size`), `deliveries` (the records) and `worker` (its
delivery thread), and says how a batch of its items becomes a body and a record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

# A batch of one app's items -> (the JSON body Meta would POST, its delivery record, which the
# POST fills: attempts, status_code, error).
BatchBody = Callable[[list[dict[str, Any]]], tuple[dict[str, Any], dict[str, Any]]]


def apply_settings(config: Any, body: dict[str, Any]) -> None:
    """The settings every area's webhook config takes: url, enabled, batch_size (1 to 1,000)."""
    if "url" in body:
        config.url = body["url"]
    if "enabled" in body:
        config.enabled = bool(body["enabled"])
    if "batch_size" in body:
        config.batch_size = max(1, min(int(body["batch_size"]), 1000))


def ensure_worker(world: Any, area: str, state: Any, stopping: threading.Event,
                  batch_body: BatchBody, *, name: str, stamp_answers: bool = False) -> None:
    """Start the area's delivery thread unless it runs already (call under world.lock)."""
    if state.worker is None or not state.worker.is_alive():
        state.worker = threading.Thread(
            target=deliver_forever, args=(world, area, state, stopping, batch_body),
            kwargs={"stamp_answers": stamp_answers}, name=name, daemon=True)
        state.worker.start()


def deliver_forever(world: Any, area: str, state: Any, stopping: threading.Event,
                    batch_body: BatchBody, *, stamp_answers: bool = False) -> None:
    """The area's delivery thread: runs while the sandbox runs and `state` is still the
    world's `area` (a reset replaces it)."""
    with httpx.Client(timeout=10) as client:
        while not stopping.is_set() and world.areas.get(area) is state:
            items = _next_batch(state.outbox, state.webhook.batch_size)
            if items:
                deliver(client, world, state, items, stopping, batch_body,
                        stamp_answers=stamp_answers)


def deliver(client: httpx.Client, world: Any, state: Any, items: list[dict[str, Any]],
            stopping: threading.Event, batch_body: BatchBody, *,
            stamp_answers: bool = False) -> None:
    """POST `items` now, one signed body per app secret, and record each POST (`stamp_answers`:
    with the time of the last answer too)."""
    by_secret: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_secret.setdefault(item["secret"], []).append(item)
    for secret, group in by_secret.items():
        body, record = batch_body(group)
        _post_signed(client, str(state.webhook.url), secret, body, record, stopping,
                     stamp_answers)
        with world.lock:
            state.deliveries.append(record)


def _next_batch(outbox: queue.Queue, batch_size: int) -> list[dict[str, Any]]:
    """Up to `batch_size` queued items: waits a moment for the first, not for the rest."""
    try:
        items = [outbox.get(timeout=0.1)]
    except queue.Empty:
        return []
    while len(items) < batch_size:
        try:
            items.append(outbox.get_nowait())
        except queue.Empty:
            break
    return items


def _post_signed(client: httpx.Client, url: str, secret: str, body: dict[str, Any],
                 record: dict[str, Any], stopping: threading.Event, stamp_answers: bool) -> None:
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    for attempt in range(3):  # Meta retries for days; a few quick tries are enough here
        record["attempts"] = attempt + 1
        try:
            response = client.post(url, content=raw, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": signature})
            record["status_code"] = response.status_code
            if stamp_answers:
                record["answered_at"] = time.time()
            if response.status_code == 200:
                break
        except httpx.HTTPError as exc:
            record["error"] = type(exc).__name__
        if stopping.wait(0.2):
            break

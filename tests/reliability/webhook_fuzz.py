"""A body fuzzer for Meta's webhook: every field of every kind of update, at the limits of every
type, behind a valid signature (tests/reliability/test_webhook_fuzz.py).

Schemathesis only knows the webhook as `{"object", "entry": [...]}`, so it rarely builds an update
deep enough to reach the code that reads statuses, errors, messages, preferences and template
events. This starts from well-formed updates naming a real tenant's number, WABA, messages and
leads (so each mutation travels as far as the code goes), then changes one to three places at
random: a value of another type or at a limit, a key removed or added, an item repeated, a list
where an object belongs. Deterministic: `random.Random(seed)`, the same cases every run.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

LIMIT_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, 1.5, 1e308, -1e308, 0.0,
    "", " ", "x" * 10_000, "\u0000", "nul\u0000inside", "\u202etxt", "zero\u200bwidth",
    "\U0001f600", "\ufeff", [], {}, [1, 2], {"a": 1}, [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]],
    "1700000000", "99999999999999999999", "-62135596800", "253402300800", "1e10", "NaN",
    "wamid.unknown", "00000000-0000-0000-0000-000000000000", "not-a-uuid", "FAILED", "failed",
    "read", "delivered", "sent", "played", "deleted", "stop", "resume", "STOP", "BAJA",
    "131050", "132001", "marketing_messages", "messages", "user_preferences",
    "message_template_status_update", "APPROVED", "REJECTED", "REINSTATED", "NONE",
    "whatsapp_business_account", "page", "+34600000000", "34600000000",
    "'; DROP TABLE automation_logs;--", "../../etc/passwd",
]


@dataclass(frozen=True)
class Known:
    """Ids of a connected tenant, so updates reach its rows."""

    waba_id: str
    phone_number_id: str
    wamid: str
    log_id: str
    lead_wa_id: str  # the lead's number without "+", as WhatsApp names people
    template_id: str
    template_name: str


def _entry(known: Known, field: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": known.waba_id, "time": 1_760_000_000,
                       "changes": [{"field": field, "value": value}]}]}


def _metadata(known: Known) -> dict[str, Any]:
    return {"display_phone_number": "34911222333", "phone_number_id": known.phone_number_id}


def seeds(known: Known) -> list[dict[str, Any]]:
    """One well-formed update of every kind the webhook reads (META_API.md §9)."""
    status = {"id": known.wamid, "recipient_id": known.lead_wa_id, "timestamp": "1760000100",
              "biz_opaque_callback_data": known.log_id,
              "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing"}}
    failed = {**status, "status": "failed", "errors": [{
        "code": 131050, "title": "Unable to deliver", "message": "User stopped marketing",
        "error_data": {"details": "The user opted out"}, "href": "https://example.com"}]}
    return [
        _entry(known, "messages", {"messaging_product": "whatsapp", "metadata": _metadata(known),
                                   "statuses": [{**status, "status": kind}]})
        for kind in ("sent", "delivered", "read")
    ] + [
        _entry(known, "messages", {"messaging_product": "whatsapp", "metadata": _metadata(known),
                                   "statuses": [failed]}),
        _entry(known, "messages", {
            "messaging_product": "whatsapp", "metadata": _metadata(known),
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": known.lead_wa_id}],
            "messages": [
                {"from": known.lead_wa_id, "id": "wamid.in1", "timestamp": "1760000200",
                 "type": "text", "text": {"body": "STOP"}},
                {"from": known.lead_wa_id, "id": "wamid.in2", "timestamp": "1760000201",
                 "type": "button", "button": {"text": "Stop promotions", "payload": "stop"}},
                {"from": known.lead_wa_id, "id": "wamid.in3", "timestamp": "1760000202",
                 "type": "interactive",
                 "interactive": {"type": "button_reply",
                                 "button_reply": {"id": "b1", "title": "Baja"}}}]}),
        _entry(known, "user_preferences", {
            "messaging_product": "whatsapp", "metadata": _metadata(known),
            "user_preferences": [{"wa_id": known.lead_wa_id, "detail": "x",
                                  "category": "marketing_messages", "value": choice,
                                  "timestamp": 1_760_000_300 + n}
                                 for n, choice in enumerate(("stop", "resume"))]}),
        _entry(known, "message_template_status_update", {
            "event": "REJECTED", "message_template_id": known.template_id,
            "message_template_name": known.template_name, "message_template_language": "es",
            "reason": "INVALID_FORMAT", "message_template_category": "MARKETING",
            "rejection_info": {"reason": "INVALID_FORMAT", "recommendation": "Fix it"},
            "other_info": {"title": "Rejected", "description": "x"}}),
        _entry(known, "message_template_status_update", {
            "event": "REINSTATED", "message_template_id": known.template_id,
            "message_template_name": known.template_name, "message_template_language": "es",
            "disable_info": {"disable_date": 1_760_000_400}}),
        {"object": "page", "entry": [{"id": "1", "time": 1, "changes": [
            {"field": "leadgen", "value": {"leadgen_id": "1", "page_id": "1"}}]}]},
    ]


def _places(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every place in the document: keys of objects and indexes of lists, depth first."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _places(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _places(value, (*path, index))


def _parent(doc: Any, path: tuple) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


def mutate(rng: random.Random, doc: dict[str, Any]) -> tuple[str, dict[str, Any] | Any]:
    """Change one place of a copy of `doc`; returns (what changed, the new document)."""
    doc = copy.deepcopy(doc)
    places = [p for p in _places(doc) if p]
    path = rng.choice(places)
    parent = _parent(doc, path)
    key = path[-1]
    action = rng.choice(("value", "value", "value", "drop", "repeat", "wrap", "extra"))
    where = ".".join(str(p) for p in path)
    if action == "value":
        value = rng.choice(LIMIT_VALUES)
        parent[key] = copy.deepcopy(value)
        return f"{where}={json.dumps(value)[:40]}", doc
    if action == "drop":
        del parent[key]
        return f"{where} removed", doc
    if action == "repeat" and isinstance(parent, list):
        parent.extend(copy.deepcopy(parent[key]) for _ in range(rng.choice((1, 2, 50))))
        return f"{where} repeated", doc
    if action == "wrap":
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"value": parent[key]}
        return f"{where} wrapped", doc
    target = parent[key] if isinstance(parent[key], dict) else parent
    if isinstance(target, dict):
        target[rng.choice(("unexpected", "id", "status", "errors", "value"))] = rng.choice(
            LIMIT_VALUES)
        return f"{where} extra key", doc
    return f"{where} unchanged", doc


def cases(known: Known, seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """`count` signed-to-be bodies: every seed as is, then mutated ones (1-3 changes each, one
    in twenty also cut short or padded so the JSON itself breaks)."""
    rng = random.Random(seed)
    base = seeds(known)
    for n, doc in enumerate(base):
        yield f"seed {n}", json.dumps(doc).encode()
    for n in range(count - len(base)):
        doc: Any = rng.choice(base)
        changes = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            if not isinstance(doc, dict) or not doc:
                break
            change, doc = mutate(rng, doc)
            changes.append(change)
        raw = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()
        if rng.random() < 0.05:
            raw = raw[: rng.randrange(1, len(raw))] if rng.random() < 0.5 else raw + b"}"
            changes.append("json broken")
        yield f"case {n}: " + "; ".join(changes), raw

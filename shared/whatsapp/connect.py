"""Connect the tenant's WhatsApp sender: check access with Meta, subscribe the app to the WABA's
webhooks, sync its templates, then store sender and templates in one transaction.

Meta is asked everything before anything is written, so a refusal leaves the tenant's previous
sender (if any) untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from shared.connection.session import tenant_graph
from shared.meta.errors import MetaPermissionDenied, MetaRequestError
from shared.platform.db import system_tx, tenant_tx
from shared.platform.errors import AccountNotAccessible, InvalidInput, WhatsAppNumberUnavailable
from shared.platform.observability import logger, metrics
from shared.whatsapp import senders, templates_store
from shared.whatsapp.accounts import waba_phone_numbers
from shared.whatsapp.templates import fetch_templates

NOT_ACCESSIBLE = "Meta denies access to this WhatsApp Business account with the connected token."


@dataclass(frozen=True)
class ConnectRequest:
    waba_id: str
    phone_number_id: str
    max_per_second: int | None = None  # None: what Meta's throughput level allows
    timezone: str | None = None  # IANA; quiet hours default to it. None: keep / UTC


def _taken_by_other(tenant_id: str, phone_number_id: str) -> bool:
    with system_tx() as conn:
        owner = senders.tenant_for_phone(conn, phone_number_id)
    return owner is not None and owner != tenant_id


def connect_sender(tenant_id: str, user_id: str, request: ConnectRequest,
                   deadline: float | None = None) -> dict[str, Any]:
    with tenant_graph(tenant_id, deadline) as graph:
        try:
            phones = waba_phone_numbers(graph, request.waba_id)
        except (MetaPermissionDenied, MetaRequestError):
            raise AccountNotAccessible(NOT_ACCESSIBLE) from None
        phone = next((p for p in phones if p.id == request.phone_number_id), None)
        if phone is None:
            raise InvalidInput(
                "This phone number is not a number of that WhatsApp Business account.",
                details=[{"field": "phone_number_id",
                          "problem": "not a number of this WhatsApp Business account"}])
        if _taken_by_other(tenant_id, phone.id):
            # The same answer whoever holds it and whenever it is found (here or at the write):
            # nothing about the other tenant, not even that there is one.
            raise WhatsAppNumberUnavailable()
        try:
            templates = fetch_templates(graph, request.waba_id)
            # Subscribing twice is harmless at Meta, so a blind retry is safe.
            graph.post(f"{request.waba_id}/subscribed_apps", idempotent=True)
        except (MetaPermissionDenied, MetaRequestError):
            raise AccountNotAccessible(NOT_ACCESSIBLE) from None

    try:
        with tenant_tx(tenant_id) as conn:
            previous = senders.get(conn, for_update=True)
            timezone = request.timezone or (previous.timezone if previous else "UTC")
            senders.upsert(
                conn, tenant_id, waba_id=request.waba_id, phone_number_id=phone.id,
                display_phone_number=phone.display_phone_number,
                verified_name=phone.verified_name, quality_rating=phone.quality_rating,
                messaging_limit_tier=phone.messaging_limit_tier,
                throughput_level=phone.throughput_level,
                max_per_second=request.max_per_second or phone.max_per_second,
                timezone=timezone, connected_by=user_id or None)
            count = templates_store.replace_all(conn, tenant_id, request.waba_id, templates)
            sender = senders.get(conn)
    except psycopg.errors.UniqueViolation:
        # Another tenant connected the same number between our check and our write.
        raise WhatsAppNumberUnavailable() from None

    metrics.add_metric(name="WhatsAppSendersConnected", unit="Count", value=1)
    logger.info("whatsapp_connected", extra={"tenant_id": tenant_id, "templates": count,
                                             "reconnect": previous is not None})
    return {
        "status": "connected",
        **sender.public(),
        "templates": count,
        "message": f"WhatsApp number {phone.display_phone_number or phone.id} connected; "
                   f"{count} templates synced.",
    }

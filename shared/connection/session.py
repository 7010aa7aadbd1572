"""A request-time Meta session for one tenant: its token, its Graph client, its error mapping.

API functions that call Meta on a tenant's behalf use `tenant_graph(...)`; it turns the
connection's state and Meta's token/rate-limit errors into the contract's answers, so no handler
repeats that mapping, and takes each request from the tenant's budget of Meta calls
(shared.connection.budget) before Meta sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from shared.connection import budget, credentials
from shared.connection.health import TOKEN_UNDECRYPTABLE
from shared.meta.errors import MetaError, MetaTokenInvalid, MetaTransient
from shared.meta.errors import MetaRateLimited as GraphRateLimited
from shared.platform.db import tenant_tx
from shared.platform.errors import (
    MetaNotConnected,
    MetaRateLimited,
    MetaReconnectRequired,
    MetaUnavailable,
)
from shared.platform.observability import logger, metrics

if TYPE_CHECKING:
    from shared.meta.graph import GraphClient


def load_usable_credential(tenant_id: str, *, spend_budget: bool = False
                           ) -> credentials.StoredCredential:
    """The tenant's working credential; `spend_budget` also takes this request from the tenant's
    budget of Meta calls (only once there is a connection that Meta would be called with)."""
    with tenant_tx(tenant_id) as conn:
        stored = credentials.load(conn)
        if stored is None:
            raise MetaNotConnected()
        if stored.status == "needs_reconnect":
            raise MetaReconnectRequired()
        if spend_budget:
            budget.spend(conn, tenant_id)
    return stored


def usable_token(stored: credentials.StoredCredential) -> str:
    """The decrypted token. A ciphertext that does not open under its own row (copied from
    another tenant's or another credential's row, or altered) can never work again: the
    connection is marked needs_reconnect and the caller gets MetaReconnectRequired (409), not
    a 500."""
    from shared.platform.crypto import TokenDecryptError  # loaded by token() anyway

    try:
        return stored.token()
    except TokenDecryptError:
        with tenant_tx(stored.tenant_id) as conn:
            credentials.mark_needs_reconnect(conn, TOKEN_UNDECRYPTABLE)
        logger.error("meta_token_undecryptable", extra={"tenant_id": stored.tenant_id})
        raise MetaReconnectRequired() from None


def record_token_invalid(tenant_id: str, error: MetaError) -> None:
    """Meta says the token is dead: remember it so every screen shows 'reconnect'."""
    with tenant_tx(tenant_id) as conn:
        changed = credentials.mark_needs_reconnect(conn, f"meta_{error.code}_{error.subcode or 0}")
    if changed:
        metrics.add_metric(name="TokensNeedReconnect", unit="Count", value=1)
    logger.warning("meta_token_invalid", extra={"tenant_id": tenant_id, "code": error.code,
                                                "subcode": error.subcode})


@contextmanager
def tenant_graph(tenant_id: str, deadline: float | None = None, *,
                 on_click: bool = True) -> Iterator[GraphClient]:
    """A Graph client with the tenant's token. `on_click=False` for work no person triggered
    (a scheduled job's fallback): it spends nothing from the tenant's budget."""
    stored = load_usable_credential(tenant_id, spend_budget=on_click)
    # Imported here, once there is a token to call Meta with: a tenant that is not connected is
    # answered without loading the Graph client and httpx (cold start).
    from shared.meta.graph import GraphClient

    try:
        with GraphClient.for_token(usable_token(stored), deadline=deadline) as graph:
            yield graph
    except MetaTokenInvalid as exc:
        record_token_invalid(tenant_id, exc)
        raise MetaReconnectRequired() from None
    except GraphRateLimited as exc:
        metrics.add_metric(name="MetaApiThrottled", unit="Count", value=1)
        raise MetaRateLimited(int(exc.retry_after_seconds or 60)) from None
    except MetaTransient:
        # Already counted per call in MetaApiFailures by the client (the failure-rate alarm).
        raise MetaUnavailable() from None

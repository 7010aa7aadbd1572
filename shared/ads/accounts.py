"""Ad accounts: the connect wizard's list and connecting one account. Logic only, no HTTP edge.

The list walks every path Meta offers to an ad account (META_API.md §6): the person's
businesses (`/me/businesses`), each business's owned and client accounts, and the person's own
accounts (`/me/adaccounts`, which holds accounts outside any business). Pages are fetched in
waves: each wave is ONE Graph batch request (≤50 sub-requests per chunk) carrying every
business edge and every next page known so far, so the round trips grow with the depth of the
deepest edge, never with the number of businesses (the original plan's 1+N).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from shared.ads import store
from shared.meta.errors import (
    MetaError,
    MetaPermissionDenied,
    MetaRateLimited,
    MetaRequestError,
    MetaTokenInvalid,
    MetaTransient,
)
from shared.platform.db import tenant_tx
from shared.platform.errors import AccountNotAccessible, MetaReconnectRequired
from shared.platform.events import EventPublishError, publish
from shared.platform.observability import logger, metrics

if TYPE_CHECKING:
    from shared.meta.graph import GraphClient

# shared.meta.graph and shared.connection.session are imported in the functions that call Meta:
# handlers import this module for normalize_account_id and CONNECTED_EVENT too (campaign_sync,
# marketing_stats), and a cold start should not load httpx for that.

CONNECTED_EVENT = "MetaAdAccountConnected"

ACCOUNT_FIELDS = ("id,account_id,name,account_status,currency,timezone_name,amount_spent,"
                  "balance,business{id,name}")
PAGE_LIMIT = 100  # Graph may serve fewer per page; we follow `next` either way

# AA: account_status values and their names; ads run only in 1, 8 and 9.
ACCOUNT_STATUS_NAMES = {
    1: "ACTIVE", 2: "DISABLED", 3: "UNSETTLED", 7: "PENDING_RISK_REVIEW",
    8: "PENDING_SETTLEMENT", 9: "IN_GRACE_PERIOD", 100: "PENDING_CLOSURE", 101: "CLOSED",
    201: "ANY_ACTIVE", 202: "ANY_CLOSED",
}
CAN_RUN_ADS = frozenset({1, 8, 9})

_ACCOUNT_ID = re.compile(r"(?:act_)?([0-9]{1,20})")


def normalize_account_id(raw: str) -> str:
    """'act_<digits>' or '<digits>' -> 'act_<digits>'; anything else is a ValueError."""
    match = _ACCOUNT_ID.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise ValueError("account_id must be act_<digits> or <digits>")
    return f"act_{match.group(1)}"


def status_name(status: Any) -> str:
    try:
        return ACCOUNT_STATUS_NAMES.get(int(status), "UNKNOWN")
    except (TypeError, ValueError):
        return "UNKNOWN"


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- the wizard's list --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Edge:
    path: str
    params: dict[str, Any]
    business: dict[str, Any] | None = None  # the business this edge lists accounts of
    attempt: int = 0

    def request(self) -> dict[str, str]:
        return {"method": "GET", "relative_url": f"{self.path}?{urlencode(self.params)}"}


@dataclass
class _Listing:
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped_edges: int = 0

    def add(self, raw: Any, via_business: dict[str, Any] | None) -> None:
        if not isinstance(raw, dict) or not raw.get("id"):
            return
        item = to_wizard_item(raw, via_business)
        known = self.accounts.get(item["id"])
        if known is None:
            self.accounts[item["id"]] = item
        elif known["business_manager_id"] is None and item["business_manager_id"] is not None:
            known.update(business_manager_id=item["business_manager_id"],
                         business_manager_name=item["business_manager_name"])


def to_wizard_item(raw: dict[str, Any], via_business: dict[str, Any] | None) -> dict[str, Any]:
    """One contract item. The owner business (Meta's `business`) wins over the business we
    reached the account through; accounts outside any business get nulls."""
    business = raw.get("business") if isinstance(raw.get("business"), dict) else via_business
    status = _int_or_none(raw.get("account_status"))
    account_id = str(raw["id"])
    if not account_id.startswith("act_"):
        account_id = f"act_{account_id}"
    return {
        "id": account_id,
        "name": raw.get("name") or "",
        "type": "AD_ACCOUNT",
        "business_manager_id": str(business["id"]) if business and business.get("id") else None,
        "business_manager_name": business.get("name") if business else None,
        "currency": raw.get("currency"),
        "timezone": raw.get("timezone_name"),
        "status": status_name(status),
        "can_run_ads": status in CAN_RUN_ADS,
        "amount_spent": raw.get("amount_spent"),
        "balance": raw.get("balance"),
    }


def _raise_if_fatal(error: MetaError) -> None:
    """Token and throttling errors end the listing (tenant_graph maps them for the client)."""
    if isinstance(error, MetaTokenInvalid | MetaRateLimited):
        raise error


def list_ad_accounts(graph: GraphClient) -> list[dict[str, Any]]:
    """Every ad account the token can use, once each, sorted by business then name."""
    from shared.meta.graph_core import next_page_params, page_items  # see the note at the imports

    listing = _Listing()
    account_params = {"fields": ACCOUNT_FIELDS, "limit": PAGE_LIMIT}
    business_params = {"fields": "id,name", "limit": PAGE_LIMIT}
    personal = _Edge("me/adaccounts", account_params)
    businesses_result, personal_result = graph.batch([
        _Edge("me/businesses", business_params).request(), personal.request()])

    businesses: list[dict[str, Any]] = []
    if isinstance(businesses_result, MetaError):
        _raise_if_fatal(businesses_result)
        if not isinstance(businesses_result, MetaPermissionDenied):
            raise businesses_result
        # Without business_management we still list the person's own accounts.
        logger.warning("ads_wizard_businesses_denied", extra={"code": businesses_result.code})
    else:
        businesses += page_items(businesses_result)
        params = next_page_params(businesses_result, business_params)
        while params is not None:  # people belong to few businesses: rarely a second page
            page = graph.get("me/businesses", params)
            businesses += page_items(page)
            params = next_page_params(page, params)

    pending: list[tuple[_Edge, Any]] = [(personal, personal_result)]
    wave = [
        _Edge(f"{b['id']}/{edge}", account_params, {"id": str(b["id"]), "name": b.get("name")})
        for b in businesses if isinstance(b, dict) and b.get("id")
        for edge in ("owned_ad_accounts", "client_ad_accounts")
    ]
    while pending or wave:
        if wave:
            results = graph.batch([edge.request() for edge in wave])
            pending += list(zip(wave, results, strict=True))
        wave = []
        for edge, result in pending:
            follow_up = _absorb(listing, edge, result)
            if follow_up is not None:
                wave.append(follow_up)
        pending = []
    metrics.add_metric(name="AdAccountsListed", unit="Count", value=len(listing.accounts))
    return sorted(listing.accounts.values(), key=_sort_key)


def _absorb(listing: _Listing, edge: _Edge, result: Any) -> _Edge | None:
    """Take one edge's page; return the edge to fetch next (next page or a retry), if any."""
    from shared.meta.graph_core import next_page_params, page_items  # see the note at the imports

    if isinstance(result, MetaError):
        _raise_if_fatal(result)
        if isinstance(result, MetaTransient) and edge.attempt == 0:
            return replace(edge, attempt=1)  # one more try in the next wave
        if edge.business is not None and isinstance(result, MetaPermissionDenied
                                                    | MetaRequestError):
            # One business we may not read (role removed, asset not shared): skip it, list
            # the rest. Nothing of Meta's payload is logged.
            listing.skipped_edges += 1
            logger.warning("ads_wizard_edge_skipped", extra={"code": result.code,
                                                             "subcode": result.subcode})
            return None
        if edge.business is None and isinstance(result, MetaPermissionDenied):
            raise MetaReconnectRequired("Meta did not grant access to ad accounts. Reconnect "
                                        "Meta Ads and allow ads permissions.")
        raise result
    for raw in page_items(result):
        listing.add(raw, edge.business)
    params = next_page_params(result, edge.params)
    return None if params is None else _Edge(edge.path, params, edge.business)


def _sort_key(item: dict[str, Any]) -> tuple:
    name = item["business_manager_name"]
    return (name is None, (name or "").lower(), item["name"].lower(), item["id"])


def wizard_accounts(tenant_id: str, deadline: float | None) -> list[dict[str, Any]]:
    from shared.connection.session import tenant_graph  # see the note at the imports

    with tenant_graph(tenant_id, deadline) as graph:
        accounts = list_ad_accounts(graph)
        logger.info("ads_wizard_listed", extra={"tenant_id": tenant_id,
                                                "accounts": len(accounts),
                                                "graph_requests": graph.request_count})
    return accounts


# -- connect ------------------------------------------------------------------------------------
CONNECT_FIELDS = "id,account_id,name,currency,timezone_name,account_status,business{id,name}"


def read_account(graph: GraphClient, account_id: str) -> store.AccountInfo:
    """Read the account with the tenant's token; Meta's denial becomes AccountNotAccessible."""
    try:
        raw = graph.get(account_id, {"fields": CONNECT_FIELDS})
    except (MetaPermissionDenied, MetaRequestError) as exc:
        # 100/33 "does not exist ... missing permissions", 10 and 200-299 permission errors.
        logger.info("ads_account_denied", extra={"code": exc.code, "subcode": exc.subcode})
        raise AccountNotAccessible() from None
    business = raw.get("business") if isinstance(raw.get("business"), dict) else {}
    return store.AccountInfo(
        account_id=account_id,
        name=str(raw.get("name") or ""),
        currency=raw.get("currency"),
        timezone=raw.get("timezone_name"),
        account_status=_int_or_none(raw.get("account_status")),
        business_id=business.get("id"),
        business_name=business.get("name"),
    )


@dataclass(frozen=True)
class Connected:
    account_id: str
    account_name: str
    sync_started: bool
    newly_connected: bool


def connect_account(tenant_id: str, user_id: str | None, account_id: str,
                    deadline: float | None) -> Connected:
    from shared.connection.session import tenant_graph  # see the note at the imports

    with tenant_graph(tenant_id, deadline) as graph:
        info = read_account(graph, account_id)
    with tenant_tx(tenant_id) as conn:
        inserted = store.upsert_account(conn, tenant_id, info, user_id or None)
    started = True
    try:
        publish(CONNECTED_EVENT, {"tenant_id": tenant_id, "account_id": account_id})
    except (EventPublishError, BotoCoreError, ClientError) as exc:
        logger.warning("ads_sync_event_not_published", extra={"tenant_id": tenant_id,
                                                              "error_type": type(exc).__name__})
        # The account is stored with no completed sync, so the next scheduled run picks it up.
        started = False
    logger.info("ads_account_connected", extra={"tenant_id": tenant_id, "account_id": account_id,
                                                "new": inserted, "sync_started": started})
    metrics.add_metric(name="AdAccountsConnected", unit="Count", value=1)
    return Connected(account_id, info.name, started, inserted)

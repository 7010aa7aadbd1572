"""Ads area: businesses, ad accounts, campaigns, daily insights and async report runs
(META_API.md §5-§7).

The seeded world (rebuilt on every reset) gives user 10001 ("Ana Demo") the standard layout:

    Ventas Demo Ads    60 owned accounts (3 pages of 25): #1 has 30 campaigns with daily
                       insights, #7 is DISABLED, #8..#12 other statuses; #2 is also a client
                       account of Agencia Norte (two paths, one account)
    Agencia Norte      3 owned accounts; client accounts: Ventas Demo #2 and Cliente Sur Ads
    Cliente Sur S.A.   a business Ana is not in; its account reaches her through the agency
    Proyecto Nuevo     a business without ad accounts
    personal           "Ana Demo (personal)", no business; only in /me/adaccounts
    /me/adaccounts     also lists Ventas Demo #1 and #3 and Agencia Norte #1 (duplicates)

User 10002 owns "Bruno Ads" (act_9000000001), which Ana's token must not read. The layout gives
65 distinct accounts. Tests that need their own, unshared data create it through the control API
(fresh ids per call), so nothing depends on a reset:

    POST /__sandbox/ads/users        {"layout": "standard"|"empty"} -> a new user + layout
    POST /__sandbox/ads/accounts     {"user_id", "campaigns", "currency", "timezone_name",
                                      "sync_max_rows", "async_polls", "start_days_ago"}
    POST /__sandbox/ads/insights     {"account_id", "campaign_id", "date", "spend"?, ...}
    POST /__sandbox/ads/accounts/{id}/throttle  {"after_calls", "count", "code",
                                      "regain_minutes", "reset_seconds", "edge"}
    POST /__sandbox/ads/accounts/{id}/async     {"polls"?, "fail_next"?} (also pending runs)
    GET  /__sandbox/ads/accounts/{id}           state + the insights requests received
    GET  /__sandbox/ads/users/{id}/expected     the distinct accounts the user can reach

Insight values are a pure function of (campaign, day) unless overridden: `insight_values()`
is what tests compute expectations with. Campaigns alternate between the two shapes Meta reports
leads in: `lead` (the total, with `onsite_conversion.lead_grouped` as its form-lead subset) and,
without `lead`, `onsite_conversion.lead_grouped` + `offsite_conversion.fb_pixel_lead`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Response

from sandbox.core import (
    Area,
    Ctx,
    GraphError,
    decode_cursor,
    encode_cursor,
    json_response,
    requested_fields,
    unsupported_object,
)
from sandbox.world import User, World

area = Area("ads")

ADS_SCOPES = {"ads_read", "ads_management"}
BUSINESS_SCOPE = "business_management"
ACCOUNT_PAGE_MAX = 25  # Graph caps some ads edges below the `limit` asked for
CAMPAIGN_PAGE_MAX = 25
INSIGHTS_PAGE_MAX = 500
REPORT_RUN_PREFIX = "555"  # report run ids are numeric; the prefix keeps our route narrow
STATUS_NAMES = {1: "ACTIVE", 2: "DISABLED", 3: "UNSETTLED", 7: "PENDING_RISK_REVIEW",
                8: "PENDING_SETTLEMENT", 9: "IN_GRACE_PERIOD", 100: "PENDING_CLOSURE",
                101: "CLOSED"}
BUC_TYPE = {80000: "ads_insights", 80004: "ads_management", 17: "ads_management",
            613: "ads_insights"}
THROTTLE_MESSAGES = {
    80000: "(#80000) There have been too many calls from this ad-account. Wait a bit and try "
    "again. For more info, please refer to "
    "https://developers.facebook.com/docs/graph-api/overview/rate-limiting#ads-insights.",
    80004: "(#80004) There have been too many calls to this ad-account. Wait a bit and try "
    "again.",
    17: "(#17) User request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
}
THROTTLE_SUBCODES = {17: 2446079, 613: 1487742}


@dataclass
class Business:
    id: str
    name: str
    user_ids: set[str] = field(default_factory=set)


@dataclass
class Campaign:
    id: str
    name: str
    status: str
    objective: str
    start: date
    stop: date | None
    daily_budget: str
    lead_style: str  # "lead" | "grouped"
    seed: int

    @property
    def effective_status(self) -> str:
        return self.status

    def graph(self, account_id: str) -> dict[str, Any]:
        out = {
            "id": self.id,
            "account_id": account_id,
            "name": self.name,
            "status": self.status,
            "effective_status": self.effective_status,
            "objective": self.objective,
            "daily_budget": self.daily_budget,
            "start_time": f"{self.start.isoformat()}T09:00:00+0000",
            "updated_time": f"{self.start.isoformat()}T09:05:00+0000",
            "created_time": f"{self.start.isoformat()}T09:00:00+0000",
        }
        if self.stop is not None:
            out["stop_time"] = f"{self.stop.isoformat()}T23:00:00+0000"
        return out


@dataclass
class Throttle:
    after_calls: int
    count: int
    code: int = 80000
    regain_minutes: int = 5
    reset_seconds: int = 300
    edge: str | None = None  # only calls whose path ends with this edge are counted
    seen: int = 0


@dataclass
class ReportRun:
    id: str
    account_id: str
    since: date
    until: date
    fields: list[str] | None
    polls_left: int
    status: str = "Job Running"
    fail: bool = False


@dataclass
class AdAccount:
    account_id: str  # digits only
    name: str
    currency: str
    timezone_name: str
    account_status: int = 1
    amount_spent: str = "0"
    balance: str = "0"
    owner_business_id: str | None = None
    client_business_ids: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)
    campaigns: list[Campaign] = field(default_factory=list)
    overrides: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    throttle: Throttle | None = None
    sync_max_rows: int | None = None
    async_polls: int = 1
    async_fail_next: int = 0
    insights_requests: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0

    @property
    def id(self) -> str:
        return f"act_{self.account_id}"


class AdsState:
    """Everything this area knows. Mutate only under world.lock."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.businesses: dict[str, Business] = {}
        self.accounts: dict[str, AdAccount] = {}  # by digits
        self.report_runs: dict[str, ReportRun] = {}
        self.layout: dict[str, Any] = {}
        self._serial = 0

    def today(self) -> date:
        return datetime.fromtimestamp(self.world.now(), UTC).date()

    @staticmethod
    def new_id(digits: int = 15) -> str:
        return str(10 ** (digits - 1) + secrets.randbelow(9 * 10 ** (digits - 1)))

    def serial(self) -> int:
        self._serial += 1
        return self._serial

    # -- building -----------------------------------------------------------------------------
    def add_business(self, name: str, user_ids: set[str], business_id: str | None = None
                     ) -> Business:
        business = Business(business_id or self.new_id(), name, set(user_ids))
        self.businesses[business.id] = business
        return business

    def add_account(self, name: str, *, owner: Business | None = None,
                    account_id: str | None = None, currency: str = "EUR",
                    timezone_name: str = "Europe/Madrid",
                    status: int = 1, user_ids: set[str] | None = None, amount_spent: str = "0",
                    balance: str = "0") -> AdAccount:
        account = AdAccount(account_id or self.new_id(16), name, currency, timezone_name, status,
                            amount_spent, balance, owner.id if owner else None,
                            user_ids=set(user_ids or ()))
        self.accounts[account.account_id] = account
        return account

    def add_campaigns(self, account: AdAccount, count: int, *, start_days_ago: int = 120) -> None:
        today = self.today()
        for i in range(count):
            start = today - timedelta(days=start_days_ago - 2 * i)
            paused = i % 6 == 5
            ended = i % 10 == 9
            stop = (today - timedelta(days=10) if paused
                    else start + timedelta(days=40) if ended else None)
            seed = self.serial() * 7919 + i
            account.campaigns.append(Campaign(
                id=str(23_850_000_000_000_000 + seed),
                name=f"Campaña {i + 1:02d} - {account.name}",
                status="PAUSED" if paused else "ACTIVE",
                objective="OUTCOME_LEADS" if i % 4 else "OUTCOME_TRAFFIC",
                start=start, stop=stop, daily_budget=str(1000 + 500 * (i % 5)),
                lead_style="lead" if i % 2 == 0 else "grouped", seed=seed))

    def visible(self, account: AdAccount, user_id: str) -> bool:
        if user_id in account.user_ids:
            return True
        business_ids = {account.owner_business_id, *account.client_business_ids} - {None}
        return any(user_id in self.businesses[b].user_ids for b in business_ids
                   if b in self.businesses)

    def reachable(self, user_id: str) -> list[AdAccount]:
        return [a for a in self.accounts.values() if self.visible(a, user_id)]


def standard_layout(state: AdsState, user_id: str, *, fixed_ids: bool = False,
                    extra_businesses: int = 0) -> dict[str, Any]:
    """The layout described in the module docstring, for `user_id`. Fixed ids for the seed,
    fresh ones for control-created users; `extra_businesses` more, with one account each."""

    def bid(value: str) -> str | None:
        return value if fixed_ids else None

    main = state.add_business("Ventas Demo Ads S.L.", {user_id}, bid("6001"))
    agency = state.add_business("Agencia Norte", {user_id}, bid("6002"))
    client = state.add_business("Cliente Sur S.A.", {"10002"}, bid("6003"))
    state.add_business("Proyecto Nuevo", {user_id}, bid("6004"))
    special = {7: 2, 8: 3, 9: 9, 10: 8, 11: 101, 12: 7}
    main_accounts = []
    for k in range(1, 61):
        main_accounts.append(state.add_account(
            f"Ventas Demo {k:02d}", owner=main,
            account_id=bid(str(1_000_000_000_000_000 + k)),
            currency="USD" if k % 10 == 0 else "EUR", status=special.get(k, 1),
            amount_spent=str(k * 12345), balance=str(k * 100)))
    state.add_campaigns(main_accounts[0], 30)
    agency_accounts = [state.add_account(
        f"Agencia Norte {k}", owner=agency, account_id=bid(str(1_000_000_000_000_100 + k)),
        currency="MXN", timezone_name="America/Mexico_City", amount_spent=str(k * 999),
        balance="0") for k in range(1, 4)]
    client_account = state.add_account(
        "Cliente Sur Ads", owner=client, account_id=bid("1000000000000201"), currency="CLP",
        timezone_name="America/Santiago", amount_spent="1500000", balance="25000")
    client_account.client_business_ids.add(agency.id)
    main_accounts[1].client_business_ids.add(agency.id)
    personal = state.add_account(
        "Ana Demo (personal)" if fixed_ids else f"Personal {user_id}",
        account_id=bid("1000000000000301"), currency="USD",
        timezone_name="America/Mexico_City", user_ids={user_id}, amount_spent="4200",
        balance="150")
    for direct in (main_accounts[0], main_accounts[2], agency_accounts[0]):
        direct.user_ids.add(user_id)
    for n in range(1, extra_businesses + 1):
        extra = state.add_business(f"Negocio Extra {n:02d}", {user_id})
        state.add_account(f"Extra {n:02d}", owner=extra, currency="EUR")
    return {"user_id": user_id, "demo_account_id": main_accounts[0].id,
            "shared_account_id": main_accounts[1].id, "personal_account_id": personal.id,
            "client_account_id": client_account.id, "disabled_account_id": main_accounts[6].id,
            "business_ids": {"main": main.id, "agency": agency.id, "client": client.id}}


@area.seed
def seed(world: World) -> AdsState:
    state = AdsState(world)
    state.layout = standard_layout(state, "10001", fixed_ids=True)
    bruno = state.add_business("Bruno Store Ads", {"10002"}, "6005")
    state.add_account("Bruno Ads", owner=bruno, account_id="9000000001", currency="EUR")
    return state


# -- insight values -----------------------------------------------------------------------------
def insight_values(campaign: Campaign, day: date) -> dict[str, Any] | None:
    """The seeded daily numbers of one campaign (None: no delivery that day)."""
    if day < campaign.start or (campaign.stop is not None and day > campaign.stop):
        return None
    n = campaign.seed + day.toordinal()
    impressions = 800 + (n * 37) % 900
    clicks = 10 + (n * 7) % 60
    spend_cents = 500 + (n * 53) % 4500
    leads = n % 5
    return {"spend": f"{spend_cents / 100:.2f}", "impressions": impressions, "clicks": clicks,
            "leads": leads}


def actions_for(campaign: Campaign, values: dict[str, Any]) -> list[dict[str, str]]:
    leads = int(values["leads"])
    actions = [{"action_type": "link_click", "value": str(values["clicks"])}]
    if leads == 0:
        return actions
    if campaign.lead_style == "lead":
        actions += [{"action_type": "lead", "value": str(leads)},
                    {"action_type": "onsite_conversion.lead_grouped", "value": str(leads)}]
    else:
        form = (leads + 1) // 2
        actions.append({"action_type": "onsite_conversion.lead_grouped", "value": str(form)})
        if leads - form:
            actions.append({"action_type": "offsite_conversion.fb_pixel_lead",
                            "value": str(leads - form)})
    return actions


def daily_values(account: AdAccount, campaign: Campaign, day: date) -> dict[str, Any] | None:
    override = account.overrides.get((campaign.id, day.isoformat()))
    base = insight_values(campaign, day)
    if override is None:
        return base
    return {**(base or {"spend": "0.00", "impressions": 0, "clicks": 0, "leads": 0}), **override}


def insight_rows(state: AdsState, account: AdAccount, since: date, until: date,
                 fields: list[str] | None) -> list[dict[str, Any]]:
    until = min(until, state.today())
    rows = []
    day = since
    while day <= until:
        for campaign in account.campaigns:
            values = daily_values(account, campaign, day)
            if values is None or int(values["impressions"]) == 0:
                continue  # Graph leaves out rows without delivery
            row = {
                "account_id": account.account_id,
                "campaign_id": campaign.id,
                "campaign_name": campaign.name,
                "spend": values["spend"],
                "impressions": str(values["impressions"]),
                "clicks": str(values["clicks"]),
                "actions": actions_for(campaign, values),
                "account_currency": account.currency,
            }
            if fields:
                row = {k: v for k, v in row.items() if k in fields}
            row["date_start"] = row["date_stop"] = day.isoformat()
            rows.append(row)
        day += timedelta(days=1)
    return rows


# -- helpers ------------------------------------------------------------------------------------
def _state(ctx: Ctx) -> AdsState:
    return ctx.world.area("ads")


def _require_ads_scope(ctx: Ctx) -> None:
    if not ADS_SCOPES & set(ctx.token.scopes):
        raise GraphError(200, "(#200) Ad account owner has NOT grant ads_management or ads_read "
                         "permission")


def _require_business_scope(ctx: Ctx) -> None:
    if BUSINESS_SCOPE not in ctx.token.scopes:
        raise GraphError(200, "(#200) Requires business_management permission to manage the "
                         "object")


def _page(ctx: Ctx, items: list[Any], cap: int, default: int = 25) -> dict[str, Any]:
    """Cursor paging like ctx.page, with the edge's own maximum page size."""
    params = ctx.params
    limit = max(1, min(int(params.get("limit", default)), cap))
    start = decode_cursor(params["after"]) + 1 if params.get("after") else 0
    chunk = items[start : start + limit]
    body: dict[str, Any] = {"data": chunk}
    if chunk:
        last = start + len(chunk) - 1
        cursors = {"before": encode_cursor(start), "after": encode_cursor(last)}
        body["paging"] = {"cursors": cursors}
        if start + len(chunk) < len(items):
            body["paging"]["next"] = ctx.url_with(after=cursors["after"])
    if params.get("summary") in {"true", "total_count", "1"}:
        body["summary"] = {"total_count": len(items)}
    return body


def account_graph(state: AdsState, account: AdAccount, fields: list[str] | None
                  ) -> dict[str, Any]:
    full: dict[str, Any] = {
        "id": account.id,
        "account_id": account.account_id,
        "name": account.name,
        "account_status": account.account_status,
        "disable_reason": 0 if account.account_status != 2 else 1,
        "currency": account.currency,
        "timezone_name": account.timezone_name,
        "amount_spent": account.amount_spent,
        "balance": account.balance,
    }
    owner = state.businesses.get(account.owner_business_id or "")
    if owner is not None:
        full["business"] = {"id": owner.id, "name": owner.name}
    wanted = fields or ["id"]
    return {k: full[k] for k in ["id", *wanted] if k in full}


def _account(ctx: Ctx, raw_id: str) -> AdAccount:
    _require_ads_scope(ctx)
    account = _state(ctx).accounts.get(raw_id)
    if account is None or not _state(ctx).visible(account, ctx.token.user_id):
        raise unsupported_object(ctx.method, f"act_{raw_id}")
    return account


def _count_call(ctx: Ctx, account: AdAccount, edge: str) -> dict[str, str]:
    """Count an ads call on the account; raise the throttle error when one is armed."""
    with ctx.world.lock:
        account.calls += 1
        throttle = account.throttle
        if throttle is not None and (throttle.edge is None or throttle.edge == edge):
            throttle.seen += 1
            if throttle.seen > throttle.after_calls and throttle.count > 0:
                throttle.count -= 1
                raise _throttle_error(account, throttle)
    return _usage_headers(account, 3)


def _usage_headers(account: AdAccount, pct: float, regain: int = 0, reset: int = 0
                   ) -> dict[str, str]:
    return {"x-ad-account-usage": json.dumps({
        "acc_id_util_pct": pct, "reset_time_duration": reset,
        "ads_api_access_tier": "standard_access"}),
        "x-business-use-case-usage": json.dumps({account.owner_business_id or account.account_id:
            [{"type": "ads_insights", "call_count": pct, "total_cputime": 1, "total_time": 1,
              "estimated_time_to_regain_access": regain,
              "ads_api_access_tier": "standard_access"}]})}


def _throttle_error(account: AdAccount, throttle: Throttle) -> GraphError:
    headers = _usage_headers(account, 100, throttle.regain_minutes, throttle.reset_seconds)
    buc = json.loads(headers["x-business-use-case-usage"])
    for entries in buc.values():
        entries[0]["type"] = BUC_TYPE.get(throttle.code, "ads_insights")
    headers["x-business-use-case-usage"] = json.dumps(buc)
    message = THROTTLE_MESSAGES.get(throttle.code, f"(#{throttle.code}) Rate limit")
    return GraphError(throttle.code, message, subcode=THROTTLE_SUBCODES.get(throttle.code),
                      is_transient=False, headers=headers)


def _time_range(ctx: Ctx, state: AdsState) -> tuple[date, date]:
    raw = ctx.params.get("time_range")
    if not raw:
        today = state.today()
        return today - timedelta(days=30), today - timedelta(days=1)  # date_preset last_30d
    try:
        value = json.loads(raw)
        since, until = date.fromisoformat(value["since"]), date.fromisoformat(value["until"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphError(100, "(#100) Param time_range must be a JSON object with since and "
                         "until dates (YYYY-MM-DD)") from exc
    if since > until:
        raise GraphError(100, "(#100) time_range since must not be after until")
    return since, until


def _check_insights_params(ctx: Ctx) -> None:
    params = ctx.params
    if params.get("level", "campaign") != "campaign":
        raise GraphError(100, "(#100) The sandbox serves level=campaign only")
    if params.get("time_increment", "1") != "1":
        raise GraphError(100, "(#100) The sandbox serves time_increment=1 only")


# -- Graph routes -------------------------------------------------------------------------------
@area.route("GET", "/{user_id}/businesses", auth="user")
def businesses(ctx: Ctx) -> dict[str, Any]:
    """The person's businesses: this area's plus the WhatsApp area's, once each."""
    user_id = ctx.user_id(ctx.path_params["user_id"])
    if user_id != ctx.token.user_id:
        raise unsupported_object(ctx.method, ctx.path_params["user_id"])
    fields = requested_fields(ctx.params.get("fields")) or ["name"]
    with ctx.world.lock:
        rows: dict[str, dict[str, Any]] = {}
        other = ctx.world.areas.get("whatsapp")
        for source in (_state(ctx).businesses, getattr(other, "businesses", {})):
            for business in source.values():
                if user_id in getattr(business, "user_ids", ()) and business.id not in rows:
                    full = {"id": business.id, "name": business.name}
                    rows[business.id] = {k: full[k] for k in ["id", *fields] if k in full}
    return _page(ctx, list(rows.values()), cap=100)


def _business_accounts(ctx: Ctx, relation: str) -> dict[str, Any]:
    _require_ads_scope(ctx)
    _require_business_scope(ctx)
    business_id = ctx.path_params["business_id"]
    state = _state(ctx)
    fields = requested_fields(ctx.params.get("fields"))
    with ctx.world.lock:
        business = state.businesses.get(business_id)
        if business is None:
            other = getattr(ctx.world.areas.get("whatsapp"), "businesses", {}).get(business_id)
            if other is not None and ctx.token.user_id in other.user_ids:
                return _page(ctx, [], cap=ACCOUNT_PAGE_MAX)  # a business without ad accounts
            raise unsupported_object(ctx.method, business_id)
        if ctx.token.user_id not in business.user_ids:
            raise unsupported_object(ctx.method, business_id)
        if relation == "owned":
            accounts = [a for a in state.accounts.values() if a.owner_business_id == business_id]
        else:
            accounts = [a for a in state.accounts.values()
                        if business_id in a.client_business_ids]
        rows = [account_graph(state, a, fields) for a in accounts]
    return _page(ctx, rows, cap=ACCOUNT_PAGE_MAX)


@area.route("GET", "/{business_id}/owned_ad_accounts", auth="user")
def owned_ad_accounts(ctx: Ctx) -> dict[str, Any]:
    return _business_accounts(ctx, "owned")


@area.route("GET", "/{business_id}/client_ad_accounts", auth="user")
def client_ad_accounts(ctx: Ctx) -> dict[str, Any]:
    return _business_accounts(ctx, "client")


@area.route("GET", "/{user_id}/adaccounts", auth="user")
def user_ad_accounts(ctx: Ctx) -> dict[str, Any]:
    """ "All ad accounts associated with this person": direct assignments, incl. personal ones."""
    user_id = ctx.user_id(ctx.path_params["user_id"])
    if user_id != ctx.token.user_id:
        raise unsupported_object(ctx.method, ctx.path_params["user_id"])
    _require_ads_scope(ctx)
    state = _state(ctx)
    fields = requested_fields(ctx.params.get("fields"))
    with ctx.world.lock:
        rows = [account_graph(state, a, fields) for a in state.accounts.values()
                if user_id in a.user_ids]
    return _page(ctx, rows, cap=ACCOUNT_PAGE_MAX)


@area.route("GET", "/act_{account_id}", auth="user")
def read_account(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    with ctx.world.lock:
        account = _account(ctx, ctx.path_params["account_id"])
        return account_graph(state, account, requested_fields(ctx.params.get("fields")))


@area.route("GET", "/act_{account_id}/campaigns", auth="user")
def campaigns(ctx: Ctx) -> Response:
    with ctx.world.lock:
        account = _account(ctx, ctx.path_params["account_id"])
    headers = _count_call(ctx, account, "campaigns")
    fields = requested_fields(ctx.params.get("fields"))
    with ctx.world.lock:
        rows = []
        for campaign in account.campaigns:
            full = campaign.graph(account.account_id)
            rows.append({k: full[k] for k in ["id", *(fields or [])] if k in full})
    return json_response(_page(ctx, rows, cap=CAMPAIGN_PAGE_MAX), 200, headers)


@area.route("GET", "/act_{account_id}/insights", auth="user")
def insights(ctx: Ctx) -> Response:
    state = _state(ctx)
    with ctx.world.lock:
        account = _account(ctx, ctx.path_params["account_id"])
    headers = _count_call(ctx, account, "insights")
    _check_insights_params(ctx)
    since, until = _time_range(ctx, state)
    with ctx.world.lock:
        rows = insight_rows(state, account, since, until,
                            requested_fields(ctx.params.get("fields")))
        if not ctx.params.get("after"):
            account.insights_requests.append({"mode": "sync", "since": since.isoformat(),
                                              "until": until.isoformat()})
    if account.sync_max_rows is not None and len(rows) > account.sync_max_rows:
        # What Graph answers when a synchronous insights query is too big for it.
        raise GraphError(1, "Please reduce the amount of data you're asking for, then retry "
                         "your request", subcode=99, status=500)
    return json_response(_page(ctx, rows, cap=INSIGHTS_PAGE_MAX), 200, headers)


@area.route("POST", "/act_{account_id}/insights", auth="user")
def start_report(ctx: Ctx) -> Response:
    state = _state(ctx)
    with ctx.world.lock:
        account = _account(ctx, ctx.path_params["account_id"])
    headers = _count_call(ctx, account, "insights")
    _check_insights_params(ctx)
    since, until = _time_range(ctx, state)
    run_id = REPORT_RUN_PREFIX + state.new_id(13)
    with ctx.world.lock:
        fail = account.async_fail_next > 0
        if fail:
            account.async_fail_next -= 1
        state.report_runs[run_id] = ReportRun(
            run_id, account.account_id, since, until, requested_fields(ctx.params.get("fields")),
            account.async_polls, fail=fail)
        account.insights_requests.append({"mode": "async", "since": since.isoformat(),
                                          "until": until.isoformat(), "report_run_id": run_id})
    return json_response({"report_run_id": run_id}, 200, headers)


def _run(ctx: Ctx) -> tuple[ReportRun, AdAccount]:
    state = _state(ctx)
    run = state.report_runs.get(ctx.path_params["report_run_id"])
    if run is None:
        raise unsupported_object(ctx.method, ctx.path_params["report_run_id"])
    account = _account(ctx, run.account_id)
    return run, account


@area.route("GET", f"/(?P<report_run_id>{REPORT_RUN_PREFIX}\\d+)", auth="user")
def report_status(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        run, account = _run(ctx)
        if run.status == "Job Running":
            if run.polls_left > 0:
                run.polls_left -= 1
            else:
                run.status = "Job Failed" if run.fail else "Job Completed"
        percent = 100 if run.status == "Job Completed" else 50 if run.status == "Job Running" \
            else 0
        return {"id": run.id, "account_id": account.account_id, "async_status": run.status,
                "async_percent_completion": percent,
                "date_start": run.since.isoformat(), "date_stop": run.until.isoformat()}


@area.route("GET", f"/(?P<report_run_id>{REPORT_RUN_PREFIX}\\d+)/insights", auth="user")
def report_results(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    with ctx.world.lock:
        run, account = _run(ctx)
        if run.status != "Job Completed":
            raise GraphError(100, "(#100) The report is not ready yet: poll its async_status "
                             "until it is Job Completed")
        rows = insight_rows(state, account, run.since, run.until, run.fields)
    return _page(ctx, rows, cap=INSIGHTS_PAGE_MAX)


# -- control endpoints (served under /__sandbox/) ---------------------------------------------
def _control_account(ctx: Ctx) -> AdAccount:
    raw = ctx.path_params["account_id"].removeprefix("act_")
    return _state(ctx).accounts[raw]


@area.control("POST", "/ads/users")
def control_new_user(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    state = _state(ctx)
    with ctx.world.lock:
        user_id = "3" + state.new_id(14)
        ctx.world.users[user_id] = User(user_id, str(body.get("name") or f"Ads user {user_id}"))
        if body.get("layout", "standard") == "standard":
            return standard_layout(state, user_id,
                                   extra_businesses=int(body.get("extra_businesses", 0)))
    return {"user_id": user_id}


@area.control("POST", "/ads/accounts")
def control_new_account(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    state = _state(ctx)
    user_id = str(b.get("user_id", "10001"))
    with ctx.world.lock:
        if user_id not in ctx.world.users:
            raise ValueError(f"unknown user {user_id!r}")
        account = state.add_account(
            str(b.get("name") or "Cuenta de prueba"), currency=str(b.get("currency", "EUR")),
            timezone_name=str(b.get("timezone_name", "Europe/Madrid")),
            status=int(b.get("account_status", 1)), user_ids={user_id})
        account.name = f"{account.name} {account.account_id[-4:]}"
        state.add_campaigns(account, int(b.get("campaigns", 5)),
                            start_days_ago=int(b.get("start_days_ago", 120)))
        if b.get("sync_max_rows") is not None:
            account.sync_max_rows = int(b["sync_max_rows"])
        account.async_polls = int(b.get("async_polls", account.async_polls))
        return {"account_id": account.id, "name": account.name, "currency": account.currency,
                "timezone_name": account.timezone_name,
                "campaign_ids": [c.id for c in account.campaigns]}


@area.control("POST", "/ads/insights")
def control_override_insight(ctx: Ctx) -> dict[str, Any]:
    """Change one campaign-day, as Meta's late attribution does."""
    b = ctx.json_body()
    with ctx.world.lock:
        account = _state(ctx).accounts[str(b["account_id"]).removeprefix("act_")]
        day = date.fromisoformat(b["date"]).isoformat()
        change = {k: b[k] for k in ("spend", "impressions", "clicks", "leads") if k in b}
        account.overrides.setdefault((str(b["campaign_id"]), day), {}).update(change)
    return {"success": True}


@area.control("POST", "/ads/accounts/{account_id}/throttle")
def control_throttle(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    with ctx.world.lock:
        account = _control_account(ctx)
        account.throttle = Throttle(int(b.get("after_calls", 0)), int(b.get("count", 1)),
                                    int(b.get("code", 80000)), int(b.get("regain_minutes", 5)),
                                    int(b.get("reset_seconds", 300)), b.get("edge"))
    return {"success": True}


@area.control("DELETE", "/ads/accounts/{account_id}/throttle")
def control_throttle_clear(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        _control_account(ctx).throttle = None
    return {"success": True}


@area.control("POST", "/ads/accounts/{account_id}/async")
def control_async(ctx: Ctx) -> dict[str, Any]:
    """polls: GETs before a new (and every pending) run completes; fail_next: runs to fail."""
    b = ctx.json_body()
    state = _state(ctx)
    with ctx.world.lock:
        account = _control_account(ctx)
        if "polls" in b:
            account.async_polls = int(b["polls"])
            for run in state.report_runs.values():
                if run.account_id == account.account_id and run.status == "Job Running":
                    run.polls_left = min(run.polls_left, account.async_polls)
        if "fail_next" in b:
            account.async_fail_next = int(b["fail_next"])
    return {"success": True}


@area.control("GET", "/ads/accounts/{account_id}")
def control_account_state(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    with ctx.world.lock:
        account = _control_account(ctx)
        fields = ["name", "account_status", "currency", "timezone_name", "business"]
        return {"account": account_graph(state, account, fields),
                "campaign_ids": [c.id for c in account.campaigns],
                "calls": account.calls,
                "insights_requests": list(account.insights_requests),
                "report_runs": [{"id": r.id, "status": r.status, "since": r.since.isoformat(),
                                 "until": r.until.isoformat()}
                                for r in state.report_runs.values()
                                if r.account_id == account.account_id],
                "throttle": None if account.throttle is None else vars(account.throttle)}


@area.control("GET", "/ads/users/{user_id}/expected")
def control_expected(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    fields = ["name", "account_status", "currency", "timezone_name", "amount_spent", "balance",
              "business"]
    with ctx.world.lock:
        reachable = state.reachable(ctx.path_params["user_id"])
        rows = [account_graph(state, a, fields) for a in reachable]
    return {"accounts": rows}

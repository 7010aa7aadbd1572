"""One tenant's token renewal inside a token-refresh run: claim the row, ask Meta, decide the
outcome, write it fenced by the claim, and tell the tenant once per state.

The run that drives many of these concurrently is shared.connection.token_refresh; data access
is shared.connection.token_store. Postgres steps run on the run's db threads (each with its own
connection), KMS and EventBridge calls on its aws threads; nothing here holds a transaction open
while Meta is called.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from shared.connection import credentials
from shared.connection import token_store as store
from shared.connection.health import (
    ACTIVE,
    EXPIRING,
    NEEDS_RECONNECT,
    REFRESH_FAILING,
    TOKEN_INVALID,
    TOKEN_NOT_EXTENDED,
    TOKEN_UNDECRYPTABLE,
    Horizons,
    classify,
    is_absent,
    iso,
    meta_time,
)
from shared.meta.errors import MetaError, MetaRateLimited, MetaTokenInvalid, MetaTransient
from shared.platform import events
from shared.platform.db import tenant_tx
from shared.platform.observability import counters, logger

if TYPE_CHECKING:
    from shared.meta.graph import AsyncGraphClient

RECONNECT_EVENT = "MetaReconnectRequired"
EXCHANGE_REFUSED = "exchange_refused"
# Consecutive failed renewals (one per hourly run) before a tenant whose token expires inside
# the window is told: one Meta blip is not worth an alert, a few hours of failures are.
FAILURES_BEFORE_TELLING = 3
# A renewal counts only if Meta moved the expiry: it may hand back a new string with the same one.
MIN_EXTENSION = timedelta(hours=1)

# Per-tenant outcomes (the log's `outcome`); the contract's summary is derived from them.
REFRESHED = "refreshed"  # a new token with a later expiry is stored
NOT_EXTENDED = "not_extended"  # Meta would not renew it: expiring, tenant told
CHECKED = "checked"  # Meta confirmed the token; nothing to renew
ALERTED = "alerted"  # only the missing MetaReconnectRequired event was put
MARKED_RECONNECT = "needs_reconnect"  # broken: Meta said so, or the expiry passed
FAILED = "failed"  # throttled, unavailable, or our side failed: retried next run
SUPERSEDED = "superseded"  # replaced by a reconnect (or the lease lapsed) mid-run: nothing written

T = TypeVar("T")


@dataclass(frozen=True)
class TenantOutcome:
    tenant_id: str
    outcome: str
    status: str | None
    reason: str | None = None
    expires_at: datetime | None = None
    data_access_expires_at: datetime | None = None
    alerted: bool = False
    meta_code: int | None = None
    meta_subcode: int | None = None


class TenantRenewal:
    def __init__(self, graph: AsyncGraphClient, h: Horizons, force: bool,
                 db: ThreadPoolExecutor, aws: ThreadPoolExecutor) -> None:
        self.graph, self.h, self.force = graph, h, force
        self.db_pool, self.aws_pool = db, aws

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A Postgres step, on a db thread (its own connection)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db_pool, functools.partial(fn, *args, **kwargs))

    async def aws(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A KMS or EventBridge call, on a thread that never opens a database connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.aws_pool, functools.partial(fn, *args, **kwargs))

    async def run(self, tenant_id: str, slots: asyncio.Semaphore) -> TenantOutcome | None:
        claimed: store.ClaimedCredential | None = None
        try:
            claimed = await self.blocking(_claim, tenant_id, None if self.force else self.h)
            if claimed is None:
                return None  # another run holds it, or handled it since it was listed
            outcome = await self.process(claimed)
        except Exception as exc:  # noqa: BLE001 - Postgres, KMS, EventBridge: retry next run
            # The type only: messages could echo values. The old ciphertext is untouched.
            logger.error("token_refresh_error", extra={"tenant_id": tenant_id,
                                                       "error_type": type(exc).__name__})
            if claimed is not None:
                await self._record_failure_quietly(claimed)
            outcome = TenantOutcome(
                tenant_id, FAILED, claimed.status if claimed else None, "internal_error",
                claimed.expires_at if claimed else None,
                claimed.data_access_expires_at if claimed else None)
        finally:
            slots.release()
        _report(outcome)
        return outcome

    async def _record_failure_quietly(self, claimed: store.ClaimedCredential) -> None:
        try:
            await self.blocking(_record_failure, claimed)
        except Exception as exc:  # noqa: BLE001 - the lease lapses on its own
            logger.error("token_refresh_release_failed",
                         extra={"tenant_id": claimed.tenant_id, "error_type": type(exc).__name__})

    # -- deciding ---------------------------------------------------------------------------
    async def process(self, claimed: store.ClaimedCredential) -> TenantOutcome:
        h = self.h
        if claimed.status == NEEDS_RECONNECT:
            if claimed.notified(NEEDS_RECONNECT):  # only an admin's "refresh now" gets here
                await self.blocking(_release, claimed)
                return TenantOutcome(claimed.tenant_id, CHECKED, NEEDS_RECONNECT,
                                     claimed.status_reason, claimed.expires_at,
                                     claimed.data_access_expires_at)
            # Marked elsewhere (e.g. a 190 on an API call) and not yet announced.
            return await self.alert_only(claimed, NEEDS_RECONNECT, claimed.status_reason)
        status, reason = classify(claimed.expires_at, claimed.data_access_expires_at, h)
        if status == NEEDS_RECONNECT:
            # "You can not use an expired token to request a long-lived token" (LL).
            return await self.conclude(claimed, _keep_facts(claimed, status, reason),
                                       MARKED_RECONNECT)
        recently_tried = (claimed.last_refresh_attempt_at is not None
                          and claimed.last_refresh_attempt_at >= h.recheck_before)
        if claimed.status == EXPIRING and recently_tried and not self.force:
            return await self.alert_only(claimed, EXPIRING, claimed.status_reason)
        renew = claimed.expires_at is not None and (self.force or claimed.expires_at <= h.horizon)
        from shared.platform.crypto import TokenDecryptError  # loaded by unseal anyway

        try:
            token = await self.aws(credentials.unseal, claimed.tenant_id, claimed.ciphertext)
        except TokenDecryptError:
            # The ciphertext does not open under its row: no retry will change that.
            return await self.conclude(
                claimed, _keep_facts(claimed, NEEDS_RECONNECT, TOKEN_UNDECRYPTABLE),
                MARKED_RECONNECT)
        return await self.ask_meta(claimed, token, renew)

    async def ask_meta(self, claimed: store.ClaimedCredential, token: str,
                       renew: bool) -> TenantOutcome:
        new_token: str | None = None
        expires_in: int | None = None
        refused = False
        if renew:
            try:
                grant = await self.graph.exchange_long_lived(token)
                new_token, expires_in = grant.access_token, grant.expires_in
            except MetaTokenInvalid as exc:  # 190, any subcode: the token is dead
                reason = f"meta_{exc.code}_{exc.subcode or 0}"
                return await self.conclude(
                    claimed, _keep_facts(claimed, NEEDS_RECONNECT, reason), MARKED_RECONNECT,
                    exc)
            except (MetaRateLimited, MetaTransient) as exc:
                return await self.failed(claimed, exc)
            except MetaError:
                # Meta will not exchange this token (not a 190): if it still works, the tenant
                # must reconnect before it expires. debug_token below decides which.
                refused = True
        try:
            info = await self.graph.debug_token(new_token or token)
        except MetaError as exc:
            # A debug_token error is about our app token as much as theirs (e.g. a wrong app
            # secret): never mark every tenant broken for it. Counted, retried next run.
            return await self.failed(claimed, exc)
        return await self.conclude_from_meta(claimed, info, new_token, expires_in, refused)

    async def conclude_from_meta(self, claimed: store.ClaimedCredential, info: dict[str, Any],
                                 new_token: str | None, expires_in: int | None,
                                 refused: bool) -> TenantOutcome:
        if info.get("is_valid") is not True:
            error = info.get("error") if isinstance(info.get("error"), dict) else {}
            reason = (f"meta_{error.get('code')}_{error.get('subcode') or 0}"
                      if error.get("code") else TOKEN_INVALID)
            return await self.conclude(claimed, _keep_facts(claimed, NEEDS_RECONNECT, reason),
                                       MARKED_RECONNECT)
        expires_at = meta_time(info.get("expires_at"))
        if is_absent(expires_at):
            expires_at = (self.h.now + timedelta(seconds=expires_in) if new_token and expires_in
                          else claimed.expires_at)
        data_access = meta_time(info.get("data_access_expires_at"))
        if is_absent(data_access):
            data_access = claimed.data_access_expires_at
        scopes = info.get("scopes")
        scopes = ([s for s in scopes if isinstance(s, str)] if isinstance(scopes, list)
                  else claimed.scopes)
        status, reason = classify(expires_at, data_access, self.h)
        if refused and reason == TOKEN_NOT_EXTENDED:
            reason = EXCHANGE_REFUSED
        sealed = (await self.aws(credentials.seal, claimed.tenant_id, new_token)
                  if new_token else None)
        result = store.Result(status=status, reason=reason, expires_at=expires_at,
                              data_access_expires_at=data_access, scopes=scopes,
                              meta_user_id=str(info.get("user_id") or "") or None,
                              new_ciphertext=sealed)
        if status == NEEDS_RECONNECT:
            kind = MARKED_RECONNECT
        elif new_token and _extended(expires_at, claimed.expires_at):
            kind = REFRESHED
        elif status == EXPIRING:
            kind = NOT_EXTENDED
        else:
            kind = CHECKED
        return await self.conclude(claimed, result, kind)

    # -- writing ----------------------------------------------------------------------------
    async def conclude(self, claimed: store.ClaimedCredential, result: store.Result, kind: str,
                       meta_error: MetaError | None = None) -> TenantOutcome:
        """Write the outcome (and new ciphertext); then, if the tenant has not been told about
        this state yet, put the event while still holding the lease."""
        alert = result.status in (EXPIRING, NEEDS_RECONNECT) and not claimed.notified(
            result.status)
        if not await self.blocking(_save, claimed, result, keep_lease=alert):
            return TenantOutcome(claimed.tenant_id, SUPERSEDED, None)
        alerted = await self._alert(claimed, result) if alert else False
        return TenantOutcome(
            claimed.tenant_id, kind if alerted or not alert else FAILED, result.status,
            result.reason, result.expires_at, result.data_access_expires_at, alerted,
            meta_error.code if meta_error else None, meta_error.subcode if meta_error else None)

    async def alert_only(self, claimed: store.ClaimedCredential, status: str,
                         reason: str | None) -> TenantOutcome:
        result = _keep_facts(claimed, status, reason)
        alerted = await self._alert(claimed, result)
        return TenantOutcome(claimed.tenant_id, ALERTED if alerted else FAILED, status, reason,
                             claimed.expires_at, claimed.data_access_expires_at, alerted)

    async def _alert(self, claimed: store.ClaimedCredential, result: store.Result) -> bool:
        """Put MetaReconnectRequired, then remember it (releasing the lease). At least once: a
        crash between the two repeats the event next run; a failed put is retried next run."""
        detail = {"tenant_id": claimed.tenant_id, "reason": result.reason or result.status,
                  "status": result.status, "expires_at": iso(result.expires_at),
                  "data_access_expires_at": iso(result.data_access_expires_at)}
        try:
            await self.aws(events.publish, RECONNECT_EVENT, detail)
        except Exception as exc:  # noqa: BLE001 - EventBridge down: retried next run
            logger.error("token_refresh_alert_failed", extra={
                "tenant_id": claimed.tenant_id, "error_type": type(exc).__name__})
            await self.blocking(_release, claimed)
            return False
        await self.blocking(_mark_notified, claimed, result.status)
        return True

    async def failed(self, claimed: store.ClaimedCredential, exc: MetaError) -> TenantOutcome:
        if self._must_tell_tenant(claimed):
            # Renewal has failed run after run and the expiry is now inside the promised window:
            # the tenant hears it now (expiring, refresh_failing) rather than at the expiry. A
            # later run that renews the token makes the connection active again.
            return await self.conclude(claimed, _keep_facts(claimed, EXPIRING, REFRESH_FAILING),
                                       FAILED, exc)
        await self.blocking(_record_failure, claimed)
        reason = "meta_rate_limited" if isinstance(exc, MetaRateLimited) else (
            "meta_unavailable" if isinstance(exc, MetaTransient) else "meta_refused")
        return TenantOutcome(claimed.tenant_id, FAILED, claimed.status, reason,
                             claimed.expires_at, claimed.data_access_expires_at,
                             meta_code=exc.code, meta_subcode=exc.subcode)

    def _must_tell_tenant(self, claimed: store.ClaimedCredential) -> bool:
        return (claimed.status == ACTIVE and not claimed.notified(EXPIRING)
                and claimed.expires_at is not None and claimed.expires_at <= self.h.promise
                and claimed.refresh_failures + 1 >= FAILURES_BEFORE_TELLING)


def _extended(new: datetime | None, old: datetime | None) -> bool:
    if old is None:
        return False
    return new is None or new >= old + MIN_EXTENSION


def _keep_facts(claimed: store.ClaimedCredential, status: str,
                reason: str | None) -> store.Result:
    return store.Result(status=status, reason=reason, expires_at=claimed.expires_at,
                        data_access_expires_at=claimed.data_access_expires_at,
                        scopes=claimed.scopes)


def _report(o: TenantOutcome) -> None:
    """The per-tenant `token_refresh` log event and the outcome counters. Never a token."""
    logger.info("token_refresh", extra={
        "tenant_id": o.tenant_id, "outcome": o.outcome, "status": o.status, "reason": o.reason,
        "expires_at": iso(o.expires_at), "data_access_expires_at": iso(o.data_access_expires_at),
        "alerted": o.alerted, "meta_code": o.meta_code, "meta_subcode": o.meta_subcode})
    metric = {REFRESHED: "TokensRefreshed", NOT_EXTENDED: "TokensNotExtended",
              FAILED: "TokenRefreshFailures", MARKED_RECONNECT: "TokensNeedReconnect"}.get(
                  o.outcome)
    if metric:
        counters.incr(metric)
    if o.alerted:
        counters.incr("ReconnectAlertsSent")


# -- blocking steps (db: on the db threads, each with its own connection; aws: KMS) -----------
def _claim(tenant_id: str, h: Horizons | None) -> store.ClaimedCredential | None:
    with tenant_tx(tenant_id) as conn:
        return store.claim(conn, h)


def _save(claimed: store.ClaimedCredential, result: store.Result, *, keep_lease: bool) -> bool:
    with tenant_tx(claimed.tenant_id) as conn:
        return store.save_result(conn, claimed, result, keep_lease=keep_lease)


def _record_failure(claimed: store.ClaimedCredential) -> int | None:
    with tenant_tx(claimed.tenant_id) as conn:
        return store.record_failure(conn, claimed)


def _mark_notified(claimed: store.ClaimedCredential, status: str) -> bool:
    with tenant_tx(claimed.tenant_id) as conn:
        return store.mark_notified(conn, claimed, status)


def _release(claimed: store.ClaimedCredential) -> None:
    with tenant_tx(claimed.tenant_id) as conn:
        store.release(conn, claimed)


"""The OAuth callback's work, without HTTP: state -> code -> long-lived token -> stored credential.

Four steps, three Meta calls in sequence and nothing else slow:
1. consume the state once (shared.connection.oauth_state: atomic, expiry and browser binding
   checked);
2. exchange the code, with the flow's PKCE verifier, for a short-lived token, then that for a
   long-lived one;
3. `debug_token` with the app token: valid, issued to this app, whose user, which scopes, and
   the real expiry (Meta's `expires_in` is optional; `expires_at` 0 means never);
4. store it encrypted in the tenant's row-level-security context (a reconnect replaces the token
   and clears needs_reconnect).

Every way this can end is an `Outcome` carrying one of the contract's callback codes; nothing
here raises to the handler. Codes, states, cookies and tokens never reach a log line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from shared.connection import credentials
from shared.connection.oauth_state import StateRejected, consume_state, is_well_formed
from shared.meta.errors import MetaError
from shared.platform.db import tenant_tx
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings

CONNECTED = "connected"
_META_ERROR_PARAM = re.compile(r"[a-z_]{1,40}")


@dataclass(frozen=True)
class CallbackInput:
    """What Meta's redirect and the browser brought. Every field is untrusted."""

    state: str | None = field(default=None, repr=False)
    code: str | None = field(default=None, repr=False)
    error: str | None = None  # Meta's `error` parameter (access_denied when cancelled)
    bindings: tuple[str, ...] = field(default=(), repr=False)  # binding cookie values sent


@dataclass(frozen=True)
class Outcome:
    error: str | None = None  # None: connected; else a CONTRACT.md callback code
    missing: tuple[str, ...] = ()
    reason: str | None = None  # finer cause, for logs and metrics only
    tenant_id: str | None = None
    meta_user_id: str | None = None

    @property
    def success(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        return CONNECTED if self.error is None else self.error


class _Refused(Exception):
    def __init__(self, error: str, reason: str, missing: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.error, self.reason, self.missing = error, reason, tuple(missing)


@dataclass(frozen=True)
class VerifiedToken:
    access_token: str = field(repr=False)
    meta_user_id: str
    scopes: list[str]
    expires_at: datetime | None  # None: never expires
    data_access_expires_at: datetime | None


def complete_connection(request: CallbackInput, *, deadline: float | None = None) -> Outcome:
    """Run the whole callback; always returns an Outcome (logged and counted)."""
    tenant_id: str | None = None
    try:
        if request.error is not None:
            outcome = _meta_sent_error(request)
        else:
            consumed = consume_state(request.state, request.bindings)
            tenant_id = consumed.tenant_id
            outcome = _connect(tenant_id, request.code, consumed.code_verifier, deadline)
    except StateRejected as exc:
        outcome = Outcome(error="invalid_state", reason=exc.reason, tenant_id=exc.tenant_id)
    except _Refused as exc:
        outcome = Outcome(
            error=exc.error, reason=exc.reason, missing=exc.missing, tenant_id=tenant_id
        )
    except MetaError as exc:
        # Refused code, timeout, 5xx...: nothing stored, and the state stays used.
        outcome = Outcome(
            error="meta_error", reason=f"meta_{type(exc).__name__}", tenant_id=tenant_id
        )
        logger.warning(
            "oauth_meta_failure",
            extra={
                "tenant_id": tenant_id,
                "meta_code": exc.code,
                "meta_subcode": exc.subcode,
                "http_status": exc.http_status,
                "error_type": type(exc).__name__,
            },
        )
    except Exception as exc:  # noqa: BLE001 - the browser must get a redirect, never a 5xx
        # KMS or Postgres failing: the person can only retry, which meta_error tells them.
        # Only the exception's type is logged: messages could echo values.
        outcome = Outcome(error="meta_error", reason="internal_error", tenant_id=tenant_id)
        logger.error(
            "oauth_callback_failed",
            extra={"tenant_id": tenant_id, "error_type": type(exc).__name__},
        )
    _report(outcome)
    return outcome


def _meta_sent_error(request: CallbackInput) -> Outcome:
    """Meta came back without a code. The flow is over either way: burn the state if present."""
    tenant_id = None
    if is_well_formed(request.state):
        try:
            tenant_id = consume_state(request.state, request.bindings).tenant_id
        except StateRejected as exc:
            tenant_id = exc.tenant_id
    raw = request.error or ""
    reason = f"meta_{raw}" if _META_ERROR_PARAM.fullmatch(raw) else "meta_unknown_error"
    error = "access_denied" if raw == "access_denied" else "meta_error"
    return Outcome(error=error, reason=reason, tenant_id=tenant_id)


def _connect(tenant_id: str, code: str | None, verifier: str,
             deadline: float | None) -> Outcome:
    if not code or len(code) > 4096:
        raise _Refused("meta_error", "no_code")
    token = obtain_long_lived_token(code, verifier, deadline)
    with tenant_tx(tenant_id) as conn:
        credentials.save(
            conn,
            tenant_id,
            token.access_token,
            expires_at=token.expires_at,
            data_access_expires_at=token.data_access_expires_at,
            meta_user_id=token.meta_user_id,
            scopes=token.scopes,
        )
    return Outcome(tenant_id=tenant_id, meta_user_id=token.meta_user_id)


def obtain_long_lived_token(code: str, verifier: str, deadline: float | None) -> VerifiedToken:
    """The three Meta calls, in sequence, under one deadline. Raises MetaError or _Refused.
    `verifier`: the flow's PKCE verifier; Meta refuses a code another flow obtained."""
    # Local: most callbacks that fail (bad state, access_denied) never reach Meta or need httpx.
    from shared.meta.graph import GraphClient

    settings = get_settings()
    with GraphClient.for_token(None, deadline=deadline) as graph:
        short = graph.exchange_code(code, settings.meta_redirect_uri, code_verifier=verifier)
        long = graph.exchange_long_lived(short.access_token)
        info = graph.debug_token(long.access_token)
    return verify_token(long.access_token, info, long.expires_in)


def verify_token(
    access_token: str, info: dict[str, Any], expires_in: int | None, *, now: datetime | None = None
) -> VerifiedToken:
    """Check debug_token's answer against this app and the scopes the features need."""
    settings = get_settings()
    if str(info.get("app_id") or "") != settings.meta_app_id:
        raise _Refused("meta_error", "foreign_app")  # a token of another app is never stored
    if info.get("is_valid") is not True:
        raise _Refused("meta_error", "token_invalid")
    meta_user_id = str(info.get("user_id") or "")
    if not meta_user_id:
        raise _Refused("meta_error", "no_user")
    scopes = [s for s in info.get("scopes") or [] if isinstance(s, str)]
    missing = [s for s in settings.scopes if s not in scopes]
    if missing:
        raise _Refused("missing_scopes", "missing_scopes", missing)
    now = now or datetime.now(UTC)
    expires_at = _meta_time(info.get("expires_at"))
    if expires_at is _ABSENT:
        # debug_token normally says; failing that, the grant's optional expires_in.
        expires_at = now + timedelta(seconds=expires_in) if expires_in else None
    data_access = _meta_time(info.get("data_access_expires_at"))
    return VerifiedToken(
        access_token=access_token,
        meta_user_id=meta_user_id,
        scopes=scopes,
        expires_at=expires_at,
        data_access_expires_at=None if data_access is _ABSENT else data_access,
    )


_ABSENT: Any = object()


def _meta_time(value: Any) -> Any:
    """Meta's unix seconds: 0 means never (None); missing or unreadable is _ABSENT."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return _ABSENT
    return None if seconds == 0 else datetime.fromtimestamp(seconds, UTC)


def _report(outcome: Outcome) -> None:
    """The `oauth_connection` log event and the connections-by-outcome metric."""
    logger.info(
        "oauth_connection",
        extra={
            "tenant_id": outcome.tenant_id,
            "meta_user_id": outcome.meta_user_id,
            "success": outcome.success,
            "error_code": outcome.error,
            "reason": outcome.reason,
            "missing_scopes": list(outcome.missing) or None,
        },
    )
    # single_metric: its own EMF record, so the outcome dimension never sticks to the shared
    # `metrics` object that other code in this container flushes.
    with single_metric(
        name="OAuthConnections", unit=MetricUnit.Count, value=1, namespace=metrics.namespace,
        default_dimensions=metrics.default_dimensions,  # the stage
    ) as metric:
        metric.add_dimension(name="outcome", value=outcome.label)

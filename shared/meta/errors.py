"""Meta Graph errors and usage headers: pure parsing and classification, shared by both clients.

Nothing here does I/O, so the sync and async clients (shared/meta/graph.py) classify identically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.platform.errors import UpstreamError

# When Meta throttles us without saying for how long, wait this long before the next attempt.
DEFAULT_RETRY_AFTER_SECONDS = 60.0

USAGE_HEADERS = (
    "x-app-usage",
    "x-ad-account-usage",
    "x-business-use-case-usage",
    "x-fb-ads-insights-throttle",
)

# ERR: 102/190 invalid session; these 190 subcodes also show up under other codes in the wild.
_TOKEN_CODES = {102, 190}
_TOKEN_SUBCODES = {458, 459, 460, 463, 464, 467, 492}
# RL/MRL and WhatsApp error-codes.mdx. Code 4 is the app-level limit, NOT an auth problem.
_RATE_LIMIT_CODES = {4, 17, 32, 341, 613, 130429, 131056} | set(range(80000, 80015))
# ERR "wait and retry" codes plus WhatsApp's transient ones (131057 = maintenance window).
_TRANSIENT_CODES = {1, 2, 131000, 131016, 131057, 133004}


@dataclass(frozen=True)
class Usage:
    """The worst of Meta's usage headers on one response.

    regain_seconds: BUC estimated_time_to_regain_access (minutes on the wire), as seconds.
    reset_seconds: x-ad-account-usage reset_time_duration (seconds on the wire).
    """

    max_percent: float = 0.0
    regain_seconds: float = 0.0
    reset_seconds: float = 0.0
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def present(self) -> bool:
        return bool(self.raw)


def _loads(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None  # a malformed header must never break a call that otherwise worked


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def parse_usage(headers: Mapping[str, str]) -> Usage:
    """Read every usage header Meta may send; units differ per header (see RL/MRL)."""
    raw: dict[str, Any] = {}
    percents: list[float] = []
    regain: list[float] = []
    reset: list[float] = []
    for name in USAGE_HEADERS:
        data = _loads(headers.get(name))
        if data is None:
            continue
        raw[name] = data
        if name == "x-business-use-case-usage" and isinstance(data, dict):
            for entries in data.values():
                for entry in entries if isinstance(entries, list) else []:
                    if not isinstance(entry, dict):
                        continue
                    keys = ("call_count", "total_cputime", "total_time")
                    percents += [_num(entry.get(k)) for k in keys]
                    # BUC reports MINUTES to regain access.
                    regain.append(_num(entry.get("estimated_time_to_regain_access")) * 60)
        elif isinstance(data, dict):
            keys = ("call_count", "total_cputime", "total_time", "acc_id_util_pct",
                    "app_id_util_pct")
            percents += [_num(data.get(k)) for k in keys]
            if name == "x-ad-account-usage":
                # ...whereas the ad-account header reports SECONDS until its window resets.
                reset.append(_num(data.get("reset_time_duration")))
    return Usage(
        max_percent=max(percents, default=0.0),
        regain_seconds=max(regain, default=0.0),
        reset_seconds=max(reset, default=0.0),
        raw=raw,
    )


class MetaError(UpstreamError):
    """A failed Graph call. str() carries only Meta's message, never the payload or a token."""

    # False only when the request certainly never reached Meta (set by the clients for connect
    # failures and an exhausted deadline): a write that failed so was certainly not applied.
    request_sent: bool = True

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        error_type: str | None = None,
        fbtrace_id: str | None = None,
        http_status: int | None = None,
        is_transient: bool = False,
        usage: Usage | None = None,
        retry_after_seconds: float | None = None,
        user_title: str | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.error_type = error_type
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.is_transient = is_transient
        self.usage = usage or Usage()
        self.retry_after_seconds = retry_after_seconds
        self.user_title = user_title
        self.user_message = user_message

    def __str__(self) -> str:
        prefix = f"[{self.code}/{self.subcode}] " if self.subcode else f"[{self.code}] "
        return prefix + self.message if self.code is not None else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, subcode={self.subcode}, {self.message!r})"


class MetaTokenInvalid(MetaError):
    """The token is expired, revoked or malformed: the tenant must reconnect."""


class MetaPermissionDenied(MetaError):
    """The token works but lacks a permission or asset access."""


class MetaRateLimited(MetaError):
    """Throttled. Never retried in-call: the caller reschedules after retry_after_seconds."""


class MetaTransient(MetaError):
    """A hiccup at Meta or on the wire; safe to retry shortly."""


class MetaRequestError(MetaError):
    """Our request is wrong (bad parameter, unknown object, ...); retrying will not help."""


def classify(
    code: int | None, subcode: int | None, *, http_status: int | None, is_transient: bool,
    message: str = "",
) -> type[MetaError]:
    if code in _TOKEN_CODES or subcode in _TOKEN_SUBCODES:
        return MetaTokenInvalid
    if code in _RATE_LIMIT_CODES or http_status == 429:
        return MetaRateLimited
    if code == 10 or code == 3 or (code is not None and 200 <= code <= 299):
        return MetaPermissionDenied
    if code == 1 and message.startswith(("Error validating client secret",
                                         "Invalid code verifier")):
        # Meta reports a wrong app secret, and a PKCE verifier that does not match the code's
        # challenge, as code 1 ("unknown"): refusals, not hiccups.
        return MetaRequestError
    if code in _TRANSIENT_CODES or is_transient or (http_status or 0) >= 500:
        return MetaTransient
    return MetaRequestError


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def error_from_body(status: int | None, body: Any, usage: Usage | None = None) -> MetaError:
    """Build the right MetaError from an HTTP status and a decoded body (any shape)."""
    usage = usage or Usage()
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        # Not a Graph error envelope (proxy page, empty body): decide from the status only.
        cls = classify(None, None, http_status=status, is_transient=False)
        message = f"HTTP {status} without a Graph error body"
        return cls(message, http_status=status, is_transient=cls is MetaTransient, usage=usage,
                   retry_after_seconds=_retry_after(cls, usage))
    code = _int(err.get("code"))
    subcode = _int(err.get("error_subcode"))
    message = str(err.get("message") or "Graph error")
    transient_flag = bool(err.get("is_transient"))
    cls = classify(code, subcode, http_status=status, is_transient=transient_flag, message=message)
    return cls(
        message,
        code=code,
        subcode=subcode,
        error_type=err.get("type"),
        fbtrace_id=err.get("fbtrace_id"),
        http_status=status,
        is_transient=transient_flag or cls is MetaTransient,
        usage=usage,
        retry_after_seconds=_retry_after(cls, usage),
        user_title=err.get("error_user_title"),
        user_message=err.get("error_user_msg"),
    )


def _retry_after(cls: type[MetaError], usage: Usage) -> float | None:
    if cls is MetaRateLimited:
        wait = max(usage.regain_seconds, usage.reset_seconds)
        return wait if wait > 0 else DEFAULT_RETRY_AFTER_SECONDS
    return None


def transport_error(kind: str, detail: str) -> MetaTransient:
    """Timeouts and dropped connections: no Meta code, always transient."""
    return MetaTransient(f"{kind}: {detail}", is_transient=True)

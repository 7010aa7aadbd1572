"""What both Graph clients share, apart from I/O: appsecret_proof, URL building and auth, response
parsing into shared.meta.errors, retry planning, token grants, paging and batch chunks.

shared.meta.graph holds the sync and async clients built on _GraphCore.
"""

from __future__ import annotations

import hashlib
import hmac
import json as jsonlib
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.meta.errors import (
    MetaError,
    MetaRateLimited,
    MetaTransient,
    Usage,
    error_from_body,
    parse_usage,
    transport_error,
)
from shared.platform.observability import counters, logger

BATCH_LIMIT = 50  # BATCH: "limited to 50 requests per batch"
MAX_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
# Don't start an attempt with less time than this left: it could only end in a timeout.
MIN_ATTEMPT_SECONDS = 0.05
# Exceptions raised before the request left us: retrying can never duplicate a write.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Graph echoes these in paging.next URLs; we resend our own auth instead of theirs.
_AUTH_PARAMS = {"access_token", "appsecret_proof"}


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    # Building a CA bundle context costs ~50 ms; share it (it holds no credentials) so that
    # "one client per tenant call" stays cheap.
    return httpx.create_ssl_context()


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """HMAC-SHA256 hex of the token keyed by the app secret (META_API.md §4)."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class TokenGrant:
    """An /oauth/access_token answer. expires_in is None when Meta omits it (it sometimes does)."""

    access_token: str = field(repr=False)
    token_type: str = "bearer"
    expires_in: int | None = None


def next_page_params(page: Any, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """Params for the next page, or None. Stop only when paging.next is absent (PAG)."""
    paging = page.get("paging") if isinstance(page, dict) else None
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    after = (paging.get("cursors") or {}).get("after")
    if after:
        return {**params, "after": after}
    # Offset-paged edges have no cursors: take next's query but drop any auth Meta echoed in it.
    query = parse_qs(urlsplit(paging["next"]).query)
    return {k: v[-1] for k, v in query.items() if k not in _AUTH_PARAMS}


def page_items(page: Any) -> list[Any]:
    data = page.get("data") if isinstance(page, dict) else None
    return data if isinstance(data, list) else []


def batch_chunks(requests: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [requests[i : i + BATCH_LIMIT] for i in range(0, len(requests), BATCH_LIMIT)]


def decode_batch_item(item: Any, usage: Usage) -> Any:
    """One batch answer -> decoded body, or a MetaError object (returned, not raised)."""
    if item is None:
        # Meta returns null for sub-requests that did not finish in time.
        return MetaTransient("batch item did not complete", is_transient=True, usage=usage)
    status = item.get("code")
    try:
        body = jsonlib.loads(item.get("body") or "null")
    except ValueError:
        body = None
    failed = isinstance(body, dict) and "error" in body
    if isinstance(status, int) and status < 400 and not failed:
        return body
    item_usage = parse_usage({h.get("name", "").lower(): h.get("value", "")
                              for h in item.get("headers") or [] if isinstance(h, dict)})
    return error_from_body(status, body, item_usage if item_usage.present else usage)


class GraphCore:
    """Everything both clients share; no I/O happens here."""

    def __init__(
        self,
        access_token: str | None,
        *,
        app_secret: str,
        base_url: str,
        version: str,
        timeout: float,
        deadline: float | None = None,
        app_id: str | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
    ) -> None:
        self._token = access_token
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self._app_secret = app_secret
        self._app_id = app_id
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.timeout = timeout
        self.deadline = deadline
        self.last_usage = Usage()
        self.request_count = 0

    @classmethod
    def _settings_kwargs(cls, deadline: float | None) -> dict[str, Any]:
        from shared.platform.settings import get_settings

        s = get_settings()
        return {
            "app_secret": s.app_secret(),
            "base_url": s.meta_graph_url,
            "version": s.meta_graph_api_version,
            "timeout": s.meta_timeout_seconds,
            "deadline": deadline,
            "app_id": s.meta_app_id or None,
        }

    def __repr__(self) -> str:  # never show the token
        return f"{type(self).__name__}(version={self.version!r}, requests={self.request_count})"

    # -- request building -------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.base_url}/{self.version}/{path.lstrip('/')}"

    def app_token(self) -> str:
        if not self._app_id:
            raise ValueError("app_id is required for app-token calls")
        return f"{self._app_id}|{self._app_secret}"

    def auth(self, token: str | None, params: Mapping[str, Any] | None) -> tuple[dict, dict]:
        """(headers, params) for a call made with `token` (user or app token)."""
        headers: dict[str, str] = {}
        out = dict(params or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
            if "|" not in token:  # app tokens are "id|secret" and need no proof
                out["appsecret_proof"] = appsecret_proof(token, self._app_secret)
        return headers, out

    # -- response handling ------------------------------------------------------------------
    def handle(self, response: httpx.Response) -> Any:
        usage = parse_usage(response.headers)
        self.last_usage = usage
        counters.incr("MetaApiCalls")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or (isinstance(body, dict) and "error" in body):
            error = error_from_body(response.status_code, body, usage)
            if isinstance(error, MetaTransient | MetaRateLimited):
                # Meta's side failing or throttling us: what the failure-rate alarm watches.
                counters.incr("MetaApiFailures")
            raise error
        return body

    def transport_failure(self, exc: httpx.TransportError) -> MetaTransient:
        counters.incr("MetaApiCalls")
        counters.incr("MetaApiFailures")
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
        # The exception text is httpx's own (no URL), but keep only its class to be safe.
        error = transport_error(kind, type(exc).__name__)
        # Only a request that never left us is certainly unseen by Meta; a timeout or a dropped
        # connection after sending is ambiguous (a send may have been accepted).
        error.request_sent = not isinstance(exc, NOT_SENT)
        return error

    # -- retry planning ---------------------------------------------------------------------
    def attempt_timeout(self, last_error: MetaError | None) -> float:
        if self.deadline is None:
            return self.timeout
        remaining = self.deadline - time.monotonic()
        if remaining < MIN_ATTEMPT_SECONDS:
            if last_error is not None:
                raise last_error
            error = MetaTransient("deadline reached before the call", is_transient=True)
            error.request_sent = False
            raise error
        return min(self.timeout, remaining)

    def retry_delay(self, error: MetaError, attempt: int, may_retry: bool) -> float | None:
        """Seconds to wait before attempt+1, or None to give up and raise `error`."""
        if not may_retry or not isinstance(error, MetaTransient):
            return None
        if attempt + 1 >= self.max_attempts:
            return None
        ceiling = min(BACKOFF_CAP_SECONDS, self.backoff_base * 2**attempt)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto
        late = time.monotonic() + delay + MIN_ATTEMPT_SECONDS
        if self.deadline is not None and late > self.deadline:
            return None  # never sleep past the deadline
        logger.warning("graph retry", extra={"meta_code": error.code, "attempt": attempt + 1,
                                             "delay_s": round(delay, 3)})
        return delay

    @staticmethod
    def batch_is_idempotent(chunk: list[dict[str, Any]]) -> bool:
        return all(str(r.get("method", "GET")).upper() == "GET" for r in chunk)

    @staticmethod
    def grant(body: Any) -> TokenGrant:
        expires = body.get("expires_in") if isinstance(body, dict) else None
        return TokenGrant(
            access_token=body["access_token"],
            token_type=body.get("token_type", "bearer"),
            expires_in=int(expires) if expires is not None else None,
        )



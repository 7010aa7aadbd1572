"""Meta Graph API client on httpx: one client per tenant call, sync and async flavours.

Both clients share GraphCore (shared.meta.graph_core: URL building, auth, parsing, retry
planning); only the I/O loop differs. The token travels in the Authorization header, never in a
URL, and every user-token call carries appsecret_proof. Errors become the classes in
shared/meta/errors.py.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Self

import httpx

from shared.meta.errors import (
    MetaError,
)
from shared.meta.graph_core import (
    BACKOFF_BASE_SECONDS,
    MAX_ATTEMPTS,
    NOT_SENT,
    GraphCore,
    TokenGrant,
    batch_chunks,
    decode_batch_item,
    next_page_params,
    page_items,
    tls_context,
)

_SELF = object()  # "use the client's own token"


class GraphClient(GraphCore):
    """Blocking client. Use as a context manager so the connection pool is closed."""

    def __init__(
        self,
        access_token: str | None,
        *,
        app_secret: str,
        base_url: str,
        version: str,
        timeout: float,
        deadline: float | None = None,
        transport: httpx.BaseTransport | None = None,
        app_id: str | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
    ) -> None:
        super().__init__(access_token, app_secret=app_secret, base_url=base_url, version=version,
                         timeout=timeout, deadline=deadline, app_id=app_id,
                         max_attempts=max_attempts, backoff_base=backoff_base)
        self._http = httpx.Client(timeout=timeout, transport=transport, verify=tls_context())

    @classmethod
    def for_token(cls, token: str | None, deadline: float | None = None,
                  **options: Any) -> GraphClient:
        """A client from settings; `options` override constructor arguments (max_attempts...)."""
        return cls(token, **{**cls._settings_kwargs(deadline), **options})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, url: str, *, token: Any = _SELF, params=None, data=None,
              json=None, idempotent: bool | None = None, retry: bool = True) -> Any:
        token = self._token if token is _SELF else token
        headers, params = self.auth(token, params)
        idempotent = method == "GET" if idempotent is None else idempotent
        last: MetaError | None = None
        attempt = 0
        while True:
            timeout = self.attempt_timeout(last)
            self.request_count += 1
            try:
                response = self._http.request(method, url, params=params, data=data, json=json,
                                              headers=headers, timeout=timeout)
                return self.handle(response)
            except httpx.TransportError as exc:
                last = self.transport_failure(exc)
                may_retry = idempotent or isinstance(exc, NOT_SENT)
            except MetaError as exc:
                last, may_retry = exc, True
            delay = self.retry_delay(last, attempt, retry and may_retry)
            if delay is None:
                raise last
            time.sleep(delay)
            attempt += 1

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._send("GET", self.url(path), params=params)

    def post(self, path: str, data: Mapping[str, Any] | None = None, *, json: Any = None,
             idempotent: bool = False) -> Any:
        """POST; ambiguous failures (sent, no answer) are retried only when idempotent=True."""
        return self._send("POST", self.url(path), data=data, json=json, idempotent=idempotent)

    def paginate(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        current: dict[str, Any] | None = dict(params or {})
        while current is not None:
            page = self.get(path, current)
            yield from page_items(page)
            current = next_page_params(page, current)

    def batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        """Run sub-requests in chunks of 50; each result is decoded data or a MetaError."""
        results: list[Any] = []
        for chunk in batch_chunks(requests):
            items = self._send("POST", self.url(""), data={"batch": jsonlib.dumps(chunk)},
                               idempotent=self.batch_is_idempotent(chunk))
            results += [decode_batch_item(item, self.last_usage) for item in items]
        return results

    # -- app-token calls: secrets and codes only ever travel in POST bodies ------------------
    def exchange_code(self, code: str, redirect_uri: str, *,
                      code_verifier: str | None = None) -> TokenGrant:
        # A code is single-use: a blind retry would only turn a hiccup into "code has been used".
        body = {"client_id": self._app_id, "client_secret": self._app_secret,
                "redirect_uri": redirect_uri, "code": code}
        if code_verifier:
            body["code_verifier"] = code_verifier  # PKCE: in the body, never in a URL
        return self.grant(self._send("POST", self.url("oauth/access_token"), token=None, data=body,
                                     retry=False))

    def exchange_long_lived(self, token: str) -> TokenGrant:
        body = {"grant_type": "fb_exchange_token", "client_id": self._app_id,
                "client_secret": self._app_secret, "fb_exchange_token": token}
        return self.grant(self._send("POST", self.url("oauth/access_token"), token=None, data=body,
                                     idempotent=True))

    def debug_token(self, input_token: str) -> dict[str, Any]:
        # Graph's method override lets a read travel as POST, keeping input_token out of URLs.
        body = self._send("POST", self.url("debug_token"), token=self.app_token(),
                          data={"input_token": input_token, "method": "GET"}, idempotent=True)
        return body.get("data", {}) if isinstance(body, dict) else {}


class AsyncGraphClient(GraphCore):
    """Same API as GraphClient on httpx.AsyncClient, for jobs fanning out many calls."""

    def __init__(
        self,
        access_token: str | None,
        *,
        app_secret: str,
        base_url: str,
        version: str,
        timeout: float,
        deadline: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        app_id: str | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(access_token, app_secret=app_secret, base_url=base_url, version=version,
                         timeout=timeout, deadline=deadline, app_id=app_id,
                         max_attempts=max_attempts, backoff_base=backoff_base)
        # limits: connection pool size, for fan-outs wider than httpx's default of 100.
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport,
                                       verify=tls_context(),
                                       **({"limits": limits} if limits else {}))

    @classmethod
    def for_token(cls, token: str | None, deadline: float | None = None,
                  **options: Any) -> AsyncGraphClient:
        """A client from settings; `options` override constructor arguments (max_attempts,
        limits...)."""
        return cls(token, **{**cls._settings_kwargs(deadline), **options})

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, url: str, *, token: Any = _SELF, params=None, data=None,
                    json=None, idempotent: bool | None = None, retry: bool = True) -> Any:
        token = self._token if token is _SELF else token
        headers, params = self.auth(token, params)
        idempotent = method == "GET" if idempotent is None else idempotent
        last: MetaError | None = None
        attempt = 0
        while True:
            timeout = self.attempt_timeout(last)
            self.request_count += 1
            try:
                response = await self._http.request(method, url, params=params, data=data,
                                                     json=json, headers=headers, timeout=timeout)
                return self.handle(response)
            except httpx.TransportError as exc:
                last = self.transport_failure(exc)
                may_retry = idempotent or isinstance(exc, NOT_SENT)
            except MetaError as exc:
                last, may_retry = exc, True
            delay = self.retry_delay(last, attempt, retry and may_retry)
            if delay is None:
                raise last
            await asyncio.sleep(delay)
            attempt += 1

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self._send("GET", self.url(path), params=params)

    async def post(self, path: str, data: Mapping[str, Any] | None = None, *, json: Any = None,
                   idempotent: bool = False) -> Any:
        return await self._send("POST", self.url(path), data=data, json=json,
                                idempotent=idempotent)

    async def paginate(self, path: str, params: Mapping[str, Any] | None = None
                       ) -> AsyncIterator[Any]:
        current: dict[str, Any] | None = dict(params or {})
        while current is not None:
            page = await self.get(path, current)
            for item in page_items(page):
                yield item
            current = next_page_params(page, current)

    async def batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        results: list[Any] = []
        for chunk in batch_chunks(requests):
            items = await self._send("POST", self.url(""), data={"batch": jsonlib.dumps(chunk)},
                                     idempotent=self.batch_is_idempotent(chunk))
            results += [decode_batch_item(item, self.last_usage) for item in items]
        return results

    async def exchange_code(self, code: str, redirect_uri: str, *,
                            code_verifier: str | None = None) -> TokenGrant:
        body = {"client_id": self._app_id, "client_secret": self._app_secret,
                "redirect_uri": redirect_uri, "code": code}
        if code_verifier:
            body["code_verifier"] = code_verifier
        return self.grant(await self._send("POST", self.url("oauth/access_token"), token=None,
                                           data=body, retry=False))

    async def exchange_long_lived(self, token: str) -> TokenGrant:
        body = {"grant_type": "fb_exchange_token", "client_id": self._app_id,
                "client_secret": self._app_secret, "fb_exchange_token": token}
        return self.grant(await self._send("POST", self.url("oauth/access_token"), token=None,
                                           data=body, idempotent=True))

    async def debug_token(self, input_token: str) -> dict[str, Any]:
        body = await self._send("POST", self.url("debug_token"), token=self.app_token(),
                                data={"input_token": input_token, "method": "GET"},
                                idempotent=True)
        return body.get("data", {}) if isinstance(body, dict) else {}

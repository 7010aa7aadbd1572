"""A small client for the sandbox's control API (/__sandbox/...), for tests and the devstack."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from sandbox.world import SEED_APP_ID


class SandboxControl:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url + "/__sandbox", timeout=timeout)

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    # -- world ------------------------------------------------------------------------------
    def reset(self) -> None:
        self._call("POST", "/reset")

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")

    def advance_clock(self, seconds: float) -> float:
        return self._call("POST", "/clock", {"advance_seconds": seconds})["now"]

    def set_app_usage(self, call_count: int, total_cputime: int = 0, total_time: int = 0) -> None:
        self._call("POST", "/usage", {"call_count": call_count, "total_cputime": total_cputime,
                                      "total_time": total_time})

    # -- latency and faults -----------------------------------------------------------------
    def set_latency(self, path: str, ms: float, method: str | None = None) -> None:
        self._call("POST", "/latency", {"path": path, "ms": ms, "method": method})

    def clear_latency(self) -> None:
        self._call("DELETE", "/latency")

    def inject_fault(self, kind: str, path: str = ".*", *, count: int = 1,
                     method: str | None = None, **opts: Any) -> None:
        """kind: transient | timeout | drop | rate_limit | token_error | error.
        opts: code, subcode, status, message, seconds (timeout), regain_minutes,
        reset_seconds, object_id (rate_limit)."""
        self._call("POST", "/faults", {"kind": kind, "path": path, "count": count,
                                       "method": method, **opts})

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    # -- request log ------------------------------------------------------------------------
    def requests(self, path_contains: str | None = None) -> list[dict[str, Any]]:
        log = self._call("GET", "/requests")["requests"]
        return [r for r in log if path_contains is None or path_contains in r["path"]]

    def request_counts(self) -> dict[str, int]:
        return self._call("GET", "/requests")["counts"]

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    # -- oauth area -------------------------------------------------------------------------
    def issue_token(self, user_id: str = "10001", *, app_id: str = SEED_APP_ID,
                    scopes: list[str] | None = None, kind: str = "long",
                    expires_at: int | None = None,
                    data_access_expires_at: int | None = None) -> str:
        body: dict[str, Any] = {"user_id": user_id, "app_id": app_id, "kind": kind}
        for key, value in (("scopes", scopes), ("expires_at", expires_at),
                           ("data_access_expires_at", data_access_expires_at)):
            if value is not None:
                body[key] = value
        return self._call("POST", "/tokens", body)["access_token"]

    def revoke_token(self, token: str, subcode: int = 460) -> None:
        self._call("POST", "/tokens/revoke", {"access_token": token, "subcode": subcode})

    def exchange_counts(self) -> dict[str, int]:
        return self._call("GET", "/exchanges")["counts"]

    def exchange_count(self, token: str) -> int:
        return self.exchange_counts().get(token, 0)

    def configure_oauth(self, **settings: bool) -> dict[str, Any]:
        """include_expires_in, refuse_exchange, extend_on_exchange."""
        return self._call("POST", "/oauth/config", settings)["config"]

    def configure_app(self, app_id: str = SEED_APP_ID, *,
                      require_appsecret_proof: bool | None = None,
                      redirect_uris: list[str] | None = None) -> None:
        body: dict[str, Any] = {"redirect_uris": redirect_uris or []}
        if require_appsecret_proof is not None:
            body["require_appsecret_proof"] = require_appsecret_proof
        self._call("POST", f"/apps/{app_id}", body)

    def consent(self, *, redirect_uri: str, state: str, scopes: list[str],
                granted: list[str] | None = None, decision: str = "allow",
                user: str = "10001", client_id: str = SEED_APP_ID,
                version: str = "v26.0", extra: dict[str, str] | None = None
                ) -> dict[str, str]:
        """Drive the consent shortcut as a person would; returns the redirect's query params
        (code/state or error/...). `granted=None` grants everything requested; `extra` adds
        dialog parameters (e.g. code_challenge)."""
        form: dict[str, Any] = {"client_id": client_id, "redirect_uri": redirect_uri,
                                "state": state, "scope": ",".join(scopes), "decision": decision,
                                "user": user, **(extra or {})}
        if granted is not None:
            form["granted"] = ",".join(granted)
        response = httpx.post(f"{self.url}/{version}/dialog/oauth/decide", data=form,
                              timeout=self._http.timeout)
        if response.status_code != 302:
            raise RuntimeError(f"consent refused: HTTP {response.status_code}")
        query = urlsplit(response.headers["location"]).query
        return {k: v[-1] for k, v in parse_qs(query).items()}

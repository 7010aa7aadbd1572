"""Fixtures for the OAuth connect flow: a browser that goes through /url, Meta's consent page
(the sandbox, over HTTP) and the callback, plus views of what ended up in DynamoDB, Postgres,
the logs and the sandbox's request log.

Import the fixtures by name into a test module (see tests/test_oauth_callback.py).
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import boto3
import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from sandbox.control import SandboxControl
from shared.connection.oauth_state import BINDING_COOKIE, sha256_hex
from shared.platform.observability import logger as app_logger
from shared.platform.settings import get_settings


@dataclass
class Flow:
    tenant_id: str
    state: str
    dialog_url: str
    binding: str  # the binding cookie value /url set in this browser


def binding_from(response: httpx.Response) -> str:
    for header in response.headers.get_list("set-cookie"):
        match = re.match(rf"\s*{BINDING_COOKIE}=([^;]*)", header)
        if match:
            return match.group(1)
    raise AssertionError("no binding cookie set")


def _form(html: str) -> tuple[str, list[tuple[str, str]]]:
    """The consent form's action and the fields a browser submits (hidden + ticked boxes)."""
    action = re.search(r'<form[^>]*action="([^"]*)"', html).group(1)
    fields = []
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and ('type="hidden"' in tag or "checked" in tag):
            fields.append((name.group(1), unescape(value.group(1)) if value else ""))
    return action, fields


class Browser:
    """One person's browser: signed in to the CRM, visiting Meta's dialog, then the callback.

    The binding cookie is Secure, so a real browser only sends it over https (or localhost);
    httpx's jar would refuse it on http://127.0.0.1, hence the explicit Cookie header.
    """

    def __init__(self, api, sandbox_url: str):
        self.api = api
        self.sandbox_url = sandbox_url
        self.http = httpx.Client(timeout=30, follow_redirects=False)

    def start(self, tenant_id: str) -> Flow:
        response = self.api.get("/crm/auth/meta/url", tenant_id=tenant_id, role="admin")
        assert response.status_code == 200, response.text
        body = response.json()
        return Flow(tenant_id, body["state"], body["url"], binding_from(response))

    def consent(self, flow: Flow, *, decline: tuple[str, ...] = (), cancel: bool = False,
                user: str = "10001", overrides: dict[str, str] | None = None) -> str:
        """Open the dialog page, untick `decline`, press Continue (or Cancel); returns the
        callback URL Meta redirects to, without its #_=_ fragment (browsers don't send it)."""
        page = self.http.get(flow.dialog_url)
        assert page.status_code == 200, page.text
        action, fields = _form(page.text)
        fields = [(k, v) for k, v in fields if not (k == "granted" and v in decline)]
        fields += [("user", user), ("decision", "cancel" if cancel else "allow")]
        fields += list((overrides or {}).items())
        answer = self.http.post(urljoin(self.sandbox_url, action), content=urlencode(fields),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 302, answer.text
        return answer.headers["location"].split("#", 1)[0]

    def callback(self, url: str, *, bindings: tuple[str, ...] | None = (),
                 headers: dict[str, str] | None = None) -> httpx.Response:
        """GET the callback URL on the local API with the given binding cookie value(s)."""
        all_headers = dict(headers or {})
        if bindings:
            all_headers["Cookie"] = "; ".join(f"{BINDING_COOKIE}={b}" for b in bindings)
        return self.http.get(url, headers=all_headers)

    def connect(self, flow: Flow, **consent) -> httpx.Response:
        return self.callback(self.consent(flow, **consent), bindings=(flow.binding,))

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser(api, stack) -> Iterator[Browser]:
    b = Browser(api, stack.sandbox.url)
    yield b
    b.close()


@pytest.fixture(scope="session")
def _meta_session(stack) -> Iterator[SandboxControl]:
    with SandboxControl(stack.sandbox.url) as control:
        yield control


@pytest.fixture
def meta(_meta_session) -> Iterator[SandboxControl]:
    """The stack's Meta sandbox; faults, latency and OAuth knobs this test set are undone."""
    yield _meta_session
    _meta_session.clear_faults()
    _meta_session.clear_latency()
    _meta_session.configure_oauth(include_expires_in=True, refuse_exchange=False,
                                  extend_on_exchange=True)


class MetaLog:
    """The sandbox's request log from the moment the fixture was created."""

    def __init__(self, control: SandboxControl):
        self.control = control
        self.start = len(control.requests())

    def calls(self) -> list[dict]:
        return [r for r in self.control.requests()[self.start:]
                if not r["path"].endswith("/dialog/oauth")
                and not r["path"].endswith("/dialog/oauth/decide")]


def call_kind(entry: dict) -> str:
    if entry["path"].endswith("/oauth/access_token"):
        return "long_lived" if "fb_exchange_token" in entry["body_keys"] else "code"
    return entry["path"].rsplit("/", 1)[-1]


@pytest.fixture
def meta_log(meta) -> MetaLog:
    return MetaLog(meta)


@pytest.fixture
def owner_db(stack) -> Iterator[psycopg.Connection]:
    """The schema owner (RLS does not apply to it): sees every tenant's rows, to check them."""
    with psycopg.connect(stack.database.owner_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def credential_rows(conn: psycopg.Connection, tenant_id: str) -> list[dict]:
    return conn.execute("SELECT * FROM credentials WHERE tenant_id = %s", (tenant_id,)).fetchall()


def state_item(state: str) -> dict | None:
    item = boto3.client("dynamodb").get_item(TableName=get_settings().oauth_state_table,
                                             Key={"state_hash": {"S": sha256_hex(state)}})
    return item.get("Item")


def result(response: httpx.Response) -> dict[str, str]:
    """The callback's redirect, checked to stay on FRONTEND_URL; returns its query."""
    assert response.status_code == 302, (response.status_code, response.text)
    location = response.headers["location"]
    frontend = get_settings().frontend_url
    assert location.startswith(f"{frontend}/crm/marketing?"), location
    return {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def meta_timeout():
    """Set META_TIMEOUT_SECONDS for the functions served by the local API (same process)."""
    saved = os.environ.get("META_TIMEOUT_SECONDS")

    def set_timeout(seconds: float) -> None:
        os.environ["META_TIMEOUT_SECONDS"] = str(seconds)
        get_settings.cache_clear()

    yield set_timeout
    if saved is None:
        os.environ.pop("META_TIMEOUT_SECONDS", None)
    else:
        os.environ["META_TIMEOUT_SECONDS"] = saved
    get_settings.cache_clear()


@pytest.fixture
def app_logs() -> Iterator[io.StringIO]:
    """Every line our Powertools logger writes (formatted exactly as it goes to stdout), and
    every other library's records at INFO and above (boto3, httpx, psycopg...), in one buffer."""
    buffer = io.StringIO()
    ours = logging.StreamHandler(buffer)
    ours.setFormatter(app_logger.registered_formatter)
    others = logging.StreamHandler(buffer)
    others.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    others.setLevel(logging.INFO)
    # The local API's werkzeug access log prints request lines (API Gateway's access log is
    # configured separately and does not log query strings); it is not our functions' output.
    others.addFilter(lambda record: not record.name.startswith("werkzeug"))
    app_logger.addHandler(ours)
    root = logging.getLogger()
    root.addHandler(others)
    try:
        yield buffer
    finally:
        app_logger.removeHandler(ours)
        root.removeHandler(others)

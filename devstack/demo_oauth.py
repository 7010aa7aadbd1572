"""Demo step: an admin connects Meta. The dialog URL, the sandbox's consent page, the callback
with the browser-binding cookie, and the stored connection's status (never the token)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import psycopg
from psycopg.rows import dict_row

from shared.connection.oauth_state import BINDING_COOKIE


def _binding(response: httpx.Response) -> str:
    for header in response.headers.get_list("set-cookie"):
        match = re.match(rf"\s*{BINDING_COOKIE}=([^;]*)", header)
        if match:
            return match.group(1)
    raise RuntimeError("GET /crm/auth/meta/url set no binding cookie")


def _consent_form(html: str) -> tuple[str, list[tuple[str, str]], list[str]]:
    """What a browser would submit: hidden fields and ticked permission boxes."""
    action = re.search(r'<form[^>]*action="([^"]*)"', html).group(1)
    fields, scopes = [], []
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and ('type="hidden"' in tag or "checked" in tag):
            fields.append((name.group(1), unescape(value.group(1)) if value else ""))
            if name.group(1) == "granted":
                scopes.append(fields[-1][1])
    return action, fields, scopes


def _stored_connection(ctx) -> dict | None:
    with psycopg.connect(ctx.stack.database.owner_dsn, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT status, expires_at, data_access_expires_at, scopes, meta_user_id, updated_at"
            " FROM credentials WHERE tenant_id = %s AND name = 'META_USER_LONG_TOKEN'",
            (ctx.tenant_id,),
        ).fetchone()


def run(ctx) -> None:
    # 1. The CRM frontend asks for the dialog URL (admin); the API also sets the binding cookie.
    response = ctx.http.get("/crm/auth/meta/url", headers=ctx.headers("admin"))
    response.raise_for_status()
    body = response.json()
    binding = _binding(response)
    ctx.data["dialog_url"] = body["url"]
    ctx.say(
        "GET /crm/auth/meta/url (admin)",
        f"status {response.status_code}; dialog URL:\n  {body['url'][:120]}...\n"
        f"  state stored in DynamoDB (hash only), browser-binding cookie set (HttpOnly, "
        f"Secure, SameSite=Lax)",
    )

    # 2. The browser opens Meta's consent page (the sandbox) and presses Continue.
    with httpx.Client(timeout=30, follow_redirects=False) as browser:
        page = browser.get(body["url"])
        page.raise_for_status()
        action, fields, scopes = _consent_form(page.text)
        fields += [("user", "10001"), ("decision", "allow")]
        answer = browser.post(
            urljoin(ctx.stack.sandbox.url, action),
            content=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    callback_url = answer.headers["location"].split("#", 1)[0]
    ctx.say(
        "Meta consent page (sandbox): Continue as Ana Demo",
        f"granted: {', '.join(scopes)}\n"
        f"  Meta redirects the browser to {urlsplit(callback_url).path}?code=...&state=...",
    )

    # 3. The browser follows the redirect to our callback, with its binding cookie.
    callback = ctx.http.get(callback_url, headers={"Cookie": f"{BINDING_COOKIE}={binding}"})
    location = callback.headers.get("location", "")
    outcome = {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}
    ctx.data["meta_connected"] = outcome.get("success") == "connected"
    ctx.say(
        "GET /crm/auth/meta/callback (as Meta redirects the browser)",
        f"status {callback.status_code} -> {location}\n"
        "  3 Meta calls: code -> short-lived token -> long-lived token -> debug_token;\n"
        "  token encrypted (KMS envelope) into credentials under the tenant's RLS context",
    )

    # 4. The connection's health, never the token.
    status = ctx.http.get("/crm/marketing/token-status", headers=ctx.headers("member"))
    if status.status_code == 200:
        detail = status.json()
        source = "GET /crm/marketing/token-status (member)"
    else:
        row = _stored_connection(ctx) or {}
        detail = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
        source = "credentials row (token-status route not deployed yet)"
    ctx.data["meta_user_id"] = detail.get("meta_user_id")
    lines = "\n".join(f"  {key}: {value}" for key, value in detail.items())
    ctx.say(f"Stored connection, from {source}", lines)

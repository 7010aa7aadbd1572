"""OAuth area: login dialog, code and token exchange, debug_token, /me (META_API.md §1-§4).

PKCE (RFC 7636) as Meta is observed to apply it to the code flow: a dialog opened with a
`code_challenge` binds its code to that challenge, and the code exchange then needs the matching
`code_verifier` (S256 or plain), refusing a missing or wrong one with Meta's "Invalid code
verifier" error; a code issued without a challenge is exchanged without a verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Response

from sandbox.core import Area, Ctx, GraphError, json_response, token_error
from sandbox.world import CODE_TTL_SECONDS, SEED_APP_ID, App, AuthCode, Token, World

area = Area("oauth")

DECIDE_PATH = "/dialog/oauth/decide"
# Meta's login always includes the basic profile, whatever the app asked for.
IMPLICIT_SCOPES = ("public_profile",)
APPROVE = {"allow", "approve", "continue"}
CANCEL = {"cancel", "deny"}
# RFC 7636 §4.1/§4.2: 43-128 characters of [A-Za-z0-9-._~] (a challenge has the same shape).
_PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
PKCE_METHODS = {"S256", "plain"}
INVALID_VERIFIER = ("Invalid code verifier. Code verifier should be a cryptographically random "
                    "string using the characters A-Z, a-z, 0-9, and the punctuation characters "
                    "-._~ (hyphen, period, underscore, and tilde), between 43 and 128 characters "
                    "long.")


def _scopes(raw: str) -> list[str]:
    # MF: "a comma or space separated list of Permissions"
    return [s for s in re.split(r"[,\s]+", raw or "") if s]


def _error_page(title: str, message: str) -> Response:
    html = (f"<!doctype html><html><head><title>{escape(title)}</title></head><body>"
            f'<div data-testid="dialog-error"><h1>{escape(title)}</h1><p>{escape(message)}</p>'
            "</div></body></html>")
    return Response(html, status=400, content_type="text/html; charset=utf-8")


def _check_client(ctx: Ctx, client_id: str, redirect_uri: str) -> App | Response:
    app = ctx.world.apps.get(client_id)
    if app is None:
        return _error_page("Invalid App ID", "The provided app ID does not look like a valid "
                           "app ID.")
    if not redirect_uri or not app.allows_redirect(redirect_uri):
        return _error_page("URL Blocked", "This redirect failed because the redirect URI is not "
                           "whitelisted in the app's Client OAuth Settings. Make sure Client and "
                           "Web OAuth Login are on and add all your app domains as Valid OAuth "
                           "Redirect URIs.")
    return app


@area.route("GET", "/dialog/oauth", auth="none")
def dialog(ctx: Ctx) -> Response:
    p = ctx.params
    checked = _check_client(ctx, p.get("client_id", ""), p.get("redirect_uri", ""))
    if isinstance(checked, Response):
        return checked
    problem = _pkce_problem(p.get("code_challenge", ""), p.get("code_challenge_method", ""))
    if problem:
        return _error_page("Invalid code challenge", problem)
    requested = _scopes(p.get("scope", "")) or list(IMPLICIT_SCOPES)
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{escape(p.get(k, ""))}">'
        for k in ("client_id", "redirect_uri", "state", "response_type", "auth_type", "scope",
                  "code_challenge", "code_challenge_method"))
    boxes = "".join(
        f'<li><label><input type="checkbox" name="granted" value="{escape(s)}" checked '
        f'data-testid="scope-{escape(s)}"> {escape(s)}</label></li>' for s in requested)
    users = "".join(f'<option value="{u.id}">{escape(u.name)}</option>'
                    for u in ctx.world.users.values())
    html = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Log in with Facebook (sandbox)</title></head>
<body>
<main data-testid="consent-dialog">
  <h1>{escape(checked.name)} is requesting access to:</h1>
  <form method="post" action="/{ctx.version}{DECIDE_PATH}">
    {hidden}
    <input type="hidden" name="consent_form" value="1">
    <label>Continue as <select name="user" data-testid="consent-user">{users}</select></label>
    <ul>{boxes}</ul>
    <button type="submit" name="decision" value="allow" data-testid="consent-approve">
      Continue</button>
    <button type="submit" name="decision" value="cancel" data-testid="consent-cancel">
      Cancel</button>
  </form>
</main>
</body></html>"""
    return Response(html, content_type="text/html; charset=utf-8")


@area.route("POST", DECIDE_PATH, auth="none")
def decide(ctx: Ctx) -> Response:
    """The dialog's form target; tests may also POST here directly with httpx."""
    p = ctx.params
    client_id, redirect_uri = p.get("client_id", ""), p.get("redirect_uri", "")
    checked = _check_client(ctx, client_id, redirect_uri)
    if isinstance(checked, Response):
        return checked
    decision = p.get("decision", "").lower()
    state = p.get("state", "")
    sep = "&" if "?" in redirect_uri else "?"
    if decision in CANCEL:
        query = {"error": "access_denied", "error_code": "200",
                 "error_description": "Permissions error", "error_reason": "user_denied",
                 "state": state}
        return _redirect(f"{redirect_uri}{sep}{urlencode(query)}#_=_")
    if decision not in APPROVE:
        return _error_page("Invalid decision", f"Unknown decision {decision!r}.")
    user_id = p.get("user") or "10001"
    if user_id not in ctx.world.users:
        return _error_page("Unknown user", f"No sandbox user {user_id!r}.")
    requested = _scopes(p.get("scope", "")) or list(IMPLICIT_SCOPES)
    # The HTML form sends one "granted" field per ticked box; the shortcut may send a list.
    granted_raw = ctx.param_list("granted")
    # An unticked box sends nothing, so from the HTML form "no granted field" means none granted;
    # from the shortcut it means "everything requested".
    from_form = p.get("consent_form") == "1"
    granted_in = ([s for g in granted_raw for s in _scopes(g)] if granted_raw or from_form
                  else requested)
    granted = [s for s in requested if s in granted_in]
    declined = [s for s in requested if s not in granted]
    for implicit in IMPLICIT_SCOPES:
        if implicit not in granted:
            granted.insert(0, implicit)
            declined = [s for s in declined if s != implicit]
    challenge = p.get("code_challenge") or None
    problem = _pkce_problem(challenge or "", p.get("code_challenge_method", ""))
    if problem:
        return _error_page("Invalid code challenge", problem)
    code = ctx.world.issue_code(client_id, redirect_uri, user_id, granted, declined,
                                code_challenge=challenge,
                                code_challenge_method=p.get("code_challenge_method") or "plain")
    _remember_overrides(ctx, code.value)
    query = {"code": code.value, "state": state}
    if "granted_scopes" in p.get("response_type", ""):
        query["granted_scopes"] = ",".join(granted)
    return _redirect(f"{redirect_uri}{sep}{urlencode(query)}#_=_")


def _redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location})


def _pkce_problem(challenge: str, method: str) -> str | None:
    if not challenge:
        return "code_challenge_method without code_challenge" if method else None
    if method and method not in PKCE_METHODS:
        return f"Unsupported code_challenge_method {method!r}."
    if not _PKCE_VALUE.fullmatch(challenge):
        return "code_challenge must be 43-128 characters of A-Z, a-z, 0-9 and -._~"
    return None


def _verifier_matches(code: AuthCode, verifier: str) -> bool:
    if not _PKCE_VALUE.fullmatch(verifier):
        return False
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        expected = verifier
    return hmac.compare_digest(expected, code.code_challenge or "")


def _client(ctx: Ctx) -> App:
    p = ctx.params
    app = ctx.world.apps.get(p.get("client_id", ""))
    if app is None:
        raise GraphError(101, "Error validating application. Invalid application ID.")
    if not hmac.compare_digest(app.secret, p.get("client_secret", "")):
        # Observed from Meta as code 1 (not 100); shared/meta/errors.py treats it as non-transient.
        raise GraphError(1, "Error validating client secret.")
    return app


def _grant(ctx: Ctx, token: Token) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": token.value, "token_type": "bearer"}
    if ctx.world.oauth.include_expires_in and token.expires_at:
        body["expires_in"] = max(0, int(token.expires_at - ctx.world.now()))
    return body


@area.route("GET|POST", "/oauth/access_token", auth="none")
def access_token(ctx: Ctx) -> dict[str, Any]:
    p = ctx.params
    world = ctx.world
    if p.get("grant_type") == "fb_exchange_token":
        return _exchange_long_lived(ctx, _client(ctx), p.get("fb_exchange_token", ""))
    if "code" not in p:
        raise GraphError(100, "Missing authorization code")
    app = _client(ctx)
    with world.lock:
        code = world.codes.get(p["code"])
        if code is None or code.app_id != app.id:
            raise GraphError(100, "Invalid verification code format.", subcode=36008)
        if code.used:
            raise GraphError(100, "This authorization code has been used.", subcode=36009)
        if world.now() - code.created_at > CODE_TTL_SECONDS:
            raise GraphError(100, "This authorization code has expired.", subcode=36007)
        if p.get("redirect_uri", "") != code.redirect_uri:
            raise GraphError(100, "Error validating verification code. Please make sure your "
                             "redirect_uri is identical to the one you used in the OAuth dialog "
                             "request", subcode=36008)
        # A wrong verifier spends the code too (Meta's order is not documented; this is the
        # stricter reading): whoever holds a stolen code gets one guess, not many.
        code.used = True
        if code.code_challenge is not None and not _verifier_matches(
                code, p.get("code_verifier", "")):
            raise GraphError(1, INVALID_VERIFIER)
    token = world.issue_token(code.user_id, app.id, code.scopes, declined=code.declined)
    _carry_overrides(ctx, code.value, token.value)
    return _grant(ctx, token)


def _exchange_long_lived(ctx: Ctx, app: App, old_value: str) -> dict[str, Any]:
    world = ctx.world
    with world.lock:
        world.exchange_counts[old_value] = world.exchange_counts.get(old_value, 0) + 1
        old = world.tokens.get(old_value)
    if world.oauth.refuse_exchange:
        # Meta's refusal text isn't documented; a non-transient OAuthException is the safe model.
        raise GraphError(100, "(#100) This access token cannot be exchanged for a long-lived "
                         "token")
    if old is None or old.app_id != app.id:
        raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
    if old.revoked_subcode is not None or world.is_expired(old):
        # LL: "You can not use an expired token to request a long-lived token".
        raise token_error(old, old.revoked_subcode or 463, world.now())
    expires_at = None if world.oauth.extend_on_exchange else old.expires_at
    override = _take_overrides(ctx, old_value)
    token = world.issue_token(old.user_id, override.get("app_id", app.id), old.scopes,
                              kind="long",
                              expires_at=override.get("expires_at", expires_at),
                              data_access_expires_at=override.get(
                                  "data_access_expires_at", old.data_access_expires_at),
                              declined=old.declined)
    return _grant(ctx, token)


@area.route("GET|POST", "/debug_token", auth="app")
def debug_token(ctx: Ctx) -> dict[str, Any]:
    world = ctx.world
    value = ctx.params.get("input_token", "")
    token = world.tokens.get(value)
    if token is None:
        raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
    app = world.apps[token.app_id]
    data: dict[str, Any] = {
        "app_id": token.app_id,
        "type": "USER",
        "application": app.name,
        "data_access_expires_at": token.data_access_expires_at,
        "expires_at": token.expires_at,
        "is_valid": token.revoked_subcode is None and not world.is_expired(token),
        "issued_at": token.issued_at,
        "scopes": list(token.scopes),
        "granular_scopes": [{"scope": s} for s in token.scopes],
        "user_id": token.user_id,
    }
    if not data["is_valid"]:
        err = token_error(token, token.revoked_subcode or 463, world.now())
        data["error"] = {"code": err.code, "message": err.message, "subcode": err.subcode}
    return {"data": data}


@area.route("GET", "/me", auth="user")
def me(ctx: Ctx) -> dict[str, Any]:
    user = ctx.world.users[ctx.token.user_id]
    return {"id": user.id, "name": user.name}


@area.route("GET", "/{user_id}/permissions", auth="user")
def permissions(ctx: Ctx) -> dict[str, Any]:
    token = ctx.token
    if ctx.user_id(ctx.path_params["user_id"]) != token.user_id:
        raise GraphError(200, "(#200) Requires the user's own access token")
    rows = ([{"permission": s, "status": "granted"} for s in token.scopes]
            + [{"permission": s, "status": "declined"} for s in token.declined])
    return ctx.page(rows)


# -- control endpoints (served under /__sandbox/) ---------------------------------------------
@area.control("POST", "/tokens")
def control_issue_token(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    user_id = str(b.get("user_id", "10001"))
    app_id = str(b.get("app_id", SEED_APP_ID))
    if user_id not in ctx.world.users or app_id not in ctx.world.apps:
        raise ValueError("unknown user_id or app_id")
    token = ctx.world.issue_token(
        user_id, app_id, b.get("scopes"), kind=b.get("kind", "long"),
        expires_at=b.get("expires_at"), data_access_expires_at=b.get("data_access_expires_at"))
    return {"access_token": token.value, "expires_at": token.expires_at,
            "data_access_expires_at": token.data_access_expires_at, "app_id": app_id,
            "user_id": user_id, "scopes": token.scopes}


@area.control("POST", "/tokens/revoke")
def control_revoke(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    with ctx.world.lock:
        ctx.world.tokens[b["access_token"]].revoked_subcode = int(b.get("subcode", 460))
    return {"success": True}


@area.control("GET", "/exchanges")
def control_exchanges(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        return {"counts": dict(ctx.world.exchange_counts)}


@area.control("POST", "/oauth/config")
def control_oauth_config(ctx: Ctx) -> dict[str, Any]:
    cfg = ctx.world.oauth
    with ctx.world.lock:
        for key, value in ctx.json_body().items():
            if not hasattr(cfg, key):
                raise ValueError(f"unknown oauth setting {key!r}")
            setattr(cfg, key, bool(value))
    return {"success": True, "config": vars(cfg)}


@area.control("POST", "/apps/{app_id}")
def control_app(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    with ctx.world.lock:
        app = ctx.world.apps[ctx.path_params["app_id"]]
        if "require_appsecret_proof" in b:
            app.require_appsecret_proof = bool(b["require_appsecret_proof"])
        app.redirect_uris += list(b.get("redirect_uris", []))
    return {"success": True, "app_id": app.id}


@area.control("GET", "/state")
def control_state(ctx: Ctx) -> Response:
    w = ctx.world
    with w.lock:
        return json_response({
            "apps": [{"id": a.id, "name": a.name} for a in w.apps.values()],
            "users": [{"id": u.id, "name": u.name} for u in w.users.values()],
            "tokens": len(w.tokens), "codes": len(w.codes), "areas": sorted(w.areas)})


# -- per-flow test overrides: how the long-lived token of ONE consent comes out ----------------
# The consent form (or SandboxControl-style direct POSTs) may carry these test-only fields; they
# follow that flow's code -> short-lived token -> long-lived token and touch nothing else, so a
# test can make Meta hand back a token of another app, one that never expires (expires_at 0) or
# one already expired, without changing global sandbox state.
FLOW_OVERRIDES = {
    "sandbox_token_app_id": "app_id",
    "sandbox_token_expires_at": "expires_at",
    "sandbox_data_access_expires_at": "data_access_expires_at",
}


@dataclass
class OAuthAreaState:
    by_code: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_short_token: dict[str, dict[str, Any]] = field(default_factory=dict)


@area.seed
def seed(world: World) -> OAuthAreaState:
    return OAuthAreaState()


def _remember_overrides(ctx: Ctx, code_value: str) -> None:
    p = ctx.params
    found: dict[str, Any] = {}
    for form_name, key in FLOW_OVERRIDES.items():
        if p.get(form_name, "") != "":
            found[key] = p[form_name] if key == "app_id" else int(p[form_name])
    if "app_id" in found and found["app_id"] not in ctx.world.apps:
        raise GraphError(101, "Error validating application. Invalid application ID.")
    if found:
        with ctx.world.lock:
            ctx.world.area("oauth").by_code[code_value] = found


def _carry_overrides(ctx: Ctx, code_value: str, short_token: str) -> None:
    with ctx.world.lock:
        state = ctx.world.area("oauth")
        found = state.by_code.pop(code_value, None)
        if found:
            state.by_short_token[short_token] = found


def _take_overrides(ctx: Ctx, short_token: str) -> dict[str, Any]:
    with ctx.world.lock:
        return ctx.world.area("oauth").by_short_token.pop(short_token, {})

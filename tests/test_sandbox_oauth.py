"""The sandbox's OAuth area, driven over real HTTP (the consent page as a person would, the
token endpoints through shared.meta.graph)."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from sandbox.world import OTHER_APP_ID, SEED_APP_ID
from shared.meta.errors import MetaRequestError, MetaTokenInvalid

# The sandbox fixtures (meta_sandbox, sandbox_control, graph_factory); harmless once conftest
# imports them too.
pytest_plugins = ("tests.fixtures_sandbox",)

CALLBACK = "http://127.0.0.1:8123/crm/auth/meta/callback"
SCOPES = ["ads_read", "business_management", "whatsapp_business_messaging"]


@pytest.fixture
def app_client(graph_factory):
    return graph_factory(None)


def _dialog(url: str, **params: str) -> httpx.Response:
    query = {"client_id": SEED_APP_ID, "redirect_uri": CALLBACK, "state": "st-1",
             "scope": ",".join(SCOPES), "response_type": "code", **params}
    return httpx.get(f"{url}/v26.0/dialog/oauth", params=query)


def _form_fields(html: str) -> list[tuple[str, str]]:
    """Hidden and checked inputs, as a browser would submit them."""
    fields = []
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and ('type="hidden"' in tag or "checked" in tag):
            fields.append((name.group(1), value.group(1) if value else ""))
    return fields


def test_dialog_renders_a_consent_page(meta_sandbox):
    page = _dialog(meta_sandbox.url)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    for testid in ("consent-approve", "consent-cancel", *(f"scope-{s}" for s in SCOPES)):
        assert f'data-testid="{testid}"' in page.text
    assert 'action="/v26.0/dialog/oauth/decide"' in page.text


def test_submitting_the_html_form_approves_with_unticked_scopes_declined(meta_sandbox):
    page = _dialog(meta_sandbox.url)
    fields = [f for f in _form_fields(page.text) if f != ("granted", "whatsapp_business_messaging")]
    fields += [("decision", "allow"), ("user", "10002")]
    answer = httpx.post(f"{meta_sandbox.url}/v26.0/dialog/oauth/decide", content=urlencode(fields),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?") and location.endswith("#_=_")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st-1"] and query["code"]


@pytest.mark.parametrize(
    ("params", "reason"),
    [({"client_id": "555"}, "Invalid App ID"),
     ({"redirect_uri": "https://evil.example/crm/auth/meta/callback"}, "URL Blocked"),
     ({"redirect_uri": "http://127.0.0.1:8123/other/path"}, "URL Blocked")],
)
def test_dialog_rejects_unknown_app_or_redirect_without_redirecting(meta_sandbox, params, reason):
    page = _dialog(meta_sandbox.url, **params)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert reason in page.text and 'data-testid="dialog-error"' in page.text


def test_cancel_redirects_with_meta_error_params(meta_sandbox):
    answer = httpx.post(f"{meta_sandbox.url}/v26.0/dialog/oauth/decide", data={
        "client_id": SEED_APP_ID, "redirect_uri": CALLBACK, "state": "st-9",
        "scope": "ads_read", "decision": "cancel"})
    assert answer.status_code == 302
    assert answer.headers["location"] == (
        CALLBACK + "?error=access_denied&error_code=200&error_description=Permissions+error"
        "&error_reason=user_denied&state=st-9#_=_")


def test_partial_grant_code_exchange_and_debug_token(sandbox_control, app_client, graph_factory):
    answer = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES,
                                     granted=["ads_read"])
    grant = app_client.exchange_code(answer["code"], CALLBACK)
    assert grant.token_type == "bearer" and 0 < grant.expires_in <= 2 * 3600
    info = app_client.debug_token(grant.access_token)
    assert info["app_id"] == SEED_APP_ID and info["is_valid"] is True
    assert info["type"] == "USER" and info["user_id"] == "10001"
    assert info["scopes"] == ["public_profile", "ads_read"]
    assert {"scope": "ads_read"} in info["granular_scopes"]
    perms = list(graph_factory(grant.access_token).paginate("me/permissions"))
    declined = {p["permission"] for p in perms if p["status"] == "declined"}
    assert declined == {"business_management", "whatsapp_business_messaging"}


def test_code_is_single_use(sandbox_control, app_client):
    code = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES)["code"]
    app_client.exchange_code(code, CALLBACK)
    with pytest.raises(MetaRequestError) as info:
        app_client.exchange_code(code, CALLBACK)
    assert (info.value.code, info.value.subcode, info.value.error_type) == (
        100, 36009, "OAuthException")


def test_code_expires_after_ten_minutes(sandbox_control, app_client):
    code = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES)["code"]
    sandbox_control.advance_clock(601)
    with pytest.raises(MetaRequestError) as info:
        app_client.exchange_code(code, CALLBACK)
    assert info.value.subcode == 36007


def test_code_is_bound_to_redirect_uri(sandbox_control, app_client):
    code = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES)["code"]
    with pytest.raises(MetaRequestError) as info:
        app_client.exchange_code(code, "http://localhost:9/crm/auth/meta/callback")
    assert info.value.subcode == 36008


def test_wrong_client_secret_is_a_request_error_not_retried(graph_factory, sandbox_control):
    code = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES)["code"]
    client = graph_factory(None, app_secret="wrong")
    with pytest.raises(MetaRequestError, match="client secret"):
        client.exchange_code(code, CALLBACK)
    assert client.request_count == 1


def test_long_lived_exchange_gives_new_token_and_is_counted(sandbox_control, app_client):
    short = sandbox_control.issue_token(kind="short", scopes=["ads_read"])
    grant = app_client.exchange_long_lived(short)
    assert grant.access_token != short
    assert 59 * 86400 < grant.expires_in <= 5183944
    assert sandbox_control.exchange_count(short) == 1
    info = app_client.debug_token(grant.access_token)
    assert info["scopes"] == ["ads_read"] and info["is_valid"]


def test_exchange_without_expires_in_and_without_extension(sandbox_control, app_client):
    expires_at = int(time.time()) + 3600
    short = sandbox_control.issue_token(kind="short", expires_at=expires_at)
    sandbox_control.configure_oauth(include_expires_in=False, extend_on_exchange=False)
    grant = app_client.exchange_long_lived(short)
    assert grant.expires_in is None
    assert app_client.debug_token(grant.access_token)["expires_at"] == expires_at


def test_refused_and_expired_exchanges(sandbox_control, app_client):
    expired = sandbox_control.issue_token(expires_at=int(time.time()) - 5)
    with pytest.raises(MetaTokenInvalid) as info:
        app_client.exchange_long_lived(expired)
    assert info.value.subcode == 463
    sandbox_control.configure_oauth(refuse_exchange=True)
    valid = sandbox_control.issue_token()
    with pytest.raises(MetaRequestError):
        app_client.exchange_long_lived(valid)


def test_debug_token_of_another_apps_token(sandbox_control, app_client):
    foreign = sandbox_control.issue_token(app_id=OTHER_APP_ID, scopes=["ads_read"])
    info = app_client.debug_token(foreign)
    assert info["app_id"] == OTHER_APP_ID
    assert info["application"] == "Some Other App"


def test_debug_token_of_revoked_token(sandbox_control, app_client):
    token = sandbox_control.issue_token()
    sandbox_control.revoke_token(token, subcode=460)
    info = app_client.debug_token(token)
    assert info["is_valid"] is False
    assert info["error"]["code"] == 190 and info["error"]["subcode"] == 460


def test_debug_token_requires_an_app_token(meta_sandbox, sandbox_control):
    token = sandbox_control.issue_token()
    answer = httpx.get(f"{meta_sandbox.url}/v26.0/debug_token", params={"input_token": token},
                       headers={"Authorization": "Bearer 1234567890|wrong"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 190


def test_whole_flow_keeps_credentials_out_of_urls(sandbox_control, app_client, graph_factory):
    code = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES)["code"]
    grant = app_client.exchange_code(code, CALLBACK)
    long_lived = app_client.exchange_long_lived(grant.access_token)
    app_client.debug_token(long_lived.access_token)
    graph_factory(long_lived.access_token).get("me")
    log = sandbox_control.requests()
    assert len(log) >= 5
    assert not [e for e in log if e["credential_in_url"]]
    exchange = [e for e in log if e["path"] == "/v26.0/oauth/access_token"]
    assert all(e["method"] == "POST" and e["query_keys"] == [] for e in exchange)


def test_get_on_token_endpoint_works_but_is_flagged(meta_sandbox, sandbox_control):
    # Meta's documented GET form works; the log shows why we don't use it.
    short = sandbox_control.issue_token(kind="short")
    answer = httpx.get(f"{meta_sandbox.url}/v26.0/oauth/access_token", params={
        "grant_type": "fb_exchange_token", "client_id": SEED_APP_ID,
        "client_secret": "sandbox-app-secret", "fb_exchange_token": short})
    assert answer.json()["token_type"] == "bearer"
    assert sandbox_control.requests("/oauth/access_token")[-1]["credential_in_url"] is True


# -- PKCE (RFC 7636), as Meta applies it to the code flow --------------------------------------
VERIFIER = "v" * 20 + "-._~" + "0123456789ABCDEFGHIJ"  # 44 characters of the RFC's alphabet


def _s256(verifier: str) -> str:
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()


@pytest.mark.parametrize(("method", "challenge"), [("S256", _s256(VERIFIER)),
                                                   ("plain", VERIFIER)])
def test_a_challenged_code_needs_its_verifier(sandbox_control, app_client, method, challenge):
    pkce = {"code_challenge": challenge, "code_challenge_method": method}
    for verifier in (None, "w" * 43, VERIFIER[:-1] + "K"):
        code = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES,
                                       extra=pkce)["code"]
        with pytest.raises(MetaRequestError, match="Invalid code verifier"):
            app_client.exchange_code(code, CALLBACK, code_verifier=verifier)
        with pytest.raises(MetaRequestError, match="has been used"):  # one guess per code
            app_client.exchange_code(code, CALLBACK, code_verifier=VERIFIER)
    code = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES,
                                   extra=pkce)["code"]
    assert app_client.exchange_code(code, CALLBACK, code_verifier=VERIFIER).access_token


def test_a_code_without_a_challenge_needs_no_verifier(sandbox_control, app_client):
    code = sandbox_control.consent(redirect_uri=CALLBACK, state="s", scopes=SCOPES)["code"]
    assert app_client.exchange_code(code, CALLBACK).access_token


@pytest.mark.parametrize("params", [{"code_challenge": "short"},
                                    {"code_challenge": _s256(VERIFIER),
                                     "code_challenge_method": "S512"},
                                    {"code_challenge_method": "S256"}])
def test_the_dialog_refuses_a_malformed_challenge(meta_sandbox, params):
    page = _dialog(meta_sandbox.url, **params)
    assert page.status_code == 400
    assert "Invalid code challenge" in page.text


def test_the_consent_form_carries_the_challenge_to_the_code(meta_sandbox, app_client):
    page = _dialog(meta_sandbox.url, code_challenge=_s256(VERIFIER),
                   code_challenge_method="S256")
    fields = _form_fields(page.text) + [("decision", "allow")]
    answer = httpx.post(f"{meta_sandbox.url}/v26.0/dialog/oauth/decide",
                        content=urlencode(fields),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    with pytest.raises(MetaRequestError, match="Invalid code verifier"):
        app_client.exchange_code(code, CALLBACK)

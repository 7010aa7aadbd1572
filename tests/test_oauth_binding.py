"""The OAuth code is bound to its flow (RFC 9700 §4.5) and the flow to one browser.

- Code injection: a code obtained in flow B, submitted with flow A's state and binding cookie,
  used to store B's Meta token in A's tenant. Every dialog now carries a PKCE challenge derived
  from its own state and cookie, the callback sends the matching verifier, and Meta (the sandbox
  enforces it as Meta does) refuses a code issued to another challenge.
- Exactly one binding cookie is accepted, and it is a `__Host-` cookie (Path=/, Secure, no
  Domain), which a sibling subdomain cannot plant.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from shared.connection.oauth_state import BINDING_COOKIE

pytest.register_assert_rewrite("tests.fixtures_oauth")

from tests.fixtures_oauth import call_kind, credential_rows, result, state_item  # noqa: E402

pytest_plugins = ["tests.fixtures_oauth"]


def _with_state(callback_url: str, state: str) -> str:
    """The same callback with another state (the attacker's), the code left as Meta gave it."""
    base, _, query = callback_url.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    return f"{base}?{urlencode({**params, 'state': state})}"


def test_a_code_of_another_flow_with_this_flows_state_and_cookie_stores_nothing(
        browser, tenant_id, other_tenant_id, owner_db, meta_log):
    attacker = browser.start(tenant_id)  # flow A: the attacker's tenant, state and cookie
    victim = browser.start(other_tenant_id)  # flow B: someone else's consent
    victims_code_url = browser.consent(victim, user="10002")

    injected = browser.callback(_with_state(victims_code_url, attacker.state),
                                bindings=(attacker.binding,))

    assert result(injected) == {"error": "meta_error"}
    assert credential_rows(owner_db, tenant_id) == []  # B's token is not in A's tenant
    assert [call_kind(c) for c in meta_log.calls()] == ["code"]  # refused at the exchange
    assert state_item(attacker.state) is None  # the attacker's state is spent too
    # The failed exchange spent B's code (Meta burns a code on a wrong verifier): B's own
    # callback fails too, and B simply starts again.
    assert result(browser.callback(victims_code_url, bindings=(victim.binding,))) == {
        "error": "meta_error"}
    assert result(browser.connect(browser.start(other_tenant_id), user="10002")) == {
        "success": "connected"}


def test_the_dialog_carries_the_s256_challenge_of_this_flow(browser, tenant_id):
    from shared.connection.oauth_state import code_challenge, code_verifier

    flow = browser.start(tenant_id)
    query = parse_qs(urlsplit(flow.dialog_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [code_challenge(code_verifier(flow.state, flow.binding))]
    assert flow.binding not in flow.dialog_url  # the verifier's key never travels in a URL


@pytest.mark.parametrize("cookies", ["twice", "planted_first", "planted_last"])
def test_more_than_one_binding_cookie_is_refused(browser, tenant_id, owner_db, meta_log,
                                                 cookies):
    """A browser holds one binding cookie; a second one was set by someone else (cookie
    tossing from a sibling subdomain, with a more specific path so it is sent first)."""
    flow = browser.start(tenant_id)
    planted = browser.start(tenant_id).binding  # a valid-looking value of another flow
    bindings = {"twice": (flow.binding, flow.binding),
                "planted_first": (planted, flow.binding),
                "planted_last": (flow.binding, planted)}[cookies]
    response = browser.callback(browser.consent(flow), bindings=bindings)
    assert result(response) == {"error": "invalid_state"}
    assert meta_log.calls() == []
    assert credential_rows(owner_db, tenant_id) == []
    assert state_item(flow.state) is None  # burnt, not left for another try


def test_the_binding_cookie_is_a_host_only_cookie(api, tenant_id):
    response = api.get("/crm/auth/meta/url", tenant_id=tenant_id, role="admin")
    [cookie] = response.headers.get_list("set-cookie")
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0].startswith("__Host-") and attributes[0].split("=")[0] == BINDING_COOKIE
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} <= set(attributes)
    assert not any(a.lower().startswith("domain=") for a in attributes)


def test_the_old_cookie_name_is_not_accepted(browser, tenant_id, owner_db):
    """A value under the previous, path-scoped name (which any sibling subdomain could set)
    counts for nothing."""
    flow = browser.start(tenant_id)
    url = browser.consent(flow)
    response = browser.http.get(url, headers={"Cookie": f"mh_oauth_binding={flow.binding}"})
    assert result(response) == {"error": "invalid_state"}
    assert credential_rows(owner_db, tenant_id) == []

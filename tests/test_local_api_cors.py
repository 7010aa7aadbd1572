"""CORS on the local API as API Gateway does it for template.yaml's HttpApi: preflights answered
by the gateway itself, Access-Control-Allow-Origin on answers to the allowed origin only, the
settings read from the template's CorsConfiguration; and the page's one host name."""

from __future__ import annotations

import httpx
import pytest
from werkzeug.test import Client

from devstack.cors import CorsPolicy, origin_of, template_cors
from devstack.local_api import LocalApi
from devstack.stack import api_host_for
from tests.test_dev_routes import dev  # noqa: F401 - the dev routes on the session's stack

STATS = "/crm/marketing/stats"
VITE = "http://localhost:5173"


def _preflight(client, path: str, origin: str, method: str = "GET",
               headers: str = "authorization") -> httpx.Response:
    return client.options(path, headers={"Origin": origin,
                                         "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


def test_the_policy_is_the_templates_cors_configuration():
    config = template_cors()
    assert config["AllowOrigins"] == [{"Ref": "FrontendUrl"}]
    policy = CorsPolicy.from_template({"FrontendUrl": VITE})
    assert policy.allow_origins == (VITE,)
    assert policy.allow_methods == tuple(m.upper() for m in config["AllowMethods"])
    assert policy.allow_headers == tuple(h.lower() for h in config["AllowHeaders"])
    assert policy.allow_credentials is config["AllowCredentials"] is True
    assert policy.max_age == config["MaxAge"]


def test_preflight_from_the_frontend_is_answered_by_the_gateway(stack, api):
    frontend = stack.env["FRONTEND_URL"]
    response = _preflight(api.http, STATS, frontend, headers="authorization,content-type")
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == frontend
    assert response.headers["access-control-allow-credentials"] == "true"
    assert set(response.headers["access-control-allow-methods"].split(",")) == {
        "GET", "POST", "PATCH", "DELETE", "OPTIONS"}
    assert set(response.headers["access-control-allow-headers"].split(",")) == {
        "authorization", "content-type"}
    assert response.headers["access-control-max-age"] == "600"


def test_answers_to_the_frontend_carry_the_allowed_origin(stack, api, tenant_id):
    frontend = stack.env["FRONTEND_URL"]
    response = api.get(STATS, tenant_id=tenant_id, role="member", headers={"Origin": frontend})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == frontend
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "origin" in response.headers["vary"].lower()
    # Errors too (here the gateway's own 401), or the browser hides them from the page.
    refused = api.get(STATS, headers={"Origin": frontend})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == frontend


def test_another_origin_gets_no_cors_grant(api, tenant_id):
    preflight = _preflight(api.http, STATS, "http://evil.example")
    assert preflight.status_code == 204
    assert "access-control-allow-origin" not in preflight.headers
    answer = api.get(STATS, tenant_id=tenant_id, headers={"Origin": "http://evil.example"})
    assert answer.status_code == 200
    assert not [h for h in answer.headers if h.lower().startswith("access-control-")]


def test_an_origin_set_for_make_dev_covers_the_api_and_the_local_routes():
    """CORS_ORIGIN=http://localhost:5173 make dev: the template's FrontendUrl, resolved so."""
    local = LocalApi(extra_routes={"/__dev/session": lambda _request: None},
                     cors=CorsPolicy.from_template({"FrontendUrl": VITE}))
    client = Client(local.wsgi)
    for path, method in ((STATS, "GET"), ("/__dev/session", "POST"),
                         ("/crm/marketing/hsm/rules/abc", "PATCH")):
        response = client.options(path, headers={"Origin": VITE,
                                                 "Access-Control-Request-Method": method})
        assert response.status_code == 204, path
        assert response.headers["Access-Control-Allow-Origin"] == VITE
    unknown = client.get("/crm/nothing-here", headers={"Origin": VITE})
    assert unknown.status_code == 404
    assert unknown.headers["Access-Control-Allow-Origin"] == VITE


@pytest.mark.parametrize("value", ["localhost:5173", "http://localhost:5173/app", "ftp://x",
                                   "http://localhost:99999"])
def test_an_origin_must_be_an_origin(value):
    with pytest.raises(ValueError):
        origin_of(value)


def test_the_api_goes_by_the_frontends_host_name():
    assert api_host_for(None) == "127.0.0.1"
    assert api_host_for("http://127.0.0.1:5173") == "127.0.0.1"
    assert api_host_for(VITE) == "localhost"


def test_the_page_sends_another_host_name_to_the_apis_own_first(stack, dev):  # noqa: F811
    """Opening localhost:3000 while the API (and Meta's redirect) go by 127.0.0.1 used to end,
    after the consent page, signed out on 127.0.0.1 with the OAuth cookie left on localhost."""
    port = stack.api_url.rsplit(":", 1)[1]
    other = f"http://localhost:{port}"
    with httpx.Client(timeout=30, follow_redirects=False) as browser:
        response = browser.get(f"{other}/crm/marketing?error=invalid_state",
                               headers={"Host": f"localhost:{port}"})
        same = browser.get(f"{stack.api_url}/crm/marketing")
    assert response.status_code == 302
    assert response.headers["location"] == f"{stack.api_url}/crm/marketing?error=invalid_state"
    assert same.status_code == 200

"""The local-only routes of `make dev` (devstack/dev_routes.py), over real HTTP on the session's
local API: the page and its headers, the demo sign-in, and who may press "run now"."""

from __future__ import annotations

import httpx
import jwt
import pytest

from devstack import jwt_tokens
from devstack.dev_routes import DEMO_LEADS, DevRoutes
from shared.platform.db import tenant_tx


@pytest.fixture(scope="module")
def dev(stack):
    added = {path: route for path, route in DevRoutes(stack).table().items()
             if path not in stack.api.extra_routes}
    stack.api.extra_routes.update(added)
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        yield client
    for path in added:
        stack.api.extra_routes.pop(path, None)


@pytest.mark.parametrize("path", ["/", "/crm/marketing"])
def test_the_page_is_served_with_the_contracts_security_headers(dev, path):
    page = dev.get(path)
    assert page.status_code == 200
    assert 'data-testid="sidebar-marketing"' in page.text
    assert page.headers["content-security-policy"] == "default-src 'self'; frame-ancestors 'none'"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_only_the_pages_own_files_are_served(dev):
    assert dev.get("/app.js").headers["content-type"].startswith("text/javascript")
    assert dev.get("/app.css").headers["content-type"].startswith("text/css")
    for path in ("/pyproject.toml", "/../pyproject.toml", "/%2e%2e/pyproject.toml",
                 "/devstack/dev.py", "/nothing.js"):
        answer = dev.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"


def test_a_sign_in_gives_a_verifiable_token_and_seeds_the_tenant_once(dev, tenant_id):
    first = dev.post("/__dev/session", json={"role": "member", "tenant_id": tenant_id})
    again = dev.post("/__dev/session", json={"role": "admin", "tenant_id": tenant_id})

    assert first.status_code == again.status_code == 200
    claims = jwt_tokens.verify(first.json()["token"])
    assert (claims["custom:tenant_id"], claims["custom:role"]) == (tenant_id, "member")
    assert (first.json()["seeded_leads"], again.json()["seeded_leads"]) == (DEMO_LEADS, 0)
    with tenant_tx(tenant_id) as conn:
        leads = conn.execute("SELECT count(*) AS n, count(meta_campaign_id) AS attributed,"
                             " count(*) FILTER (WHERE status = 'won') AS won FROM leads"
                             ).fetchone()
    assert leads["n"] == DEMO_LEADS and leads["attributed"] > 0 and leads["won"] > 0


def test_before_an_ad_account_the_demo_figures_tell_one_story(dev, tenant_id):
    """The seeded tenant's stats before any ad account is connected: its Meta leads and won
    revenue in one (not yet known) currency, not a EUR row of revenue beside a currency-less
    row of leads; its campaigns are known only by id (the page summarises them)."""
    token = dev.post("/__dev/session", json={"role": "member", "tenant_id": tenant_id}).json()
    stats = dev.get("/crm/marketing/stats",
                    headers={"Authorization": f"Bearer {token['token']}"}).json()
    (total,) = stats["totals"]
    assert total["currency"] is None
    assert total["leads"] > 0 and total["won_leads"] > 0 and total["revenue"] > 0
    assert stats["campaigns"] and all(c["name"] is None for c in stats["campaigns"])
    assert sum(c["revenue"] for c in stats["campaigns"]) == total["revenue"]


@pytest.mark.parametrize("body", [{"role": "owner"}, {"role": "admin", "tenant_id": "a b"},
                                  {"role": "admin", "tenant_id": 7}])
def test_a_sign_in_with_a_bad_role_or_tenant_is_refused(dev, body):
    answer = dev.post("/__dev/session", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("job", ["/__dev/jobs/dispatch", "/__dev/jobs/sync"])
def test_run_now_needs_a_signed_in_admin(dev, tenant_id, job):
    member = jwt_tokens.sign(tenant_id, role="member")
    forged = jwt.encode({"custom:tenant_id": tenant_id, "custom:role": "admin"},
                        "a-guessed-signing-key-of-32-bytes!!", algorithm="HS256")
    assert dev.post(job).status_code == 401
    assert dev.post(job, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    refused = dev.post(job, headers={"Authorization": f"Bearer {member}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"


def test_run_sync_now_syncs_nothing_for_a_tenant_without_ad_accounts(dev, tenant_id):
    admin = jwt_tokens.sign(tenant_id, role="admin")
    answer = dev.post("/__dev/jobs/sync", headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 200
    assert answer.json() == {"accounts": 0, "results": []}


def test_the_documented_sign_in_example_works(dev):
    """docs/LOCAL_DEV.md's curl example for POST /__dev/session, sent as written."""
    import json
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "LOCAL_DEV.md").read_text()
    section = doc.split("### A local sign-in: `POST /__dev/session`", 1)[1]
    body = re.search(r"-d '(\{[^']*\})'", section).group(1)
    documented = set(re.findall(r'"(\w+)":', section.split("# {", 1)[1].split("```", 1)[0]))
    answer = dev.post("/__dev/session", content=body,
                      headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    assert set(answer.json()) == documented | {"token"}
    assert jwt_tokens.verify(answer.json()["token"])["custom:role"] == json.loads(body)["role"]

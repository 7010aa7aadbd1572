"""shared.meta.graph against the running sandbox over real HTTP: paging, batch, errors, retries."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from sandbox.world import SEED_APP_ID, SEED_APP_SECRET
from shared.meta.errors import (
    MetaPermissionDenied,
    MetaRateLimited,
    MetaRequestError,
    MetaTokenInvalid,
    MetaTransient,
    parse_usage,
)
from shared.meta.graph import AsyncGraphClient
from shared.meta.graph_core import appsecret_proof
from shared.platform.deadlines import deadline_from_context

# The sandbox fixtures (meta_sandbox, sandbox_control, graph_factory); harmless once conftest
# imports them too.
pytest_plugins = ("tests.fixtures_sandbox",)

FAST = {"backoff_base": 0.02}


@pytest.fixture
def token(sandbox_control) -> str:
    return sandbox_control.issue_token("10001", scopes=["ads_read", "business_management"])


@pytest.fixture
def graph(graph_factory, token):
    client = graph_factory(token)
    client.backoff_base = FAST["backoff_base"]
    return client


def test_me_sends_token_in_header_and_proof_never_in_url(graph, sandbox_control, token):
    assert graph.get("me") == {"id": "10001", "name": "Ana Demo"}
    (entry,) = sandbox_control.requests("/me")
    assert entry["path"] == "/v26.0/me"
    assert entry["auth"] == "header"
    assert entry["query_keys"] == ["appsecret_proof"]
    assert entry["credential_in_url"] is False
    assert graph.request_count == 1
    assert token not in repr(graph)


def test_usage_header_read_on_success(graph, sandbox_control):
    sandbox_control.set_app_usage(call_count=37, total_cputime=5, total_time=12)
    graph.get("me")
    assert graph.last_usage.max_percent == 37
    assert graph.last_usage.raw["x-app-usage"]["call_count"] == 37


def test_paginate_follows_cursors_across_empty_pages(graph):
    items = list(graph.paginate("__test/items", {"count": 7, "limit": 3, "empty_pages": "1"}))
    assert [i["id"] for i in items] == [str(i) for i in range(7)]
    # Pages: [0,1,2], [] (still has next), [3,4,5], [6] -> 4 round trips.
    assert graph.request_count == 4


def test_paginate_real_edge(graph_factory, sandbox_control):
    scopes = ["ads_read", "ads_management", "business_management"]
    token = sandbox_control.issue_token(scopes=scopes)
    graph = graph_factory(token)
    perms = list(graph.paginate("me/permissions", {"limit": 1}))
    assert [p["permission"] for p in perms] == scopes
    assert graph.request_count == 3


def test_batch_splits_over_50_and_returns_per_item_errors(graph, sandbox_control):
    requests = [{"method": "GET", "relative_url": "me"} for _ in range(120)]
    requests[75] = {"method": "GET", "relative_url": "no-such-node/edges"}
    results = graph.batch(requests)
    assert len(results) == 120
    assert graph.request_count == 3  # 50 + 50 + 20
    assert results[0] == {"id": "10001", "name": "Ana Demo"}
    bad = results[75]
    assert isinstance(bad, MetaRequestError)
    assert (bad.code, bad.subcode) == (100, 33)
    assert all(r == results[0] for i, r in enumerate(results) if i != 75)
    counts = sandbox_control.request_counts()
    assert counts["POST /v26.0/"] == 3
    assert counts["GET /v26.0/me"] == 119


@pytest.mark.parametrize(
    ("kind", "opts", "cls", "code"),
    [
        ("token_error", {"subcode": 463}, MetaTokenInvalid, 190),
        ("token_error", {"subcode": 460}, MetaTokenInvalid, 190),
        ("rate_limit", {"code": 4}, MetaRateLimited, 4),
        ("rate_limit", {"code": 17}, MetaRateLimited, 17),
        ("rate_limit", {"code": 613}, MetaRateLimited, 613),
        ("rate_limit", {"code": 80004}, MetaRateLimited, 80004),
        ("error", {"code": 200, "message": "(#200) Requires ads_read permission"},
         MetaPermissionDenied, 200),
        ("error", {"code": 10}, MetaPermissionDenied, 10),
        ("error", {"code": 100}, MetaRequestError, 100),
    ],
)
def test_sandbox_faults_map_to_error_classes(graph, sandbox_control, kind, opts, cls, code):
    sandbox_control.inject_fault(kind, "/me$", **opts)
    with pytest.raises(cls) as info:
        graph.get("me")
    assert info.value.code == code
    assert graph.request_count == 1  # none of these is retried
    if kind == "token_error":
        assert info.value.subcode == opts["subcode"]


def test_rate_limit_reads_usage_headers_from_error_response(graph, sandbox_control, token):
    sandbox_control.inject_fault("rate_limit", "/me$", code=80004, regain_minutes=3)
    with pytest.raises(MetaRateLimited) as info:
        graph.get("me")
    err = info.value
    assert err.retry_after_seconds == 180  # BUC header is in minutes
    assert err.usage.max_percent == 100
    assert graph.last_usage.regain_seconds == 180
    assert token not in str(err) and token not in repr(err)
    assert "80004" in str(err)


def test_rate_limit_ad_account_reset_is_seconds(graph, sandbox_control):
    sandbox_control.inject_fault("rate_limit", "/me$", code=613, regain_minutes=0,
                                 reset_seconds=45)
    with pytest.raises(MetaRateLimited) as info:
        graph.get("me")
    assert info.value.retry_after_seconds == 45


def test_transient_is_retried_then_succeeds(graph, sandbox_control):
    sandbox_control.inject_fault("transient", "/me$", count=2)
    assert graph.get("me")["id"] == "10001"
    assert graph.request_count == 3


def test_transient_gives_up_after_max_attempts(graph, sandbox_control):
    sandbox_control.inject_fault("transient", "/me$", count=10, code=1)
    with pytest.raises(MetaTransient) as info:
        graph.get("me")
    assert info.value.code == 1 and info.value.is_transient
    assert graph.request_count == graph.max_attempts


def test_timeout_and_dropped_connection_are_transient(graph_factory, token, sandbox_control):
    graph = graph_factory(token, timeout=0.2)
    graph.max_attempts = 1
    sandbox_control.inject_fault("timeout", "/me$", seconds=1.0)
    with pytest.raises(MetaTransient, match="timeout"):
        graph.get("me")
    sandbox_control.inject_fault("drop", "/me$")
    with pytest.raises(MetaTransient, match="connection error"):
        graph.get("me")


def test_dropped_post_is_not_retried_unless_idempotent(graph, sandbox_control):
    # A POST that was sent but got no answer may have happened: never repeat it blindly.
    sandbox_control.inject_fault("drop", "/v26.0/$", count=1)
    with pytest.raises(MetaTransient):
        graph.post("", {"batch": "[]"})
    assert graph.request_count == 1
    sandbox_control.inject_fault("drop", "/v26.0/$", count=1)
    assert graph.post("", {"batch": "[]"}, idempotent=True) == []


def test_deadline_shorter_than_backoff_stops_retrying(graph_factory, token, sandbox_control):
    sandbox_control.inject_fault("transient", "/me$", count=5)
    graph = graph_factory(token, deadline=time.monotonic() + 0.3)
    graph.backoff_base = 2.0  # first backoff is 1-2 s, beyond the deadline
    started = time.monotonic()
    with pytest.raises(MetaTransient) as info:
        graph.get("me")
    assert time.monotonic() - started < 0.3
    assert info.value.code == 2
    assert graph.request_count == 1


def test_deadline_caps_request_timeout(graph_factory, token, sandbox_control):
    sandbox_control.inject_fault("timeout", "/me$", seconds=2.0)
    graph = graph_factory(token, timeout=5.0, deadline=time.monotonic() + 0.3)
    started = time.monotonic()
    with pytest.raises(MetaTransient):
        graph.get("me")
    assert time.monotonic() - started < 1.0


def test_expired_deadline_raises_without_calling(graph_factory, token):
    graph = graph_factory(token, deadline=time.monotonic() - 1)
    with pytest.raises(MetaTransient, match="deadline"):
        graph.get("me")
    assert graph.request_count == 0


def test_appsecret_proof_is_enforced(graph_factory, token, meta_sandbox, sandbox_control):
    wrong = graph_factory(token, app_secret="not-the-secret")
    with pytest.raises(MetaRequestError, match="Invalid appsecret_proof") as info:
        wrong.get("me")
    assert info.value.code == 100
    bare = httpx.get(f"{meta_sandbox.url}/v26.0/me", headers={"Authorization": f"Bearer {token}"})
    assert bare.status_code == 400
    assert bare.json()["error"]["message"].startswith("API calls from the server require")
    sandbox_control.configure_app(require_appsecret_proof=False)
    bare = httpx.get(f"{meta_sandbox.url}/v26.0/me", headers={"Authorization": f"Bearer {token}"})
    assert bare.json()["id"] == "10001"


def test_unknown_revoked_and_expired_tokens(graph_factory, sandbox_control):
    with pytest.raises(MetaTokenInvalid) as info:
        graph_factory("EAAnot-a-token").get("me")
    assert info.value.code == 190 and info.value.subcode is None
    revoked = sandbox_control.issue_token()
    sandbox_control.revoke_token(revoked, subcode=460)
    with pytest.raises(MetaTokenInvalid) as info:
        graph_factory(revoked).get("me")
    assert info.value.subcode == 460
    expired = sandbox_control.issue_token(expires_at=int(time.time()) - 10)
    with pytest.raises(MetaTokenInvalid) as info:
        graph_factory(expired).get("me")
    assert info.value.subcode == 463


def test_version_in_every_url_and_bad_versions(graph_factory, token, meta_sandbox, sandbox_control):
    graph_factory(token, version="v25.0").get("me")
    assert sandbox_control.requests("/me")[-1]["path"] == "/v25.0/me"
    with pytest.raises(MetaRequestError) as info:
        graph_factory(token, version="v26").get("me")
    assert info.value.code == 2635
    proof = appsecret_proof(token, SEED_APP_SECRET)
    unversioned = httpx.get(f"{meta_sandbox.url}/me", params={"appsecret_proof": proof},
                            headers={"Authorization": f"Bearer {token}"})
    assert unversioned.json()["name"] == "Ana Demo"


def test_latency_does_not_serialize_concurrent_requests(graph_factory, token, sandbox_control):
    sandbox_control.set_latency("/me$", 300)
    clients = [graph_factory(token) for _ in range(5)]
    started = time.monotonic()
    threads = [threading.Thread(target=c.get, args=("me",)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.0


def test_async_client_pages_batches_and_classifies(meta_sandbox, sandbox_control, token):
    sandbox_control.inject_fault("transient", "/me$", count=1)

    async def run():
        async with AsyncGraphClient(token, app_secret=SEED_APP_SECRET, base_url=meta_sandbox.url,
                                    version="v26.0", timeout=2.0, app_id=SEED_APP_ID,
                                    backoff_base=0.02) as graph:
            me = await graph.get("me")
            items = [i async for i in graph.paginate("__test/items", {"count": 5, "limit": 2})]
            batch = await graph.batch([{"method": "GET", "relative_url": "me"}] * 3)
            sandbox_control.inject_fault("rate_limit", "/me$", code=4)
            try:
                await graph.get("me")
            except MetaRateLimited as exc:
                limited = exc
            return me, items, batch, limited, graph.request_count

    me, items, batch, limited, count = asyncio.run(run())
    assert me["id"] == "10001"
    assert len(items) == 5
    assert batch == [me] * 3
    assert limited.code == 4 and limited.retry_after_seconds == 60
    assert count == 2 + 3 + 1 + 1


def test_parse_usage_units():
    usage = parse_usage({
        "x-app-usage": '{"call_count":28,"total_time":25,"total_cputime":25}',
        "x-ad-account-usage": '{"acc_id_util_pct":9.67,"reset_time_duration":100}',
        "x-business-use-case-usage":
            '{"1":[{"type":"ads_management","call_count":95,"total_cputime":20,'
            '"total_time":20,"estimated_time_to_regain_access":2}]}',
        "x-fb-ads-insights-throttle": "not json",
    })
    assert usage.max_percent == 95
    assert usage.regain_seconds == 120
    assert usage.reset_seconds == 100
    assert "x-fb-ads-insights-throttle" not in usage.raw


def test_deadline_from_context_reserves_time():
    class LambdaContext:  # stands in for AWS's object, not for our code
        def get_remaining_time_in_millis(self) -> int:
            return 5000

    deadline = deadline_from_context(LambdaContext(), reserve_seconds=2.0)
    assert 2.9 < deadline - time.monotonic() <= 3.0

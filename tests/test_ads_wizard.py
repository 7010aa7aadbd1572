"""GET /crm/marketing/meta-accounts over the local API, against the sandbox's ads area."""

from __future__ import annotations

import math

from tests.ads_support import account_row, connect_meta, query

pytest_plugins = ["tests.fixtures_ads"]

PATH = "/crm/marketing/meta-accounts"
CONTRACT_FIELDS = {"id", "name", "type", "business_manager_id", "business_manager_name",
                   "currency", "timezone", "status", "can_run_ads", "amount_spent", "balance"}


def _graph_requests(control) -> tuple[list[dict], list[dict]]:
    """(round trips, batched sub-requests) the sandbox received since the log was cleared."""
    log = control.requests()
    return [r for r in log if not r["batch"]], [r for r in log if r["batch"]]


def test_wizard_lists_every_reachable_account_once_with_contract_fields(api, meta_tenant,
                                                                        ads_control):
    response = api.get(PATH, tenant_id=meta_tenant.tenant_id, role="admin")

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    accounts = response.json()["accounts"]
    ids = [a["id"] for a in accounts]
    # 60 owned by the main business (3 pages), 3 of the agency, 1 client account of another
    # business, 1 personal: 65, although several are reachable through 2 or 3 paths.
    assert len(ids) == 65
    assert len(set(ids)) == len(ids)
    expected = {a["id"]: a for a in ads_control.expected_accounts(meta_tenant.user_id)}
    assert set(ids) == set(expected)
    assert all(set(a) == CONTRACT_FIELDS for a in accounts)
    assert all(a["type"] == "AD_ACCOUNT" and a["id"].startswith("act_") for a in accounts)

    by_id = {a["id"]: a for a in accounts}
    layout = meta_tenant.layout
    shared = by_id[layout["shared_account_id"]]  # owned by main, client of the agency
    assert shared["business_manager_id"] == layout["business_ids"]["main"]
    assert shared["business_manager_name"] == "Ventas Demo Ads S.L."
    personal = by_id[layout["personal_account_id"]]
    assert personal["business_manager_id"] is None and personal["business_manager_name"] is None
    assert personal["currency"] == "USD" and personal["timezone"] == "America/Mexico_City"
    client = by_id[layout["client_account_id"]]  # reached through the agency
    assert client["business_manager_name"] == "Cliente Sur S.A."
    assert client["currency"] == "CLP" and client["timezone"] == "America/Santiago"
    assert client["amount_spent"] == "1500000" and client["balance"] == "25000"  # as Meta gives
    disabled = by_id[layout["disabled_account_id"]]
    assert disabled["status"] == "DISABLED" and disabled["can_run_ads"] is False

    for account in accounts:
        meta = expected[account["id"]]
        assert account["name"] == meta["name"]
        assert account["amount_spent"] == meta["amount_spent"]
        assert account["balance"] == meta["balance"]
        assert account["can_run_ads"] is (meta["account_status"] in (1, 8, 9))
    statuses = {a["status"] for a in accounts}
    assert {"ACTIVE", "DISABLED", "UNSETTLED", "IN_GRACE_PERIOD", "PENDING_SETTLEMENT",
            "CLOSED", "PENDING_RISK_REVIEW"} <= statuses
    grace = [a for a in accounts if a["status"] in ("IN_GRACE_PERIOD", "PENDING_SETTLEMENT")]
    assert grace and all(a["can_run_ads"] for a in grace)
    # The wizard reads; it connects nothing.
    assert account_row(meta_tenant.tenant_id, layout["demo_account_id"]) is None


def test_wizard_round_trips_are_counted_and_bounded(api, meta_tenant, ads_control, tenant_id):
    ads_control.clear_requests()
    response = api.get(PATH, tenant_id=meta_tenant.tenant_id, role="admin")
    assert response.status_code == 200
    trips, sub_requests = _graph_requests(ads_control)

    # The person is in 3 businesses: 3 x 2 edges + /me/businesses + /me/adaccounts + 2 more
    # pages of the big business = 10 Graph reads, 10 round trips in a sequential 1+N plan.
    assert len(sub_requests) == 10
    # Batched in waves: the first two edges, all business edges, then page 2, then page 3.
    assert len(trips) <= 4
    assert all(r["method"] == "POST" and r["path"] == "/v26.0/" for r in trips)
    assert not any(r["credential_in_url"] for r in trips + sub_requests)


def test_round_trips_do_not_grow_with_the_number_of_businesses(api, ads_control, tenant_id):
    layout = ads_control.new_user(extra_businesses=30)
    connect_meta(ads_control, tenant_id, layout["user_id"])
    ads_control.clear_requests()

    response = api.get(PATH, tenant_id=tenant_id, role="admin")

    assert response.status_code == 200
    assert len(response.json()["accounts"]) == 65 + 30
    trips, sub_requests = _graph_requests(ads_control)
    edges = 2 * (3 + 30)
    assert len(sub_requests) == 2 + edges + 2
    # one trip for the first pair, ceil(66/50) for the business edges, 2 for the later pages
    assert len(trips) <= 1 + math.ceil(edges / 50) + 2 == 5


def test_member_is_forbidden(api, meta_tenant):
    response = api.get(PATH, tenant_id=meta_tenant.tenant_id, role="member")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_without_a_token_the_answer_is_meta_not_connected(api, tenant_id, ads_control):
    ads_control.clear_requests()
    response = api.get(PATH, tenant_id=tenant_id, role="admin")
    assert response.status_code == 409
    assert response.json() == {"error": {"code": "meta_not_connected",
                                         "message": "Connect a Meta account first."}}
    assert ads_control.requests() == []  # Meta was not called


def test_invalid_token_marks_needs_reconnect(api, meta_tenant, ads_control):
    ads_control.revoke_token(meta_tenant.token, subcode=460)

    response = api.get(PATH, tenant_id=meta_tenant.tenant_id, role="admin")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meta_reconnect_required"
    assert meta_tenant.token not in response.text
    rows = query(meta_tenant.tenant_id, "SELECT status FROM credentials")
    assert [r["status"] for r in rows] == ["needs_reconnect"]
    # Known broken: the next call answers without calling Meta.
    ads_control.clear_requests()
    again = api.get(PATH, tenant_id=meta_tenant.tenant_id, role="admin")
    assert again.json()["error"]["code"] == "meta_reconnect_required"
    assert ads_control.requests() == []


def test_rate_limited_answers_429_with_retry_after(api, meta_tenant, ads_control):
    ads_control.inject_fault("rate_limit", path=r"^/v26\.0/$", code=17, subcode=2446079,
                             regain_minutes=3)

    response = api.get(PATH, tenant_id=meta_tenant.tenant_id, role="admin")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "meta_rate_limited"
    assert response.headers["retry-after"] == "180"
    rows = query(meta_tenant.tenant_id, "SELECT status FROM credentials")
    assert [r["status"] for r in rows] == ["active"]  # throttling is not a broken token


def test_token_without_business_permission_still_lists_own_accounts(api, ads_control,
                                                                      tenant_id):
    layout = ads_control.new_user()
    connect_meta(ads_control, tenant_id, layout["user_id"], scopes=["ads_read"])

    response = api.get(PATH, tenant_id=tenant_id, role="admin")

    assert response.status_code == 200
    ids = {a["id"] for a in response.json()["accounts"]}
    # /me/adaccounts: the personal account and the three assigned to the person directly.
    assert layout["personal_account_id"] in ids and layout["demo_account_id"] in ids
    assert len(ids) == 4

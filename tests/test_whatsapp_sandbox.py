"""The sandbox's WhatsApp management area behaves like Meta's: access, paging, fields, errors."""

from __future__ import annotations

import httpx
import pytest

from shared.meta.errors import MetaPermissionDenied, MetaRequestError

pytest_plugins = ["tests.fixtures_sandbox"]

SCOPES = ["business_management", "whatsapp_business_management", "whatsapp_business_messaging"]


@pytest.fixture
def graph(graph_factory, sandbox_control):
    return graph_factory(sandbox_control.issue_token("10001", scopes=SCOPES))


def test_seeded_user_reaches_owned_and_client_wabas(graph):
    businesses = [b["id"] for b in graph.paginate("me/businesses")]
    assert "7001" in businesses and "7002" not in businesses
    for business in businesses:  # the ads area's businesses answer too, without WABAs
        if business != "7001":
            assert list(graph.paginate(f"{business}/owned_whatsapp_business_accounts")) == []
    owned = list(graph.paginate("7001/owned_whatsapp_business_accounts"))
    client = list(graph.paginate("7001/client_whatsapp_business_accounts",
                                 {"fields": "id,name,owner_business_info"}))
    assert [w["id"] for w in owned] == ["8001"]
    assert client == [{"id": "8002", "name": "Cliente Agencia WhatsApp",
                       "owner_business_info": {"id": "7002"}}]


def test_phone_numbers_answer_only_requested_fields(graph):
    default = list(graph.paginate("8001/phone_numbers"))
    assert "whatsapp_business_manager_messaging_limit" not in default[0]
    wanted = list(graph.paginate("8001/phone_numbers", {
        "fields": "id,throughput{level},whatsapp_business_manager_messaging_limit"}))
    assert wanted == [
        {"id": "9001", "throughput": {"level": "STANDARD"},
         "whatsapp_business_manager_messaging_limit": "TIER_1K"},
        {"id": "9002", "throughput": {"level": "STANDARD"},
         "whatsapp_business_manager_messaging_limit": "TIER_250"},
    ]


def test_templates_are_cursor_paged_and_filterable(graph, sandbox_control):
    names = [t["name"] for t in graph.paginate("8001/message_templates", {"limit": 4})]
    assert len(names) == 6 and len(set(names)) == 6
    pages = [r for r in sandbox_control.requests("/8001/message_templates")]
    assert len(pages) == 2  # 4 + 2, and no request after the page without paging.next
    rejected = list(graph.paginate("8001/message_templates", {
        "status": "REJECTED", "fields": "name,status,rejected_reason,quality_score"}))
    assert rejected == [{"id": rejected[0]["id"], "name": "promo_rechazada", "status": "REJECTED",
                         "rejected_reason": "PROMOTIONAL", "quality_score": {"score": "UNKNOWN"}}]


def test_other_users_waba_looks_like_it_does_not_exist(graph):
    with pytest.raises(MetaRequestError) as caught:
        graph.get("8003/phone_numbers")
    assert (caught.value.code, caught.value.subcode) == (100, 33)


def test_token_without_management_scope_is_refused(graph_factory, sandbox_control):
    graph = graph_factory(sandbox_control.issue_token("10001", scopes=["business_management"]))
    with pytest.raises(MetaPermissionDenied) as caught:
        list(graph.paginate("8001/message_templates"))
    assert caught.value.code == 200


def test_subscribe_app_is_idempotent_and_recorded(graph, meta_sandbox):
    assert graph.post("8001/subscribed_apps") == {"success": True}
    assert graph.post("8001/subscribed_apps") == {"success": True}
    assert graph.get("8001/subscribed_apps")["data"] == [
        {"whatsapp_business_api_data": {"id": "1234567890", "name": "CRM Ventas Sandbox"}}]
    state = httpx.get(f"{meta_sandbox.url}/__sandbox/whatsapp/wabas/8001").json()
    assert state["subscribed_apps"] == ["1234567890"]


def test_other_areas_can_look_up_templates_by_phone(meta_sandbox):
    state = meta_sandbox.world.area("whatsapp")
    approved = state.find_template("9001", "lead_followup_es", "es")
    assert approved is not None and approved.status == "APPROVED"
    assert state.find_template("9001", "lead_followup_es", "en_US") is None
    assert state.find_template("9001", "promo_rechazada", "es").status == "REJECTED"
    assert state.waba_of_phone("9003").id == "8002"
    assert state.phone("9003").throughput_level == "HIGH"


def test_control_creates_isolated_accounts_and_reset_restores_seed(meta_sandbox, graph_factory,
                                                                    sandbox_control):
    created = httpx.post(f"{meta_sandbox.url}/__sandbox/whatsapp/accounts",
                         json={"phones": 2}).json()
    token = sandbox_control.issue_token(created["user_id"], scopes=SCOPES)
    graph = graph_factory(token)
    assert [b["id"] for b in graph.paginate("me/businesses")] == [created["business_id"]]
    phones = [p["id"] for p in graph.paginate(f"{created['waba_id']}/phone_numbers")]
    assert phones == created["phone_number_ids"]
    assert len(set(phones) | {"9001", "9002"}) == 4

    sandbox_control.reset()
    state = meta_sandbox.world.area("whatsapp")
    assert created["waba_id"] not in state.wabas
    assert set(state.wabas) == {"8001", "8002", "8003"}

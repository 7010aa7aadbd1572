"""The sandbox's Pages and Lead Ads area (sandbox/pages.py) over real HTTP, with our own Graph
client: Pages and Page tokens per person, subscriptions, forms, paged and filtered leads, a lead
read, Meta's errors for what a person cannot reach, signed notifications, and faults."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sandbox.pages import PagesControl
from sandbox.world import SEED_APP_SECRET
from shared.meta.errors import (
    MetaPermissionDenied,
    MetaRequestError,
    MetaTokenInvalid,
    MetaTransient,
)
from shared.platform.settings import DEFAULT_SCOPES, LEAD_ADS_SCOPES

ALL = [*DEFAULT_SCOPES, *LEAD_ADS_SCOPES]
pytest_plugins = ("tests.fixtures_sandbox",)


@pytest.fixture
def pages(meta_sandbox, sandbox_control):
    control = PagesControl(meta_sandbox.url)
    yield control
    control.close()


def _page_token(graph, page_id: str) -> str:
    return next(p["access_token"] for p in graph.paginate("me/accounts", {
        "fields": "id,name,access_token,tasks"}) if p["id"] == page_id)


def test_a_person_lists_their_pages_with_page_tokens(pages, sandbox_control, graph_factory):
    mine = pages.create_page("10001", name="Mía")["page_id"]
    theirs = pages.create_page("10002", name="Ajena")["page_id"]
    graph = graph_factory(sandbox_control.issue_token("10001", scopes=ALL))

    listed = list(graph.paginate("me/accounts", {"fields": "id,name,access_token,tasks"}))

    assert [p["id"] for p in listed] == [mine] and theirs not in json.dumps(listed)
    assert "ADVERTISE" in listed[0]["tasks"] and listed[0]["access_token"].startswith("EAA")
    again = list(graph.paginate("me/accounts", {"fields": "id,access_token"}))
    assert again[0]["access_token"] == listed[0]["access_token"]  # stable, never expires
    no_scope = graph_factory(sandbox_control.issue_token("10001", scopes=DEFAULT_SCOPES))
    with pytest.raises(MetaPermissionDenied):
        no_scope.get("me/accounts")


def test_a_page_token_subscribes_reads_forms_and_leads(pages, sandbox_control, graph_factory):
    created = pages.create_page("10001", forms=2)
    page_id, forms = created["page_id"], created["form_ids"]
    user = graph_factory(sandbox_control.issue_token("10001", scopes=ALL))
    page = graph_factory(_page_token(user, page_id))
    now = int(time.time())
    old = pages.create_leads(page_id, deliver="none", created_time=now - 3600, count=3)
    new = pages.create_leads(page_id, deliver="none", created_time=now - 60, count=2,
                             campaign_id="11", ad_id="12")

    with pytest.raises(MetaTokenInvalid):  # a user token where a Page token is needed: 190
        user.post(f"{page_id}/subscribed_apps", {"subscribed_fields": "leadgen"})
    assert page.post(f"{page_id}/subscribed_apps", {"subscribed_fields": "leadgen"}) == {
        "success": True}
    assert page.get(f"{page_id}/subscribed_apps")["data"][0]["subscribed_fields"] == ["leadgen"]
    assert [f["id"] for f in page.paginate(f"{page_id}/leadgen_forms")] == forms
    filtering = json.dumps([{"field": "time_created", "operator": "GREATER_THAN",
                             "value": now - 600}])
    recent = list(page.paginate(f"{forms[0]}/leads", {"filtering": filtering, "limit": 1,
                                                      "fields": "id,field_data,campaign_id"}))
    assert sorted(r["id"] for r in recent) == sorted(lead["id"] for lead in new)
    assert all(r["campaign_id"] == "11" for r in recent)
    assert len(list(page.paginate(f"{forms[0]}/leads", {"limit": 2}))) == 5
    lead = page.get(old[0]["id"], {"fields": "created_time,field_data,ad_id,form_id,is_organic"})
    assert lead["form_id"] == forms[0] and lead["is_organic"] is True
    assert {f["name"] for f in lead["field_data"]} == {"full_name", "email", "phone_number"}


def test_what_a_person_cannot_reach_answers_meta_s_errors(pages, sandbox_control, graph_factory):
    mine = pages.create_page("10001")["page_id"]
    theirs = pages.create_page("10002")
    their_lead = pages.create_leads(theirs["page_id"], deliver="none")[0]
    my_page = graph_factory(_page_token(
        graph_factory(sandbox_control.issue_token("10001", scopes=ALL)), mine))

    for call in (lambda: my_page.get(f"{theirs['page_id']}/leadgen_forms"),
                 lambda: my_page.get(f"{theirs['form_ids'][0]}/leads"),
                 lambda: my_page.get(their_lead["id"]),
                 lambda: my_page.get("999999999999")):
        with pytest.raises(MetaRequestError) as caught:
            call()
        assert (caught.value.code, caught.value.subcode) == (100, 33)
    pages.set_access(mine, "10001", tasks=[])  # the person leaves the Page
    with pytest.raises(MetaTokenInvalid) as caught:
        my_page.get(f"{mine}/leadgen_forms")
    assert caught.value.subcode == 492


def test_faults_and_latency_apply_to_the_lead_routes(pages, sandbox_control, graph_factory):
    page_id = pages.create_page("10001")["page_id"]
    lead = pages.create_leads(page_id, deliver="none")[0]
    page = graph_factory(_page_token(graph_factory(sandbox_control.issue_token(
        "10001", scopes=ALL)), page_id), timeout=0.5)
    sandbox_control.inject_fault("transient", rf"/{lead['id']}$", count=1)
    assert page.get(lead["id"])["id"] == lead["id"]  # the client retried the 500
    sandbox_control.inject_fault("timeout", rf"/{lead['id']}$", count=10, seconds=1)
    with pytest.raises(MetaTransient):
        page.get(lead["id"])
    sandbox_control.clear_faults()
    sandbox_control.set_latency(r"/leadgen_forms", 300)
    started = time.monotonic()
    page.get(f"{page_id}/leadgen_forms")
    assert time.monotonic() - started >= 0.3


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[tuple[bytes, str]] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.bodies.append((raw, self.headers["X-Hub-Signature-256"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_notifications_are_signed_and_sent_only_for_subscribed_pages(pages, sandbox_control,
                                                                      graph_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.bodies = []
    try:
        pages.configure_webhooks(url=f"http://127.0.0.1:{server.server_port}/hook",
                                 enabled=True)
        page_id = pages.create_page("10001")["page_id"]
        pages.create_leads(page_id, deliver="sync")  # not subscribed yet: no notification
        page = graph_factory(_page_token(graph_factory(sandbox_control.issue_token(
            "10001", scopes=ALL)), page_id))
        page.post(f"{page_id}/subscribed_apps", {"subscribed_fields": "leadgen"})
        lead = pages.create_leads(page_id, deliver="sync", ad_id="77")[0]
        async_lead = pages.create_leads(page_id)[0]  # the background sender, as Meta
        deadline = time.monotonic() + 5
        while len(_Receiver.bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
    assert len(_Receiver.bodies) == 2
    raw, signature = _Receiver.bodies[0]
    assert signature == "sha256=" + hmac.new(SEED_APP_SECRET.encode(), raw,
                                              hashlib.sha256).hexdigest()
    body = json.loads(raw)
    assert body["object"] == "page" and body["entry"][0]["id"] == page_id
    [change] = body["entry"][0]["changes"]
    assert change["field"] == "leadgen"
    assert change["value"]["leadgen_id"] == lead["id"] and change["value"]["ad_id"] == "77"
    assert json.loads(_Receiver.bodies[1][0])["entry"][0]["changes"][0]["value"][
        "leadgen_id"] == async_lead["id"]

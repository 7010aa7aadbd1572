"""Lead Ads, webhook to stored lead (issue 22): Meta's signed leadgen notification is answered at
once, the read goes through the lead-read queue, and each lead becomes one `leads` row with the
contract's fields, however often it is announced, whatever Meta's read does meanwhile.

Real parts only: the sandbox over HTTP signs and posts the notifications, moto holds the queues
(delivered as Lambda's event sources would), Postgres stores the rows."""

from __future__ import annotations

import json
from datetime import datetime

from devstack.queues import deliver_all
from tests.fixtures_leads import drain_leads, lead_rows, read_rows
from tests.fixtures_whatsapp import post_webhook

pytest_plugins = ["tests.fixtures_leads"]


def _leadgen(page_id: str, leadgen_id: str, form_id: str = "1") -> dict:
    return {"object": "page", "entry": [{"id": page_id, "time": 1_760_000_000, "changes": [
        {"field": "leadgen", "value": {"leadgen_id": leadgen_id, "page_id": page_id,
                                       "form_id": form_id, "created_time": 1_760_000_000}}]}]}


def test_a_notified_lead_is_stored_once_with_the_contract_fields(api, pages, connected_page):
    page = connected_page
    lead = pages.create_leads(page.page_id, form_id=page.form_ids[1], deliver="sync",
                              name="Ana Pérez", phone="11 5555-1234", email="Ana@Example.com",
                              ad_id="2301", adset_id="2201", campaign_id="2101")[0]
    deliveries = [d for d in pages.webhook_log()["deliveries"]
                  if d["leadgen_ids"] == [lead["id"]]]
    assert [d["status_code"] for d in deliveries] == [200]
    assert read_rows(page.tenant_id)[0]["state"] == "pending"  # recorded before the read

    drained = drain_leads()

    assert drained["LeadReadQueue"] == 1 and drained["LeadReadQueue:failed"] == 0
    [row] = lead_rows(page.tenant_id)
    assert row["name"] == "Ana Pérez"
    assert row["phone"] == "+541155551234"  # no country code: the tenant's default (AR)
    assert row["email"] == "ana@example.com"
    assert (row["meta_campaign_id"], row["meta_ad_id"]) == ("2101", "2301")
    assert row["external_ids"] == {"meta_leadgen_id": lead["id"], "meta_form_id": page.form_ids[1],
                                   "meta_page_id": page.page_id}
    assert row["created_at"] == datetime.strptime(lead["created_time"], "%Y-%m-%dT%H:%M:%S%z")
    assert row["lead_source"] == "meta_lead_ads" and row["last_contacted_at"] is None
    [read] = read_rows(page.tenant_id)
    assert (read["state"], read["lead_id"], read["attempts"]) == ("stored", row["id"], 0)


def test_a_stored_lead_wakes_its_tenant_s_follow_ups(api, pages, connected_page):
    page = connected_page
    deliver_all(queues={"HsmDispatchQueue"})  # whatever earlier tests left
    pages.create_leads(page.page_id, deliver="sync")

    import boto3

    from devstack.queues import queue_url

    drain_leads()
    sqs = boto3.client("sqs")
    bodies = []
    while batch := sqs.receive_message(QueueUrl=queue_url("HsmDispatchQueue"),
                                       MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url("HsmDispatchQueue"),
                               ReceiptHandle=message["ReceiptHandle"])
    woken = [b for b in bodies if b["tenant_id"] == page.tenant_id]
    assert [b["reason"] for b in woken] == ["lead_stored"]


def test_repeated_and_rebatched_notifications_store_one_row(api, pages, connected_page):
    page = connected_page
    leads = pages.create_leads(page.page_id, count=3, deliver="sync")
    ids = [lead["id"] for lead in leads]
    pages.notify(page.page_id, ids)  # Meta retries...
    pages.notify(page.page_id, ids[:2])  # ...and batches repeat
    drain_leads()
    pages.notify(page.page_id, ids)  # after the reads: nothing is queued again

    assert drain_leads()["LeadReadQueue"] == 0
    rows = lead_rows(page.tenant_id)
    assert sorted(r["meta_leadgen_id"] for r in rows) == sorted(ids)
    assert all(r["state"] == "stored" for r in read_rows(page.tenant_id))


def test_a_wrong_signature_is_refused_and_nothing_is_recorded(api, pages, connected_page):
    page = connected_page
    lead = pages.create_leads(page.page_id, deliver="none")[0]
    payload = _leadgen(page.page_id, lead["id"])

    wrong = post_webhook(api, payload, signature="sha256=" + "0" * 64)
    missing = post_webhook(api, payload, signature=None)

    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert read_rows(page.tenant_id) == []
    assert drain_leads()["LeadReadQueue"] == 0
    assert lead_rows(page.tenant_id) == []


def test_a_page_no_tenant_connected_is_ignored(api, pages, lead_page):
    lead = pages.create_leads(lead_page.page_id, deliver="none")[0]
    response = post_webhook(api, _leadgen(lead_page.page_id, lead["id"]))
    assert response.status_code == 200
    assert response.json()["received"]["unknown_page"] == 1
    assert read_rows(lead_page.tenant_id) == []


def test_malformed_changes_are_skipped_and_the_rest_is_read(api, pages, connected_page):
    page = connected_page
    lead = pages.create_leads(page.page_id, deliver="none")[0]
    good = _leadgen(page.page_id, lead["id"])["entry"][0]["changes"][0]
    payload = {"object": "page", "entry": [{"id": page.page_id, "changes": [
        good, {"field": "leadgen", "value": {"leadgen_id": "not-digits"}},
        {"field": "feed", "value": {}}, "text", {"field": "leadgen", "value": []}]}, 7]}
    response = post_webhook(api, payload)
    assert response.status_code == 200
    summary = response.json()["received"]
    assert (summary["leads_queued"], summary["ignored"]) == (1, 5)
    drain_leads()
    assert [r["meta_leadgen_id"] for r in lead_rows(page.tenant_id)] == [lead["id"]]


def test_the_webhook_answers_before_any_read(api, pages, connected_page, meta):
    """The read happens after the answer: when the notification has been answered 200, Meta
    has not been asked for the lead and nothing is stored; the queue's consumer does both."""
    page = connected_page
    meta.clear_requests()
    lead = pages.create_leads(page.page_id, deliver="sync")[0]  # returns once answered
    answered = [d for d in pages.webhook_log()["deliveries"] if d["leadgen_ids"] == [lead["id"]]]
    assert [d["status_code"] for d in answered] == [200]
    assert meta.requests(f"/{lead['id']}") == [] and lead_rows(page.tenant_id) == []
    drain_leads()
    assert [r["status"] for r in meta.requests(f"/{lead['id']}")] == [200]
    assert len(lead_rows(page.tenant_id)) == 1

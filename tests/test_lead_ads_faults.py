"""Lead Ads under faults (issue 22): Meta's 5xx and timeouts on the lead read are retried and the
lead stored once; a lead that cannot be read is recorded with its reason, never lost; the
reconciliation finds the leads no notification announced; and nothing of a Page token ever
reaches a response or a log line."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from devstack.lambda_context import LocalContext
from shared.platform.settings import get_settings
from tests.fixtures_leads import age_reconciliation, drain_leads, lead_rows, read_rows
from tests.fixtures_tokens import load_event

pytest_plugins = ["tests.fixtures_leads", "tests.fixtures_tokens"]


@pytest.fixture
def quick_reads(monkeypatch):
    """Reads give up sooner, so fault tests take seconds: 1 s per attempt, 2 attempts."""
    monkeypatch.setenv("LEAD_READ_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("LEAD_READ_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _read_path(leadgen_id: str) -> str:
    return rf"/v\d+\.\d+/{leadgen_id}$"


def test_5xx_on_the_read_is_retried_and_the_lead_stored_once(pages, connected_page,
                                                              sandbox_faults, meta):
    page = connected_page
    lead = pages.create_leads(page.page_id, deliver="none")[0]
    # Five 500s: the client's four tries of the first delivery, then one of the second.
    sandbox_faults.inject_fault("transient", _read_path(lead["id"]), count=5, method="GET")
    meta.clear_requests()
    pages.notify(page.page_id, [lead["id"]])

    drained = drain_leads()

    assert drained["LeadReadQueue"] == 2 and drained["LeadReadQueue:failed"] == 1
    [row] = lead_rows(page.tenant_id)
    assert row["meta_leadgen_id"] == lead["id"]
    [read] = read_rows(page.tenant_id)
    assert (read["state"], read["attempts"]) == ("stored", 1)
    assert read["failure_reason"] is None
    reads = [r for r in meta.requests(f"/{lead['id']}") if r["method"] == "GET"]
    assert [r["status"] for r in reads] == [500] * 5 + [200]


def test_a_timeout_on_the_read_is_retried_and_the_lead_stored_once(
        pages, connected_page, sandbox_faults, quick_reads):
    page = connected_page
    lead = pages.create_leads(page.page_id, deliver="none")[0]
    sandbox_faults.inject_fault("timeout", _read_path(lead["id"]), count=1, seconds=2.5,
                                method="GET")
    pages.notify(page.page_id, [lead["id"]])

    drain_leads()

    assert [r["meta_leadgen_id"] for r in lead_rows(page.tenant_id)] == [lead["id"]]
    assert read_rows(page.tenant_id)[0]["state"] == "stored"


def test_a_lead_meta_keeps_failing_is_recorded_failed_with_its_reason(
        pages, connected_page, sandbox_faults, quick_reads):
    page = connected_page
    lead = pages.create_leads(page.page_id, deliver="none")[0]
    sandbox_faults.inject_fault("transient", _read_path(lead["id"]), count=100, method="GET")
    pages.notify(page.page_id, [lead["id"]])

    drained = drain_leads()

    # Two deliveries (LEAD_READ_MAX_ATTEMPTS), then the read is recorded and the message done:
    # nothing left in the queue or dead-lettered, and the record says why.
    assert drained["LeadReadQueue"] == 2
    [read] = read_rows(page.tenant_id)
    assert (read["state"], read["attempts"]) == ("failed", 2)
    assert read["failure_reason"].startswith("meta_unavailable")
    assert lead_rows(page.tenant_id) == []


def test_a_lead_meta_refuses_is_recorded_at_once(pages, connected_page, sandbox_faults):
    page = connected_page
    lead = pages.create_leads(page.page_id, deliver="none")[0]
    sandbox_faults.inject_fault("error", _read_path(lead["id"]), count=1, code=100, subcode=33,
                                method="GET")
    pages.notify(page.page_id, [lead["id"]])

    assert drain_leads()["LeadReadQueue"] == 1
    [read] = read_rows(page.tenant_id)
    assert (read["state"], read["failure_reason"]) == ("failed", "meta_refused:100_33")


def test_a_page_token_that_lost_its_access_records_the_read_and_flags_the_page(
        pages, connected_page):
    page = connected_page
    lead = pages.create_leads(page.page_id, deliver="none")[0]
    pages.set_access(page.page_id, page.user_id, tasks=[])  # the person left the Page
    pages.notify(page.page_id, [lead["id"]])

    drain_leads()

    [read] = read_rows(page.tenant_id)
    assert (read["state"], read["failure_reason"]) == ("failed", "page_token_invalid:190_492")
    from shared.leads import pages_store
    from shared.platform.db import tenant_tx

    with tenant_tx(page.tenant_id) as conn:
        assert pages_store.get(conn, page.page_id).status == "needs_reconnect"


def _run_schedule() -> dict:
    from functions.lead_reconcile.app import lambda_handler

    event = copy.deepcopy(load_event("lead_reconcile_scheduled.json"))
    return lambda_handler(event, LocalContext(function_name="lead_reconcile",
                                              timeout_seconds=300))


def test_reconciliation_finds_the_leads_no_notification_announced(pages, connected_page):
    page = connected_page
    announced = pages.create_leads(page.page_id, deliver="sync")
    drain_leads()
    missed = pages.create_leads(page.page_id, form_id=page.form_ids[1], count=2,
                                deliver="none")  # the app was unsubscribed, an outage...
    age_reconciliation(page.tenant_id, page.page_id,
                       datetime.now(UTC) - timedelta(hours=2))

    summary = _run_schedule()
    drained = drain_leads()

    assert summary["queued"] >= 1 and summary["failed"] == 0
    assert drained["LeadReconcileQueue"] >= 1 and drained["LeadReconcileQueue:failed"] == 0
    ids = {r["meta_leadgen_id"] for r in lead_rows(page.tenant_id)}
    assert ids == {lead["id"] for lead in announced + missed}
    # The Page's time moved: the next run does not queue it again.
    from shared.leads import pages_store
    from shared.platform.db import tenant_tx

    with tenant_tx(page.tenant_id) as conn:
        assert pages_store.get(conn, page.page_id).reconciled_at > datetime.now(UTC) - \
            timedelta(minutes=5)


def test_two_reconciliations_at_once_store_each_lead_once(pages, connected_page):
    from concurrent.futures import ThreadPoolExecutor

    from shared.leads.reconcile import reconcile_page

    page = connected_page
    pages.create_leads(page.page_id, count=30, deliver="none")
    since = datetime.now(UTC) - timedelta(days=1)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: reconcile_page(page.tenant_id, page.page_id,
                                                      since=since), range(2)))

    assert sum(r["stored"] for r in runs) == 30
    assert len(lead_rows(page.tenant_id)) == 30


def test_a_reconciliation_meta_interrupts_keeps_the_page_due(pages, connected_page,
                                                             sandbox_faults):
    from shared.leads.reconcile import reconcile_page

    page = connected_page
    before = datetime.now(UTC) - timedelta(hours=2)
    age_reconciliation(page.tenant_id, page.page_id, before)
    pages.create_leads(page.page_id, deliver="none")
    sandbox_faults.inject_fault("transient", r"/leadgen_forms", count=10, method="GET")

    summary = reconcile_page(page.tenant_id, page.page_id)

    assert summary["complete"] is False and summary["error"].startswith("meta_unavailable")
    from shared.leads import pages_store
    from shared.platform.db import tenant_tx

    with tenant_tx(page.tenant_id) as conn:
        assert pages_store.get(conn, page.page_id).reconciled_at == before
    sandbox_faults.clear_faults()
    assert reconcile_page(page.tenant_id, page.page_id)["stored"] == 1


def test_no_page_token_in_responses_or_logs(api, pages, lead_page, captured_logs):
    pages.create_leads(lead_page.page_id, deliver="none", created_time=int(time.time()) - 60)
    responses = [api.get("/crm/marketing/pages", tenant_id=lead_page.tenant_id),
                 api.post("/crm/marketing/pages/connect", tenant_id=lead_page.tenant_id,
                          json={"page_id": lead_page.page_id})]
    pages.create_leads(lead_page.page_id, deliver="sync")
    drain_leads()
    responses.append(api.get("/crm/marketing/leads/ads", tenant_id=lead_page.tenant_id))

    from shared.leads import pages_store
    from shared.platform.db import tenant_tx

    with tenant_tx(lead_page.tenant_id) as conn:
        stored = pages_store.get(conn, lead_page.page_id)
    page_token = stored.token()
    secrets = [page_token, lead_page.token, stored.ciphertext.hex()]
    assert all(r.status_code == 200 for r in responses)
    texts = [r.text for r in responses] + [json.dumps(dict(r.headers)) for r in responses]
    logs = captured_logs.getvalue()
    assert "lead_reader_finished" in logs
    for secret in secrets:
        assert all(secret not in text for text in texts)
        assert secret not in logs


def test_a_page_token_copied_from_another_row_does_not_open(api, pages, connected_page):
    """The encryption context binds a ciphertext to its tenant and Page: one copied to another
    Page's row is refused by KMS, the read is recorded and the Page flagged, nothing is read
    with the wrong Page's token."""
    from shared.leads import pages_store
    from shared.platform.db import tenant_tx

    page = connected_page
    second = pages.create_page("10001")["page_id"]
    assert api.post("/crm/marketing/pages/connect", tenant_id=page.tenant_id,
                    json={"page_id": second}).status_code == 200
    with tenant_tx(page.tenant_id) as conn:
        conn.execute("UPDATE meta_pages SET ciphertext = (SELECT ciphertext FROM meta_pages"
                     " WHERE tenant_id = app_current_tenant() AND page_id = %s)"
                     " WHERE tenant_id = app_current_tenant() AND page_id = %s",
                     (page.page_id, second))
    lead = pages.create_leads(second, deliver="sync")[0]

    drain_leads()

    [read] = [r for r in read_rows(page.tenant_id) if r["leadgen_id"] == lead["id"]]
    assert (read["state"], read["failure_reason"]) == ("failed", "page_token_undecryptable")
    with tenant_tx(page.tenant_id) as conn:
        assert pages_store.get(conn, second).status == "needs_reconnect"
        assert pages_store.get(conn, page.page_id).status == "active"

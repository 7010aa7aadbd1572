"""Rule lead_created (issue 22, part B), driven the way AWS drives it: a stored lead wakes its
tenant with an SQS message (moto), the workers send through the sandbox over HTTP, and the
planner, every minute, is the safety net. Judged by what reached Meta (the sandbox) and
Postgres: once per lead, in seconds, and never to a lead it must not reach."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

from devstack.queues import deliver_all
from shared.hsm import claims, leases
from shared.hsm.planner import wake as planner_wake
from shared.hsm.tenant_run import DispatchHooks
from shared.platform import queues
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings

for _module in ("tests.fixtures_whatsapp", "tests.fixtures_dispatch", "tests.test_hsm_fanout"):
    if _module not in sys.modules:
        pytest.register_assert_rewrite(_module)

from tests.fixtures_dispatch import add_rule, connect_sender, expire_lease, logs, plan  # noqa: E402
from tests.fixtures_whatsapp import fetch, insert_lead  # noqa: E402
from tests.test_hsm_fanout import (  # noqa: E402
    QUEUE,
    drain,
    event_of,
    sent_phones,
    take,
    work,
)

pytest_plugins = ["tests.fixtures_whatsapp", "tests.fixtures_dispatch"]

RULES = "/crm/marketing/hsm/rules"


def add_lead_created_rule(tenant_id: str, *, delay_minutes: int = 0,
                          enabled_at: datetime | None = None,
                          send_window: dict[str, str] | None = None) -> str:
    """An enabled lead_created rule on the approved `lead_followup_es`, enabled as of
    `enabled_at` (default: now)."""
    with tenant_tx(tenant_id) as conn:
        row = conn.execute(
            "INSERT INTO automation_rules (tenant_id, name, trigger_type, delay_minutes, "
            "template_name, language, body_params, send_window, enabled, enabled_at) "
            "VALUES (%s, %s, 'lead_created', %s, 'lead_followup_es', 'es', %s, %s, true, "
            "coalesce(%s, now())) RETURNING id",
            (tenant_id, f"Bienvenida {uuid.uuid4().hex[:6]}", delay_minutes,
             Jsonb(["first_name"]), Jsonb(send_window) if send_window else None, enabled_at),
        ).fetchone()
    return str(row["id"])


def wake(tenant_id: str, copies: int = 1) -> None:
    """What the lead reader does once it has stored a lead (functions/lead_reader)."""
    for _ in range(copies):
        assert planner_wake(tenant_id)


def lead_row(tenant_id: str, lead_id: str) -> dict:
    [row] = fetch(tenant_id, "SELECT * FROM leads WHERE id = %s", (lead_id,))
    return row


def lease(tenant_id: str) -> dict:
    [row] = fetch(tenant_id, "SELECT * FROM hsm_dispatch_leases")
    return row


@pytest.fixture
def sender(stack, wa_sandbox, stack_sandbox, send_control, tenant_id):
    """A tenant with a fast sender and an enabled lead_created rule without delay."""
    setup = connect_sender(wa_sandbox, stack_sandbox, send_control, tenant_id)
    add_lead_created_rule(tenant_id)
    yield setup
    send_control.clear_errors(setup.phone_number_id)


@pytest.fixture
def bare_sender(stack, wa_sandbox, stack_sandbox, send_control, tenant_id):
    """A tenant with a fast sender and no rule yet."""
    setup = connect_sender(wa_sandbox, stack_sandbox, send_control, tenant_id)
    yield setup
    send_control.clear_errors(setup.phone_number_id)


# -- the wake ------------------------------------------------------------------------------------
def test_a_stored_lead_is_messaged_once_on_its_wake_and_counts_as_contacted(
        sender, send_control):
    lead_id = insert_lead(sender.tenant_id, name="Ana Pérez", phone="+34600111222")

    wake(sender.tenant_id)
    delivered = deliver_all(queues={QUEUE})

    assert delivered[QUEUE] >= 1 and not delivered[f"{QUEUE}:failed"]
    assert sent_phones(send_control, sender.phone_number_id) == ["+34600111222"]
    [log] = logs(sender.tenant_id)
    assert log["status"] == "SENT" and log["lead_id"] == uuid.UUID(lead_id)
    # Meta accepted it: the lead was contacted at the send time.
    assert lead_row(sender.tenant_id, lead_id)["last_contacted_at"] == log["sent_at"]
    # Nothing is left for the planner either.
    plan()
    deliver_all(queues={QUEUE})
    assert len(sent_phones(send_control, sender.phone_number_id)) == 1


def test_duplicate_wakes_send_nothing_twice(sender, send_control):
    insert_lead(sender.tenant_id, phone="+34600111223")
    insert_lead(sender.tenant_id, phone="+34600111224")

    wake(sender.tenant_id, copies=3)
    # Two workers take copies of the same wake at once.
    both = take({sender.tenant_id})
    assert len(both) == 3
    threads = [threading.Thread(target=work, args=(event_of([m]),)) for m in both]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deliver_all(queues={QUEUE})  # whatever a busy copy queued again

    phones = sent_phones(send_control, sender.phone_number_id)
    assert sorted(phones) == ["+34600111223", "+34600111224"]
    assert {r["status"] for r in logs(sender.tenant_id)} == {"SENT"}


def test_a_wake_that_finds_the_lease_held_is_not_lost(sender, send_control):
    """The running worker may have passed the point where it would see the new lead: the wake
    marks the lease, and the holder queues the tenant again as it lets go."""
    insert_lead(sender.tenant_id, phone="+34600111230")
    wake(sender.tenant_id)
    [first] = take({sender.tenant_id})
    seen: dict[str, object] = {}

    def a_lead_arrives_mid_run(n: int) -> None:
        if n != 1:
            return
        # The lead is stored and its wake handled by another worker while this run holds the
        # lease (in another thread: this one is the run's event loop).
        def other_worker() -> None:
            insert_lead(sender.tenant_id, phone="+34600111231")
            wake(sender.tenant_id)
            seen["answer"] = work(event_of(take({sender.tenant_id})))
            seen["woken"] = lease(sender.tenant_id)["woken"]

        thread = threading.Thread(target=other_worker)
        thread.start()
        thread.join()

    work(event_of([first]), hooks=DispatchHooks(after_result=a_lead_arrives_mid_run))

    assert seen["answer"] == {"batchItemFailures": []}
    assert seen["woken"] is True  # the busy worker left its mark and let its message go
    # The holder queued the tenant again as it let go.
    again = [json.loads(m["Body"]) for m in take({sender.tenant_id})]
    assert [body["reason"] for body in again] == ["wake"]
    work(event_of_bodies(again))
    phones = sent_phones(send_control, sender.phone_number_id)
    assert sorted(phones) == ["+34600111230", "+34600111231"]


def event_of_bodies(bodies: list[dict]) -> dict:
    queues.send(get_settings().hsm_dispatch_queue_url, bodies)
    return event_of(take({b["tenant_id"] for b in bodies}))


def test_the_wake_mark_and_the_release_serialise_on_the_lease_row(sender):
    """A wake's mark either reaches the holder or finds the lease free (and takes it)."""
    tenant = sender.tenant_id
    holder, waker = uuid.uuid4(), uuid.uuid4()
    with tenant_tx(tenant) as conn:
        assert leases.acquire(conn, tenant, holder, 60)
    with tenant_tx(tenant) as conn:
        assert not leases.acquire(conn, tenant, waker, 60)
        assert leases.mark_woken(conn)
    with tenant_tx(tenant) as conn:
        assert leases.let_go(conn, holder).woken
    # Let go: a later wake finds it free, marks nothing, and takes it.
    with tenant_tx(tenant) as conn:
        assert not leases.mark_woken(conn)
        assert leases.acquire(conn, tenant, waker, 60)
        assert lease(tenant)["woken"] is False  # a new holder starts unmarked
    with tenant_tx(tenant) as conn:
        assert leases.let_go(conn, waker) == leases.LeaseEnd()


# -- what a lead_created rule may message ------------------------------------------------------
def test_leads_created_before_the_rule_was_enabled_are_not_messaged(bare_sender, send_control):
    tenant = bare_sender.tenant_id
    enabled = datetime.now(UTC) - timedelta(minutes=10)
    add_lead_created_rule(tenant, enabled_at=enabled)
    insert_lead(tenant, phone="+34600111240", created_at=enabled - timedelta(seconds=1))
    insert_lead(tenant, phone="+34600111241", created_at=enabled - timedelta(days=30))
    insert_lead(tenant, phone="+34600111242", created_at=enabled + timedelta(seconds=1))

    wake(tenant)
    deliver_all(queues={QUEUE})
    plan()
    deliver_all(queues={QUEUE})

    assert sent_phones(send_control, bare_sender.phone_number_id) == ["+34600111242"]
    assert len(logs(tenant)) == 1


def test_enabling_a_rule_again_starts_from_then(api, bare_sender, send_control):
    tenant = bare_sender.tenant_id
    response = api.post(RULES, tenant_id=tenant, json={
        "name": "Bienvenida", "trigger_type": "lead_created", "template_name":
        "lead_followup_es", "language": "es", "body_params": ["first_name"],
        "enabled": False})
    assert response.status_code == 201, response.text
    rule = response.json()
    assert rule["delay_minutes"] == 0 and rule["delay_hours"] is None
    # While the rule is off (Meta's created_time has whole seconds, and so has enabled_at).
    insert_lead(tenant, phone="+34600111250", created_at=datetime.now(UTC) - timedelta(seconds=2))

    assert api.request("PATCH", f"{RULES}/{rule['id']}", tenant_id=tenant,
                     json={"enabled": True}).status_code == 200
    [stored] = fetch(tenant, "SELECT enabled_at FROM automation_rules")
    assert stored["enabled_at"] is not None
    insert_lead(tenant, phone="+34600111251")
    wake(tenant)
    deliver_all(queues={QUEUE})

    assert sent_phones(send_control, bare_sender.phone_number_id) == ["+34600111251"]
    # Patching an enabled rule's other fields keeps its enabled_at.
    assert api.request("PATCH", f"{RULES}/{rule['id']}", tenant_id=tenant,
                     json={"enabled": True, "delay_minutes": 5}).status_code == 200
    assert fetch(tenant, "SELECT enabled_at FROM automation_rules") == [stored]


def test_opted_out_leads_and_leads_without_a_phone_are_not_messaged(sender, send_control):
    insert_lead(sender.tenant_id, phone="+34600111260", whatsapp_opt_out=True)
    no_phone = insert_lead(sender.tenant_id, phone=None)
    fetch(sender.tenant_id, "UPDATE leads SET phone = NULL WHERE id = %s RETURNING 1",
          (no_phone,))
    insert_lead(sender.tenant_id, phone="+34600111261")

    wake(sender.tenant_id)
    deliver_all(queues={QUEUE})

    assert sent_phones(send_control, sender.phone_number_id) == ["+34600111261"]


def test_a_lead_contacted_by_someone_else_still_gets_the_welcome(sender, send_control):
    """lead_created does not wait on contact (CONTRACT "Lead Ads"); lead_followup does."""
    later = datetime.now(UTC) + timedelta(hours=1)
    lead_id = insert_lead(sender.tenant_id, phone="+34600111270", last_contacted_at=later)

    wake(sender.tenant_id)
    deliver_all(queues={QUEUE})

    assert sent_phones(send_control, sender.phone_number_id) == ["+34600111270"]
    # The contact time never moves backwards.
    assert lead_row(sender.tenant_id, lead_id)["last_contacted_at"] == later


def test_the_send_window_holds_lead_created_messages_until_it_opens(bare_sender, send_control):
    tenant = bare_sender.tenant_id
    now = datetime.now(UTC)
    closed = {"start": (now + timedelta(hours=2)).strftime("%H:%M"),
              "end": (now + timedelta(hours=3)).strftime("%H:%M"), "timezone": "UTC"}
    add_lead_created_rule(tenant, send_window=closed)
    insert_lead(tenant, phone="+34600111280")

    wake(tenant)
    deliver_all(queues={QUEUE})
    plan()
    deliver_all(queues={QUEUE})
    assert sent_phones(send_control, bare_sender.phone_number_id) == []
    assert logs(tenant) == []  # not claimed: it waits for the window

    open_now = {"start": (now - timedelta(hours=1)).strftime("%H:%M"),
                "end": (now + timedelta(hours=1)).strftime("%H:%M"), "timezone": "UTC"}
    fetch(tenant, "UPDATE automation_rules SET send_window = %s RETURNING 1", (Jsonb(open_now),))
    plan()  # the minute's plan finds it once the window is open
    deliver_all(queues={QUEUE})
    assert sent_phones(send_control, bare_sender.phone_number_id) == ["+34600111280"]


# -- the delay ---------------------------------------------------------------------------------
def test_the_delay_is_honoured_by_a_delayed_wake(bare_sender, send_control):
    tenant = bare_sender.tenant_id
    add_lead_created_rule(tenant, delay_minutes=1, enabled_at=datetime.now(UTC)
                          - timedelta(hours=1))
    # A lead stored 56 s after Meta created it: due in ~4 s.
    created = datetime.now(UTC) - timedelta(seconds=56)
    insert_lead(tenant, phone="+34600111290", created_at=created)

    wake(tenant)
    deliver_all(queues={QUEUE})

    # Not yet: the worker queued a wake for the moment it falls due, and the planner does not
    # queue the tenant before then.
    assert sent_phones(send_control, bare_sender.phone_number_id) == []
    wake_at = lease(tenant)["wake_at"]
    assert wake_at == created + timedelta(minutes=1)
    # A burst of further wakes queues no second wake for the same moment.
    wake(tenant, copies=2)
    deliver_all(queues={QUEUE})
    assert lease(tenant)["wake_at"] == wake_at

    while datetime.now(UTC) < wake_at + timedelta(seconds=1):
        time.sleep(0.2)
    deliver_all(queues={QUEUE})  # the delayed wake is visible now

    assert sent_phones(send_control, bare_sender.phone_number_id) == ["+34600111290"]
    [log] = logs(tenant)
    assert log["sent_at"] >= created + timedelta(minutes=1)


def test_a_delay_beyond_the_wake_horizon_is_the_planners(bare_sender, send_control):
    tenant = bare_sender.tenant_id
    add_lead_created_rule(tenant, delay_minutes=30)
    lead_id = insert_lead(tenant, phone="+34600111295")

    wake(tenant)
    deliver_all(queues={QUEUE})
    plan()
    deliver_all(queues={QUEUE})
    assert sent_phones(send_control, bare_sender.phone_number_id) == []
    assert lease(tenant)["wake_at"] is None  # 30 minutes is past SQS's 15-minute delay

    # Time passes: the minute's plan finds the lead due.
    fetch(tenant, "UPDATE leads SET created_at = now() - interval '30 minutes' WHERE id = %s "
          "RETURNING 1", (lead_id,))
    fetch(tenant, "UPDATE automation_rules SET enabled_at = now() - interval '1 hour' "
          "RETURNING 1")
    plan()
    deliver_all(queues={QUEUE})
    assert sent_phones(send_control, bare_sender.phone_number_id) == ["+34600111295"]


# -- faults ------------------------------------------------------------------------------------
def test_a_lost_wake_costs_a_minute_the_planner_finds_the_lead(sender, send_control):
    """The reader stored the lead and died before its wake left (or SQS lost it)."""
    insert_lead(sender.tenant_id, phone="+34600111300")

    plan()
    queued = [json.loads(m["Body"]) for m in take({sender.tenant_id})]
    assert [(b["tenant_id"], b["reason"]) for b in queued] == [(sender.tenant_id, "due")]
    work(event_of_bodies(queued))

    assert sent_phones(send_control, sender.phone_number_id) == ["+34600111300"]


def dead_run(tenant_id: str, *, permitted: bool) -> None:
    """What a worker killed mid-run leaves: its lease (lapsing soon), the lead reserved by it,
    and, when it died after the permit, the permit without a result (Meta may have it)."""
    run = uuid.uuid4()
    with tenant_tx(tenant_id) as conn:
        assert leases.acquire(conn, tenant_id, run, 60)
        [rule] = claims.enabled_rules(conn)
        [claim] = claims.reserve_new(conn, tenant_id, rule, run, 10)
        if permitted:
            assert claims.permit(conn, run, [claim.log_id]) == {claim.log_id}


def test_a_worker_killed_after_reserving_a_lead_loses_nothing(sender, send_control):
    insert_lead(sender.tenant_id, phone="+34600111310")
    dead_run(sender.tenant_id, permitted=False)

    wake(sender.tenant_id)  # SQS delivers the dead worker's wake again: the lease is held
    deliver_all(queues={QUEUE})
    assert sent_phones(send_control, sender.phone_number_id) == []
    expire_lease(sender.tenant_id)  # the dead run's lease lapses; the planner recovers its rows
    drain(sender.tenant_id)

    assert sent_phones(send_control, sender.phone_number_id) == ["+34600111310"]
    assert [r["status"] for r in logs(sender.tenant_id)] == ["SENT"]


def test_a_worker_killed_after_the_permit_never_sends_twice(sender, send_control):
    """Meta may have the message: it is never sent blindly again (at most once)."""
    insert_lead(sender.tenant_id, phone="+34600111311")
    dead_run(sender.tenant_id, permitted=True)
    expire_lease(sender.tenant_id)
    wake(sender.tenant_id)
    deliver_all(queues={QUEUE})
    with tenant_tx(sender.tenant_id) as conn:  # the permit times out without a result
        conn.execute("UPDATE automation_logs SET attempt_started_at = now() - interval "
                     "'21 min' WHERE status = 'PENDING' AND attempt_started_at IS NOT NULL")
    drain(sender.tenant_id)

    assert sent_phones(send_control, sender.phone_number_id) == []
    assert [r["status"] for r in logs(sender.tenant_id)] == ["UNKNOWN"]


# -- lead_followup after lead_created ----------------------------------------------------------
def test_a_follow_up_does_not_message_a_lead_the_welcome_reached(bare_sender, send_control):
    tenant = bare_sender.tenant_id
    add_lead_created_rule(tenant, enabled_at=datetime.now(UTC) - timedelta(hours=3))
    followup = add_rule(tenant, delay_hours=1)
    # Stored late (a reconciliation run found it): due for both rules at once.
    lead_id = insert_lead(tenant, phone="+34600111320",
                          created_at=datetime.now(UTC) - timedelta(hours=2))

    wake(tenant)
    deliver_all(queues={QUEUE})
    drain(tenant)

    assert sent_phones(send_control, bare_sender.phone_number_id) == ["+34600111320"]
    sent = [r for r in logs(tenant) if r["status"] == "SENT"]
    assert len(sent) == 1 and str(sent[0]["rule_id"]) != followup
    assert lead_row(tenant, lead_id)["last_contacted_at"] == sent[0]["sent_at"]
    # The follow-up either never claimed it or gave its claim up as not eligible.
    assert {(r["status"], r["error_code"]) for r in logs(tenant)
            if str(r["rule_id"]) == followup} <= {("SKIPPED", "lead_not_eligible")}


def test_a_late_delivery_webhook_for_an_unknown_send_marks_the_lead_contacted(
        sender, send_control, api):
    lead_id = insert_lead(sender.tenant_id, phone="+34600111330")
    log_id = fetch(sender.tenant_id, "INSERT INTO automation_logs (tenant_id, rule_id, lead_id, "
                   "template_name, language, phone, status) SELECT tenant_id, id, %s, "
                   "'lead_followup_es', 'es', '+34600111330', 'UNKNOWN' FROM automation_rules "
                   "RETURNING id", (lead_id,))[0]["id"]
    from shared.whatsapp import webhook_store

    at = datetime.now(UTC) - timedelta(minutes=5)
    with tenant_tx(sender.tenant_id) as conn:
        assert webhook_store.apply_delivery(conn, wamid="wamid.late1", log_id=str(log_id),
                                            status="delivered".upper(), at=at)
    assert lead_row(sender.tenant_id, lead_id)["last_contacted_at"] == at


@pytest.mark.parametrize("patch, field", [
    ({"delay_hours": 2}, "delay_hours"),  # a lead_created rule's delay is in minutes
    ({"delay_minutes": 1441}, "delay_minutes"),
    ({"trigger_type": "lead_followup"}, "trigger_type"),  # a trigger cannot change
])
def test_patching_a_lead_created_rule_is_validated(api, bare_sender, patch, field):
    tenant = bare_sender.tenant_id
    rule = api.post(RULES, tenant_id=tenant, json={
        "name": "Bienvenida", "trigger_type": "lead_created", "delay_minutes": 5,
        "template_name": "lead_followup_es", "language": "es",
        "body_params": ["first_name"]}).json()
    before = fetch(tenant, "SELECT * FROM automation_rules")

    response = api.request("PATCH", f"{RULES}/{rule['id']}", tenant_id=tenant, json=patch)

    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]]
    assert fetch(tenant, "SELECT * FROM automation_rules") == before

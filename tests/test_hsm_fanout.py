"""The dispatcher fanned out through SQS (issue 16), driven the way AWS drives it: the planner on
its tick, then the queue's messages handed to the workers in batches (moto SQS), judged by what
reached Meta (the sandbox) and Postgres. Exactly once holds through the ways SQS and Lambda
misbehave: a message delivered twice, to two workers at once, a worker killed mid-batch, and a
continuation racing the next plan."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from devstack.lambda_context import LocalContext
from devstack.queues import deliver_all, lambda_event, queue_url
from shared.hsm.tenant_run import DispatchHooks, send_reserve_seconds
from shared.hsm.worker import work_batch
from shared.platform.crypto import get_token_cipher
from shared.platform.db import tenant_tx

for _module in ("tests.fixtures_whatsapp", "tests.fixtures_dispatch"):
    if _module not in sys.modules:
        pytest.register_assert_rewrite(_module)

from tests.fixtures_dispatch import (  # noqa: E402
    add_leads,
    add_rule,
    connect_sender,
    expire_lease,
    logs,
    make_retries_due,
    plan,
    sync_templates_now,
)
from tests.fixtures_whatsapp import fetch  # noqa: E402

pytest_plugins = ["tests.fixtures_whatsapp", "tests.fixtures_dispatch"]

QUEUE = "HsmDispatchQueue"


def short_invocation() -> float:
    """~4 s to send after the reserve a send's answer needs: the dispatcher starts a tenant only
    with 2 s of sending left, so a slow start on a busy machine still leaves one."""
    return send_reserve_seconds() + 4.0


class HardKill(BaseException):
    """Like a Lambda killed mid-batch: nothing after it runs."""


# -- the queue as Lambda's event source sees it ---------------------------------------------------
def _sqs():
    return boto3.client("sqs")


def take(tenants: set[str] | None = None) -> list[dict[str, Any]]:
    """Receive every message now on the dispatch queue (they stay in flight, unseen by others);
    returns those for `tenants` (all when None) and makes the others visible again."""
    url = queue_url(QUEUE)
    mine, others = [], []
    while True:
        batch = _sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=600, AttributeNames=["All"])
        messages = batch.get("Messages", [])
        if not messages:
            break
        for message in messages:
            tenant = json.loads(message["Body"]).get("tenant_id")
            (mine if tenants is None or tenant in tenants else others).append(message)
    for message in others:
        _sqs().change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                         VisibilityTimeout=0)
    return mine


def event_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    arn = _sqs().get_queue_attributes(QueueUrl=queue_url(QUEUE), AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    return lambda_event(messages, arn)


def work(event: dict[str, Any], *, seconds: float = 60.0,
         hooks: DispatchHooks | None = None) -> dict[str, Any]:
    """One worker invocation on this batch, with `seconds` to run."""
    return work_batch(event, LocalContext("HsmWorkerFunction", seconds),
                      time.monotonic() + seconds, hooks=hooks)


def delete(messages: list[dict[str, Any]]) -> None:
    for message in messages:
        _sqs().delete_message(QueueUrl=queue_url(QUEUE), ReceiptHandle=message["ReceiptHandle"])


def together(n: int, fn) -> list[Any]:
    gate = threading.Barrier(n)

    def one(_):
        gate.wait(timeout=30)
        return fn()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def sent_phones(send_control, phone_number_id: str) -> list[str]:
    return [m["to"] for m in send_control.stats(phone_number_id, messages=True)["messages"]]


def assert_each_sent_once(send_control, setup, expected: int) -> None:
    phones = sent_phones(send_control, setup.phone_number_id)
    assert len(phones) == len(set(phones)) == expected
    rows = logs(setup.tenant_id)
    assert len(rows) == expected and {r["status"] for r in rows} == {"SENT"}


def drain(tenant_id: str) -> None:
    """Plan and deliver until the tenant has nothing left to send. A 130429 (sends bunched on
    a busy machine reach the sandbox's sliding window together) leaves a retry with a backoff:
    time passes (make_retries_due) and the next tick sends it, once."""
    plan()
    deliver_all(queues={QUEUE})
    while make_retries_due(tenant_id):
        plan()
        deliver_all(queues={QUEUE})


def decrypts() -> int:
    cipher = get_token_cipher()
    return cipher.kms_calls + cipher.cache_hits


@pytest.fixture
def sender(stack, wa_sandbox, stack_sandbox, send_control, tenant_id):
    """A tenant with a fast sender and an enabled 24-hour follow-up rule."""
    setup = connect_sender(wa_sandbox, stack_sandbox, send_control, tenant_id)
    add_rule(tenant_id)
    return setup


@pytest.fixture
def paced(stack, wa_sandbox, stack_sandbox, send_control, other_tenant_id):
    """Another tenant, paced at 100 messages a second: a run of a few hundred leads takes
    seconds, so a short invocation leaves a backlog."""
    setup = connect_sender(wa_sandbox, stack_sandbox, send_control, other_tenant_id,
                           max_per_second=100)
    add_rule(other_tenant_id)
    return setup


# -- the planner -------------------------------------------------------------------------------
def test_the_planner_queues_only_tenants_with_due_work_and_idle_ones_cost_nothing(
        sender, paced, stack_sandbox, send_control):
    due, idle = sender, paced
    add_leads(due.tenant_id, 3)
    add_leads(idle.tenant_id, 3, hours_old=1)  # a 24-hour rule: not due for another 23 hours
    requests_before = len(stack_sandbox.requests())
    decrypts_before = decrypts()

    planned = plan()

    assert planned["sent"] == planned["failed"] == planned["skipped"] == 0
    queued = {json.loads(m["Body"])["tenant_id"]: json.loads(m["Body"])
              for m in take({due.tenant_id, idle.tenant_id})}
    assert set(queued) == {due.tenant_id}
    assert queued[due.tenant_id]["reason"] == "due"
    # Planning calls nobody and decrypts nothing; the idle tenant was not even leased.
    assert len(stack_sandbox.requests()) == requests_before
    assert decrypts() == decrypts_before
    assert fetch(idle.tenant_id, "SELECT * FROM hsm_dispatch_leases") == []
    # Queued a moment ago and not run since: the next minute's plan leaves it out.
    plan()
    assert take({due.tenant_id}) == []


def test_rules_in_their_quiet_hours_are_not_queued(sender):
    now = datetime.now(UTC)
    closed = {"start": (now + timedelta(hours=2)).strftime("%H:%M"),
              "end": (now + timedelta(hours=3)).strftime("%H:%M"), "timezone": "UTC"}
    with tenant_tx(sender.tenant_id) as conn:
        conn.execute("UPDATE automation_rules SET send_window = %s", (json.dumps(closed),))
    add_leads(sender.tenant_id, 3)
    plan()
    assert take({sender.tenant_id}) == []


def test_a_scheduled_tick_then_the_workers_send_each_due_lead_once(sender, paced, send_control):
    add_leads(sender.tenant_id, 40)
    add_leads(paced.tenant_id, 40)

    planned = plan()
    delivered = deliver_all(queues={QUEUE})

    assert planned["tenants_queued"] >= 2
    assert delivered[QUEUE] >= 2 and delivered[f"{QUEUE}:failed"] == 0
    drain(paced.tenant_id)
    assert_each_sent_once(send_control, sender, 40)
    assert_each_sent_once(send_control, paced, 40)


# -- SQS and Lambda misbehaving -------------------------------------------------------------------
def test_the_same_message_delivered_twice_and_to_two_workers_at_once_sends_once(
        sender, send_control):
    add_leads(sender.tenant_id, 60)
    plan()
    messages = take({sender.tenant_id})
    assert len(messages) == 1
    event = event_of(messages)

    answers = together(2, lambda: work(event))  # two workers got the same message
    again = work(event)  # ...and SQS delivers it once more later
    delete(messages)

    assert all(a == {"batchItemFailures": []} for a in [*answers, again])
    assert_each_sent_once(send_control, sender, 60)


def test_a_duplicate_for_a_tenant_with_nothing_due_decrypts_nothing(sender, send_control):
    add_leads(sender.tenant_id, 5)
    plan()
    messages = take({sender.tenant_id})
    work(event_of(messages))
    before = decrypts()

    assert work(event_of(messages)) == {"batchItemFailures": []}  # delivered again, late

    assert decrypts() == before
    delete(messages)
    assert_each_sent_once(send_control, sender, 5)


def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
        sender, paced, send_control):
    add_leads(sender.tenant_id, 150)
    add_leads(paced.tenant_id, 150)
    plan()
    messages = take({sender.tenant_id, paced.tenant_id})
    assert len(messages) == 2

    def kill_after_30(n: int) -> None:
        if n == 30:
            raise HardKill("the invocation died")

    with pytest.raises(HardKill):
        work(event_of(messages), hooks=DispatchHooks(after_result=kill_after_30))

    # Nothing was deleted: after the visibility timeout SQS hands the batch out again, and
    # once the dead run's leases lapse the planner finds both tenants due as well.
    for setup in (sender, paced):
        expire_lease(setup.tenant_id)
    for message in messages:
        _sqs().change_message_visibility(QueueUrl=queue_url(QUEUE),
                                         ReceiptHandle=message["ReceiptHandle"],
                                         VisibilityTimeout=0)
    plan()
    deliver_all(queues={QUEUE})
    # What the dead run had permitted without a result times out to UNKNOWN, never re-sent.
    for setup in (sender, paced):
        with tenant_tx(setup.tenant_id) as conn:
            conn.execute("UPDATE automation_logs SET attempt_started_at = now() - "
                         "interval '21 min' WHERE status = 'PENDING' "
                         "AND attempt_started_at IS NOT NULL")
    plan()
    deliver_all(queues={QUEUE})
    for setup in (sender, paced):
        drain(setup.tenant_id)

    for setup in (sender, paced):
        rows = logs(setup.tenant_id)
        assert len(rows) == 150
        assert {r["status"] for r in rows} <= {"SENT", "UNKNOWN"}
        phones = sent_phones(send_control, setup.phone_number_id)
        assert len(phones) == len(set(phones))  # nobody got it twice
        sent = {r["phone"] for r in rows if r["status"] == "SENT"}
        unknown = {r["phone"] for r in rows if r["status"] == "UNKNOWN"}
        assert sent <= set(phones) and set(phones) - sent <= unknown


def test_a_backlog_that_outlasts_the_invocation_is_continued_at_once(paced, send_control):
    add_leads(paced.tenant_id, 800)
    plan()
    messages = take({paced.tenant_id})

    # An invocation with ~4 s of sending (2 s of it kept to start on a busy machine): at ~94/s
    # it cannot finish 800.
    answer = work(event_of(messages), seconds=short_invocation())
    delete(messages)

    assert answer == {"batchItemFailures": []}
    first = len(sent_phones(send_control, paced.phone_number_id))
    assert 0 < first < 800
    continuation = take({paced.tenant_id})
    assert [json.loads(m["Body"])["reason"] for m in continuation] == ["continuation"]
    for message in continuation:  # back on the queue, as the worker left it
        _sqs().change_message_visibility(QueueUrl=queue_url(QUEUE),
                                         ReceiptHandle=message["ReceiptHandle"],
                                         VisibilityTimeout=0)
    deliver_all(queues={QUEUE})
    drain(paced.tenant_id)
    assert_each_sent_once(send_control, paced, 800)


def test_a_continuation_racing_the_next_plan_sends_each_lead_once(paced, send_control):
    add_leads(paced.tenant_id, 800)
    plan()
    first = take({paced.tenant_id})
    work(event_of(first), seconds=short_invocation())
    delete(first)
    assert 0 < len(sent_phones(send_control, paced.phone_number_id)) < 800  # it ran, cut short
    plan()  # the next tick finds the tenant due again, beside the continuation
    racing = take({paced.tenant_id})
    assert sorted(json.loads(m["Body"])["reason"] for m in racing) == ["continuation", "due"]

    together(2, lambda: work(event_of([racing.pop()])))  # each to its own worker, at once
    drain(paced.tenant_id)
    assert_each_sent_once(send_control, paced, 800)


def test_a_malformed_message_fails_alone_and_is_dead_lettered(sender, send_control):
    add_leads(sender.tenant_id, 5)
    url = queue_url(QUEUE)
    _sqs().send_message(QueueUrl=url, MessageBody='{"tenant_id": "no spaces allowed"}')
    _sqs().send_message(QueueUrl=url, MessageBody=json.dumps(
        {"tenant_id": sender.tenant_id, "reason": "due"}))

    delivered = deliver_all(queues={QUEUE})

    assert delivered[f"{QUEUE}:failed"] >= 5  # retried until the redrive policy gave up
    assert_each_sent_once(send_control, sender, 5)
    dead = _sqs().receive_message(QueueUrl=queue_url("HsmDispatchDlq"),
                                  MaxNumberOfMessages=10).get("Messages", [])
    assert '{"tenant_id": "no spaces allowed"}' in [m["Body"] for m in dead]


# -- templates stay off the send path -------------------------------------------------------------
def test_no_send_waits_for_a_graph_read_of_templates(sender, stack_sandbox, send_control):
    with tenant_tx(sender.tenant_id) as conn:  # a list read two days ago
        conn.execute("UPDATE whatsapp_senders SET templates_synced_at = now() - interval '2 d'")
    add_leads(sender.tenant_id, 10)
    stack_sandbox.clear_requests()

    plan()
    deliver_all(queues={QUEUE})

    assert_each_sent_once(send_control, sender, 10)
    assert not stack_sandbox.requests("message_templates")
    # The periodic template sync is what reads it again, on its own queue.
    sync_templates_now()
    assert stack_sandbox.requests(f"{sender.waba_id}/message_templates")
    fresh = fetch(sender.tenant_id, "SELECT templates_synced_at FROM whatsapp_senders")[0]
    assert fresh["templates_synced_at"] > datetime.now(UTC) - timedelta(minutes=1)


def test_the_template_sync_reads_only_stale_lists(sender, wa_sandbox, stack_sandbox,
                                                   send_control, other_tenant_id):
    fresh = connect_sender(wa_sandbox, stack_sandbox, send_control, other_tenant_id)
    with tenant_tx(sender.tenant_id) as conn:
        conn.execute("UPDATE whatsapp_senders SET templates_synced_at = NULL")  # a webhook said
    stack_sandbox.clear_requests()

    sync_templates_now()

    assert stack_sandbox.requests(f"{sender.waba_id}/message_templates")
    assert not stack_sandbox.requests(f"{fresh.waba_id}/message_templates")


def test_a_container_keeps_a_data_key_for_every_tenant_a_worker_serves(stack):
    """10,000 due tenants over 16 workers is ~625 per container a pass, ~3,100 in the cache's
    five minutes: the default cache (4,096 keys) holds them all, so each decrypt past the first
    in a container's window is a cache hit, not a KMS call."""
    from shared.platform.settings import get_settings

    assert get_token_cipher().cache_size == get_settings().token_key_cache_size >= 10_000 * 5 // 16

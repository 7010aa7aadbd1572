"""Observability: Graph calls counted per invocation and published as two metrics for the failure
alarm; each invocation's log lines carry its own function's keys, also beside other functions."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading

import pytest

from devstack.lambda_context import LocalContext
from shared.hsm.threads import RunThreads
from shared.meta.errors import MetaTransient
from shared.platform.observability import entrypoint, logger

pytest_plugins = ("tests.fixtures_sandbox",)


def _emf_metrics(stdout: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                found[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return found


def test_meta_calls_and_failures_are_published_once_per_invocation(
        graph_factory, sandbox_control, capsys):
    token = sandbox_control.issue_token("10001")
    sandbox_control.inject_fault("transient", path="/me$", count=10)

    @entrypoint
    def handler(event, context):
        client = graph_factory(token, backoff_base=0.001)
        client.get("me/permissions")  # succeeds
        with pytest.raises(MetaTransient):
            client.get("me")  # fails on every attempt
        return client.request_count

    capsys.readouterr()
    attempts = handler({}, LocalContext(function_name="observability-test"))
    metrics = _emf_metrics(capsys.readouterr().out)

    assert attempts >= 2
    assert metrics["MetaApiCalls"] == attempts
    assert metrics["MetaApiFailures"] == attempts - 1


@pytest.fixture
def log_lines():
    """Every JSON line the shared Powertools logger writes during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger._logger.removeHandler(handler)


def test_functions_side_by_side_in_one_process_log_their_own_name(log_lines):
    """The local API runs each request's handler on its own thread: a dispatch still running
    when a webhook arrives must not log under the webhook function's name."""
    webhook_started = threading.Event()
    dispatch_may_finish = threading.Event()

    @entrypoint
    def dispatch(event, context):
        logger.info("dispatch_started")
        webhook_started.wait(10)
        logger.info("hsm_dispatch_finished")
        dispatch_may_finish.set()

    @entrypoint
    def webhook(event, context):
        webhook_started.set()
        logger.info("webhook_received")
        dispatch_may_finish.wait(10)
        logger.info("webhook_done")

    threads = [
        threading.Thread(target=dispatch, args=({}, LocalContext("HsmDispatchFunction"))),
        threading.Thread(target=webhook, args=({}, LocalContext("MetaWebhookFunction"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    names = {line["message"]: line.get("function_name") for line in log_lines()}
    assert names == {"dispatch_started": "HsmDispatchFunction",
                     "hsm_dispatch_finished": "HsmDispatchFunction",
                     "webhook_received": "MetaWebhookFunction",
                     "webhook_done": "MetaWebhookFunction"}
    # Between invocations the thread carries no function's keys.
    logger.info("outside_any_invocation")
    assert "function_name" not in log_lines()[-1]


def test_the_dispatchers_worker_threads_log_the_invoking_function(log_lines):
    @entrypoint
    def handler(event, context):
        async def work():
            threads = RunThreads()
            try:
                await asyncio.gather(*(threads.run(logger.info, f"in_thread_{n}")
                                       for n in range(2)))
            finally:
                threads.close()

        asyncio.run(work())

    handler({}, LocalContext("HsmDispatchFunction"))

    lines = {line["message"]: line for line in log_lines()}
    for message in ("in_thread_0", "in_thread_1"):
        assert lines[message]["function_name"] == "HsmDispatchFunction"
        assert lines[message]["function_request_id"]


def test_cold_start_is_per_function(log_lines):
    @entrypoint
    def handler(event, context):
        logger.info("ran")

    for name in ("ColdStartProbeA", "ColdStartProbeA", "ColdStartProbeB"):
        handler({}, LocalContext(name))
    assert [(line["function_name"], line["cold_start"]) for line in log_lines()] == [
        ("ColdStartProbeA", True), ("ColdStartProbeA", False), ("ColdStartProbeB", True)]

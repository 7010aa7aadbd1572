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


def _emf_records(stdout: str) -> list[dict]:
    records = []
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "_aws" in record:
            records.append(record)
    return records


def test_every_metric_carries_the_stage(stack, capsys, monkeypatch):
    """dev, staging and prod share a namespace and a region: each figure says its stage, also
    the single-metric records (HSM outcomes, OAuth outcomes) and the per-version 500 count."""
    from shared.hsm.dispatch import emit_message_metrics
    from shared.platform.observability import count_unhandled_error, counters, metrics
    from shared.platform.settings import get_settings

    monkeypatch.setenv("STAGE", "staging")
    get_settings.cache_clear()

    @entrypoint
    def handler(event, context):
        counters.incr("MetaApiCalls")
        metrics.add_metric(name="HsmTenantsQueued", unit="Count", value=1)
        emit_message_metrics(__import__("collections").Counter({"SENT": 2}))
        count_unhandled_error()

    capsys.readouterr()
    try:
        handler({}, LocalContext("StageProbeFunction"))
    finally:
        monkeypatch.delenv("STAGE")
        get_settings.cache_clear()
        metrics.set_default_dimensions(stage=get_settings().stage)
    records = _emf_records(capsys.readouterr().out)
    names = set()
    for record in records:
        assert record["stage"] == "staging"
        for directive in record["_aws"]["CloudWatchMetrics"]:
            assert all("stage" in dims for dims in directive["Dimensions"])
            names |= {m["Name"] for m in directive["Metrics"]}
    assert {"MetaApiCalls", "HsmTenantsQueued", "HsmMessagesSent", "UnhandledErrors"} <= names
    by_version = [r for r in records if r.get("function_version")]
    assert by_version and by_version[0]["function_name"] == "StageProbeFunction"


def test_an_api_request_logs_its_request_id_as_the_correlation_id(log_lines):
    from shared.platform.observability import API_CORRELATION_ID_PATH

    @entrypoint
    def handler(event, context):
        logger.info("handled")

    event = {"requestContext": {"requestId": "Ab1cD2eF3gH=", "http": {"method": "GET"}}}
    handler(event, LocalContext("TokenStatusFunction"))
    assert API_CORRELATION_ID_PATH == "requestContext.requestId"
    line = log_lines()[-1]
    assert line["correlation_id"] == "Ab1cD2eF3gH="
    assert "run_id" not in line


def test_every_log_line_of_a_job_carries_its_run_id(log_lines):
    """A scheduled run's id (the scheduler's execution id, template.yaml's Input) is on every
    line, also from the run's worker threads; a queue batch's run is its invocation."""
    @entrypoint
    def job(event, context):
        async def work():
            threads = RunThreads()
            try:
                await threads.run(logger.info, "in_db_thread")
            finally:
                threads.close()

        logger.info("job_started")
        asyncio.run(work())

    job({"source": "aws.scheduler", "detail-type": "Scheduled Event",
         "id": "7f1d6d2c-run", "detail": {}}, LocalContext("HsmDispatchFunction"))
    context = LocalContext("HsmWorkerFunction")
    job({"Records": [{"messageId": "m-1", "body": "{}"}]}, context)
    lines = log_lines()
    assert [line["run_id"] for line in lines] == ["7f1d6d2c-run", "7f1d6d2c-run",
                                                  context.aws_request_id, context.aws_request_id]

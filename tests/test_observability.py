"""Graph calls are counted per invocation and published as two metrics for the failure alarm."""

from __future__ import annotations

import json

import pytest

from devstack.lambda_context import LocalContext
from shared.meta.errors import MetaTransient
from shared.platform.observability import entrypoint

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

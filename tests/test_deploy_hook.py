"""Issue 20: before a new version takes traffic, the PreTraffic hook invokes it with the smoke
check; a version that cannot load, read its settings or reach Postgres stops the deployment.
The smoke check runs in the real handlers against the local stack; CodeDeploy's and Lambda's
APIs are botocore's Stubber (their wire format), answering with what the handlers return."""

from __future__ import annotations

import io
import json

import botocore.session
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from devstack.lambda_context import LocalContext
from devstack.stack import reset_caches
from shared.platform.deploy_hook import run_pre_traffic
from shared.platform.observability import SMOKE_CHECK_KEY

EVENT = {"DeploymentId": "d-ABC123", "LifecycleEventHookExecutionId": "hook-1"}


def _smoke(module: str) -> dict:
    handler = __import__(f"functions.{module}.app", fromlist=["lambda_handler"]).lambda_handler
    return handler({SMOKE_CHECK_KEY: True}, LocalContext(function_name=module))


def test_a_function_that_uses_postgres_checks_it_one_that_does_not_does_not(stack):
    assert _smoke("hsm_logs") == {"smoke": "ok", "checks": ["code", "settings", "database"]}
    assert _smoke("oauth_url") == {"smoke": "ok", "checks": ["code", "settings"]}


def test_a_version_that_cannot_reach_the_database_fails_its_smoke_check(stack, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2")
    reset_caches()
    try:
        answer = _smoke("hsm_rules")
    finally:
        monkeypatch.undo()
        reset_caches()
    assert answer["smoke"] == "failed" and answer["error"] == "OperationalError"
    assert answer["checks"] == ["code", "settings"]


def _clients(targets: list[tuple[str, str]], answers: list[dict], status: str):
    session = botocore.session.get_session()
    codedeploy = session.create_client("codedeploy", region_name="us-east-1",
                                       aws_access_key_id="x", aws_secret_access_key="x")
    lambda_client = session.create_client("lambda", region_name="us-east-1",
                                          aws_access_key_id="x", aws_secret_access_key="x")
    appspec = {"version": 0.0, "Resources": [
        {name: {"Type": "AWS::Lambda::Function",
                "Properties": {"Name": name, "Alias": "live", "CurrentVersion": "3",
                               "TargetVersion": version}}} for name, version in targets]}
    deploy_stub, lambda_stub = Stubber(codedeploy), Stubber(lambda_client)
    deploy_stub.add_response("get_deployment", {"deploymentInfo": {"revision": {
        "revisionType": "AppSpecContent",
        "appSpecContent": {"content": json.dumps(appspec)}}}}, {"deploymentId": "d-ABC123"})
    for (name, version), answer in zip(targets, answers, strict=True):
        payload = json.dumps(answer).encode()
        lambda_stub.add_response(
            "invoke", {"StatusCode": 200,
                       "Payload": StreamingBody(io.BytesIO(payload), len(payload))},
            {"FunctionName": name, "Qualifier": version,
             "Payload": json.dumps({SMOKE_CHECK_KEY: True}).encode()})
    deploy_stub.add_response("put_lifecycle_event_hook_execution_status",
                             {"lifecycleEventHookExecutionId": "hook-1"},
                             {"deploymentId": "d-ABC123",
                              "lifecycleEventHookExecutionId": "hook-1", "status": status})
    return codedeploy, lambda_client, deploy_stub, lambda_stub


@pytest.mark.parametrize(("module", "status"), [("hsm_logs", "Succeeded")])
def test_the_hook_lets_a_healthy_version_take_traffic(stack, module, status):
    codedeploy, lambda_client, deploy_stub, lambda_stub = _clients(
        [("marketing-hub-dev-HsmLogsFunction-x", "4")], [_smoke(module)], status)
    with deploy_stub, lambda_stub:
        assert run_pre_traffic(EVENT, codedeploy, lambda_client) == status
        deploy_stub.assert_no_pending_responses()


def test_the_hook_stops_a_deployment_whose_new_version_fails_the_check(stack, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2")
    reset_caches()
    try:
        broken = _smoke("hsm_rules")
    finally:
        monkeypatch.undo()
        reset_caches()
    codedeploy, lambda_client, deploy_stub, lambda_stub = _clients(
        [("marketing-hub-dev-HsmLogsFunction-x", "4"), ("marketing-hub-dev-HsmRules-y", "9")],
        [_smoke("hsm_logs"), broken], "Failed")
    with deploy_stub, lambda_stub:
        assert run_pre_traffic(EVENT, codedeploy, lambda_client) == "Failed"
        deploy_stub.assert_no_pending_responses()


def test_the_hook_reports_failed_when_codedeploy_cannot_be_read():
    session = botocore.session.get_session()
    codedeploy = session.create_client("codedeploy", region_name="us-east-1",
                                       aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(codedeploy)
    stub.add_client_error("get_deployment", "AccessDeniedException")
    stub.add_response("put_lifecycle_event_hook_execution_status",
                      {"lifecycleEventHookExecutionId": "hook-1"},
                      {"deploymentId": "d-ABC123", "lifecycleEventHookExecutionId": "hook-1",
                       "status": "Failed"})
    with stub:
        assert run_pre_traffic(EVENT, codedeploy, None) == "Failed"
        stub.assert_no_pending_responses()

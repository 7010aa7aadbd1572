"""The sample events in events/ stay true: each one is handed to its function's handler, on the
local stack, exactly as `sam local invoke -e events/<file>.json` would, and the answer is sane.

An event file belongs to the function whose folder name prefixes it (`hsm_rules_create_admin.json`
-> functions/hsm_rules). Every function in template.yaml has at least one event, and every event
file has a function, so a new function without a sample, or a sample of a renamed function, fails
here. HTTP answers must be below 500 and, when an error, carry the contract's error body; scheduled
and EventBridge runs answer a summary; the custom resource reports SUCCESS to CloudFormation.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from devstack.dev_routes import invoke_function
from devstack.local_api import ServerThread
from devstack.template import function_handlers, load_template, resources

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
NOT_EVENTS = {"env.json"}
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def function_folders() -> list[str]:
    """functions/<folder>/app.lambda_handler of every function in template.yaml."""
    return sorted(h.split("/")[1] for h in function_handlers().values())


def event_files() -> list[Path]:
    return sorted(p for p in EVENTS.glob("*.json") if p.name not in NOT_EVENTS)


def folder_of(path: Path, folders: list[str]) -> str | None:
    """The longest function folder that prefixes the file name (connect vs whatsapp_connect)."""
    owners = [f for f in folders if path.stem.startswith(f"{f}_")]
    return max(owners, key=len) if owners else None


def test_every_event_file_belongs_to_a_function_of_the_template():
    folders = function_folders()
    orphans = [p.name for p in event_files() if folder_of(p, folders) is None]
    assert orphans == []


def test_every_function_of_the_template_has_a_sample_event():
    files = event_files()
    folders = function_folders()
    missing = [f for f in folders if not any(folder_of(p, folders) == f for p in files)]
    assert missing == []


def declared_variables() -> tuple[set[str], dict[str, set[str]]]:
    """Environment variables template.yaml declares: for every function (Globals) and per
    function. `sam local invoke --env-vars` sets only declared names and ignores the rest."""
    template = load_template()
    globals_ = set(template.get("Globals", {}).get("Function", {}).get("Environment", {})
                   .get("Variables", {}))
    per_function = {name: globals_ | set((props.get("Environment") or {}).get("Variables", {}))
                    for name, props in resources("AWS::Serverless::Function").items()}
    return globals_, per_function


def test_env_json_sets_only_variables_the_template_declares():
    env = json.loads((EVENTS / "env.json").read_text())
    globals_, per_function = declared_variables()
    every_declared = set().union(*per_function.values())
    assert set(env["Parameters"]) <= every_declared
    assert set(env) - {"Parameters"} <= set(per_function)  # no stale function names
    for function, values in env.items():
        if function != "Parameters":
            assert set(values) <= per_function[function], function
    # A value for each variable the template cannot fill locally (references to its resources).
    assert env["MetaWebhookFunction"]["META_VERIFY_TOKEN_ARN"]
    assert globals_ - {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} \
        <= set(env["Parameters"])


class ResponseSink:
    """Stands in for CloudFormation's pre-signed S3 URL: records what the custom resource PUTs."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = ServerThread(self._app)

    def _app(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            self.bodies.append(json.loads(request.get_data()))
        return Response("", status=200)(environ, start_response)

    @property
    def url(self) -> str:
        return f"{self.server.url}/cloudformation-response"


@pytest.fixture
def response_sink():
    sink = ResponseSink()
    yield sink
    sink.server.stop()


def _for_tenant(event: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """The sample's tenant replaced by this test's own, so samples never share rows."""
    claims = (event.get("requestContext", {}).get("authorizer", {}).get("jwt", {})
              .get("claims"))
    if isinstance(claims, dict) and "custom:tenant_id" in claims:
        claims["custom:tenant_id"] = tenant_id
    detail = event.get("detail")
    if isinstance(detail, dict) and "tenant_id" in detail:
        detail["tenant_id"] = tenant_id
    for record in event.get("Records") or []:  # an SQS batch: each message names a tenant
        body = json.loads(record["body"])
        if "tenant_id" in body:
            record["body"] = json.dumps({**body, "tenant_id": tenant_id})
    return event


def _check_http(result: Any) -> None:
    assert isinstance(result, dict) and isinstance(result.get("statusCode"), int)
    status = result["statusCode"]
    assert 200 <= status < 500, result.get("body")
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    assert "default-src 'self'" in headers.get("content-security-policy", "")
    assert headers.get("x-content-type-options") == "nosniff"
    if status >= 400:
        error = json.loads(result["body"])["error"]
        assert _SNAKE.match(error["code"]) and error["message"]


def _check_summary(result: Any) -> None:
    assert isinstance(result, dict) and result
    assert all(isinstance(k, str) for k in result)
    # A sample the function cannot read is answered like this: it would have rotted.
    assert result.get("outcome") not in {"invalid_event", "ignored"}, result


SUMMARY_KEYS = {
    "token_refresh": {"checked", "refreshed", "failed", "needs_reconnect"},
    "hsm_dispatch": {"rules", "sent", "failed", "skipped", "tenants_queued"},
}


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.stem)
def test_the_handler_answers_its_sample_event(stack, tenant_id, response_sink, path):
    folder = folder_of(path, function_folders())
    assert folder is not None, f"{path.name} belongs to no function of template.yaml"
    event = _for_tenant(json.loads(path.read_text()), tenant_id)

    if "RequestType" in event:  # a CloudFormation custom resource request
        event["ResponseURL"] = response_sink.url
        invoke_function(folder, event)
        assert [b["Status"] for b in response_sink.bodies] == ["SUCCESS"]
        assert response_sink.bodies[0]["RequestId"] == event["RequestId"]
        return

    result = invoke_function(folder, event)
    if "http" in event.get("requestContext", {}):
        _check_http(result)
    elif "Records" in event:  # an SQS batch: every record done, none to retry
        assert result == {"batchItemFailures": []}
    elif event.get("detail-type") == "Scheduled Event" and folder in SUMMARY_KEYS:
        # The contract's summary of counts.
        assert set(result) == SUMMARY_KEYS[folder]
        assert all(isinstance(v, int) and v >= 0 for v in result.values())
    else:
        _check_summary(result)

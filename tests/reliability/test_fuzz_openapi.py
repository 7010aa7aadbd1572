"""Fuzzing the whole HTTP API from its published OpenAPI document (Schemathesis), plus the
regression tests for what the fuzzer found.

The document is generated from the functions' Powertools resolvers (devstack/openapi.py) and
served by the local API at /openapi.json. Schemathesis (CLI, a separate process) runs against the
live local API three times: with a valid admin JWT of a tenant connected to Meta and WhatsApp,
with no JWT, and with bad JWTs. Each run must end with zero 5xx and zero responses outside the
schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from devstack import jwt_tokens
from tests.reliability.conftest import assert_error, bearer, figure, operations

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
ROOT = Path(__file__).resolve().parents[2]
SEED = 20261128
# `make test` runs the quick profile (bounded for a 2-core machine); RELIABILITY_FUZZ=deep runs
# every phase with more examples (the figures in RELIABILITY.md come from a deep run).
DEEP = os.environ.get("RELIABILITY_FUZZ", "quick") == "deep"
# RELIABILITY_FUZZ_EXAMPLES raises the signed-in runs' examples per operation for a one-off run.
SIGNED_IN = {"max_examples": int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", 25)),
             "phases": "examples,coverage,fuzzing,stateful"} if DEEP else {
    "max_examples": 8, "phases": "examples,fuzzing,stateful"}
UNSIGNED = {"max_examples": 8, "phases": "coverage,fuzzing"} if DEEP else {
    "max_examples": 3, "phases": "fuzzing"}
SIGNED_IN_ROLES = ["admin", "member"] if DEEP else ["admin"]
UNSIGNED_LABELS = (["no_jwt", "forged_jwt", "expired_jwt", "no_tenant_claim"] if DEEP
                   else ["no_jwt", "forged_jwt"])


def run_schemathesis(stack, label: str, tmp_path: Path, *, headers: list[str],
                     max_examples: int, phases: str) -> dict:
    """One CLI run against the live local API; returns its JSON report (+ the console text)."""
    report = tmp_path / f"{label}.json"
    command = [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run",
        f"{stack.api_url}/openapi.json", "--url", stack.api_url,
        "--checks", "all", "--exclude-checks", "unsupported_method",
        "--max-examples", str(max_examples), "--seed", str(SEED),
        "--phases", phases, "--workers", "2", "--generation-database", "none",
        "--request-timeout", "30", "--report", "json", "--report-json-path", str(report),
    ]
    for header in headers:
        command += ["-H", header]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.reliability.schemathesis_hooks",
           "PYTHONPATH": str(ROOT), "RELIABILITY_WEBHOOK_SECRET": stack.env["META_APP_SECRET"]}
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          check=False, env=env)
    summary = json.loads(report.read_text())
    (tmp_path / f"{label}.log").write_text(done.stdout + done.stderr)
    summary["console"] = done.stdout[-6000:] + done.stderr[-2000:]
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    figure(f"fuzz_{label}", profile="deep" if DEEP else "quick",
           operations=summary["operations"]["tested"],
           test_cases=summary["test_cases"]["generated"],
           with_failures=summary["test_cases"]["with_failures"], errors=len(summary["errors"]),
           seconds=summary["wall_seconds"])
    return summary


def assert_clean(summary: dict) -> None:
    assert summary["operations"]["tested"] == summary["operations"]["total"], summary["console"]
    assert summary["failures"] == [], summary["console"]
    assert summary["errors"] == [], summary["console"]
    assert summary["test_cases"]["generated"] > 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/xml", "multipart/form-data; boundary=x",
                                          "multipart/form-data", "application/octet-stream"])
def test_undeclared_content_type_is_a_client_error_not_a_500(api, openapi_doc, tenant_id,
                                                             content_type):
    """Found by Schemathesis: a JSON route sent `Content-Type: text/plain` (any type Powertools
    does not parse) raised RequestUnsupportedContentType, and `multipart/form-data` without a
    boundary a bare ValueError; both surfaced as 500 internal_error."""
    body = b'{"name": "x", "delay_hours": 1, "template_name": "x", "language": "es"}'
    for method, path in _json_body_operations(openapi_doc):
        url = path.replace("{rule_id}", "00000000-0000-0000-0000-000000000000")
        response = api.http.request(method, url, content=body,
                                    headers={**bearer(tenant_id), "Content-Type": content_type})
        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert_error(response, response.status_code)


# -- the fuzz runs ---------------------------------------------------------------------------
@pytest.mark.parametrize("role", SIGNED_IN_ROLES)
def test_fuzz_signed_in_user_of_a_connected_tenant(stack, populated, tmp_path, role):
    """Every operation (examples, fuzzing, stateful: create a rule, then patch and delete it
    through the document's links; the deep profile adds the coverage phase's boundary and
    negative cases, and a member's run), as a user whose tenant has rows in every table: a Meta
    token, a WhatsApp sender with synced templates, a rule, a lead with a send log, an ad account
    with insights."""
    token = jwt_tokens.sign(populated.tenant_id, role=role, ttl=3600)
    summary = run_schemathesis(stack, role, tmp_path,
                               headers=[f"Authorization: Bearer {token}"], **SIGNED_IN)
    assert_clean(summary)


def _forged_token(tenant_id: str) -> str:
    """Well-formed, unexpired, right issuer and audience, signed with someone else's key."""
    claims = jwt.decode(jwt_tokens.sign(tenant_id), options={"verify_signature": False})
    return jwt.encode(claims, "someone-elses-signing-key-of-32-bytes+", algorithm="HS256")


@pytest.mark.parametrize("label", UNSIGNED_LABELS)
def test_fuzz_without_a_valid_sign_in(stack, tenant_id, tmp_path, label):
    """The same document with no JWT and with bad ones: the authorizer (or the function, for a
    token without a tenant claim) answers 401; the routes Meta calls still answer as
    documented."""
    token = {
        "no_jwt": None,
        "forged_jwt": _forged_token(tenant_id),
        "expired_jwt": jwt_tokens.sign(tenant_id, ttl=-60),
        "no_tenant_claim": jwt_tokens.sign(None),
    }[label]
    headers = [f"Authorization: Bearer {token}"] if token else []
    summary = run_schemathesis(stack, label, tmp_path, headers=headers, **UNSIGNED)
    assert_clean(summary)


# -- regression tests: failures the fuzzer found ---------------------------------------------
def _json_body_operations(doc):
    return [(method, path) for method, path, op in operations(doc)
            if "application/json" in op.get("requestBody", {}).get("content", {})
            and op.get("security")]


def test_document_lists_json_body_routes(openapi_doc):
    found = _json_body_operations(openapi_doc)
    assert ("POST", "/crm/marketing/hsm/rules") in found


@pytest.mark.parametrize("body", [b"1\r\xff", b"\xff\xfe{}", b'{"name": "\xe9"}'])
def test_non_utf8_body_is_an_input_error_not_a_500(api, openapi_doc, tenant_id, body):
    """Found by Schemathesis: bytes that are not UTF-8 reach Powertools base64-encoded and its
    body decoding raised UnicodeDecodeError, which surfaced as 500 internal_error."""
    for method, path in _json_body_operations(openapi_doc):
        url = path.replace("{rule_id}", "00000000-0000-0000-0000-000000000000")
        response = api.http.request(method, url, content=body,
                                    headers={**bearer(tenant_id),
                                             "Content-Type": "application/json"})
        assert response.status_code == 422, (method, path, response.status_code, response.text)
        assert_error(response, 422, "validation_error")

"""make rollback-deploy against Lambda (moto): only the aliases the last deployment moved go
back, by one version; a canary keeps its old version and loses its weights; DRY_RUN changes
nothing."""

from __future__ import annotations

import io
import time
import zipfile
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from devstack.rollback_deploy import ALIAS, Move, move_aliases, plan_move

REGION = "us-east-1"


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", f"def handler(e, c):\n    return {text!r}\n")
    return buffer.getvalue()


def _release(lam, name: str, text: str) -> str:
    lam.update_function_code(FunctionName=name, ZipFile=_zip(text))
    return lam.publish_version(FunctionName=name)["Version"]


@pytest.fixture
def lam(monkeypatch):
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("lambda", region_name=REGION)
        for name in ("changed", "unchanged", "shifting"):
            client.create_function(FunctionName=name, Runtime="python3.12", Role=role,
                                   Handler="app.handler", Code={"ZipFile": _zip("v1")})
            version = client.publish_version(FunctionName=name)["Version"]
            client.create_alias(FunctionName=name, Name=ALIAS, FunctionVersion=version)
        yield client


def _deploy(lam) -> datetime:
    """The next release: `changed` moves to v2, `shifting` is mid-canary, `unchanged` stays."""
    time.sleep(1.1)  # LastModified has one-second resolution
    began = datetime.now(UTC)
    time.sleep(1.1)
    lam.update_alias(FunctionName="changed", Name=ALIAS,
                     FunctionVersion=_release(lam, "changed", "v2"))
    new = _release(lam, "shifting", "v2")
    lam.update_alias(FunctionName="shifting", Name=ALIAS, FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {new: 0.1}})
    return began


def _alias(lam, name: str) -> tuple[str, dict]:
    alias = lam.get_alias(FunctionName=name, Name=ALIAS)
    return alias["FunctionVersion"], (alias.get("RoutingConfig") or {}).get(
        "AdditionalVersionWeights") or {}


def test_only_what_the_last_deployment_moved_goes_back(lam):
    began = _deploy(lam)
    moves = move_aliases(lam, ["changed", "unchanged", "shifting"], began, dry_run=False)
    assert moves == [Move("changed", "2", "1"), Move("shifting", "1", None)]
    assert _alias(lam, "changed") == ("1", {})
    assert _alias(lam, "shifting") == ("1", {})
    assert _alias(lam, "unchanged") == ("1", {})  # not one release too far


def test_dry_run_changes_nothing(lam):
    began = _deploy(lam)
    moves = move_aliases(lam, ["changed", "unchanged", "shifting"], began, dry_run=True)
    assert [m.function for m in moves] == ["changed", "shifting"]
    assert _alias(lam, "changed") == ("2", {})
    assert _alias(lam, "shifting")[1] != {}


def test_a_first_release_has_nothing_to_go_back_to():
    began = datetime(2026, 1, 1, tzinfo=UTC)
    published = {"1": datetime(2026, 1, 2, tzinfo=UTC)}
    assert plan_move("f", {"FunctionVersion": "1"}, published, began) is None

"""make rollback-deploy against Lambda (the local stack's moto server): only the aliases the last
deployment moved go back, by one version; a canary keeps its old version and loses its weights;
DRY_RUN changes nothing."""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from datetime import UTC, datetime

import boto3
import pytest

from devstack.rollback_deploy import ALIAS, Move, move_aliases, plan_move


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", f"def handler(e, c):\n    return {text!r}\n")
    return buffer.getvalue()


def _release(lam, name: str, text: str) -> str:
    lam.update_function_code(FunctionName=name, ZipFile=_zip(text))
    return lam.publish_version(FunctionName=name)["Version"]


@pytest.fixture
def lam(stack):
    """Three functions with a `live` alias on version 1, in the stack's moto server. (Not
    moto's in-process mock: leaving it resets every backend, the server's included.)"""
    suffix = uuid.uuid4().hex[:8]
    role = boto3.client("iam").create_role(RoleName=f"fn-{suffix}",
                                           AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    client = boto3.client("lambda")
    names = {kind: f"{kind}-{suffix}" for kind in ("changed", "unchanged", "shifting")}
    for name in names.values():
        client.create_function(FunctionName=name, Runtime="python3.12", Role=role,
                               Handler="app.handler", Code={"ZipFile": _zip("v1")})
        version = client.publish_version(FunctionName=name)["Version"]
        client.create_alias(FunctionName=name, Name=ALIAS, FunctionVersion=version)
    return client, names


def _deploy(lam, names: dict[str, str]) -> datetime:
    """The next release: `changed` moves to v2, `shifting` is mid-canary, `unchanged` stays."""
    time.sleep(1.1)  # LastModified has one-second resolution
    began = datetime.now(UTC)
    time.sleep(1.1)
    lam.update_alias(FunctionName=names["changed"], Name=ALIAS,
                     FunctionVersion=_release(lam, names["changed"], "v2"))
    new = _release(lam, names["shifting"], "v2")
    lam.update_alias(FunctionName=names["shifting"], Name=ALIAS, FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {new: 0.1}})
    return began


def _alias(lam, name: str) -> tuple[str, dict]:
    alias = lam.get_alias(FunctionName=name, Name=ALIAS)
    return alias["FunctionVersion"], (alias.get("RoutingConfig") or {}).get(
        "AdditionalVersionWeights") or {}


def test_only_what_the_last_deployment_moved_goes_back(lam):
    client, names = lam
    began = _deploy(client, names)
    moves = move_aliases(client, list(names.values()), began, dry_run=False)
    assert moves == [Move(names["changed"], "2", "1"), Move(names["shifting"], "1", None)]
    assert _alias(client, names["changed"]) == ("1", {})
    assert _alias(client, names["shifting"]) == ("1", {})
    assert _alias(client, names["unchanged"]) == ("1", {})  # not one release too far


def test_dry_run_changes_nothing(lam):
    client, names = lam
    began = _deploy(client, names)
    moves = move_aliases(client, list(names.values()), began, dry_run=True)
    assert [m.function for m in moves] == [names["changed"], names["shifting"]]
    assert _alias(client, names["changed"]) == ("2", {})
    assert _alias(client, names["shifting"])[1] != {}


def test_a_first_release_has_nothing_to_go_back_to():
    began = datetime(2026, 1, 1, tzinfo=UTC)
    published = {"1": datetime(2026, 1, 2, tzinfo=UTC)}
    assert plan_move("f", {"FunctionVersion": "1"}, published, began) is None

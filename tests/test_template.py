"""template.yaml stays in step with the code and the contract."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from devstack.template import ROOT, function_handlers, http_routes, load_template, resources

CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"


def _function_dirs() -> set[str]:
    return {p.parent.name for p in (ROOT / "functions").glob("*/app.py")}


def test_every_function_folder_is_in_the_template():
    declared = {h.split("/")[1] for h in function_handlers().values()}
    assert _function_dirs() <= declared, _function_dirs() - declared


@pytest.mark.parametrize("handler", sorted(set(function_handlers().values())))
def test_every_template_handler_imports(handler):
    assert re.fullmatch(r"functions/\w+/app\.lambda_handler", handler)
    module = importlib.import_module(handler.rsplit(".", 1)[0].replace("/", "."))
    assert callable(module.lambda_handler)


def _contract_routes() -> set[tuple[str, str]]:
    text = CONTRACT.read_text() if CONTRACT.exists() else ""
    routes = set()
    for line in text.splitlines():
        if not line.startswith("| `") or "/crm/" not in line:
            continue
        cell = line.split("|")[1]
        methods = re.findall(r"\b(GET|POST|PATCH|DELETE|PUT)\b", cell)
        paths = re.findall(r"(/crm/[\w/{}.-]+)", cell)
        # "`GET`, `POST /a`; `PATCH`, `DELETE /a/{id}`": each method goes with the next path.
        for part in cell.split(";"):
            part_methods = re.findall(r"\b(GET|POST|PATCH|DELETE|PUT)\b", part)
            part_paths = re.findall(r"(/crm/[\w/{}.-]+)", part)
            for path in part_paths:
                routes.update((m, path) for m in part_methods)
        assert methods and paths
    return routes


@pytest.mark.skipif(not CONTRACT.exists(), reason="the contract lives beside the repository")
def test_every_contract_route_is_declared():
    declared = {(r.method, r.path) for r in http_routes()}
    expected = _contract_routes()
    assert len(expected) >= 19
    assert expected - declared == set()


def test_only_meta_facing_routes_skip_the_authorizer():
    open_routes = {r.path for r in http_routes() if not r.authorized}
    assert open_routes <= {"/crm/auth/meta/callback", "/crm/webhooks/meta"}


def test_globals_fix_one_import_root_and_runtime():
    function = load_template()["Globals"]["Function"]
    assert function["CodeUri"] == "."
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["arm64"]
    assert function["Tracing"] == "Active"


def test_no_function_sets_its_own_code_uri():
    for name, props in resources("AWS::Serverless::Function").items():
        assert "CodeUri" not in props, name


def test_requirements_hold_runtime_dependencies_only():
    names = {re.split(r"[\[=<>]", line)[0].lower()
             for line in Path(ROOT / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")}
    assert names == {"aws-lambda-powertools", "boto3", "httpx", "sniffio", "pydantic",
                     "pydantic-settings", "psycopg", "cryptography", "aws-xray-sdk",
                     "phonenumbers"}

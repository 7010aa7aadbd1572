"""docs/openapi.json: generated from the code, committed, and complete enough to build a frontend
from. The fuzzer (tests/reliability/test_fuzz_openapi.py) checks live answers against the same
schemas; here: drift, completeness, the examples, and the rendered reference at /docs."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from devstack import api_docs, openapi
from devstack.openapi_schemas import OPERATIONS, TAGS
from devstack.template import http_routes

DOCUMENT = openapi.build_document()
BODY_ERRORS = {"413", "415"}


def _operations():
    return [(method.upper(), path, op) for path, ops in DOCUMENT["paths"].items()
            for method, op in ops.items()]


def _success(op: dict) -> tuple[str, dict]:
    return next((status, response) for status, response in op["responses"].items()
                if status[0] in "23")


def test_the_committed_document_is_the_codes():
    committed = openapi.COMMITTED.read_text() if openapi.COMMITTED.is_file() else ""
    assert committed == openapi.document_text(DOCUMENT), openapi.STALE_MESSAGE


def test_make_openapi_check_says_how_to_regenerate(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(openapi, "COMMITTED", stale)
    assert openapi.main(["--check"]) == 1
    assert "run `make openapi` and commit docs/openapi.json" in capsys.readouterr().err
    assert openapi.main([]) == 0
    assert openapi.main(["--check"]) == 0


def test_it_is_valid_openapi_with_servers_and_tags():
    validate_openapi(DOCUMENT)
    assert DOCUMENT["servers"][0]["url"].startswith("http://127.0.0.1:")
    assert any("execute-api" in server["url"] for server in DOCUMENT["servers"])
    assert [tag["name"] for tag in DOCUMENT["tags"]] == [tag["name"] for tag in TAGS]


def test_every_route_of_the_template_is_described():
    routes = {(r.method, r.path) for r in http_routes()}
    undescribed = sorted(routes - set(OPERATIONS))
    assert not undescribed, (
        f"{undescribed}: describe each in devstack/openapi_schemas.py OPERATIONS (summary, tag, "
        "success schema and example), then run `make openapi` and commit docs/openapi.json")
    ids = [op["operationId"] for _, _, op in _operations()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("method", "path", "op"), _operations(),
                         ids=[f"{m} {p}" for m, p, _ in _operations()])
def test_each_operation_explains_itself(method, path, op):
    assert op["summary"] != f"{method} {path}" and len(op["summary"]) > 10
    assert op["description"]
    assert op["tags"] and op["tags"][0] in {tag["name"] for tag in TAGS}
    status, success = _success(op)
    content = success.get("content")
    if content is None:
        assert status in ("204", "302")
        return
    (media, body), = content.items()
    schema = body["schema"]
    if media == "application/json":
        # No bare {"type": "object"}: every success body lists its fields.
        assert schema.get("properties") or schema.get("$ref"), f"{method} {path}: bare object"
        assert set(schema.get("required", [])) <= set(schema.get("properties", {}))
    assert "example" in body, f"{method} {path}: no example"
    if method in ("GET", "DELETE"):
        assert not BODY_ERRORS & set(op["responses"]), f"{method} {path} has no body"
    if "requestBody" in op:
        assert set(op["responses"]) >= BODY_ERRORS
    assert "default" in op["responses"]


def _validator(schema: dict) -> jsonschema.Draft202012Validator:
    # The schemas refer to "#/components/schemas/...": resolved in a root that holds them.
    return jsonschema.Draft202012Validator({**schema, "components": DOCUMENT["components"]})


@pytest.mark.parametrize(("method", "path", "op"), _operations(),
                         ids=[f"{m} {p}" for m, p, _ in _operations()])
def test_examples_match_their_schemas(method, path, op):
    examples = []
    for response in op["responses"].values():
        for media in (response.get("content") or {}).values():
            if "example" in media:
                examples.append((media["schema"], media["example"]))
    request = op.get("requestBody", {}).get("content", {}).get("application/json")
    if request and "example" in request:
        examples.append((request["schema"], request["example"]))
    for schema, example in examples:
        _validator(schema).validate(example)


def test_the_local_api_serves_it_with_itself_as_first_server(stack):
    served = httpx.get(f"{stack.api_url}/openapi.json", timeout=30).json()
    assert served["servers"][0]["url"] == stack.api_url
    assert served["paths"] == DOCUMENT["paths"]


def test_docs_renders_offline_under_a_strict_policy(stack):
    assert api_docs.installed(), "the renderer is missing: make install (docs-ui-requirements.txt)"
    page = httpx.get(f"{stack.api_url}/docs", timeout=30)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # scripts: this origin only (default-src)
    assert "<script>" not in page.text and "http" not in page.text.split("<body>")[0].replace(
        "http-equiv", "")
    for asset in ("/docs/swagger-ui/swagger-ui-bundle.js", "/docs/swagger-ui/swagger-ui.css",
                  "/docs/init.js"):
        response = httpx.get(f"{stack.api_url}{asset}", timeout=30)
        assert response.status_code == 200, asset
    assert "SwaggerUIBundle" in httpx.get(f"{stack.api_url}/docs/init.js", timeout=30).text
    assert json.loads(httpx.get(f"{stack.api_url}/openapi.json", timeout=30).text)["openapi"]

"""Values at the limits of each type, and the requests that put them into every route parameter
and body field of the published OpenAPI document (tests/reliability/test_limits.py).

Schemathesis explores the document at random; these are the edges a reviewer would try by hand,
every one of them in every place its type appears: the first and last representable dates (and
the day before the last, where month arithmetic overflows), integers past 32 and 64 bits and
past Python's 4,300-digit parsing limit, NUL, bidi and zero-width characters, unpaired
surrogates, JSON's NaN and Infinity tokens, deep nesting, wrong types. Deterministic: no
randomness, the same requests every run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

# -- values in a URL (query strings and path segments are text) --------------------------------
DATES = ["0001-01-01", "0000-01-01", "9999-12-31", "9999-12-30", "9999-12-01", "9999-11-30",
         "10000-01-01", "2024-02-29", "2023-02-29", "2026-13-01", "2026-00-10", "1970-01-01",
         "-2026-01-01", "20260101", "2026-01-01T00:00:00", "2026-01-01T25:00:00Z",
         "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-W01-1"]
INTEGERS = ["0", "-1", "1", "200", "201", "2147483647", "2147483648", "9223372036854775807",
            "9223372036854775808", "-9223372036854775809", "1" * 5000, "1.0", "1e3", "0x10",
            " 5", "\uff15", "NaN", "Infinity"]
TEXTS = ["", " ", "a" * 8192, "\x00", "nul\x00inside", "\u202etxt.exe", "zero\u200bwidth",
         "\U0001f600" * 64, "%", "%00", "'; DROP TABLE leads;--", "../../etc/passwd", "null",
         "true", "[]", "{}", "-1", "1e309", "00000000-0000-0000-0000-000000000000",
         "ffffffff-ffff-ffff-ffff-ffffffffffff", "a\r\nSet-Cookie: x=1", "\ufeff", "\U0010ffff"]

# -- values in a JSON body: raw JSON text, so tokens json.dumps would never write are sent too ----
_DEEP_LIST = "[" * 40 + "]" * 40
_DEEP_OBJECT = '{"a":' * 40 + "1" + "}" * 40
JSON_VALUES = ["null", "true", "false", "0", "-1", "2147483648", "9223372036854775808",
               "-9223372036854775809", "1" * 5000, "1.5", "1e308", "-1e308", "1e400", "NaN",
               "Infinity", "-Infinity", '""', json.dumps("x" * 100_000), '"\\u0000"',
               '"\\u202e\\u200b"', '"\\ud800"', '"\\udfff\\ud800"', '"\\ud83d\\ude00"', "[]",
               "{}", "[1, 2, 3]", '{"a": 1}', _DEEP_LIST, _DEEP_OBJECT, '"1"', '"true"',
               '"2026-01-01"', '"00:00"', '"23:59"', '"24:00"', '"Etc/GMT+14"',
               '"../../../../etc/localtime"', '"act_1"', '"' + "9" * 40 + '"']


_PLACEHOLDER = "__limit_value__"
_ABSENT = object()


def _field_paths(body: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every field of the body, nested objects' fields included (a rule's send window)."""
    paths = []
    for key, value in body.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += _field_paths(value, (*prefix, key))
    return paths


def _replaced(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = dict(body)
    if len(path) == 1:
        if value is _ABSENT:
            copy.pop(path[0], None)
        else:
            copy[path[0]] = value
        return copy
    copy[path[0]] = _replaced(copy[path[0]], path[1:], value)
    return copy


@dataclass(frozen=True)
class Probe:
    """One request: what it changes is in `label` (for the failure message)."""

    label: str
    method: str
    url: str
    body: str | None = None


def _resolve(doc: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    if schema and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return doc["components"]["schemas"][name]
    return schema or {}


def _kinds(schema: dict[str, Any]) -> set[str]:
    """The types (and `date`) a parameter schema admits, through anyOf/oneOf."""
    found: set[str] = set()
    for option in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        if option.get("format") == "date":
            found.add("date")
        kind = option.get("type")
        found.update(kind if isinstance(kind, list) else [kind] if kind else [])
    return found


def query_values(schema: dict[str, Any], name: str) -> list[str]:
    kinds = _kinds(schema)
    values = list(TEXTS)
    if "date" in kinds or name in ("from", "to"):
        values += DATES
    if "integer" in kinds or "number" in kinds:
        values += INTEGERS
    return values


def probes(doc: dict[str, Any], method: str, path: str, op: dict[str, Any],
           path_values: dict[str, str], bodies: dict[tuple[str, str], dict[str, Any]]
           ) -> Iterator[Probe]:
    """Every parameter of the operation at every limit value, one at a time; then, for a JSON
    body, every field of a valid body at every JSON limit value, each field left out, and an
    unknown field added."""
    base_url = path
    for name, value in path_values.items():
        base_url = base_url.replace("{" + name + "}", value)
    body = bodies.get((method, path))
    base_body = json.dumps(body) if body is not None else None
    for param in op.get("parameters", []):
        if param["in"] == "header":
            continue  # the webhook's signature: fuzzed by test_webhook_fuzz.py
        for value in query_values(param.get("schema", {}), param["name"]):
            if param["in"] == "path":
                url = path.replace("{" + param["name"] + "}", quote(value, safe=""))
                for other, known in path_values.items():
                    url = url.replace("{" + other + "}", known)
            else:
                url = f"{base_url}?{urlencode({param['name']: value})}"
            yield Probe(f"{param['in']} {param['name']}={value[:40]!r}", method, url, base_body)
    if body is None:
        return
    for field_path in _field_paths(body):
        label = ".".join(field_path)
        for raw in JSON_VALUES:
            text = json.dumps(_replaced(body, field_path, _PLACEHOLDER))
            yield Probe(f"body {label}={raw[:40]}", method, base_url,
                        text.replace(json.dumps(_PLACEHOLDER), raw))
        yield Probe(f"body without {label}", method, base_url,
                    json.dumps(_replaced(body, field_path, _ABSENT)))
    yield Probe("body with an unknown field", method, base_url,
                json.dumps({**body, "tenant_id": "someone-else"}))
    for raw in JSON_VALUES:
        yield Probe(f"body={raw[:40]}", method, base_url, raw)

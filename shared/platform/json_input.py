"""JSON from outside (request bodies, Meta's webhooks), read with limits.

`json.loads` accepts what breaks code further in:
- nesting deep enough to exhaust the interpreter's stack (RecursionError, not a ValueError: it
  surfaced as a 500);
- strings with unpaired surrogates (`"\\ud800"` is valid JSON) that no UTF-8 encoder, and so no
  Postgres parameter, accepts (a 500 in the database driver);
- NaN and Infinity, which are not JSON at all (RFC 8259) but which Python reads as floats;
- a number of more than 4,300 digits, which Python refuses with a plain ValueError (not the
  JSONDecodeError parsers are expected to raise: Powertools let it through as a 500).
`loads` refuses these, and anything nested deeper than a caller's bodies ever are, with one
exception type that the edges map to a client error.
"""

from __future__ import annotations

import json
from typing import Any

# Our request bodies nest 3 levels (a rule's send window); Meta's webhooks about 7.
DEFAULT_MAX_DEPTH = 32


class UnreadableJson(ValueError):
    """The bytes are not JSON we accept. `problem` is for the client (never echoes the input);
    `malformed`: a plain syntax error, which every JSON parser reports as well."""

    def __init__(self, problem: str, *, malformed: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.malformed = malformed


def loads(raw: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse `raw` (bytes must be UTF-8) or raise UnreadableJson."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError:
        raise UnreadableJson("not UTF-8 encoded JSON") from None
    try:
        value = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise UnreadableJson(f"nested deeper than {max_depth} levels") from None
    except UnreadableJson:
        raise
    except json.JSONDecodeError as exc:
        raise UnreadableJson(f"not valid JSON: {exc}", malformed=True) from None
    except ValueError:
        raise UnreadableJson("a number with more digits than any field takes") from None
    check(value, max_depth=max_depth)
    return value


def _not_json(token: str) -> Any:
    raise UnreadableJson("NaN and Infinity are not JSON")


def check(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Depth and text checks on an already parsed value (iterative: no recursion to exhaust)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise UnreadableJson(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
                pending.extend((v, depth + 1) for v in item.values())
            else:
                pending.extend((v, depth + 1) for v in item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnreadableJson("text with an unpaired UTF-16 surrogate") from None

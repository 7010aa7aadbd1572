"""Schemathesis hooks for the fuzz runs (loaded through SCHEMATHESIS_HOOKS by
test_fuzz_openapi.py, in the Schemathesis process).

Meta signs every webhook delivery; an unsigned body stops at the signature check (401), so a
fuzzer alone would never reach the webhook's parser. Here every positive case generated for
POST /crm/webhooks/meta gets a valid X-Hub-Signature-256 over the exact bytes sent, made with
the app secret the test passes in RELIABILITY_WEBHOOK_SECRET: the parser and the processing are
fuzzed too. Negative cases go out as generated (unsigned or wrongly signed, malformed bodies),
so the signature check stays fuzzed as well.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import date, timedelta

import schemathesis
from hypothesis import strategies as st
from requests.compat import json as requests_json

WEBHOOK = ("POST", "/crm/webhooks/meta")


@schemathesis.hook
def before_call(context, case, kwargs):
    secret = os.environ.get("RELIABILITY_WEBHOOK_SECRET")
    if not secret or (case.method.upper(), case.path) != WEBHOOK:
        return
    meta = getattr(case, "_meta", None)
    modes = {str(meta.generation.mode)} | {str(c.mode) for c in meta.components.values()} \
        if meta is not None else {"unknown"}
    if modes != {"positive"}:
        return  # a case with a negative part must stay what it was generated to be
    if isinstance(case.body, bytes | bytearray):
        raw = bytes(case.body)
    else:
        try:
            # Exactly the bytes requests sends for `json=` (the body stays an object, so the case
            # is still the positive case Schemathesis generated).
            raw = requests_json.dumps(case.body, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError):
            return
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    case.headers = {**(case.headers or {}), "X-Hub-Signature-256": signature}


# Dates over date's whole range, its ends drawn as often as the rest: the stats' month
# arithmetic overflowed only for a day of December 9999, which Hypothesis' default date strategy
# (and its plain `dates()`, in a few examples) never drew.
_EDGE_DATES = [date.min, date(1, 1, 31), date(1970, 1, 1), date(9999, 11, 30),
               date(9999, 12, 1), date(9999, 12, 15), date.max - timedelta(days=1), date.max]
schemathesis.openapi.format(
    "date", st.one_of(st.sampled_from(_EDGE_DATES), st.dates()).map(date.isoformat))

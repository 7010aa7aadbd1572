"""What a failed WhatsApp send means for its log row, the rule and the tenant (pure, no I/O).

Meta's codes (META_API.md §8, error-codes.mdx) fall into:
- not accepted, try again later: 130429 (throughput), 131056 (pair limit), transient errors
  (1, 2, 131000, 131016, 131057, 133004, HTTP 5xx), 131048 (the number is restricted for a
  while) and requests that never left us. The row is
  released with a backoff; a later run re-claims it. Only here is a second attempt allowed.
- final for this message: 131026 undeliverable, 131049 ecosystem, 132xxx template, 368 policy,
  and anything we do not recognise (never risk a duplicate on a guess).
- 131050: the person stopped marketing messages; final, and the lead is opted out.
- 190 (token): the tenant stops and needs to reconnect; the row is released (not its fault).
- no answer after the request left (timeout, dropped connection): Meta may have accepted it,
  so it is UNKNOWN and never re-sent; a status webhook may still reconcile it.

Some failures concern more than the message: the rule's template (132xxx) stops that rule for
this run, and account-wide ones (368 blocked, 131031 locked, 131042 payment, app/WABA rate
limits, lost permissions) stop the tenant's run, leaving its other leads untouched for later.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.meta.errors import (
    MetaError,
    MetaPermissionDenied,
    MetaRateLimited,
    MetaTokenInvalid,
    MetaTransient,
)

MAX_ATTEMPTS = 6  # after this many refusals a message is FAILED with Meta's last code
RETRY_BASE_SECONDS = 60.0
RETRY_CAP_SECONDS = 6 * 3600.0

THROUGHPUT = 130429
PAIR_LIMIT = 131056
OPTED_OUT = 131050
FINAL_FOR_MESSAGE = {131026, 131049, 131047, 131008, 131009, 131051, 131052, 131053}
NUMBER_RESTRICTED = 131048  # spam rate limit: the number is restricted for a while
ACCOUNT_BLOCKED = {368, 131031, 131042}


class Outcome(StrEnum):
    SENT = "SENT"
    FAILED = "FAILED"
    RETRY = "RETRY"
    UNKNOWN = "UNKNOWN"


class Stop(StrEnum):
    RULE = "rule"
    TENANT = "tenant"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    code: str
    message: str
    retry_in_seconds: float = 0.0
    opt_out: bool = False
    stop: Stop | None = None
    reconnect: bool = False
    slow_down: bool = False


def backoff_seconds(attempts: int, error: MetaError | None = None) -> float:
    """60 s, 120 s, 240 s... capped at 6 h, never shorter than Meta asked for."""
    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    asked = error.retry_after_seconds if error is not None else None
    return max(delay, float(asked or 0))


def classify_send_error(error: MetaError, attempts: int) -> Verdict:
    """`attempts`: permits granted to this row so far, this one included."""
    code = error.code
    text = error.message[:500]
    label = str(code) if code is not None else "no_response"
    if isinstance(error, MetaTokenInvalid) or code == 190:
        return Verdict(Outcome.RETRY, label, text, 0.0, stop=Stop.TENANT, reconnect=True)
    if code is None and error.http_status is None:
        if error.request_sent:
            return Verdict(Outcome.UNKNOWN, "no_response",
                           "Meta did not answer; the message may or may not have been sent.")
        verdict = Verdict(Outcome.RETRY, "not_sent", text, backoff_seconds(attempts))
    elif code == OPTED_OUT:
        return Verdict(Outcome.FAILED, label, text, opt_out=True)
    elif code is not None and 132000 <= code <= 132999:
        return Verdict(Outcome.FAILED, label, text, stop=Stop.RULE)
    elif code in ACCOUNT_BLOCKED:
        return Verdict(Outcome.FAILED, label, text, stop=Stop.TENANT)
    elif code in FINAL_FOR_MESSAGE:
        return Verdict(Outcome.FAILED, label, text)
    elif code == THROUGHPUT:
        verdict = Verdict(Outcome.RETRY, label, text, backoff_seconds(attempts),
                          slow_down=True)
    elif code == PAIR_LIMIT:
        # about-the-platform.mdx: retry a pair after 4^X seconds.
        verdict = Verdict(Outcome.RETRY, label, text, max(RETRY_BASE_SECONDS, 4.0 ** attempts))
    elif code == NUMBER_RESTRICTED or isinstance(error, MetaRateLimited | MetaPermissionDenied):
        verdict = Verdict(Outcome.RETRY, label, text, backoff_seconds(attempts, error),
                          stop=Stop.TENANT)
    elif isinstance(error, MetaTransient):
        verdict = Verdict(Outcome.RETRY, label, text, backoff_seconds(attempts))
    else:
        return Verdict(Outcome.FAILED, label, text)
    if attempts >= MAX_ATTEMPTS:
        return Verdict(Outcome.FAILED, label,
                       f"Gave up after {attempts} attempts. Last error: {text}"[:500],
                       stop=verdict.stop)
    return verdict

"""Our own words for the error codes a send log can carry, for the logs API.

A log row keeps Meta's code and, for operators, Meta's text (shared/hsm/outcomes.py, the status
webhook). Members read the logs, and Meta's text is not written for them: it may be English
when the CRM is not, technical, or echo what was sent. The API shows the code with the message
below instead, one per kind of failure.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"[A-Za-z0-9_]{1,32}")

MESSAGES = {
    # Meta's WhatsApp codes (META_API.md §8)
    "131026": "WhatsApp could not deliver the message to this number.",
    "131049": "Meta chose not to deliver this marketing message, to limit how many the person "
              "receives.",
    "131050": "The person has stopped marketing messages from this business.",
    "131047": "More than 24 hours have passed since the person last wrote; only templates can be "
              "sent.",
    "131008": "The message was missing a required parameter.",
    "131009": "A parameter of the message was not accepted.",
    "131051": "This kind of message is not supported.",
    "131052": "The media of the message could not be downloaded.",
    "131053": "The media of the message could not be uploaded.",
    "130429": "Messages were being sent faster than the number allows; it will be retried.",
    "131056": "Too many messages to this person in a short time; it will be retried.",
    "131048": "The number is restricted for a while because of spam reports; it will be "
              "retried.",
    "368": "Meta has temporarily blocked the WhatsApp account for a policy violation.",
    "131031": "Meta has locked the WhatsApp account.",
    "131042": "The WhatsApp account has a payment problem.",
    "190": "The Meta connection stopped working. Reconnect Meta.",
    # Ours
    "no_response": "Meta did not answer; the message may or may not have been sent.",
    "not_sent": "The message could not reach Meta; it will be retried.",
    "no_wamid": "Meta accepted the request without returning a message id.",
    "no_result": "Sending stopped before Meta answered; the message may or may not have been "
                 "sent.",
    "lead_not_eligible": "The lead opted out, was contacted or has no phone any more.",
    "template_missing": "The rule's template is not among the synced templates.",
    "template_not_approved": "The rule's template is not approved.",
    "template_mismatch": "The rule's template needs parameters the rule does not fill.",
    "unknown": "Meta did not accept the message.",
}
TEMPLATE = "The rule's template could not be used (not approved, paused, disabled, or its " \
           "parameters do not match)."
UNKNOWN = MESSAGES["unknown"]


def describe(code: str | None) -> dict[str, str] | None:
    """{"code", "message"} for a log's error code (None: no error). Never Meta's own text."""
    if not code:
        return None
    if not _CODE.fullmatch(code):
        return {"code": "unknown", "message": UNKNOWN}
    if code in MESSAGES:
        return {"code": code, "message": MESSAGES[code]}
    if code.isdigit() and 132000 <= int(code) <= 132999:
        return {"code": code, "message": TEMPLATE}
    return {"code": code, "message": f"{UNKNOWN} (code {code})"}

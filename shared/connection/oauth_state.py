"""OAuth state items in DynamoDB: created by oauth_url, consumed once by oauth_callback.

Only hashes are stored: neither the state nor the browser-binding cookie can be replayed from a
copy of the table.

Browser binding and the deployment it assumes: `oauth_url` sets the HttpOnly, Secure,
SameSite=Lax cookie `mh_oauth_binding` (path /crm/auth/meta) and stores its hash with the state;
the callback accepts a state only together with that cookie. A Lax cookie rides along on Meta's
top-level GET redirect to the callback, but the frontend's `fetch` to `/url` (credentials
included) only stores it when the API and the frontend are the same site, i.e. under one
registrable domain (e.g. crm.example.com and api.crm.example.com), as in the original plan's
URLs, with the API served from a custom domain whose paths start at /crm (the cookie path
/crm/auth/meta must prefix the callback's path, so not a /{stage}/ prefixed execute-api URL).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from botocore.exceptions import ClientError

from shared.platform.aws import client
from shared.platform.settings import get_settings

STATE_TTL_SECONDS = 300
BINDING_COOKIE = "mh_oauth_binding"  # HttpOnly cookie tying a flow to its browser
# create_state issues token_urlsafe(32): 43 url-safe characters. Anything else is not ours.
_STATE_FORMAT = re.compile(r"[A-Za-z0-9_-]{43,128}")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class NewState:
    state: str
    binding: str  # the cookie value that ties the flow to the browser that started it
    expires_at: int


def create_state(tenant_id: str, user_id: str, *, now: float | None = None) -> NewState:
    now = int(now or time.time())
    state = secrets.token_urlsafe(32)  # 256 random bits
    binding = secrets.token_urlsafe(32)
    expires_at = now + STATE_TTL_SECONDS
    client("dynamodb").put_item(
        TableName=get_settings().oauth_state_table,
        Item={
            "state_hash": {"S": sha256_hex(state)},
            "tenant_id": {"S": tenant_id},
            "user_id": {"S": user_id},
            "binding_hash": {"S": sha256_hex(binding)},
            "created_at": {"N": str(now)},
            "expires_at": {"N": str(expires_at)},
            # DynamoDB's TTL deletes lazily (sometimes days late): readers check expires_at too.
            "ttl": {"N": str(expires_at)},
        },
        ConditionExpression="attribute_not_exists(state_hash)",
    )
    return NewState(state=state, binding=binding, expires_at=expires_at)


class StateRejected(Exception):
    """The callback's state cannot be used. `reason` is for logs only (never the state)."""

    def __init__(self, reason: str, *, tenant_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tenant_id = tenant_id


@dataclass(frozen=True)
class ConsumedState:
    tenant_id: str
    user_id: str


def is_well_formed(state: object) -> bool:
    return isinstance(state, str) and _STATE_FORMAT.fullmatch(state) is not None


def consume_state(
    state: str | None, bindings: Iterable[str], *, now: float | None = None
) -> ConsumedState:
    """Use a state exactly once, or raise StateRejected.

    The item is taken with one conditional DeleteItem (ReturnValues=ALL_OLD): of two callbacks
    racing with one state, only one gets the item back. Expiry and the browser binding are
    checked on the item taken, so a state presented late or from the wrong browser is burnt
    too: if a phished person's callback (no cookie) did not burn it, whoever holds the cookie
    could still replay the code and land that person's accounts in their own tenant.
    """
    if not is_well_formed(state):
        raise StateRejected("malformed")
    try:
        answer = client("dynamodb").delete_item(
            TableName=get_settings().oauth_state_table,
            Key={"state_hash": {"S": sha256_hex(state)}},
            ConditionExpression="attribute_exists(state_hash)",
            ReturnValues="ALL_OLD",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise StateRejected("unknown_or_used") from None
        raise
    item = answer.get("Attributes") or {}
    tenant_id = item.get("tenant_id", {}).get("S")
    if not tenant_id:
        raise StateRejected("unknown_or_used")
    # TTL deletion is lazy (days, sometimes): an item still present may be long expired.
    expires_at = int(item.get("expires_at", {}).get("N", "0"))
    if expires_at <= (now if now is not None else time.time()):
        raise StateRejected("expired", tenant_id=tenant_id)
    expected = item.get("binding_hash", {}).get("S", "")
    offered = [b for b in bindings if b]
    if not offered:
        raise StateRejected("cookie_missing", tenant_id=tenant_id)
    if not expected or not any(hmac.compare_digest(sha256_hex(b), expected) for b in offered):
        raise StateRejected("cookie_mismatch", tenant_id=tenant_id)
    return ConsumedState(tenant_id=tenant_id, user_id=item.get("user_id", {}).get("S", ""))

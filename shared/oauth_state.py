"""OAuth state items in DynamoDB: created by oauth_url, consumed once by oauth_callback.

Only hashes are stored: neither the state nor the browser-binding cookie can be replayed from a
copy of the table.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from shared.aws import client
from shared.settings import get_settings

STATE_TTL_SECONDS = 300
BINDING_COOKIE = "mh_oauth_binding"  # HttpOnly cookie tying a flow to its browser


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

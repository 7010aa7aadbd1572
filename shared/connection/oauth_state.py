"""OAuth state items in DynamoDB: created by oauth_url, consumed once by oauth_callback.

Only hashes are stored: neither the state nor the browser-binding cookie can be replayed from a
copy of the table, and the PKCE verifier is not stored at all (below).

Browser binding and the deployment it assumes: `oauth_url` sets the HttpOnly, Secure,
SameSite=Lax cookie `__Host-mh_oauth_binding` (Path=/) and stores its hash with the state; the
callback accepts a state only together with exactly one such cookie, the right one. A Lax
cookie rides along on Meta's top-level GET redirect to the callback, but the frontend's `fetch`
to `/url` (credentials included) only stores it when the API and the frontend are the same site,
i.e. under one registrable domain (e.g. crm.example.com and api.crm.example.com).

Why `__Host-` and Path=/ rather than a cookie scoped to /crm/auth/meta: that same-site layout
puts the API next to sibling subdomains, and any of them (a marketing site, a compromised
subdomain) can set a cookie for the parent domain with a more specific path, which the browser
then sends first ("cookie tossing"): a flow of the attacker's, bound to the attacker's cookie,
completed in the victim's browser. The browser refuses a `__Host-` cookie that names a Domain,
lacks Secure or has another path, so only this host can set it. A path is no security boundary
on one host anyway; the price is that the cookie travels with every request to the API host
for its 5 minutes, where nothing reads it but the callback. It also no longer depends on the
API being served without a /{stage} prefix. Exactly one value is accepted: two mean someone
else set one.

Code binding (RFC 9700 §4.5, PKCE): the dialog carries `code_challenge` = S256 of a verifier
that only this flow can produce, HMAC-SHA256 of its state keyed by its binding cookie. The
callback derives it again from the state and the cookie it accepted and sends it with the code;
Meta refuses a code that another flow (another challenge) obtained. Nothing new is stored, and
the verifier never appears in a URL. Meta documents PKCE only for its OIDC code flow ("still in
testing"); developers report its standard dialog enforcing it too (an exchange without the
verifier of a challenged code fails "Invalid code verifier"), and the local sandbox enforces it.
Should Meta ever ignore the challenge, the state, browser binding and the exact redirect URI
remain, and injecting a stolen code takes stealing it first (docs/DEPLOY.md, residual risk).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from shared.platform.aws import client
from shared.platform.settings import get_settings

STATE_TTL_SECONDS = 300
BINDING_COOKIE = "__Host-mh_oauth_binding"  # HttpOnly cookie tying a flow to its browser
BINDING_COOKIE_PATH = "/"  # the __Host- prefix requires it
# create_state issues token_urlsafe(32): 43 url-safe characters. Anything else is not ours.
_STATE_FORMAT = re.compile(r"[A-Za-z0-9_-]{43,128}")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def code_verifier(state: str, binding: str) -> str:
    """The flow's PKCE verifier (43 characters of RFC 7636's alphabet), derived from the state
    and the binding cookie: no one without that cookie can make it, and it is never stored."""
    return _b64url(hmac.new(binding.encode(), b"pkce:" + state.encode(), hashlib.sha256).digest())


def code_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(verifier)), unpadded."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class NewState:
    state: str
    binding: str  # the cookie value that ties the flow to the browser that started it
    expires_at: int

    @property
    def code_challenge(self) -> str:
        return code_challenge(code_verifier(self.state, self.binding))


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
    code_verifier: str = field(default="", repr=False)  # what the code exchange must send


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
    if len(offered) > 1:
        # One browser holds one: a second value was set by someone else (or an older flow's
        # cookie survived on another path); which one is the victim's cannot be told.
        raise StateRejected("cookie_ambiguous", tenant_id=tenant_id)
    binding = offered[0]
    if not expected or not hmac.compare_digest(sha256_hex(binding), expected):
        raise StateRejected("cookie_mismatch", tenant_id=tenant_id)
    return ConsumedState(tenant_id=tenant_id, user_id=item.get("user_id", {}).get("S", ""),
                         code_verifier=code_verifier(state, binding))

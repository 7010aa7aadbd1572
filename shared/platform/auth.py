"""JWT claims (already verified by the API Gateway authorizer) to the caller's principal.

The tenant and role come only from the authorizer's claims; headers such as X-Tenant-ID are
never read. Each claim is validated whole, as one value, never searched for a part:
- the tenant claim is a string of 1-64 characters of [A-Za-z0-9_.:-], entirely (no trailing
  newline, no list, no second tenant);
- the role claim is absent (a member), one role name, or a list of role names in either form
  the authorizer hands lists over (`[admin member]`, or a JSON array), each name compared whole
  with the admin role. Anything else ("admin,member", "admin\\n", a lookalike letter, an object)
  is not a role our identity provider issues: 401, rather than a guess at what was meant;
- the subject, stored as who connected or created something, is printable text of at most 256
  characters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shared.platform.errors import Forbidden, Unauthorized
from shared.platform.settings import get_settings

_TENANT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ROLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ROLE_LIST = re.compile(r"\[[A-Za-z0-9_-]{1,64}(?: [A-Za-z0-9_-]{1,64}){0,31}\]")
_SUBJECT = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, as IdP subjects are


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    user_id: str
    is_admin: bool


def _roles(value: Any) -> list[str]:
    """The role names of the claim, or Unauthorized when it is not one or a list of them."""
    if value is None or value == "":
        return []
    if isinstance(value, str) and _ROLE.fullmatch(value):
        return [value]
    if isinstance(value, str) and _ROLE_LIST.fullmatch(value):
        return value[1:-1].split(" ")
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if isinstance(value, list) and value and len(value) <= 32 and all(
            isinstance(v, str) and _ROLE.fullmatch(v) for v in value):
        return value
    raise Unauthorized("The sign-in token carries no usable role.")


def principal_from_claims(claims: dict | None) -> Principal:
    settings = get_settings()
    claims = claims if isinstance(claims, dict) else {}
    tenant_id = claims.get(settings.tenant_claim)
    if not isinstance(tenant_id, str) or not _TENANT_ID.fullmatch(tenant_id):
        raise Unauthorized("The sign-in token carries no usable tenant.")
    roles = _roles(claims.get(settings.role_claim))
    subject = claims.get("sub") or claims.get("username") or ""
    if subject and (not isinstance(subject, str) or not _SUBJECT.fullmatch(subject)):
        raise Unauthorized("The sign-in token carries no usable subject.")
    return Principal(tenant_id=tenant_id, user_id=subject, is_admin=settings.admin_role in roles)


def require_admin(principal: Principal) -> Principal:
    if not principal.is_admin:
        raise Forbidden()
    return principal

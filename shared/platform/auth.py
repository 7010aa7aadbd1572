"""JWT claims (already verified by the API Gateway authorizer) to the caller's principal.

The tenant and role come only from the authorizer's claims; headers such as X-Tenant-ID are
never read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.platform.errors import Forbidden, Unauthorized
from shared.platform.settings import get_settings

_TENANT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    user_id: str
    is_admin: bool


def principal_from_claims(claims: dict | None) -> Principal:
    settings = get_settings()
    claims = claims or {}
    tenant_id = claims.get(settings.tenant_claim)
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise Unauthorized("The sign-in token carries no usable tenant.")
    role = claims.get(settings.role_claim)
    # Cognito may send a role list as a string like "[admin member]"; accept both shapes.
    roles = role if isinstance(role, list) else re.split(r"[\s,\[\]]+", str(role or ""))
    return Principal(
        tenant_id=tenant_id,
        user_id=str(claims.get("sub") or claims.get("username") or ""),
        is_admin=settings.admin_role in roles,
    )


def require_admin(principal: Principal) -> Principal:
    if not principal.is_admin:
        raise Forbidden()
    return principal

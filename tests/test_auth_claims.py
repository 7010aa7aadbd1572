"""Tenant and role claims are validated strictly and whole (shared/platform/auth.py)."""

from __future__ import annotations

import pytest

from devstack import jwt_tokens
from shared.platform.auth import principal_from_claims
from shared.platform.errors import Unauthorized

TENANT, ROLE = "custom:tenant_id", "custom:role"


@pytest.mark.parametrize("role,admin", [
    ("admin", True), ("member", False), (None, False), ("", False),
    ("[admin member]", True), ("[member]", False), ('["member", "admin"]', True),
    (["admin"], True), (["member"], False),
])
def test_a_role_claim_is_one_role_or_a_list_of_whole_roles(stack, role, admin):
    claims = {TENANT: "t-1", "sub": "user-1", **({ROLE: role} if role is not None else {})}
    assert principal_from_claims(claims).is_admin is admin


@pytest.mark.parametrize("role", [
    "admin,member", "member,admin", "admin member", " admin", "admin\n", "admin\x00",
    "adm\u0456n",  # Cyrillic i: looks like admin
    "[admin,member]", "[]", '{"admin": true}', '["admin", 1]', "[admin", "x" * 65, 7, True,
    {"role": "admin"}, [], ["admin member"],
])
def test_anything_else_in_the_role_claim_is_not_a_role(stack, role):
    with pytest.raises(Unauthorized, match="role"):
        principal_from_claims({TENANT: "t-1", ROLE: role, "sub": "user-1"})


@pytest.mark.parametrize("tenant", [
    "t-1\n", "t-1 t-2", "t-1,t-2", "[t-1]", '["t-1"]', "", "x" * 65, "t-\u0131", "t-1\x00",
    ["t-1"], 1, None,
])
def test_the_tenant_claim_is_one_tenant_id_entirely(stack, tenant):
    with pytest.raises(Unauthorized, match="tenant"):
        principal_from_claims({TENANT: tenant, ROLE: "admin", "sub": "user-1"})


@pytest.mark.parametrize("subject", ["user\x00", "user 1", "x" * 257, ["u"], "usér"])
def test_the_subject_is_printable_text(stack, subject):
    with pytest.raises(Unauthorized, match="subject"):
        principal_from_claims({TENANT: "t-1", ROLE: "member", "sub": subject})


def test_over_http_a_split_role_is_not_admin_and_a_newline_tenant_is_nobody(api, tenant_id):
    """Both were accepted: "admin,member" was split and found to contain admin, and the
    tenant pattern's `$` let a trailing newline through (another tenant id altogether)."""
    split = {"Authorization": f"Bearer {jwt_tokens.sign(tenant_id, role='admin,member')}"}
    response = api.get("/crm/auth/meta/url", headers=split)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    newline = {"Authorization": f"Bearer {jwt_tokens.sign(tenant_id + chr(10))}"}
    assert api.get("/crm/marketing/hsm/rules", headers=newline).status_code == 401

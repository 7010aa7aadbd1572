"""Locally signed sign-in tokens, standing in for the CRM's OIDC issuer (e.g. Cognito)."""

from __future__ import annotations

import time

import jwt

LOCAL_ISSUER = "http://localhost/local-issuer"
LOCAL_AUDIENCE = "marketing-hub-local"
_SECRET = "local-dev-signing-key-not-for-production-use"


def sign(tenant_id: str | None, *, role: str = "admin", sub: str = "user-1",
         ttl: int = 3600, extra: dict | None = None) -> str:
    now = int(time.time())
    claims = {"iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": sub, "iat": now,
              "exp": now + ttl, "custom:role": role}
    if tenant_id is not None:
        claims["custom:tenant_id"] = tenant_id
    claims.update(extra or {})
    return jwt.encode(claims, _SECRET, algorithm="HS256")


def verify(token: str) -> dict:
    """Claims of a valid token; raises jwt.InvalidTokenError otherwise (as the authorizer 401s)."""
    return jwt.decode(token, _SECRET, algorithms=["HS256"], audience=LOCAL_AUDIENCE,
                      issuer=LOCAL_ISSUER)

"""Both ends of the Meta login dialog: the URL that opens it, and where the browser lands after.

The callback only ever sends the browser to FRONTEND_URL (never to a URL taken from the request),
with `success=connected` or one of the contract's error codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from shared.platform.settings import get_settings

RESULT_PATH = "/crm/marketing"
# CONTRACT.md "OAuth callback outcomes": the only codes the frontend knows.
CALLBACK_ERRORS = frozenset({"access_denied", "invalid_state", "missing_scopes", "meta_error"})


def dialog_url(state: str, code_challenge: str) -> str:
    """`code_challenge`: the flow's PKCE challenge (S256), binding Meta's code to this flow."""
    settings = get_settings()
    query = urlencode(
        {
            "client_id": settings.meta_app_id,
            "redirect_uri": settings.meta_redirect_uri,
            "state": state,
            "response_type": "code",
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            # The required scopes, then Lead Ads' optional ones (declining those still connects).
            "scope": ",".join([*settings.scopes, *settings.optional_scopes]),
            # Re-ask permissions the person declined before, instead of silently keeping them off.
            "auth_type": "rerequest",
        }
    )
    return f"{settings.meta_dialog_url}/{settings.meta_graph_api_version}/dialog/oauth?{query}"


def result_url(error: str | None = None, missing: Sequence[str] = ()) -> str:
    """{FRONTEND_URL}/crm/marketing?success=connected, or ?error=<code>[&missing=a,b]."""
    if error is None:
        query = {"success": "connected"}
    else:
        if error not in CALLBACK_ERRORS:
            raise ValueError(f"not a callback error code: {error!r}")
        query = {"error": error}
        if missing:
            query["missing"] = ",".join(missing)
    # Keep the contract's literal "missing=a,b" (scope names are [a-z_], nothing to escape).
    return f"{get_settings().frontend_url}{RESULT_PATH}?{urlencode(query, safe=',')}"

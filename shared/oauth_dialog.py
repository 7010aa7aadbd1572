"""The Meta login dialog URL for a tenant's admin."""

from __future__ import annotations

from urllib.parse import urlencode

from shared.settings import get_settings


def dialog_url(state: str) -> str:
    settings = get_settings()
    query = urlencode({
        "client_id": settings.meta_app_id,
        "redirect_uri": settings.meta_redirect_uri,
        "state": state,
        "response_type": "code",
        "scope": ",".join(settings.scopes),
        # Re-ask permissions the person declined before, instead of silently keeping them off.
        "auth_type": "rerequest",
    })
    return f"{settings.meta_dialog_url}/{settings.meta_graph_api_version}/dialog/oauth?{query}"

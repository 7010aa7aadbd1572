"""The smoke check a deployment runs against each new function version before it takes traffic
(template.yaml's PreTraffic hook, functions/pre_traffic_hook): the version's code loaded, its
settings are valid, and a function that uses Postgres reaches it, through the proxy, with its
own secret and TLS. Nothing of a tenant is read or written, and no connection is kept."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def smoke_check(handler: Callable[..., Any]) -> dict[str, Any]:
    """{"smoke": "ok", "checks": [...]} or {"smoke": "failed", "error": <type>, "checks": [...]}
    (the error's type only: the answer leaves the function)."""
    from shared.platform.settings import get_settings

    checks = ["code"]
    try:
        settings = get_settings()
        checks.append("settings")
        module = sys.modules.get(getattr(handler, "__module__", ""), None)
        if getattr(module, "DB_CONNECTIONS", 0):
            import psycopg

            with psycopg.connect(settings.database_dsn(), connect_timeout=5,
                                 prepare_threshold=None) as conn:
                conn.execute("SELECT 1").fetchone()
            checks.append("database")
    except Exception as exc:  # noqa: BLE001 - the answer says the version is not fit
        return {"smoke": "failed", "error": type(exc).__name__, "checks": checks}
    return {"smoke": "ok", "checks": checks}

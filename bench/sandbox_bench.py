"""Bench-only control endpoints for the Meta sandbox, attached by bench/serve.py (never part of the
sandbox the tests and `make dev` run): bulk set-ups that would take thousands of control calls.

    POST /__sandbox/bench/wizard-user {"businesses", "owned", "client", "personal"}
        a new user in `businesses` businesses, each owning `owned` ad accounts and reaching
        `client` client accounts (one of them also owned by the next business: two paths, one
        account), plus `personal` accounts of the user's own -> the distinct account ids
    POST /__sandbox/bench/tokens {"count", "expires_in_seconds", "scopes"}
        `count` long-lived user tokens, one per new user, expiring as asked
    POST /__sandbox/bench/sends {"phone_number_ids", "since"}
        the acceptance times (the machine's monotonic clock) of every send to these numbers
        after `since`: one call where a thousand per-number reads would load the sandbox
        the bench is measuring
"""

from __future__ import annotations

from typing import Any

from sandbox.core import Area, Ctx, SandboxApp
from sandbox.world import User

area = Area("bench")


@area.control("POST", "/bench/wizard-user")
def wizard_user(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    n_business = int(body.get("businesses", 20))
    n_owned = int(body.get("owned", 30))
    n_client = int(body.get("client", 5))
    n_personal = int(body.get("personal", 3))
    state = ctx.world.area("ads")
    with ctx.world.lock:
        user_id = "4" + state.new_id(14)
        ctx.world.users[user_id] = User(user_id, f"Wizard bench {user_id}")
        outsider = state.add_business(f"Clientes de {user_id}", set())
        businesses = [state.add_business(f"Negocio {i + 1:02d}", {user_id})
                      for i in range(n_business)]
        owned: list[list[Any]] = []
        for i, business in enumerate(businesses):
            owned.append([state.add_account(
                f"Negocio {i + 1:02d} cuenta {k + 1:02d}", owner=business,
                currency="EUR" if k % 3 else "USD", amount_spent=str(1000 * (k + 1)),
                balance=str(10 * k)) for k in range(n_owned)])
        for i, business in enumerate(businesses):
            for k in range(n_client):
                if k == 0 and n_business > 1:
                    shared = owned[(i + 1) % n_business][0]  # reachable through two businesses
                    shared.client_business_ids.add(business.id)
                    continue
                account = state.add_account(f"Cliente {i + 1:02d}-{k + 1}", owner=outsider,
                                            currency="MXN",
                                            timezone_name="America/Mexico_City")
                account.client_business_ids.add(business.id)
        for k in range(n_personal):
            state.add_account(f"Personal {k + 1}", user_ids={user_id}, currency="USD")
        expected = sorted(a.id for a in state.reachable(user_id))
    return {"user_id": user_id, "business_ids": [b.id for b in businesses],
            "account_ids": expected}


@area.control("POST", "/bench/tokens")
def tokens(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    count = int(body["count"])
    scopes = list(body.get("scopes") or ["ads_read", "business_management"])
    expires_at = int(ctx.world.now()) + int(body.get("expires_in_seconds", 3 * 86400))
    out = []
    with ctx.world.lock:
        for _ in range(count):
            user_id = "5" + ctx.world.area("ads").new_id(14)
            ctx.world.users[user_id] = User(user_id, f"Refresh bench {user_id}")
            token = ctx.world.issue_token(user_id, scopes=scopes, kind="long",
                                          expires_at=expires_at)
            out.append({"user_id": user_id, "access_token": token.value})
    return {"tokens": out, "expires_at": expires_at}


@area.control("POST", "/bench/sends")
def sends(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    since = float(body.get("since", 0.0))
    state = ctx.world.area("whatsapp_send")
    with ctx.world.lock:
        monos = [m.mono for phone in body["phone_number_ids"]
                 for m in state.sent.get(str(phone), []) if m.mono >= since]
    return {"monos": monos}


def attach(app: SandboxApp) -> None:
    """Serve this module's control endpoints from a running sandbox application."""
    app.controls.extend(area.controls)

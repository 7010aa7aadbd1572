"""Demo step: an admin asks for the Meta login dialog URL."""

from __future__ import annotations


def run(ctx) -> None:
    response = ctx.http.get("/crm/auth/meta/url", headers=ctx.headers("admin"))
    response.raise_for_status()
    body = response.json()
    ctx.data["dialog_url"] = body["url"]
    ctx.say("1. GET /crm/auth/meta/url (admin)",
            f"status {response.status_code}; dialog URL:\n  {body['url'][:120]}...\n"
            f"  state stored in DynamoDB (hash only), browser-binding cookie set")

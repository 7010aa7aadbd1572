"""POST /crm/marketing/connect: connect one ad account and start its campaign sync (admin)."""

import json

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from shared.ads.accounts import connect_account, normalize_account_id
from shared.platform.deadlines import deadline_from_context
from shared.platform.errors import InvalidInput
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()
# Checked before the body is validated: a member gets 403, never a 422 about the body.
ADMIN_METHODS = frozenset({"POST"})


class ConnectRequest(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    account_id: str

    @field_validator("account_id")
    @classmethod
    def _account_id(cls, value: str) -> str:
        return normalize_account_id(value)


def _parse_body() -> ConnectRequest:
    """Validated after the role check (a typed body parameter would be validated first, and a
    member would learn about our input rules before being told 403)."""
    try:
        raw = json.loads(app.current_event.decoded_body or "null")
        return ConnectRequest.model_validate(raw)
    except ValueError as exc:  # malformed JSON, or pydantic's ValidationError (a ValueError)
        details = [{"field": ".".join(str(p) for p in err["loc"]) or "body",
                    "problem": err["msg"]} for err in exc.errors()] \
            if isinstance(exc, ValidationError) else [{"field": "body",
                                                       "problem": "not valid JSON"}]
        fields = ", ".join(d["field"] for d in details)
        raise InvalidInput(f"Invalid input: {fields}.", details=details) from None


@app.post("/crm/marketing/connect")
def connect():
    principal = current_principal(app, admin=True)
    body = _parse_body()
    deadline = deadline_from_context(app.lambda_context)
    result = connect_account(principal.tenant_id, principal.user_id, body.account_id, deadline)
    message = ("Ad account connected. Its campaigns are syncing now." if result.sync_started
               else "Ad account connected. Its campaigns will sync within the hour.")
    return {"status": "connected", "account_id": result.account_id,
            "account_name": result.account_name, "message": message}


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context, admin_methods=ADMIN_METHODS)

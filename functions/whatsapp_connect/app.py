"""POST /crm/marketing/whatsapp/connect (admin): the tenant's sender; syncs its templates."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from shared.hsm.rules import iana_timezone
from shared.platform.deadlines import deadline_from_context
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint
from shared.whatsapp.connect import ConnectRequest, connect_sender

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()
# Checked before the body is validated: a member gets 403, never a 422 about the body.
ADMIN_METHODS = frozenset({"POST"})

MetaId = Annotated[str, Field(pattern=r"^\d{1,32}$", description="Meta's numeric id")]


class ConnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    waba_id: MetaId
    phone_number_id: MetaId
    max_per_second: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None
    timezone: str | None = Field(default=None, description="IANA name for quiet hours")

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        return iana_timezone(value)


@app.post("/crm/marketing/whatsapp/connect")
def connect_whatsapp(body: ConnectBody):
    principal = current_principal(app, admin=True)
    return connect_sender(
        principal.tenant_id, principal.user_id,
        ConnectRequest(body.waba_id, body.phone_number_id, body.max_per_second, body.timezone),
        deadline_from_context(app.lambda_context),
    )


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context, admin_methods=ADMIN_METHODS)

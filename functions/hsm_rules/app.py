"""Automation rules: GET (member), POST, PATCH, DELETE (admin) /crm/marketing/hsm/rules."""

from aws_lambda_powertools.event_handler import Response

from shared.hsm.rules import (
    RuleCreate,
    RulePatch,
    create_rule,
    delete_rule,
    list_rules,
    update_rule,
)
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()
# Checked before the body is validated: a member gets 403, never a 422 about the body.
ADMIN_METHODS = frozenset({"POST", "PATCH", "DELETE"})


@app.get("/crm/marketing/hsm/rules")
def get_rules():
    return list_rules(current_principal(app).tenant_id)


@app.post("/crm/marketing/hsm/rules")
def post_rule(body: RuleCreate):
    principal = current_principal(app, admin=True)
    rule = create_rule(principal.tenant_id, principal.user_id, body)
    return Response(status_code=201, content_type="application/json", body=rule)


@app.patch("/crm/marketing/hsm/rules/<rule_id>")
def patch_rule(rule_id: str, body: RulePatch):
    principal = current_principal(app, admin=True)
    return update_rule(principal.tenant_id, rule_id, body)


@app.delete("/crm/marketing/hsm/rules/<rule_id>")
def remove_rule(rule_id: str):
    principal = current_principal(app, admin=True)
    delete_rule(principal.tenant_id, rule_id)
    return Response(status_code=204, body="")


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context, admin_methods=ADMIN_METHODS)

"""The WhatsApp template message a claim becomes, and the message id Meta answers with."""

from __future__ import annotations

from typing import Any

from shared.hsm.claims import Claim
from shared.hsm.planning import RulePlan
from shared.hsm.rules import lead_param_values


def build_payload(claim: Claim, plan: RulePlan) -> dict[str, Any]:
    """META_API.md §8's template send; biz_opaque_callback_data carries the log id back in
    status webhooks."""
    rule = plan.rule
    template: dict[str, Any] = {"name": rule.template_name, "language": {"code": rule.language}}
    values = lead_param_values(rule.body_params, claim.lead)
    if values:
        parameters = []
        for index, value in enumerate(values):
            parameter = {"type": "text", "text": value}
            if plan.parameter_names and index < len(plan.parameter_names):
                parameter["parameter_name"] = plan.parameter_names[index]
            parameters.append(parameter)
        template["components"] = [{"type": "body", "parameters": parameters}]
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": claim.phone,
            "type": "template", "template": template,
            "biz_opaque_callback_data": claim.log_id}


def wamid_of(body: Any) -> str | None:
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id")
        return str(wamid) if wamid else None
    return None

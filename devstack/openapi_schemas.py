"""What the OpenAPI document says about each operation beyond what the resolvers know: a summary
that explains, its area (tag), the success status and body schema with an example, and which
errors it can answer. devstack/openapi.py merges this into the resolvers' own description.

Adding a route: add its entry to OPERATIONS (tests/test_openapi_document.py fails for a route
whose success body is undescribed), then `make openapi` and commit docs/openapi.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TAGS = [
    {"name": "Meta connection",
     "description": "Connect the tenant's Meta business account by OAuth (the flow is bound to "
                    "the browser that started it), its token's health, and renewing it."},
    {"name": "Ad accounts", "description": "The ad accounts the token reaches; connect one."},
    {"name": "Campaign results",
     "description": "Synced campaigns, CRM leads, spend, cost per lead, won revenue and ROI. "
                    "Money is never summed across currencies: totals are one entry per "
                    "currency; ROI is a ratio ((revenue - spend) / spend: 0.25 is +25 %)."},
    {"name": "WhatsApp", "description": "The tenant's WhatsApp sender and its templates."},
    {"name": "HSM rules",
     "description": "Automation rules: a rule sends its APPROVED template once to each lead it "
                    "is due for (trigger `lead_followup`: never contacted, `delay_hours` old; "
                    "trigger `lead_created`: created since the rule was enabled, "
                    "`delay_minutes` old, sent within seconds of the lead's arrival)."},
    {"name": "Message log", "description": "What was sent to whom, with delivery status."},
    {"name": "Lead Ads",
     "description": "Facebook Pages and their lead forms: connect a Page, and its leads arrive "
                    "as CRM leads within seconds (signed leadgen webhooks, read through a "
                    "queue, reconciled hourly). Needs the five optional Lead Ads permissions."},
    {"name": "Meta webhooks",
     "description": "Called by Meta, not by the CRM: the subscription handshake and signed "
                    "delivery, template and opt-out updates."},
]

# -- building blocks ---------------------------------------------------------------------------
_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
_INT = {"type": "integer", "minimum": 0}
_MONEY = {"type": "number", "description": "In `currency`, rounded to cents"}
_MONEY_OR_NULL = {"type": ["number", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_DATE_OR_NULL = {"type": ["string", "null"], "format": "date"}
_CURRENCY = {"type": ["string", "null"],
             "description": "ISO 4217 code; null while no ad account tells the currency"}
_ROI = {"type": ["number", "null"],
        "description": "(revenue - spend) / spend, 4 decimals (0.25 = +25 %); null without spend"}
_CPL = {"type": ["number", "null"], "description": "spend / leads; null without leads"}
_STRINGS = {"type": "array", "items": _STR}


def _object(properties: dict[str, Any], *, required: list[str] | None = None,
            description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object",
                              "required": list(properties) if required is None else required,
                              "properties": properties}
    if description:
        schema["description"] = description
    return schema


_RANGE = {"from": {**_DATE_OR_NULL, "description": "The range's first day, as asked"},
          "to": {**_DATE_OR_NULL, "description": "The range's last day, as asked"}}
_OTHER_REVENUE = {"type": "array", "description": "Won revenue in another currency than the "
                  "campaign's: listed here, kept out of its ROI",
                  "items": _object({"currency": _STR, "amount": {"type": "number"}})}

STATS_CAMPAIGN = _object({
    "campaign_id": _STR, "name": _STR_OR_NULL, "account_id": _STR_OR_NULL,
    "status": _STR_OR_NULL, "effective_status": _STR_OR_NULL, "objective": _STR_OR_NULL,
    "currency": _CURRENCY, "spend": _MONEY, "impressions": _INT, "clicks": _INT,
    "meta_leads": {**_INT, "description": "Leads Meta reported"},
    "leads": {**_INT, "description": "CRM leads attributed to the campaign"},
    "won_leads": _INT, "revenue": {**_MONEY, "description": "deal_value of its won leads"},
    "cost_per_lead": _CPL, "roi": _ROI, "revenue_other_currencies": _OTHER_REVENUE,
}, description="One campaign in one currency. `name` is null for a campaign the hub has not "
               "synced (its ad account is not connected): only its CRM leads are known.")
STATS_TOTAL = _object({
    "currency": _CURRENCY, "spend": _MONEY, "impressions": _INT, "clicks": _INT,
    "meta_leads": _INT, "leads": _INT, "won_leads": _INT, "revenue": _MONEY,
    "cost_per_lead": _CPL, "roi": _ROI,
})
ROI_CAMPAIGN = _object({
    "campaign_id": _STR, "name": _STR_OR_NULL, "account_id": _STR_OR_NULL,
    "currency": _CURRENCY, "spend": _MONEY, "leads": _INT, "won_leads": _INT,
    "revenue": _MONEY, "revenue_other_currencies": _OTHER_REVENUE, "roi": _ROI,
})
ROI_TOTAL = _object({"currency": _CURRENCY, "spend": _MONEY, "leads": _INT,
                     "won_leads": _INT, "revenue": _MONEY, "roi": _ROI})
CAMPAIGN = _object({
    "campaign_id": _STR, "name": _STR_OR_NULL, "account_id": _STR,
    "account_name": _STR_OR_NULL, "status": _STR_OR_NULL, "effective_status": _STR_OR_NULL,
    "objective": _STR_OR_NULL, "currency": _CURRENCY, "spend": _MONEY, "impressions": _INT,
    "clicks": _INT, "leads": {**_INT, "description": "Leads Meta reported"},
    "cost_per_lead": _CPL, "first_date": _DATE_OR_NULL, "last_date": _DATE_OR_NULL,
})
SEND_WINDOW = {"anyOf": [{"$ref": "#/components/schemas/SendWindow"}, {"type": "null"}]}
RULE = _object({
    "id": {"type": "string", "format": "uuid"},
    "name": _STR,
    "trigger_type": {"enum": ["lead_followup", "lead_created"]},
    "delay_hours": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 720},
                              {"type": "null"}],
                    "description": "lead_followup: hours after the lead was created; null for "
                                   "lead_created"},
    "delay_minutes": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 1440},
                                {"type": "null"}],
                      "description": "lead_created: minutes after the lead was created; null "
                                     "for lead_followup"},
    "template_name": _STR, "language": _STR,
    "body_params": {**_STRINGS, "description": "The lead field that fills each {{n}}"},
    "send_window": SEND_WINDOW,
    "enabled": {"type": "boolean"},
    "template_status": {**_STR_OR_NULL,
                        "description": "The template's status now; only APPROVED sends"},
    "template_rejection_reason": _STR_OR_NULL,
    "created_at": _TIME, "updated_at": _TIME,
}, required=["id", "name", "trigger_type", "delay_hours", "delay_minutes", "template_name",
             "language", "body_params", "enabled", "template_status", "created_at",
             "updated_at"])
PHONE_NUMBER = _object({
    "id": _STR, "display_phone_number": _STR_OR_NULL, "verified_name": _STR_OR_NULL,
    "quality_rating": _STR_OR_NULL, "messaging_limit_tier": _STR_OR_NULL,
    "throughput_level": _STR_OR_NULL,
    "max_per_second": {**_INT, "description": "The send pace this number allows"},
    "status": _STR_OR_NULL,
})
WABA = _object({
    "id": _STR, "name": _STR_OR_NULL, "timezone_id": _STR_OR_NULL, "currency": _STR_OR_NULL,
    "ownership": {"enum": ["owned", "client"],
                  "description": "owned: the person's own business; client: shared by a client"},
    "business_id": _STR, "business_name": _STR_OR_NULL,
    "phone_numbers": {"type": "array", "items": PHONE_NUMBER},
})
TEMPLATE = _object({
    "id": _STR, "name": _STR, "language": _STR, "category": _STR_OR_NULL,
    "status": {**_STR, "description": "Meta's status: APPROVED, PENDING, REJECTED, PAUSED, "
                                      "DISABLED, ..."},
    "rejection_reason": _STR_OR_NULL, "quality_score": _STR_OR_NULL,
    "placeholders": {**_INT, "description": "How many {{n}} the body has"},
    "usable_in_rules": {"type": "boolean"},
    "components": {"type": "array", "items": {"type": "object"},
                   "description": "Meta's components (HEADER, BODY, FOOTER, BUTTONS) as given"},
    "synced_at": _TIME_OR_NULL,
})
LOG = _object({
    "id": _STR,
    "lead": _object({"id": _STR, "name": _STR_OR_NULL}),
    "phone": {**_STR_OR_NULL, "description": "Masked: +34******003"},
    "rule": _object({"id": _STR, "name": _STR_OR_NULL, "deleted": {"type": "boolean"}}),
    "template": _object({"name": _STR, "language": _STR}),
    "status": {"enum": ["PENDING", "SENT", "DELIVERED", "READ", "FAILED", "SKIPPED",
                        "UNKNOWN"]},
    "wamid": _STR_OR_NULL,
    "error": {"anyOf": [_object({"code": _STR_OR_NULL, "message": _STR_OR_NULL}),
                        {"type": "null"}]},
    "attempts": _INT, "created_at": _TIME, "updated_at": _TIME, "sent_at": _TIME_OR_NULL,
    "delivered_at": _TIME_OR_NULL, "read_at": _TIME_OR_NULL, "failed_at": _TIME_OR_NULL,
})
REFRESH_SUMMARY = _object({name: _INT for name in ("checked", "refreshed", "failed",
                                                   "needs_reconnect")},
                          description="`needs_reconnect` counts tokens Meta will no longer "
                                      "renew or accept; a token that still works but is not "
                                      "extended stays `expiring` (with its `reason`).")

# -- examples ----------------------------------------------------------------------------------
_RULE_EXAMPLE = {
    "id": "0b7f6f8e-4c1d-4a59-9b43-6f0d2c1e9a10", "name": "Seguimiento 24h",
    "trigger_type": "lead_followup", "delay_hours": 24, "delay_minutes": None,
    "template_name": "lead_followup_es",
    "language": "es", "body_params": ["first_name"], "send_window": None, "enabled": True,
    "template_status": "APPROVED", "template_rejection_reason": None,
    "created_at": "2026-12-01T09:30:00+00:00", "updated_at": "2026-12-01T09:30:00+00:00",
}
_STATS_ENTRY = {"campaign_id": "23850000000079199", "name": "Campaña 10 - Ventas Demo 01",
                "account_id": "act_1000000000000001", "currency": "EUR", "spend": 1035.42,
                "leads": 12, "won_leads": 3, "revenue": 1500.0,
                "revenue_other_currencies": [], "roi": 0.4487}
_STATS_TOTAL = {"currency": "EUR", "spend": 65098.16, "leads": 300, "won_leads": 75,
                "revenue": 36450.0, "roi": -0.4401}


# -- operations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    operation_id: str
    tag: str
    summary: str
    description: str
    status: str = "200"
    schema: dict[str, Any] | None = None  # None: no body
    example: Any = None
    # Errors besides 401 (routes behind the authorizer), 403 (admin routes) and `default`.
    errors: tuple[str, ...] = ()
    media: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)


META_CALL_ERRORS = ("409", "429", "502")  # not connected / reconnect; rate limited; Meta down

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/crm/auth/meta/url"): Operation(
        "getMetaLoginUrl", "Meta connection", "Start connecting Meta: the login dialog URL",
        "Stores a one-time `state` (5 minutes) and sets the HttpOnly browser-binding cookie "
        "`mh_oauth_binding` (Path=/crm/auth/meta, SameSite=Lax). Call it with credentials "
        "included from a page on the API's site, then send the browser to `url`.",
        schema=_object({"url": {"type": "string", "minLength": 1},
                        "state": {"type": "string", "minLength": 1}}),
        example={"url": "https://www.facebook.com/v26.0/dialog/oauth?client_id=1234567890&...",
                 "state": "kq2N0m...Yw"}),
    ("GET", "/crm/auth/meta/callback"): Operation(
        "metaOAuthCallback", "Meta connection", "Meta sends the browser back here",
        "Always a 302 to FRONTEND_URL/crm/marketing with `success=connected` or "
        "`error=access_denied|invalid_state|missing_scopes|meta_error` (`missing=a,b` for "
        "missing_scopes). Needs the binding cookie of the browser that asked for the URL.",
        status="302"),
    ("GET", "/crm/marketing/token-status"): Operation(
        "getTokenStatus", "Meta connection", "The Meta connection's health",
        "From the database only (no Meta call). Never the token.",
        schema=_object({
            "status": {"enum": ["not_connected", "active", "expiring", "needs_reconnect"]},
            "expires_at": _TIME_OR_NULL, "data_access_expires_at": _TIME_OR_NULL,
            "scopes": _STRINGS, "missing_scopes": _STRINGS,
            "reason": {**_STR_OR_NULL, "description": "Why it is expiring or needs a reconnect, "
                       "e.g. token_not_extended, token_expired"},
        }, required=["status", "expires_at", "scopes", "missing_scopes"]),
        example={"status": "active", "expires_at": "2027-01-31T06:33:07Z",
                 "data_access_expires_at": "2027-03-02T06:34:02Z",
                 "scopes": ["ads_management", "ads_read", "business_management"],
                 "missing_scopes": [], "reason": None}),
    ("POST", "/crm/auth/meta/refresh-tokens"): Operation(
        "refreshMetaToken", "Meta connection", "Renew this tenant's Meta token now",
        "What the hourly job does, for this tenant only; the same summary.",
        schema=REFRESH_SUMMARY, errors=META_CALL_ERRORS,
        example={"checked": 1, "refreshed": 1, "failed": 0, "needs_reconnect": 0}),
    ("GET", "/crm/marketing/meta-accounts"): Operation(
        "listAdAccounts", "Ad accounts", "Every ad account the Meta token can use, once each",
        "Personal and business accounts (owned and client), each once however many paths "
        "reach it.",
        schema=_object({"accounts": {"type": "array", "items": _object({
            "id": {"type": "string", "pattern": "^act_[0-9]+$"}, "name": _STR_OR_NULL,
            "type": {"const": "AD_ACCOUNT"},
            "business_manager_id": _STR_OR_NULL, "business_manager_name": _STR_OR_NULL,
            "currency": _STR_OR_NULL, "timezone": _STR_OR_NULL,
            "status": {**_STR_OR_NULL, "description": "Meta's account_status by name"},
            "can_run_ads": {"type": "boolean"},
            "amount_spent": {"type": ["string", "number", "null"]},
            "balance": {"type": ["string", "number", "null"]},
        })}}),
        errors=META_CALL_ERRORS,
        example={"accounts": [{"id": "act_1000000000000001", "name": "Ventas Demo 01",
                               "type": "AD_ACCOUNT", "business_manager_id": "5001",
                               "business_manager_name": "Ventas Demo Ads S.L.",
                               "currency": "EUR", "timezone": "Europe/Madrid",
                               "status": "ACTIVE", "can_run_ads": True,
                               "amount_spent": "1234567", "balance": "0"}]}),
    ("POST", "/crm/marketing/connect"): Operation(
        "connectAdAccount", "Ad accounts", "Connect one ad account; its campaigns start syncing",
        "Puts `MetaAdAccountConnected` on the event bus: the campaign sync runs within seconds.",
        schema=_object({"status": {"const": "connected"}, "account_id": _STR,
                        "account_name": _STR, "message": _STR}),
        errors=("400", *META_CALL_ERRORS),
        example={"status": "connected", "account_id": "act_1000000000000001",
                 "account_name": "Ventas Demo 01",
                 "message": "Ad account connected. Its campaigns are syncing now."},
        extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": _object({"account_id": {
                "type": "string", "pattern": r"^\s*(act_)?[0-9]+\s*$",
                "description": "act_<digits> or <digits>"}}),
            "example": {"account_id": "act_1000000000000001"}}}}}),
    ("GET", "/crm/marketing/campaigns"): Operation(
        "listCampaigns", "Campaign results", "Synced campaigns with Meta's figures",
        "Spend, impressions, clicks and Meta's own lead count per campaign in the range, "
        "biggest spend first.",
        schema=_object({**_RANGE, "campaigns": {"type": "array", "items": CAMPAIGN}}),
        example={"from": None, "to": None, "campaigns": [{
            "campaign_id": "23850000000055439", "name": "Campaña 07 - Ventas Demo 01",
            "account_id": "act_1000000000000001", "account_name": "Ventas Demo 01",
            "status": "ACTIVE", "effective_status": "ACTIVE", "objective": "OUTCOME_LEADS",
            "currency": "EUR", "spend": 2578.05, "impressions": 112545, "clicks": 3555,
            "leads": 180, "cost_per_lead": 14.32, "first_date": "2026-09-04",
            "last_date": "2026-12-02"}]}),
    ("GET", "/crm/marketing/stats"): Operation(
        "getMarketingStats", "Campaign results",
        "Leads, spend, cost per lead, won revenue and ROI per campaign and in total",
        "CRM leads are attributed by `leads.meta_campaign_id`; revenue is the `deal_value` of "
        "won leads. `totals` has one entry per currency (money is never summed across "
        "currencies); `unattributed` holds Meta leads without a campaign.",
        schema=_object({**_RANGE,
                        "campaigns": {"type": "array", "items": STATS_CAMPAIGN},
                        "unattributed": {"type": "array", "items": _object({
                            "currency": _CURRENCY, "leads": _INT, "won_leads": _INT,
                            "revenue": _MONEY})},
                        "totals": {"type": "array", "items": STATS_TOTAL}}),
        example={"from": "2026-11-01", "to": "2026-11-30", "campaigns": [{
            **_STATS_ENTRY, "status": "ACTIVE", "effective_status": "ACTIVE",
            "objective": "OUTCOME_LEADS", "impressions": 45210, "clicks": 1490,
            "meta_leads": 75, "cost_per_lead": 86.29}],
            "unattributed": [{"currency": "EUR", "leads": 7, "won_leads": 0, "revenue": 0.0}],
            "totals": [{**_STATS_TOTAL, "impressions": 2938964, "clicks": 92764,
                        "meta_leads": 4692, "cost_per_lead": 216.99}]}),
    ("GET", "/crm/marketing/stats/roi"): Operation(
        "getMarketingRoi", "Campaign results", "The same figures ranked by ROI, best first",
        "Campaigns without spend (no ROI) come last.",
        schema=_object({**_RANGE, "campaigns": {"type": "array", "items": ROI_CAMPAIGN},
                        "totals": {"type": "array", "items": ROI_TOTAL}}),
        example={"from": None, "to": None, "campaigns": [_STATS_ENTRY],
                 "totals": [_STATS_TOTAL]}),
    ("GET", "/crm/marketing/whatsapp-accounts"): Operation(
        "listWhatsAppAccounts", "WhatsApp",
        "WhatsApp Business accounts and phone numbers the token can use",
        "Each WABA once, sorted by name, with its numbers' quality, messaging limit and pace.",
        schema=_object({"accounts": {"type": "array", "items": WABA}}),
        errors=META_CALL_ERRORS,
        example={"accounts": [{
            "id": "8001", "name": "Ventas Demo WhatsApp", "timezone_id": "1",
            "currency": "EUR", "ownership": "owned", "business_id": "7001",
            "business_name": "Ventas Demo S.L.", "phone_numbers": [{
                "id": "9001", "display_phone_number": "+34 600 000 001",
                "verified_name": "Ventas Demo", "quality_rating": "GREEN",
                "messaging_limit_tier": "TIER_1K", "throughput_level": "STANDARD",
                "max_per_second": 80, "status": "CONNECTED"}]}]}),
    ("POST", "/crm/marketing/whatsapp/connect"): Operation(
        "connectWhatsAppNumber", "WhatsApp", "Make a phone number the tenant's sender",
        "Subscribes the app to the WABA's webhooks and syncs its templates. A number feeds "
        "one tenant at a time.",
        schema=_object({
            "status": {"const": "connected"}, "waba_id": _STR, "phone_number_id": _STR,
            "display_phone_number": _STR_OR_NULL, "verified_name": _STR_OR_NULL,
            "quality_rating": _STR_OR_NULL, "messaging_limit_tier": _STR_OR_NULL,
            "max_per_second": _INT, "timezone": _STR, "templates_synced_at": _TIME_OR_NULL,
            "connected_at": _TIME, "templates": {**_INT, "description": "Templates synced"},
            "message": _STR}),
        errors=("400", *META_CALL_ERRORS),
        example={"status": "connected", "waba_id": "8001", "phone_number_id": "9001",
                 "display_phone_number": "+34 600 000 001", "verified_name": "Ventas Demo",
                 "quality_rating": "GREEN", "messaging_limit_tier": "TIER_1K",
                 "max_per_second": 80, "timezone": "UTC",
                 "templates_synced_at": "2026-12-02T06:34:03+00:00",
                 "connected_at": "2026-12-02T06:34:03+00:00", "templates": 6,
                 "message": "WhatsApp number +34 600 000 001 connected; 6 templates synced."}),
    ("GET", "/crm/marketing/hsm/templates"): Operation(
        "listTemplates", "WhatsApp", "The sender's templates with status and rejection reason",
        "Synced from Meta on connect and kept current by its template webhooks. Only "
        "APPROVED templates send; `usable_in_rules` says whether a rule may name it.",
        schema=_object({"templates": {"type": "array", "items": TEMPLATE},
                        "synced_at": _TIME_OR_NULL,
                        "connected": {"type": "boolean",
                                      "description": "Whether a WhatsApp number is connected"}}),
        example={"templates": [{
            "id": "476403332111735", "name": "lead_followup_es", "language": "es",
            "category": "MARKETING", "status": "APPROVED", "rejection_reason": None,
            "quality_score": "GREEN", "placeholders": 1, "usable_in_rules": True,
            "components": [{"type": "BODY", "text": "Hola {{1}}, ¿seguimos hablando?"}],
            "synced_at": "2026-12-02T06:34:03+00:00"}],
            "synced_at": "2026-12-02T06:34:03+00:00", "connected": True}),
    ("GET", "/crm/marketing/hsm/rules"): Operation(
        "listRules", "HSM rules", "The tenant's automation rules", "Newest first.",
        schema=_object({"rules": {"type": "array", "items": RULE}}),
        example={"rules": [_RULE_EXAMPLE]}),
    ("POST", "/crm/marketing/hsm/rules"): Operation(
        "createRule", "HSM rules", "Create a rule",
        "The template must be one of the sender's synced templates; a name is unique per "
        "tenant (409 conflict). A rule on a template that is not APPROVED is stored but sends "
        "nothing until Meta approves it.",
        status="201", schema=RULE, errors=("409",), example=_RULE_EXAMPLE),
    ("PATCH", "/crm/marketing/hsm/rules/{rule_id}"): Operation(
        "updateRule", "HSM rules", "Change some fields of a rule",
        "Only the fields sent change; `send_window: null` removes the window.",
        schema=RULE, errors=("404", "409"), example={**_RULE_EXAMPLE, "enabled": False}),
    ("DELETE", "/crm/marketing/hsm/rules/{rule_id}"): Operation(
        "deleteRule", "HSM rules", "Delete a rule",
        "Its message log stays (the rule shows as deleted there).",
        status="204", errors=("404",)),
    ("GET", "/crm/marketing/hsm/logs"): Operation(
        "listMessageLog", "Message log", "Messages sent by rules, with delivery status",
        "Newest first, `limit` per page; pass `next_cursor` back as `cursor` for the next "
        "page. Filters: `rule_id`, `status` (pending, sent, delivered, read, failed, skipped), "
        "`from`/`to` (YYYY-MM-DD). Phones are masked.",
        schema=_object({"logs": {"type": "array", "items": LOG},
                        "next_cursor": _STR_OR_NULL}),
        example={"logs": [{
            "id": "ce00fda9-9da8-497e-bb98-7c823fe7a807",
            "lead": {"id": "93c45d6e-6a67-476c-8dd3-30531cb247ae", "name": "Carmen Gil"},
            "phone": "+34******003",
            "rule": {"id": "0b7f6f8e-4c1d-4a59-9b43-6f0d2c1e9a10", "name": "Seguimiento 24h",
                     "deleted": False},
            "template": {"name": "lead_followup_es", "language": "es"}, "status": "READ",
            "wamid": "wamid.HBgLMzQ2MTEwMDAwMDMVAgARGBI", "error": None, "attempts": 1,
            "created_at": "2026-12-02T06:34:04+00:00", "updated_at": "2026-12-02T06:34:06+00:00",
            "sent_at": "2026-12-02T06:34:04+00:00", "delivered_at": "2026-12-02T06:34:05+00:00",
            "read_at": "2026-12-02T06:34:06+00:00", "failed_at": None}],
            "next_cursor": None}),
    ("GET", "/crm/marketing/pages"): Operation(
        "listPages", "Lead Ads", "The Facebook Pages the person can advertise on",
        "Pages where the connected person has the ADVERTISE task, sorted by name; `connected` "
        "says whether the Page feeds this tenant. 409 missing_scopes until the Lead Ads "
        "permissions are granted.",
        schema=_object({"pages": {"type": "array", "items": _object(
            {"id": _STR, "name": _STR, "connected": {"type": "boolean"}})}}),
        errors=META_CALL_ERRORS,
        example={"pages": [{"id": "104857600000001", "name": "Ventas Demo",
                            "connected": False}]}),
    ("POST", "/crm/marketing/pages/connect"): Operation(
        "connectPage", "Lead Ads", "Connect a Page: its lead forms become CRM leads",
        "Stores the Page token encrypted, subscribes the app to the Page's `leadgen` field and "
        "imports the Page's leads of the last 90 days (`imported`: new leads). A Page feeds "
        "one tenant at a time (409 page_unavailable); 400 page_not_accessible when Meta denies "
        "it; 409 missing_scopes without the Lead Ads permissions.",
        schema=_object({"status": {"const": "connected"}, "page_id": _STR, "page_name": _STR,
                        "imported": {**_INT, "description": "Leads imported (new rows)"}}),
        errors=("400", "422", *META_CALL_ERRORS),
        example={"status": "connected", "page_id": "104857600000001",
                 "page_name": "Ventas Demo", "imported": 12}),
    ("GET", "/crm/marketing/leads/ads"): Operation(
        "listLeadAdsLeads", "Lead Ads", "Leads that came from lead forms",
        "Newest first, `limit` per page; pass `next_cursor` back as `cursor`. Each with its "
        "campaign, ad, form and whether a follow-up was sent (a message Meta accepted).",
        schema=_object({"leads": {"type": "array", "items": _object({
            "id": _STR, "name": _STR, "phone": _STR_OR_NULL, "email": _STR_OR_NULL,
            "created_at": _TIME,
            "campaign": {"type": ["object", "null"], "properties": {
                "id": _STR, "name": _STR_OR_NULL}},
            "ad_id": _STR_OR_NULL, "form_id": _STR_OR_NULL, "page_id": _STR_OR_NULL,
            "leadgen_id": _STR_OR_NULL, "followup_sent": {"type": "boolean"},
            "followup_sent_at": _TIME_OR_NULL, "last_contacted_at": _TIME_OR_NULL,
            "whatsapp_opt_out": {"type": "boolean"}})},
            "next_cursor": _STR_OR_NULL}),
        errors=("422",),
        example={"leads": [{
            "id": "93c45d6e-6a67-476c-8dd3-30531cb247ae", "name": "Carmen Gil",
            "phone": "+5491155501234", "email": "carmen@example.com",
            "created_at": "2026-12-02T06:34:04+00:00",
            "campaign": {"id": "120200000000001", "name": "Black Friday"},
            "ad_id": "120200000000011", "form_id": "300400500600700",
            "page_id": "104857600000001", "leadgen_id": "900800700600500",
            "followup_sent": True, "followup_sent_at": "2026-12-02T06:34:09+00:00",
            "last_contacted_at": "2026-12-02T06:34:09+00:00", "whatsapp_opt_out": False}],
            "next_cursor": None}),
    ("GET", "/crm/webhooks/meta"): Operation(
        "verifyMetaWebhook", "Meta webhooks", "Meta's subscription handshake",
        "Answers `hub.challenge` as text when `hub.verify_token` is META_VERIFY_TOKEN.",
        schema={"type": "string"}, media="text/plain", example="1158201444",
        errors=("403",)),
    ("POST", "/crm/webhooks/meta"): Operation(
        "receiveMetaWebhook", "Meta webhooks", "Signed updates from Meta",
        "Message statuses (sent, delivered, read, failed), template status and quality "
        "changes, opt-outs; Lead Ads notifications (`object: page`, field `leadgen`), each "
        "lead queued for reading. X-Hub-Signature-256 must be the HMAC-SHA256 of the raw body "
        "with the app secret (401 otherwise). Answers what it applied (for a `page` payload: "
        "leads_queued, leads_known, unknown_page, ignored).",
        schema=_object({"received": {
            "type": "object", "additionalProperties": _INT,
            "description": "Counts of what the delivery carried and what was done with it"}}),
        errors=("401",),
        example={"received": {"statuses": 1, "statuses_unmatched": 0, "template_changes": 0,
                              "templates": 0, "opt_outs": 0, "opt_ins": 0,
                              "unknown_number": 0, "ignored": 0}}),
}

# Only a tenant admin may call these (a member gets 403), as CONTRACT.md's route table says.
ADMIN_ONLY = frozenset({
    ("GET", "/crm/auth/meta/url"), ("POST", "/crm/auth/meta/refresh-tokens"),
    ("GET", "/crm/marketing/meta-accounts"), ("POST", "/crm/marketing/connect"),
    ("GET", "/crm/marketing/whatsapp-accounts"), ("POST", "/crm/marketing/whatsapp/connect"),
    ("POST", "/crm/marketing/hsm/rules"), ("PATCH", "/crm/marketing/hsm/rules/{rule_id}"),
    ("DELETE", "/crm/marketing/hsm/rules/{rule_id}"),
    ("GET", "/crm/marketing/pages"), ("POST", "/crm/marketing/pages/connect"),
})

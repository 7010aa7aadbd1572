"""Automation rules (`lead_followup` and `lead_created`, CONTRACT.md): validation,
create/update/delete, and the helpers the dispatcher uses to fill a rule's template for a lead
and to honour its send window.

Validation happens in two layers: the pydantic models reject malformed input (422 from the API
edge), and `_check_template` checks the rule against the tenant's synced templates in the same
transaction that writes it, so an invalid rule is never stored.

Decisions:
- A duplicate name (case-insensitive, among live rules) is 409 `conflict`: the input is valid,
  it collides with existing data.
- A template that can never be sent again (REJECTED, DISABLED, DELETED...) is refused at
  creation with 422. PENDING and PAUSED templates are accepted (they may become or return to
  APPROVED); the dispatcher skips them while they are not APPROVED, and the response shows the
  template's current status so the screen can warn.
- Deleting a rule keeps its logs: the rule is soft-deleted and disabled.
- Each trigger has its own delay: `delay_hours` (1..720, required) for `lead_followup`,
  `delay_minutes` (0..1440, default 0) for `lead_created`; the other one is refused (422), and
  a rule's trigger cannot change (422: delete it and create another).
- A rule remembers when it was last enabled (`enabled_at`, stored, not shown): a
  `lead_created` rule messages only the leads created since, so enabling it never messages the
  leads already there.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.hsm import rules_store as store
from shared.platform.db import tenant_tx
from shared.platform.errors import Conflict, InvalidInput, NotFound
from shared.platform.observability import logger
from shared.whatsapp import templates_store
from shared.whatsapp.templates import UNUSABLE_STATUSES, placeholder_count, unfillable_parts

NAME_TAKEN = "A rule with this name already exists."
RULE_NOT_FOUND = "Rule not found."
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"

# Lead fields a rule may put into the template's body variables, in order.
LeadField = Literal["name", "first_name", "email", "phone", "lead_source", "meta_ad_headline"]
# Meta refuses an empty text parameter; these stand in for a missing value.
_FALLBACK = {"name": "cliente", "first_name": "cliente"}


def lead_param_values(body_params: list[str], lead: Mapping[str, Any]) -> list[str]:
    """The text of each body variable for one lead, e.g. ["first_name"] -> ["Ana"]."""
    values = []
    for param in body_params:
        if param == "first_name":
            value = str(lead.get("name") or "").strip().split(" ")[0]
        else:
            value = str(lead.get(param) or "").strip()
        values.append(value or _FALLBACK.get(param, "-"))
    return values


def in_send_window(send_window: Mapping[str, Any] | None, now: datetime) -> bool:
    """True when `now` (aware) is inside the rule's window; no window means always.

    start < end is a same-day window; start > end wraps midnight (e.g. 20:00-08:00).
    """
    if not send_window:
        return True
    local = now.astimezone(ZoneInfo(send_window.get("timezone") or "UTC")).time()
    start = time.fromisoformat(send_window["start"])
    end = time.fromisoformat(send_window["end"])
    if start < end:
        return start <= local < end
    return local >= start or local < end


# -- input models (the API edge turns their errors into 422) -----------------------------------
# defer_build: a model's validator is built on its first use, not at import. The dispatcher and
# whatsapp_connect import this module for the helpers above and never validate a rule; the rules
# API builds only the model its request needs (cold start).
def iana_timezone(value: str | None) -> str | None:
    """A pydantic check: an IANA zone name (or None)."""
    if value is None:
        return None
    try:
        if len(value) > 64:
            raise ValueError
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("must be an IANA time zone such as Europe/Madrid") from None
    return value


class SendWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    start: Annotated[str, Field(pattern=_HHMM, description="HH:MM, local time")]
    end: Annotated[str, Field(pattern=_HHMM, description="HH:MM, local time")]
    timezone: str | None = Field(default=None, description="IANA name; default: the sender's")

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        return iana_timezone(value)

    @model_validator(mode="after")
    def _not_empty(self) -> SendWindow:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


def visible_text(value: str) -> str:
    """A pydantic check for names people read: no control characters (Postgres refuses NUL),
    and no invisible format characters, which make one name look like another or reorder
    what is shown around it: bidi controls (U+202A-202E, U+2066-2069, U+200E/F, U+061C),
    zero-width characters (U+200B-200D, U+2060, U+FEFF), line and paragraph separators. The
    price: an emoji sequence joined by U+200D (a family, a flag variant) is refused too."""
    for char in value:
        if unicodedata.category(char) in _INVISIBLE:
            raise ValueError(f"must not contain invisible or control characters "
                             f"(U+{ord(char):04X})")
    return value


_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
RuleName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"),
                     AfterValidator(visible_text)]  # the pattern: what the OpenAPI document says
TemplateName = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,512}$")]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")]
DelayHours = Annotated[StrictInt, Field(ge=1, le=720)]
DelayMinutes = Annotated[StrictInt, Field(ge=0, le=1440)]
Trigger = Literal["lead_followup", "lead_created"]
_DELAY_OF = {"lead_followup": "delay_hours", "lead_created": "delay_minutes"}
BodyParams = Annotated[list[LeadField], Field(max_length=20)]


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    name: RuleName
    trigger_type: Trigger = "lead_followup"
    delay_hours: DelayHours | None = Field(
        default=None, description="lead_followup only, and required there: hours after the "
        "lead was created")
    delay_minutes: DelayMinutes | None = Field(
        default=None, description="lead_created only (default 0): minutes after the lead "
        "was created")
    template_name: TemplateName
    language: Language
    body_params: BodyParams = Field(default_factory=list)
    send_window: SendWindow | None = None
    enabled: StrictBool = True

    @model_validator(mode="wrap")
    @classmethod
    def _trigger_delay(cls, data: Any, handler: Any) -> RuleCreate:
        """Each trigger its own delay, reported with the other fields' errors (one 422 lists
        every field): delay_hours required for lead_followup, and neither delay on the other
        trigger."""
        try:
            rule, errors = handler(data), []
        except ValidationError as exc:
            rule, errors = None, [_error_details(e) for e in exc.errors()]
        if isinstance(data, dict):
            trigger = data.get("trigger_type", "lead_followup")
            own = _DELAY_OF.get(trigger) if isinstance(trigger, str) else None
            if own == "delay_hours" and data.get("delay_hours") is None:
                errors.append({"type": "missing", "loc": ("delay_hours",), "input": data})
            for other in set(_DELAY_OF.values()) - {own} if own else ():
                if data.get(other) is not None:
                    errors.append({"type": PydanticCustomError(
                        "delay_of_other_trigger", "not a field of a {trigger} rule",
                        {"trigger": trigger}), "loc": (other,), "input": data[other]})
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        if rule.trigger_type == "lead_created" and rule.delay_minutes is None:
            rule.delay_minutes = 0
        return rule


def _error_details(error: Any) -> dict[str, Any]:
    """A pydantic error as ValidationError.from_exception_data takes it again."""
    details = {"type": error["type"], "loc": error["loc"], "input": error["input"]}
    if error.get("ctx"):
        details["ctx"] = error["ctx"]
    return details


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)

    name: RuleName | None = None
    trigger_type: Trigger | None = None  # only the rule's own: a trigger cannot change
    delay_hours: DelayHours | None = None
    delay_minutes: DelayMinutes | None = None
    template_name: TemplateName | None = None
    language: Language | None = None
    body_params: BodyParams | None = None
    send_window: SendWindow | None = None  # explicit null removes the window
    enabled: StrictBool | None = None

    @model_validator(mode="after")
    def _something(self) -> RulePatch:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        for field in self.model_fields_set - {"send_window"}:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


# -- logic --------------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def public_rule(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "trigger_type": row["trigger_type"],
        "delay_hours": row["delay_hours"],
        "delay_minutes": row["delay_minutes"],
        "template_name": row["template_name"],
        "language": row["language"],
        "body_params": row["body_params"],
        "send_window": row["send_window"],
        "enabled": row["enabled"],
        "template_status": row["template_status"],
        "template_rejection_reason": row["template_rejection_reason"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _invalid(field: str, problem: str, message: str) -> InvalidInput:
    return InvalidInput(message, details=[{"field": field, "problem": problem}])


def _check_delays(trigger_type: str, given: set[str]) -> None:
    """The trigger's own delay only (given: the fields the body set)."""
    own = _DELAY_OF[trigger_type]
    for field in set(_DELAY_OF.values()) - {own}:
        if field in given:
            raise _invalid(field, f"not a field of a {trigger_type} rule",
                           f"A {trigger_type} rule has no {field}; its delay is {own}.")


def _check_template(conn: psycopg.Connection, name: str, language: str,
                    body_params: list[str]) -> None:
    row = templates_store.get(conn, name, language)
    if row is None:
        raise _invalid("template_name", "no synced template with this name and language",
                       f"No synced WhatsApp template '{name}' in language '{language}'. "
                       "Connect WhatsApp or pick one from the templates list.")
    if row["status"] in UNUSABLE_STATUSES:
        reason = f" ({row['rejection_reason']})" if row["rejection_reason"] else ""
        raise _invalid("template_name", f"template is {row['status']}",
                       f"Template '{name}' is {row['status']}{reason} and cannot be sent.")
    parts = unfillable_parts(row["components"])
    if parts:
        raise _invalid("template_name", f"needs {' and '.join(parts)} parameters",
                       f"Template '{name}' needs {' and '.join(parts)} parameters, which a rule "
                       "cannot fill.")
    expected = placeholder_count(row["components"])
    if len(body_params) != expected:
        raise _invalid("body_params", f"template has {expected} body variables",
                       f"Template '{name}' has {expected} body variables; body_params lists "
                       f"{len(body_params)} lead fields.")


def _window(conn: psycopg.Connection, window: SendWindow | None) -> dict[str, str] | None:
    if window is None:
        return None
    timezone = window.timezone or store.sender_timezone(conn) or "UTC"
    return {"start": window.start, "end": window.end, "timezone": timezone}


def _rule_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(RULE_NOT_FOUND) from None


def list_rules(tenant_id: str) -> dict[str, Any]:
    with tenant_tx(tenant_id) as conn:
        return {"rules": [public_rule(r) for r in store.list_live(conn)]}


def create_rule(tenant_id: str, user_id: str, body: RuleCreate) -> dict[str, Any]:
    try:
        with tenant_tx(tenant_id) as conn:
            _check_template(conn, body.template_name, body.language, body.body_params)
            fields = {**body.model_dump(exclude={"send_window"}),
                      "send_window": _window(conn, body.send_window)}
            rule_id = store.insert(conn, tenant_id, user_id or None, fields)
            row = store.get_live(conn, rule_id)
    except psycopg.errors.UniqueViolation:
        raise Conflict(NAME_TAKEN) from None
    logger.info("hsm_rule_created", extra={"tenant_id": tenant_id, "rule_id": rule_id})
    return public_rule(row)


def update_rule(tenant_id: str, rule_id: str, patch: RulePatch) -> dict[str, Any]:
    rule_id = _rule_id(rule_id)
    changes = {f: getattr(patch, f) for f in patch.model_fields_set if f != "send_window"}
    try:
        with tenant_tx(tenant_id) as conn:
            current = store.get_live(conn, rule_id, for_update=True)
            if current is None:
                raise NotFound(RULE_NOT_FOUND)
            if changes.get("trigger_type", current["trigger_type"]) != current["trigger_type"]:
                raise _invalid("trigger_type", "a rule's trigger cannot change",
                               "A rule's trigger cannot change; create another rule.")
            _check_delays(current["trigger_type"], set(changes))
            if "send_window" in patch.model_fields_set:
                changes["send_window"] = _window(conn, patch.send_window)
            if changes.keys() & {"template_name", "language", "body_params"}:
                merged = {**current, **changes}
                _check_template(conn, merged["template_name"], merged["language"],
                                merged["body_params"])
            store.update(conn, rule_id, changes)
            row = store.get_live(conn, rule_id)
    except psycopg.errors.UniqueViolation:
        raise Conflict(NAME_TAKEN) from None
    logger.info("hsm_rule_updated", extra={"tenant_id": tenant_id, "rule_id": rule_id,
                                           "fields": sorted(changes)})
    return public_rule(row)


def delete_rule(tenant_id: str, rule_id: str) -> None:
    rule_id = _rule_id(rule_id)
    with tenant_tx(tenant_id) as conn:
        if not store.soft_delete(conn, rule_id):
            raise NotFound(RULE_NOT_FOUND)
    logger.info("hsm_rule_deleted", extra={"tenant_id": tenant_id, "rule_id": rule_id})


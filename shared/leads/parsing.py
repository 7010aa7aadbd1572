"""A Meta lead (GET /{leadgen_id}, or an item of /{form_id}/leads) as the fields of a CRM lead.

Meta's `field_data` is a list of {"name", "values"}: the standard questions have fixed keys
(full_name, first_name, last_name, phone_number, email), custom ones keep their own. Phone
numbers are what the person typed: read with libphonenumber in the Page's default country when
they carry no country code, stored as E.164, and left out (the lead is still stored) when they
are not a possible number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

NAME_LIMIT = 200
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
EMAIL_LIMIT = 254


@dataclass(frozen=True)
class ParsedLead:
    leadgen_id: str
    page_id: str
    form_id: str | None
    name: str
    phone: str | None
    email: str | None
    campaign_id: str | None
    ad_id: str | None
    created_at: datetime
    is_organic: bool


def _text(value: Any, limit: int = 256) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).replace("\x00", "").strip()
    return text[:limit] or None


def answers(field_data: Any) -> dict[str, str]:
    """name -> first answer, for each well-formed item of field_data."""
    found: dict[str, str] = {}
    for item in field_data if isinstance(field_data, list) else []:
        if not isinstance(item, dict):
            continue
        name = (_text(item.get("name"), 100) or "").lower()
        values = item.get("values")
        first = values[0] if isinstance(values, list) and values else None
        text = _text(first, 1000)
        if name and text is not None and name not in found:
            found[name] = text
    return found


def e164(raw: str | None, default_country: str) -> str | None:
    """The number in E.164, or None when it is not a possible phone number."""
    if not raw:
        return None
    import phonenumbers  # on use: only the lead readers parse numbers

    try:
        number = phonenumbers.parse(raw, default_country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # What leads.phone accepts (0001's CHECK): a possible number that is shorter is left out
    # rather than failing the lead's row.
    return formatted if _E164.fullmatch(formatted) else None


def _email(raw: str | None) -> str | None:
    if not raw or "@" not in raw or any(c.isspace() for c in raw):
        return None
    return raw[:EMAIL_LIMIT].lower()


def _created(value: Any) -> datetime:
    """Meta's created_time: ISO 8601 with a +0000 offset on reads, unix seconds in webhooks."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    text = _text(value, 64)
    if text:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        try:
            parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
            return parsed.astimezone(UTC)
        except ValueError:
            try:
                return datetime.fromisoformat(text).astimezone(UTC)
            except ValueError:
                pass
    return datetime.now(UTC)


def parse_lead(raw: dict[str, Any], *, leadgen_id: str, page_id: str, default_country: str,
               form_id: str | None = None) -> ParsedLead:
    """CONTRACT "Lead Ads": name from full_name (else first + last name), phone in E.164, email
    when given, campaign and ad, Meta's created_time."""
    found = answers(raw.get("field_data"))
    name = found.get("full_name") or " ".join(
        part for part in (found.get("first_name"), found.get("last_name")) if part)
    return ParsedLead(
        leadgen_id=leadgen_id,
        page_id=page_id,
        form_id=_text(raw.get("form_id"), 64) or form_id,
        name=(name or "")[:NAME_LIMIT],
        phone=e164(found.get("phone_number") or found.get("phone"), default_country),
        email=_email(found.get("email")),
        campaign_id=_text(raw.get("campaign_id"), 64),
        ad_id=_text(raw.get("ad_id"), 64),
        created_at=_created(raw.get("created_time")),
        is_organic=raw.get("is_organic") is True,
    )

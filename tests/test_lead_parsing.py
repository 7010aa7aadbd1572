"""Meta's lead payload to the CRM lead's fields (shared/leads/parsing.py): name, E.164 phone in
the Page's default country, email, attribution and Meta's creation time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.leads.parsing import e164, parse_lead


@pytest.mark.parametrize(("raw", "country", "expected"), [
    ("+54 9 11 5555-1234", "AR", "+5491155551234"),
    ("11 5555-1234", "AR", "+541155551234"),
    ("011 15 5555-1234", "AR", "+5491155551234"),
    ("612 34 56 78", "ES", "+34612345678"),
    ("+34 612 345 678", "AR", "+34612345678"),  # a country code wins over the default
    ("(650) 555-1234", "US", "+16505551234"),
    ("12", "AR", None),
    ("call me", "AR", None),
    ("", "AR", None),
    (None, "AR", None),
])
def test_phone_numbers_become_e164_in_the_default_country(raw, country, expected):
    assert e164(raw, country) == expected


def test_a_lead_reads_its_fields_and_attribution():
    lead = parse_lead({
        "created_time": "2026-11-30T12:34:56+0000",
        "field_data": [{"name": "FIRST_NAME", "values": ["Ana"]},
                       {"name": "last_name", "values": ["Pérez"]},
                       {"name": "phone_number", "values": ["11 5555-1234"]},
                       {"name": "email", "values": ["Ana@Example.COM"]},
                       {"name": "¿cuándo te llamamos?", "values": ["mañana"]},
                       "junk", {"name": "email", "values": ["second@example.com"]}],
        "ad_id": "23", "campaign_id": "21", "form_id": "31", "is_organic": False,
    }, leadgen_id="41", page_id="51", default_country="AR")
    assert (lead.name, lead.phone, lead.email) == ("Ana Pérez", "+541155551234",
                                                   "ana@example.com")
    assert (lead.campaign_id, lead.ad_id, lead.form_id, lead.page_id) == ("21", "23", "31", "51")
    assert lead.is_organic is False
    assert lead.created_at == datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)


def test_full_name_wins_and_odd_shapes_are_left_out():
    lead = parse_lead({"created_time": 1_795_000_000, "field_data": [
        {"name": "full_name", "values": ["Bruno Díaz"]}, {"name": "first_name", "values": ["B"]},
        {"name": "email", "values": ["not an email"]}, {"name": "phone_number", "values": [7]},
    ]}, leadgen_id="1", page_id="2", default_country="ES", form_id="3")
    assert (lead.name, lead.email, lead.form_id, lead.ad_id) == ("Bruno Díaz", None, "3", None)
    assert lead.created_at == datetime.fromtimestamp(1_795_000_000, UTC)
    assert parse_lead({"field_data": None}, leadgen_id="1", page_id="2",
                      default_country="AR").name == ""

"""The sandbox's sending area over real HTTP: Meta's answers, limits, injected errors, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from werkzeug.wrappers import Request, Response

from devstack.local_api import ServerThread
from sandbox.control import SandboxControl
from sandbox.whatsapp_send import SendControl, max_in_any_second
from sandbox.world import SEED_APP_SECRET
from shared.meta.graph_core import appsecret_proof

SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging"]


class Number:
    """A fresh sandbox number with the default templates, and a token that may send from it."""

    def __init__(self, url: str, scopes: list[str] = SCOPES) -> None:
        self.url = url
        account = httpx.post(f"{url}/__sandbox/whatsapp/accounts", json={}).json()
        self.id = account["phone_number_ids"][0]
        self.waba_id = account["waba_id"]
        with SandboxControl(url) as control:
            self.token = control.issue_token(account["user_id"], scopes=scopes)

    def send(self, to: str = "+34600000001", name: str = "lead_followup_es",
             language: str = "es", params: list[str] | None = None, phone_id: str | None = None,
             **extra: Any) -> httpx.Response:
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if params is None:
            params = ["Ana"]
        if params:
            template["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": p} for p in params]}]
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                "type": "template", "template": template, **extra}
        return httpx.post(f"{self.url}/v26.0/{phone_id or self.id}/messages", json=body,
                          params={"appsecret_proof": appsecret_proof(self.token, SEED_APP_SECRET)},
                          headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture(scope="module")
def sandbox_url(stack) -> str:
    return stack.sandbox.url


@pytest.fixture(scope="module")
def control(sandbox_url) -> SendControl:
    client = SendControl(sandbox_url)
    yield client
    client.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


def test_an_accepted_send_answers_like_meta_and_is_recorded(sandbox_url, control):
    number = Number(sandbox_url)
    response = number.send("+34 600 000 001".replace(" ", ""), biz_opaque_callback_data="log-1")
    assert response.status_code == 200
    body = response.json()
    wamid = body["messages"][0]["id"]
    assert body == {"messaging_product": "whatsapp",
                    "contacts": [{"input": "+34600000001", "wa_id": "34600000001"}],
                    "messages": [{"id": wamid, "message_status": "accepted"}]}
    assert wamid.startswith("wamid.")
    stats = control.stats(number.id, messages=True)
    assert (stats["sent"], stats["distinct_recipients"], stats["max_per_second"]) == (1, 1, 80)
    [message] = stats["messages"]
    assert (message["wa_id"], message["template"], message["language"], message["params"],
            message["wamid"], message["biz_opaque_callback_data"]) == (
        "34600000001", "lead_followup_es", "es", ["Ana"], wamid, "log-1")


@pytest.mark.parametrize(("template", "language", "params", "code", "status"), [
    ("no_such_template", "es", ["Ana"], 132001, 404),
    ("lead_followup_es", "en_US", ["Ana"], 132001, 404),  # exists, but not in that language
    ("promo_rechazada", "es", ["Ana"], 132001, 404),  # REJECTED
    ("bienvenida_pendiente", "es", ["Ana"], 132001, 404),  # PENDING
    ("recordatorio_pausado", "es", ["Ana"], 132015, 400),  # PAUSED
    ("lead_followup_es", "es", [], 132000, 400),
    ("lead_followup_es", "es", ["Ana", "extra"], 132000, 400),
])
def test_templates_must_be_approved_in_that_language_with_every_parameter(
        sandbox_url, control, template, language, params, code, status):
    number = Number(sandbox_url)
    response = number.send(name=template, language=language, params=params)
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert error["error_data"]["messaging_product"] == "whatsapp" and error["error_data"]["details"]
    assert control.stats(number.id)["sent"] == 0


def test_a_token_without_messaging_or_access_to_the_number_is_refused(sandbox_url):
    number = Number(sandbox_url)
    no_messaging = Number(sandbox_url, scopes=["whatsapp_business_management"])
    assert error_of(no_messaging.send())["code"] == 200
    other = Number(sandbox_url)
    refused = other.send(phone_id=number.id)
    assert refused.status_code == 400 and error_of(refused)["code"] == 100


def test_the_per_number_cap_refuses_the_excess_with_130429(sandbox_url, control):
    number = Number(sandbox_url)
    control.configure_number(number.id, max_per_second=3)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: number.send(to=f"+3460000000{i}"), range(10)))
    stats = control.stats(number.id)
    accepted = [a for a in answers if a.status_code == 200]
    refused = [error_of(a)["code"] for a in answers if a.status_code != 200]
    assert refused and set(refused) == {130429}
    assert stats["rejected"] == {"130429": len(refused)}
    assert stats["sent"] == len(accepted) == 10 - len(refused)
    assert stats["max_in_any_second"] == 3  # never more than the cap in any second


def test_the_pair_limit_refuses_a_second_message_to_the_same_person_with_131056(
        sandbox_url, control):
    number = Number(sandbox_url)
    assert number.send(to="+34600000001").status_code == 200
    again = number.send(to="34600000001")  # same person, written without "+"
    assert error_of(again)["code"] == 131056
    assert number.send(to="+34600000002").status_code == 200


def test_injected_errors_hit_their_number_and_recipient_only(sandbox_url, control):
    number, other = Number(sandbox_url), Number(sandbox_url)
    control.inject_error(number.id, 131050, to="+34600000009")
    control.inject_error(number.id, 368, count=2)
    assert error_of(number.send(to="+34600000009"))["code"] == 131050
    assert other.send(to="+34600000009").status_code == 200
    assert [error_of(number.send(to=f"+3460000001{i}"))["code"] for i in range(2)] == [368, 368]
    assert number.send(to="+34600000020").status_code == 200
    control.inject_error(number.id, 190)
    expired = error_of(number.send(to="+34600000021"))
    assert (expired["code"], expired["error_subcode"]) == (190, 463)


def test_max_in_any_second_counts_a_sliding_window():
    assert max_in_any_second([]) == 0
    assert max_in_any_second([0.0, 0.5, 0.99, 1.0, 1.4]) == 4  # [0.5, 1.5)
    assert max_in_any_second([0.0, 1.0, 2.0]) == 1  # a window is one second, end excluded
    assert max_in_any_second([0.0, 0.9, 1.1, 1.2, 1.8, 3.0]) == 4


class Receiver:
    """A stand-in webhook endpoint that records raw bodies and signatures."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.server = ServerThread(self.app)

    def app(self, environ, start_response):
        request = Request(environ)
        self.received.append((request.get_data(), request.headers.get("X-Hub-Signature-256", "")))
        return Response("ok")(environ, start_response)

    def statuses(self) -> list[dict[str, Any]]:
        found = []
        for raw, _ in self.received:
            for entry in json.loads(raw)["entry"]:
                for change in entry["changes"]:
                    found += change["value"]["statuses"]
        return found

    def wait_for(self, count: int, seconds: float = 15.0) -> list[dict[str, Any]]:
        end = time.monotonic() + seconds
        while len(self.statuses()) < count and time.monotonic() < end:
            time.sleep(0.05)
        return self.statuses()


def test_status_webhooks_are_signed_batched_and_carry_the_callback_data(sandbox_url, control):
    number = Number(sandbox_url)
    receiver = Receiver()
    control.configure_webhooks(url=receiver.server.url, enabled=True, numbers=[number.id],
                               statuses=["sent", "delivered", "read"], batch_size=50)
    try:
        wamids = [number.send(to=f"+3460000000{i}", biz_opaque_callback_data=f"log-{i}")
                  .json()["messages"][0]["id"] for i in range(2)]
        Number(sandbox_url).send()  # another number: not subscribed in this test
        statuses = receiver.wait_for(6)
    finally:
        control.configure_webhooks(enabled=False, numbers=None)
        receiver.server.stop()
    assert len(statuses) == 6
    for raw, signature in receiver.received:
        expected = hmac.new(SEED_APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, f"sha256={expected}")
        body = json.loads(raw)
        assert body["object"] == "whatsapp_business_account"
        assert {e["id"] for e in body["entry"]} == {number.waba_id}
        for entry in body["entry"]:
            for change in entry["changes"]:
                assert change["field"] == "messages"
                assert change["value"]["metadata"]["phone_number_id"] == number.id
    for i, wamid in enumerate(wamids):
        mine = [s for s in statuses if s["id"] == wamid]
        assert [s["status"] for s in mine] == ["sent", "delivered", "read"]
        assert {s["biz_opaque_callback_data"] for s in mine} == {f"log-{i}"}
        assert {s["recipient_id"] for s in mine} == {f"3460000000{i}"}
    assert all(d["status_code"] == 200 for d in control.webhook_log()["deliveries"][-len(
        receiver.received):])

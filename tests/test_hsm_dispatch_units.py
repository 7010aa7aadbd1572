"""The dispatcher's pure parts: the pacer on a simulated clock, the error classes, the payload."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from datetime import UTC, datetime

import pytest

from sandbox.whatsapp_send import max_in_any_second
from shared.hsm.claims import Claim, Rule
from shared.hsm.eligibility import send_window_open
from shared.hsm.message import build_payload
from shared.hsm.outcomes import MAX_ATTEMPTS, Outcome, Stop, classify_send_error
from shared.hsm.pacing import TokenBucketPacer, in_flight_bound, pacing_burst, pacing_rate
from shared.hsm.planning import RulePlan, _parameter_names
from shared.meta.errors import MetaTransient, error_from_body, transport_error
from shared.meta.graph import GraphClient


class FakeClock:
    """Sleeps advance time; each wake-up is late by up to `jitter`, with rare long stalls."""

    def __init__(self, seed: int, jitter: float = 0.002, stall_every: int = 0) -> None:
        self.now = 1000.0
        self.random = random.Random(seed)
        self.jitter = jitter
        self.stall_every = stall_every
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.calls += 1
        stall = 0.3 if self.stall_every and self.calls % self.stall_every == 0 else 0.0
        self.now += seconds + self.random.uniform(0, self.jitter) + stall


def releases(cap: int, seconds: float, clock: FakeClock) -> list[float]:
    pacer = TokenBucketPacer.for_cap(cap, clock=clock, sleep=clock.sleep)
    times: list[float] = []

    async def run() -> None:
        end = clock.now + seconds
        while clock.now < end:
            await pacer.wait()
            times.append(clock.now)

    asyncio.run(run())
    return times


@pytest.mark.parametrize("cap", [20, 80, 1000])
@pytest.mark.parametrize("stall_every", [0, 37])
def test_the_pacer_never_exceeds_the_cap_in_any_second_and_reaches_it(cap, stall_every):
    clock = FakeClock(seed=cap, stall_every=stall_every)
    times = releases(cap, 10.0, clock)
    assert max_in_any_second(times) <= cap
    if not stall_every:
        # Steady state: the refill rate (94% of the cap), second after second.
        assert len(times) >= 0.93 * cap * 10


def test_after_a_stall_the_pacer_bursts_no_more_than_its_small_bucket():
    clock = FakeClock(seed=1, jitter=0.0)
    pacer = TokenBucketPacer.for_cap(1000, clock=clock, sleep=clock.sleep)
    assert pacing_rate(1000) + pacing_burst(1000) <= 0.97 * 1000
    assert pacer.reserve_slot() == 0
    clock.now += 5.0  # the loop was busy for 5 s
    immediate = 0
    while pacer.reserve_slot() == 0:
        immediate += 1
    assert immediate == int(pacing_burst(1000))  # 12, not 5 s worth (4,700)


def test_slowing_down_after_130429_is_bounded():
    clock = FakeClock(seed=2)
    pacer = TokenBucketPacer(100, clock=clock, sleep=clock.sleep)
    assert pacer.slow_down() is True and pacer.rate == pytest.approx(80)
    assert pacer.slow_down() is False  # a burst of refusals within a second is one signal
    for _ in range(20):
        clock.now += 1.0
        pacer.slow_down()
    assert pacer.rate == pytest.approx(50)  # never below half the starting pace


def test_the_pace_recovers_after_the_refusals_stop():
    clock = FakeClock(seed=3, jitter=0.0)
    pacer = TokenBucketPacer(100, clock=clock, sleep=clock.sleep)
    pacer.slow_down()
    assert pacer.rate == pytest.approx(80)
    clock.now += 1.0
    pacer.reserve_slot()
    assert pacer.rate == pytest.approx(80)  # not yet: one quiet interval is 2 s
    steps = []
    for _ in range(6):
        clock.now += 2.0
        pacer.reserve_slot()
        steps.append(round(pacer.rate))
    assert steps == [85, 90, 95, 100, 100, 100]  # back to the starting pace, never above


def test_a_refusal_right_after_a_recovery_step_still_slows_the_pace():
    clock = FakeClock(seed=4, jitter=0.0)
    pacer = TokenBucketPacer(100, clock=clock, sleep=clock.sleep)
    pacer.slow_down()
    clock.now += 2.0
    pacer.reserve_slot()
    assert pacer.rate == pytest.approx(85)
    clock.now += 0.5  # a new 130429, 2.5 s after the last one: a new signal
    assert pacer.slow_down() is True and pacer.rate == pytest.approx(68)


def test_in_flight_covers_rate_times_latency():
    assert in_flight_bound(pacing_rate(80)) == 34  # 75.2/s x 0.3 s x 1.5
    assert in_flight_bound(pacing_rate(1000)) == 423
    assert in_flight_bound(1) == 4
    assert in_flight_bound(10_000) == 500


def _meta(code: int, status: int = 400, **extra) -> Exception:
    return error_from_body(status, {"error": {"code": code, "message": f"(#{code}) x", **extra}})


@pytest.mark.parametrize(("code", "status", "outcome", "stop", "extra"), [
    (130429, 400, Outcome.RETRY, None, {"slow_down": True}),
    (131056, 400, Outcome.RETRY, None, {}),
    (131000, 500, Outcome.RETRY, None, {}),
    (2, 500, Outcome.RETRY, None, {}),
    (131026, 400, Outcome.FAILED, None, {}),
    (131049, 400, Outcome.FAILED, None, {}),
    (131050, 400, Outcome.FAILED, None, {"opt_out": True}),
    (132001, 404, Outcome.FAILED, Stop.RULE, {}),
    (132000, 400, Outcome.FAILED, Stop.RULE, {}),
    (368, 400, Outcome.FAILED, Stop.TENANT, {}),
    (190, 400, Outcome.RETRY, Stop.TENANT, {"reconnect": True}),
    (4, 400, Outcome.RETRY, Stop.TENANT, {}),
    (131048, 400, Outcome.RETRY, Stop.TENANT, {}),
    (200, 403, Outcome.RETRY, Stop.TENANT, {}),
    (100, 400, Outcome.FAILED, None, {}),
])
def test_error_classes(code, status, outcome, stop, extra):
    verdict = classify_send_error(_meta(code, status), attempts=1)
    assert verdict.outcome is outcome and verdict.stop is stop and verdict.code == str(code)
    for name, value in extra.items():
        assert getattr(verdict, name) == value
    if outcome is Outcome.RETRY and code != 190:
        assert verdict.retry_in_seconds >= 60


def test_no_answer_after_sending_is_unknown_but_a_request_never_sent_is_retried():
    sent = transport_error("timeout", "ReadTimeout")
    assert classify_send_error(sent, 1).outcome is Outcome.UNKNOWN
    unsent = transport_error("connection error", "ConnectError")
    unsent.request_sent = False
    assert classify_send_error(unsent, 1).outcome is Outcome.RETRY


def test_retries_end_in_failed_after_max_attempts():
    verdict = classify_send_error(_meta(130429), attempts=MAX_ATTEMPTS)
    assert verdict.outcome is Outcome.FAILED and verdict.code == "130429"
    assert verdict.message.startswith(f"Gave up after {MAX_ATTEMPTS} attempts")


def test_pair_limit_backs_off_four_to_the_attempts():
    assert classify_send_error(_meta(131056), 1).retry_in_seconds == 60
    assert classify_send_error(_meta(131056), 4).retry_in_seconds == 256


def _claim(name: str = "Ana María López") -> Claim:
    return Claim("log-1", "rule-1", "lead-1", "+34600000001", 0,
                 {"name": name, "email": None, "phone": "+34600000001", "lead_source": "meta",
                  "meta_ad_headline": "Pisos"})


def _rule(body_params: list[str]) -> Rule:
    return Rule("rule-1", "r", 24, "lead_followup_es", "es", body_params, None)


def test_the_payload_is_metas_template_send_with_the_log_id_as_callback_data():
    payload = build_payload(_claim(), RulePlan(_rule(["first_name", "meta_ad_headline"])))
    assert payload == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+34600000001",
        "type": "template", "biz_opaque_callback_data": "log-1",
        "template": {"name": "lead_followup_es", "language": {"code": "es"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"},
                                            {"type": "text", "text": "Pisos"}]}]}}


def test_named_templates_get_parameter_names_and_no_params_means_no_components():
    components = [{"type": "BODY", "text": "Hola {{nombre}}, {{nombre}} y {{ciudad}}"}]
    names = _parameter_names(components)
    assert names == ["nombre", "ciudad"]
    payload = build_payload(_claim(), RulePlan(_rule(["first_name", "lead_source"]),
                                               parameter_names=names))
    assert [p["parameter_name"] for p in payload["template"]["components"][0]["parameters"]] == [
        "nombre", "ciudad"]
    assert "components" not in build_payload(_claim(), RulePlan(_rule([])))["template"]


def test_send_windows_use_the_senders_zone_and_an_unreadable_window_is_closed():
    noon_utc = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # 14:00 in Madrid (CEST)
    window = {"start": "13:30", "end": "14:30"}
    assert send_window_open(window, "Europe/Madrid", noon_utc)
    assert not send_window_open(window, "UTC", noon_utc)
    assert send_window_open({"start": "22:00", "end": "13:00", "timezone": "UTC"}, None,
                            noon_utc)  # wraps midnight
    assert not send_window_open({"start": "25:99", "end": "x"}, "UTC", noon_utc)
    assert send_window_open(None, "UTC", noon_utc)


def test_the_graph_client_tells_a_request_that_never_left_from_one_left_unanswered():
    # Nobody listens: the connection is refused, so Meta cannot have seen the send.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # Listening but never answering: the request is written, then the read times out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for port, sent in ((closed_port, False), (silent.getsockname()[1], True)):
            graph = GraphClient("token", app_secret="secret",
                                base_url=f"http://127.0.0.1:{port}", version="v26.0",
                                timeout=0.3, max_attempts=1)
            with graph, pytest.raises(MetaTransient) as caught:
                graph.post("1/messages", json={"to": "+34600000001"})
            assert caught.value.request_sent is sent
            assert classify_send_error(caught.value, 1).outcome is (
                Outcome.UNKNOWN if sent else Outcome.RETRY)
    finally:
        silent.close()
    late = GraphClient("token", app_secret="secret", base_url="http://127.0.0.1:9",
                       version="v26.0", timeout=1, deadline=time.monotonic() - 1)
    with late, pytest.raises(MetaTransient) as caught:
        late.post("1/messages", json={})
    assert caught.value.request_sent is False

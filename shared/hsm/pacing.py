"""Pacing one phone number at its throughput cap, with enough sends in flight to reach it.

Meta counts messages per number per second and refuses the excess with 130429 (META_API.md §8).
The pacer is a token bucket on time.monotonic(): tokens refill at `rate` per second up to a small
`burst`, and each send takes one. In any one-second window it releases at most rate + burst
sends, whatever the event loop's hiccups; the small bucket (12.5 ms of sending, at least one
send) only keeps late wake-ups from losing throughput (at 1,000/s a sleep overshooting by 1 ms is
a whole send). Requests reach Meta with some jitter (network, scheduling), and Meta counts
arrivals, so the refill rate is 94% of the cap: rate + burst leaves ~47 ms of jitter before a
one-second window at Meta could hold more than the cap. (With a 25 ms bucket it was ~35 ms, and
one bench run in several saw a single 130429 at the 80/s cap: the sandbox counts arrivals as its
threads get to them, with tens of ms of jitter on a loaded machine.) A 130429 anyway slows the
pace (x0.8, at most once a second, never below half); each quiet stretch after it wins back 5%
of the starting pace, so a single refusal costs seconds of throughput, not the rest of the run
(it cost a third, measured by `make bench ONLY=hsm_dispatch`, when a slowdown was permanent).

Reaching the cap needs rate x latency sends in flight: at 80/s and 300 ms per answer that is 24
at once. `in_flight_bound` sizes the concurrency from the rate and the assumed answer time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

PACING_HEADROOM = 0.94  # refill at 94% of the cap...
BURST_SECONDS = 0.0125  # ...with a bucket of 12.5 ms of sending (at least one send)
ASSUMED_SEND_LATENCY_SECONDS = 0.3  # Meta's usual answer time for a send
LATENCY_SAFETY = 1.5  # slower answers than assumed still keep the pipe full
MIN_IN_FLIGHT = 4
MAX_IN_FLIGHT = 500  # sockets and memory of one Lambda
SLOWDOWN_FACTOR = 0.8  # after a 130429: Meta counts differently than we do; back off
SLOWDOWN_FLOOR = 0.5  # ...but never below half the starting pace
SLOWDOWN_EVERY_SECONDS = 1.0  # one back-off per second: a burst of 130429s is one signal
RECOVERY_STEP = 0.05  # after a slowdown, +5% of the starting pace...
RECOVERY_EVERY_SECONDS = 2.0  # ...per 2 s without a refusal, up to the starting pace
MIN_RATE = 1.0


def pacing_rate(max_per_second: int) -> float:
    return max(MIN_RATE, max_per_second * PACING_HEADROOM)


def pacing_burst(max_per_second: int) -> float:
    return max(1.0, max_per_second * BURST_SECONDS)


def in_flight_bound(rate: float, latency_seconds: float = ASSUMED_SEND_LATENCY_SECONDS) -> int:
    wanted = math.ceil(rate * latency_seconds * LATENCY_SAFETY)
    return max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, wanted))


class TokenBucketPacer:
    """Single consumer (the dispatcher's send loop): `await pacer.wait()` before each send."""

    def __init__(self, rate: float, burst: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate = max(MIN_RATE, float(rate))
        self._start_rate = self.rate
        self.burst = max(1.0, float(burst))
        self._floor = max(MIN_RATE, self.rate * SLOWDOWN_FLOOR)
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0  # start with one send, not a full bucket
        self._stamp: float | None = None
        self._slowed_at: float | None = None
        self._recovered_at: float | None = None

    @classmethod
    def for_cap(cls, max_per_second: int, **kwargs) -> TokenBucketPacer:
        return cls(pacing_rate(max_per_second), pacing_burst(max_per_second), **kwargs)

    def reserve_slot(self) -> float:
        """Take the next send's token; returns how long to wait until it is due (0: now)."""
        now = self._clock()
        self._recover(now)
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def _recover(self, now: float) -> None:
        if self.rate >= self._start_rate or self._slowed_at is None:
            return
        last_change = max(self._slowed_at, self._recovered_at or self._slowed_at)
        if now - last_change >= RECOVERY_EVERY_SECONDS:
            self.rate = min(self._start_rate, self.rate + self._start_rate * RECOVERY_STEP)
            self._recovered_at = now  # the next step is one more quiet interval away

    async def wait(self) -> None:
        delay = self.reserve_slot()
        if delay > 0:
            await self._sleep(delay)

    def slow_down(self, factor: float = SLOWDOWN_FACTOR) -> bool:
        """Meta refused for throughput: pace slower. True when the rate changed."""
        now = self._clock()
        if self._slowed_at is not None and now - self._slowed_at < SLOWDOWN_EVERY_SECONDS:
            return False
        self._slowed_at = now
        slower = max(self._floor, self.rate * factor)
        changed = slower < self.rate
        self.rate = slower
        return changed

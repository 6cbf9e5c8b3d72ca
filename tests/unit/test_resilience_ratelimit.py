"""The token bucket: rate, burst, cost, fairness and cancellation, over a fake clock."""

from __future__ import annotations

import asyncio

import ccxt
import pytest

from app.resilience import Guard, GuardConfig, TokenBucket, rate_from_ccxt


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


async def test_burst_goes_through_at_once_then_calls_wait_for_the_rate(t: FakeTime) -> None:
    bucket = TokenBucket(rate=10, burst=5, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        assert await bucket.acquire() == 0.0
    assert t.now == 0.0
    await bucket.acquire()
    assert t.now == pytest.approx(0.1)


async def test_long_run_rate_is_enforced(t: FakeTime) -> None:
    bucket = TokenBucket(rate=4, burst=2, clock=t.clock, sleep=t.sleep)
    for _ in range(42):
        await bucket.acquire()
    # 2 from the burst, the other 40 at 4 per second
    assert t.now == pytest.approx(10.0)


async def test_idle_time_refills_only_up_to_the_burst(t: FakeTime) -> None:
    bucket = TokenBucket(rate=10, burst=3, clock=t.clock, sleep=t.sleep)
    await bucket.acquire(3)
    t.now += 60.0  # a long pause does not bank 600 tokens
    start = t.now
    for _ in range(4):
        await bucket.acquire()
    assert t.now - start == pytest.approx(0.1)


async def test_calls_can_cost_more_than_one_token(t: FakeTime) -> None:
    bucket = TokenBucket(rate=10, burst=10, clock=t.clock, sleep=t.sleep)
    await bucket.acquire(5)
    await bucket.acquire(5)
    assert t.now == 0.0
    await bucket.acquire(5)
    assert t.now == pytest.approx(0.5)


async def test_a_call_costing_more_than_the_burst_waits_for_a_full_bucket_and_leaves_debt(t: FakeTime) -> None:
    bucket = TokenBucket(rate=10, burst=10, clock=t.clock, sleep=t.sleep)
    await bucket.acquire(4)
    await bucket.acquire(40)  # e.g. a ccxt endpoint with weight 40
    assert t.now == pytest.approx(0.4)  # waited until the bucket was full again
    assert bucket.tokens == pytest.approx(-30)
    await bucket.acquire(1)
    assert t.now == pytest.approx(0.4 + 3.1)  # paid off the debt first


async def test_waiters_are_served_in_arrival_order(t: FakeTime) -> None:
    bucket = TokenBucket(rate=1, burst=5, clock=t.clock, sleep=t.sleep)
    await bucket.acquire(5)
    order: list[str] = []

    async def take(name: str, cost: float) -> None:
        await bucket.acquire(cost)
        order.append(name)

    await asyncio.gather(take("big", 5), take("small-1", 1), take("small-2", 1))
    assert order == ["big", "small-1", "small-2"]


async def test_waiting_is_cancellable_and_takes_no_tokens() -> None:
    now = [0.0]
    gate = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        await gate.wait()

    bucket = TokenBucket(rate=1, burst=1, clock=lambda: now[0], sleep=blocking_sleep)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.tokens == 0  # nothing was taken by the cancelled waiter
    now[0] = 1.0
    assert bucket.try_acquire()  # and it does not block the next caller


def test_try_acquire_never_waits() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert bucket.try_acquire() and bucket.try_acquire()
    assert not bucket.try_acquire()
    now[0] = 0.5
    assert bucket.try_acquire()


def test_bad_settings_and_costs_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=1).try_acquire(0)


def test_seeded_from_ccxt_published_limits() -> None:
    exchange = ccxt.binance()
    assert rate_from_ccxt(exchange) == pytest.approx(1000 / exchange.rateLimit)
    assert rate_from_ccxt(200) == 5.0
    bucket = TokenBucket.from_ccxt(200)
    assert (bucket.rate, bucket.burst) == (5.0, 5.0)
    config = GuardConfig.from_ccxt(exchange, call_timeout=5.0)
    assert config.rate_per_second == pytest.approx(1000 / exchange.rateLimit)
    assert config.call_timeout == 5.0
    with pytest.raises(ValueError):
        rate_from_ccxt(0)


async def test_guard_calls_are_rate_limited(t: FakeTime) -> None:
    config = GuardConfig(rate_per_second=2, burst=1)
    guard = Guard("exchange:binance", config, clock=t.clock, sleep=t.sleep)

    async def ok() -> str:
        return "ok"

    for _ in range(3):
        await guard.call(ok, idempotent=True)
    assert t.now == pytest.approx(1.0)
    await guard.call(ok, idempotent=True, cost=3)  # waits for a full bucket, then owes 2
    await guard.call(ok, idempotent=True)
    assert t.now == pytest.approx(1.0 + 0.5 + 1.5)
    with pytest.raises(ValueError):
        await guard.call(ok, idempotent=True, cost=0)

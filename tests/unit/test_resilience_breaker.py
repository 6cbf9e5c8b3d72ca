"""The circuit breaker, as a caller of `Guard.call` sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import ccxt
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from app.resilience import BreakerState, CircuitBreaker, CircuitOpenError, Guard, GuardConfig

WALL0 = 1_700_000_000.0


class FakeTime:
    """A monotonic clock, a wall clock that moves with it, and a sleep that advances both."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL0 + self.now - 100.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def make_guard(t: FakeTime, **overrides: Any) -> Guard:
    # A huge rate limit keeps token waits (which advance the fake clock) out of breaker timing.
    config = GuardConfig(**{"rate_per_second": 1e9, "burst": 1e9, **overrides})
    return Guard("exchange:binance", config, clock=t.clock, wall=t.wall, sleep=t.sleep, rng=lambda: 0.5)


class Service:
    """A fake remote call that counts how often it was really invoked."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: BaseException | None = None

    def fn(self) -> Callable[[], Awaitable[str]]:
        async def call() -> str:
            self.calls += 1
            if self.error is not None:
                raise self.error
            return "ok"

        return call


async def fail_times(guard: Guard, svc: Service, n: int, exc: BaseException) -> None:
    svc.error = exc
    for _ in range(n):
        with pytest.raises(type(exc)):
            await guard.call(svc.fn(), idempotent=False)
    svc.error = None


async def test_opens_after_exactly_threshold_consecutive_unhealthy_failures(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    await fail_times(guard, svc, 4, ccxt.RequestTimeout("binance GET timed out"))
    assert guard.health().state == "closed"
    assert await guard.call(svc.fn(), idempotent=False) == "ok"  # still let through

    await fail_times(guard, svc, 4, ccxt.RequestTimeout("binance GET timed out"))
    assert guard.health().state == "closed"  # the success reset the count
    await fail_times(guard, svc, 1, ccxt.ExchangeNotAvailable("binance 503"))
    assert guard.health().state == "open"
    assert guard.health().failures == 5


async def test_fails_fast_while_open_without_calling(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    await fail_times(guard, svc, 5, ConnectionRefusedError(111, "Connection refused"))
    called = svc.calls
    t.now += 29.9
    with pytest.raises(CircuitOpenError) as info:
        await guard.call(svc.fn(), idempotent=True)
    assert svc.calls == called
    assert t.sleeps == []  # failing fast: no retry, no backoff
    err = info.value
    assert err.group == "exchange:binance"
    assert err.retry_at == WALL0 + 30.0
    until = datetime.fromtimestamp(WALL0 + 30.0).strftime("%H:%M:%S")
    assert str(err) == (
        f"Binance is not answering; trading paused until {until} "
        "(circuit exchange:binance open after 5 failures). It will try again automatically."
    )
    assert guard.health().rejected == 1


async def test_half_open_after_reset_timeout_then_closes_after_probe_successes(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    await fail_times(guard, svc, 5, TimeoutError())
    t.now += 30.0
    assert guard.health().state == "half_open"
    for i in range(2):
        assert await guard.call(svc.fn(), idempotent=True) == "ok"
        assert guard.health().state == "half_open", f"closed after only {i + 1} probe(s)"
    assert await guard.call(svc.fn(), idempotent=True) == "ok"
    health = guard.health()
    assert (health.state, health.failures, health.opened_until) == ("closed", 0, None)


async def test_failed_probe_reopens_for_the_reset_timeout(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    await fail_times(guard, svc, 5, TimeoutError())
    t.now += 30.0
    assert await guard.call(svc.fn(), idempotent=True) == "ok"  # one good probe is not enough
    await fail_times(guard, svc, 1, ConnectionResetError(104, "reset"))
    health = guard.health()
    assert health.state == "open"
    assert health.opened_until == t.wall() + 30.0
    with pytest.raises(CircuitOpenError):
        await guard.call(svc.fn(), idempotent=True)


async def test_half_open_admits_at_most_the_probe_count_at_once(t: FakeTime) -> None:
    guard = make_guard(t, half_open_calls=2)
    svc = Service()
    await fail_times(guard, svc, 5, TimeoutError())
    t.now += 30.0
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "ok"

    probes = [asyncio.create_task(guard.call(slow, idempotent=True)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError, match="recovering"):
        await guard.call(svc.fn(), idempotent=True)
    assert svc.calls == 5  # the third call was never made
    gate.set()
    assert await asyncio.gather(*probes) == ["ok", "ok"]
    assert guard.health().state == "closed"


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.InsufficientFunds("binance Account has insufficient balance for requested action."),
        ccxt.InvalidOrder("binance Filter failure: LOT_SIZE"),
        ccxt.BadSymbol("binance does not have market symbol FOO/BAR"),
        ccxt.AuthenticationError('binance {"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'),
        ccxt.OrderNotFound("binance Order does not exist."),
        ccxt.ExchangeError("binance unknown error code"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_business_errors_never_trip_it_nor_get_retried(t: FakeTime, exc: Exception) -> None:
    guard, svc = make_guard(t), Service()
    svc.error = exc
    for n in range(1, 11):
        with pytest.raises(type(exc)):
            await guard.call(svc.fn(), idempotent=True)
        assert svc.calls == n  # exactly one attempt each time
    health = guard.health()
    assert (health.state, health.failures, health.last_error) == ("closed", 0, "")
    assert t.sleeps == []


async def test_business_errors_neither_count_nor_reset_the_count(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    await fail_times(guard, svc, 4, TimeoutError())
    await fail_times(guard, svc, 1, ccxt.InsufficientFunds("no money"))
    assert guard.health().failures == 4
    await fail_times(guard, svc, 1, TimeoutError())
    assert guard.health().state == "open"


async def test_business_error_of_a_probe_frees_its_slot(t: FakeTime) -> None:
    guard, svc = make_guard(t, half_open_calls=1), Service()
    await fail_times(guard, svc, 5, TimeoutError())
    t.now += 30.0
    await fail_times(guard, svc, 1, ccxt.InvalidOrder("bad price"))
    assert guard.health().state == "half_open"
    assert await guard.call(svc.fn(), idempotent=True) == "ok"  # the slot was released
    assert guard.health().state == "closed"


def rate_limited(headers: dict[str, str]) -> aiohttp.ClientResponseError:
    url = URL("https://api.binance.com/api/v3/ticker/price")
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(
        info, (), status=429, message="Too Many Requests", headers=CIMultiDictProxy(CIMultiDict(headers))
    )


async def test_429_with_retry_after_opens_it_for_that_long(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    svc.error = rate_limited({"Retry-After": "120"})
    with pytest.raises(aiohttp.ClientResponseError):
        await guard.call(svc.fn(), idempotent=True)
    assert svc.calls == 1  # not retried into an open breaker
    health = guard.health()
    assert health.state == "open"
    assert health.opened_until == WALL0 + 120.0
    svc.error = None
    t.now += 119.0
    with pytest.raises(CircuitOpenError, match="asked us to slow down") as info:
        await guard.call(svc.fn(), idempotent=True)
    assert info.value.retry_at == WALL0 + 120.0
    assert "120 s" in str(info.value)
    t.now += 1.0
    assert await guard.call(svc.fn(), idempotent=True) == "ok"  # a probe goes through
    assert guard.health().state == "half_open"


async def test_ccxt_binance_ban_opens_until_the_ban_ends(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    ban_end_ms = int((WALL0 + 600) * 1000)
    await fail_times(guard, svc, 1, ccxt.DDoSProtection(f'binance 418 {{"msg":"IP banned until {ban_end_ms}."}}'))
    assert guard.health().opened_until == pytest.approx(WALL0 + 600)


async def test_429_without_retry_after_counts_like_any_failure(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    await fail_times(guard, svc, 4, ccxt.RateLimitExceeded("binance 429 Too Many Requests"))
    assert guard.health().state == "closed"
    await fail_times(guard, svc, 1, ccxt.RateLimitExceeded("binance 429 Too Many Requests"))
    assert guard.health().state == "open"
    assert guard.health().opened_until == t.wall() + 30.0


async def test_stragglers_from_before_the_breaker_opened_do_not_move_it(t: FakeTime) -> None:
    guard, svc = make_guard(t, half_open_calls=1), Service()
    gate = asyncio.Event()

    async def slow(result: BaseException | str) -> str:
        await gate.wait()
        if isinstance(result, BaseException):
            raise result
        return result

    late_ok = asyncio.create_task(guard.call(lambda: slow("late"), idempotent=False))
    late_fail = asyncio.create_task(guard.call(lambda: slow(TimeoutError()), idempotent=False))
    await asyncio.sleep(0)
    await fail_times(guard, svc, 5, TimeoutError())
    t.now += 30.0
    assert guard.health().state == "half_open"
    gate.set()
    assert await late_ok == "late"
    with pytest.raises(TimeoutError):
        await late_fail
    # Neither was a probe: the breaker still waits for a real one.
    health = guard.health()
    assert (health.state, health.failures) == ("half_open", 5)


async def test_failed_probe_reopens_a_breaker_opened_by_retry_after(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    await fail_times(guard, svc, 1, rate_limited({"Retry-After": "10"}))
    t.now += 10.0
    await fail_times(guard, svc, 1, TimeoutError())  # only 2 failures, far below the threshold
    health = guard.health()
    assert health.state == "open"
    assert health.opened_until == t.wall() + 30.0


async def test_cancelled_calls_are_not_failures(t: FakeTime) -> None:
    guard = make_guard(t, failure_threshold=1)

    async def hang() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(guard.call(hang, idempotent=True))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert guard.health().state == "closed"
    assert guard.health().failures == 0


async def test_unknown_errors_count_toward_the_threshold(t: FakeTime) -> None:
    guard, svc = make_guard(t), Service()
    await fail_times(guard, svc, 5, KeyError("price"))
    assert guard.health().state == "open"
    assert svc.calls == 5  # counted but never retried, although idempotent=False here anyway


def test_breaker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


def test_breaker_alone_transitions_on_its_clock() -> None:
    now = [0.0]
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(2, 10.0, 1, clock=lambda: now[0], wall=lambda: 5000.0 + now[0])
    breaker._on_change = lambda: changes.append(breaker._state)  # observe transitions
    for _ in range(2):
        permit = breaker.try_acquire()
        assert permit is not None
        breaker.on_failure(permit, error="TimeoutError.")
    assert breaker.try_acquire() is None
    assert breaker.remaining_open() == 10.0
    now[0] = 10.0
    probe = breaker.try_acquire()
    assert probe is not None and probe.probe
    assert breaker.try_acquire() is None  # one probe at a time
    breaker.on_success(probe)
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]

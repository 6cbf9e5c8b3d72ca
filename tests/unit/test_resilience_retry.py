"""Retries: which calls, how many times, and how long between them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt
import pytest

from app.resilience import CallTimeoutError, FailureKind, Guard, GuardConfig, RetryPolicy, backoff_delay


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def make_guard(t: FakeTime, rng: Callable[[], float] = lambda: 0.5, **overrides: Any) -> Guard:
    config = GuardConfig(**{"rate_per_second": 1e9, "burst": 1e9, **overrides})
    return Guard("marketdata:yahoo", config, clock=t.clock, wall=t.wall, sleep=t.sleep, rng=rng)


def scripted(outcomes: list[BaseException | str]) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that raises or returns the scripted outcomes in turn (the last one repeats)."""
    calls: list[int] = []

    async def fn() -> str:
        calls.append(1)
        outcome = outcomes[min(len(calls), len(outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return fn, calls


async def test_idempotent_unhealthy_calls_are_retried_up_to_the_attempt_budget(t: FakeTime) -> None:
    guard = make_guard(t)
    fn, calls = scripted([ccxt.RequestTimeout("first"), ccxt.NetworkError("second"), ccxt.RequestTimeout("third")])
    with pytest.raises(ccxt.RequestTimeout, match="third"):  # the last attempt's error
        await guard.call(fn, idempotent=True)
    assert len(calls) == 3
    # rng 0.5 with first=1, multiplier=2: 0.5 * 1, then 0.5 * 2
    assert t.sleeps == [0.5, 1.0]


async def test_a_retry_that_succeeds_returns_its_result(t: FakeTime) -> None:
    guard = make_guard(t)
    fn, calls = scripted([ConnectionResetError(104, "reset"), "ticker"])
    assert await guard.call(fn, idempotent=True) == "ticker"
    assert len(calls) == 2
    assert len(t.sleeps) == 1
    assert guard.health().failures == 0  # the success reset the count


async def test_backoff_delays_follow_full_jitter_and_the_cap(t: FakeTime) -> None:
    # Nearly 1.0 shows each ceiling; the cap takes over at the 6th retry (2**5 = 32 > 30).
    guard = make_guard(t, rng=lambda: 0.999, retry_attempts=9, failure_threshold=100)
    fn, calls = scripted([TimeoutError()])
    with pytest.raises(TimeoutError):
        await guard.call(fn, idempotent=True)
    assert len(calls) == 9
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]
    assert t.sleeps == pytest.approx([0.999 * c for c in ceilings])


async def test_backoff_delays_stay_within_the_formula_with_a_real_rng(t: FakeTime) -> None:
    rng = random.Random(1234).random
    guard = make_guard(t, rng=rng, retry_attempts=12, retry_first_delay=0.5, retry_multiplier=3,
                       retry_max_delay=20, failure_threshold=100)
    fn, _ = scripted([http_503()])
    with pytest.raises(Exception, match="503"):
        await guard.call(fn, idempotent=True)
    assert len(t.sleeps) == 11
    for n, delay in enumerate(t.sleeps):
        assert 0 <= delay <= min(20, 0.5 * 3**n)
    assert len(set(t.sleeps)) == len(t.sleeps)  # jittered, not a fixed schedule


def http_503() -> Exception:
    class ServerError(Exception):
        status = 503

    return ServerError("HTTP 503 Service Unavailable")


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.RequestTimeout("binance POST https://api.binance.com/api/v3/order timed out"),
        ccxt.NetworkError("connection reset"),
        ccxt.RateLimitExceeded("429"),
        ccxt.InvalidNonce("nonce too small"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_non_idempotent_calls_are_never_retried(t: FakeTime, exc: Exception) -> None:
    guard = make_guard(t)
    fn, calls = scripted([exc, "order placed"])
    with pytest.raises(type(exc)):
        await guard.call(fn, idempotent=False, what="create order")
    assert len(calls) == 1
    assert t.sleeps == []


async def test_non_idempotent_call_is_not_retried_after_the_guard_times_it_out(t: FakeTime) -> None:
    guard = make_guard(t, call_timeout=0.02)
    calls: list[int] = []

    async def create_order() -> str:
        calls.append(1)
        await asyncio.sleep(1)
        return "order"

    with pytest.raises(CallTimeoutError):
        await guard.call(create_order, idempotent=False, what="create order")
    assert len(calls) == 1
    assert t.sleeps == []


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.InsufficientFunds("no balance"),
        ccxt.InvalidOrder("bad amount"),
        ccxt.BadSymbol("no such market"),
        ccxt.BadRequest("bad param"),
        ccxt.AuthenticationError("bad key"),
        ccxt.PermissionDenied("no trading permission"),
        KeyError("unknown: not retried"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_business_auth_and_unknown_errors_are_not_retried(t: FakeTime, exc: Exception) -> None:
    guard = make_guard(t)
    fn, calls = scripted([exc, "ok"])
    with pytest.raises(type(exc)):
        await guard.call(fn, idempotent=True)
    assert len(calls) == 1
    assert t.sleeps == []


async def test_invalid_nonce_is_retried_once_and_not_counted(t: FakeTime) -> None:
    guard = make_guard(t, retry_attempts=5, failure_threshold=1)
    fn, calls = scripted([ccxt.InvalidNonce("binance Timestamp for this request was 1000ms ahead")])
    with pytest.raises(ccxt.InvalidNonce):
        await guard.call(fn, idempotent=True)
    assert len(calls) == 2
    assert guard.health().state == "closed"


async def test_retries_stop_when_the_breaker_opens(t: FakeTime) -> None:
    guard = make_guard(t, retry_attempts=5, failure_threshold=2)
    fn, calls = scripted([ccxt.ExchangeNotAvailable("binance 502")])
    with pytest.raises(ccxt.ExchangeNotAvailable):  # its own error, not CircuitOpenError
        await guard.call(fn, idempotent=True)
    assert len(calls) == 2
    assert len(t.sleeps) == 1
    assert guard.health().state == "open"


def test_backoff_delay_formula() -> None:
    assert backoff_delay(0, first=1, multiplier=2, cap=30, rng=lambda: 1.0) == 1
    assert backoff_delay(3, first=1, multiplier=2, cap=30, rng=lambda: 0.25) == 2
    assert backoff_delay(10, first=1, multiplier=2, cap=30, rng=lambda: 0.5) == 15
    assert backoff_delay(5000, first=1, multiplier=2, cap=30, rng=lambda: 1.0) == 30  # no overflow
    assert backoff_delay(2, first=1, multiplier=2, cap=30, rng=lambda: 0.0) == 0


def test_retry_policy_decisions() -> None:
    policy = RetryPolicy(attempts=3)
    assert policy.should_retry(FailureKind.UNHEALTHY, idempotent=True, attempt=2)
    assert not policy.should_retry(FailureKind.UNHEALTHY, idempotent=True, attempt=3)
    assert not policy.should_retry(FailureKind.UNHEALTHY, idempotent=False, attempt=1)
    assert policy.should_retry(FailureKind.TRANSIENT_CLIENT, idempotent=True, attempt=1, transient_retries=0)
    assert not policy.should_retry(FailureKind.TRANSIENT_CLIENT, idempotent=True, attempt=1, transient_retries=1)
    for kind in (FailureKind.BUSINESS, FailureKind.AUTH, FailureKind.REJECTED, FailureKind.UNKNOWN):
        assert not policy.should_retry(kind, idempotent=True, attempt=1)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)

"""The bulkhead: concurrency limit, call timeout, queue timeout (on the real loop clock, in milliseconds)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.resilience import BulkheadFullError, CallTimeoutError, FailureKind, Guard, GuardConfig, classify
from app.resilience.bulkhead import Bulkhead


def make_guard(**overrides: Any) -> Guard:
    return Guard("exchange:binance", GuardConfig(**{"rate_per_second": 1e9, "burst": 1e9, **overrides}))


async def test_n_plus_one_concurrent_calls_run_at_most_n_at_once() -> None:
    guard = make_guard(max_concurrent=3)
    gate = asyncio.Event()
    running = 0
    peak = 0
    started: list[int] = []

    async def call(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        started.append(i)
        try:
            await gate.wait()
        finally:
            running -= 1
        return i

    tasks = [asyncio.create_task(guard.call(lambda i=i: call(i), idempotent=True)) for i in range(4)]
    await asyncio.sleep(0.01)
    assert running == 3
    assert started == [0, 1, 2]  # the fourth waits for a slot, in arrival order
    assert guard.bulkhead.in_flight == 3
    gate.set()
    assert await asyncio.gather(*tasks) == [0, 1, 2, 3]
    assert peak == 3
    assert guard.bulkhead.in_flight == 0


async def test_slow_calls_time_out_with_a_clear_error_and_count_as_unhealthy() -> None:
    guard = make_guard(call_timeout=0.02)
    cancelled = False

    async def slow() -> str:
        nonlocal cancelled
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled = True
            raise
        return "late"

    with pytest.raises(CallTimeoutError) as info:
        await guard.call(slow, idempotent=False, what="fetch ticker")
    err = info.value
    assert str(err) == "Binance (fetch ticker) did not answer within 0.02 s."
    assert isinstance(err, TimeoutError) and classify(err) is FailureKind.UNHEALTHY
    assert cancelled  # the abandoned call does not linger
    assert guard.health().failures == 1
    assert guard.health().last_error.startswith("CallTimeoutError: Binance (fetch ticker) did not answer")
    assert guard.bulkhead.in_flight == 0


async def test_the_callees_own_timeout_error_is_not_relabelled() -> None:
    guard = make_guard(call_timeout=5)

    async def own_timeout() -> None:
        raise TimeoutError("socket read timed out")

    with pytest.raises(TimeoutError, match="socket read timed out") as info:
        await guard.call(own_timeout, idempotent=False)
    assert not isinstance(info.value, CallTimeoutError)


async def test_a_call_waits_at_most_the_queue_timeout_for_a_slot() -> None:
    guard = make_guard(max_concurrent=1, queue_timeout=0.02, call_timeout=5)
    gate = asyncio.Event()
    calls = 0

    async def hold() -> None:
        nonlocal calls
        calls += 1
        await gate.wait()

    holder = asyncio.create_task(guard.call(hold, idempotent=True))
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFullError, match="Binance is slow: all 1 connections stayed busy"):
        await guard.call(hold, idempotent=True)
    assert calls == 1  # the refused call was never sent
    health = guard.health()
    assert (health.rejected, health.failures, health.state) == (1, 0, "closed")
    gate.set()
    await holder


async def test_slots_are_released_after_failures() -> None:
    bulkhead = Bulkhead("smtp", max_concurrent=1, call_timeout=1)

    async def boom() -> None:
        raise ConnectionRefusedError(111, "refused")

    for _ in range(3):
        with pytest.raises(ConnectionRefusedError):
            await bulkhead.run(boom)
    assert bulkhead.in_flight == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Bulkhead("smtp", max_concurrent=0)
    with pytest.raises(ValueError):
        Bulkhead("smtp", call_timeout=0)

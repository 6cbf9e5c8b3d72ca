"""The guard as a whole: health events, user-facing messages without secrets, the registry."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import ccxt
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from app.bus import Event, EventBus, Priority
from app.resilience import (
    HEALTH_TOPIC,
    CircuitOpenError,
    Guard,
    GuardConfig,
    GuardHealth,
    GuardRegistry,
)

WALL0 = 1_700_000_000.0


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class RecordingBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any, Priority | None]] = []

    def publish(self, topic: str, payload: Any, priority: Priority | None = None) -> None:
        self.published.append((topic, payload, priority))

    @property
    def healths(self) -> list[GuardHealth]:
        return [p for topic, p, _ in self.published if topic == HEALTH_TOPIC]


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


FAST = {"rate_per_second": 1e9, "burst": 1e9}


def make_guard(t: FakeTime, bus: Any = None, group: str = "exchange:binance", **overrides: Any) -> Guard:
    return Guard(group, GuardConfig(**{**FAST, **overrides}), bus=bus, clock=t.clock, wall=t.wall,
                 sleep=t.sleep, rng=lambda: 0.5)


async def ok() -> str:
    return "ok"


def raising(exc: BaseException):  # noqa: ANN201 - a call factory
    async def fn() -> None:
        raise exc

    return fn


async def fail(guard: Guard, exc: BaseException, n: int = 1) -> None:
    for _ in range(n):
        with pytest.raises(type(exc)):
            await guard.call(raising(exc), idempotent=False)


async def test_health_is_published_on_every_state_change_with_the_right_payload(t: FakeTime) -> None:
    bus = RecordingBus()
    guard = make_guard(t, bus, failure_threshold=2, half_open_calls=1)

    await guard.call(ok, idempotent=True)
    await fail(guard, ccxt.InsufficientFunds("no money"), 3)  # not counted: no change, no event
    await fail(guard, ccxt.RequestTimeout("binance GET https://api.binance.com/api/v3/time timed out"))
    assert bus.published == []  # one failure below the threshold is not a state change

    await fail(guard, ccxt.RequestTimeout("binance GET https://api.binance.com/api/v3/time timed out"))
    t.now += 30.0
    assert guard.health().state == "half_open"  # observed: published as it happens
    await guard.call(ok, idempotent=True)

    last = "RequestTimeout: binance GET https://api.binance.com/api/v3/time timed out."
    assert bus.healths == [
        GuardHealth("exchange:binance", "open", 2, WALL0 + 30.0, last, calls=6, rejected=0),
        GuardHealth("exchange:binance", "half_open", 2, None, last, calls=6, rejected=0),
        GuardHealth("exchange:binance", "closed", 0, None, last, calls=7, rejected=0),
    ]
    assert {priority for _, _, priority in bus.published} == {Priority.MEDIUM}
    assert guard.health() == bus.healths[-1]


async def test_reopening_and_retry_after_extension_are_published(t: FakeTime) -> None:
    bus = RecordingBus()
    guard = make_guard(t, bus, failure_threshold=1)
    await fail(guard, TimeoutError())
    t.now += 30.0
    await fail(guard, ConnectionResetError(104, "reset"))  # a failed probe
    states = [h.state for h in bus.healths]
    assert states == ["open", "half_open", "open"]
    assert bus.healths[-1].opened_until == WALL0 + 60.0
    assert bus.healths[-1].failures == 2


def test_health_payload_is_frozen() -> None:
    health = Guard("relay").health()
    assert health == GuardHealth("relay", "closed", 0, None, "", 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        health.state = "open"  # type: ignore[misc]


async def test_health_events_reach_real_bus_subscribers(t: FakeTime) -> None:
    bus = EventBus()
    received: list[Event] = []
    bus.subscribe("health.*", received.append)
    await bus.start()
    try:
        guard = make_guard(t, bus, group="discord", failure_threshold=1)
        await fail(guard, aiohttp.ServerDisconnectedError())
        await bus.drain()
    finally:
        await bus.stop()
    assert [(e.topic, e.payload.group, e.payload.state) for e in received] == [("health.changed", "discord", "open")]
    assert received[0].priority is Priority.MEDIUM


async def test_a_broken_bus_does_not_break_calls(t: FakeTime) -> None:
    class BrokenBus:
        def publish(self, topic: str, payload: Any, priority: Priority | None = None) -> None:
            raise RuntimeError("bus down")

    guard = make_guard(t, BrokenBus(), failure_threshold=1)
    await fail(guard, TimeoutError())  # the call's own error, not the bus's
    assert guard.health().state == "open"


SECRET_TEXTS = [
    "binance GET https://api.binance.com/api/v3/account?timestamp=1700000000000&signature=abc&apiKey=XYZ "
    "503 Service Unavailable signature=abc&apiKey=XYZ",
    'relay POST https://relay.example.com/checkout {"secret": "XYZ", "token": "abc"} password=XYZ',
    "smtp login failed for api_key: XYZ, X-MBX-APIKEY=abc",
]


@pytest.mark.parametrize("text", SECRET_TEXTS)
async def test_messages_and_health_never_leak_query_strings_or_secrets(t: FakeTime, text: str) -> None:
    bus = RecordingBus()
    guard = make_guard(t, bus, failure_threshold=1)
    await fail(guard, ccxt.ExchangeNotAvailable(text))
    with pytest.raises(CircuitOpenError) as info:
        await guard.call(ok, idempotent=True)
    err = info.value
    shown = [str(err), err.last_error, guard.health().last_error, *(h.last_error for h in bus.healths)]
    for s in shown:
        assert "abc" not in s and "XYZ" not in s
        assert "?timestamp" not in s
    assert guard.health().last_error.startswith("ExchangeNotAvailable: ")


async def test_aiohttp_response_error_urls_lose_their_query_string(t: FakeTime) -> None:
    url = URL("https://pro-api.coinmarketcap.com/v1/quotes?symbol=BTC&CMC_PRO_API_KEY=XYZ")
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    exc = aiohttp.ClientResponseError(info, (), status=500, message="Internal Server Error")
    guard = make_guard(t, group="marketdata:coinmarketcap", failure_threshold=1)
    await fail(guard, exc)
    health = guard.health()
    assert "XYZ" not in health.last_error and "symbol=" not in health.last_error
    assert "https://pro-api.coinmarketcap.com/v1/quotes" in health.last_error
    with pytest.raises(CircuitOpenError, match=r"^CoinMarketCap is not answering; market data paused until"):
        await guard.call(ok, idempotent=True)


async def test_open_message_names_the_service_group_and_time(t: FakeTime) -> None:
    guard = make_guard(t, group="smtp", failure_threshold=1, reset_timeout=45)
    await fail(guard, ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(CircuitOpenError) as info:
        await guard.call(ok, idempotent=True)
    message = str(info.value)
    assert message.startswith("The email server is not answering; email notifications paused until ")
    assert "(circuit smtp open after 1 failure)" in message
    assert message.endswith("It will try again automatically.")
    assert info.value.retry_at == WALL0 + 45


async def test_calls_and_rejections_are_counted(t: FakeTime) -> None:
    guard = make_guard(t, failure_threshold=1)
    await guard.call(ok, idempotent=True)
    await fail(guard, TimeoutError())
    for _ in range(3):
        with pytest.raises(CircuitOpenError):
            await guard.call(ok, idempotent=True)
    health = guard.health()
    assert (health.calls, health.rejected) == (2, 3)


def test_idempotent_must_be_stated() -> None:
    guard = Guard("relay")
    with pytest.raises(TypeError):
        guard.call(ok)  # type: ignore[call-arg]


# ----------------------------------------------------------------------------- config and registry


def test_config_defaults() -> None:
    c = GuardConfig()
    assert (c.failure_threshold, c.reset_timeout, c.half_open_calls) == (5, 30.0, 3)
    assert (c.retry_attempts, c.retry_multiplier, c.retry_first_delay, c.retry_max_delay) == (3, 2.0, 1.0, 30.0)
    assert (c.max_concurrent, c.call_timeout, c.rate_per_second, c.burst) == (10, 10.0, 10.0, 10.0)


def test_config_rejects_nonsense_with_every_problem_named() -> None:
    with pytest.raises(ValueError) as info:
        GuardConfig(failure_threshold=0, call_timeout=0)
    assert "failure_threshold" in str(info.value) and "call_timeout" in str(info.value)


def test_registry_creates_one_guard_per_group_with_its_config() -> None:
    bus = RecordingBus()
    binance = GuardConfig(failure_threshold=2)
    exchanges = GuardConfig(failure_threshold=7)
    registry = GuardRegistry(bus, {"exchange:binance": binance, "exchange": exchanges})
    a = registry.get("exchange:binance")
    assert registry.get("exchange:binance") is a
    assert a.config is binance
    assert registry.get("exchange:gate").config is exchanges
    assert registry.get("smtp").config == GuardConfig()
    assert [h.group for h in registry.healths()] == ["exchange:binance", "exchange:gate", "smtp"]
    assert all(h.state == "closed" for h in registry.healths())
    assert len(registry) == 3


async def test_registry_guards_publish_on_its_bus(t: FakeTime) -> None:
    bus = RecordingBus()
    registry = GuardRegistry(bus, default=GuardConfig(failure_threshold=1, **FAST), clock=t.clock, wall=t.wall,
                             sleep=t.sleep)
    guard = registry.get("relay")
    await fail(guard, TimeoutError())
    assert [h.group for h in bus.healths] == ["relay"]
    assert registry.healths()[0].state == "open"

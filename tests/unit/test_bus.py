"""The event bus: priorities, conflation, isolation, wildcards, threads and lifecycle."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from app.bus import (
    DEFAULT_PRIORITIES,
    DeadLetter,
    Event,
    EventBus,
    Priority,
    Subscription,
    default_priority,
)
from app.domain import Ticker


def tick(symbol: str, last: int | str, venue: str = "binance") -> Ticker:
    return Ticker(symbol=symbol, ts=0, last=Decimal(last), venue=venue)


class Recorder:
    """A sync handler that remembers every event it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def topics(self) -> list[str]:
        return [e.topic for e in self.events]

    @property
    def payloads(self) -> list[object]:
        return [e.payload for e in self.events]


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus()
    yield b
    await b.stop(drain=False)


# --------------------------------------------------------------------- priorities


def test_default_priorities() -> None:
    assert default_priority("payment.failed") is Priority.HIGH
    assert default_priority("payment.error") is Priority.HIGH
    assert default_priority("risk.limit.exceeded") is Priority.HIGH
    assert default_priority("order.rejected") is Priority.HIGH  # exact beats "order.*"
    assert default_priority("order.updated") is Priority.MEDIUM
    assert default_priority("fill.new") is Priority.MEDIUM
    assert default_priority("trade.executed") is Priority.MEDIUM
    assert default_priority("payment.succeeded") is Priority.HIGH
    assert default_priority("points.awarded") is Priority.MEDIUM
    assert default_priority("price.updated") is Priority.LOW
    assert default_priority("market.trade") is Priority.LOW
    assert default_priority("analytics.session") is Priority.LOW
    assert default_priority("something.new") is Priority.LOW
    assert default_priority("orders.updated") is Priority.LOW  # "order.*" needs the dot


async def test_publish_returns_event_with_resolved_priority_and_unique_id(bus: EventBus) -> None:
    a = bus.publish("order.updated", 1)
    b = bus.publish("order.updated", 2, priority=Priority.HIGH)
    c = bus.publish("weird.topic", 3)
    assert (a.priority, b.priority, c.priority) == (Priority.MEDIUM, Priority.HIGH, Priority.LOW)
    assert len({a.id, b.id, c.id}) == 3
    assert a.id != EventBus().publish("order.updated", 1).id  # ids are unique across buses too
    assert isinstance(a.ts, float) and abs(a.ts - time.time()) < 5
    with pytest.raises(AttributeError):
        a.payload = 5  # type: ignore[misc]


async def test_priority_table_override_in_constructor() -> None:
    bus = EventBus(priorities={"analytics.*": Priority.HIGH, "custom.alarm": Priority.HIGH})
    assert bus.publish("analytics.x", None).priority is Priority.HIGH
    assert bus.publish("custom.alarm", None).priority is Priority.HIGH
    assert bus.publish("order.updated", None).priority is Priority.MEDIUM
    assert DEFAULT_PRIORITIES["analytics.*"] is Priority.LOW  # the module table is untouched


async def test_high_published_after_low_is_dispatched_first(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("*", seen)
    bus.publish("price.updated", tick("BTC/USDT", 1))
    bus.publish("analytics.click", "a")
    bus.publish("order.updated", "o1")
    bus.publish("payment.failed", "p1")
    bus.publish("market.trade", "t1")
    bus.publish("risk.limit.exceeded", "r1")
    bus.publish("fill.new", "f1")
    await bus.start()
    await bus.drain()
    assert seen.topics == [
        "payment.failed",
        "risk.limit.exceeded",
        "order.updated",
        "fill.new",
        "price.updated",
        "analytics.click",
        "market.trade",
    ]


async def test_high_event_overtakes_a_backlog_of_ticks_while_running(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("*", seen)
    await bus.start()
    for i in range(5000):
        bus.publish("market.trade", i)
    bus.publish("order.rejected", "too small")
    await bus.drain()
    assert seen.topics[0] == "order.rejected"
    assert seen.payloads[1:] == list(range(5000))


# --------------------------------------------------------------------- conflation


async def test_conflation_delivers_only_the_newest_ticker_per_symbol(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("price.updated", seen)
    await bus.start()
    for i in range(1000):  # a burst: the dispatcher cannot run until this loop ends
        bus.publish("price.updated", tick("BTC/USDT", i))
        bus.publish("price.updated", tick("ETH/USDT", 10_000 + i))
    await bus.drain()
    # One event per symbol, in the order each symbol first queued, carrying the last payload.
    assert [(t.symbol, t.last) for t in seen.payloads] == [
        ("BTC/USDT", Decimal(999)),
        ("ETH/USDT", Decimal(10_999)),
    ]
    stats = bus.stats
    assert (stats.published, stats.dispatched, stats.conflated, stats.queued) == (2000, 2, 1998, 0)


async def test_conflation_keeps_queue_position_relative_to_other_low_events(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("*", seen)
    bus.publish("price.updated", tick("BTC/USDT", 1))
    bus.publish("market.trade", "between")
    bus.publish("price.updated", tick("BTC/USDT", 2))
    await bus.start()
    await bus.drain()
    assert seen.topics == ["price.updated", "market.trade"]
    assert seen.payloads[0].last == Decimal(2)


async def test_same_symbol_on_different_venues_is_not_conflated(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("price.updated", seen)
    bus.publish("price.updated", tick("BTC/USDT", 1, venue="binance"))
    bus.publish("price.updated", tick("BTC/USDT", 2, venue="gate"))
    bus.publish("price.updated", tick("BTC/USDT", 3, venue="binance"))
    await bus.start()
    await bus.drain()
    assert [(t.venue, t.last) for t in seen.payloads] == [("binance", Decimal(3)), ("gate", Decimal(2))]


async def test_a_tick_after_dispatch_is_delivered_again(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("price.updated", seen)
    await bus.start()
    bus.publish("price.updated", tick("BTC/USDT", 1))
    await bus.drain()
    bus.publish("price.updated", tick("BTC/USDT", 2))
    await bus.drain()
    assert [t.last for t in seen.payloads] == [Decimal(1), Decimal(2)]
    assert bus.stats.conflated == 0


async def test_non_conflated_topics_deliver_every_event_in_order(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("order.updated", seen)
    bus.subscribe("market.trade", seen)
    await bus.start()
    for i in range(3000):
        bus.publish("order.updated", i)
        bus.publish("market.trade", tick("BTC/USDT", i))  # same key as a ticker, but not a conflated topic
    await bus.drain()
    orders = [e.payload for e in seen.events if e.topic == "order.updated"]
    trades = [e.payload.last for e in seen.events if e.topic == "market.trade"]
    assert orders == list(range(3000))
    assert trades == [Decimal(i) for i in range(3000)]
    assert bus.stats.conflated == 0


async def test_conflation_can_be_turned_off_and_configured_per_topic() -> None:
    bus = EventBus(conflate={"price.updated": None, "book.updated": lambda p: p["symbol"]})
    prices, books = Recorder(), Recorder()
    bus.subscribe("price.updated", prices)
    bus.subscribe("book.updated", books)
    for i in range(3):
        bus.publish("price.updated", tick("BTC/USDT", i))
        bus.publish("book.updated", {"symbol": "BTC/USDT", "n": i})
    await bus.start()
    await bus.drain()
    await bus.stop()
    assert [t.last for t in prices.payloads] == [Decimal(0), Decimal(1), Decimal(2)]
    assert books.payloads == [{"symbol": "BTC/USDT", "n": 2}]


async def test_payload_without_a_key_is_delivered_not_dropped(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("price.updated", seen)
    bus.publish("price.updated", {"no": "symbol"})
    bus.publish("price.updated", {"no": "symbol"})
    await bus.start()
    await bus.drain()
    assert len(seen.events) == 2


async def test_urgent_override_moves_a_conflated_tick_forward(bus: EventBus) -> None:
    seen = Recorder()
    bus.subscribe("*", seen)
    bus.publish("price.updated", tick("BTC/USDT", 1))
    bus.publish("order.updated", "o")
    bus.publish("price.updated", tick("BTC/USDT", 2), priority=Priority.HIGH)
    await bus.start()
    await bus.drain()
    assert seen.topics == ["price.updated", "order.updated"]  # delivered once, ahead of MEDIUM
    assert seen.payloads[0].last == Decimal(2)
    assert bus.stats.conflated == 1


# ---------------------------------------------------------------------- isolation


async def test_raising_handlers_are_dead_lettered_and_others_still_run(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    before, after = Recorder(), Recorder()

    def broken_sync(event: Event) -> None:
        raise ValueError(f"sync boom {event.payload}")

    async def broken_async(event: Event) -> None:
        await asyncio.sleep(0)
        raise KeyError(f"async boom {event.payload}")

    bus.subscribe("order.updated", before)
    bus.subscribe("order.updated", broken_sync)
    bus.subscribe("order.updated", broken_async)
    bus.subscribe("order.updated", after)
    await bus.start()
    with caplog.at_level(logging.ERROR, logger="app.bus"):
        bus.publish("order.updated", 1)
        bus.publish("order.updated", 2)
        await bus.drain()

    assert before.payloads == [1, 2]
    assert after.payloads == [1, 2]
    assert [(d.event.payload, type(d.error)) for d in bus.dead_letters] == [
        (1, ValueError),
        (1, KeyError),
        (2, ValueError),
        (2, KeyError),
    ]
    assert all(isinstance(d, DeadLetter) for d in bus.dead_letters)
    assert "broken_sync" in bus.dead_letters[0].handler
    assert "broken_async" in bus.dead_letters[1].handler
    assert bus.stats.dead_lettered == 4
    failures = [r for r in caplog.records if r.name == "app.bus" and r.exc_info]
    assert len(failures) == 4

    bus.publish("order.updated", 3)  # dispatch keeps going afterwards
    await bus.drain()
    assert after.payloads == [1, 2, 3]


async def test_dead_letters_are_bounded() -> None:
    bus = EventBus(dead_letter_capacity=3)

    def broken(event: Event) -> None:
        raise RuntimeError(str(event.payload))

    bus.subscribe("x.y", broken)
    for i in range(5):
        bus.publish("x.y", i)
    await bus.start()
    await bus.drain()
    await bus.stop()
    assert [d.event.payload for d in bus.dead_letters] == [2, 3, 4]
    assert bus.stats.dead_lettered == 5


async def test_async_handler_timeout_is_dead_lettered_and_dispatch_continues() -> None:
    bus = EventBus(handler_timeout=0.05)
    seen = Recorder()
    cancelled = asyncio.Event()

    async def hangs(event: Event) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.subscribe("alert.fired", hangs)
    bus.subscribe("alert.fired", seen)
    await bus.start()
    started = time.perf_counter()
    bus.publish("alert.fired", "a")
    bus.publish("alert.fired", "b")
    await asyncio.wait_for(bus.drain(), 5)
    elapsed = time.perf_counter() - started
    await bus.stop()

    assert seen.payloads == ["a", "b"]
    assert [type(d.error) for d in bus.dead_letters] == [TimeoutError, TimeoutError]
    assert cancelled.is_set()  # the hung coroutine was cancelled, not leaked
    assert elapsed < 2


async def test_sync_and_async_handlers_run_in_subscription_order(bus: EventBus) -> None:
    calls: list[str] = []

    def first(event: Event) -> None:
        calls.append("sync1")

    async def second(event: Event) -> None:
        await asyncio.sleep(0.01)
        calls.append("async2")

    def third(event: Event) -> None:
        calls.append("sync3")

    for h in (first, second, third):
        bus.subscribe("e.x", h)
    await bus.start()
    bus.publish("e.x", None)
    bus.publish("e.x", None)
    await bus.drain()
    assert calls == ["sync1", "async2", "sync3"] * 2


# ---------------------------------------------------------------------- wildcards


async def test_wildcard_subscriptions(bus: EventBus) -> None:
    exact, prefix, everything = Recorder(), Recorder(), Recorder()
    bus.subscribe("order.updated", exact)
    bus.subscribe("order.*", prefix)
    bus.subscribe("*", everything)
    await bus.start()
    for topic in ("order.updated", "order.rejected", "order.fill.partial", "orders.x", "fill.new", "order"):
        bus.publish(topic, topic)
    await bus.drain()
    assert exact.topics == ["order.updated"]
    assert sorted(prefix.topics) == ["order.fill.partial", "order.rejected", "order.updated"]
    assert sorted(everything.topics) == sorted(
        ["order.updated", "order.rejected", "order.fill.partial", "orders.x", "fill.new", "order"]
    )


async def test_subscribe_later_applies_to_later_events(bus: EventBus) -> None:
    early, late = Recorder(), Recorder()
    bus.subscribe("a.b", early)
    await bus.start()
    bus.publish("a.b", 1)
    await bus.drain()  # the route for "a.b" is cached now
    bus.subscribe("a.*", late)
    bus.publish("a.b", 2)
    await bus.drain()
    assert early.payloads == [1, 2]
    assert late.payloads == [2]


@pytest.mark.parametrize("pattern", ["", "order*", "*.updated", "a.*.b", ".*"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        EventBus().subscribe(pattern, lambda e: None)


# -------------------------------------------------------------------- unsubscribe


async def test_handler_can_unsubscribe_itself_during_dispatch(bus: EventBus) -> None:
    received: list[int] = []
    sub: Subscription | None = None

    def once(event: Event) -> None:
        received.append(event.payload)
        assert sub is not None
        sub.cancel()

    sub = bus.subscribe("t.x", once)
    other = Recorder()
    bus.subscribe("t.x", other)
    for i in range(5):
        bus.publish("t.x", i)
    await bus.start()
    await bus.drain()
    assert received == [0]
    assert other.payloads == [0, 1, 2, 3, 4]
    assert not sub.active
    assert sub not in bus.subscriptions


async def test_unsubscribing_a_later_handler_mid_dispatch_skips_it_at_once(bus: EventBus) -> None:
    victim = Recorder()
    victim_sub: Subscription | None = None

    def killer(event: Event) -> None:
        assert victim_sub is not None
        bus.unsubscribe(victim_sub)
        bus.unsubscribe(victim_sub)  # idempotent

    bus.subscribe("t.x", killer)
    victim_sub = bus.subscribe("t.x", victim)
    bus.publish("t.x", 1)
    bus.publish("t.x", 2)
    await bus.start()
    await bus.drain()
    assert victim.events == []


async def test_async_handler_unsubscribed_mid_dispatch_is_not_awaited(bus: EventBus) -> None:
    calls: list[int] = []
    late_sub: Subscription | None = None

    async def killer(event: Event) -> None:
        assert late_sub is not None
        late_sub.cancel()

    async def late(event: Event) -> None:
        calls.append(event.payload)

    bus.subscribe("t.x", killer)
    late_sub = bus.subscribe("t.x", late)
    bus.publish("t.x", 1)
    await bus.start()
    await bus.drain()
    assert calls == []


# -------------------------------------------------------------------- threads


async def test_publish_threadsafe_from_a_worker_thread(bus: EventBus) -> None:
    seen = Recorder()
    handler_threads: set[int] = set()

    def record(event: Event) -> None:
        handler_threads.add(threading.get_ident())
        seen(event)

    bus.subscribe("order.updated", record)
    await bus.start()
    loop = asyncio.get_running_loop()
    queueing_threads: set[int] = set()
    real_publish = bus.publish

    def spy_publish(*args: object, **kwargs: object) -> Event:
        queueing_threads.add(threading.get_ident())
        return real_publish(*args, **kwargs)  # type: ignore[arg-type]

    bus.publish = spy_publish  # type: ignore[method-assign]
    finished = asyncio.Event()

    def worker() -> None:
        for i in range(1000):
            bus.publish_threadsafe("order.updated", i)
        loop.call_soon_threadsafe(finished.set)  # runs after every publish scheduled above

    thread = threading.Thread(target=worker)
    thread.start()
    await asyncio.wait_for(finished.wait(), 10)
    await bus.drain()
    thread.join()
    assert seen.payloads == list(range(1000))
    # The queues are only touched on the loop thread (publish is not locked), and handlers run there.
    assert queueing_threads == {threading.get_ident()}
    assert handler_threads == {threading.get_ident()}


def test_publish_threadsafe_without_a_loop_says_so() -> None:
    with pytest.raises(RuntimeError, match="start"):
        EventBus().publish_threadsafe("x.y", 1)


# ------------------------------------------------------------------- lifecycle


async def test_publish_before_start_only_queues() -> None:
    bus = EventBus()
    seen = Recorder()
    bus.subscribe("a.b", seen)
    bus.publish("a.b", 1)
    await asyncio.sleep(0.01)
    assert seen.events == []
    assert bus.stats.queued == 1
    with pytest.raises(RuntimeError):
        await bus.drain()
    await bus.start()
    await bus.drain()
    await bus.stop()
    assert seen.payloads == [1]


async def test_stop_with_drain_flushes_everything_queued() -> None:
    bus = EventBus()
    seen = Recorder()
    chained: list[int] = []

    def republish(event: Event) -> None:
        if event.payload < 3:
            bus.publish("chain.next", event.payload + 1)
        chained.append(event.payload)

    bus.subscribe("a.b", seen)
    bus.subscribe("chain.*", republish)
    await bus.start()
    for i in range(500):
        bus.publish("a.b", i)
    bus.publish("chain.start", 0)
    await bus.stop(drain=True)
    assert not bus.running
    assert seen.payloads == list(range(500))
    assert chained == [0, 1, 2, 3]  # events published during the drain are delivered too
    assert bus.stats.queued == 0


async def test_stop_on_a_bus_that_never_started_flushes_when_draining() -> None:
    bus = EventBus()
    seen = Recorder()
    bus.subscribe("a.b", seen)
    bus.publish("a.b", 1)
    await bus.stop(drain=True)
    assert seen.payloads == [1]


async def test_stop_without_drain_keeps_the_queue_for_a_restart() -> None:
    bus = EventBus()
    seen = Recorder()
    bus.subscribe("a.b", seen)
    for i in range(10):
        bus.publish("a.b", i)
    await bus.start()
    await bus.stop(drain=False)  # the dispatcher never got a turn
    assert seen.events == []
    assert bus.stats.queued == 10
    await bus.start()
    await bus.drain()
    await bus.stop()
    assert seen.payloads == list(range(10))


async def test_drain_waits_for_async_handlers_in_flight(bus: EventBus) -> None:
    finished: list[int] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.05)
        finished.append(event.payload)

    bus.subscribe("a.b", slow)
    await bus.start()
    bus.publish("a.b", 1)
    await asyncio.sleep(0.01)  # the event is out of the queue but not handled yet
    assert bus.stats.queued == 0
    await bus.drain()
    assert finished == [1]


async def test_dispatcher_yields_to_the_loop_during_a_long_backlog() -> None:
    bus = EventBus(batch_budget=0.002)

    def slowish(event: Event) -> None:
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass

    bus.subscribe("a.b", slowish)
    for i in range(200):  # ~100 ms of handler work
        bus.publish("a.b", i)
    turns = 0
    stop = False

    async def other_work() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await bus.start()
    await bus.drain()
    stop = True
    await other
    await bus.stop()
    assert bus.stats.dispatched == 200
    assert turns >= 20  # without yielding it would get one or two turns


async def test_idle_dispatcher_waits_instead_of_spinning(bus: EventBus) -> None:
    await bus.start()
    await bus.drain()
    loop = asyncio.get_running_loop()
    # If the dispatcher spun, it would always have a ready callback on the loop.
    await asyncio.sleep(0.02)
    assert len(loop._ready) == 0  # type: ignore[attr-defined]
    bus.publish("a.b", 1)
    await bus.drain()
    assert bus.stats.dispatched == 1


async def test_stats_count_events_not_handler_calls(bus: EventBus) -> None:
    for _ in range(3):
        bus.subscribe("a.b", lambda e: None)
    bus.subscribe("a.b", lambda e: 1 / 0)
    await bus.start()
    for i in range(10):
        bus.publish("a.b", i)
    bus.publish("price.updated", tick("BTC/USDT", 1))
    bus.publish("price.updated", tick("BTC/USDT", 2))
    await bus.drain()
    stats = bus.stats
    assert stats.as_dict() == {
        "published": 12,
        "dispatched": 11,
        "conflated": 1,
        "dead_lettered": 10,
        "queued": 0,
    }


def test_publishing_to_a_pattern_is_refused() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="wildcards"):
        bus.publish("order.*", 1)
    with pytest.raises(ValueError):
        bus.publish("", 1)


def test_a_bus_can_be_restarted_on_a_new_loop_after_the_old_one_closed() -> None:
    bus = EventBus()
    seen = Recorder()
    bus.subscribe("a.b", seen)

    async def round_trip(payload: int) -> None:
        await bus.start()
        bus.publish("a.b", payload)
        await bus.drain()
        await asyncio.sleep(0.01)  # the dispatcher goes back to waiting for work
        assert bus.running
        await bus.stop()

    asyncio.run(round_trip(1))
    asyncio.run(round_trip(2))
    assert seen.payloads == [1, 2]

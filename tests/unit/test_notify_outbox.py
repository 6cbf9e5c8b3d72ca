"""The outbox and the service's delivery loop, with scripted channels and a real SQLite file.

The channels here are stand-ins that succeed, fail or hang on cue; the real ones are
tested against real servers in tests/integration/test_notify_*.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.bus import Event, EventBus
from app.notify.channel import ChannelError, NotConfigured
from app.notify.message import Message
from app.notify.outbox import Backoff, Outbox
from app.notify.service import STATUS_TOPIC, DeliveryStatus, NotificationService
from app.resilience.errors import FailureKind
from app.resilience.guard import Guard, GuardConfig
from app.store import Store

FAST = Backoff(first=0.05, multiplier=2.0, cap=0.2)
ALERT = {"symbol": "BTC/USDT", "price": Decimal("70012.5")}

HANG = object()


class Scripted:
    """A channel whose next sends succeed (None), raise (an exception) or hang (HANG), in order."""

    def __init__(self, name: str, *outcomes: Any, capacity: int = 2) -> None:
        self.name = name
        self.guard = Guard(f"notify:{name}", GuardConfig(max_concurrent=capacity, retry_attempts=1))
        self.outcomes = list(outcomes)
        self.sent: list[Message] = []
        self.calls = 0
        self.progress_seen: list[str] = []

    async def send(self, message: Message, progress: str = "") -> None:
        self.calls += 1
        self.progress_seen.append(progress)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is HANG:
            await asyncio.Event().wait()
        if isinstance(outcome, BaseException):
            raise outcome
        self.sent.append(message)

    async def close(self) -> None:
        pass


def down(sentence: str = "The server could not be reached; it will be sent when it answers.") -> ChannelError:
    return ChannelError(sentence, kind=FailureKind.UNHEALTHY)


_services: list[NotificationService] = []


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store.open(tmp_path / "data.sqlite")
    try:
        yield s
    finally:  # a failed test must not leave a delivery loop running against a closed store
        while _services:
            await _services.pop().stop()
        s.close()


def service_for(store: Store, *channels: Scripted, bus: EventBus | None = None, backoff: Backoff = FAST,
                rng: Callable[[], float] = lambda: 0.5) -> NotificationService:
    service = NotificationService(Outbox(store, backoff=backoff, rng=rng), channels, bus=bus, idle_poll=0.05)
    _services.append(service)
    return service


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_one_row_per_channel_in_one_go_and_each_channel_delivers(store: Store) -> None:
    email, discord = Scripted("email"), Scripted("discord")
    service = service_for(store, email, discord)
    await service.start()
    rows = await service.notify("price_alert", ALERT, ["email", "discord"], message_id="alert:1")
    assert [(r.channel, r.status, r.inserted) for r in rows] == [("email", "pending", True),
                                                                 ("discord", "pending", True)]
    await until(lambda: email.sent and discord.sent)
    assert email.sent[0].title == discord.sent[0].title == "Price alert: BTC/USDT at 70,012.5"
    await until(lambda: service.wait_idle(0.01))
    assert await service.undelivered() == []
    await service.stop()


async def test_the_same_message_id_is_delivered_once(store: Store) -> None:
    email = Scripted("email")
    service = service_for(store, email)
    await service.start()
    first = await service.notify("price_alert", ALERT, ["email"], message_id="fill:binance:42")
    second = await service.notify("price_alert", ALERT, ["email", "email"], message_id="fill:binance:42")
    assert first[0].inserted and not second[0].inserted and len(second) == 1
    assert await service.wait_idle()
    await service.notify("price_alert", ALERT, ["email"], message_id="fill:binance:42")  # after delivery, too
    assert await service.wait_idle()
    await asyncio.sleep(0.1)
    assert len(email.sent) == 1
    await service.stop()


async def test_a_channel_that_is_down_gets_the_message_later_with_growing_backoff(store: Store) -> None:
    email = Scripted("email", down(), down(), None)
    bus = EventBus()
    seen: list[DeliveryStatus] = []

    def on_status(event: Event) -> None:
        seen.append(event.payload)

    bus.subscribe(STATUS_TOPIC, on_status)
    await bus.start()
    service = service_for(store, email, bus=bus)
    await service.start()
    await service.notify("price_alert", ALERT, ["email"], message_id="a1")
    await until(lambda: email.calls >= 1)
    await until(lambda: service.undelivered())
    (row,) = await service.undelivered()
    assert (row.channel, row.status, row.attempts) == ("email", "pending", 1)
    assert row.reason == "The server could not be reached; it will be sent when it answers."
    assert row.next_attempt_at is not None and row.next_attempt_at > time.time()
    await until(lambda: email.sent, timeout=3)
    await bus.drain()
    assert [s.status for s in seen] == ["pending", "pending", "delivered"]
    waits = [s.next_attempt_at for s in seen if s.next_attempt_at]
    assert len(waits) == 2
    assert len(email.sent) == 1
    await service.stop()
    await bus.stop()


def test_backoff_is_exponential_capped_and_jittered_but_never_near_zero() -> None:
    b = Backoff(first=30, multiplier=2, cap=3600)
    assert [b.delay(n, rng=lambda: 0.0) for n in (1, 2, 3)] == [15, 30, 60]
    assert b.delay(1, rng=lambda: 0.999) < 30
    assert b.delay(50, rng=lambda: 0.0) == 1800 and b.delay(10_000, rng=lambda: 0.999) < 3600


async def test_a_permanent_failure_stops_with_its_sentence_until_the_user_retries(store: Store) -> None:
    refused = ChannelError("The SMTP server refused the login: check the username and the password in "
                           "Settings → Notifications.", kind=FailureKind.AUTH)
    email = Scripted("email", refused, None)
    service = service_for(store, email)
    await service.start()
    await service.notify("price_alert", ALERT, ["email"], message_id="a1")
    await until(lambda: service.undelivered())
    await asyncio.sleep(0.3)  # several backoff periods: nothing is retried
    assert email.calls == 1
    (row,) = await service.undelivered()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    assert row.reason.startswith("The SMTP server refused the login")
    assert await service.retry("a1") == 1
    await until(lambda: email.sent)
    assert await service.undelivered() == []
    await service.stop()


async def test_discard_stops_a_message_and_keeps_its_id_suppressed(store: Store) -> None:
    email = Scripted("email", NotConfigured("Email notifications are off: set the SMTP server in Settings."))
    service = service_for(store, email)
    await service.start()
    await service.notify("price_alert", ALERT, ["email"], message_id="a1")
    await until(lambda: service.undelivered())
    assert await service.discard("a1") == 1
    assert await service.undelivered() == []
    again = await service.notify("price_alert", ALERT, ["email"], message_id="a1")
    assert again[0].status == "discarded" and not again[0].inserted
    await service.stop()


async def test_pending_rows_are_delivered_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "data.sqlite"
    store = Store.open(path)
    email = Scripted("email", down())
    service = service_for(store, email, backoff=Backoff(first=0.2, cap=0.2))
    await service.start()
    await service.notify("trade_executed", {"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("1"),
                                            "price": Decimal("65000")}, ["email"], message_id="fill:1")
    await until(lambda: email.calls == 1)
    await until(lambda: service.undelivered())
    await service.stop()
    store.close()

    store = Store.open(path)  # the next run of the app
    email2 = Scripted("email")
    service2 = service_for(store, email2)
    await service2.start()
    await until(lambda: email2.sent)
    assert email2.sent[0].message_id == "fill:1" and email2.sent[0].title == "Bought 1 BTC at 65,000 USDT"
    (row,) = await service2.outbox.rows("fill:1")
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, "")
    await service2.stop()
    store.close()


async def test_a_hanging_channel_does_not_delay_the_others(store: Store) -> None:
    email = Scripted("email", HANG, HANG, HANG, capacity=2)
    discord = Scripted("discord")
    service = service_for(store, email, discord)
    await service.start()
    for i in range(3):
        await service.notify("price_alert", ALERT, ["email", "discord"], message_id=f"a{i}")
    await until(lambda: len(discord.sent) == 3, timeout=2)
    assert email.calls == 2  # only as many in flight as the email guard's bulkhead allows
    await service.stop()
    rows = await service.undelivered()
    assert sorted((r.channel, r.status, r.attempts) for r in rows) == [("email", "pending", 0)] * 3


async def test_a_channel_the_app_does_not_run_is_recorded_as_failed_with_a_reason(store: Store) -> None:
    service = service_for(store, Scripted("email"))
    await service.start()
    rows = await service.notify("price_alert", ALERT, ["desktop", "email"], message_id="a1")
    assert [(r.channel, r.status) for r in rows] == [("desktop", "failed"), ("email", "pending")]
    await service.wait_idle()
    (row,) = await service.undelivered()
    assert row.reason == "The desktop channel is not available in this mode of the app."
    with pytest.raises(ValueError, match="channels are: desktop, email, discord, sms"):
        await service.notify("price_alert", ALERT, ["telegram"])
    await service.stop()


async def test_flush_tries_every_due_row_once_within_its_timeout(store: Store) -> None:
    email = Scripted("email", None, down(), HANG)
    service = service_for(store, email)  # not started: rows wait for flush
    for i in range(3):
        await service.notify("price_alert", ALERT, ["email"], message_id=f"a{i}")
    started = time.monotonic()
    result = await service.flush(timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert (result.delivered, result.failed, result.pending) == (1, 0, 2)
    assert result.sentence() == "2 notification(s) will be sent at the next start."
    assert email.calls == 3
    rows = {r.message_id: r for r in await service.undelivered()}
    assert rows["a1"].attempts == 1 and rows["a2"].attempts == 0  # the hung try was cut short, not counted

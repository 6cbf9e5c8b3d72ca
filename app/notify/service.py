"""The notification service: render, enqueue one outbox row per channel, deliver.

    service = create_notification_service(store, settings.notify, secret, bus=bus, guards=guards)
    await service.start()                      # also delivers what an earlier run left pending
    await service.notify("trade_executed", fill, ["desktop", "discord"], message_id=f"fill:{venue}:{fill.trade_id}")
    ...
    await service.flush(timeout=5)             # at shutdown: every due row tried once
    await service.stop()

Decisions:
* `notify` renders once and writes every channel's row in one transaction,
  before anything is sent: a crash after it loses nothing.
* Every row is delivered by its own task. Each channel has as many tasks in
  flight as its guard's bulkhead allows, and no more, so a hanging SMTP server
  fills only the email channel's slots: Discord, SMS and the desktop go on.
* One loop picks up due rows: new ones (woken by `notify`), retries whose time
  has come, and on `start` whatever an earlier run left pending.
* Outcomes: delivered; a permanent failure (ChannelError.permanent: a refused
  login, a bad address, a channel that is off) marks the row failed with the
  sentence and stops; anything else is retried with the outbox's backoff.
* Each outcome is published on the bus as `notify.status` (LOW priority), so the
  list of undelivered messages can refresh without polling.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.bus import Priority
from app.notify.channel import Channel, ChannelError, SecretGetter
from app.notify.desktop import DesktopChannel
from app.notify.discord import DiscordChannel
from app.notify.email import EmailChannel
from app.notify.message import CHANNELS, Target
from app.notify.outbox import FAILED, Backoff, NewRow, Outbox, OutboxRow, Undelivered
from app.notify.sms import SmsChannel
from app.notify.templates import render
from app.resilience.errors import FailureKind, describe_error
from app.resilience.guard import GuardConfig, GuardRegistry, Publisher
from app.settings import NotifySettings
from app.store import Store

__all__ = [
    "GUARD_CONFIGS",
    "STATUS_TOPIC",
    "DeliveryStatus",
    "FlushResult",
    "NotificationService",
    "create_notification_service",
]

log = logging.getLogger(__name__)

STATUS_TOPIC = "notify.status"

GUARD_CONFIGS: dict[str, GuardConfig] = {
    # retry_attempts=1 everywhere: sending is not idempotent; the outbox retries.
    "notify:email": GuardConfig(retry_attempts=1, call_timeout=30.0, max_concurrent=2, rate_per_second=1.0, burst=5.0,
                                failure_threshold=5, reset_timeout=60.0),
    # Discord allows a webhook about 5 messages per 2 s; its headers say the rest.
    "notify:discord": GuardConfig(retry_attempts=1, call_timeout=20.0, max_concurrent=2, rate_per_second=2.5,
                                  burst=5.0, failure_threshold=5, reset_timeout=30.0),
    "notify:sms": GuardConfig(retry_attempts=1, call_timeout=20.0, max_concurrent=2, rate_per_second=1.0, burst=3.0,
                              failure_threshold=5, reset_timeout=60.0),
    "notify:desktop": GuardConfig(retry_attempts=1, call_timeout=10.0, max_concurrent=4, rate_per_second=5.0,
                                  burst=10.0, failure_threshold=5, reset_timeout=30.0),
}
"""Each channel's guard settings; hand them to the GuardRegistry (user overrides win)."""


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """Payload of `notify.status`: what just happened to one message on one channel."""

    message_id: str
    channel: str
    title: str
    status: str  # "delivered" | "pending" (will retry) | "failed"
    reason: str  # "" when delivered
    attempts: int
    next_attempt_at: float | None  # epoch seconds, when pending


@dataclass(frozen=True, slots=True)
class FlushResult:
    delivered: int
    failed: int
    pending: int  # still waiting (failed for now, or not finished within the timeout)

    def sentence(self) -> str:
        if not self.pending:
            return "Every notification was delivered." if not self.failed else (
                f"{self.failed} notification(s) could not be delivered; see Notifications → Undelivered.")
        return f"{self.pending} notification(s) will be sent at the next start."


class NotificationService:
    def __init__(
        self,
        outbox: Outbox,
        channels: Iterable[Channel],
        *,
        bus: Publisher | None = None,
        idle_poll: float = 30.0,
        wall: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        keep_days: float = 30.0,
    ) -> None:
        self.outbox = outbox
        self.channels: dict[str, Channel] = {c.name: c for c in channels}
        self._bus = bus
        self._idle_poll = idle_poll
        self._wall = wall
        self._new_id = new_id
        self._keep_days = keep_days
        self._tasks: dict[int, asyncio.Task[str]] = {}  # row id -> its delivery
        self._row_channel: dict[int, str] = {}
        self._busy: dict[str, int] = {}  # channel -> tasks in flight
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<NotificationService channels={sorted(self.channels)} in_flight={len(self._tasks)}>"

    # ------------------------------------------------------------------ life

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def start(self) -> None:
        """Start delivering, beginning with whatever an earlier run left due."""
        if self.running:
            return
        try:
            await self.outbox.prune(self._keep_days)
        except Exception as exc:  # housekeeping must not stop notifications
            log.warning("notify: could not prune the outbox (%s)", describe_error(exc))
        self._wake = asyncio.Event()
        self._loop_task = asyncio.create_task(self._run(), name="notify-outbox")

    async def stop(self) -> None:
        """Stop the loop and cancel deliveries under way (they stay pending, uncounted)."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pending = list(self._tasks.values())
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for channel in self.channels.values():
            try:
                await channel.close()
            except Exception as exc:
                log.warning("notify: closing %s failed (%s)", channel.name, describe_error(exc))

    def update_settings(self, settings: NotifySettings) -> None:
        """Apply changed notification settings (secrets are read at each send anyway)."""
        for name, channel in self.channels.items():
            update = getattr(channel, "update", None)
            if update is not None:
                update(getattr(settings, name))
        self._wake.set()

    # ------------------------------------------------------------------ sending

    async def notify(
        self, kind: str, data: Any, channels: Iterable[str], message_id: str | None = None
    ) -> list[OutboxRow]:
        """Render `data` as a `kind` message and queue it for each channel; returns the rows.

        A (message_id, channel) already in the outbox is left as it is (the row comes
        back with `inserted=False`): give events a stable id (e.g. "fill:<venue>:<trade
        id>") and a repeated event is delivered once. Delivery happens in the background.
        """
        names = list(dict.fromkeys(channels))
        unknown = [n for n in names if n not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown notification channel(s) {unknown}; the channels are: {', '.join(CHANNELS)}")
        message = render(kind, data, message_id or self._new_id(), now=self._wall())
        rows = []
        for name in names:
            if name in self.channels:
                rows.append(NewRow(message, name))
            else:  # e.g. the desktop in headless mode: recorded, with the reason, not silently dropped
                rows.append(NewRow(message, name, status=FAILED,
                                   error=f"The {name} channel is not available in this mode of the app."))
        stored = await self.outbox.enqueue(rows)
        for row in stored:
            if row.inserted:
                log.info("notify: %s queued for %s", row.message_id, row.channel)
            else:
                log.info("notify: %s for %s was already queued (%s); not sent again",
                         row.message_id, row.channel, row.status)
        self._wake.set()
        return stored

    async def flush(self, timeout: float) -> FlushResult:
        """Try every due row once (and let deliveries under way finish), for at most `timeout` seconds."""
        rows = await self.outbox.due(limit=100_000)
        for row in rows:
            if row.id not in self._tasks:
                self._start(row)
        tasks = list(self._tasks.values())
        if tasks:
            done, not_done = await asyncio.wait(tasks, timeout=timeout)
            for t in not_done:
                t.cancel()
            await asyncio.gather(*not_done, return_exceptions=True)
        else:
            done, not_done = set(), set()
        outcomes = [t.result() for t in done if not t.cancelled() and t.exception() is None]
        delivered = outcomes.count("delivered")
        failed = outcomes.count("failed")
        return FlushResult(delivered=delivered, failed=failed, pending=len(tasks) - delivered - failed)

    # ------------------------------------------------------------------ the UI's questions

    async def undelivered(self, limit: int = 500) -> list[Undelivered]:
        return await self.outbox.undelivered(limit)

    async def retry(self, message_id: str, channel: str | None = None) -> int:
        count = await self.outbox.retry(message_id, channel)
        self._wake.set()
        return count

    async def discard(self, message_id: str, channel: str | None = None) -> int:
        return await self.outbox.discard(message_id, channel)

    async def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until nothing is in flight and nothing is due (tests, and a clean shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._tasks and not await self.outbox.due(limit=1):
                return True
            await asyncio.sleep(0.02)
        return False

    # ------------------------------------------------------------------ the loop

    def _capacity(self, channel: str) -> int:
        found = self.channels.get(channel)
        return found.guard.config.max_concurrent if found is not None else 1

    def _full(self, channel: str) -> bool:
        return self._busy.get(channel, 0) >= self._capacity(channel)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._dispatch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store being closed under us, a bug: keep the loop alive
                log.error("notify: the delivery loop failed (%s); trying again shortly", describe_error(exc))
                delay = min(self._idle_poll, 5.0)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, delay))
            except TimeoutError:
                pass

    async def _dispatch(self) -> float:
        """Start due rows where their channel has room; returns seconds until the loop should look again."""
        for row in await self.outbox.due(limit=200 + len(self._tasks)):
            if row.id not in self._tasks and not self._full(row.channel):
                self._start(row)
        now = self._wall()
        delay = self._idle_poll
        for row_id, channel, at in await self.outbox.pending_times():
            if row_id in self._tasks or self._full(channel):
                continue  # a finishing task wakes the loop
            delay = min(delay, max(0.0, at - now))
            break
        return delay

    def _start(self, row: OutboxRow) -> None:
        self._busy[row.channel] = self._busy.get(row.channel, 0) + 1
        self._row_channel[row.id] = row.channel
        task = asyncio.create_task(self._deliver(row), name=f"notify-{row.channel}-{row.id}")
        self._tasks[row.id] = task
        task.add_done_callback(functools.partial(self._finished, row.id))

    def _finished(self, row_id: int, task: asyncio.Task[str] | None = None) -> None:
        self._tasks.pop(row_id, None)
        channel = self._row_channel.pop(row_id, None)
        if channel is not None:
            self._busy[channel] = max(0, self._busy.get(channel, 0) - 1)
        self._wake.set()

    async def _deliver(self, row: OutboxRow) -> str:
        channel = self.channels.get(row.channel)
        message = row.message
        try:
            if channel is None:
                raise ChannelError(f"The {row.channel} channel is not available in this mode of the app.",
                                   kind=FailureKind.BUSINESS)
            await channel.send(message, row.progress)
        except ChannelError as exc:
            reason = str(exc)
            progress = exc.progress if exc.progress is not None else row.progress
            if exc.permanent:
                await self.outbox.failed(row, reason, progress=progress)
                log.warning("notify: %s not delivered by %s: %s", row.message_id, row.channel, reason)
                self._publish(row, "failed", reason, None)
                return "failed"
            at = await self.outbox.will_retry(row, reason, progress=progress, not_before=exc.retry_at)
            log.info("notify: %s not delivered by %s yet (%s); next try at %s", row.message_id, row.channel, reason,
                     time.strftime("%H:%M:%S", time.localtime(at)))
            self._publish(row, "pending", reason, at)
            return "pending"
        except asyncio.CancelledError:
            raise  # not an attempt: the row stays as it was
        except Exception as exc:  # a bug in a channel: keep the message, say so, try later
            reason = f"Sending by {row.channel} failed unexpectedly ({type(exc).__name__}); it will be tried again."
            log.error("notify: %s by %s: %s", row.message_id, row.channel, describe_error(exc))
            at = await self.outbox.will_retry(row, reason)
            self._publish(row, "pending", reason, at)
            return "pending"
        await self.outbox.delivered(row)
        log.info("notify: %s delivered by %s", row.message_id, row.channel)
        self._publish(row, "delivered", "", None)
        return "delivered"

    def _publish(self, row: OutboxRow, status: str, reason: str, at: float | None) -> None:
        if self._bus is None:
            return
        try:
            self._bus.publish(
                STATUS_TOPIC,
                DeliveryStatus(row.message_id, row.channel, row.title, status, reason, row.attempts + 1, at),
                Priority.LOW,
            )
        except Exception as exc:
            log.warning("notify: could not publish a delivery status (%s)", describe_error(exc))


# --------------------------------------------------------------------------- composition


def create_notification_service(
    store: Store,
    settings: NotifySettings,
    secret: SecretGetter,
    *,
    bus: Publisher | None = None,
    guards: GuardRegistry | None = None,
    channels: Iterable[str] = CHANNELS,
    sms_allowed: Callable[[], bool] | None = None,
    on_click: Callable[[Target | None], Any] | None = None,
    fallback: Callable[[str, str], Any] | None = None,
    email_tls_context: ssl.SSLContext | None = None,
    email_ca_file: str | None = None,
    backoff: Backoff | None = None,
    idle_poll: float = 30.0,
    extra_channels: Mapping[str, Channel] | None = None,
) -> NotificationService:
    """The service with the named channels built from settings (headless mode leaves out "desktop")."""
    guards = guards or GuardRegistry(bus, GUARD_CONFIGS)
    wanted = set(channels)
    built: list[Channel] = []
    if "desktop" in wanted:
        built.append(DesktopChannel(settings.desktop, guards.get("notify:desktop"), on_click=on_click,
                                    fallback=fallback))
    if "email" in wanted:
        guard = guards.get("notify:email")
        built.append(EmailChannel(settings.email, secret, guard, tls_context=email_tls_context, ca_file=email_ca_file,
                                  timeout=max(1.0, guard.config.call_timeout / 2)))
    if "discord" in wanted:
        guard = guards.get("notify:discord")
        timeout = max(1.0, guard.config.call_timeout * 0.75)
        built.append(DiscordChannel(settings.discord, secret, guard, timeout=timeout))
    if "sms" in wanted:
        built.append(SmsChannel(settings.sms, secret, guards.get("notify:sms"), allowed=sms_allowed))
    for name, channel in (extra_channels or {}).items():
        built = [c for c in built if c.name != name] + [channel]
    return NotificationService(Outbox(store, backoff=backoff or Backoff()), built, bus=bus, idle_poll=idle_poll)

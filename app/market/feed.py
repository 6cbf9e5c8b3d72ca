"""Keeps a venue's live stream flowing onto the bus, whatever the network does.

`venue.watch()` events become bus events (`Ticker` -> `price.updated`,
conflated per symbol; `Trade` -> `market.trade`, never dropped). The feed
reconnects forever with capped exponential backoff and full jitter, and a
watchdog marks the feed stale when no event arrives for `stale_after` seconds,
so the window can say that prices are old instead of showing them as live.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from app.bus import EventBus
from app.domain import CandleUpdate, Ticker, Trade
from app.venues.base import Venue, VenueError

log = logging.getLogger(__name__)

TOPIC_PRICE = "price.updated"
TOPIC_TRADE = "market.trade"
TOPIC_CANDLE = "market.candle"
TOPIC_CONNECTION = "connection.state"


class ConnectionState(enum.StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    STALE = "stale"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    venue: str
    state: ConnectionState
    detail: str = ""
    ts: float = 0.0
    retry_at: float | None = None  # wall-clock time of the next attempt while reconnecting


class MarketFeed:
    def __init__(
        self,
        bus: EventBus,
        venue: Venue,
        symbols: Sequence[str],
        *,
        stale_after: float | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        healthy_after: float = 30.0,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus
        self.venue = venue
        self.symbols = list(symbols)
        # A venue knows its channels' normal pace (the sim's ticks, an exchange's push interval).
        self.stale_after = stale_after if stale_after is not None else float(getattr(venue, "stale_after", 10.0))
        self.healthy_after = healthy_after
        self.on_reconnect = on_reconnect
        self.reconnects = 0
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.state = ConnectionState.STOPPED
        self.last_event_at = 0.0  # monotonic
        self.events = 0
        self._tasks: list[asyncio.Task[None]] = []

    def _set(self, state: ConnectionState, detail: str = "", retry_at: float | None = None) -> None:
        if state is self.state and not detail:
            return
        self.state = state
        self.bus.publish(TOPIC_CONNECTION, ConnectionStatus(self.venue.name, state, detail, time.time(), retry_at))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump(), name=f"feed-{self.venue.name}"),
            loop.create_task(self._watchdog(), name=f"feed-watchdog-{self.venue.name}"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        self._set(ConnectionState.STOPPED)

    async def _pump(self) -> None:
        attempt = 0
        publish = self.bus.publish
        ever_live = False
        while True:
            self._set(ConnectionState.CONNECTING if not ever_live and attempt == 0 else ConnectionState.RECONNECTING)
            live_since = 0.0
            try:
                async for event in self.venue.watch(self.symbols):
                    now = time.monotonic()
                    self.last_event_at = now
                    self.events += 1
                    if self.state is not ConnectionState.LIVE:
                        self._set(ConnectionState.LIVE)
                        if not live_since:
                            live_since = now
                            if ever_live:
                                self.reconnects += 1
                                self._backfill()
                            ever_live = True
                    elif attempt and now - live_since >= self.healthy_after:
                        # Only a connection that stayed up resets the backoff: one that the server
                        # accepts and drops at once must not be retried in a tight loop.
                        attempt = 0
                    if isinstance(event, Trade):
                        publish(TOPIC_TRADE, event)
                    elif isinstance(event, Ticker):
                        publish(TOPIC_PRICE, event)
                    elif isinstance(event, CandleUpdate):
                        publish(TOPIC_CANDLE, event)
                raise VenueError("the stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the stream: keep trying, never give up
                attempt += 1
                delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** min(attempt, 30)))
                log.warning("%s stream failed (%s); reconnecting in %.1f s", self.venue.name, exc, delay)
                self._set(ConnectionState.RECONNECTING, str(exc), retry_at=time.time() + delay)
                await asyncio.sleep(delay)

    def _backfill(self) -> None:
        if self.on_reconnect is None:
            return
        task = asyncio.get_running_loop().create_task(self.on_reconnect(), name=f"backfill-{self.venue.name}")
        self._tasks.append(task)
        task.add_done_callback(self._backfill_done)

    def _backfill_done(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: filling the candles missed while disconnected failed: %s", self.venue.name, task.exception())

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.stale_after / 4))
            if self.state is ConnectionState.LIVE and time.monotonic() - self.last_event_at > self.stale_after:
                self._set(ConnectionState.STALE, f"no price for {self.stale_after:.0f} s")

"""Catch up on Stripe events whose webhook never arrived: list recent events and apply the unseen ones.

Stripe retries a webhook for days, but an endpoint that was down, misconfigured
or behind a broken proxy can still miss one, and a missed
checkout.session.completed is points the user paid for and never got. So the
relay also asks `GET /v1/events` for everything created since its cursor,
pages back with `starting_after` (Stripe lists newest first), and applies what
it has not seen, oldest first, through the same processor as the webhooks.

The cursor is the newest event `created` applied, minus an overlap: an event's
`created` can be a little older than the moment it becomes listable, and
events already seen cost one row lookup. It is stored in the database, so a
restarted relay resumes where it stopped; the first run looks back `lookback`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from app.billing.db import Database
from app.billing.hub import NoticeHub
from app.billing.processor import EventProcessor
from app.billing.stripe_gateway import StripeGateway
from app.resilience import describe_error

__all__ = ["CURSOR_KEY", "Reconciler"]

_log = logging.getLogger(__name__)

CURSOR_KEY = "reconciler.created_gte"


class Reconciler:
    def __init__(
        self,
        gateway: StripeGateway,
        db: Database,
        processor: EventProcessor,
        hub: NoticeHub,
        *,
        interval: float | None = 300.0,
        lookback: float = 3 * 86400.0,
        overlap: float = 900.0,
        max_pages: int = 50,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._gateway = gateway
        self._db = db
        self._processor = processor
        self._hub = hub
        self.interval = interval
        self.lookback = lookback
        self.overlap = overlap
        self.max_pages = max_pages
        self._wall = wall
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.last_error = ""
        self.runs = 0

    def start(self) -> None:
        """Run now (catch up after downtime), then every `interval` seconds; no-op if interval is None."""
        if self.interval is not None and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="billing-reconciler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        assert self.interval is not None
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The next run tries again; the events wait in Stripe for 30 days.
                self.last_error = describe_error(exc)
                _log.warning("Reconciling Stripe events failed: %s", self.last_error)
            await asyncio.sleep(self.interval)

    async def run_once(self) -> int:
        """List and apply unseen events; returns how many were applied."""
        async with self._lock:
            stored = await self._db.run(lambda tx: tx.get_value(CURSOR_KEY))
            cursor = int(stored) if stored is not None else int(self._wall() - self.lookback)
            events: list[dict[str, Any]] = []
            starting_after: str | None = None
            for _ in range(self.max_pages):
                page, more = await self._gateway.list_events(created_gte=cursor, starting_after=starting_after)
                events.extend(page)
                if not more or not page:
                    break
                starting_after = page[-1]["id"]
            events.sort(key=lambda e: (int(e.get("created") or 0), str(e.get("id"))))
            applied = 0
            for event in events:
                def work(tx: Any, event: dict[str, Any] = event) -> tuple[bool, list[Any]]:
                    if tx.event_seen(event["id"]):
                        return False, []
                    return True, self._processor.apply(tx, event, "reconciler")

                fresh, notices = await self._db.run(work)
                if fresh:
                    applied += 1
                    if event.get("type") in self._processor.handled:
                        _log.info("Reconciler applied Stripe event %s (%s) that no webhook delivered",
                                  event.get("id"), event.get("type"))
                self._hub.publish(notices)
            # With nothing new, anything still to come is created from about now on.
            newest = max((int(e.get("created") or 0) for e in events), default=int(self._wall()))
            new_cursor = max(cursor, int(newest - self.overlap))
            await self._db.run(lambda tx: tx.set_value(CURSOR_KEY, str(new_cursor)))
            self.runs += 1
            self.last_error = ""
            return applied

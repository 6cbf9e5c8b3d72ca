"""At most N calls in flight per endpoint group, each with a timeout.

Why: a venue that hangs must not absorb every connection and task of the
terminal. Its calls queue for one of N slots, and a call that holds a slot
longer than the call timeout is abandoned with `CallTimeoutError`.

Decisions:

* A call waits for a slot at most `queue_timeout` seconds, then fails with
  `BulkheadFullError` without having been sent. The guard counts that as
  rejected, not as a failure of the service: the slow calls holding the slots
  are counted themselves when they time out.
* The timeout covers only the call itself (not the wait for a slot), so it
  means "the service took too long to answer".
* Timeouts run on the event loop's clock (asyncio.timeout), not an injected
  one: they must cancel a real awaiting coroutine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from app.resilience.errors import BulkheadFullError, CallTimeoutError, group_display_name, scrub

__all__ = ["Bulkhead"]

T = TypeVar("T")


def _seconds(value: float) -> str:
    return f"{value:g} s"


class Bulkhead:
    def __init__(self, group: str, max_concurrent: int = 10, call_timeout: float = 10.0,
                 queue_timeout: float | None = None) -> None:
        if max_concurrent < 1 or not call_timeout > 0 or (queue_timeout is not None and queue_timeout < 0):
            raise ValueError("a bulkhead needs at least one slot, a positive call timeout and a queue timeout >= 0")
        self.group = group
        self.max_concurrent = max_concurrent
        self.call_timeout = call_timeout
        self.queue_timeout = call_timeout if queue_timeout is None else queue_timeout
        self._slots = asyncio.Semaphore(max_concurrent)
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body; raises BulkheadFullError if none frees up in time."""
        try:
            if self._slots.locked():  # also true while others queue, which keeps the order FIFO
                # Semaphore.acquire is cancellation-safe: a timed-out waiter takes no slot.
                await asyncio.wait_for(self._slots.acquire(), self.queue_timeout)
            else:
                await self._slots.acquire()  # free now: no timer, and queue_timeout=0 still admits
        except TimeoutError:
            name, _ = group_display_name(self.group)
            raise BulkheadFullError(
                f"{name} is slow: all {self.max_concurrent} connections stayed busy for "
                f"{_seconds(self.queue_timeout)}, so this request was not sent. Try again in a moment.",
                group=self.group,
            ) from None
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._slots.release()

    async def run(self, fn: Callable[[], Awaitable[T]], what: str = "") -> T:
        """`fn()` in a slot, under the call timeout."""
        async with self.slot():
            return await self.call_in_slot(fn, what)

    async def call_in_slot(self, fn: Callable[[], Awaitable[T]], what: str = "") -> T:
        scope = asyncio.timeout(self.call_timeout)
        try:
            async with scope:
                return await fn()
        except TimeoutError:
            if not scope.expired():
                raise  # the callee's own timeout: classified like any other
            name, _ = group_display_name(self.group)
            subject = f"{name} ({scrub(what, 80)})" if what else name
            raise CallTimeoutError(
                f"{subject} did not answer within {_seconds(self.call_timeout)}.",
                group=self.group,
                timeout=self.call_timeout,
            ) from None

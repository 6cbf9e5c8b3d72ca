"""A token bucket per endpoint group, awaited before each call.

Decisions:

* The bucket holds at most `burst` tokens and refills at `rate` tokens per
  second. A call costing `cost` waits until that many tokens are there, then
  takes them.
* A call may cost more than the burst (ccxt gives Binance's heaviest endpoints
  weights far above one second's allowance). Rather than refuse it forever, it
  waits for a full bucket and takes its whole cost, leaving the bucket in debt
  that later calls wait out. The long-run rate is kept either way.
* Waiters are served first come, first served (an asyncio.Lock is FIFO), so a
  stream of cheap calls cannot starve an expensive one.
* Waiting is a plain `await sleep(...)`: cancelling the waiting task takes no
  tokens and lets the next waiter move up.
* Seeding from a venue: ccxt publishes `exchange.rateLimit`, the milliseconds
  to leave between two requests of cost 1, so the rate is 1000 / rateLimit per
  second; ccxt's own costs are in the same unit and can be passed as `cost`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["TokenBucket", "rate_from_ccxt"]

# Float refill arithmetic can leave a waiter a hair short after sleeping exactly
# the computed time; without this slack it would sleep again for ~1e-16 s.
_EPSILON = 1e-9


def rate_from_ccxt(exchange_or_ms: Any) -> float:
    """Requests per second from ccxt's `rateLimit` (an exchange object or the milliseconds)."""
    ms = getattr(exchange_or_ms, "rateLimit", exchange_or_ms)
    try:
        ms = float(ms)
    except (TypeError, ValueError):
        raise ValueError(f"a ccxt rateLimit must be a number of milliseconds; found {ms!r}") from None
    if not ms > 0:
        raise ValueError(f"a ccxt rateLimit must be a positive number of milliseconds; found {ms!r}")
    return 1000.0 / ms


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not rate > 0 or not burst > 0:
            raise ValueError(f"a rate limit needs a positive rate and burst; found rate {rate!r}, burst {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst  # a fresh group may burst at once
        self._stamp = clock()
        self._lock = asyncio.Lock()

    @classmethod
    def from_ccxt(cls, exchange_or_ms: Any, burst: float | None = None, **kwargs: Any) -> TokenBucket:
        """A bucket at the venue's published rate; the burst defaults to one second of requests."""
        rate = rate_from_ccxt(exchange_or_ms)
        return cls(rate, burst if burst is not None else max(1.0, rate), **kwargs)

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while a call costlier than the burst is paid off)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now

    def try_acquire(self, cost: float = 1.0) -> bool:
        """Take `cost` tokens if they are there now and nobody is waiting; never waits."""
        self._check(cost)
        if self._lock.locked():
            return False
        self._refill()
        if self._tokens + _EPSILON >= min(cost, self.burst):
            self._tokens -= cost
            return True
        return False

    async def acquire(self, cost: float = 1.0) -> float:
        """Wait until `cost` tokens can be taken, take them, and return the seconds waited."""
        self._check(cost)
        need = min(cost, self.burst)
        waited = 0.0
        async with self._lock:
            while True:
                self._refill()
                if self._tokens + _EPSILON >= need:
                    self._tokens -= cost
                    return waited
                delay = (need - self._tokens) / self.rate
                await self._sleep(delay)
                waited += delay

    @staticmethod
    def _check(cost: float) -> None:
        if not cost > 0:
            raise ValueError(f"a call must cost a positive number of tokens; found {cost!r}")

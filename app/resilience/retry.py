"""When to retry a failed call, and how long to wait first.

Decisions:

* Only idempotent operations are retried. Creating an order is not
  idempotent: a timeout may mean the venue *did* place it, so resending could
  buy twice. The guard never retries it, whatever the error; the order service
  reconciles by client order id instead (DESIGN.md, "Orders").
* Only failures known to be transient are retried: UNHEALTHY and RATE_LIMITED
  within the attempt budget, TRANSIENT_CLIENT (a stale nonce) once. Business,
  auth, rejected and unknown failures are raised at once.
* Backoff is exponential with *full* jitter, the AWS Architecture Blog
  variant: before retry number n (n = 0 for the first retry)
  delay = uniform(0, min(cap, first * multiplier ** n)). Full jitter spreads
  the clients that failed together, so they do not come back together.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from app.resilience.errors import FailureKind

__all__ = ["RetryPolicy", "backoff_delay"]

TRANSIENT_CLIENT_RETRIES = 1


def backoff_delay(
    retry: int, *, first: float, multiplier: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number `retry` (0-based): uniform(0, min(cap, first * multiplier**retry))."""
    try:
        ceiling = min(cap, first * multiplier**retry)
    except OverflowError:  # a huge retry number: the cap has long been reached
        ceiling = cap
    return rng() * max(0.0, ceiling)  # rng() is uniform on [0, 1), like random.random


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # in total, the first one included
    first_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts count the first call, so they must be at least 1; found {self.attempts}")
        if self.first_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("retry delays must be >= 0 and the multiplier >= 1")

    def should_retry(self, kind: FailureKind, *, idempotent: bool, attempt: int, transient_retries: int = 0) -> bool:
        """May the call be tried again after attempt number `attempt` (1-based) failed with `kind`?

        `transient_retries` is how many retries TRANSIENT_CLIENT failures have used already.
        """
        if not idempotent or not kind.retryable or attempt >= self.attempts:
            return False
        if kind is FailureKind.TRANSIENT_CLIENT:
            return transient_retries < TRANSIENT_CLIENT_RETRIES
        return True

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retry` (0 for the first retry)."""
        return backoff_delay(retry, first=self.first_delay, multiplier=self.multiplier, cap=self.max_delay, rng=rng)

"""The circuit breaker of one endpoint group: closed -> open -> half-open -> closed.

Decisions others rely on:

* Only failures the caller reports as *counted* (see `FailureKind.counts`) move
  it. A business error, an auth error or a cancelled call is neutral: it is
  neither a failure nor a success (a rejected order proves nothing about the
  venue's health either way), it only frees a half-open probe slot.
* `failures` is the number of consecutive counted failures since the last
  success; it opens the breaker when it reaches the threshold.
* Half-open admits at most `half_open_calls` probes at a time and closes after
  that many successes; one counted failure reopens it for the reset timeout.
* A known Retry-After opens the breaker at once for that long, whatever the
  count, and extends an open breaker that would reopen sooner: the service told
  us when it will talk to us again.
* Every admitted call carries a `Permit` stamped with the breaker's generation,
  which changes on each transition. An outcome from an earlier generation (a
  slow call that started before the breaker opened) is ignored, so a straggler
  cannot close a breaker it never probed or reopen one that recovered. Only a
  Retry-After is honoured from any generation.
* The open -> half-open transition happens when the breaker is next looked at
  (a call, or `snapshot()`), not on a timer: nothing runs in the background.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BreakerSnapshot", "BreakerState", "CircuitBreaker", "Permit"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Permit:
    """Admission of one call; hand it back with exactly one of on_success/on_failure/on_neutral."""

    generation: int
    probe: bool


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: BreakerState
    failures: int
    opened_until: float | None  # wall-clock epoch seconds while open
    rate_limited: bool  # opened by a Retry-After rather than by the failure count
    retry_after: float | None  # the Retry-After that opened it, in seconds
    last_error: str


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_calls: int = 3,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if failure_threshold < 1 or half_open_calls < 1 or reset_timeout <= 0:
            raise ValueError("a circuit breaker needs a threshold and probe count of at least 1 and a positive reset timeout")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_calls = half_open_calls
        self._clock = clock
        self._wall = wall
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._failures = 0
        self._opened_until = 0.0  # monotonic
        self._opened_until_wall: float | None = None
        self._rate_limited = False
        self._retry_after: float | None = None
        self._last_error = ""
        self._probes_in_flight = 0
        self._probe_successes = 0

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> BreakerState:
        self._refresh()
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def remaining_open(self) -> float:
        """Seconds until an open breaker lets a probe through (0 if it is not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_until - self._clock())

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        return BreakerSnapshot(
            state=state,
            failures=self._failures,
            opened_until=self._opened_until_wall if state is BreakerState.OPEN else None,
            rate_limited=self._rate_limited and state is BreakerState.OPEN,
            retry_after=self._retry_after if state is BreakerState.OPEN else None,
            last_error=self._last_error,
        )

    # ------------------------------------------------------------------ admission

    def try_acquire(self) -> Permit | None:
        """A permit for one call, or None if the call must fail fast."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(self._generation, probe=False)
        if state is BreakerState.HALF_OPEN and self._probes_in_flight < self.half_open_calls:
            self._probes_in_flight += 1
            return Permit(self._generation, probe=True)
        return None

    # ------------------------------------------------------------------ outcomes

    def on_success(self, permit: Permit) -> None:
        if not self._release(permit):
            return
        if self._state is BreakerState.HALF_OPEN:
            self._probe_successes += 1
            if self._probe_successes >= self.half_open_calls:
                self._failures = 0
                self._transition(BreakerState.CLOSED)
        else:
            self._failures = 0

    def on_neutral(self, permit: Permit) -> None:
        self._release(permit)

    def on_failure(self, permit: Permit, *, error: str, retry_after: float | None = None) -> None:
        """Record a counted failure (the caller has decided it counts)."""
        current = self._release(permit)
        if current:
            self._failures += 1
            self._last_error = error
        if retry_after is not None and retry_after > 0:
            if self.state is BreakerState.OPEN and self._clock() + retry_after <= self._opened_until:
                return  # already closed to us for longer
            if not current:
                self._last_error = error
            self._open(retry_after, rate_limited=True)
            return
        if not current:
            return
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._open(self.reset_timeout, rate_limited=False)

    # ------------------------------------------------------------------ internals

    def _release(self, permit: Permit) -> bool:
        """Free the permit's probe slot; True if it belongs to the current generation."""
        if permit.generation != self._generation:
            return False
        if permit.probe and self._probes_in_flight > 0:
            self._probes_in_flight -= 1
        return True

    def _refresh(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_until:
            self._transition(BreakerState.HALF_OPEN)

    def _open(self, seconds: float, *, rate_limited: bool) -> None:
        self._opened_until = self._clock() + seconds
        self._opened_until_wall = self._wall() + seconds
        self._rate_limited = rate_limited
        self._retry_after = seconds if rate_limited else None
        self._transition(BreakerState.OPEN)

    def _transition(self, state: BreakerState) -> None:
        self._state = state
        self._generation += 1
        self._probes_in_flight = 0
        self._probe_successes = 0
        if state is not BreakerState.OPEN:
            self._opened_until_wall = None
            self._rate_limited = False
            self._retry_after = None
        if self._on_change is not None:
            self._on_change()

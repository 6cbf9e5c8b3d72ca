"""The one composition every outbound call goes through: `Guard.call`.

Per attempt, in this order: breaker check (fail fast, nothing is sent) ->
rate limiter (wait for tokens) -> bulkhead slot -> timeout around the call ->
record the outcome in the breaker. Retries wrap the whole attempt, so a retry
is checked by the breaker and paid for in tokens like any other call.

Decisions others rely on:

* `idempotent` is required, with no default: whoever writes a call must decide.
  A non-idempotent call is attempted exactly once (see retry.py).
* A retry never waits for an open breaker: if the breaker is open after a
  failed attempt, that attempt's own error is raised at once. The *next* call
  fails fast with `CircuitOpenError`, whose message is a sentence for the user.
* The call that trips the breaker gets its own error (a timeout, a 429), not
  CircuitOpenError: that is what happened to it.
* Cancellation is never a failure: the breaker treats it as neutral.
* `calls` counts attempts that reached the service; `rejected` counts attempts
  the guard refused itself (breaker open, bulkhead full).
* Health is published on "health.changed" at MEDIUM priority on every breaker
  transition (and when a Retry-After pushes an open breaker's time further
  out): the user must learn promptly that trading is paused, but a payment
  failure still goes first. Publishing never fails a call.
* Messages and health never carry exception text unscrubbed: query strings and
  key/secret/signature/token/password values are removed (errors.scrub).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from app.bus import Priority
from app.resilience.breaker import BreakerState, CircuitBreaker, Permit
from app.resilience.bulkhead import Bulkhead
from app.resilience.errors import (
    BulkheadFullError,
    CircuitOpenError,
    FailureKind,
    classify,
    describe_error,
    group_display_name,
    retry_after_seconds,
)
from app.resilience.ratelimit import TokenBucket, rate_from_ccxt
from app.resilience.retry import RetryPolicy

__all__ = ["HEALTH_TOPIC", "Guard", "GuardConfig", "GuardHealth", "GuardRegistry", "Publisher"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

HEALTH_TOPIC = "health.changed"


class Publisher(Protocol):
    """What a guard needs of the event bus."""

    def publish(self, topic: str, payload: Any, priority: Priority | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class GuardConfig:
    # circuit breaker
    failure_threshold: int = 5
    reset_timeout: float = 30.0  # seconds open before probing
    half_open_calls: int = 3  # probes in flight at most, and successes needed to close
    # retry (idempotent calls only)
    retry_attempts: int = 3  # in total, the first one included
    retry_multiplier: float = 2.0
    retry_first_delay: float = 1.0
    retry_max_delay: float = 30.0
    # bulkhead
    max_concurrent: int = 10
    call_timeout: float = 10.0
    queue_timeout: float | None = None  # max wait for a slot; None: the call timeout
    # rate limiter
    rate_per_second: float = 10.0
    burst: float = 10.0

    def __post_init__(self) -> None:
        problems = []
        if self.failure_threshold < 1:
            problems.append("failure_threshold must be at least 1")
        if not self.reset_timeout > 0:
            problems.append("reset_timeout must be more than 0 seconds")
        if self.half_open_calls < 1:
            problems.append("half_open_calls must be at least 1")
        if self.retry_attempts < 1:
            problems.append("retry_attempts must be at least 1 (it counts the first call)")
        if self.retry_multiplier < 1:
            problems.append("retry_multiplier must be at least 1")
        if self.retry_first_delay < 0 or self.retry_max_delay < 0:
            problems.append("retry delays must be 0 seconds or more")
        if self.max_concurrent < 1:
            problems.append("max_concurrent must be at least 1")
        if not self.call_timeout > 0:
            problems.append("call_timeout must be more than 0 seconds")
        if self.queue_timeout is not None and self.queue_timeout < 0:
            problems.append("queue_timeout must be 0 seconds or more")
        if not self.rate_per_second > 0 or not self.burst > 0:
            problems.append("rate_per_second and burst must be more than 0")
        if problems:
            raise ValueError("Invalid guard settings: " + "; ".join(problems) + ".")

    @classmethod
    def from_ccxt(cls, exchange_or_ms: Any, *, burst: float | None = None, **overrides: Any) -> GuardConfig:
        """Defaults with the rate seeded from ccxt's `rateLimit` (ms per request); burst: one second's worth."""
        rate = rate_from_ccxt(exchange_or_ms)
        return cls(rate_per_second=rate, burst=burst if burst is not None else max(1.0, rate), **overrides)

    def with_rate(self, rate_per_second: float, burst: float | None = None) -> GuardConfig:
        return replace(self, rate_per_second=rate_per_second, burst=self.burst if burst is None else burst)


@dataclass(frozen=True, slots=True)
class GuardHealth:
    """One endpoint group's health, as the UI shows it."""

    group: str
    state: str  # "closed" | "open" | "half_open"
    failures: int  # consecutive counted failures
    opened_until: float | None  # wall-clock epoch seconds while open
    last_error: str  # the latest counted failure as a short, secret-free sentence ("" if none)
    calls: int  # attempts that reached the service
    rejected: int  # attempts refused by the guard itself


def _clock_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.3g} s"


class Guard:
    def __init__(
        self,
        group: str,
        config: GuardConfig = GuardConfig(),
        *,
        bus: Publisher | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not group or not isinstance(group, str):
            raise ValueError("a guard needs an endpoint group name such as 'exchange:binance'")
        self.group = group
        self.config = config
        self._bus = bus
        self._wall = wall
        self._sleep = sleep
        self._rng = rng
        self._calls = 0
        self._rejected = 0
        self.breaker = CircuitBreaker(
            config.failure_threshold,
            config.reset_timeout,
            config.half_open_calls,
            clock=clock,
            wall=wall,
            on_change=self._breaker_changed,
        )
        self.limiter = TokenBucket(config.rate_per_second, config.burst, clock=clock, sleep=sleep)
        self.bulkhead = Bulkhead(group, config.max_concurrent, config.call_timeout, config.queue_timeout)
        self.retry = RetryPolicy(
            config.retry_attempts, config.retry_first_delay, config.retry_multiplier, config.retry_max_delay
        )

    def __repr__(self) -> str:
        return f"<Guard {self.group} {self.breaker.state}>"

    # ------------------------------------------------------------------ calling

    async def call(
        self, fn: Callable[[], Awaitable[T]], *, idempotent: bool, cost: float = 1.0, what: str = ""
    ) -> T:
        """`await fn()` under the group's breaker, rate limit, bulkhead, timeout and retry policy.

        `fn` is a factory (e.g. `lambda: exchange.fetch_ticker(s)`), so a call that
        fails fast never creates a coroutine. Raises CircuitOpenError or
        BulkheadFullError when the guard refuses, CallTimeoutError when the
        service is too slow, or the call's own exception.
        """
        if not cost > 0:
            raise ValueError(f"a call must cost a positive number of tokens; found {cost!r}")
        attempt = 0
        transient_retries = 0
        delay = 0.0
        while True:
            attempt += 1
            try:
                return await self._attempt(fn, cost, what)
            except Exception as exc:
                kind = classify(exc)
                if not self.retry.should_retry(
                    kind, idempotent=idempotent, attempt=attempt, transient_retries=transient_retries
                ):
                    raise
                if self.breaker.state is BreakerState.OPEN:
                    raise  # waiting for it is the caller's choice, not a hidden stall
                if kind is FailureKind.TRANSIENT_CLIENT:
                    transient_retries += 1
                delay = self.retry.delay(attempt - 1, self._rng)
                _log.info("%s: retrying %s in %.2f s after %s", self.group, what or "a call", delay, describe_error(exc))
            # Slept outside the except block, so a later failure is not chained to this one.
            await self._sleep(delay)

    async def _attempt(self, fn: Callable[[], Awaitable[T]], cost: float, what: str) -> T:
        permit = self.breaker.try_acquire()
        if permit is None:
            self._rejected += 1
            raise self._open_error()
        try:
            await self.limiter.acquire(cost)
            async with self.bulkhead.slot():
                self._calls += 1
                result = await self.bulkhead.call_in_slot(fn, what)
        except BulkheadFullError:
            self._rejected += 1
            self.breaker.on_neutral(permit)
            raise
        except Exception as exc:
            self._record_failure(permit, exc)
            raise
        except BaseException:  # cancelled (or the process is exiting): says nothing about the service
            self.breaker.on_neutral(permit)
            raise
        self.breaker.on_success(permit)
        return result

    def _record_failure(self, permit: Permit, exc: Exception) -> None:
        kind = classify(exc)
        if not kind.counts:
            self.breaker.on_neutral(permit)
            return
        retry_after = retry_after_seconds(exc, now=self._wall()) if kind is FailureKind.RATE_LIMITED else None
        self.breaker.on_failure(permit, error=describe_error(exc), retry_after=retry_after)

    # ------------------------------------------------------------------ words and health

    def _open_error(self) -> CircuitOpenError:
        snap = self.breaker.snapshot()
        name, activity = group_display_name(self.group)
        if snap.state is BreakerState.OPEN and snap.opened_until is not None:
            until = _clock_time(snap.opened_until)
            if snap.rate_limited and snap.retry_after is not None:
                message = (
                    f"{name} asked us to slow down; {activity} paused until {until} "
                    f"(circuit {self.group} open for {_duration(snap.retry_after)} at its request). "
                    "It will try again automatically."
                )
            else:
                plural = "failure" if snap.failures == 1 else "failures"
                message = (
                    f"{name} is not answering; {activity} paused until {until} "
                    f"(circuit {self.group} open after {snap.failures} {plural}). "
                    "It will try again automatically."
                )
            retry_at: float | None = snap.opened_until
        else:
            message = (
                f"{name} is recovering; {activity} is limited to {self.breaker.half_open_calls} test "
                f"requests at a time until it answers reliably (circuit {self.group} half-open). "
                "Try again in a moment."
            )
            retry_at = None
        return CircuitOpenError(
            message, group=self.group, retry_at=retry_at, failures=snap.failures, last_error=snap.last_error
        )

    def health(self) -> GuardHealth:
        snap = self.breaker.snapshot()
        return GuardHealth(
            group=self.group,
            state=snap.state.value,
            failures=snap.failures,
            opened_until=snap.opened_until,
            last_error=snap.last_error,
            calls=self._calls,
            rejected=self._rejected,
        )

    def _breaker_changed(self) -> None:
        health = self.health()
        if health.state == BreakerState.OPEN:
            _log.warning("%s: circuit open until %s after %s", self.group, health.opened_until, health.last_error)
        else:
            _log.info("%s: circuit %s", self.group, health.state)
        if self._bus is None:
            return
        try:
            self._bus.publish(HEALTH_TOPIC, health, Priority.MEDIUM)
        except Exception:
            # A broken bus must not turn a recorded outcome into a failed call.
            _log.exception("%s: could not publish a health change", self.group)


class GuardRegistry:
    """One guard per endpoint group, created on first use.

    A group's config is looked up by its exact name ("exchange:binance"), then by
    its kind ("exchange"), else `default` is used. The clock, sleep and rng are
    handed to every guard (tests pass fakes).
    """

    def __init__(
        self,
        bus: Publisher | None = None,
        configs: Mapping[str, GuardConfig] | None = None,
        *,
        default: GuardConfig = GuardConfig(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.bus = bus
        self._configs = dict(configs or {})
        self._default = default
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._rng = rng
        self._guards: dict[str, Guard] = {}

    def config_for(self, group: str) -> GuardConfig:
        found = self._configs.get(group)
        if found is None:
            found = self._configs.get(group.partition(":")[0])
        return found if found is not None else self._default

    def get(self, group: str) -> Guard:
        guard = self._guards.get(group)
        if guard is None:
            guard = Guard(
                group,
                self.config_for(group),
                bus=self.bus,
                clock=self._clock,
                wall=self._wall,
                sleep=self._sleep,
                rng=self._rng,
            )
            self._guards[group] = guard
        return guard

    def healths(self) -> list[GuardHealth]:
        """Every created guard's health, sorted by group."""
        return [self._guards[g].health() for g in sorted(self._guards)]

    def __iter__(self) -> Iterator[Guard]:
        return iter(list(self._guards.values()))

    def __len__(self) -> int:
        return len(self._guards)

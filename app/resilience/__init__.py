"""Resilience for every outbound call: one `Guard` per endpoint group.

A guard composes a bulkhead, a circuit breaker, a token-bucket rate limiter and
retries with full-jitter backoff (DESIGN.md, "The integration layer"). Groups
are named `exchange:<venue>`, `marketdata:<provider>`, `smtp`, `discord`, `relay`.

    guard = registry.get("exchange:binance")
    ticker = await guard.call(lambda: exchange.fetch_ticker("BTC/USDT"), idempotent=True, what="ticker")
    order = await guard.call(lambda: exchange.create_order(...), idempotent=False, what="order")
"""

from app.resilience.breaker import BreakerState, CircuitBreaker
from app.resilience.bulkhead import Bulkhead
from app.resilience.errors import (
    BulkheadFullError,
    CallTimeoutError,
    CircuitOpenError,
    FailureKind,
    ResilienceError,
    classify,
    classify_status,
    describe_error,
    retry_after_seconds,
    scrub,
)
from app.resilience.guard import HEALTH_TOPIC, Guard, GuardConfig, GuardHealth, GuardRegistry
from app.resilience.ratelimit import TokenBucket, rate_from_ccxt
from app.resilience.retry import RetryPolicy, backoff_delay

__all__ = [
    "HEALTH_TOPIC",
    "BreakerState",
    "BulkheadFullError",
    "Bulkhead",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitOpenError",
    "FailureKind",
    "Guard",
    "GuardConfig",
    "GuardHealth",
    "GuardRegistry",
    "ResilienceError",
    "RetryPolicy",
    "TokenBucket",
    "backoff_delay",
    "classify",
    "classify_status",
    "describe_error",
    "rate_from_ccxt",
    "retry_after_seconds",
    "scrub",
]

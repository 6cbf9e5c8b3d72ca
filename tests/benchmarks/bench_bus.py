"""Throughput of the event bus: events per second from publish to the last handler.

Run: `python tests/benchmarks/bench_bus.py [--events N] [--repeats R] [--min-rate EPS]`.

Each run starts a bus with three sync subscribers, publishes N events in one go
on the loop thread (a burst, as a busy websocket feed produces), then waits for
`drain()`. The rate is N divided by the time from the first publish to the end
of the drain. Conflation is off for the gated `price.updated` figure so that
every event is really dispatched; the run with conflation on is printed for
information (it mostly measures publish, since 20 events reach the handlers).

Exits with status 1 if a gated median is under --min-rate (default 200,000/s).
Not collected by pytest: the file name does not start with `test_`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.bus import Event, EventBus, KeyFn  # noqa: E402
from app.domain import Side, Ticker, Trade  # noqa: E402

SYMBOLS = [f"C{i:02d}/USDT" for i in range(20)]


def make_payloads(topic: str) -> list[Any]:
    if topic == "price.updated":
        return [
            Ticker(symbol=s, ts=1_700_000_000_000, last=Decimal("100.5") + i, bid=Decimal("100.4"), ask=Decimal("100.6"), venue="binance")
            for i, s in enumerate(SYMBOLS)
        ]
    return [
        Trade(symbol=s, ts=1_700_000_000_000, price=Decimal("100.5") + i, amount=Decimal("0.1"), side=Side.BUY, id=str(i), venue="binance")
        for i, s in enumerate(SYMBOLS)
    ]


async def one_run(topic: str, n: int, conflate: dict[str, KeyFn | None] | None) -> tuple[float, int, int]:
    """Returns (events per second, events dispatched, events the first handler saw)."""
    bus = EventBus(conflate=conflate)
    calls = 0
    latest: dict[str, Any] = {}
    last: list[Event | None] = [None]

    # Three handlers doing what real subscribers do at minimum: count, keep the
    # newest state per symbol (a table model), remember the last event (a chart).
    def count(event: Event) -> None:
        nonlocal calls
        calls += 1

    def table_model(event: Event) -> None:
        latest[event.payload.symbol] = event.payload

    def chart(event: Event) -> None:
        last[0] = event

    bus.subscribe(topic, count)
    bus.subscribe(topic, table_model)
    bus.subscribe(topic, chart)
    await bus.start()

    payloads = make_payloads(topic)
    k = len(payloads)
    publish = bus.publish
    started = time.perf_counter()
    for i in range(n):
        publish(topic, payloads[i % k])
    await bus.drain()
    elapsed = time.perf_counter() - started
    await bus.stop()
    stats = bus.stats
    return n / elapsed, stats.dispatched, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-rate", type=float, default=200_000.0)
    args = parser.parse_args()
    n: int = args.events

    scenarios: list[tuple[str, str, dict[str, KeyFn | None] | None, bool, int]] = [
        # (label, topic, conflate, gated, expected dispatched events)
        ("price.updated, conflation off, 3 subscribers", "price.updated", {"price.updated": None}, True, n),
        ("market.trade (never conflated), 3 subscribers", "market.trade", None, True, n),
        ("price.updated, conflation on (default), 3 subscribers", "price.updated", None, False, len(SYMBOLS)),
    ]
    failed = False
    for label, topic, conflate, gated, expected in scenarios:
        rates: list[float] = []
        for _ in range(args.repeats):
            rate, dispatched, seen = asyncio.run(one_run(topic, n, conflate))
            if dispatched != expected or seen != expected:
                print(f"FAIL {label}: dispatched {dispatched} events, handlers saw {seen}, expected {expected}")
                failed = True
            rates.append(rate)
        median = statistics.median(rates)
        verdict = ("ok" if median >= args.min_rate else "TOO SLOW") if gated else "info"
        if gated and median < args.min_rate:
            failed = True
        print(
            f"{label}: median {median:,.0f} events/s over {args.repeats} runs of {n:,} "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f}) [{verdict}]"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

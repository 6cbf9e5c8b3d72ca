"""`main.py watch SYMBOL`: live tickers as JSON lines, for scripts. No window, no Qt."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TextIO

from app.bus import Event
from app.domain import Ticker
from app.market.feed import TOPIC_PRICE
from app.runtime import Runtime


def ticker_json(t: Ticker) -> str:
    """Prices as strings so no digit is lost to a float."""
    return json.dumps(
        {
            "symbol": t.symbol,
            "last": str(t.last),
            "bid": None if t.bid is None else str(t.bid),
            "ask": None if t.ask is None else str(t.ask),
            "ts": t.ts,
        }
    )


async def watch(runtime: Runtime, symbol: str, count: int | None, out: TextIO = sys.stdout) -> None:
    """Print `count` live tickers of `symbol` (forever when None). Raises VenueError for an unknown symbol."""
    done = asyncio.Event()
    printed = 0

    def on_price(event: Event) -> None:
        nonlocal printed
        t: Ticker = event.payload
        if t.symbol != symbol or done.is_set():
            return
        out.write(ticker_json(t) + "\n")
        out.flush()
        printed += 1
        if count is not None and printed >= count:
            done.set()

    runtime.bus.subscribe(TOPIC_PRICE, on_price)
    try:
        await runtime.start([symbol])
        await done.wait()
    finally:
        await runtime.stop()

"""Every source's price for one symbol, side by side: the sources view's rows.

Exchanges answer for the symbol as they list it; providers are asked for the same
asset in the currency they quote (`provider_symbol`: a USDT pair is asked as USD,
because no stock-data provider quotes a stablecoin), and the row says so. Each row
carries the price's age and its distance from the median of all sources, so a
source that drifted or froze stands out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from app.domain import Ticker
from app.market.aggregator import Aggregator, median
from app.venues import factory
from app.venues.manager import VenueManager

__all__ = ["STABLE_QUOTES", "SourceRow", "gather_sources", "provider_symbol"]

BPS = Decimal(10_000)
STABLE_QUOTES = frozenset({"USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI"})
"""Dollar stablecoins: a provider is asked for the USD pair instead (a close, not an exact, price)."""


def provider_symbol(symbol: str) -> str:
    """How to ask a market-data provider for `symbol`: BTC/USDT -> BTC/USD; others unchanged."""
    base, sep, quote = symbol.partition("/")
    return f"{base}/USD" if sep and quote in STABLE_QUOTES else symbol


@dataclass(frozen=True, slots=True)
class SourceRow:
    source: str  # venue or provider name
    title: str
    kind: str  # "exchange" | "provider"
    ticker: Ticker | None
    age_s: float | None  # how old the price is (from its own timestamp)
    vs_median_bps: Decimal | None = None
    asked_as: str = ""  # the symbol the source was asked for, when it differs
    error: str = ""


async def gather_sources(symbol: str, manager: VenueManager, aggregator: Aggregator | None,
                         *, wall: Callable[[], float] = time.time) -> list[SourceRow]:
    """Exchanges (through the manager) and providers (through the aggregator) at once."""
    alt = provider_symbol(symbol)

    async def exchanges() -> list[SourceRow]:
        if not manager.venues:
            return []
        quotes = await manager.compare(symbol)
        return [SourceRow(q.venue, factory.TITLES.get(q.venue, q.venue), "exchange", q.ticker, None, error=q.error)
                for q in quotes if q.ticker is not None or not q.error.startswith("does not list")]

    async def providers() -> list[SourceRow]:
        if aggregator is None:
            return []
        answers = await aggregator.from_all_sources(alt, include_failures=True)
        return [SourceRow(a.provider, a.title, "provider", a.value, None, asked_as=alt if alt != symbol else "",
                          error=a.error or "") for a in answers]

    venue_rows, provider_rows = await asyncio.gather(exchanges(), providers())
    rows = venue_rows + provider_rows
    now_ms = wall() * 1000
    mid = median([r.ticker.last for r in rows if r.ticker is not None])
    out = []
    for r in rows:
        if r.ticker is None:
            out.append(r)
            continue
        vs = ((r.ticker.last - mid) / mid * BPS).quantize(Decimal("0.01")) if mid else None
        age = max(0.0, (now_ms - r.ticker.ts) / 1000)
        out.append(SourceRow(r.source, r.title, r.kind, r.ticker, age, vs, r.asked_as, r.error))
    return out

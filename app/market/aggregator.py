"""One place to ask for a price, candles or symbol details from the market-data providers.

The aggregator tries the configured providers in priority order (lower first) and
returns the first good answer, caching it for its kind's TTL; `from_all_sources`
asks every provider at once for the sources view.

Decisions:
* A fresh cached answer is served before any request: from the best-priority
  provider that has one. Only when none is fresh are providers asked.
* A provider that cannot serve a request (no key, an asset class or timeframe it
  does not offer) is skipped without a request; its reason is kept for the
  sentence raised when no provider could answer (`NoSource`).
* Concurrent requests for the same (kind, symbol, provider) share one call: the
  watchlist poller and the sources view never double-spend a provider's quota.
* Yahoo's hourly bars open at :30 for markets that open at half past (NYSE), which
  would not line up with the rest of the terminal's hour buckets: 1h candles are
  built from its 15m bars instead (`BUILD_FROM`).
* Nothing here raises for a provider's failure except `NoSource`, whose message
  lists every provider's own sentence; bugs (anything not a ProviderError or a
  guard error) are logged with their traceback and count as that provider failing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.domain import TIMEFRAMES, Candle
from app.market.cache import METADATA, TICKER, Cached, MarketDataCache, ohlcv_kind
from app.market.providers.base import Capability, NotAvailable, ProviderBase, ProviderError
from app.resilience.errors import ResilienceError

__all__ = ["BUILD_FROM", "Aggregator", "NoSource", "SourceAnswer", "build_candles"]

log = logging.getLogger(__name__)

BUILD_FROM: dict[tuple[str, str], str] = {("yahoo", "1h"): "15m"}
"""(provider, timeframe) -> the finer timeframe it is built from."""


class NoSource(ProviderError):
    """No provider could answer; the message says why for each of them."""


@dataclass(frozen=True, slots=True)
class SourceAnswer:
    """One provider's answer to `from_all_sources`: a value or the reason there is none."""

    provider: str
    title: str
    priority: int
    value: Any | None
    fetched_at: float | None
    from_cache: bool
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def build_candles(candles: Sequence[Candle], timeframe: str) -> list[Candle]:
    """Finer candles -> `timeframe` candles aligned on its buckets (exact Decimal sums)."""
    step = TIMEFRAMES[timeframe] * 1000
    out: list[Candle] = []
    for c in sorted(candles, key=lambda c: c.ts):
        bucket = c.ts - c.ts % step
        if out and out[-1].ts == bucket:
            last = out[-1]
            out[-1] = Candle(bucket, last.open, max(last.high, c.high), min(last.low, c.low), c.close,
                             last.volume + c.volume)
        else:
            out.append(Candle(bucket, c.open, c.high, c.low, c.close, c.volume))
    return out


class Aggregator:
    def __init__(self, providers: Sequence[ProviderBase], cache: MarketDataCache | None = None,
                 *, wall: Callable[[], float] = time.time) -> None:
        self.providers = sorted(providers, key=lambda p: (p.priority, p.name))
        self.cache = cache if cache is not None else MarketDataCache(wall=wall)
        self._wall = wall
        self._inflight: dict[tuple[str, str, str], asyncio.Future[Cached]] = {}

    # ---- which providers

    def _timeframe_for(self, provider: ProviderBase, timeframe: str | None) -> str | None:
        if timeframe is None:
            return None
        return BUILD_FROM.get((provider.name, timeframe), timeframe)

    def candidates(self, symbol: str, capability: Capability, timeframe: str | None = None
                   ) -> tuple[list[ProviderBase], list[str]]:
        """The providers that can serve this, in order, and the reasons the others cannot."""
        usable: list[ProviderBase] = []
        reasons: list[str] = []
        for p in self.providers:
            tf = self._timeframe_for(p, timeframe)
            if not p.supports(symbol, capability, tf):
                continue  # not offered: said only if nobody offers it (see _no_source)
            if not p.configured:
                reasons.append(f"{p.title} needs an API key, and none is set.")
                continue
            usable.append(p)
        return usable, reasons

    def serves(self, symbol: str, capability: Capability = Capability.TICKER) -> bool:
        return bool(self.candidates(symbol, capability)[0])

    # ---- one answer, best provider first

    async def ticker(self, symbol: str) -> Cached:
        return await self._first(TICKER, symbol, Capability.TICKER, None,
                                 lambda p: p.fetch_ticker(symbol))

    async def metadata(self, symbol: str) -> Cached:
        return await self._first(METADATA, symbol, Capability.METADATA, None,
                                 lambda p: p.fetch_metadata(symbol))

    async def ohlcv(self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None) -> Cached:
        """Candles from the first provider that offers them. Cached whole (the chart asks for the
        default window); a call with `since` bypasses the cache for the request but refreshes it."""

        def fetch(p: ProviderBase) -> Awaitable[list[Candle]]:
            return self._fetch_candles(p, symbol, timeframe, since, limit)

        return await self._first(ohlcv_kind(timeframe), symbol, Capability.OHLCV, timeframe, fetch,
                                 use_cache=since is None)

    async def _fetch_candles(self, p: ProviderBase, symbol: str, timeframe: str, since: int | None,
                             limit: int | None) -> list[Candle]:
        source_tf = self._timeframe_for(p, timeframe)
        if source_tf == timeframe:
            return await p.fetch_ohlcv(symbol, timeframe, since, limit)
        ratio = TIMEFRAMES[timeframe] // TIMEFRAMES[source_tf]
        finer = await p.fetch_ohlcv(symbol, source_tf, since, None if limit is None else (limit + 1) * ratio)
        built = build_candles(finer, timeframe)
        return built[-limit:] if limit else built

    async def _first(self, kind: str, symbol: str, capability: Capability, timeframe: str | None,
                     fetch: Callable[[ProviderBase], Awaitable[Any]], *, use_cache: bool = True) -> Cached:
        usable, reasons = self.candidates(symbol, capability, timeframe)
        if use_cache:
            for p in usable:  # the best-priority fresh answer, without a request
                hit = self.cache.fresh(kind, symbol, p.name)
                if hit is not None:
                    return hit
        for p in usable:
            try:
                return await self._shared(kind, symbol, p, fetch)
            except NotAvailable as exc:
                reasons.append(str(exc))
            except (ProviderError, ResilienceError) as exc:
                reasons.append(str(exc))
                log.info("market data: %s failed for %s %s, trying the next provider", p.name, kind, symbol)
            except Exception:  # a bug in one provider must not stop the others
                log.exception("market data: %s raised unexpectedly for %s %s", p.name, kind, symbol)
                reasons.append(f"{p.title} failed unexpectedly (details are in the log).")
        raise self._no_source(symbol, capability, timeframe, reasons, asked=bool(usable))

    def _no_source(self, symbol: str, capability: Capability, timeframe: str | None, reasons: list[str],
                   *, asked: bool) -> NoSource:
        what = {Capability.TICKER: "a price", Capability.OHLCV: f"{timeframe} candles",
                Capability.METADATA: "details"}[capability]
        if not asked and not reasons:
            return NoSource(f"No market-data provider offers {what} for {symbol}.")
        detail = " ".join(dict.fromkeys(reasons))
        return NoSource(f"No market-data provider could give {what} for {symbol}. {detail}".strip())

    async def _shared(self, kind: str, symbol: str, p: ProviderBase,
                      fetch: Callable[[ProviderBase], Awaitable[Any]]) -> Cached:
        key = (kind, symbol, p.name)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_and_cache(kind, symbol, p, fetch))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _f: self._inflight.pop(key, None))
            # A caller that is cancelled must not cancel the others waiting on the same call.
        return await asyncio.shield(pending)

    async def _fetch_and_cache(self, kind: str, symbol: str, p: ProviderBase,
                               fetch: Callable[[ProviderBase], Awaitable[Any]]) -> Cached:
        value = await fetch(p)
        return await self.cache.put(kind, symbol, p.name, value)

    # ---- every provider at once

    async def from_all_sources(self, symbol: str, *, include_failures: bool = False) -> list[SourceAnswer]:
        """Every usable provider's price for `symbol`, asked concurrently (each from its own fresh cache
        entry when it has one). Returns whatever succeeded, best priority first; with
        `include_failures`, also one answer per provider that failed, carrying its sentence."""
        usable, _ = self.candidates(symbol, Capability.TICKER)

        async def one(p: ProviderBase) -> SourceAnswer:
            hit = self.cache.fresh(TICKER, symbol, p.name)
            if hit is not None:
                return SourceAnswer(p.name, p.title, p.priority, hit.value, hit.fetched_at, True)
            try:
                got = await self._shared(TICKER, symbol, p, lambda q: q.fetch_ticker(symbol))
                return SourceAnswer(p.name, p.title, p.priority, got.value, got.fetched_at, False)
            except (ProviderError, ResilienceError) as exc:
                return SourceAnswer(p.name, p.title, p.priority, None, None, False, str(exc))
            except Exception:
                log.exception("market data: %s raised unexpectedly for %s", p.name, symbol)
                return SourceAnswer(p.name, p.title, p.priority, None, None, False,
                                    f"{p.title} failed unexpectedly (details are in the log).")

        answers = await asyncio.gather(*(one(p) for p in usable))
        return [a for a in answers if a.ok or include_failures]

    async def close(self) -> None:
        for p in self.providers:
            await p.close()


def median(values: Sequence[Decimal]) -> Decimal | None:
    """The median of exact prices (the mean of the middle two for an even count)."""
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

"""Market-data providers' answers, kept for a time-to-live in memory and in SQLite.

Why SQLite as well as memory: providers' free tiers allow a few calls a minute
(Alpha Vantage) or a few thousand credits a month (CoinMarketCap). A terminal that
restarts and asks every provider for every watchlist symbol again would burn that
in an afternoon, so what was fetched survives a restart for its TTL.

Decisions:
* A value is cached per (kind, key, provider): the sources view wants every
  provider's price, the aggregator wants the best fresh one.
* `fresh()` honours the TTL; `latest()` ignores it, for a caller that would rather
  show an old price, marked with its age, than nothing (a provider outage).
* Writes to SQLite go through the store's worker thread and never hold the caller:
  a failed write is logged and the memory copy still serves.
* Money is stored as Decimal strings, never floats.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.domain import Candle, Ticker
from app.market.providers.base import AssetClass, SymbolInfo
from app.store import Store

__all__ = ["Cached", "MarketDataCache", "decode_value", "encode_value"]

log = logging.getLogger(__name__)

TICKER = "ticker"
METADATA = "metadata"
DEFAULT_TTL: dict[str, float] = {TICKER: 60.0, METADATA: 86_400.0, "ohlcv": 300.0}


def ohlcv_kind(timeframe: str) -> str:
    return f"ohlcv:{timeframe}"


@dataclass(frozen=True, slots=True)
class Cached:
    """One provider's answer and when it was fetched (wall-clock seconds)."""

    provider: str
    value: Any  # Ticker | SymbolInfo | list[Candle]
    fetched_at: float

    def age(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)


# --------------------------------------------------------------------------- (de)serialisation


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def encode_value(kind: str, value: Any) -> str:
    if kind == TICKER:
        t: Ticker = value
        return json.dumps({
            "symbol": t.symbol, "ts": t.ts, "venue": t.venue,
            **{f: _dec(getattr(t, f)) for f in ("last", "bid", "ask", "open_24h", "high_24h", "low_24h",
                                                  "base_volume_24h", "quote_volume_24h")},
        })
    if kind == METADATA:
        m: SymbolInfo = value
        return json.dumps({
            "symbol": m.symbol, "name": m.name, "asset_class": m.asset_class.value, "currency": m.currency,
            "exchange": m.exchange, "provider": m.provider, "provider_symbol": m.provider_symbol,
            "market_cap": _dec(m.market_cap), "rank": m.rank,
        })
    if kind.startswith("ohlcv:"):
        return json.dumps([[c.ts, str(c.open), str(c.high), str(c.low), str(c.close), str(c.volume)] for c in value])
    raise ValueError(f"unknown cache kind {kind!r}")


def decode_value(kind: str, text: str) -> Any:
    data = json.loads(text)
    if kind == TICKER:
        return Ticker(
            symbol=data["symbol"], ts=int(data["ts"]), last=Decimal(data["last"]), venue=data.get("venue", ""),
            **{f: _undec(data.get(f)) for f in ("bid", "ask", "open_24h", "high_24h", "low_24h",
                                                 "base_volume_24h", "quote_volume_24h")},
        )
    if kind == METADATA:
        return SymbolInfo(
            symbol=data["symbol"], name=data["name"], asset_class=AssetClass(data["asset_class"]),
            currency=data.get("currency", ""), exchange=data.get("exchange", ""), provider=data.get("provider", ""),
            provider_symbol=data.get("provider_symbol", ""), market_cap=_undec(data.get("market_cap")),
            rank=data.get("rank"),
        )
    if kind.startswith("ohlcv:"):
        return [Candle(int(r[0]), *(Decimal(x) for x in r[1:])) for r in data]
    raise ValueError(f"unknown cache kind {kind!r}")


# --------------------------------------------------------------------------- SQLite


def _load_rows(conn: sqlite3.Connection, oldest_ms: int) -> list[tuple[str, str, str, str, int]]:
    return conn.execute(
        "SELECT kind, key, provider, value, fetched_at FROM marketdata_cache WHERE fetched_at >= ?", (oldest_ms,)
    ).fetchall()


def _put_row(conn: sqlite3.Connection, kind: str, key: str, provider: str, value: str, fetched_ms: int) -> None:
    conn.execute(
        "INSERT INTO marketdata_cache (kind, key, provider, value, fetched_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (kind, key, provider) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at",
        (kind, key, provider, value, fetched_ms),
    )


def _prune(conn: sqlite3.Connection, oldest_ms: int) -> int:
    return conn.execute("DELETE FROM marketdata_cache WHERE fetched_at < ?", (oldest_ms,)).rowcount


# --------------------------------------------------------------------------- the cache


class MarketDataCache:
    """Per-kind TTL cache; `store=None` keeps it in memory only (tests, `watch`)."""

    KEEP_FOR = 7 * 86_400.0  # rows older than this are deleted at load: a week-old price serves no one

    def __init__(self, store: Store | None = None, ttl: Mapping[str, float] | None = None,
                 *, wall: Callable[[], float] = time.time) -> None:
        self._store = store
        self._ttl = {**DEFAULT_TTL, **(ttl or {})}
        self._wall = wall
        self._data: dict[tuple[str, str], dict[str, Cached]] = {}

    def ttl(self, kind: str) -> float:
        return self._ttl.get(kind, self._ttl["ohlcv"] if kind.startswith("ohlcv:") else self._ttl[TICKER])

    async def load(self) -> int:
        """Read what earlier runs fetched (skipping undecodable rows); returns how many entries."""
        if self._store is None:
            return 0
        now = self._wall()
        oldest = int((now - self.KEEP_FOR) * 1000)
        await self._store.run(_prune, oldest)
        count = 0
        for kind, key, provider, text, fetched_ms in await self._store.run(_load_rows, oldest):
            try:
                value = decode_value(kind, text)
            except (ValueError, KeyError, TypeError, ArithmeticError):
                log.warning("market data cache: an unreadable %s entry for %s was ignored", kind, key)
                continue
            self._data.setdefault((kind, key), {})[provider] = Cached(provider, value, fetched_ms / 1000)
            count += 1
        return count

    def fresh(self, kind: str, key: str, provider: str | None = None) -> Cached | None:
        """The newest entry within its TTL (of `provider`, or of any provider)."""
        now, ttl = self._wall(), self.ttl(kind)
        entries = self._entries(kind, key, provider)
        good = [e for e in entries if now - e.fetched_at <= ttl]
        return max(good, key=lambda e: e.fetched_at, default=None)

    def latest(self, kind: str, key: str, provider: str | None = None) -> Cached | None:
        """The newest entry whatever its age."""
        return max(self._entries(kind, key, provider), key=lambda e: e.fetched_at, default=None)

    def all(self, kind: str, key: str) -> list[Cached]:
        return list(self._data.get((kind, key), {}).values())

    def _entries(self, kind: str, key: str, provider: str | None) -> list[Cached]:
        per = self._data.get((kind, key), {})
        if provider is not None:
            return [per[provider]] if provider in per else []
        return list(per.values())

    async def put(self, kind: str, key: str, provider: str, value: Any) -> Cached:
        entry = Cached(provider, value, self._wall())
        self._data.setdefault((kind, key), {})[provider] = entry
        if self._store is not None and not self._store.closed:
            try:
                await self._store.run(_put_row, kind, key, provider, encode_value(kind, value),
                                      int(entry.fetched_at * 1000))
            except (sqlite3.Error, RuntimeError) as exc:  # the memory copy still serves
                log.warning("market data cache: could not save %s for %s: %s", kind, key, type(exc).__name__)
        return entry

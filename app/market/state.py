"""The latest market picture, kept from bus events for readers that poll.

The window repaints on a timer, never per tick: it reads this state at its own
rate. Each symbol carries a sequence number so a reader can tell which rows
changed since its last look without comparing prices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.bus import Event
from typing import Any

from app.domain import Ticker
from app.market.feed import ConnectionState, ConnectionStatus


@dataclass(frozen=True, slots=True)
class AltPrice:
    """A market-data provider's price shown while the venue's own is not live."""

    ticker: Ticker  # as the provider gave it (its symbol may be BTC/USD for our BTC/USDT)
    provider: str
    title: str
    fetched_at: float  # wall clock


@dataclass
class MarketState:
    tickers: dict[str, Ticker] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    last_tick_ts: int = 0  # the market time (ms) of the newest ticker
    last_tick_wall: float = 0.0  # when it arrived, wall clock
    connection: ConnectionStatus = field(default_factory=lambda: ConnectionStatus("", ConnectionState.STOPPED))
    version: int = 0
    arrived: dict[str, float] = field(default_factory=dict)  # wall clock of each symbol's last ticker
    alt: dict[str, AltPrice] = field(default_factory=dict)  # provider prices for venue symbols
    meta: dict[str, Any] = field(default_factory=dict)  # symbol -> providers' SymbolInfo (market cap, rank)
    provider_symbols: set[str] = field(default_factory=set)  # watchlist rows priced only by providers
    venue_down: bool = False  # the venue's breaker is open: its REST answers are not coming either
    unpriced: dict[str, str] = field(default_factory=dict)  # provider rows without a price: why, as a sentence

    def on_price(self, event: Event) -> None:
        t: Ticker = event.payload
        self.tickers[t.symbol] = t
        self.seq[t.symbol] = self.seq.get(t.symbol, 0) + 1
        now = time.time()
        self.arrived[t.symbol] = now
        if t.symbol not in self.provider_symbols:  # a stock's close must not look like a live feed
            if t.ts > self.last_tick_ts:
                self.last_tick_ts = t.ts
            self.last_tick_wall = now
        self.version += 1

    @property
    def venue_live(self) -> bool:
        """Whether the venue's own prices can be trusted as current."""
        return not self.venue_down and self.connection.state in (ConnectionState.LIVE, ConnectionState.CONNECTING,
                                                                  ConnectionState.STOPPED)

    def set_alt(self, symbol: str, alt: AltPrice) -> None:
        old = self.alt.get(symbol)
        if old is not None and old.fetched_at == alt.fetched_at and old.provider == alt.provider:
            return
        self.alt[symbol] = alt
        self.seq[symbol] = self.seq.get(symbol, 0) + 1
        self.version += 1

    def set_meta(self, symbol: str, info: Any) -> None:
        if self.meta.get(symbol) != info:
            self.meta[symbol] = info
            self.seq[symbol] = self.seq.get(symbol, 0) + 1
            self.version += 1

    def shown(self, symbol: str) -> tuple[Ticker | None, AltPrice | None]:
        """The ticker to show for `symbol` and, when it is a provider's stand-in, where it came from."""
        own = self.tickers.get(symbol)
        alt = self.alt.get(symbol)
        if alt is not None and (own is None or (not self.venue_live and alt.fetched_at > self.arrived.get(symbol, 0))):
            return alt.ticker, alt
        return own, None

    def on_connection(self, event: Event) -> None:
        self.connection = event.payload
        self.version += 1

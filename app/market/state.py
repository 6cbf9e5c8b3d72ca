"""The latest market picture, kept from bus events for readers that poll.

The window repaints on a timer, never per tick: it reads this state at its own
rate. Each symbol carries a sequence number so a reader can tell which rows
changed since its last look without comparing prices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.bus import Event
from app.domain import Ticker
from app.market.feed import ConnectionState, ConnectionStatus


@dataclass
class MarketState:
    tickers: dict[str, Ticker] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    last_tick_ts: int = 0  # the market time (ms) of the newest ticker
    last_tick_wall: float = 0.0  # when it arrived, wall clock
    connection: ConnectionStatus = field(default_factory=lambda: ConnectionStatus("", ConnectionState.STOPPED))
    version: int = 0

    def on_price(self, event: Event) -> None:
        t: Ticker = event.payload
        self.tickers[t.symbol] = t
        self.seq[t.symbol] = self.seq.get(t.symbol, 0) + 1
        if t.ts > self.last_tick_ts:
            self.last_tick_ts = t.ts
        self.last_tick_wall = time.time()
        self.version += 1

    def on_connection(self, event: Event) -> None:
        self.connection = event.payload
        self.version += 1

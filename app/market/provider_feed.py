"""Prices from market-data providers for the watchlist, on a timer.

Three jobs, one loop:
* Symbols no connected exchange lists (AAPL, EUR/USD, ^GSPC) are priced by the
  providers: each new answer is published on `price.updated` with the provider as its
  venue, so alerts and the watchlist treat it like any other price.
* While the venue's stream is stale or reconnecting, or its breaker is open, its
  symbols get a stand-in price from the providers (`MarketState.alt`), which the
  watchlist shows marked with its source and age. It is never published as the
  venue's price: orders, paper fills and risk checks must not act on a BTC/USD
  quote as if it were BTC/USDT on the exchange.
* Crypto rows get market cap and rank (CoinMarketCap, when its key is set).

The aggregator's cache decides how often a provider is really asked (its ticker TTL);
this loop only decides how often to look. A provider failing is logged once per
symbol and reason, never raised: the row keeps its last price and shows its age.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from app.bus import EventBus
from app.market.aggregator import Aggregator, NoSource
from app.market.providers.base import Capability
from app.market.sources import provider_symbol
from app.market.state import AltPrice, MarketState

__all__ = ["ProviderFeed"]

log = logging.getLogger(__name__)
TOPIC_PRICE = "price.updated"


class ProviderFeed:
    def __init__(self, bus: EventBus, state: MarketState, aggregator: Aggregator, *,
                 provider_symbols: Sequence[str], venue_symbols: Sequence[str], interval: float = 10.0,
                 venue_down: Callable[[], bool] = lambda: False, wall: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.state = state
        self.aggregator = aggregator
        self.provider_symbols = list(provider_symbols)
        self.venue_symbols = list(venue_symbols)
        self.interval = interval
        self.venue_down = venue_down
        self._wall = wall
        self._published: dict[str, float] = {}  # symbol -> fetched_at of the answer last published
        self._said: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.rounds = 0
        state.provider_symbols.update(self.provider_symbols)

    async def start(self) -> None:
        await self.poll_once()
        if self._stopped:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="provider-feed")

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except Exception:  # the loop must outlive any one bad round
                log.exception("provider prices: a round failed")

    async def poll_once(self) -> None:
        down = self.venue_down()
        self.state.venue_down = down
        jobs = [self._price(s) for s in self.provider_symbols]
        if down or not self.state.venue_live:
            jobs += [self._stand_in(s) for s in self.venue_symbols]
        # Market cap and rank for exchange rows come only from CoinMarketCap; asking a keyless provider
        # for every crypto row's name once a day would spend its quota for nothing shown.
        # Stock rows' names are not shown, so only CoinMarketCap (market cap, rank) is asked, for crypto rows.
        cmc = any(p.name == "coinmarketcap" and p.configured for p in self.aggregator.providers)
        if cmc:
            jobs += [self._metadata(s) for s in self.venue_symbols + self.provider_symbols if "/" in s]
        await asyncio.gather(*jobs)
        self.rounds += 1

    async def _price(self, symbol: str) -> None:
        try:
            got = await self.aggregator.ticker(symbol)
        except NoSource as exc:
            self._say_once(symbol, str(exc))
            self.state.unpriced[symbol] = str(exc)
            return
        self.state.unpriced.pop(symbol, None)
        if self._published.get(symbol) == got.fetched_at:
            return  # the same cached answer: publishing it again would flash the row for nothing
        self._published[symbol] = got.fetched_at
        ticker = got.value
        if ticker.symbol != symbol or ticker.venue != got.provider:
            from dataclasses import replace

            ticker = replace(ticker, symbol=symbol, venue=got.provider)
        self.bus.publish(TOPIC_PRICE, ticker)

    async def _stand_in(self, symbol: str) -> None:
        asked = provider_symbol(symbol)
        if not self.aggregator.serves(asked):
            return
        try:
            got = await self.aggregator.ticker(asked)
        except NoSource as exc:
            self._say_once(symbol, str(exc))
            return
        title = next((p.title for p in self.aggregator.providers if p.name == got.provider), got.provider)
        self.state.set_alt(symbol, AltPrice(got.value, got.provider, title, got.fetched_at))

    async def _metadata(self, symbol: str) -> None:
        asked = provider_symbol(symbol)
        if not self.aggregator.serves(asked, Capability.METADATA):
            return
        try:
            got = await self.aggregator.metadata(asked)
        except NoSource:
            return  # market cap and rank are extras: their absence is not worth a message
        self.state.set_meta(symbol, got.value)

    def _say_once(self, symbol: str, reason: str) -> None:
        if (symbol, reason) not in self._said:
            self._said.add((symbol, reason))
            log.warning("provider prices for %s: %s", symbol, reason)

"""Paper trading on any venue: its live prices, book, fees and rules; fills in a local account.

`PaperVenue` wraps a real venue. Market data passes straight through; balances
and orders live in a separate paper account matched by the same engine as the
simulated market (`app.venues.sim_orders`): market orders walk the venue's real
book, resting limits fill when the venue's trades print through them. Nothing is
ever sent to the exchange. Everything it shows is marked as paper (`paper` flag
and the title).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from decimal import Decimal

from app.domain import Balance, BookLevel, Candle, Market, Order, OrderBook, OrderRequest, Ticker, Trade
from app.venues.base import OcoRequest, OrderList, StreamEvent, UnknownSymbol, Venue
from app.venues.sim_orders import SimAccount, SimMatcher

DEFAULT_PAPER_BALANCES: Mapping[str, Decimal] = {"USDT": Decimal("10000")}
BOOK_MAX_AGE_MS = 2_000  # a fresher book is fetched before a market order walks it


class PaperVenue:
    """A venue whose orders never leave the process."""

    paper = True
    supports_oco = True  # the paper account's own matching engine has OCO lists, whatever the venue offers

    def __init__(self, venue: Venue, balances: Mapping[str, Decimal] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.inner = venue
        # Its own name, so the order journal keeps paper orders apart from the live venue's: a paper run
        # must never reconcile (or cancel) real orders, nor a live run paper ones.
        self.name = f"{venue.name}-paper"
        self.title = f"{getattr(venue, 'title', venue.name)} (paper)"
        self._clock = clock
        self._starting = dict(balances or DEFAULT_PAPER_BALANCES)
        self._account = SimAccount(dict(self._starting))
        self._markets: dict[str, Market] = {}
        self._matcher = SimMatcher(self._markets, self._account)
        self._books: dict[str, OrderBook] = {}
        self._last: dict[str, Decimal] = {}
        self._order_listeners: list[asyncio.Queue[Order]] = []

    @property
    def config(self):  # noqa: ANN201 - the wrapped venue's settings (keys, URLs), for the manager's checks
        return getattr(self.inner, "config", None)

    def reset(self, balances: Mapping[str, Decimal] | None = None) -> None:
        """Start the paper account again: new balances, no orders."""
        self._starting = dict(balances or self._starting)
        self._account = SimAccount(dict(self._starting))
        self._matcher = SimMatcher(self._markets, self._account)

    # -- market data: the real venue's -------------------------------------------------------

    async def load_markets(self) -> dict[str, Market]:
        markets = await self.inner.load_markets()
        self._markets.clear()
        self._markets.update(markets)
        return markets

    async def fetch_ticker(self, symbol: str) -> Ticker:
        ticker = await self.inner.fetch_ticker(symbol)
        self._last[symbol] = ticker.last
        return ticker

    async def fetch_tickers(self, symbols: Sequence[str]) -> dict[str, Ticker]:
        return await self.inner.fetch_tickers(symbols)

    async def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None) -> list[Candle]:
        return await self.inner.fetch_ohlcv(symbol, timeframe, since, limit)

    async def fetch_ohlcv_arrays(self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None):  # noqa: ANN201
        fetch = getattr(self.inner, "fetch_ohlcv_arrays", None)
        if fetch is None:
            from app.market.candles import CandleArrays

            return CandleArrays.from_candles(await self.inner.fetch_ohlcv(symbol, timeframe, since, limit))
        return await fetch(symbol, timeframe, since, limit)

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook:
        book = await self.inner.fetch_order_book(symbol, limit)
        self._books[symbol] = book
        return book

    # -- the paper account --------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _book(self, symbol: str) -> OrderBook:
        book = self._books.get(symbol)
        if book is None or self._now_ms() - book.ts > BOOK_MAX_AGE_MS:
            book = await self.fetch_order_book(symbol)
        return book

    async def fetch_balance(self) -> dict[str, Balance]:
        return self._account.balances()

    async def create_order(self, request: OrderRequest) -> Order:
        if not self._markets:
            await self.load_markets()
        if request.symbol not in self._markets:
            raise UnknownSymbol(f"{self.title} does not list {request.symbol}.")
        book = await self._book(request.symbol)
        last = self._last.get(request.symbol)
        if last is None:
            last = (await self.fetch_ticker(request.symbol)).last
        return self._matcher.submit(request, book, last, self._now_ms())

    async def cancel_order(self, order_id: str, symbol: str) -> Order:
        return self._matcher.cancel(order_id)

    async def create_oco(self, request: OcoRequest) -> OrderList:
        if not self._markets:
            await self.load_markets()
        if request.symbol not in self._markets:
            raise UnknownSymbol(f"{self.title} does not list {request.symbol}.")
        book = await self._book(request.symbol)
        last = self._last.get(request.symbol)
        if last is None:
            last = (await self.fetch_ticker(request.symbol)).last
        return self._matcher.submit_oco(request, book, last, self._now_ms())

    async def cancel_order_list(self, list_client_id: str, symbol: str) -> OrderList:
        return self._matcher.cancel_list(list_client_id)

    async def fetch_order(self, order_id: str, symbol: str) -> Order:
        return self._matcher.get(order_id)

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> Order:
        return self._matcher.get_by_client_id(client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return self._matcher.open_orders(symbol)

    # -- live: the venue's stream, with paper fills on its trades --------------------------------

    def _touch_book(self, trade: Trade) -> OrderBook:
        """The last real book, re-centred on this trade: resting paper orders are matched against it."""
        book = self._books.get(trade.symbol)
        if book is None or not book.bids or not book.asks:
            size = Decimal(10) ** 9
            return OrderBook(trade.symbol, trade.ts, (BookLevel(trade.price, size),), (BookLevel(trade.price, size),))
        shift = trade.price - (book.bids[0].price + book.asks[0].price) / 2
        return OrderBook(trade.symbol, trade.ts,
                         tuple(BookLevel(b.price + shift, b.amount) for b in book.bids),
                         tuple(BookLevel(a.price + shift, a.amount) for a in book.asks))

    async def watch(self, symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:  # type: ignore[override]
        async for event in self.inner.watch(symbols):
            if isinstance(event, Trade):
                self._last[event.symbol] = event.price
                if self._matcher.open_orders(event.symbol):
                    for order in self._matcher.on_print(event.symbol, event.price, self._touch_book(event), event.ts):
                        for queue in self._order_listeners:
                            queue.put_nowait(order)
            elif isinstance(event, Ticker):
                self._last[event.symbol] = event.last
            yield event

    def order_queue(self) -> asyncio.Queue[Order]:
        """A queue that receives every paper order update from now on (registered at once, unlike
        an async generator, which registers only when first iterated)."""
        queue: asyncio.Queue[Order] = asyncio.Queue()
        self._order_listeners.append(queue)
        return queue

    async def watch_orders(self) -> AsyncIterator[Order]:
        queue = self.order_queue()
        try:
            while True:
                yield await queue.get()
        finally:
            self._order_listeners.remove(queue)

    @property
    def stale_after(self) -> float:
        return float(getattr(self.inner, "stale_after", 10.0))

    async def close(self) -> None:
        await self.inner.close()

"""The `Venue` protocol every market source implements: the simulated market,
the ccxt exchanges and MetaTrader 5 alike.

The rest of the application sees only these types: unified `BASE/QUOTE`
symbols, `Decimal` money, and the error classes below, whose messages are
sentences a user can act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from app.domain import TIMEFRAMES as TIMEFRAMES  # re-exported: callers think of timeframes as a venue matter
from app.domain import Balance, Candle, CandleUpdate, Market, Order, OrderBook, OrderRequest, Ticker, Trade


StreamEvent = Ticker | Trade | CandleUpdate
"""What a venue's live market stream yields."""


class VenueError(Exception):
    """A venue refused or failed a request; `str(err)` is meant for the user."""


class UnknownSymbol(VenueError):
    pass


class OrderRejected(VenueError):
    """The venue (or its rules) refused the order; the order did not happen."""


class InsufficientFunds(OrderRejected):
    pass


class OrderNotFound(VenueError):
    pass


class VenueUnavailable(VenueError):
    """The venue could not be reached or answered with a server error: try later."""


class VenueAuthError(VenueError):
    """The venue refused the API key (wrong, expired, or without the needed permission)."""


class OrderOutcomeUnknown(VenueUnavailable):
    """An order was sent but no answer came back: it may or may not exist.

    Never resend it: reconcile by `client_order_id` first (DESIGN.md, orders)."""

    def __init__(self, message: str, client_order_id: str) -> None:
        super().__init__(message)
        self.client_order_id = client_order_id


@runtime_checkable
class Venue(Protocol):
    """One market source. Every method may raise `VenueError` subclasses."""

    name: str

    async def load_markets(self) -> dict[str, Market]: ...

    async def fetch_ticker(self, symbol: str) -> Ticker: ...

    async def fetch_tickers(self, symbols: Sequence[str]) -> dict[str, Ticker]: ...

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> list[Candle]: ...

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook: ...

    async def fetch_balance(self) -> dict[str, Balance]: ...

    async def create_order(self, request: OrderRequest) -> Order: ...

    async def cancel_order(self, order_id: str, symbol: str) -> Order: ...

    async def fetch_order(self, order_id: str, symbol: str) -> Order: ...

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> Order: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...

    def watch(self, symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:
        """Live tickers and trades for `symbols`; ends only when the venue is closed."""
        ...

    async def close(self) -> None: ...

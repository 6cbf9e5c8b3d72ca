"""The `Venue` protocol every market source implements: the simulated market,
the ccxt exchanges and MetaTrader 5 alike.

The rest of the application sees only these types: unified `BASE/QUOTE`
symbols, `Decimal` money, and the error classes below, whose messages are
sentences a user can act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from app.domain import TIMEFRAMES as TIMEFRAMES  # re-exported: callers think of timeframes as a venue matter
from app.domain import (
    Balance,
    Candle,
    CandleUpdate,
    Market,
    Order,
    OrderBook,
    OrderRequest,
    OrderType,
    Side,
    Ticker,
    TimeInForce,
    Trade,
)


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


@dataclass(frozen=True, slots=True)
class OcoRequest:
    """A one-cancels-the-other pair: a limit leg and a stop-limit leg on the same side and amount.

    When either leg fills (even partly) or the stop triggers, the venue cancels the other. For a
    sell, the limit leg sits above the last price and the stop below it (take profit / stop loss);
    for a buy the other way round. The limit leg is a maker-only order (Binance's LIMIT_MAKER): it
    is refused rather than trading at once. Every id is the caller's, so a lost answer is
    reconciled leg by leg by client order id, like any other order.
    """

    symbol: str
    side: Side
    amount: Decimal
    price: Decimal  # the limit leg's price
    stop_price: Decimal  # the stop-limit leg's trigger
    stop_limit_price: Decimal  # the stop-limit leg's limit price once triggered
    list_client_id: str
    limit_client_id: str
    stop_client_id: str

    def limit_leg(self) -> OrderRequest:
        return OrderRequest(self.symbol, self.side, OrderType.LIMIT, self.amount, self.limit_client_id,
                            price=self.price, time_in_force=TimeInForce.GTC, post_only=True)

    def stop_leg(self) -> OrderRequest:
        return OrderRequest(self.symbol, self.side, OrderType.STOP_LIMIT, self.amount, self.stop_client_id,
                            price=self.stop_limit_price, stop_price=self.stop_price, time_in_force=TimeInForce.GTC)

    def legs(self) -> tuple[OrderRequest, OrderRequest]:
        """(limit leg, stop leg)."""
        return self.limit_leg(), self.stop_leg()


@dataclass(frozen=True, slots=True)
class OrderList:
    """An order list (OCO) as the venue shows it: its ids and its legs, limit leg first."""

    list_id: str  # the venue's id (Binance's orderListId)
    list_client_id: str
    symbol: str
    orders: tuple[Order, ...]

    @property
    def done(self) -> bool:
        return all(o.status.is_final for o in self.orders)

    def leg(self, client_order_id: str) -> Order | None:
        return next((o for o in self.orders if o.client_order_id == client_order_id), None)


def oco_unsupported(title: str) -> str:
    """The sentence for a venue without OCO orders (the ticket hides OCO there; this is for the API)."""
    return (f"{title} does not offer OCO (one-cancels-the-other) orders in Meridian. Place the limit order and "
            "the stop-limit order separately (cancelling one does not cancel the other), or trade on Binance, "
            "the simulated market or paper trading.")


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


class OcoVenue(Venue, Protocol):
    """A venue with OCO order lists (`supports_oco` True). Every other venue leaves `supports_oco` False
    (or unset): the ticket does not offer OCO there and the order service refuses it with a sentence.

    `create_oco` sends the pair once, with the request's client ids (list and legs); a lost answer raises
    `OrderOutcomeUnknown(message, list_client_id)` and the legs are reconciled by their client ids.
    `cancel_order_list` cancels both legs (cancelling one leg through `cancel_order` does too, on the
    venues here, but answers only for that leg)."""

    supports_oco: bool

    async def create_oco(self, request: OcoRequest) -> OrderList: ...

    async def cancel_order_list(self, list_client_id: str, symbol: str) -> OrderList: ...

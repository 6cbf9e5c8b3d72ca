"""Money and market types shared by every layer.

Prices, amounts and fees are `Decimal` from the wire to the order; floats exist
only in chart arrays (see `app.market.candles`). Symbols are unified `BASE/QUOTE`.
All types are frozen so an event handed to several subscribers cannot be changed
under another one's feet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

ZERO = Decimal(0)

TIMEFRAMES: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3600,
    "4h": 14400,
    "1d": 86400,
}
"""Chart timeframes and their length in seconds. Buckets align to UTC epoch
multiples, as the exchanges' klines do (1d opens at 00:00 UTC)."""


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_LIMIT = "stop_limit"


class TimeInForce(enum.StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(enum.StrEnum):
    PENDING = "pending"  # journalled, not yet acknowledged by the venue
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # sent, but the answer was lost: reconcile before anything else

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)


def split_symbol(symbol: str) -> tuple[str, str]:
    """`'BTC/USDT'` -> `('BTC', 'USDT')`; raises ValueError for anything else."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote or "/" in quote:
        raise ValueError(f"'{symbol}' is not a symbol: write it as BASE/QUOTE, for example BTC/USDT")
    return base, quote


@dataclass(frozen=True, slots=True)
class Market:
    """A venue's trading rules for one symbol."""

    symbol: str
    base: str
    quote: str
    price_tick: Decimal  # smallest price increment
    amount_step: Decimal  # smallest amount increment
    min_amount: Decimal = ZERO
    max_amount: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    min_notional: Decimal = ZERO  # minimum order value in quote currency
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    active: bool = True

    @property
    def price_decimals(self) -> int:
        return max(0, -self.price_tick.normalize().as_tuple().exponent)  # type: ignore[operator]

    @property
    def amount_decimals(self) -> int:
        return max(0, -self.amount_step.normalize().as_tuple().exponent)  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class Ticker:
    """Best prices and 24h statistics for one symbol at one moment (`ts` in ms since epoch)."""

    symbol: str
    ts: int
    last: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None
    open_24h: Decimal | None = None
    high_24h: Decimal | None = None
    low_24h: Decimal | None = None
    base_volume_24h: Decimal | None = None
    quote_volume_24h: Decimal | None = None
    venue: str = ""

    @property
    def change_pct_24h(self) -> Decimal | None:
        if not self.open_24h:
            return None
        return (self.last - self.open_24h) / self.open_24h * 100

    @property
    def spread(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return self.ask - self.bid


_TICKER_FIELDS = ("symbol", "ts", "last", "bid", "ask", "open_24h", "high_24h", "low_24h", "base_volume_24h",
                  "quote_volume_24h", "venue")
assert tuple(f.name for f in fields(Ticker)) == _TICKER_FIELDS, "new_ticker must follow Ticker's fields"
(_t_symbol, _t_ts, _t_last, _t_bid, _t_ask, _t_open, _t_high, _t_low, _t_bvol, _t_qvol, _t_venue) = (
    getattr(Ticker, name).__set__ for name in _TICKER_FIELDS)


def new_ticker(symbol: str, ts: int, last: Decimal, bid: Decimal | None, ask: Decimal | None,
               open_24h: Decimal | None, high_24h: Decimal | None, low_24h: Decimal | None,
               base_volume_24h: Decimal | None, quote_volume_24h: Decimal | None, venue: str) -> Ticker:
    """Ticker without `__init__`, for the stream codecs' hot path where every field is already checked.
    Unrolled rather than a loop over the slots: a ticker costs 0.8 µs instead of 1.5 at 100k frames/s."""
    t = object.__new__(Ticker)
    _t_symbol(t, symbol)
    _t_ts(t, ts)
    _t_last(t, last)
    _t_bid(t, bid)
    _t_ask(t, ask)
    _t_open(t, open_24h)
    _t_high(t, high_24h)
    _t_low(t, low_24h)
    _t_bvol(t, base_volume_24h)
    _t_qvol(t, quote_volume_24h)
    _t_venue(t, venue)
    return t


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar; `ts` is the bar's open time in ms since epoch."""

    ts: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class CandleUpdate:
    """A venue's kline stream: the `timeframe` candle of `symbol` as it stands now."""

    symbol: str
    timeframe: str
    candle: Candle
    closed: bool  # the exchange says this candle is final
    venue: str = ""


@dataclass(frozen=True, slots=True)
class Trade:
    """One public trade print (`ts` in ms)."""

    symbol: str
    ts: int
    price: Decimal
    amount: Decimal
    side: Side
    id: str = ""
    venue: str = ""


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    symbol: str
    ts: int
    bids: tuple[BookLevel, ...]  # best (highest) first
    asks: tuple[BookLevel, ...]  # best (lowest) first


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the user asked for, before the venue has seen it."""

    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    client_order_id: str
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: str
    trade_id: str
    symbol: str
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_asset: str
    ts: int
    is_maker: bool = False


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    status: OrderStatus
    amount: Decimal
    ts: int
    price: Decimal | None = None
    stop_price: Decimal | None = None
    filled: Decimal = ZERO
    average_price: Decimal | None = None
    fee: Decimal = ZERO
    fee_asset: str = ""
    fills: tuple[Fill, ...] = field(default=())
    reason: str = ""  # why it was rejected, in words a user understands

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    used: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.used

"""A venue on top of ccxt (`ccxt.async_support`) plus our own websocket streams.

REST goes through ccxt, every call through the endpoint group's `Guard`
(bulkhead, breaker, rate limiter, retries for idempotent calls only). Live data
comes from the exchange's public websocket through our codecs rather than
ccxt.pro, which is several times slower per frame (tests/benchmarks).

Per-exchange subclasses (binance.py, gate.py, mexc.py) say only what differs:
hosts to rewrite for a local or proxy URL, the codec and stream URL, options that
keep `load_markets` to spot, and how a client order id is passed and looked up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import ccxt
import ccxt.async_support as ccxt_async
import numpy as np

from app.domain import (
    TIMEFRAMES,
    ZERO,
    Balance,
    BookLevel,
    Candle,
    Market,
    Order,
    OrderBook,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
)
from app.market.candles import CandleArrays
from app.resilience.guard import Guard, GuardConfig
from app.streams.connection import StreamSpec, StreamStats, stream_events
from app.venues.base import OrderNotFound, OrderOutcomeUnknown, StreamEvent, UnknownSymbol, VenueError, VenueUnavailable
from app.venues.ccxt_errors import scrub, to_venue_error

log = logging.getLogger(__name__)
T = TypeVar("T")

OHLCV_PAGE = 1000
CHART_HISTORY = 1500  # one-minute candles fetched for a chart: a day and a bit


@dataclass(frozen=True)
class ExchangeConfig:
    testnet: bool = False
    rest_url: str | None = None  # replaces the exchange's REST base (a local server, a proxy)
    ws_url: str | None = None  # replaces the exchange's websocket base
    api_key: str = ""
    secret: str = ""
    passphrase: str = ""
    timeout_s: float = 10.0
    silence_multiple: float = 10.0  # a stream silent for this many normal intervals is reconnected
    ping_interval_s: float = 20.0  # protocol pings; a pong later than this closes the connection

    def __repr__(self) -> str:  # never print credentials
        return f"ExchangeConfig(testnet={self.testnet}, rest_url={self.rest_url!r}, ws_url={self.ws_url!r}, keys={'yes' if self.api_key else 'no'})"


def dec(value: Any) -> Decimal | None:
    """ccxt's floats to Decimal through their shortest repr, which is the exchange's string."""
    if value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return Decimal(repr(value))
    return Decimal(str(value))


def rebase(tree: Any, old: str, new: str) -> Any:
    """Replace the base `old` with `new` in every URL of a ccxt `urls` tree."""
    if isinstance(tree, str):
        return new + tree[len(old):] if tree.startswith(old) else tree
    if isinstance(tree, dict):
        return {k: rebase(v, old, new) for k, v in tree.items()}
    if isinstance(tree, list):
        return [rebase(v, old, new) for v in tree]
    return tree


_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
}


class CcxtVenue:
    """Generic ccxt venue; subclasses set the class attributes."""

    exchange_id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    rest_hosts: ClassVar[tuple[str, ...]] = ()  # bases replaced by `rest_url`
    has_testnet: ClassVar[bool] = True
    ccxt_options: ClassVar[dict[str, Any]] = {}
    supports_oco: ClassVar[bool] = False  # OCO lists (base.OcoVenue): only where the exchange and Meridian have them

    def __init__(self, config: ExchangeConfig | None = None, *, guard: Guard | None = None,
                 exchange: Any = None, bus: Any = None) -> None:
        self.config = config or ExchangeConfig()
        self.name = self.exchange_id
        if self.config.testnet and not self.has_testnet:
            raise VenueError(f"{self.title} has no testnet. Turn testnet off for {self.name} in your settings, "
                             "or point rest_url/ws_url at a compatible local server.")
        self.exchange = exchange or self._build_exchange()
        # The guard's token bucket is seeded from ccxt's published rateLimit (ms per request).
        self.guard = guard or Guard(
            f"exchange:{self.name}",
            GuardConfig.from_ccxt(self.exchange, call_timeout=self.config.timeout_s + 1),
            bus=bus,
        )
        self.markets: dict[str, Market] = {}
        self._ids: dict[str, str] = {}  # unified symbol -> exchange market id
        self.stream_stats = StreamStats()

    # -- construction ----------------------------------------------------------------

    def _build_exchange(self) -> Any:
        cfg = self.config
        params: dict[str, Any] = {
            "enableRateLimit": False,  # our guard's token bucket limits the rate, seeded from ccxt's rateLimit
            "timeout": int(cfg.timeout_s * 1000),
            "options": dict(self.ccxt_options),
        }
        if cfg.api_key:
            params.update(apiKey=cfg.api_key, secret=cfg.secret)
            if cfg.passphrase:
                params["password"] = cfg.passphrase
        exchange = getattr(ccxt_async, self.exchange_id)(params)
        if cfg.testnet:
            exchange.set_sandbox_mode(True)
        if cfg.rest_url:
            base = cfg.rest_url.rstrip("/")
            hosts = self.rest_hosts if not cfg.testnet else self.testnet_hosts(exchange)
            for host in hosts:
                exchange.urls["api"] = rebase(exchange.urls["api"], host, base)
        return exchange

    def testnet_hosts(self, exchange: Any) -> tuple[str, ...]:
        return self.rest_hosts

    # -- guarded calls --------------------------------------------------------------------

    def _with_retry_after(self, fn: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        """ccxt's exceptions carry no headers: copy a 429/418's Retry-After onto the exception so the
        guard's breaker stays open exactly as long as the exchange asked."""

        async def call() -> T:
            try:
                return await fn()
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
                headers = getattr(self.exchange, "last_response_headers", None) or {}
                value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
                try:
                    if value is not None:
                        exc.retry_after = float(value)  # type: ignore[attr-defined]
                except ValueError:
                    pass  # an HTTP date: the guard's own parsing handles what it can
                raise

        return call

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        try:
            return await self.guard.call(self._with_retry_after(fn), idempotent=idempotent, what=what)
        except VenueError:
            raise
        except Exception as exc:
            error = to_venue_error(exc, self.title, self.exchange_id)
            log.info("%s %s failed: %s", self.name, what, error)
            raise error from None

    # -- markets ---------------------------------------------------------------------------

    async def load_markets(self) -> dict[str, Market]:
        if not self.markets:
            raw = await self._call("markets", lambda: self.exchange.load_markets())
            markets: dict[str, Market] = {}
            for symbol, m in raw.items():
                if not m.get("spot") or m.get("type", "spot") != "spot":
                    continue
                market = self.to_market(m)
                if market is not None:
                    markets[symbol] = market
                    self._ids[symbol] = m["id"]
            self.markets = markets
        return self.markets

    @staticmethod
    def to_market(m: dict[str, Any]) -> Market | None:
        precision = m.get("precision") or {}
        limits = m.get("limits") or {}
        tick = dec(precision.get("price"))
        step = dec(precision.get("amount"))
        if tick is None or step is None or tick <= 0 or step <= 0:
            return None  # a market without precision cannot be traded safely
        amount = limits.get("amount") or {}
        price = limits.get("price") or {}
        cost = limits.get("cost") or {}
        return Market(
            symbol=m["symbol"],
            base=m["base"],
            quote=m["quote"],
            price_tick=tick,
            amount_step=step,
            min_amount=dec(amount.get("min")) or ZERO,
            max_amount=dec(amount.get("max")),
            min_price=dec(price.get("min")),
            max_price=dec(price.get("max")),
            min_notional=dec(cost.get("min")) or ZERO,
            maker_fee=dec(m.get("maker")) if m.get("maker") is not None else Decimal("0.001"),
            taker_fee=dec(m.get("taker")) if m.get("taker") is not None else Decimal("0.001"),
            active=m.get("active") is not False,
        )

    async def _market(self, symbol: str) -> Market:
        await self.load_markets()
        market = self.markets.get(symbol)
        if market is None:
            raise UnknownSymbol(f"{self.title} does not list {symbol} as a spot market.")
        return market

    # -- market data --------------------------------------------------------------------------

    def to_ticker(self, t: dict[str, Any]) -> Ticker:
        last = dec(t.get("last")) or dec(t.get("close")) or ZERO
        return Ticker(
            symbol=t["symbol"],
            ts=int(t.get("timestamp") or 0),
            last=last,
            bid=dec(t.get("bid")),
            ask=dec(t.get("ask")),
            open_24h=dec(t.get("open")),
            high_24h=dec(t.get("high")),
            low_24h=dec(t.get("low")),
            base_volume_24h=dec(t.get("baseVolume")),
            quote_volume_24h=dec(t.get("quoteVolume")),
            venue=self.name,
        )

    async def fetch_ticker(self, symbol: str) -> Ticker:
        await self._market(symbol)
        raw = await self._call("ticker", lambda: self.exchange.fetch_ticker(symbol))
        return self.to_ticker(raw)

    async def fetch_tickers(self, symbols: Sequence[str]) -> dict[str, Ticker]:
        await self.load_markets()
        wanted = [s for s in symbols if s in self.markets]
        if not wanted:
            return {}
        raw = await self._call("tickers", lambda: self.exchange.fetch_tickers(wanted))
        return {s: self.to_ticker(t) for s, t in raw.items() if s in self.markets}

    async def fetch_ohlcv_arrays(self, symbol: str, timeframe: str, since: int | None = None,
                                 limit: int | None = None) -> CandleArrays:
        await self._market(symbol)
        if timeframe not in TIMEFRAMES:
            raise VenueError(f"Timeframe {timeframe} is not offered; choose one of {', '.join(TIMEFRAMES)}.")
        wanted = limit or (None if since is not None else CHART_HISTORY)
        tf_ms = TIMEFRAMES[timeframe] * 1000
        if since is None and wanted is not None:
            since = int(self.exchange.milliseconds()) - wanted * tf_ms
        rows: list[list[float]] = []
        cursor = since
        while True:
            page_limit = OHLCV_PAGE if wanted is None else min(OHLCV_PAGE, wanted - len(rows))
            page = await self._call(
                "candles", lambda c=cursor, n=page_limit: self.exchange.fetch_ohlcv(symbol, timeframe, c, n)
            )
            page = [r for r in page if not rows or r[0] > rows[-1][0]]
            rows.extend(page)
            if not page or len(page) < page_limit or (wanted is not None and len(rows) >= wanted):
                break
            cursor = int(page[-1][0]) + tf_ms
        if not rows:
            return CandleArrays.empty()
        a = np.array(rows, dtype=np.float64)
        return CandleArrays(a[:, 0].astype(np.int64), a[:, 1], a[:, 2], a[:, 3], a[:, 4], np.nan_to_num(a[:, 5]))

    async def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None = None,
                          limit: int | None = None) -> list[Candle]:
        market = await self._market(symbol)
        a = await self.fetch_ohlcv_arrays(symbol, timeframe, since, limit)
        q = f".{market.price_decimals}f"
        return [
            Candle(int(a.ts[i]), Decimal(format(a.open[i], q)), Decimal(format(a.high[i], q)),
                   Decimal(format(a.low[i], q)), Decimal(format(a.close[i], q)), Decimal(repr(float(a.volume[i]))))
            for i in range(len(a))
        ]

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook:
        await self._market(symbol)
        raw = await self._call("order book", lambda: self.exchange.fetch_order_book(symbol, limit))
        return OrderBook(
            symbol,
            int(raw.get("timestamp") or self.exchange.milliseconds()),
            tuple(BookLevel(dec(p), dec(a)) for p, a, *_ in raw["bids"][:limit]),  # type: ignore[arg-type]
            tuple(BookLevel(dec(p), dec(a)) for p, a, *_ in raw["asks"][:limit]),  # type: ignore[arg-type]
        )

    # -- account and orders ----------------------------------------------------------------------

    def _require_keys(self, what: str) -> None:
        if not self.config.api_key:
            raise VenueError(f"{what} on {self.title} needs an API key: add one in Settings → API keys.")

    async def fetch_balance(self) -> dict[str, Balance]:
        self._require_keys("Reading the balance")
        raw = await self._call("balance", lambda: self.exchange.fetch_balance())
        out: dict[str, Balance] = {}
        for asset, free in (raw.get("free") or {}).items():
            used = (raw.get("used") or {}).get(asset)
            if free is None and used is None:
                continue
            b = Balance(asset, dec(free) or ZERO, dec(used) or ZERO)
            if b.total:
                out[asset] = b
        return out

    def order_params(self, request: OrderRequest) -> dict[str, Any]:
        """Exchange-specific parameters: the client order id, time in force, post-only."""
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.type is not OrderType.MARKET:
            params["timeInForce"] = request.time_in_force.value
        if request.post_only:
            params["postOnly"] = True
        if request.stop_price is not None:
            params["stopPrice"] = format(request.stop_price, "f")
        return params

    def to_order(self, o: dict[str, Any]) -> Order:
        status = _STATUS.get(str(o.get("status") or "open"), OrderStatus.UNKNOWN)
        filled = dec(o.get("filled")) or ZERO
        amount = dec(o.get("amount")) or ZERO
        if status is OrderStatus.OPEN and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        fee = o.get("fee") or {}
        kind = str(o.get("type") or "limit")
        return Order(
            id=str(o.get("id") or ""),
            client_order_id=str(o.get("clientOrderId") or ""),
            symbol=o["symbol"],
            side=Side(o.get("side") or "buy"),
            type=OrderType.MARKET if kind == "market" else OrderType.STOP_LIMIT if "stop" in kind else OrderType.LIMIT,
            status=status,
            amount=amount,
            ts=int(o.get("timestamp") or 0),
            price=dec(o.get("price")),
            stop_price=dec(o.get("stopPrice") or o.get("triggerPrice")),
            filled=filled,
            average_price=dec(o.get("average")),
            fee=dec(fee.get("cost")) or ZERO,
            fee_asset=str(fee.get("currency") or ""),
        )

    async def create_order(self, request: OrderRequest) -> Order:
        """Send once. A lost answer becomes OrderOutcomeUnknown: the caller reconciles by client id."""
        self._require_keys("Placing an order")
        await self._market(request.symbol)
        ccxt_type = "market" if request.type is OrderType.MARKET else "limit"
        # Exact decimal strings, not floats: ccxt formats them to the market's precision itself.
        price = format(request.price, "f") if request.price is not None else await self.market_order_price(request)
        params = self.order_params(request)
        raw = await self._send_once(
            "create order", request.client_order_id, "order",
            lambda: self.exchange.create_order(
                request.symbol, ccxt_type, request.side.value, format(request.amount, "f"), price, params))
        order = self.to_order(raw)
        if not order.client_order_id:
            order = _with_client_id(order, request.client_order_id)
        return order

    async def _send_once(self, what: str, client_id: str, noun: str, fn: Callable[[], Awaitable[T]]) -> T:
        """One non-idempotent call (an order, an order list): tried exactly once; a lost answer raises
        OrderOutcomeUnknown(`client_id`) for the caller to reconcile."""
        try:
            return await self.guard.call(self._with_retry_after(fn), idempotent=False, what=what)
        except (ccxt.OperationFailed, TimeoutError, OSError) as exc:
            # OperationFailed covers every NetworkError and Binance's -1001 on a 500: the exchanges say a
            # server error in answer to an order leaves its outcome unknown.
            if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)) or _refused(exc):
                raise to_venue_error(exc, self.title, self.exchange_id) from None  # it never reached the matching engine
            raise OrderOutcomeUnknown(
                f"The {noun} {client_id} was sent to {self.title} but no answer came back "
                f"({scrub(str(exc))[:120]}). It may exist: it is being checked before anything is resent.",
                client_id,
            ) from None
        except VenueError:
            raise
        except Exception as exc:
            raise to_venue_error(exc, self.title, self.exchange_id) from None

    async def market_order_price(self, request: OrderRequest) -> str | None:
        """A price for a market order, where the exchange needs one (Gate.io's market buys); None elsewhere."""
        return None

    async def cancel_order(self, order_id: str, symbol: str) -> Order:
        self._require_keys("Cancelling an order")
        raw = await self._call("cancel order", lambda: self.exchange.cancel_order(order_id, symbol))
        return self.to_order(raw)

    async def fetch_order(self, order_id: str, symbol: str) -> Order:
        self._require_keys("Reading an order")
        raw = await self._call("order", lambda: self.exchange.fetch_order(order_id, symbol))
        return self.to_order(raw)

    def client_id_lookup_params(self, client_order_id: str) -> dict[str, Any]:
        return {"clientOrderId": client_order_id}

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> Order:
        self._require_keys("Reading an order")
        params = self.client_id_lookup_params(client_order_id)
        raw = await self._call("order by client id", lambda: self.exchange.fetch_order("", symbol, params))
        order = self.to_order(raw)
        if order.client_order_id and order.client_order_id != client_order_id:
            raise OrderNotFound(f"{self.title} has no order with client id {client_order_id}.")
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        self._require_keys("Reading open orders")
        raw = await self._call("open orders", lambda: self.exchange.fetch_open_orders(symbol))
        return [self.to_order(o) for o in raw]

    # -- streams -----------------------------------------------------------------------------------

    codec_class: ClassVar[Any] = None  # the venue's frame codec (app.streams.codecs)
    channels: ClassVar[tuple[str, ...]] = ("ticker", "trades")
    ws_base: ClassVar[str] = ""
    ws_testnet: ClassVar[str] = ""

    def codec(self) -> Any:
        return self.codec_class(self.market_ids())

    def ws_url(self) -> str:
        """The websocket base: the user's `ws_url`, else the exchange's (its testnet's when chosen)."""
        return self.config.ws_url or (self.ws_testnet if self.config.testnet and self.ws_testnet else self.ws_base)

    def stream_spec(self, codec: Any, symbols: Sequence[str]) -> StreamSpec:
        """Exchanges that subscribe with messages after connecting (Gate.io, MEXC); Binance names its
        streams in the URL instead and overrides this."""
        return StreamSpec(
            url=self.ws_url(),
            subscribe=codec.subscribe_messages(symbols, self.channels),
            silence_after=codec.interval_seconds("ticker") * self.config.silence_multiple,
            app_ping=codec.ping_message,
            app_ping_interval=codec.ping_interval or 20.0,
            ping_interval=self.config.ping_interval_s,
            ping_timeout=self.config.ping_interval_s,
            label=self.title,
        )

    @property
    def stale_after(self) -> float:
        """Seconds without a price before the feed calls the stream stale."""
        return 15.0

    async def watch(self, symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:  # type: ignore[override]
        await self.load_markets()
        unknown = [s for s in symbols if s not in self.markets]
        if unknown:
            raise UnknownSymbol(f"{self.title} does not list {', '.join(unknown)} as spot markets.")
        codec = self.codec()
        async for event in stream_events(self.stream_spec(codec, symbols), codec, self.stream_stats):
            yield event

    def market_ids(self, symbols: Sequence[str] | None = None) -> dict[str, str]:
        """Exchange market id -> unified symbol, for the codecs."""
        wanted = self._ids if symbols is None else {s: self._ids[s] for s in symbols if s in self._ids}
        return {mid: sym for sym, mid in wanted.items()}

    async def close(self) -> None:
        try:
            await self.exchange.close()
        except Exception:  # closing must not raise on shutdown
            log.debug("closing %s failed", self.name, exc_info=True)


def _refused(exc: BaseException) -> bool:
    """True when the request provably never reached the exchange."""
    text = str(exc).lower()
    return isinstance(exc, ConnectionRefusedError) or "connection refused" in text or "cannot connect to host" in text


def _with_client_id(order: Order, client_order_id: str) -> Order:
    return replace(order, client_order_id=client_order_id)

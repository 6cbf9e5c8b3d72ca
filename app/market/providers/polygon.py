"""Polygon (now also Massive, https://massive.com/docs; api.polygon.io keeps working):
candles from the aggregates endpoint and prices from the last-trade endpoints.

Symbols (ours -> Polygon's ticker):
    AAPL, BRK.B -> AAPL, BRK.B          stocks and ETFs as they are
    BTC/USD     -> X:BTCUSD             crypto
    EUR/USD     -> C:EURUSD             forex
    ^GSPC       -> I:SPX                indices (^DJI -> I:DJI, ^IXIC -> I:COMP, ^NDX -> I:NDX,
                                        ^VIX -> I:VIX, ^RUT -> I:RUT; any other ^X -> I:X)

Endpoints and documented responses:
    GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}?adjusted=true&sort=..&limit=..
        {"ticker": "AAPL", "queryCount": 2, "resultsCount": 2, "adjusted": true,
         "results": [{"v": 70790813, "vw": 131.6292, "o": 130.465, "c": 130.15, "h": 133.41, "l": 129.89,
                      "t": 1673240400000, "n": 645365}, ...],
         "status": "OK", "request_id": "6a7e466379af0a71039d60cc78e72282", "count": 2}
        ("results" is omitted when there are none; free plans may see "status": "DELAYED")
    GET /v2/last/trade/{ticker}           (stocks)
        {"request_id": "...", "status": "OK",
         "results": {"T": "AAPL", "p": 129.8473, "s": 25, "t": 1617901342969834000, "x": 4, ...}}
        (t is the SIP time in nanoseconds)
    GET /v1/last/crypto/{from}/{to}       (crypto)
        {"status": "success", "symbol": "BTC-USD", "request_id": "...",
         "last": {"conditions": [1], "exchange": 4, "price": 16835.42, "size": 0.006909, "timestamp": 1605560885027}}
    GET /v1/last_quote/currencies/{from}/{to}   (forex: there are no trades, so last = the bid/ask midpoint)
        {"status": "success", "symbol": "EUR/USD", "request_id": "...",
         "last": {"ask": 1.0862, "bid": 1.0861, "exchange": 48, "timestamp": 1605555313000}}

Errors: 401 {"status": "ERROR", "request_id": "...", "error": "Unknown API Key"} (or "API Key was
not provided"); 403 {"status": "NOT_AUTHORIZED", "request_id": "...", "message": "You are not entitled
to this data. Please upgrade your plan at https://polygon.io/pricing"} -> NotAvailable (the free plan
has no last trades and no indices); 429 {"status": "ERROR", "request_id": "...", "error": "You've
exceeded the maximum requests per minute, please wait or upgrade your subscription to continue."};
404 {"status": "NOT_FOUND", ...} -> SymbolNotFound. An unknown ticker's aggregates are
"resultsCount": 0 with no "results": an empty list of candles.

Limits: the free plan allows 5 requests a minute (the guard's bucket: one every 12 s).
The key travels in the `Authorization: Bearer` header, never in the URL.

Times: daily bars open at 00:00 US Eastern (04:00/05:00 UTC, the same calendar date),
so they are moved to 00:00 UTC of that date; intraday bars keep Polygon's open time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote as url_quote

import aiohttp

from app.domain import TIMEFRAMES, Candle, Ticker
from app.market.providers.base import (
    AssetClass,
    AuthError,
    BadResponse,
    Capability,
    HttpClient,
    HttpReply,
    Instrument,
    NotAvailable,
    ProviderBase,
    ProviderError,
    RateLimited,
    SymbolNotFound,
    Unavailable,
    day_floor,
    expect_dict,
    http_status_error,
    loads,
    optional_decimal,
    parse_symbol,
    to_decimal,
    to_int,
    try_loads,
)
from app.resilience.errors import scrub
from app.resilience.guard import GuardConfig

__all__ = [
    "Polygon",
    "aggregates_path",
    "check_status",
    "decode",
    "last_path",
    "map_aggregates",
    "map_last_crypto_trade",
    "map_last_quote",
    "map_last_trade",
    "polygon_ticker",
]

NAME = "polygon"
TITLE = "Polygon"
MAX_LIMIT = 50_000  # Polygon's cap on base aggregates per request

INDEX_TICKERS = {"^GSPC": "I:SPX", "^DJI": "I:DJI", "^IXIC": "I:COMP", "^NDX": "I:NDX", "^VIX": "I:VIX", "^RUT": "I:RUT"}
TIMESPANS = {"1m": (1, "minute"), "5m": (5, "minute"), "15m": (15, "minute"), "1h": (1, "hour"), "1d": (1, "day")}
"""Our timeframe -> (multiplier, timespan). No 4h: Polygon's 4-hour windows follow US Eastern
midnight, which is not a 4-hour boundary in UTC half the year."""

_OK = frozenset({"OK", "DELAYED", "SUCCESS"})


def polygon_ticker(inst: Instrument) -> str:
    if inst.asset_class is AssetClass.CRYPTO:
        return f"X:{inst.base}{inst.quote}"
    if inst.asset_class is AssetClass.FOREX:
        return f"C:{inst.base}{inst.quote}"
    if inst.asset_class is AssetClass.INDEX:
        return INDEX_TICKERS.get(inst.base, "I:" + inst.base.lstrip("^"))
    return inst.base


def aggregates_path(inst: Instrument, timeframe: str, start_ms: int, end_ms: int) -> str:
    multiplier, timespan = TIMESPANS[timeframe]
    ticker = url_quote(polygon_ticker(inst), safe=":.")
    return f"/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{start_ms}/{end_ms}"


def last_path(inst: Instrument) -> str:
    if inst.asset_class is AssetClass.CRYPTO:
        return f"/v1/last/crypto/{inst.base}/{inst.quote}"
    if inst.asset_class is AssetClass.FOREX:
        return f"/v1/last_quote/currencies/{inst.base}/{inst.quote}"
    return "/v2/last/trade/" + url_quote(polygon_ticker(inst), safe=":.")


# --------------------------------------------------------------------------- errors


def check_status(body: Any, symbol: str, *, http_status: int = 200) -> dict[str, Any]:
    """The body as a dict, or the error its `status` (and `error`/`message`) stands for."""
    body = expect_dict(body, "data", provider=NAME, title=TITLE)
    status = str(body.get("status") or "").strip().upper()
    if not status or status in _OK:
        return body
    words = scrub(str(body.get("error") or body.get("message") or ""), 160).rstrip(".")
    said = f" ({words})" if words else ""
    lowered = words.lower()
    if status == "NOT_AUTHORIZED":
        raise NotAvailable(
            f"Your {TITLE} plan does not include this data for {symbol}{said}; another provider is used for it.",
            provider=NAME,
        )
    if status == "NOT_FOUND":
        raise SymbolNotFound(f"{TITLE} has no data for {symbol}{said}. Check the symbol.", provider=NAME)
    if "api key" in lowered or "apikey" in lowered or http_status == 401:
        raise AuthError(f"{TITLE} refused the API key{said}. Check the {TITLE} key in the settings.", provider=NAME)
    if "maximum requests" in lowered or "rate limit" in lowered or http_status == 429:
        raise RateLimited(
            f"{TITLE}'s limit of requests per minute was reached; its data resumes in about a minute.",
            provider=NAME,
            retry_after=60.0,
            resets="minute",
        )
    if http_status >= 500:
        raise Unavailable(f"{TITLE} had a server error{said}. It will be tried again.", provider=NAME)
    raise ProviderError(f"{TITLE} refused the request for {symbol}{said}.", provider=NAME)


def decode(reply: HttpReply, symbol: str) -> dict[str, Any]:
    body = try_loads(reply.text)
    if isinstance(body, dict) and body.get("status"):
        try:
            check_status(body, symbol, http_status=reply.status)
        except RateLimited as exc:
            exc.retry_after = reply.retry_after or exc.retry_after
            raise
    if reply.status >= 300 or body is None:
        if reply.status < 300:
            loads(reply.text, provider=NAME, title=TITLE)  # raises BadResponse
        raise http_status_error(reply.status, title=TITLE, provider=NAME, retry_after=reply.retry_after)
    return expect_dict(body, "data", provider=NAME, title=TITLE)


# --------------------------------------------------------------------------- mappers


def _num(row: dict[str, Any], key: str, what: str) -> Decimal:
    return to_decimal(row.get(key), what, provider=NAME, title=TITLE)


def map_aggregates(body: Any, symbol: str, timeframe: str) -> list[Candle]:
    """Aggregates body -> chronological candles (whatever `sort` was asked); none -> []."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    body = check_status(body, symbol)
    results = body.get("results")
    if results is None:
        return []  # Polygon omits "results" when the range holds no bars
    if not isinstance(results, list):
        raise BadResponse(f"{TITLE} sent candles in an unknown shape. It will be tried again.", provider=NAME)
    daily = timeframe == "1d"
    candles: list[Candle] = []
    for raw in results:
        bar = expect_dict(raw, "candle", provider=NAME, title=TITLE)
        ts = to_int(bar.get("t"), "candle time", provider=NAME, title=TITLE)
        candles.append(
            Candle(
                ts=day_floor(ts) if daily else ts,
                open=_num(bar, "o", "open"),
                high=_num(bar, "h", "high"),
                low=_num(bar, "l", "low"),
                close=_num(bar, "c", "close"),
                volume=_num(bar, "v", "volume"),
            )
        )
    candles.sort(key=lambda c: c.ts)
    return candles


def map_last_trade(body: Any, symbol: str) -> Ticker:
    """/v2/last/trade body (stocks) -> Ticker with the last trade's price and time."""
    inst = parse_symbol(symbol)
    body = check_status(body, symbol)
    trade = body.get("results")
    if not trade:
        raise SymbolNotFound(f"{TITLE} has no trade for {symbol}. Check the symbol.", provider=NAME)
    trade = expect_dict(trade, "trade", provider=NAME, title=TITLE)
    nanos = to_int(trade.get("t") if trade.get("t") is not None else trade.get("y"), "trade time", provider=NAME, title=TITLE)
    return Ticker(symbol=inst.symbol, ts=nanos // 1_000_000, last=_num(trade, "p", "price"), venue=NAME)


def map_last_crypto_trade(body: Any, symbol: str) -> Ticker:
    """/v1/last/crypto body -> Ticker (the timestamp is already in ms)."""
    inst = parse_symbol(symbol)
    body = check_status(body, symbol)
    last = body.get("last")
    if not last:
        raise SymbolNotFound(f"{TITLE} has no trade for {symbol}. Check the symbol.", provider=NAME)
    last = expect_dict(last, "trade", provider=NAME, title=TITLE)
    return Ticker(
        symbol=inst.symbol,
        ts=to_int(last.get("timestamp"), "trade time", provider=NAME, title=TITLE),
        last=_num(last, "price", "price"),
        venue=NAME,
    )


def map_last_quote(body: Any, symbol: str) -> Ticker:
    """/v1/last_quote/currencies body -> Ticker: bid, ask and their midpoint as `last`."""
    inst = parse_symbol(symbol)
    body = check_status(body, symbol)
    last = body.get("last")
    if not last:
        raise SymbolNotFound(f"{TITLE} has no quote for {symbol}. Check the symbol.", provider=NAME)
    last = expect_dict(last, "quote", provider=NAME, title=TITLE)
    bid = optional_decimal(last.get("bid"), "bid", provider=NAME, title=TITLE)
    ask = optional_decimal(last.get("ask"), "ask", provider=NAME, title=TITLE)
    if bid is None or ask is None:
        raise BadResponse(f"{TITLE} sent a quote for {symbol} without bid and ask.", provider=NAME)
    return Ticker(
        symbol=inst.symbol,
        ts=to_int(last.get("timestamp"), "quote time", provider=NAME, title=TITLE),
        last=(bid + ask) / 2,
        bid=bid,
        ask=ask,
        venue=NAME,
    )


# --------------------------------------------------------------------------- the client


class Polygon(ProviderBase):
    name: ClassVar[str] = NAME
    title: ClassVar[str] = TITLE
    default_priority: ClassVar[int] = 20
    default_base_url: ClassVar[str] = "https://api.polygon.io"
    serves: ClassVar = {
        Capability.TICKER: frozenset({AssetClass.STOCK, AssetClass.CRYPTO, AssetClass.FOREX}),
        Capability.OHLCV: frozenset(AssetClass),
    }
    timeframes: ClassVar = {asset: tuple(TIMESPANS) for asset in AssetClass}
    # Free plan: 5 requests a minute.
    guard_config: ClassVar[GuardConfig] = GuardConfig(
        rate_per_second=5 / 60, burst=1, call_timeout=15.0, retry_attempts=2, max_concurrent=2
    )
    key_hint: ClassVar[str] = "Get a free key at https://polygon.io (massive.com) and add it in the settings."

    def _make_http(self, session: aiohttp.ClientSession | None) -> HttpClient:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return HttpClient(
            self.guard, self.base_url, title=TITLE, provider=NAME, headers=headers, session=session, wall=self._wall
        )

    async def _ticker(self, inst: Instrument) -> Ticker:
        if inst.asset_class is AssetClass.CRYPTO:
            mapper = map_last_crypto_trade
        elif inst.asset_class is AssetClass.FOREX:
            mapper = map_last_quote
        else:
            mapper = map_last_trade
        return await self.http.get(
            last_path(inst),
            None,
            lambda reply: mapper(decode(reply, inst.symbol), inst.symbol),
            what=f"{inst.symbol} last trade",
        )

    async def _ohlcv(self, inst: Instrument, timeframe: str, since: int | None, limit: int) -> list[Candle]:
        step_ms = TIMEFRAMES[timeframe] * 1000
        now_ms = int(self._wall() * 1000)
        if since is not None:
            start, sort = since, "asc"
        else:
            # Sessions fill a fraction of the clock: ask for enough calendar time, newest
            # first so the cap on base aggregates never cuts off the recent end.
            factor = 1.1 if inst.asset_class is AssetClass.CRYPTO else (1.6 if timeframe == "1d" else 5.5)
            start, sort = now_ms - int(limit * step_ms * factor) - step_ms, "desc"
        params = {"adjusted": "true", "sort": sort, "limit": str(MAX_LIMIT)}
        return await self.http.get(
            aggregates_path(inst, timeframe, start, now_ms),
            params,
            lambda reply: map_aggregates(decode(reply, inst.symbol), inst.symbol, timeframe),
            what=f"{inst.symbol} {timeframe} candles",
        )

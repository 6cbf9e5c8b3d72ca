"""Alpha Vantage: stock quotes and candles, currency and crypto exchange rates, from
`GET /query?function=...&apikey=...` (https://www.alphavantage.co/documentation/).

Symbols (ours -> Alpha Vantage's request):
    AAPL, SPY   -> function=GLOBAL_QUOTE&symbol=AAPL (ticker);
                   TIME_SERIES_INTRADAY&symbol=AAPL&interval=5min | TIME_SERIES_DAILY (candles)
    EUR/USD     -> CURRENCY_EXCHANGE_RATE&from_currency=EUR&to_currency=USD (ticker);
                   FX_DAILY&from_symbol=EUR&to_symbol=USD (daily candles only: FX_INTRADAY is premium)
    BTC/USD     -> CURRENCY_EXCHANGE_RATE&from_currency=BTC&to_currency=USD (ticker only)
    ^GSPC       -> not served (Alpha Vantage has no index quotes): NotAvailable, nothing sent.

Responses (all HTTP 200):

    GLOBAL_QUOTE: {"Global Quote": {"01. symbol": "IBM", "02. open": "165.0000", "03. high": "166.4500",
                   "04. low": "164.2700", "05. price": "165.7100", "06. volume": "3468843",
                   "07. latest trading day": "2024-05-24", "08. previous close": "164.8900",
                   "09. change": "0.8200", "10. change percent": "0.4973%"}}
    TIME_SERIES_*: {"Meta Data": {"1. Information": "...", "2. Symbol": "IBM", "3. Last Refreshed": "...",
                    "4. Interval": "5min", "5. Output Size": "Compact", "6. Time Zone": "US/Eastern"},
                    "Time Series (5min)": {"2024-05-24 19:55:00": {"1. open": "...", "2. high": "...",
                    "3. low": "...", "4. close": "...", "5. volume": "..."}, ...}}
                   (daily: "Time Series (Daily)" keyed by date; FX_DAILY: "Time Series FX (Daily)", no volume)
    CURRENCY_EXCHANGE_RATE: {"Realtime Currency Exchange Rate": {"1. From_Currency Code": "BTC", ...,
                   "5. Exchange Rate": "67123.45000000", "6. Last Refreshed": "2024-05-24 20:01:02",
                   "7. Time Zone": "UTC", "8. Bid Price": "67123.40", "9. Ask Price": "67123.50"}}

Errors are HTTP 200 too, told apart by a top-level key:
    {"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on ..."}
    {"Error Message": "Invalid API call. Please retry or visit the documentation (...) for TIME_SERIES_DAILY."}
        -> an unknown symbol
    {"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and
              500 calls per day. ..."}                                   (the per-minute throttle)
    {"Information": "We have detected your API key as <KEY> and our standard API rate limit is 25 requests
                     per day. Please subscribe to any of the premium plans ..."}  (the daily limit)
    {"Information": "Thank you for using Alpha Vantage! This is a premium endpoint. ..."}
    {"Global Quote": {}}                                                   (an unknown symbol)
The daily-limit note echoes the API key, so these texts are never shown: each is
mapped to our own sentence (anything unrecognised is shown with the key masked).

Limits: the free plan allows about 5 requests a minute and 25 a day. The guard's
bucket holds the first; `RequestBudget` counts the second and refuses, without
sending, once the day's 25 are spent (`daily_limit=None` for a premium key).
Free keys get the newest 100 candles (outputsize=compact); `full_history=True`
(premium) asks for more when needed.

Times: daily rows are dates -> 00:00 UTC of that date; intraday rows are local to
the series' "Time Zone" (US/Eastern for stocks) and converted to UTC; a quote's
"latest trading day" has no time, so the ticker's `ts` is that day's 00:00 UTC
(consumers judging staleness see it as older, never as fresher, than it is).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp

from app.domain import ZERO, Candle, Ticker
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
    RequestBudget,
    SymbolNotFound,
    date_to_ms,
    expect_dict,
    http_status_error,
    loads,
    optional_decimal,
    parse_symbol,
    to_decimal,
    try_loads,
)
from app.resilience.errors import scrub
from app.resilience.guard import GuardConfig

__all__ = [
    "AlphaVantage",
    "check_notes",
    "decode",
    "map_exchange_rate",
    "map_global_quote",
    "map_time_series",
    "request_params",
]

NAME = "alphavantage"
TITLE = "Alpha Vantage"
QUERY_PATH = "/query"
FREE_DAILY_LIMIT = 25
COMPACT_ROWS = 100  # what outputsize=compact returns

INTRADAY = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "60min"}
_EASTERN = frozenset({"US/Eastern", "America/New_York", "EST5EDT"})
_KEY_ECHO = re.compile(r"(api ?key as )\S+", re.IGNORECASE)


def request_params(inst: Instrument, capability: Capability, timeframe: str | None = None, *, full: bool = False) -> dict[str, str]:
    """The query (without the key) that asks Alpha Vantage for `capability` of `inst`."""
    size = "full" if full else "compact"
    if capability is Capability.TICKER:
        if inst.asset_class is AssetClass.STOCK:
            return {"function": "GLOBAL_QUOTE", "symbol": inst.base}
        return {"function": "CURRENCY_EXCHANGE_RATE", "from_currency": inst.base, "to_currency": inst.quote}
    if inst.asset_class is AssetClass.FOREX:
        return {"function": "FX_DAILY", "from_symbol": inst.base, "to_symbol": inst.quote, "outputsize": size}
    if timeframe == "1d":
        return {"function": "TIME_SERIES_DAILY", "symbol": inst.base, "outputsize": size}
    if timeframe not in INTRADAY:
        raise ValueError(f"Alpha Vantage has no {timeframe} candles")
    return {"function": "TIME_SERIES_INTRADAY", "symbol": inst.base, "interval": INTRADAY[timeframe], "outputsize": size}


# --------------------------------------------------------------------------- errors


def _note_error(text: str, symbol: str) -> ProviderError:
    lowered = text.lower()
    if "apikey is invalid" in lowered or "api key is invalid" in lowered or "invalid api key" in lowered:
        return AuthError(
            f"{TITLE} refused the API key: it is invalid or missing. Check the {TITLE} key in the settings "
            "(a free key is available at https://www.alphavantage.co/support/#api-key).",
            provider=NAME,
        )
    if "demo" in lowered and "api key" in lowered:
        return AuthError(
            f"{TITLE}'s demo key only works for its documentation examples; add your own free key in the settings.",
            provider=NAME,
        )
    if any(words in lowered for words in ("rate limit", "call frequency", "requests per day", "calls per day")):
        if "per minute" in lowered or "per second" in lowered:
            return RateLimited(
                f"{TITLE}'s limit of requests per minute was reached; its prices resume in about a minute.",
                provider=NAME,
                retry_after=60.0,
                resets="minute",
            )
        return RateLimited(
            f"{TITLE}'s daily allowance for this key ({FREE_DAILY_LIMIT} requests on the free plan) is used up; "
            f"{TITLE} is asked again after 00:00 UTC, and other providers are used meanwhile.",
            provider=NAME,
            resets="day",
        )
    if "premium" in lowered:
        return NotAvailable(
            f"{TITLE} serves this request for {symbol} on premium plans only; another provider is used for it.",
            provider=NAME,
        )
    if "invalid api call" in lowered:
        return SymbolNotFound(
            f"{TITLE} does not know {symbol}. Check the symbol (some listings carry an exchange suffix, "
            "such as TSCO.LON).",
            provider=NAME,
        )
    said = scrub(_KEY_ECHO.sub(r"\1***", text), 160).rstrip(".")
    return ProviderError(f"{TITLE} refused the request for {symbol} ({said}).", provider=NAME)


def check_notes(body: Any, symbol: str) -> dict[str, Any]:
    """The body as a dict, or the error its "Error Message" / "Note" / "Information" stands for."""
    body = expect_dict(body, "data", provider=NAME, title=TITLE)
    for key in ("Error Message", "Note", "Information"):
        text = body.get(key)
        if isinstance(text, str) and text.strip():
            raise _note_error(text, symbol)
    return body


def decode(reply: HttpReply, symbol: str) -> dict[str, Any]:
    body = try_loads(reply.text)
    if isinstance(body, dict):
        check_notes(body, symbol)
    if reply.status >= 300 or body is None:
        if reply.status < 300:
            loads(reply.text, provider=NAME, title=TITLE)  # raises BadResponse
        raise http_status_error(reply.status, title=TITLE, provider=NAME, retry_after=reply.retry_after)
    return check_notes(body, symbol)


# --------------------------------------------------------------------------- times


def _us_eastern_offset(naive: datetime) -> timedelta:
    """US Eastern's UTC offset at a local time, by the rules in force since 2007 (DST from
    the second Sunday of March to the first Sunday of November, at 02:00): used only
    where the system has no time-zone database (zoneinfo on Windows without tzdata)."""
    march = datetime(naive.year, 3, 8, 2)
    november = datetime(naive.year, 11, 1, 2)
    start = march + timedelta(days=(6 - march.weekday()) % 7)
    end = november + timedelta(days=(6 - november.weekday()) % 7)
    return timedelta(hours=-4) if start <= naive < end else timedelta(hours=-5)


def local_to_ms(text: Any, zone: str, *, what: str = "time") -> int:
    """'2024-05-24 19:55:00' in `zone` ("US/Eastern", "UTC") -> ms since the epoch (UTC)."""
    naive: datetime | None = None
    if isinstance(text, str):
        try:
            naive = datetime.fromisoformat(text.strip())
        except ValueError:
            naive = None
    if naive is None:
        raise BadResponse(f"{TITLE} sent an unreadable {what} ({scrub(repr(text), 40)}).", provider=NAME)
    if naive.tzinfo is not None:
        return int(naive.timestamp() * 1000)
    zone = (zone or "UTC").strip()
    if zone.upper() in ("UTC", "GMT"):
        return int(naive.replace(tzinfo=UTC).timestamp() * 1000)
    try:
        return int(naive.replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)
    except (ZoneInfoNotFoundError, ValueError):
        if zone not in _EASTERN:
            raise BadResponse(f"{TITLE} sent times in an unknown time zone ({scrub(zone, 40)}).", provider=NAME) from None
    return int((naive - _us_eastern_offset(naive)).replace(tzinfo=UTC).timestamp() * 1000)


def _day_ms(text: Any, what: str) -> int:
    try:
        return date_to_ms(date.fromisoformat(str(text).strip()[:10]))
    except ValueError:
        pass
    raise BadResponse(f"{TITLE} sent an unreadable {what} ({scrub(repr(text), 40)}).", provider=NAME)


# --------------------------------------------------------------------------- mappers


def _num(row: dict[str, Any], key: str, what: str) -> Any:
    return to_decimal(row.get(key), what, provider=NAME, title=TITLE)


def map_global_quote(body: Any, symbol: str) -> Ticker:
    """GLOBAL_QUOTE body -> Ticker (the latest trading day's open, high, low and volume)."""
    inst = parse_symbol(symbol)
    body = check_notes(body, symbol)
    if "Global Quote" not in body:
        raise BadResponse(f"{TITLE} sent a quote without its \"Global Quote\". It will be tried again.", provider=NAME)
    quote = body["Global Quote"]
    if not quote:  # {"Global Quote": {}}: Alpha Vantage's way of saying it does not know the symbol
        raise SymbolNotFound(f"{TITLE} has no quote for {symbol}. Check the symbol.", provider=NAME)
    quote = expect_dict(quote, "quote", provider=NAME, title=TITLE)
    return Ticker(
        symbol=inst.symbol,
        ts=_day_ms(quote.get("07. latest trading day"), "trading day"),
        last=_num(quote, "05. price", "price"),
        open_24h=optional_decimal(quote.get("02. open"), "open", provider=NAME, title=TITLE),
        high_24h=optional_decimal(quote.get("03. high"), "high", provider=NAME, title=TITLE),
        low_24h=optional_decimal(quote.get("04. low"), "low", provider=NAME, title=TITLE),
        base_volume_24h=optional_decimal(quote.get("06. volume"), "volume", provider=NAME, title=TITLE),
        venue=NAME,
    )


def map_exchange_rate(body: Any, symbol: str) -> Ticker:
    """CURRENCY_EXCHANGE_RATE body -> Ticker (rate, bid and ask)."""
    inst = parse_symbol(symbol)
    body = check_notes(body, symbol)
    rate = body.get("Realtime Currency Exchange Rate")
    if rate is None:
        raise BadResponse(f"{TITLE} sent an exchange rate without its rate. It will be tried again.", provider=NAME)
    if not rate:
        raise SymbolNotFound(f"{TITLE} has no exchange rate for {symbol}. Check the symbol.", provider=NAME)
    rate = expect_dict(rate, "exchange rate", provider=NAME, title=TITLE)
    return Ticker(
        symbol=inst.symbol,
        ts=local_to_ms(rate.get("6. Last Refreshed"), str(rate.get("7. Time Zone") or "UTC"), what="rate time"),
        last=_num(rate, "5. Exchange Rate", "exchange rate"),
        bid=optional_decimal(rate.get("8. Bid Price"), "bid", provider=NAME, title=TITLE),
        ask=optional_decimal(rate.get("9. Ask Price"), "ask", provider=NAME, title=TITLE),
        venue=NAME,
    )


def map_time_series(body: Any, symbol: str, timeframe: str) -> list[Candle]:
    """TIME_SERIES_INTRADAY / TIME_SERIES_DAILY / FX_DAILY body -> chronological candles."""
    body = check_notes(body, symbol)
    series_key = next((k for k in body if isinstance(k, str) and k.startswith("Time Series")), None)
    if series_key is None:
        raise BadResponse(f"{TITLE} sent candles without a time series. It will be tried again.", provider=NAME)
    rows = expect_dict(body[series_key], "time series", provider=NAME, title=TITLE)
    meta = body.get("Meta Data") if isinstance(body.get("Meta Data"), dict) else {}
    zone = next((str(v) for k, v in meta.items() if str(k).endswith("Time Zone")), "US/Eastern")
    daily = timeframe == "1d"
    candles: list[Candle] = []
    for stamp, raw in rows.items():
        row = expect_dict(raw, "candle", provider=NAME, title=TITLE)
        volume = row.get("5. volume")
        candles.append(
            Candle(
                ts=_day_ms(stamp, "date") if daily else local_to_ms(stamp, zone, what="candle time"),
                open=_num(row, "1. open", "open"),
                high=_num(row, "2. high", "high"),
                low=_num(row, "3. low", "low"),
                close=_num(row, "4. close", "close"),
                volume=ZERO if volume is None else to_decimal(volume, "volume", provider=NAME, title=TITLE),
            )
        )
    candles.sort(key=lambda c: c.ts)  # Alpha Vantage lists the newest first
    return candles


# --------------------------------------------------------------------------- the client


class AlphaVantage(ProviderBase):
    name: ClassVar[str] = NAME
    title: ClassVar[str] = TITLE
    default_priority: ClassVar[int] = 30
    default_base_url: ClassVar[str] = "https://www.alphavantage.co"
    serves: ClassVar = {
        Capability.TICKER: frozenset({AssetClass.STOCK, AssetClass.FOREX, AssetClass.CRYPTO}),
        Capability.OHLCV: frozenset({AssetClass.STOCK, AssetClass.FOREX}),
    }
    timeframes: ClassVar = {AssetClass.STOCK: ("1m", "5m", "15m", "1h", "1d"), AssetClass.FOREX: ("1d",)}
    # Free plan: about 5 requests a minute (the bucket) and 25 a day (the RequestBudget).
    guard_config: ClassVar[GuardConfig] = GuardConfig(
        rate_per_second=5 / 60, burst=1, call_timeout=15.0, retry_attempts=2, max_concurrent=1
    )
    key_hint: ClassVar[str] = "Get a free key at https://www.alphavantage.co/support/#api-key and add it in the settings."

    def __init__(
        self,
        api_key: str | None = None,
        *,
        daily_limit: int | None = FREE_DAILY_LIMIT,
        full_history: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key, **kwargs)
        self.full_history = full_history
        self.budget = (
            RequestBudget(daily_limit, title=TITLE, provider=NAME, wall=self._wall) if daily_limit else None
        )

    def _make_http(self, session: aiohttp.ClientSession | None) -> HttpClient:
        # Alpha Vantage takes the key only in the query string: HttpClient adds it at the
        # moment of sending and masks it in every message.
        secret = {"apikey": self._api_key} if self._api_key else {}
        return HttpClient(
            self.guard, self.base_url, title=TITLE, provider=NAME, headers={"Accept": "application/json"},
            secret_params=secret, session=session, wall=self._wall,
        )

    async def _query(self, inst: Instrument, params: dict[str, str], mapper: Any, what: str) -> Any:
        return await self.http.get(
            QUERY_PATH,
            params,
            lambda reply: mapper(decode(reply, inst.symbol)),
            what=f"{inst.symbol} {what}",
            budget=self.budget,
        )

    async def _ticker(self, inst: Instrument) -> Ticker:
        params = request_params(inst, Capability.TICKER)
        mapper = map_global_quote if inst.asset_class is AssetClass.STOCK else map_exchange_rate
        return await self._query(inst, params, lambda body: mapper(body, inst.symbol), "quote")

    async def _ohlcv(self, inst: Instrument, timeframe: str, since: int | None, limit: int) -> list[Candle]:
        full = self.full_history and (since is not None or limit > COMPACT_ROWS)
        params = request_params(inst, Capability.OHLCV, timeframe, full=full)
        return await self._query(inst, params, lambda body: map_time_series(body, inst.symbol, timeframe), "candles")

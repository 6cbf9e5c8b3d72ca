"""Yahoo Finance: prices, candles and names for every asset class from the v8 chart
endpoint, `GET /v8/finance/chart/{symbol}`. Unofficial and keyless: requests are few,
slow and identified (see `guard_config`).

Symbols (ours -> Yahoo's):
    BTC/USD -> BTC-USD        crypto: BASE-QUOTE
    EUR/USD -> EURUSD=X       forex: BASEQUOTE=X
    AAPL    -> AAPL           stocks and ETFs as they are; a share class `.A/.B/.C`
    BRK.B   -> BRK-B          is written with a hyphen (exchange suffixes such as .L stay)
    ^GSPC   -> ^GSPC          indices as they are (sent URL-encoded: %5EGSPC)

Response (no official documentation exists; the shape below is the one every client
and recorded test fixture agrees on, e.g. yfinance and yahoo-finance2):

    {"chart": {"result": [{"meta": {"currency": "USD", "symbol": "AAPL", "exchangeName": "NMS",
                                    "fullExchangeName": "NasdaqGS", "instrumentType": "EQUITY",
                                    "regularMarketTime": 1717185601, "gmtoffset": -14400,
                                    "regularMarketPrice": 192.25, "regularMarketDayHigh": 192.57,
                                    "regularMarketDayLow": 189.91, "regularMarketVolume": 75158277,
                                    "longName": "Apple Inc.", "priceHint": 2, ...},
                           "timestamp": [1717162200, ...],
                           "indicators": {"quote": [{"open": [...], "high": [...], "low": [...],
                                                     "close": [...], "volume": [...]}]}}],
               "error": null}}

Errors: an unknown symbol is HTTP 404 with
`{"chart": {"result": null, "error": {"code": "Not Found", "description": "No data found,
symbol may be delisted"}}}`; a bad range or interval is 400/422 with the same `error`
object ("Bad Request", "Unprocessable Entity"); throttling is HTTP 429 with the plain
text body "Too Many Requests" (and a request without a browser-like User-Agent is
throttled at once, so one is always sent).

Decisions:
* Yahoo's indicator arrays carry binary-float noise (130.2899932861328). They are
  read exactly (Decimal from the JSON text) and then rounded to `meta.priceHint`
  decimals, Yahoo's own precision for the instrument, which removes exactly that noise.
* Rows whose open/high/low/close are null (no trade in the bucket) are skipped: gaps
  stay gaps, as in app.market.candles. A null volume is zero.
* Daily candles are moved to 00:00 UTC of their trading date in the exchange's time
  (`gmtoffset`); intraday candles keep Yahoo's open time (an exchange that opens at
  half past the hour has 1h candles at :30).
* For markets with sessions, the ticker's `*_24h` fields hold the current (or last)
  regular session: its open, high, low and volume. Forex and index volumes, which
  Yahoo reports as 0, are left out.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote as url_quote

import aiohttp

from app.domain import TIMEFRAMES, ZERO, Candle, Ticker
from app.market.providers.base import (
    DAY_MS,
    AssetClass,
    BadResponse,
    Capability,
    HttpClient,
    HttpReply,
    Instrument,
    ProviderBase,
    ProviderError,
    RateLimited,
    SymbolInfo,
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

__all__ = ["Yahoo", "chart_result", "decode", "map_candles", "map_metadata", "map_ticker", "yahoo_symbol"]

NAME = "yahoo"
TITLE = "Yahoo Finance"
CHART_PATH = "/v8/finance/chart/"
USER_AGENT = "Mozilla/5.0 (compatible; MeridianTerminal/0.1)"
BLOCKED_WAIT = 300.0  # seconds before asking again after Yahoo refuses this computer (401/403)

INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "1h": "60m", "1d": "1d"}
"""Our timeframe -> Yahoo's interval. Yahoo has no 4h."""
MAX_SPAN_DAYS = {"1m": 7, "5m": 59, "15m": 59, "1h": 729, "1d": 36500}
"""How far back Yahoo serves each interval (1m: 8 days a request within the last 30;
other intraday: 60 days; 1h: 730 days)."""

_SHARE_CLASS = re.compile(r"\.([A-C])$")
_ALL = frozenset(AssetClass)


def yahoo_symbol(inst: Instrument) -> str:
    if inst.asset_class is AssetClass.CRYPTO:
        return f"{inst.base}-{inst.quote}"
    if inst.asset_class is AssetClass.FOREX:
        return f"{inst.base}{inst.quote}=X"
    if inst.asset_class is AssetClass.STOCK:
        return _SHARE_CLASS.sub(r"-\1", inst.base)
    return inst.base  # indices: ^GSPC


def chart_path(inst: Instrument) -> str:
    return CHART_PATH + url_quote(yahoo_symbol(inst), safe="-.=")


# --------------------------------------------------------------------------- errors


def _chart_error(error: Any, symbol: str) -> ProviderError:
    if isinstance(error, dict):
        code = str(error.get("code") or "").strip()
        description = scrub(str(error.get("description") or ""), 160).rstrip(".")
    else:
        code, description = "", scrub(str(error), 160).rstrip(".")
    said = f" ({description})" if description else ""
    lowered = code.lower()
    if lowered == "not found":
        return SymbolNotFound(f"{TITLE} has no data for {symbol}{said}. Check the symbol.", provider=NAME)
    if lowered == "too many requests":
        return RateLimited(
            f"{TITLE} is limiting requests from this computer{said}; its prices resume in about a minute.",
            provider=NAME,
            retry_after=60.0,
            resets="minute",
        )
    if lowered in ("unauthorized", "forbidden"):
        return _blocked(code, description)
    if lowered in ("internal server error", "service unavailable", "bad gateway", "gateway timeout"):
        return Unavailable(f"{TITLE} had a server error{said}. It will be tried again.", provider=NAME)
    return ProviderError(f"{TITLE} refused the request for {symbol}{said}.", provider=NAME)


def _blocked(what: str, detail: str = "") -> RateLimited:
    said = f": {detail}" if detail else ""
    return RateLimited(
        f"{TITLE} is refusing requests from this computer for now ({what}{said}); it will be asked again "
        f"in {BLOCKED_WAIT / 60:.0f} minutes, and other providers are used meanwhile.",
        provider=NAME,
        retry_after=BLOCKED_WAIT,
    )


def decode(reply: HttpReply, symbol: str) -> dict[str, Any]:
    """An HTTP answer from the chart endpoint -> its body, or the ProviderError it stands for."""
    body = try_loads(reply.text)
    if isinstance(body, dict):
        envelope = body.get("chart") if "chart" in body else body.get("finance")
        if isinstance(envelope, dict) and envelope.get("error"):
            raise _chart_error(envelope["error"], symbol)
    if reply.status == 429:
        raise RateLimited(
            f"{TITLE} is limiting requests from this computer (HTTP 429 Too Many Requests); "
            "its prices resume in about a minute.",
            provider=NAME,
            retry_after=reply.retry_after or 60.0,
            resets="minute",
        )
    if reply.status in (401, 403):
        raise _blocked(f"HTTP {reply.status}")
    if reply.status >= 300 or body is None:
        if reply.status < 300:
            loads(reply.text, provider=NAME, title=TITLE)  # raises BadResponse
        raise http_status_error(reply.status, title=TITLE, provider=NAME, retry_after=reply.retry_after)
    return expect_dict(body, "chart", provider=NAME, title=TITLE)


def chart_result(body: Any, symbol: str) -> dict[str, Any]:
    """`chart.result[0]`, or the error the body stands for (SymbolNotFound when there is no result)."""
    body = expect_dict(body, "chart", provider=NAME, title=TITLE)
    chart = expect_dict(body.get("chart"), "chart", provider=NAME, title=TITLE)
    if chart.get("error"):
        raise _chart_error(chart["error"], symbol)
    results = chart.get("result")
    if not results:  # null or [] without an error: nothing is known about the symbol
        raise SymbolNotFound(f"{TITLE} has no data for {symbol}. Check the symbol.", provider=NAME)
    if not isinstance(results, list):
        raise BadResponse(f"{TITLE} sent a chart without results. It will be tried again.", provider=NAME)
    return expect_dict(results[0], "chart result", provider=NAME, title=TITLE)


# --------------------------------------------------------------------------- mappers


def _price_hint(meta: dict[str, Any]) -> int | None:
    hint = meta.get("priceHint")
    if isinstance(hint, int) and not isinstance(hint, bool) and 0 <= hint <= 12:
        return hint
    return None


def _rounded(value: Decimal, hint: int | None) -> Decimal:
    if hint is None:
        return value
    try:
        return value.quantize(Decimal(1).scaleb(-hint))
    except InvalidOperation:  # more digits than the context holds: leave it exact
        return value


def _price(value: Any, what: str, hint: int | None) -> Decimal:
    return _rounded(to_decimal(value, what, provider=NAME, title=TITLE), hint)


def _optional_price(value: Any, what: str, hint: int | None) -> Decimal | None:
    number = optional_decimal(value, what, provider=NAME, title=TITLE)
    return None if number is None else _rounded(number, hint)


def _quote_arrays(result: dict[str, Any]) -> dict[str, list[Any]]:
    indicators = result.get("indicators")
    quotes = indicators.get("quote") if isinstance(indicators, dict) else None
    quote = quotes[0] if isinstance(quotes, list) and quotes and isinstance(quotes[0], dict) else {}
    arrays: dict[str, list[Any]] = {}
    for key in ("open", "high", "low", "close", "volume"):
        values = quote.get(key)
        arrays[key] = values if isinstance(values, list) else []
    return arrays


def map_ticker(body: Any, symbol: str) -> Ticker:
    """Chart body (range=1d, interval=1d) -> Ticker from `meta`, with the session's open from the bar."""
    inst = parse_symbol(symbol)
    result = chart_result(body, symbol)
    meta = expect_dict(result.get("meta"), "chart meta", provider=NAME, title=TITLE)
    hint = _price_hint(meta)
    if meta.get("regularMarketPrice") is None:
        raise SymbolNotFound(f"{TITLE} has no current price for {symbol}.", provider=NAME)
    last = _price(meta["regularMarketPrice"], "price", hint)
    opens = [o for o in _quote_arrays(result)["open"] if o is not None]
    volume = optional_decimal(meta.get("regularMarketVolume"), "volume", provider=NAME, title=TITLE)
    if volume == 0 and inst.asset_class in (AssetClass.FOREX, AssetClass.INDEX):
        volume = None  # Yahoo writes 0 where no volume exists
    return Ticker(
        symbol=inst.symbol,
        ts=to_int(meta.get("regularMarketTime"), "price time", provider=NAME, title=TITLE) * 1000,
        last=last,
        open_24h=_price(opens[-1], "open", hint) if opens else None,
        high_24h=_optional_price(meta.get("regularMarketDayHigh"), "day high", hint),
        low_24h=_optional_price(meta.get("regularMarketDayLow"), "day low", hint),
        base_volume_24h=volume,
        venue=NAME,
    )


def map_candles(body: Any, symbol: str, timeframe: str) -> list[Candle]:
    """Chart body -> chronological candles; an answer without bars is an empty list."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    result = chart_result(body, symbol)
    meta = result.get("meta") if isinstance(result.get("meta"), dict) else {}
    hint = _price_hint(meta)
    offset_ms = meta.get("gmtoffset", 0) * 1000 if isinstance(meta.get("gmtoffset"), int) else 0
    stamps = result.get("timestamp") or []
    if not isinstance(stamps, list):
        raise BadResponse(f"{TITLE} sent a chart without timestamps. It will be tried again.", provider=NAME)
    q = _quote_arrays(result)
    if not stamps:
        return []
    if any(len(q[k]) != len(stamps) for k in ("open", "high", "low", "close")):
        raise BadResponse(f"{TITLE} sent a chart whose columns do not line up. It will be tried again.", provider=NAME)
    volumes = q["volume"] if len(q["volume"]) == len(stamps) else [None] * len(stamps)
    daily = TIMEFRAMES[timeframe] >= DAY_MS // 1000
    candles: list[Candle] = []
    for i, stamp in enumerate(stamps):
        o, h, lo, c = q["open"][i], q["high"][i], q["low"][i], q["close"][i]
        if o is None or h is None or lo is None or c is None:
            continue  # no trade in this bucket: a gap, not a flat candle
        ts = to_int(stamp, "timestamp", provider=NAME, title=TITLE) * 1000
        if daily:
            ts = day_floor(ts + offset_ms)
        v = volumes[i]
        candles.append(
            Candle(
                ts=ts,
                open=_price(o, "open", hint),
                high=_price(h, "high", hint),
                low=_price(lo, "low", hint),
                close=_price(c, "close", hint),
                volume=ZERO if v is None else to_decimal(v, "volume", provider=NAME, title=TITLE),
            )
        )
    candles.sort(key=lambda candle: candle.ts)
    return candles


def map_metadata(body: Any, symbol: str) -> SymbolInfo:
    inst = parse_symbol(symbol)
    meta = expect_dict(chart_result(body, symbol).get("meta"), "chart meta", provider=NAME, title=TITLE)
    name = meta.get("longName") or meta.get("shortName") or meta.get("symbol") or inst.symbol
    return SymbolInfo(
        symbol=inst.symbol,
        name=str(name),
        asset_class=inst.asset_class,
        currency=str(meta.get("currency") or inst.quote),
        exchange=str(meta.get("fullExchangeName") or meta.get("exchangeName") or ""),
        provider=NAME,
        provider_symbol=str(meta.get("symbol") or yahoo_symbol(inst)),
    )


# --------------------------------------------------------------------------- the client


class Yahoo(ProviderBase):
    name: ClassVar[str] = NAME
    title: ClassVar[str] = TITLE
    default_priority: ClassVar[int] = 40  # unofficial: the last resort, though it serves everything
    default_base_url: ClassVar[str] = "https://query1.finance.yahoo.com"
    requires_key: ClassVar[bool] = False
    serves: ClassVar = {capability: _ALL for capability in Capability}
    timeframes: ClassVar = {asset: tuple(INTERVALS) for asset in AssetClass}
    # Gentle: one request every two seconds on average, two at a time, one retry.
    guard_config: ClassVar[GuardConfig] = GuardConfig(
        rate_per_second=0.5, burst=3, call_timeout=10.0, retry_attempts=2, max_concurrent=2
    )

    def __init__(self, api_key: str | None = None, *, user_agent: str = USER_AGENT, **kwargs: Any) -> None:
        self._user_agent = user_agent
        super().__init__(api_key, **kwargs)

    def _make_http(self, session: aiohttp.ClientSession | None) -> HttpClient:
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        return HttpClient(
            self.guard, self.base_url, title=TITLE, provider=NAME, headers=headers, session=session, wall=self._wall
        )

    async def _chart(self, inst: Instrument, params: dict[str, str], mapper: Any, what: str) -> Any:
        return await self.http.get(
            chart_path(inst), params, lambda reply: mapper(decode(reply, inst.symbol)), what=f"{inst.symbol} {what}"
        )

    async def _ticker(self, inst: Instrument) -> Ticker:
        params = {"range": "1d", "interval": "1d", "includePrePost": "false"}
        return await self._chart(inst, params, lambda body: map_ticker(body, inst.symbol), "quote")

    async def _metadata(self, inst: Instrument) -> SymbolInfo:
        params = {"range": "1d", "interval": "1d"}
        return await self._chart(inst, params, lambda body: map_metadata(body, inst.symbol), "details")

    def _period(self, inst: Instrument, timeframe: str, since: int | None, limit: int) -> tuple[int, int]:
        """(period1, period2) in epoch seconds covering `limit` candles."""
        step = TIMEFRAMES[timeframe]
        now = int(self._wall())
        oldest = now - MAX_SPAN_DAYS[timeframe] * 86_400
        if since is not None:
            start = max(since // 1000, oldest)
            return start, min(now, start + (limit + 1) * step)
        # Markets with sessions trade a fraction of the clock: ask for enough calendar
        # time to hold `limit` candles (the result is trimmed to `limit`).
        if inst.asset_class is AssetClass.CRYPTO:
            factor = 1.1
        else:
            factor = 1.6 if timeframe == "1d" else 5.5
        return max(oldest, now - int(limit * step * factor) - step), now

    async def _ohlcv(self, inst: Instrument, timeframe: str, since: int | None, limit: int) -> list[Candle]:
        period1, period2 = self._period(inst, timeframe, since, limit)
        params = {
            "interval": INTERVALS[timeframe],
            "period1": str(period1),
            "period2": str(period2),
            "includePrePost": "false",
        }
        return await self._chart(inst, params, lambda body: map_candles(body, inst.symbol, timeframe), "candles")

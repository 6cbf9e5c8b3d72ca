"""Local servers on 127.0.0.1 that speak the market-data providers' REST APIs.

    async with YahooServer() as srv:              # CoinMarketCapServer, AlphaVantageServer, PolygonServer
        provider = Yahoo(base_url=srv.url, guard=...)
        srv.faults.next_status(500, times=2)      # the provider's own error body for that status
        srv.faults.rate_limit(retry_after=2)      # 429 (Alpha Vantage: its 200 "Note" instead)
        srv.faults.delay(1.0)                     # answer late: a client timeout
        srv.faults.malformed()                    # the next answer cut in half: invalid JSON
        srv.faults.empty()                        # the provider's documented "no results" answer
        srv.faults.redirect_loop()                # 302 to itself: aiohttp's error then holds the URL
        await srv.faults.refuse()                 # connection refused until resume()
        srv.requests                              # what was asked: path, query, interesting headers

Bodies are shaped exactly like each provider's documented responses (see the
docstrings of app/market/providers/*.py for the sources); error answers are the
providers' own: CoinMarketCap's `status.error_code`, Yahoo's `chart.error` and its
plain-text 429, Alpha Vantage's HTTP-200 "Error Message" / "Note" / "Information",
Polygon's `status: ERROR / NOT_AUTHORIZED / NOT_FOUND`. Numbers are written as
the providers write them: JSON doubles for CoinMarketCap, Yahoo and Polygon
(including Yahoo's float noise), strings for Alpha Vantage.

Prices are a pure function of (symbol, bar index), so tests can assert exact values.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Self
from zoneinfo import ZoneInfo

from aiohttp import web

from tests.servers.base import HOST, Faults, _Rule, plain_error, start_site, stop_site

API_KEY = "mt-provider-key-0123456789"
"""The key every provider server accepts (long and distinctive, so leak tests can search for it)."""

EASTERN = ZoneInfo("America/New_York")
DAY = 86_400


def request_id() -> str:
    return uuid.uuid4().hex


def dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def as_double(value: Decimal) -> float:
    """How a provider that serializes doubles writes `value` (shortest repr)."""
    return float(value)


# --------------------------------------------------------------------------- price model


BASE_PRICES: dict[str, tuple[Decimal, int]] = {
    # symbol (provider-neutral) -> (level, decimals)
    "AAPL": (Decimal("192.25"), 2),
    "IBM": (Decimal("165.71"), 4),
    "SPY": (Decimal("530.10"), 2),
    "^GSPC": (Decimal("5277.51"), 2),
    "BTC/USD": (Decimal("67432.15"), 2),
    "ETH/USD": (Decimal("3763.20"), 2),
    "EUR/USD": (Decimal("1.0862"), 4),
}


@dataclass(frozen=True, slots=True)
class Bar:
    open_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def bar(symbol: str, index: int, open_s: int) -> Bar:
    """Bar number `index` of `symbol`: deterministic, inside a band around its level."""
    level, places = BASE_PRICES[symbol]
    q = Decimal(1).scaleb(-places)
    step = max(q, (level / 10_000).quantize(q))
    o = level + step * ((index * 7) % 13 - 6)
    c = level + step * ((index * 5) % 13 - 6)
    return Bar(open_s, o, max(o, c) + step, min(o, c) - step, c, Decimal(1000 + (index * 97) % 500))


def bars(symbol: str, step_s: int, start_s: int, end_s: int, *, origin_s: int = 0) -> list[Bar]:
    """The bars whose open is in [start_s, end_s], aligned to `origin_s` + k * step_s."""
    first = start_s - (start_s - origin_s) % step_s
    if first < start_s:
        first += step_s
    return [bar(symbol, (t - origin_s) // step_s, t) for t in range(first, end_s + 1, step_s)]


# --------------------------------------------------------------------------- faults and the server


class ProviderFaults(Faults):
    """Faults (tests/servers/base.py) plus the two that only a JSON API has."""

    def __init__(self, stop: Callable[[], Any], start: Callable[[], Any]) -> None:
        super().__init__(stop, start)
        self._malformed: list[_Rule] = []
        self._empty: list[_Rule] = []
        self._redirects: list[_Rule] = []

    def malformed(self, times: int | None = 1, *, path: str | None = None) -> None:
        """Cut the next `times` answers in half, so they are no longer JSON."""
        self._malformed.append(_Rule(200, times, path))

    def empty(self, times: int | None = 1, *, path: str | None = None) -> None:
        """Answer the next `times` requests with the provider's documented empty result."""
        self._empty.append(_Rule(200, times, path))

    def redirect_loop(self, times: int | None = None, *, path: str | None = None) -> None:
        """Answer 302 to the very same URL (query and all): aiohttp gives up with TooManyRedirects,
        an error whose message holds the full URL, so a key in the query would leak through it."""
        self._redirects.append(_Rule(302, times, path))

    def clear(self) -> None:
        super().clear()
        self._malformed.clear()
        self._empty.clear()
        self._redirects.clear()

    @staticmethod
    def _take_rule(rules: list[_Rule], path: str) -> bool:
        for rule in rules:
            if rule.matches(path):
                rule.consume()
                return True
        return False


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # user-agent, authorization, x-cmc_pro_api_key (lowercase names)
    status: int = 0


_WATCHED_HEADERS = ("user-agent", "authorization", "x-cmc_pro_api_key", "accept")


class ProviderServer:
    """One provider's REST API on a free port of 127.0.0.1."""

    name: ClassVar[str] = ""

    def __init__(self, *, api_key: str = API_KEY, clock: Callable[[], float] = time.time) -> None:
        self.api_key = api_key
        self.clock = clock
        self.requests: list[Seen] = []
        self.errors: list[BaseException] = []
        self.faults = ProviderFaults(self._stop_site, self._start_site)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await self._start_site()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    async def _start_site(self) -> None:
        assert self._runner is not None
        self._site, self.port = await start_site(self._runner, self.port)

    async def _stop_site(self) -> None:
        assert self._runner is not None and self._site is not None
        await stop_site(self._runner, self._site)
        self._site = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def now(self) -> int:
        return int(self.clock())

    # ---- what each provider defines

    def routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        """The provider's own answer for an injected HTTP status."""
        return plain_error(status, retry_after)

    def empty_response(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    # ---- plumbing

    def json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, text=dumps(body), content_type="application/json", headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        path = request.path
        seconds = self.faults._take_delay(path)
        if seconds:
            await asyncio.sleep(seconds)
        rule = self.faults._take(path)
        if rule is not None:
            if rule.body is not None:
                response: web.StreamResponse = web.Response(status=rule.status, text=rule.body)
                if rule.retry_after is not None:
                    response.headers["Retry-After"] = str(int(rule.retry_after))
            else:
                response = self.error_response(rule.status, rule.retry_after)
        elif ProviderFaults._take_rule(self.faults._redirects, path):
            response = web.Response(status=302, headers={"Location": request.path_qs})
        elif ProviderFaults._take_rule(self.faults._empty, path):
            response = self.empty_response(request)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
            except Exception as exc:  # a bug here must fail the test that caused it
                self.errors.append(exc)
                raise
            if ProviderFaults._take_rule(self.faults._malformed, path) and isinstance(response, web.Response):
                text = response.text or ""
                response = web.Response(status=response.status, text=text[: len(text) // 2],
                                        content_type="application/json")
        headers = {k: request.headers[k] for k in _WATCHED_HEADERS if k in request.headers}
        self.requests.append(Seen(request.method, path, dict(request.query), headers, response.status))
        return response


# --------------------------------------------------------------------------- CoinMarketCap


CMC_COINS: dict[str, list[dict[str, Any]]] = {
    # A dead token shares Bitcoin's symbol and is listed first, as CoinMarketCap does for
    # ETC: the client must pick the active coin with the best rank.
    "BTC": [
        {"id": 31337, "name": "Bitcoin Old", "symbol": "BTC", "slug": "bitcoin-old", "is_active": 0,
         "cmc_rank": None, "num_market_pairs": 0},
        {"id": 1, "name": "Bitcoin", "symbol": "BTC", "slug": "bitcoin", "is_active": 1, "cmc_rank": 1,
         "num_market_pairs": 11000},
    ],
    "ETH": [{"id": 1027, "name": "Ethereum", "symbol": "ETH", "slug": "ethereum", "is_active": 1, "cmc_rank": 2,
             "num_market_pairs": 9000}],
}
CMC_CONVERTS = {"USD": Decimal(1), "EUR": Decimal("0.92"), "USDT": Decimal("1.0003")}


class CoinMarketCapServer(ProviderServer):
    """GET /v2/cryptocurrency/quotes/latest with the X-CMC_PRO_API_KEY header."""

    name = "coinmarketcap"

    def __init__(self, *, daily_credits: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.daily_credits = daily_credits  # None: unlimited; 0 and below: error 1009

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v2/cryptocurrency/quotes/latest", self.quotes_latest)

    def status(self, code: int = 0, message: str | None = None, credits: int = 0) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"timestamp": stamp, "error_code": code, "error_message": message, "elapsed": 12,
                "credit_count": credits, "notice": None}

    def fail(self, http: int, code: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = {"Retry-After": str(int(retry_after))} if retry_after else None
        return self.json({"status": self.status(code, message)}, http, headers)

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        if status == 429:
            return self.fail(429, 1008, "You've exceeded your API Key's HTTP request rate limit. "
                                        "Rate limits reset every minute.", retry_after)
        if status >= 500:
            return self.fail(status, 500, "An internal server error occurred.")
        return super().error_response(status, retry_after)

    def empty_response(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "BTC").upper()
        return self.json({"status": self.status(credits=1), "data": {symbol: []}})

    async def quotes_latest(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-CMC_PRO_API_KEY")
        if not key:
            return self.fail(401, 1002, "API key missing.")
        if key != self.api_key:
            return self.fail(401, 1001, "This API Key is invalid.")
        if self.daily_credits is not None:
            if self.daily_credits <= 0:
                return self.fail(429, 1009, "You've exceeded your API Key's daily rate limit.")
            self.daily_credits -= 1
        convert = request.query.get("convert", "USD").upper()
        if convert not in CMC_CONVERTS:
            return self.fail(400, 400, f'Invalid value for "convert": "{convert}"')
        symbols = [s.strip().upper() for s in request.query.get("symbol", "").split(",") if s.strip()]
        unknown = [s for s in symbols if s not in CMC_COINS]
        if not symbols or unknown:
            return self.fail(400, 400, f'Invalid value for "symbol": "{",".join(unknown or symbols)}"')
        stamp = self.status()["timestamp"]
        data: dict[str, list[dict[str, Any]]] = {}
        for symbol in symbols:
            entries = []
            for coin in CMC_COINS[symbol]:
                entry = {**coin, "date_added": "2013-04-28T00:00:00.000Z", "tags": ["mineable"],
                         "max_supply": 21000000, "circulating_supply": 19705662, "total_supply": 19705662,
                         "infinite_supply": False, "platform": None, "is_fiat": 0,
                         "self_reported_circulating_supply": None, "self_reported_market_cap": None,
                         "tvl_ratio": None, "last_updated": stamp}
                if coin["is_active"]:
                    level, _ = BASE_PRICES[f"{symbol}/USD"]
                    price = level * CMC_CONVERTS[convert]
                    quote = {"price": as_double(price), "volume_24h": 39782528268.71518, "volume_change_24h": 9.2595,
                             "percent_change_1h": -0.98631865, "percent_change_24h": 2.5,
                             "percent_change_7d": -0.18375664, "percent_change_30d": -22.83264803,
                             "percent_change_60d": -35.56666606, "percent_change_90d": -29.38831116,
                             "market_cap": as_double(price * 19705662), "market_cap_dominance": 46.0844,
                             "fully_diluted_market_cap": as_double(price * 21000000), "tvl": None,
                             "last_updated": stamp}
                else:
                    quote = {"price": None, "volume_24h": None, "percent_change_24h": None, "last_updated": stamp}
                entry["quote"] = {convert: quote}
                entries.append(entry)
            data[symbol] = entries
        return self.json({"status": self.status(credits=1), "data": data})


# --------------------------------------------------------------------------- Yahoo Finance


@dataclass(frozen=True, slots=True)
class YahooListing:
    symbol: str  # ours, the key of BASE_PRICES
    instrument_type: str
    exchange: str
    full_exchange: str
    currency: str
    timezone: str
    gmtoffset: int
    session_open_s: int  # seconds after local midnight when daily bars are stamped
    long_name: str
    price_hint: int


YAHOO_LISTINGS = {
    "AAPL": YahooListing("AAPL", "EQUITY", "NMS", "NasdaqGS", "USD", "America/New_York", -14400, 34200,
                         "Apple Inc.", 2),
    "^GSPC": YahooListing("^GSPC", "INDEX", "SNP", "SNP", "USD", "America/New_York", -14400, 34200,
                          "S&P 500", 2),
    "BTC-USD": YahooListing("BTC/USD", "CRYPTOCURRENCY", "CCC", "CCC", "USD", "UTC", 0, 0, "Bitcoin USD", 2),
    "EURUSD=X": YahooListing("EUR/USD", "CURRENCY", "CCY", "CCY", "USD", "Europe/London", 3600, 0,
                             "EUR/USD", 4),
}
YAHOO_INTERVALS = {"1m": 60, "2m": 120, "5m": 300, "15m": 900, "30m": 1800, "60m": 3600, "90m": 5400,
                   "1h": 3600, "1d": DAY, "5d": 5 * DAY, "1wk": 7 * DAY, "1mo": 30 * DAY, "3mo": 90 * DAY}
YAHOO_RANGES = {"1d": DAY, "5d": 5 * DAY, "1mo": 30 * DAY, "3mo": 90 * DAY, "6mo": 180 * DAY, "1y": 365 * DAY,
                "2y": 730 * DAY, "5y": 1826 * DAY}


def noisy(value: Decimal) -> float:
    """Yahoo's arrays hold float32 values widened to double: 192.25 -> 192.25, 130.29 -> 130.2899932861328."""
    return struct.unpack("f", struct.pack("f", float(value)))[0]


class YahooServer(ProviderServer):
    """GET /v8/finance/chart/{symbol}; no key, but a browser-like User-Agent is required."""

    name = "yahoo"

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v8/finance/chart/{symbol}", self.chart)

    @staticmethod
    def chart_error(status: int, code: str, description: str) -> web.Response:
        return web.Response(status=status, text=dumps({"chart": {"result": None, "error": {
            "code": code, "description": description}}}), content_type="application/json")

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        if status == 429:  # Yahoo's throttle is plain text, not JSON
            headers = {"Retry-After": str(int(retry_after))} if retry_after else None
            return web.Response(status=429, text="Too Many Requests\r\n", headers=headers)
        if status >= 500:
            return self.chart_error(status, "Internal Server Error", "Internal Server Error")
        return super().error_response(status, retry_after)

    def empty_response(self, request: web.Request) -> web.Response:
        symbol = request.match_info.get("symbol", "AAPL")
        listing = YAHOO_LISTINGS.get(symbol, YAHOO_LISTINGS["AAPL"])
        result = {"meta": self.meta(symbol, listing, "1d", "1d"), "indicators": {"quote": [{}]}}
        return self.json({"chart": {"result": [result], "error": None}})

    def meta(self, symbol: str, listing: YahooListing, interval: str, range_: str | None) -> dict[str, Any]:
        now = self.now()
        day_start = now - (now + listing.gmtoffset) % DAY - listing.gmtoffset
        today = bar(listing.symbol, (day_start + listing.session_open_s) // DAY, day_start + listing.session_open_s)
        last = bar(listing.symbol, now // 60, now - now % 60).close
        meta = {
            "currency": listing.currency, "symbol": symbol, "exchangeName": listing.exchange,
            "fullExchangeName": listing.full_exchange, "instrumentType": listing.instrument_type,
            "firstTradeDate": 345479400, "regularMarketTime": now - 5, "hasPrePostMarketData": True,
            "gmtoffset": listing.gmtoffset, "timezone": "EDT" if listing.gmtoffset == -14400 else "UTC",
            "exchangeTimezoneName": listing.timezone, "regularMarketPrice": as_double(last),
            "fiftyTwoWeekHigh": as_double(today.high * 2), "fiftyTwoWeekLow": as_double(today.low / 2),
            "regularMarketDayHigh": as_double(max(today.high, last)),
            "regularMarketDayLow": as_double(min(today.low, last)),
            "regularMarketVolume": 0 if listing.instrument_type in ("CURRENCY",) else int(today.volume) * 1000,
            "longName": listing.long_name, "shortName": listing.long_name,
            "chartPreviousClose": as_double(today.open), "priceHint": listing.price_hint,
            "currentTradingPeriod": {
                "pre": {"timezone": "EDT", "start": day_start + 14400, "end": day_start + 34200,
                        "gmtoffset": listing.gmtoffset},
                "regular": {"timezone": "EDT", "start": day_start + 34200, "end": day_start + 57600,
                            "gmtoffset": listing.gmtoffset},
                "post": {"timezone": "EDT", "start": day_start + 57600, "end": day_start + 72000,
                         "gmtoffset": listing.gmtoffset}},
            "dataGranularity": interval,
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        if range_ is not None:
            meta["range"] = range_
        return meta

    async def chart(self, request: web.Request) -> web.Response:
        if "Mozilla" not in request.headers.get("User-Agent", ""):
            return web.Response(status=429, text="Too Many Requests\r\n")  # what Yahoo does to scripts
        symbol = request.match_info["symbol"]
        listing = YAHOO_LISTINGS.get(symbol)
        if listing is None:
            return self.chart_error(404, "Not Found", "No data found, symbol may be delisted")
        q = request.query
        interval = q.get("interval", "1d")
        if interval not in YAHOO_INTERVALS:
            return self.chart_error(400, "Bad Request", f"Invalid input - interval={interval} is not supported. "
                                    "Valid intervals: [1m, 2m, 5m, 15m, 30m, 60m, 90m, 1h, 1d, 5d, 1wk, 1mo, 3mo]")
        now = self.now()
        if "period1" in q:
            start, end = int(q["period1"]), min(int(q.get("period2", now)), now)
        else:
            range_ = q.get("range", "1mo")
            start, end = now - YAHOO_RANGES.get(range_, 30 * DAY), now
        step = YAHOO_INTERVALS[interval]
        if interval == "1m" and end - start > 8 * DAY:
            return self.chart_error(422, "Unprocessable Entity", f"1m data not available for startTime={start} "
                                    f"and endTime={end}. Only 8 days worth of 1m granularity data are allowed "
                                    "to be fetched per request.")
        # Daily bars are stamped at the session's open (13:30 UTC for New York), intraday
        # bars on the clock.
        origin = (listing.session_open_s - listing.gmtoffset) % DAY if step >= DAY else 0
        rows = bars(listing.symbol, step, start, end, origin_s=origin)
        quote: dict[str, list[Any]] = {"open": [], "high": [], "low": [], "close": [], "volume": []}
        for i, row in enumerate(rows):
            gap = len(rows) > 3 and i == len(rows) - 3  # Yahoo writes null rows where nothing traded
            quote["open"].append(None if gap else noisy(row.open))
            quote["high"].append(None if gap else noisy(row.high))
            quote["low"].append(None if gap else noisy(row.low))
            quote["close"].append(None if gap else noisy(row.close))
            quote["volume"].append(None if gap else (0 if listing.instrument_type == "CURRENCY" else int(row.volume)))
        result: dict[str, Any] = {"meta": self.meta(symbol, listing, interval, q.get("range")),
                                  "indicators": {"quote": [quote]}}
        if rows:
            result["timestamp"] = [row.open_s for row in rows]
            if step >= DAY:
                result["indicators"]["adjclose"] = [{"adjclose": quote["close"]}]
        return self.json({"chart": {"result": [result], "error": None}})


# --------------------------------------------------------------------------- Alpha Vantage


AV_INVALID_KEY = ("the parameter apikey is invalid or missing. Please claim your free API key on "
                  "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds.")
AV_MINUTE_NOTE = ("Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and "
                  "500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target "
                  "a higher API call frequency.")
AV_PREMIUM = ("Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the "
              "premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints")


def av_daily_note(key: str) -> str:
    """Alpha Vantage's daily-limit note, which echoes the caller's key."""
    return (f"We have detected your API key as {key} and our standard API rate limit is 25 requests per day. "
            "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly "
            "remove all daily rate limits.")


def av_invalid_call(function: str) -> str:
    return ("Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) "
            f"for {function}.")


AV_STOCKS = {"AAPL", "IBM"}
AV_PAIRS = {("EUR", "USD"), ("BTC", "USD")}
AV_INTRADAY = {"1min": 60, "5min": 300, "15min": 900, "30min": 1800, "60min": 3600}


def av_number(value: Decimal, places: int = 4) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


class AlphaVantageServer(ProviderServer):
    """GET /query?function=...&apikey=...; every answer is HTTP 200, errors included."""

    name = "alphavantage"

    def __init__(self, *, daily_limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.daily_limit = daily_limit  # answer the daily-limit note after this many requests
        self.served = 0

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/query", self.query)

    def empty_response(self, request: web.Request) -> web.Response:
        function = request.query.get("function", "")
        if function == "GLOBAL_QUOTE":
            return self.json({"Global Quote": {}})
        return self.json({"Meta Data": self.series_meta(request.query, "Compact"), self.series_key(request.query): {}})

    @staticmethod
    def series_key(q: Any) -> str:
        function = q.get("function", "")
        if function == "FX_DAILY":
            return "Time Series FX (Daily)"
        if function == "TIME_SERIES_DAILY":
            return "Time Series (Daily)"
        return f"Time Series ({q.get('interval', '5min')})"

    def series_meta(self, q: Any, size: str) -> dict[str, str]:
        function = q.get("function", "")
        now = datetime.fromtimestamp(self.now(), EASTERN)
        if function == "FX_DAILY":
            return {"1. Information": "Forex Daily Prices (open, high, low, close)", "2. From Symbol": q.get("from_symbol", ""),
                    "3. To Symbol": q.get("to_symbol", ""), "4. Output Size": size,
                    "5. Last Refreshed": now.strftime("%Y-%m-%d %H:%M:%S"), "6. Time Zone": "UTC"}
        if function == "TIME_SERIES_DAILY":
            return {"1. Information": "Daily Prices (open, high, low, close) and Volumes", "2. Symbol": q.get("symbol", ""),
                    "3. Last Refreshed": now.strftime("%Y-%m-%d"), "4. Output Size": size, "5. Time Zone": "US/Eastern"}
        return {"1. Information": f"Intraday ({q.get('interval', '5min')}) open, high, low, close prices and volume",
                "2. Symbol": q.get("symbol", ""), "3. Last Refreshed": now.strftime("%Y-%m-%d %H:%M:%S"),
                "4. Interval": q.get("interval", "5min"), "5. Output Size": size, "6. Time Zone": "US/Eastern"}

    async def query(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("apikey") != self.api_key:
            return self.json({"Error Message": AV_INVALID_KEY})
        self.served += 1
        if self.daily_limit is not None and self.served > self.daily_limit:
            return self.json({"Information": av_daily_note(self.api_key)})
        function = q.get("function", "")
        if function == "GLOBAL_QUOTE":
            return self.global_quote(q.get("symbol", "").upper())
        if function == "CURRENCY_EXCHANGE_RATE":
            return self.exchange_rate(q.get("from_currency", "").upper(), q.get("to_currency", "").upper())
        if function in ("TIME_SERIES_INTRADAY", "TIME_SERIES_DAILY", "FX_DAILY"):
            return self.time_series(q)
        return self.json({"Error Message": "This API function (" + function + ") does not exist."})

    def global_quote(self, symbol: str) -> web.Response:
        if symbol not in AV_STOCKS:
            return self.json({"Global Quote": {}})
        now = self.now()
        day = datetime.fromtimestamp(now, EASTERN).date()
        today = bar(symbol, now // DAY, now - now % DAY)
        previous = bar(symbol, now // DAY - 1, now - now % DAY - DAY)
        change = today.close - previous.close
        return self.json({"Global Quote": {
            "01. symbol": symbol, "02. open": av_number(today.open), "03. high": av_number(today.high),
            "04. low": av_number(today.low), "05. price": av_number(today.close), "06. volume": str(int(today.volume)),
            "07. latest trading day": day.isoformat(), "08. previous close": av_number(previous.close),
            "09. change": av_number(change), "10. change percent": f"{av_number(change / previous.close * 100)}%"}})

    def exchange_rate(self, base: str, quote: str) -> web.Response:
        if (base, quote) not in AV_PAIRS:
            return self.json({"Error Message": av_invalid_call("CURRENCY_EXCHANGE_RATE")})
        now = self.now()
        level = bar(f"{base}/{quote}", now // 60, now).close
        places = 8 if base == "BTC" else 5
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return self.json({"Realtime Currency Exchange Rate": {
            "1. From_Currency Code": base, "2. From_Currency Name": {"EUR": "Euro", "BTC": "Bitcoin"}[base],
            "3. To_Currency Code": quote, "4. To_Currency Name": "United States Dollar",
            "5. Exchange Rate": av_number(level, places), "6. Last Refreshed": stamp, "7. Time Zone": "UTC",
            "8. Bid Price": av_number(level - Decimal("0.0001"), places),
            "9. Ask Price": av_number(level + Decimal("0.0001"), places)}})

    def time_series(self, q: Any) -> web.Response:
        function = q["function"]
        size = q.get("outputsize", "compact")
        if function == "TIME_SERIES_DAILY" and size == "full":
            return self.json({"Information": AV_PREMIUM})
        if function == "FX_DAILY":
            pair = (q.get("from_symbol", "").upper(), q.get("to_symbol", "").upper())
            if pair not in AV_PAIRS:
                return self.json({"Error Message": av_invalid_call(function)})
            ours, zone = f"{pair[0]}/{pair[1]}", None
        else:
            ours, zone = q.get("symbol", "").upper(), EASTERN
            if ours not in AV_STOCKS:
                return self.json({"Error Message": av_invalid_call(function)})
        rows_wanted = 100 if size == "compact" else 1000
        now = self.now()
        series: dict[str, dict[str, str]] = {}
        places = 4
        if function == "TIME_SERIES_INTRADAY":
            interval = q.get("interval", "5min")
            if interval not in AV_INTRADAY:
                return self.json({"Error Message": av_invalid_call(function)})
            step = AV_INTRADAY[interval]
            rows = bars(ours, step, now - step * (rows_wanted + 1), now)[-rows_wanted:]
            for row in reversed(rows):  # newest first, as Alpha Vantage lists them
                stamp = datetime.fromtimestamp(row.open_s, EASTERN).strftime("%Y-%m-%d %H:%M:%S")
                series[stamp] = self.av_row(row, places, volume=True)
        else:
            rows = bars(ours, DAY, now - DAY * (rows_wanted + 1), now)[-rows_wanted:]
            for row in reversed(rows):
                stamp = datetime.fromtimestamp(row.open_s, UTC).date().isoformat()
                series[stamp] = self.av_row(row, places, volume=function != "FX_DAILY")
        return self.json({"Meta Data": self.series_meta(q, "Compact" if size == "compact" else "Full size"),
                          self.series_key(q): series})

    @staticmethod
    def av_row(row: Bar, places: int, *, volume: bool) -> dict[str, str]:
        out = {"1. open": av_number(row.open, places), "2. high": av_number(row.high, places),
               "3. low": av_number(row.low, places), "4. close": av_number(row.close, places)}
        if volume:
            out["5. volume"] = str(int(row.volume))
        return out


# --------------------------------------------------------------------------- Polygon


POLYGON_TICKERS = {"AAPL": "AAPL", "X:BTCUSD": "BTC/USD", "C:EURUSD": "EUR/USD", "I:SPX": "^GSPC"}
POLYGON_SPANS = {"minute": 60, "hour": 3600, "day": DAY}
POLYGON_RATE_LIMIT = ("You've exceeded the maximum requests per minute, please wait or upgrade your subscription "
                      "to continue. https://polygon.io/pricing")
POLYGON_NOT_ENTITLED = "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing"


class PolygonServer(ProviderServer):
    """Aggregates and last trade/quote, with Bearer (or apiKey) authentication and a plan's entitlements
    ("aggs", "last_trade", "last_crypto", "last_quote", "indices"; the default has all but indices)."""

    name = "polygon"

    def __init__(self, *, entitlements: set[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entitlements = {"aggs", "last_trade", "last_crypto", "last_quote"} if entitlements is None \
            else set(entitlements)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{start}/{end}", self.aggregates)
        router.add_get("/v2/last/trade/{ticker}", self.last_trade)
        router.add_get("/v1/last/crypto/{base}/{quote}", self.last_crypto)
        router.add_get("/v1/last_quote/currencies/{base}/{quote}", self.last_quote)

    def error(self, http: int, status: str, text: str, *, key: str = "error",
              retry_after: float | None = None) -> web.Response:
        headers = {"Retry-After": str(int(retry_after))} if retry_after else None
        return self.json({"status": status, "request_id": request_id(), key: text}, http, headers)

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        if status == 429:
            return self.error(429, "ERROR", POLYGON_RATE_LIMIT, retry_after=retry_after)
        if status >= 500:
            return self.error(status, "ERROR", "Internal server error")
        return super().error_response(status, retry_after)

    def empty_response(self, request: web.Request) -> web.Response:
        ticker = request.match_info.get("ticker", "AAPL")
        return self.json({"ticker": ticker, "queryCount": 0, "resultsCount": 0, "adjusted": True,
                          "status": "OK", "request_id": request_id(), "count": 0})

    def authorized(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else request.query.get("apiKey")
        if not key:
            return self.error(401, "ERROR", "API Key was not provided")
        if key != self.api_key:
            return self.error(401, "ERROR", "Unknown API Key")
        return None

    def not_entitled(self) -> web.Response:
        return self.error(403, "NOT_AUTHORIZED", POLYGON_NOT_ENTITLED, key="message")

    async def aggregates(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        ticker, m = request.match_info["ticker"], request.match_info
        if "aggs" not in self.entitlements or (ticker.startswith("I:") and "indices" not in self.entitlements):
            return self.not_entitled()
        try:
            start, end = int(m["start"]) // 1000, int(m["end"]) // 1000
        except ValueError:
            return self.error(400, "ERROR", "Could not parse the time parameter: 'from'. "
                                            "Use YYYY-MM-DD or Unix MS Timestamps")
        if m["timespan"] not in POLYGON_SPANS:
            return self.error(400, "ERROR", f"Invalid timespan: {m['timespan']}")
        ours = POLYGON_TICKERS.get(ticker)
        body: dict[str, Any] = {"ticker": ticker, "queryCount": 0, "resultsCount": 0, "adjusted": True}
        if ours is not None:
            step = int(m["multiplier"]) * POLYGON_SPANS[m["timespan"]]
            # Polygon's windows follow US Eastern time: a day bar opens at 00:00 ET.
            origin = 4 * 3600 if step >= DAY else 0
            rows = bars(ours, step, start, min(end, self.now()), origin_s=origin)
            if request.query.get("sort") == "desc":
                rows.reverse()
            rows = rows[: int(request.query.get("limit", "5000"))]
            if rows:
                body["results"] = [{"v": as_double(r.volume), "vw": as_double((r.high + r.low + r.close) / 3),
                                    "o": as_double(r.open), "c": as_double(r.close), "h": as_double(r.high),
                                    "l": as_double(r.low), "t": r.open_s * 1000, "n": 100 + len(str(r.open_s))}
                                   for r in rows]
                body["queryCount"] = body["resultsCount"] = len(rows)
        body.update({"status": "OK", "request_id": request_id(), "count": body["resultsCount"]})
        return self.json(body)

    async def last_trade(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if "last_trade" not in self.entitlements:
            return self.not_entitled()
        ticker = request.match_info["ticker"]
        ours = POLYGON_TICKERS.get(ticker)
        if ours is None or ours != ticker:
            return self.error(404, "NOT_FOUND", "Data not found.", key="message")
        now = self.now()
        price = bar(ours, now // 60, now).close
        nanos = (now - 3) * 1_000_000_000 + 969834000
        return self.json({"request_id": request_id(), "status": "OK", "results": {
            "T": ticker, "c": [37], "f": nanos - 37000, "i": "118749", "p": as_double(price), "q": 3135876,
            "r": 202, "s": 25, "t": nanos, "x": 4, "y": nanos - 1834000, "z": 3}})

    async def last_crypto(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if "last_crypto" not in self.entitlements:
            return self.not_entitled()
        base, quote = request.match_info["base"].upper(), request.match_info["quote"].upper()
        if f"{base}/{quote}" not in BASE_PRICES:
            return self.error(404, "NOT_FOUND", "Data not found.", key="message")
        now = self.now()
        price = bar(f"{base}/{quote}", now // 60, now).close
        return self.json({"last": {"conditions": [1], "exchange": 4, "price": as_double(price), "size": 0.006909,
                                   "timestamp": now * 1000 - 2973},
                          "request_id": request_id(), "status": "success", "symbol": f"{base}-{quote}"})

    async def last_quote(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if "last_quote" not in self.entitlements:
            return self.not_entitled()
        base, quote = request.match_info["base"].upper(), request.match_info["quote"].upper()
        if f"{base}/{quote}" not in BASE_PRICES:
            return self.error(404, "NOT_FOUND", "Data not found.", key="message")
        now = self.now()
        mid = bar(f"{base}/{quote}", now // 60, now).close
        return self.json({"last": {"ask": as_double(mid + Decimal("0.0001")), "bid": as_double(mid - Decimal("0.0001")),
                                   "exchange": 48, "timestamp": now * 1000 - 687},
                          "request_id": request_id(), "status": "success", "symbol": f"{base}/{quote}"})

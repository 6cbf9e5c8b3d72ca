"""CoinMarketCap: crypto prices and coin names from `GET /v2/cryptocurrency/quotes/latest`.

Symbols: ours `BASE/QUOTE` -> `symbol=BASE&convert=QUOTE` (BTC/USD -> symbol=BTC,
convert=USD; CoinMarketCap converts into fiat and crypto alike, so BTC/USDT works).
Only crypto is served: CoinMarketCap has no stocks, and its free plan has no OHLCV,
which is reported as `NotAvailable` without a request.

Response (documented at https://coinmarketcap.com/api/documentation/ and its "Errors
and rate limits" guide):

    {"status": {"timestamp": "2023-07-13T19:19:08.554Z", "error_code": 0, "error_message": null,
                "elapsed": 29, "credit_count": 1, "notice": null},
     "data": {"BTC": [{"id": 1, "name": "Bitcoin", "symbol": "BTC", "slug": "bitcoin", "is_active": 1,
                       "cmc_rank": 1, "last_updated": "...",
                       "quote": {"USD": {"price": 29705.93501696529, "volume_24h": 39782528268.71518,
                                         "percent_change_24h": -6.48106206, "last_updated": "..."}}}]}}

v2 keys `data` by the requested symbol and gives a *list*: several coins share a
symbol (CoinMarketCap lists a long-dead "ETC" next to Ethereum Classic). The active
coin with the best (lowest) `cmc_rank` is taken; the v1 shape (one object per symbol)
is read too.

Errors carry the same `status` object with `error_code` (HTTP status in brackets):
1001 key invalid, 1002 key missing (401); 1003/1004 plan unpaid/expired (402); 1005
key required, 1006 plan excludes the endpoint, 1007 key disabled (403); 1008 minute
limit, 1009 daily, 1010 monthly, 1011 IP limit (429); 400 bad parameter, e.g.
`Invalid value for "symbol": "XYZQ"`; 500 server error.

Rate limits: the free Basic plan allows 30 requests a minute and a monthly allowance
of call credits (one per request here: one symbol, one conversion). Credits reset at
00:00 UTC (day) and on the 1st (month), so an exhausted allowance keeps the breaker
open until then. The key goes in the `X-CMC_PRO_API_KEY` header, never the URL.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import aiohttp

from app.domain import Candle, Ticker
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
    SymbolInfo,
    SymbolNotFound,
    Unavailable,
    expect_dict,
    http_status_error,
    iso_to_ms,
    loads,
    optional_decimal,
    parse_symbol,
    to_decimal,
    try_loads,
)
from app.resilience.errors import scrub
from app.resilience.guard import GuardConfig

__all__ = ["CoinMarketCap", "credit_count", "decode", "map_metadata", "map_ticker", "quote_params", "select_listing"]

NAME = "coinmarketcap"
TITLE = "CoinMarketCap"
QUOTES_PATH = "/v2/cryptocurrency/quotes/latest"

_RESETS = {1008: "minute", 1009: "day", 1010: "month", 1011: "minute"}
_KEY_CODES = {1001, 1002, 1003, 1004, 1005, 1007}


def quote_params(inst: Instrument) -> dict[str, str]:
    """Our BTC/USD -> CoinMarketCap's `symbol=BTC&convert=USD`."""
    return {"symbol": inst.base, "convert": inst.quote}


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (str, Decimal)):
        try:
            return int(str(value).strip())
        except ValueError:
            return None
    return None


def _error_for(code: int, message: str, symbol: str) -> ProviderError:
    words = scrub(message or "", 160).rstrip(".")
    said = f" ({words})" if words else ""
    if code in _RESETS:
        resets = _RESETS[code]
        when = {
            "minute": "in about a minute",
            "day": "after 00:00 UTC, when the daily credits reset",
            "month": "when the monthly credits reset, or sooner with a bigger plan",
        }[resets]
        return RateLimited(
            f"{TITLE}'s limit for this key was reached{said}; prices from {TITLE} resume {when}.",
            provider=NAME,
            retry_after=60.0 if resets == "minute" else None,
            resets=resets,
        )
    if code in _KEY_CODES:
        return AuthError(
            f"{TITLE} refused the API key{said}. Check the {TITLE} key in the settings.", provider=NAME
        )
    if code == 1006:
        return NotAvailable(f"Your {TITLE} plan does not include this data{said}.", provider=NAME)
    if code == 400:
        lowered = words.lower()
        if "symbol" in lowered:
            return SymbolNotFound(
                f"{TITLE} does not list {symbol}{said}. Check the symbol (for example BTC/USD).", provider=NAME
            )
        if "convert" in lowered:
            return SymbolNotFound(
                f"{TITLE} cannot price {symbol} in that currency{said}. Check the quote currency.", provider=NAME
            )
        return ProviderError(f"{TITLE} refused the request{said}.", provider=NAME)
    if code >= 500:
        return Unavailable(f"{TITLE} had a server error{said}. It will be tried again.", provider=NAME)
    return ProviderError(f"{TITLE} refused the request (error {code}){said}.", provider=NAME)


def check_status(body: Any, symbol: str) -> dict[str, Any]:
    """The body as a dict, or the error its `status` object names."""
    body = expect_dict(body, "data", provider=NAME, title=TITLE)
    status = body.get("status")
    if isinstance(status, dict):
        code = _code(status.get("error_code"))
        if code:  # 0 (or absent) is success
            raise _error_for(code, str(status.get("error_message") or ""), symbol)
    return body


def credit_count(body: Any) -> int:
    """Call credits the answer says it cost (0 if it does not say)."""
    status = body.get("status") if isinstance(body, dict) else None
    count = _code(status.get("credit_count")) if isinstance(status, dict) else None
    return count or 0


def decode(reply: HttpReply, symbol: str) -> dict[str, Any]:
    """An HTTP answer from quotes/latest -> its body, or the ProviderError it stands for."""
    body = try_loads(reply.text)
    if isinstance(body, dict) and isinstance(body.get("status"), dict):
        check_status(body, symbol)  # raises for every documented error code
    if reply.status >= 300 or body is None:
        if reply.status < 300:
            loads(reply.text, provider=NAME, title=TITLE)  # raises BadResponse with the JSON wording
        raise http_status_error(reply.status, title=TITLE, provider=NAME, retry_after=reply.retry_after)
    return check_status(body, symbol)


def select_listing(body: Any, symbol: str) -> dict[str, Any]:
    """The coin our symbol means among those CoinMarketCap lists under its base."""
    inst = parse_symbol(symbol)
    body = check_status(body, symbol)
    data = expect_dict(body.get("data"), "data", provider=NAME, title=TITLE)
    entries = data.get(inst.base)
    if entries is None:  # v2 echoes the symbol as asked; be lenient about its case
        entries = next((v for k, v in data.items() if str(k).upper() == inst.base), None)
    if isinstance(entries, dict):  # the v1 shape: one object per symbol
        entries = [entries]
    coins = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    if not coins:
        raise SymbolNotFound(f"{TITLE} does not list {inst.base}. Check the symbol (for example BTC/USD).", provider=NAME)

    def rank(item: tuple[int, dict[str, Any]]) -> tuple[int, int, int]:
        i, coin = item
        active = _code(coin.get("is_active"))
        cmc_rank = _code(coin.get("cmc_rank"))
        return (0 if active in (1, None) else 1, cmc_rank if cmc_rank and cmc_rank > 0 else 1 << 30, i)

    return min(enumerate(coins), key=rank)[1]


def _quantized_like(value: Decimal, like: Decimal) -> Decimal:
    """`value` with as many decimal places as `like` (at least two)."""
    exponent = like.as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return value.quantize(Decimal(1).scaleb(-places))


def map_ticker(body: Any, symbol: str) -> Ticker:
    """quotes/latest body -> Ticker (last, 24h quote volume, the price 24h ago as `open_24h`)."""
    inst = parse_symbol(symbol)
    coin = select_listing(body, symbol)
    quotes = expect_dict(coin.get("quote"), "quote", provider=NAME, title=TITLE)
    quote = quotes.get(inst.quote)
    if not isinstance(quote, dict):
        raise BadResponse(f"{TITLE} answered without a {inst.quote} price for {inst.base}.", provider=NAME)
    if quote.get("price") is None:  # listed, but untracked or inactive
        raise SymbolNotFound(
            f"{TITLE} has no current price for {inst.symbol}: the coin is not actively traded.", provider=NAME
        )
    last = to_decimal(quote["price"], "price", provider=NAME, title=TITLE)
    change = optional_decimal(quote.get("percent_change_24h"), "24h change", provider=NAME, title=TITLE)
    open_24h = None
    if change is not None and change > -100:
        # percent_change_24h is measured against the price 24 hours ago, which is what
        # Ticker.open_24h means; computed in Decimal and kept to the price's precision.
        open_24h = _quantized_like(last * 100 / (100 + change), last)
    stamp = quote.get("last_updated") or coin.get("last_updated")
    return Ticker(
        symbol=inst.symbol,
        ts=iso_to_ms(stamp, "update time", provider=NAME, title=TITLE),
        last=last,
        open_24h=open_24h,
        quote_volume_24h=optional_decimal(quote.get("volume_24h"), "24h volume", provider=NAME, title=TITLE),
        venue=NAME,
    )


def map_metadata(body: Any, symbol: str) -> SymbolInfo:
    inst = parse_symbol(symbol)
    coin = select_listing(body, symbol)
    name = coin.get("name")
    if not isinstance(name, str) or not name:
        raise BadResponse(f"{TITLE} answered without the name of {inst.base}.", provider=NAME)
    coin_id = coin.get("id")
    quotes = coin.get("quote")
    quote = quotes.get(inst.quote) if isinstance(quotes, dict) else None
    market_cap = None
    if isinstance(quote, dict):
        market_cap = optional_decimal(quote.get("market_cap"), "market cap", provider=NAME, title=TITLE)
    rank = _code(coin.get("cmc_rank"))
    return SymbolInfo(
        symbol=inst.symbol,
        name=name,
        asset_class=AssetClass.CRYPTO,
        currency=inst.quote,
        provider=NAME,
        provider_symbol=str(coin_id) if coin_id is not None else inst.base,
        market_cap=market_cap,
        rank=rank if rank and rank > 0 else None,
    )


class CoinMarketCap(ProviderBase):
    name: ClassVar[str] = NAME
    title: ClassVar[str] = TITLE
    default_priority: ClassVar[int] = 10  # official and key-based, but crypto only
    default_base_url: ClassVar[str] = "https://pro-api.coinmarketcap.com"
    serves: ClassVar = {
        Capability.TICKER: frozenset({AssetClass.CRYPTO}),
        Capability.METADATA: frozenset({AssetClass.CRYPTO}),
    }
    timeframes: ClassVar = {}
    # Basic plan: 30 requests a minute. Credits are monthly, which a token bucket cannot
    # express: the API's own 1009/1010 answers hold the breaker open until the reset.
    guard_config: ClassVar[GuardConfig] = GuardConfig(
        rate_per_second=0.5, burst=2, call_timeout=10.0, retry_attempts=2, max_concurrent=2
    )
    key_hint: ClassVar[str] = "Get a free key at https://coinmarketcap.com/api/ and add it in the settings."

    def __init__(self, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(api_key, **kwargs)
        self.credits_used = 0  # as the API reports them, for the settings page

    def _make_http(self, session: aiohttp.ClientSession | None) -> HttpClient:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["X-CMC_PRO_API_KEY"] = self._api_key
        return HttpClient(
            self.guard, self.base_url, title=TITLE, provider=NAME, headers=headers, session=session, wall=self._wall
        )

    def unavailable_reason(self, capability: Capability, inst: Instrument, timeframe: str | None) -> str:
        if capability is Capability.OHLCV and inst.asset_class is AssetClass.CRYPTO:
            return (
                f"{TITLE}'s free plan does not include candles (OHLCV), so charts for {inst.symbol} "
                "come from an exchange or another provider."
            )
        return super().unavailable_reason(capability, inst, timeframe)

    async def _quotes(self, inst: Instrument, mapper: Any) -> Any:
        def read(reply: HttpReply) -> Any:
            body = decode(reply, inst.symbol)
            self.credits_used += credit_count(body)
            return mapper(body, inst.symbol)

        return await self.http.get(QUOTES_PATH, quote_params(inst), read, what=f"{inst.symbol} quote")

    async def _ticker(self, inst: Instrument) -> Ticker:
        return await self._quotes(inst, map_ticker)

    async def _metadata(self, inst: Instrument) -> SymbolInfo:
        return await self._quotes(inst, map_metadata)

    async def _ohlcv(self, inst: Instrument, timeframe: str, since: int | None, limit: int) -> list[Candle]:
        raise NotAvailable(self.unavailable_reason(Capability.OHLCV, inst, timeframe), provider=NAME)

"""What every market-data provider shares: the `Provider` protocol, our symbols, the
errors, the number and time parsers, and the one HTTP client that goes through a `Guard`.

A provider is a REST source of tickers, candles and symbol metadata that is not an
exchange we trade on (CoinMarketCap, Yahoo Finance, Alpha Vantage, Polygon). Each
provider module holds PURE response mappers (a decoded body -> domain objects, or a
`ProviderError` whose message is a sentence for the user) and a small async client.

Decisions others rely on:

* Symbols are ours, never a provider's: crypto and forex as BASE/QUOTE (`BTC/USD`,
  `EUR/USD`; a pair whose two sides are both fiat currencies is forex), stocks and
  ETFs as plain tickers (`AAPL`, `SPY`, share classes with a dot: `BRK.B`), indices
  with a caret (`^GSPC`). Each provider module documents how its own symbol is formed.
* Money is Decimal from the wire: bodies are decoded with `loads` (JSON numbers
  through `parse_float=Decimal`, strings through `Decimal(str)`). `to_decimal` refuses
  a float outright, so a body decoded the wrong way fails its tests instead of
  rounding prices.
* A provider that needs a key and has none is *not configured*: the aggregator skips
  it (`Provider.configured`), and a direct call raises `NotConfigured` without sending
  anything. What a provider does not offer (CoinMarketCap's candles, Alpha Vantage's
  indices) raises `NotAvailable` without sending anything either.
* Every request goes through the provider's `Guard` (group `marketdata:<name>`), as
  an idempotent call: timeouts, 5xx and garbage bodies are retried and counted by the
  breaker; a rate limit opens the breaker for as long as the provider asked (or until
  its documented reset); a refused key or an unknown symbol is neither counted nor
  retried (`failure_kind` on each error says which, see app.resilience.errors).
* Keys never reach URLs where the provider allows a header (CoinMarketCap, Polygon).
  Where they must ride in the query string (Alpha Vantage), the URL is built inside
  aiohttp's call and never stored, logged or put in an exception: network errors are
  re-raised as fresh `Unavailable` errors (no chained cause carrying the URL), and
  every message leaving `HttpClient` has the client's secrets replaced by `***`, so
  even a provider that echoes the key in its body (Alpha Vantage does) cannot leak it.
* Candle timestamps are the bar's open time in ms. Daily candles are moved to 00:00
  UTC of their trading date, the bucket the rest of the terminal uses for `1d`
  (app.domain.TIMEFRAMES); intraday candles keep the provider's real open time.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import aiohttp

from app.domain import TIMEFRAMES, Candle, Ticker
from app.resilience.errors import CircuitOpenError, FailureKind, ResilienceError, scrub
from app.resilience.guard import Guard, GuardConfig

__all__ = [
    "AssetClass",
    "AuthError",
    "BadResponse",
    "BudgetExhausted",
    "Capability",
    "HttpClient",
    "HttpReply",
    "Instrument",
    "NotAvailable",
    "NotConfigured",
    "Provider",
    "ProviderBase",
    "ProviderError",
    "RateLimited",
    "RequestBudget",
    "SymbolInfo",
    "SymbolNotFound",
    "Unavailable",
    "loads",
    "parse_symbol",
    "to_decimal",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DAY_MS = 86_400_000
DEFAULT_RATE_LIMIT_WAIT = 60.0  # seconds, when a provider says "slow down" without saying for how long
DEFAULT_LIMIT = 500  # candles fetched when the caller gives no limit
MAX_BODY_BYTES = 16 << 20  # Alpha Vantage's full daily history is a few MB; anything bigger is not an answer


# --------------------------------------------------------------------------- what a provider serves


class Capability(enum.StrEnum):
    TICKER = "ticker"
    OHLCV = "ohlcv"
    METADATA = "metadata"


class AssetClass(enum.StrEnum):
    CRYPTO = "crypto"
    STOCK = "stock"  # stocks and ETFs
    FOREX = "forex"
    INDEX = "index"


_CAPABILITY_WORDS = {Capability.TICKER: "prices", Capability.OHLCV: "candles", Capability.METADATA: "symbol details"}
_CLASS_WORDS = {
    AssetClass.CRYPTO: "crypto pairs",
    AssetClass.STOCK: "stocks and ETFs",
    AssetClass.FOREX: "currency pairs",
    AssetClass.INDEX: "indices",
}

FIAT_CURRENCIES = frozenset(
    "USD EUR GBP JPY CHF CAD AUD NZD CNY CNH HKD SGD SEK NOK DKK PLN CZK HUF TRY ZAR MXN BRL INR KRW "
    "RUB ILS THB TWD IDR MYR PHP AED SAR".split()
)
"""ISO 4217 codes of currencies with a forex market. A pair of two of these is forex;
any other BASE/QUOTE pair is crypto (USDT and USDC are crypto: they trade on exchanges)."""

_PAIR_PART = re.compile(r"[A-Z0-9]{1,15}")
_TICKER = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,14}")
_INDEX = re.compile(r"\^[A-Z0-9][A-Z0-9.\-]{0,14}")


@dataclass(frozen=True, slots=True)
class Instrument:
    """One of our symbols, understood: what it is and its parts."""

    symbol: str  # ours, e.g. "BTC/USD", "AAPL", "^GSPC"
    asset_class: AssetClass
    base: str  # the ticker itself for stocks and indices ("AAPL", "^GSPC")
    quote: str = ""  # "" for stocks and indices: their currency is the listing's


def parse_symbol(symbol: str) -> Instrument:
    """Our symbol -> Instrument; SymbolNotFound (a sentence) for anything that is not one."""
    text = symbol.strip().upper() if isinstance(symbol, str) else ""
    base, sep, quote = text.partition("/")
    if sep:
        if _PAIR_PART.fullmatch(base) and _PAIR_PART.fullmatch(quote):
            forex = base in FIAT_CURRENCIES and quote in FIAT_CURRENCIES
            return Instrument(text, AssetClass.FOREX if forex else AssetClass.CRYPTO, base, quote)
    elif _INDEX.fullmatch(text):
        return Instrument(text, AssetClass.INDEX, text)
    elif _TICKER.fullmatch(text):
        return Instrument(text, AssetClass.STOCK, text)
    raise SymbolNotFound(
        f"'{scrub(str(symbol), 40)}' is not a symbol: write crypto and currency pairs as BASE/QUOTE "
        "(BTC/USD, EUR/USD), stocks and ETFs as tickers (AAPL, SPY) and indices with a caret (^GSPC)."
    )


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """What a provider knows about a symbol (the METADATA capability)."""

    symbol: str  # ours
    name: str  # "Bitcoin", "Apple Inc."
    asset_class: AssetClass
    currency: str = ""  # the currency prices are quoted in
    exchange: str = ""  # the listing exchange, where the provider says
    provider: str = ""
    provider_symbol: str = ""  # how the provider calls it ("BTC-USD", "X:BTCUSD", a CoinMarketCap id)
    market_cap: Decimal | None = None  # in `currency`, where the provider knows it (CoinMarketCap)
    rank: int | None = None  # CoinMarketCap's rank by market cap (1 = the largest)


# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """A provider refused or failed a request; `str(err)` is a sentence a user can act on.

    `failure_kind` tells the guard what the failure says about the provider (counted
    by the breaker? retried?); see app.resilience.errors.
    """

    failure_kind: FailureKind = FailureKind.BUSINESS

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class Unavailable(ProviderError):
    """The provider could not be reached, was too slow, or answered with a server error: try later."""

    failure_kind = FailureKind.UNHEALTHY

    def __init__(self, message: str, *, provider: str = "", retry_at: float | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_at = retry_at  # wall-clock epoch seconds, when the guard said so (circuit open)


class BadResponse(Unavailable):
    """The provider answered with something that is not its documented response (a proxy's
    HTML page, cut-off JSON, a missing field). Treated like an outage: counted and retried."""


class RateLimited(ProviderError):
    """The provider asked us to slow down. `retry_after` (seconds) is read by the guard's
    breaker, which stays open that long; `resets` says which allowance ran out."""

    failure_kind = FailureKind.RATE_LIMITED

    def __init__(
        self, message: str, *, provider: str = "", retry_after: float | None = None, resets: str | None = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after
        self.resets = resets  # "minute" | "day" | "month" | None


class BudgetExhausted(RateLimited):
    """Our own count of a provider's allowance (Alpha Vantage: 25 requests a day) is used up.
    Nothing was sent; the guard neither counts nor retries it."""

    failure_kind = FailureKind.REJECTED


class AuthError(ProviderError):
    """The provider refused the API key (wrong, disabled, unpaid) or refused us outright."""

    failure_kind = FailureKind.AUTH


class SymbolNotFound(ProviderError):
    """The provider does not know the symbol (or it is not a symbol at all)."""


class NotAvailable(ProviderError):
    """The provider does not offer this: a capability, an asset class, a timeframe, or data
    the user's plan does not include. Nothing was sent (or the provider said so)."""


class NotConfigured(NotAvailable):
    """The provider needs an API key and has none: skipped, not an error (the aggregator
    checks `Provider.configured` first)."""


# --------------------------------------------------------------------------- numbers and times


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def loads(text: str, *, provider: str = "", title: str = "The provider") -> Any:
    """JSON with every number exact: floats as Decimal, NaN/Infinity refused (BadResponse)."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError:  # JSONDecodeError is a ValueError
        pass
    # Raised outside the except block: the decode error holds the whole document
    # (`.doc`), which must not ride along as this error's context.
    raise BadResponse(
        f"{title} sent an answer that is not valid JSON (perhaps an error page or a cut-off reply). "
        "It will be tried again.",
        provider=provider,
    )


def try_loads(text: str) -> Any | None:
    """The decoded body, or None when the text is not JSON (an error page): for deciding by status first."""
    if not text.strip():
        return None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError:
        return None


def http_status_error(
    status: int, *, title: str, provider: str = "", retry_after: float | None = None
) -> ProviderError:
    """The error for an HTTP status whose body said nothing we understand (a gateway's page)."""
    if status in (429, 418):
        return RateLimited(
            f"{title} asked us to slow down (HTTP {status}); its prices resume shortly.",
            provider=provider,
            retry_after=retry_after or DEFAULT_RATE_LIMIT_WAIT,
            resets="minute",
        )
    if status == 408 or status >= 500:
        return Unavailable(
            f"{title} answered with a server error (HTTP {status}). It will be tried again.", provider=provider
        )
    if status in (401, 403):
        return AuthError(
            f"{title} refused the request (HTTP {status}). Check its API key in the settings.", provider=provider
        )
    if 400 <= status < 500:
        return ProviderError(f"{title} refused the request (HTTP {status}).", provider=provider)
    return BadResponse(
        f"{title} sent an answer that is not market data (HTTP {status}). It will be tried again.", provider=provider
    )


def expect_dict(value: Any, what: str, *, provider: str = "", title: str = "The provider") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadResponse(f"{title} sent an answer without its {what}. It will be tried again.", provider=provider)
    return value


def to_decimal(value: Any, what: str, *, provider: str = "", title: str = "The provider") -> Decimal:
    """A JSON number or numeric string as a finite Decimal; BadResponse for anything else.

    A float is a programming error (the body was decoded without `loads`), not bad data.
    """
    if isinstance(value, float):
        raise TypeError(f"{what} arrived as a float: decode provider bodies with providers.base.loads")
    number: Decimal | None = None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            number = None
    if number is None or not number.is_finite():
        raise BadResponse(f"{title} sent an unreadable {what} ({scrub(repr(value), 40)}).", provider=provider)
    return number


def optional_decimal(value: Any, what: str, *, provider: str = "", title: str = "The provider") -> Decimal | None:
    """Like `to_decimal`, but None, "" and the "-" some providers write for 'no value' give None."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "-", "None", "null")):
        return None
    return to_decimal(value, what, provider=provider, title=title)


def to_int(value: Any, what: str, *, provider: str = "", title: str = "The provider") -> int:
    """An integral JSON number (timestamps) as int; BadResponse otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    raise BadResponse(f"{title} sent an unreadable {what} ({scrub(repr(value), 40)}).", provider=provider)


def iso_to_ms(text: Any, what: str, *, provider: str = "", title: str = "The provider") -> int:
    """'2023-07-13T19:19:08.554Z' (or any ISO 8601 time; naive means UTC) -> ms since the epoch."""
    when: datetime | None = None
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            when = None
    if when is None:
        raise BadResponse(f"{title} sent an unreadable {what} ({scrub(repr(text), 40)}).", provider=provider)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def date_to_ms(day: date) -> int:
    """00:00 UTC of `day`, in ms: the bucket of a daily candle."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def day_floor(ms: int) -> int:
    return ms - ms % DAY_MS


def seconds_until_reset(resets: str | None, now: float) -> float | None:
    """Seconds from `now` (epoch) to the next UTC minute/day/month boundary for an allowance."""
    if resets == "minute":
        return 60.0
    current = datetime.fromtimestamp(now, UTC)
    if resets == "day":
        nxt = datetime(current.year, current.month, current.day, tzinfo=UTC) + timedelta(days=1)
    elif resets == "month":
        nxt = datetime(current.year + current.month // 12, current.month % 12 + 1, 1, tzinfo=UTC)
    else:
        return None
    return max(1.0, nxt.timestamp() - now)


def trim_candles(candles: list[Candle], since: int | None, limit: int | None) -> list[Candle]:
    """Chronological, deduplicated (the later row wins), from `since` on, at most `limit`:
    the earliest `limit` when `since` is given, else the latest (as ccxt's fetch_ohlcv)."""
    by_ts = {c.ts: c for c in candles}
    rows = [by_ts[ts] for ts in sorted(by_ts)]
    if since is not None:
        rows = [c for c in rows if c.ts >= since]
        return rows if limit is None else rows[:limit]
    if limit is None:
        return rows
    return rows[-limit:] if limit > 0 else []


# --------------------------------------------------------------------------- the protocol


@runtime_checkable
class Provider(Protocol):
    """A market-data source. Methods raise `ProviderError` subclasses only."""

    name: str  # "yahoo"; the guard group is "marketdata:<name>"
    title: str  # "Yahoo Finance", for sentences
    priority: int  # lower is asked first

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    @property
    def configured(self) -> bool:
        """False when the provider needs a key and has none: skip it."""
        ...

    def supports(self, symbol: str, capability: Capability, timeframe: str | None = None) -> bool:
        """Can this provider serve `capability` for `symbol` (and `timeframe`)? No request is made."""
        ...

    async def fetch_ticker(self, symbol: str) -> Ticker: ...

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> list[Candle]: ...

    async def fetch_metadata(self, symbol: str) -> SymbolInfo: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- HTTP through the guard


@dataclass(frozen=True, slots=True)
class HttpReply:
    """One HTTP answer, as the pure decoders see it."""

    status: int
    text: str
    retry_after: float | None = None  # the Retry-After header in seconds, when it was a number


def _retry_after_header(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: the guard's own parsing does not see headers here, so the mapper's default applies
    return seconds if seconds > 0 else None


def _network_reason(exc: BaseException) -> str:
    """What went wrong on the wire, in words, without the URL (aiohttp puts it in some messages)."""
    if isinstance(exc, TimeoutError):
        return "no answer came in time"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the secure connection could not be set up"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "the connection was refused or the host is unreachable"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    if isinstance(exc, aiohttp.TooManyRedirects):  # its message holds the full URL, key included
        return "it redirected the request in a loop"
    if isinstance(exc, (ConnectionError, OSError)):
        return "the connection failed"
    return f"the request failed ({type(exc).__name__})"


class RequestBudget:
    """At most `limit` requests per UTC day, counted here before each request is sent.

    A token bucket cannot say "25 a day"; this can. The provider's own answer stays the
    authority (its daily-limit note raises RateLimited); this only stops us spending
    requests the provider is known to refuse, and says so without sending anything.
    """

    def __init__(self, limit: int, *, title: str, provider: str = "", wall: Callable[[], float] = time.time) -> None:
        if limit < 1:
            raise ValueError("a request budget needs a limit of at least 1 a day")
        self.limit = limit
        self._title = title
        self._provider = provider
        self._wall = wall
        self._day = -1
        self._used = 0

    def _roll(self) -> None:
        day = int(self._wall() // 86_400)
        if day != self._day:
            self._day, self._used = day, 0

    @property
    def remaining(self) -> int:
        self._roll()
        return self.limit - self._used

    def take(self) -> None:
        self._roll()
        if self._used >= self.limit:
            now = self._wall()
            raise BudgetExhausted(
                f"{self._title}'s allowance of {self.limit} requests a day is used up, so nothing was sent; "
                f"{self._title} will be asked again after 00:00 UTC. Add a premium key in the settings "
                "or rely on another market-data provider until then.",
                provider=self._provider,
                retry_after=seconds_until_reset("day", now),
                resets="day",
            )
        self._used += 1


class HttpClient:
    """GET requests to one provider through its guard, decoded by a pure function.

    `headers` may carry the key (CoinMarketCap, Polygon); `secret_params` are query
    parameters added at the moment of sending (Alpha Vantage's `apikey`) so that no URL
    with a key is ever stored or put in an exception. Both are redacted from every
    message this client raises.
    """

    def __init__(
        self,
        guard: Guard,
        base_url: str,
        *,
        title: str,
        provider: str,
        headers: Mapping[str, str] | None = None,
        secret_params: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        max_bytes: int = MAX_BODY_BYTES,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.guard = guard
        self._wall = wall
        self.base_url = base_url.rstrip("/")
        self.title = title
        self.provider = provider
        self._headers = dict(headers or {})
        self._secret_params = dict(secret_params or {})
        self._secrets = tuple(
            sorted(
                {v for v in (*self._secret_params.values(), *self._headers.values()) if len(v) >= 4},
                key=len,
                reverse=True,
            )
        )
        # A header value such as "Bearer <key>" is redacted whole and by its key part.
        self._secrets += tuple(v.split()[-1] for v in self._headers.values() if " " in v and len(v.split()[-1]) >= 4)
        self._session = session
        self._owns_session = session is None
        self._max_bytes = max_bytes
        self.requests_sent = 0

    def __repr__(self) -> str:  # never print headers or parameters: they may hold the key
        return f"<HttpClient {self.provider} {self.base_url}>"

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # A backstop only: the guard's bulkhead times each call out first.
            timeout = aiohttp.ClientTimeout(total=max(30.0, self.guard.config.call_timeout * 2))
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._owns_session = True
        return self._session

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def get(
        self,
        path: str,
        params: Mapping[str, str] | None,
        decode: Callable[[HttpReply], T],
        *,
        what: str,
        budget: RequestBudget | None = None,
    ) -> T:
        """GET base_url + path under the guard (idempotent), then `decode` the reply.

        `decode` is pure and raises ProviderError for error answers; `what` names the
        request in the guard's messages and must not hold anything secret.
        """

        async def attempt() -> T:
            if budget is not None:
                budget.take()
            reply = await self._send(path, params or {})
            try:
                return decode(reply)
            except RateLimited as exc:
                # Mappers are clock-free: a "daily allowance used up" becomes a wait
                # until the reset here, so the breaker stays open exactly that long.
                if exc.retry_after is None:
                    exc.retry_after = seconds_until_reset(exc.resets, self._wall()) or DEFAULT_RATE_LIMIT_WAIT
                raise

        failure: ProviderError
        try:
            return await self.guard.call(attempt, idempotent=True, what=what)
        except ProviderError as exc:
            failure = exc
        except CircuitOpenError as exc:  # the guard refused: its message is a sentence already
            failure = Unavailable(str(exc), provider=self.provider, retry_at=exc.retry_at)
            failure.failure_kind = FailureKind.REJECTED
        except ResilienceError as exc:  # the bulkhead: call timeout or no free slot
            failure = Unavailable(f"{exc} It will be tried again.", provider=self.provider)
        except Exception as exc:  # a mapper met a shape it does not know: a bug report, not a traceback for the user
            log.warning("%s: could not read the answer to %s (%s)", self.provider, what, type(exc).__name__)
            failure = BadResponse(
                f"{self.title} sent an answer this version of the terminal cannot read ({type(exc).__name__}). "
                "It will be tried again; if it keeps happening, another provider is used.",
                provider=self.provider,
            )
        # Raised here, outside every except block, so nothing is chained to it.
        raise self._scrubbed(failure)

    def _scrubbed(self, exc: ProviderError) -> ProviderError:
        message = str(exc)
        clean = self.redact(message)
        if clean != message:
            exc.args = (clean,)
        if not exc.provider:
            exc.provider = self.provider
        return exc

    async def _send(self, path: str, params: Mapping[str, str]) -> HttpReply:
        session = self._ensure_session()
        failure: Unavailable | None = None
        status, chunks, size, retry_after = 0, [], 0, None
        try:
            self.requests_sent += 1
            # The query with the key exists only inside this call expression: no local
            # variable, attribute or log line ever holds a URL with a key in it.
            async with session.get(
                self.base_url + path, params={**params, **self._secret_params}, headers=self._headers
            ) as resp:
                status = resp.status
                retry_after = _retry_after_header(resp.headers.get("Retry-After"))
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > self._max_bytes:
                        break
                    chunks.append(chunk)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            failure = Unavailable(
                f"{self.title} could not be reached: {_network_reason(exc)}. It will be tried again.",
                provider=self.provider,
            )
        if failure is not None:
            raise failure
        if size > self._max_bytes:
            raise BadResponse(
                f"{self.title} sent an answer larger than {self._max_bytes >> 20} MB, which is not a market-data "
                "reply. It will be tried again.",
                provider=self.provider,
            )
        return HttpReply(status, b"".join(chunks).decode("utf-8", errors="replace"), retry_after)


# --------------------------------------------------------------------------- the shared skeleton


class ProviderBase:
    """What the four providers share: configuration, symbol checks, the guard and the client.

    Subclasses declare what they serve (`serves`, `timeframes`) and implement
    `_ticker`, `_ohlcv` and, where offered, `_metadata`.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    default_priority: ClassVar[int]
    default_base_url: ClassVar[str]
    requires_key: ClassVar[bool] = True
    serves: ClassVar[Mapping[Capability, frozenset[AssetClass]]]
    timeframes: ClassVar[Mapping[AssetClass, tuple[str, ...]]]  # OHLCV timeframes per asset class
    guard_config: ClassVar[GuardConfig]
    key_hint: ClassVar[str] = ""  # where to get a key, for the NotConfigured sentence

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        guard: Guard | None = None,
        session: aiohttp.ClientSession | None = None,
        priority: int | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._api_key = (api_key or "").strip()
        self.priority = self.default_priority if priority is None else priority
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.guard = guard if guard is not None else Guard(self.group, self.guard_config)
        self._wall = wall
        self.http = self._make_http(session)

    def __repr__(self) -> str:  # the key is never printed
        return f"<{type(self).__name__} {self.base_url} key={'yes' if self._api_key else 'no'} priority={self.priority}>"

    # ---- what subclasses provide

    def _make_http(self, session: aiohttp.ClientSession | None) -> HttpClient:
        return HttpClient(
            self.guard, self.base_url, title=self.title, provider=self.name, session=session, wall=self._wall
        )

    async def _ticker(self, inst: Instrument) -> Ticker:
        raise NotImplementedError

    async def _ohlcv(self, inst: Instrument, timeframe: str, since: int | None, limit: int) -> list[Candle]:
        raise NotImplementedError

    async def _metadata(self, inst: Instrument) -> SymbolInfo:
        raise NotImplementedError

    def unavailable_reason(self, capability: Capability, inst: Instrument, timeframe: str | None) -> str:
        if capability in self.serves and inst.asset_class in self.serves[capability] and timeframe is not None:
            offered = ", ".join(self.timeframes.get(inst.asset_class, ())) or "none"
            return f"{self.title} does not provide {timeframe} candles for {inst.symbol} (it offers: {offered})."
        return (
            f"{self.title} does not provide {_CAPABILITY_WORDS[capability]} for "
            f"{_CLASS_WORDS[inst.asset_class]} such as {inst.symbol}; another provider is used for it."
        )

    # ---- the protocol

    @property
    def group(self) -> str:
        return f"marketdata:{self.name}"

    @property
    def capabilities(self) -> frozenset[Capability]:
        return frozenset(self.serves)

    @property
    def configured(self) -> bool:
        return bool(self._api_key) or not self.requires_key

    def supports(self, symbol: str, capability: Capability, timeframe: str | None = None) -> bool:
        try:
            inst = parse_symbol(symbol)
        except SymbolNotFound:
            return False
        return self._offers(inst, capability, timeframe)

    def _offers(self, inst: Instrument, capability: Capability, timeframe: str | None) -> bool:
        if inst.asset_class not in self.serves.get(capability, frozenset()):
            return False
        return timeframe is None or timeframe in self.timeframes.get(inst.asset_class, ())

    def _require(self, symbol: str, capability: Capability, timeframe: str | None = None) -> Instrument:
        """The parsed symbol, or the reason nothing will be sent (NotAvailable, NotConfigured, SymbolNotFound)."""
        inst = parse_symbol(symbol)
        if timeframe is not None and timeframe not in TIMEFRAMES:
            known = ", ".join(TIMEFRAMES)
            raise NotAvailable(f"'{scrub(timeframe, 20)}' is not a chart timeframe: use one of {known}.", provider=self.name)
        if not self._offers(inst, capability, timeframe):
            raise NotAvailable(self.unavailable_reason(capability, inst, timeframe), provider=self.name)
        if not self.configured:
            hint = f" {self.key_hint}" if self.key_hint else ""
            raise NotConfigured(
                f"{self.title} needs an API key, and none is set, so it is skipped.{hint}", provider=self.name
            )
        return inst

    async def fetch_ticker(self, symbol: str) -> Ticker:
        return await self._ticker(self._require(symbol, Capability.TICKER))

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> list[Candle]:
        inst = self._require(symbol, Capability.OHLCV, timeframe)
        wanted = DEFAULT_LIMIT if limit is None else limit
        if wanted <= 0:
            return []
        return trim_candles(await self._ohlcv(inst, timeframe, since, wanted), since, wanted)

    async def fetch_metadata(self, symbol: str) -> SymbolInfo:
        return await self._metadata(self._require(symbol, Capability.METADATA))

    async def close(self) -> None:
        await self.http.close()


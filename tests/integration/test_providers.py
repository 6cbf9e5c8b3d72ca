"""The four market-data providers against local servers on 127.0.0.1 that speak their
wire formats (tests/servers/providers.py): real aiohttp, real sockets, real guards.

Faults: timeouts, 429s, 5xx, malformed JSON, empty results, refused connections,
refused keys, unknown symbols; and the key never reaching an exception or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from app.market.providers import (
    GUARD_CONFIGS,
    AlphaVantage,
    AuthError,
    BadResponse,
    BudgetExhausted,
    Capability,
    CoinMarketCap,
    NotAvailable,
    NotConfigured,
    Polygon,
    Provider,
    ProviderBase,
    ProviderError,
    RateLimited,
    SymbolNotFound,
    Unavailable,
    Yahoo,
    create_providers,
)
from app.resilience.guard import Guard, GuardConfig, GuardRegistry
from tests.servers.providers import (
    API_KEY,
    AV_MINUTE_NOTE,
    AlphaVantageServer,
    CoinMarketCapServer,
    PolygonServer,
    ProviderServer,
    YahooServer,
    dumps,
)

FAST = dict(
    rate_per_second=1000.0, burst=1000.0, retry_first_delay=0.01, retry_max_delay=0.02, call_timeout=1.0,
    retry_attempts=2, failure_threshold=5, reset_timeout=30.0,
)
WRONG_KEY = "wrong-key-9f8e7d6c5b4a3210"


def fast_guard(name: str, **overrides: Any) -> Guard:
    return Guard(f"marketdata:{name}", GuardConfig(**{**FAST, **overrides}))


@dataclass(frozen=True)
class Case:
    """One provider: its server, how to build it, and a typical guarded request."""

    name: str
    server: type[ProviderServer]
    build: Callable[..., ProviderBase]
    call: Callable[[ProviderBase], Awaitable[Any]]  # a request that succeeds against the server
    unknown: Callable[[ProviderBase], Awaitable[Any]]  # a request for a symbol the provider does not know
    keyed: bool = True

    def provider(self, srv: ProviderServer, key: str | None = API_KEY, **guard_overrides: Any) -> ProviderBase:
        return self.build(key, base_url=srv.url, guard=fast_guard(self.name, **guard_overrides))


CASES = {
    "coinmarketcap": Case(
        "coinmarketcap", CoinMarketCapServer, CoinMarketCap,
        lambda p: p.fetch_ticker("BTC/USD"), lambda p: p.fetch_ticker("XYZQ/USD")),
    "yahoo": Case(
        "yahoo", YahooServer, Yahoo,
        lambda p: p.fetch_ohlcv("AAPL", "5m", limit=20), lambda p: p.fetch_ticker("XYZQ"), keyed=False),
    "alphavantage": Case(
        "alphavantage", AlphaVantageServer, AlphaVantage,
        lambda p: p.fetch_ohlcv("IBM", "5m", limit=20), lambda p: p.fetch_ohlcv("XYZQ", "1d")),
    "polygon": Case(
        "polygon", PolygonServer, Polygon,
        lambda p: p.fetch_ohlcv("AAPL", "1h", limit=20), lambda p: p.fetch_ticker("XYZQ")),
}
ALL = list(CASES)
KEYED = [name for name, case in CASES.items() if case.keyed]


def rate_limit(srv: ProviderServer, retry_after: float = 30) -> None:
    """The provider's own "slow down": a 429, or Alpha Vantage's HTTP-200 note."""
    if isinstance(srv, AlphaVantageServer):
        srv.faults.next_status(200, body=dumps({"Note": AV_MINUTE_NOTE}))
    else:
        srv.faults.rate_limit(retry_after=retry_after)


# =========================================================================== what each provider serves


async def test_coinmarketcap_quote_and_metadata_with_the_key_in_a_header() -> None:
    async with CoinMarketCapServer() as srv:
        provider = CASES["coinmarketcap"].provider(srv)
        try:
            ticker = await provider.fetch_ticker("BTC/USD")
            assert ticker.last == Decimal("67432.15") and type(ticker.last) is Decimal
            assert ticker.open_24h is not None and ticker.venue == "coinmarketcap"
            info = await provider.fetch_metadata("BTC/EUR")  # the dead "BTC" token listed first is passed over
            assert (info.name, info.provider_symbol, info.currency) == ("Bitcoin", "1", "EUR")
            assert provider.credits_used == 2
            seen = srv.requests[-1]
            assert seen.query == {"symbol": "BTC", "convert": "EUR"}
            assert seen.headers["x-cmc_pro_api_key"] == API_KEY
        finally:
            await provider.close()


async def test_coinmarketcap_has_no_candles_and_asks_nothing() -> None:
    async with CoinMarketCapServer() as srv:
        provider = CASES["coinmarketcap"].provider(srv)
        try:
            assert not provider.supports("BTC/USD", Capability.OHLCV, "1h")
            assert not provider.supports("AAPL", Capability.TICKER)
            with pytest.raises(NotAvailable, match="free plan does not include candles"):
                await provider.fetch_ohlcv("BTC/USD", "1h")
            with pytest.raises(NotAvailable, match="stocks and ETFs"):
                await provider.fetch_ticker("AAPL")
            assert srv.requests == []
        finally:
            await provider.close()


@pytest.mark.parametrize("symbol", ["AAPL", "^GSPC", "BTC/USD", "EUR/USD"])
async def test_yahoo_serves_every_asset_class(symbol: str) -> None:
    async with YahooServer() as srv:
        provider = CASES["yahoo"].provider(srv, key=None)
        try:
            ticker = await provider.fetch_ticker(symbol)
            assert ticker.symbol == symbol and ticker.last > 0 and type(ticker.last) is Decimal
            info = await provider.fetch_metadata(symbol)
            assert info.name and info.currency == "USD"
            daily = await provider.fetch_ohlcv(symbol, "1d", limit=10)
            assert 1 <= len(daily) <= 10
            assert all(c.ts % 86_400_000 == 0 for c in daily)  # 00:00 UTC of the trading date
            intraday = await provider.fetch_ohlcv(symbol, "5m", limit=30)
            assert len(intraday) == 30
            steps = [b.ts - a.ts for a, b in zip(intraday, intraday[1:], strict=False)]
            assert steps.count(600_000) == 1 and set(steps) == {300_000, 600_000}  # the null row stays a gap
            places = 4 if symbol == "EUR/USD" else 2
            # Yahoo's float32 noise is gone: every price has the instrument's own decimals.
            assert all(-c.close.as_tuple().exponent == places for c in intraday)
            assert all("Mozilla" in seen.headers["user-agent"] for seen in srv.requests)
        finally:
            await provider.close()


async def test_yahoo_candles_from_a_start_time() -> None:
    async with YahooServer() as srv:
        provider = CASES["yahoo"].provider(srv, key=None)
        try:
            latest = await provider.fetch_ohlcv("BTC/USD", "15m", limit=40)
            since = latest[5].ts
            page = await provider.fetch_ohlcv("BTC/USD", "15m", since=since, limit=10)
            assert page[0].ts == since and len(page) <= 10
            assert {"period1", "period2", "interval"} <= set(srv.requests[-1].query)
            assert srv.requests[-1].query["interval"] == "15m"
            with pytest.raises(NotAvailable, match="4h candles"):
                await provider.fetch_ohlcv("BTC/USD", "4h")
        finally:
            await provider.close()


async def test_alphavantage_quotes_rates_and_candles_with_the_key_only_in_the_query() -> None:
    async with AlphaVantageServer() as srv:
        provider = CASES["alphavantage"].provider(srv)
        assert isinstance(provider, AlphaVantage)
        try:
            quote = await provider.fetch_ticker("IBM")
            assert str(quote.last).count(".") == 1 and len(str(quote.last).split(".")[1]) == 4  # "165.8096"
            rate = await provider.fetch_ticker("EUR/USD")
            assert rate.bid is not None and rate.ask is not None and rate.bid < rate.last < rate.ask
            btc = await provider.fetch_ticker("BTC/USD")
            assert btc.last > 60_000
            intraday = await provider.fetch_ohlcv("IBM", "5m", limit=20)
            assert len(intraday) == 20 and all(c.ts % 300_000 == 0 for c in intraday)  # UTC, from US/Eastern
            daily = await provider.fetch_ohlcv("EUR/USD", "1d", limit=5)
            assert len(daily) == 5 and all(c.volume == 0 for c in daily)
            with pytest.raises(NotAvailable, match="indices"):
                await provider.fetch_ticker("^GSPC")
            assert all(seen.query["apikey"] == API_KEY for seen in srv.requests)
            assert provider.budget is not None and provider.budget.remaining == 25 - 5
        finally:
            await provider.close()


async def test_polygon_trades_quotes_and_aggregates_with_a_bearer_key() -> None:
    async with PolygonServer() as srv:
        provider = CASES["polygon"].provider(srv)
        try:
            stock = await provider.fetch_ticker("AAPL")
            crypto = await provider.fetch_ticker("BTC/USD")
            fx = await provider.fetch_ticker("EUR/USD")
            assert stock.last > 0 and crypto.last > 60_000 and fx.bid < fx.last < fx.ask
            daily = await provider.fetch_ohlcv("AAPL", "1d", limit=5)
            assert len(daily) == 5 and all(c.ts % 86_400_000 == 0 for c in daily)
            hourly = await provider.fetch_ohlcv("BTC/USD", "1h", limit=24)
            assert len(hourly) == 24 and [c.ts for c in hourly] == sorted(c.ts for c in hourly)
            assert srv.requests[-1].query["sort"] == "desc"  # newest first, so the cap never cuts the recent end
            for seen in srv.requests:
                assert seen.headers["authorization"] == f"Bearer {API_KEY}"
                assert API_KEY not in json.dumps(seen.query) and "apiKey" not in seen.query
            assert await provider.fetch_ohlcv("ZZZZ", "1d") == []  # Polygon's empty answer for an unknown ticker
        finally:
            await provider.close()


async def test_polygon_free_plan_has_no_last_trades_and_no_indices() -> None:
    async with PolygonServer(entitlements={"aggs"}) as srv:
        provider = CASES["polygon"].provider(srv)
        try:
            with pytest.raises(NotAvailable, match="plan does not include") as err:
                await provider.fetch_ticker("AAPL")
            assert "upgrade your plan" in str(err.value)
            with pytest.raises(NotAvailable, match="plan does not include"):
                await provider.fetch_ohlcv("^GSPC", "1d", limit=5)
            assert provider.guard.health().failures == 0  # a plan limit says nothing about Polygon's health
            assert len(srv.requests) == 2  # and is not retried
            assert len(await provider.fetch_ohlcv("AAPL", "1d", limit=3)) == 3
        finally:
            await provider.close()


# =========================================================================== faults, for every provider


@pytest.mark.parametrize("name", ALL)
async def test_timeout_is_retried_then_reported_as_a_sentence(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv, call_timeout=0.3)
        try:
            srv.faults.delay(1.0, times=None)
            with pytest.raises(Unavailable) as err:
                await case.call(provider)
            assert "did not answer within 0.3 s" in str(err.value)
            assert provider.http.requests_sent == 2  # the first try and one retry (the server never answered)
            assert provider.guard.health().failures == 2  # both counted
            srv.faults.clear()
            await case.call(provider)
            assert provider.guard.health().failures == 0
        finally:
            await provider.close()


@pytest.mark.parametrize("name", ALL)
async def test_a_server_error_is_retried_and_the_answer_arrives(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv)
        try:
            srv.faults.next_status(500, times=1)
            assert await case.call(provider)
            assert [seen.status for seen in srv.requests] == [500, 200]
            assert provider.guard.health().state == "closed"
        finally:
            await provider.close()


@pytest.mark.parametrize("name", ALL)
async def test_server_errors_that_persist_open_the_breaker_which_then_fails_fast(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv, failure_threshold=4)
        try:
            srv.faults.next_status(503, times=None)
            for _ in range(2):
                with pytest.raises(Unavailable, match="server error"):
                    await case.call(provider)
            assert provider.guard.health().state == "open"
            sent = len(srv.requests)
            with pytest.raises(Unavailable, match="not answering") as err:
                await case.call(provider)
            assert len(srv.requests) == sent  # nothing was sent
            assert err.value.retry_at is not None
        finally:
            await provider.close()


@pytest.mark.parametrize("name", ALL)
async def test_rate_limit_opens_the_breaker_for_as_long_as_asked(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv)
        try:
            rate_limit(srv, retry_after=30)
            with pytest.raises(RateLimited) as err:
                await case.call(provider)
            assert err.value.retry_after and err.value.retry_after >= 30
            assert len(srv.requests) == 1  # a rate limit is never hammered with retries
            health = provider.guard.health()
            assert health.state == "open" and health.opened_until is not None
            with pytest.raises(Unavailable, match="asked us to slow down"):
                await case.call(provider)
            assert len(srv.requests) == 1
        finally:
            await provider.close()


@pytest.mark.parametrize("name", ALL)
async def test_malformed_json_is_retried(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv)
        try:
            srv.faults.malformed(times=1)
            assert await case.call(provider)
            assert len(srv.requests) == 2
            srv.faults.malformed(times=None)
            with pytest.raises(BadResponse, match="not valid JSON") as err:
                await case.call(provider)
            assert err.value.__cause__ is None and err.value.__context__ is None
        finally:
            await provider.close()


@pytest.mark.parametrize("name", ALL)
async def test_empty_results(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv)
        try:
            srv.faults.empty()
            if name == "coinmarketcap":  # no candles: its empty answer is a symbol without coins
                with pytest.raises(SymbolNotFound, match="does not list BTC"):
                    await case.call(provider)
            else:
                assert await case.call(provider) == []
            assert len(srv.requests) == 1
            assert provider.guard.health().failures == 0
        finally:
            await provider.close()


@pytest.mark.parametrize("name", ALL)
async def test_unknown_symbol_is_neither_retried_nor_counted(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv)
        try:
            with pytest.raises(SymbolNotFound) as err:
                await case.unknown(provider)
            assert "XYZQ" in str(err.value)
            assert len(srv.requests) == 1 and provider.guard.health().failures == 0
        finally:
            await provider.close()


@pytest.mark.parametrize("name", KEYED)
async def test_a_refused_key_is_neither_retried_nor_counted(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv, key=WRONG_KEY)
        try:
            with pytest.raises(AuthError) as err:
                await case.call(provider)
            assert "key" in str(err.value) and "settings" in str(err.value)
            assert len(srv.requests) == 1 and provider.guard.health().failures == 0
        finally:
            await provider.close()


@pytest.mark.parametrize("name", ALL)
async def test_connection_refused(name: str) -> None:
    case = CASES[name]
    async with case.server() as srv:
        provider = case.provider(srv)
        try:
            await srv.faults.refuse()
            with pytest.raises(Unavailable, match="could not be reached: the connection was refused"):
                await case.call(provider)
            await srv.faults.resume()
            assert await case.call(provider)
        finally:
            await provider.close()


# =========================================================================== keys never leak


def leaks(exc: BaseException, secret: str) -> list[str]:
    """Where `secret` shows in what an exception carries: message, repr, traceback, causes."""
    found = []
    texts = {"str": str(exc), "repr": repr(exc), "traceback": "".join(traceback.format_exception(exc))}
    chained: BaseException | None = exc
    while chained is not None:
        texts[f"chain {type(chained).__name__}"] = repr(chained.args)
        chained = chained.__cause__ or chained.__context__
    for where, text in texts.items():
        if secret in text:
            found.append(where)
    return found


@pytest.mark.parametrize("name", KEYED)
async def test_keys_never_reach_exceptions_logs_or_health(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    case = CASES[name]
    errors: list[ProviderError] = []

    async def failing(action: Callable[[], Awaitable[Any]]) -> None:
        try:
            await action()
        except ProviderError as exc:
            errors.append(exc)
        else:
            raise AssertionError("expected a failure")

    async with case.server() as srv:
        # A high threshold: every fault must reach the wire, not stop at an open breaker.
        provider = case.provider(srv, call_timeout=0.3, failure_threshold=100)
        try:
            srv.faults.delay(1.0, times=2)
            await failing(lambda: case.call(provider))
            srv.faults.next_status(500, times=2)
            await failing(lambda: case.call(provider))
            srv.faults.malformed(times=2)
            await failing(lambda: case.call(provider))
            srv.faults.redirect_loop(times=None)
            await failing(lambda: case.call(provider))
            srv.faults.clear()
            await failing(lambda: case.unknown(provider))
            await srv.faults.refuse()
            await failing(lambda: case.call(provider))
            await srv.faults.resume()
            rate_limit(srv)
            await failing(lambda: case.call(provider))
            await failing(lambda: case.call(provider))  # the breaker's own refusal
            health = provider.guard.health()
        finally:
            await provider.close()
        assert len(errors) == 8
        wrong = case.provider(srv, key=WRONG_KEY)
        try:
            await failing(lambda: case.call(wrong))
        finally:
            await wrong.close()
    for exc in errors[:-1]:
        assert leaks(exc, API_KEY) == [], (type(exc).__name__, str(exc))
    assert leaks(errors[-1], WRONG_KEY) == []
    assert "redirected the request in a loop" in str(errors[3])
    assert API_KEY not in health.last_error
    assert API_KEY not in caplog.text and WRONG_KEY not in caplog.text
    assert API_KEY not in repr(provider) and API_KEY not in repr(provider.http)


async def test_alphavantage_daily_note_echoes_the_key_and_it_goes_no_further(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with AlphaVantageServer(daily_limit=1) as srv:
        provider = CASES["alphavantage"].provider(srv)
        try:
            await provider.fetch_ticker("IBM")
            with pytest.raises(RateLimited) as err:
                await provider.fetch_ticker("IBM")
            assert err.value.resets == "day"
            assert 0 < (err.value.retry_after or 0) <= 86_400  # until 00:00 UTC, from the client's clock
            assert leaks(err.value, API_KEY) == []
            health = provider.guard.health()
            assert health.state == "open" and API_KEY not in health.last_error
            with pytest.raises(Unavailable, match="asked us to slow down") as paused:
                await provider.fetch_ticker("IBM")
            assert leaks(paused.value, API_KEY) == []
        finally:
            await provider.close()
    assert API_KEY not in caplog.text


# =========================================================================== limits, keys and the guard


async def test_alphavantage_daily_budget_refuses_without_sending() -> None:
    async with AlphaVantageServer() as srv:
        provider = AlphaVantage(API_KEY, base_url=srv.url, guard=fast_guard("alphavantage"), daily_limit=2)
        try:
            await provider.fetch_ticker("IBM")
            await provider.fetch_ticker("EUR/USD")
            with pytest.raises(BudgetExhausted, match="25|2 requests a day"):
                await provider.fetch_ticker("IBM")
            assert len(srv.requests) == 2
            assert provider.guard.health().state == "closed" and provider.guard.health().failures == 0
        finally:
            await provider.close()


async def test_requests_are_spaced_by_the_providers_own_rate_limit() -> None:
    """Alpha Vantage's free plan: about 5 a minute, so one request every 12 s (on a fake clock)."""
    now = [1_000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        await asyncio.sleep(0)

    async with AlphaVantageServer() as srv:
        guard = Guard("marketdata:alphavantage", AlphaVantage.guard_config, clock=lambda: now[0], sleep=sleep)
        provider = AlphaVantage(API_KEY, base_url=srv.url, guard=guard)
        try:
            for _ in range(3):
                await provider.fetch_ticker("IBM")
        finally:
            await provider.close()
    assert len(srv.requests) == 3
    assert sum(slept) == pytest.approx(24.0, abs=0.5)


async def test_a_provider_without_a_key_is_skipped_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    registry = GuardRegistry(configs=GUARD_CONFIGS)
    providers = create_providers(
        {"coinmarketcap": "", "alphavantage": None, "polygon": API_KEY}, guards=registry,
        base_urls={"polygon": "http://127.0.0.1:9"},
    )
    try:
        assert [p.name for p in providers] == ["polygon", "yahoo"]  # by priority
        assert all(isinstance(p, Provider) and p.configured for p in providers)
        assert providers[0].base_url == "http://127.0.0.1:9"
        assert providers[0].guard is registry.get("marketdata:polygon")
        assert registry.get("marketdata:polygon").config.rate_per_second == pytest.approx(5 / 60)
        assert "CoinMarketCap has no API key and is skipped" in caplog.text
    finally:
        for provider in providers:
            await provider.close()

    async with PolygonServer() as srv:
        bare = Polygon(None, base_url=srv.url, guard=fast_guard("polygon"))
        assert not bare.configured
        with pytest.raises(NotConfigured, match="needs an API key"):
            await bare.fetch_ohlcv("AAPL", "1d")
        assert srv.requests == []
        await bare.close()


async def test_a_shared_session_is_left_open_for_its_owner() -> None:
    import aiohttp

    async with YahooServer() as srv, aiohttp.ClientSession() as session:
        provider = Yahoo(base_url=srv.url, guard=fast_guard("yahoo"), session=session)
        await provider.fetch_ticker("AAPL")
        await provider.close()
        assert not session.closed

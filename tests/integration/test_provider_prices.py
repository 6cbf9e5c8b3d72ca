"""The runtime with market-data providers on 127.0.0.1: stock and forex rows priced by Yahoo,
their charts, a stand-in price while the venue's stream is stale, and the sources rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.bus import Priority
from app.market.feed import TOPIC_CONNECTION, ConnectionState, ConnectionStatus
from app.paths import resolve_paths
from app.runtime import Runtime
from app.settings import MarketDataSettings, ProviderSettings, Settings, SimSettings, WatchlistSettings
from tests.servers.providers import YahooServer


@pytest.fixture
async def yahoo() -> AsyncIterator[YahooServer]:
    async with YahooServer() as srv:
        yield srv


def settings(yahoo_url: str) -> Settings:
    off = ProviderSettings(enabled=False)
    return Settings(
        watchlist=WatchlistSettings(symbols=("BTC/USDT", "AAPL", "EUR/USD", "ETH/USDT")),
        sim=SimSettings(seed=5, tick_interval_ms=50, history_days=1),
        marketdata=MarketDataSettings(coinmarketcap=off, polygon=off, alphavantage=off,
                                      yahoo=ProviderSettings(enabled=True, priority=40, base_url=yahoo_url)),
    )


async def wait_for(predicate, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_stock_and_forex_rows_are_priced_and_charted_by_the_provider(yahoo: YahooServer, tmp_path: Path) -> None:
    rt = Runtime(settings(yahoo.url), resolve_paths(tmp_path / "s.toml", tmp_path / "data"))
    rt.open_store()
    await rt.start()
    try:
        assert rt.watchlist == ["BTC/USDT", "AAPL", "EUR/USD", "ETH/USDT"]
        await wait_for(lambda: "AAPL" in rt.state.tickers and "EUR/USD" in rt.state.tickers)
        assert rt.state.tickers["AAPL"].venue == "yahoo" and rt.state.tickers["AAPL"].last > 0
        assert rt.state.tickers["BTC/USDT"].venue == "sim"  # the venue's own price is untouched
        series = await rt.load_chart("AAPL", "1d")
        assert len(series) > 10
        assert any("/chart/AAPL" in r.path for r in yahoo.requests)
    finally:
        await rt.stop()


async def test_a_stale_stream_shows_a_provider_price_marked_with_its_source(yahoo: YahooServer, tmp_path: Path) -> None:
    rt = Runtime(settings(yahoo.url), resolve_paths(tmp_path / "s.toml", tmp_path / "data"))
    await rt.start()
    try:
        await wait_for(lambda: rt.provider_feed is not None and rt.provider_feed.rounds >= 1)
        own, alt = rt.state.shown("BTC/USDT")
        assert alt is None and own is not None and own.venue == "sim"
        assert not any("BTC-USD" in r.path for r in yahoo.requests)  # nobody asked while the stream was live

        # The stream falls silent and goes stale (as the feed reports after `stale_after` seconds).
        await rt.feed.stop()
        await rt.bus.drain()
        rt.bus.publish(TOPIC_CONNECTION, ConnectionStatus("sim", ConnectionState.STALE, "no data for 10 s"),
                       Priority.HIGH)
        await rt.bus.drain()
        await rt.provider_feed.poll_once()
        shown, alt = rt.state.shown("BTC/USDT")
        assert alt is not None and alt.provider == "yahoo" and alt.title == "Yahoo Finance"
        assert shown is alt.ticker and shown.symbol == "BTC/USD"  # asked as the USD pair, and shown so
        assert any("BTC-USD" in r.path for r in yahoo.requests)
        # Orders and alerts still see only the venue's own price.
        assert rt.state.tickers["BTC/USDT"].venue == "sim"

        # The stream is back: its next tick wins over the stand-in.
        await rt.feed.start()
        await wait_for(lambda: rt.state.shown("BTC/USDT")[1] is None)
    finally:
        await rt.stop()


async def test_sources_rows_compare_the_venue_and_the_providers_against_the_median(
        yahoo: YahooServer, tmp_path: Path) -> None:
    rt = Runtime(settings(yahoo.url), resolve_paths(tmp_path / "s.toml", tmp_path / "data"))
    await rt.start()
    try:
        rows = await rt.sources("BTC/USDT")
        by = {r.source: r for r in rows}
        assert set(by) == {"sim", "yahoo"}
        assert by["sim"].kind == "exchange" and by["yahoo"].kind == "provider"
        assert by["yahoo"].asked_as == "BTC/USD"
        assert by["sim"].vs_median_bps == -by["yahoo"].vs_median_bps  # two sources: the median is their mid
        assert all(r.age_s is not None and r.age_s >= 0 for r in rows)

        yahoo.faults.next_status(500, times=None)
        rt.aggregator.cache._data.clear()  # noqa: SLF001 force a fresh ask
        rows = await rt.sources("AAPL")
        assert [r.source for r in rows] == ["yahoo"] and rows[0].ticker is None and "Yahoo" in rows[0].error
    finally:
        await rt.stop()


async def test_with_a_coinmarketcap_key_crypto_rows_gain_market_cap_and_rank(tmp_path: Path) -> None:
    from app.secrets import MemorySecretStore, set_token
    from tests.servers.providers import API_KEY, CoinMarketCapServer

    async with CoinMarketCapServer() as cmc:
        off = ProviderSettings(enabled=False)
        s = Settings(watchlist=WatchlistSettings(symbols=("BTC/USDT", "ETH/USDT")),
                     sim=SimSettings(seed=5, tick_interval_ms=50, history_days=1),
                     marketdata=MarketDataSettings(coinmarketcap=ProviderSettings(priority=10, base_url=cmc.url),
                                                   polygon=off, alphavantage=off, yahoo=off))
        rt = Runtime(s, resolve_paths(tmp_path / "s.toml", tmp_path / "data"))
        rt.secrets = MemorySecretStore()
        await set_token(rt.secrets, "marketdata_coinmarketcap", API_KEY)
        await rt.start()
        try:
            await wait_for(lambda: "BTC/USDT" in rt.state.meta)
            info = rt.state.meta["BTC/USDT"]
            assert info.rank == 1 and info.market_cap > 0 and info.name == "Bitcoin"
            assert all(r.headers.get("x-cmc_pro_api_key") == API_KEY for r in cmc.requests)
        finally:
            await rt.stop()


async def test_an_open_venue_breaker_brings_stand_in_prices_even_with_a_live_stream(
        yahoo: YahooServer, tmp_path: Path) -> None:
    from app.market.aggregator import Aggregator
    from app.market.provider_feed import ProviderFeed
    from app.market.providers import Yahoo
    from app.market.state import MarketState
    from app.bus import EventBus
    from app.resilience.guard import Guard, GuardConfig

    bus = EventBus()
    await bus.start()
    state = MarketState()
    state.connection = ConnectionStatus("binance", ConnectionState.LIVE)
    agg = Aggregator([Yahoo(None, base_url=yahoo.url, guard=Guard("marketdata:yahoo", GuardConfig()))])
    breaker_open = False
    feed = ProviderFeed(bus, state, agg, provider_symbols=[], venue_symbols=["BTC/USDT"],
                        venue_down=lambda: breaker_open)
    await feed.poll_once()
    assert "BTC/USDT" not in state.alt  # live and healthy: nobody is asked
    breaker_open = True
    await feed.poll_once()
    assert state.venue_down and not state.venue_live
    assert state.alt["BTC/USDT"].provider == "yahoo"
    await agg.close()
    await bus.stop()

"""The live feed keeps prices flowing through failures, and says when they are stale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from app.bus import EventBus
from app.domain import Ticker, Trade, Side
from app.market.feed import TOPIC_CONNECTION, TOPIC_PRICE, TOPIC_TRADE, ConnectionState, MarketFeed
from app.paths import resolve_paths
from app.runtime import Runtime
from app.settings import MarketDataSettings, ProviderSettings, Settings, SimSettings, WatchlistSettings


class FlakyVenue:
    """Streams a few events per connection, then drops the connection; or stalls when told to."""

    name = "flaky"

    def __init__(self, per_connection: int, stall_after: int | None = None) -> None:
        self.per_connection = per_connection
        self.stall_after = stall_after
        self.connections = 0
        self.sent = 0

    async def watch(self, symbols: Sequence[str]) -> AsyncIterator[Ticker | Trade]:
        self.connections += 1
        for _ in range(self.per_connection):
            if self.stall_after is not None and self.sent >= self.stall_after:
                await asyncio.sleep(3600)
            self.sent += 1
            price = Decimal(100 + self.sent)
            yield Trade("BTC/USDT", self.sent, price, Decimal("0.1"), Side.BUY, venue=self.name)
            yield Ticker("BTC/USDT", self.sent, price, price - 1, price + 1, venue=self.name)
            await asyncio.sleep(0)
        raise ConnectionResetError("connection reset by peer")


async def test_feed_reconnects_after_the_stream_fails_and_keeps_publishing() -> None:
    bus = EventBus()
    states: list[ConnectionState] = []
    prices: list[Decimal] = []
    trades: list[Trade] = []
    bus.subscribe(TOPIC_CONNECTION, lambda e: states.append(e.payload.state))
    bus.subscribe(TOPIC_PRICE, lambda e: prices.append(e.payload.last))
    bus.subscribe(TOPIC_TRADE, lambda e: trades.append(e.payload))
    await bus.start()
    venue = FlakyVenue(per_connection=3)
    feed = MarketFeed(bus, venue, ["BTC/USDT"], backoff_base=0.001, backoff_cap=0.01)
    await feed.start()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if venue.connections >= 3 and len(trades) >= 7:
            break
    await feed.stop()
    await bus.drain()
    assert venue.connections >= 3
    assert [t.price for t in trades] == [Decimal(101 + i) for i in range(len(trades))]  # no trade lost or reordered
    assert ConnectionState.RECONNECTING in states
    first_reconnect = states.index(ConnectionState.RECONNECTING)
    assert ConnectionState.LIVE in states[first_reconnect:]  # came back
    assert states[-1] is ConnectionState.STOPPED
    await bus.stop()


async def test_a_silent_stream_is_marked_stale_then_live_again() -> None:
    bus = EventBus()
    states: list[ConnectionState] = []
    bus.subscribe(TOPIC_CONNECTION, lambda e: states.append(e.payload.state))
    await bus.start()
    venue = FlakyVenue(per_connection=10, stall_after=2)
    feed = MarketFeed(bus, venue, ["BTC/USDT"], stale_after=0.2)
    await feed.start()
    for _ in range(100):
        await asyncio.sleep(0.02)
        if feed.state is ConnectionState.STALE:
            break
    assert feed.state is ConnectionState.STALE
    venue.stall_after = None  # the feed wakes up...
    await feed.stop()
    await bus.drain()
    assert states[:3] == [ConnectionState.CONNECTING, ConnectionState.LIVE, ConnectionState.STALE]
    await bus.stop()


NO_PROVIDERS = MarketDataSettings(**{n: ProviderSettings(enabled=False)
                                     for n in ("coinmarketcap", "polygon", "alphavantage", "yahoo")})


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    settings = Settings(
        watchlist=WatchlistSettings(symbols=("ETH/USDT", "NOPE/USDT", "BTC/USDT")),
        sim=SimSettings(seed=3, tick_interval_ms=20, history_days=1),
        marketdata=NO_PROVIDERS,  # NOPE/USDT must not be sent to a provider on the internet
    )
    return Runtime(settings, resolve_paths(tmp_path / "settings.toml", tmp_path / "data"))


async def test_runtime_starts_with_the_listed_symbols_and_says_which_are_missing(runtime: Runtime) -> None:
    await runtime.start()
    try:
        assert runtime.watchlist == ["ETH/USDT", "BTC/USDT"]
        assert any("NOPE/USDT" in n for n in runtime.notices)
        await runtime.bus.drain()
        assert set(runtime.state.tickers) == {"ETH/USDT", "BTC/USDT"}  # prices before the first streamed tick
        hourly = await runtime.load_chart("BTC/USDT", "1h")
        minute = await runtime.load_chart("BTC/USDT", "1m")
        assert len(minute) >= 1440
        assert await runtime.load_chart("BTC/USDT", "1h") is hourly  # fetched once
        assert 24 <= len(hourly) <= 26
        assert hourly.arrays().high.max() == pytest.approx(minute.arrays().high.max())
        # Live trades reach both the 1m and the 1h candles.
        version = hourly.version
        for _ in range(100):
            await asyncio.sleep(0.02)
            if hourly.version > version and minute.last()[4] == hourly.last()[4]:
                break
        assert hourly.version > version
        assert minute.last()[4] == hourly.last()[4]
    finally:
        await runtime.stop()


async def test_runtime_watch_of_an_unlisted_symbol_is_a_clear_error(runtime: Runtime) -> None:
    from app.venues.base import UnknownSymbol

    with pytest.raises(UnknownSymbol, match="does not list NOPE/USDT"):
        await runtime.start(["NOPE/USDT"])
    await runtime.stop()




async def test_a_failing_simulated_market_fails_its_stream_instead_of_going_quiet() -> None:
    from app.venues.base import VenueUnavailable
    from app.venues.sim import SimConfig, SimVenue

    venue = SimVenue(SimConfig(seed=1, tick_interval_ms=20, history_days=1))
    stream = venue.watch(["BTC/USDT"])
    first = await asyncio.wait_for(anext(stream), 5)
    assert first.symbol == "BTC/USDT" and first.id  # trades and tickers flow, trades carry ids

    def broken(now_ms: int) -> list:
        raise RuntimeError("model diverged")

    venue.step = broken  # type: ignore[method-assign]
    with pytest.raises(VenueUnavailable, match="model diverged"):
        for _ in range(10_000):
            await asyncio.wait_for(anext(stream), 5)
    await venue.close()


async def test_backfill_refetches_from_the_last_candle_before_the_drop(runtime: Runtime) -> None:
    """The backfill runs beside the new stream: if the new connection's first trades open a candle
    before it runs, it must still refetch from the candle the drop interrupted."""
    from decimal import Decimal

    from app.bus import Priority
    from app.domain import Side, Trade
    from app.market.feed import TOPIC_CONNECTION, TOPIC_TRADE, ConnectionState, ConnectionStatus

    await runtime.start(stream=False)
    try:
        series = await runtime.load_chart("BTC/USDT", "1m")
        before_drop = int(series.last()[0])
        runtime.bus.publish(TOPIC_CONNECTION, ConnectionStatus("sim", ConnectionState.RECONNECTING, "cut"),
                            Priority.HIGH)
        await runtime.bus.drain()
        later = before_drop + 3 * 60_000  # the new connection's first trade, three minutes on
        runtime.bus.publish(TOPIC_TRADE, Trade("BTC/USDT", later + 1000, Decimal("1"), Decimal("0.1"), Side.BUY))
        await runtime.bus.drain()
        assert int(series.last()[0]) == later
        asked: list[int] = []
        fetch = runtime.venue.fetch_ohlcv_arrays

        async def recording(symbol, timeframe, since=None, limit=None):  # noqa: ANN001, ANN202
            asked.append(since)
            return await fetch(symbol, timeframe, since=since, limit=limit)

        runtime.venue.fetch_ohlcv_arrays = recording  # type: ignore[method-assign]
        await runtime.backfill()
        assert asked == [before_drop]
    finally:
        await runtime.stop()

"""The market-data aggregator against the providers' local servers: priority fallback, the
TTL cache in memory and in SQLite, `from_all_sources`, and candles a provider lacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.domain import TIMEFRAMES, Candle
from app.market.aggregator import Aggregator, NoSource, build_candles, median
from app.market.cache import TICKER, MarketDataCache
from app.market.providers import AlphaVantage, CoinMarketCap, Polygon, ProviderBase, Yahoo
from app.resilience.guard import Guard, GuardConfig
from app.store import Store
from tests.servers.providers import (
    API_KEY,
    AlphaVantageServer,
    CoinMarketCapServer,
    PolygonServer,
    ProviderServer,
    YahooServer,
)

FAST = dict(rate_per_second=1000.0, burst=1000.0, retry_first_delay=0.01, retry_max_delay=0.02,
            call_timeout=1.0, retry_attempts=2, failure_threshold=50, reset_timeout=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


def build(cls: type[ProviderBase], srv: ProviderServer, key: str | None = API_KEY, **kw: Any) -> ProviderBase:
    return cls(key, base_url=srv.url, guard=Guard(f"marketdata:{cls.name}", GuardConfig(**FAST)), **kw)


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, ProviderServer]]:
    srvs = {"coinmarketcap": CoinMarketCapServer(), "polygon": PolygonServer(),
            "alphavantage": AlphaVantageServer(), "yahoo": YahooServer()}
    for s in srvs.values():
        await s.start()
    yield srvs
    for s in srvs.values():
        await s.stop()


def providers(servers: dict[str, ProviderServer]) -> list[ProviderBase]:
    return [build(CoinMarketCap, servers["coinmarketcap"]), build(Polygon, servers["polygon"]),
            build(AlphaVantage, servers["alphavantage"], daily_limit=None), build(Yahoo, servers["yahoo"], None)]


def asked(srv: ProviderServer) -> int:
    return len(srv.requests)


async def test_the_first_provider_by_priority_answers(servers: dict[str, ProviderServer]) -> None:
    agg = Aggregator(providers(servers))
    got = await agg.ticker("BTC/USD")
    assert got.provider == "coinmarketcap" and got.value.last > 0
    assert asked(servers["yahoo"]) == 0
    await agg.close()


@pytest.mark.parametrize("fault", ["server_error", "timeout", "rate_limit", "malformed", "empty"])
async def test_a_failing_provider_falls_through_to_the_next(servers: dict[str, ProviderServer], fault: str) -> None:
    cmc = servers["coinmarketcap"]
    if fault == "server_error":
        cmc.faults.next_status(503, times=None)
    elif fault == "timeout":
        cmc.faults.delay(5, times=None)
    elif fault == "rate_limit":
        cmc.faults.rate_limit(retry_after=30, times=None)
    elif fault == "malformed":
        cmc.faults.malformed(times=None)
    else:
        cmc.faults.empty(times=None)
    agg = Aggregator(providers(servers))
    got = await agg.ticker("BTC/USD")
    assert got.provider != "coinmarketcap"
    assert got.value.last > 0
    if fault != "timeout":  # a request is recorded when its answer is sent
        assert asked(cmc) >= 1  # it was asked first
    await agg.close()


async def test_every_provider_failing_is_one_sentence_naming_each(servers: dict[str, ProviderServer]) -> None:
    for s in servers.values():
        s.faults.next_status(500, times=None)
    agg = Aggregator(providers(servers))
    with pytest.raises(NoSource) as err:
        await agg.ticker("AAPL")
    text = str(err.value)
    assert text.startswith("No market-data provider could give a price for AAPL.")
    assert "Yahoo" in text and "Polygon" in text
    assert API_KEY not in text
    await agg.close()


async def test_a_provider_without_a_key_is_skipped_without_a_request(servers: dict[str, ProviderServer]) -> None:
    agg = Aggregator([build(CoinMarketCap, servers["coinmarketcap"], None), build(Yahoo, servers["yahoo"], None)])
    got = await agg.ticker("BTC/USD")
    assert got.provider == "yahoo"
    assert asked(servers["coinmarketcap"]) == 0
    await agg.close()


async def test_the_cache_serves_within_its_ttl_and_asks_again_after(servers: dict[str, ProviderServer]) -> None:
    clock = Clock()
    agg = Aggregator(providers(servers), MarketDataCache(ttl={TICKER: 60}, wall=clock), wall=clock)
    first = await agg.ticker("AAPL")
    before = asked(servers[first.provider])
    clock.now += 59
    again = await agg.ticker("AAPL")
    assert again.value == first.value and asked(servers[first.provider]) == before
    clock.now += 2
    await agg.ticker("AAPL")
    assert asked(servers[first.provider]) == before + 1
    await agg.close()


async def test_concurrent_askers_share_one_request(servers: dict[str, ProviderServer]) -> None:
    single = Aggregator(providers(servers))
    await single.ticker("AAPL")
    per_call = asked(servers["polygon"])  # what one ticker costs at Polygon
    await single.close()
    servers["polygon"].faults.delay(0.2, times=1)
    agg = Aggregator(providers(servers))
    results = await asyncio.gather(*(agg.ticker("AAPL") for _ in range(5)))
    assert {r.provider for r in results} == {"polygon"}
    assert asked(servers["polygon"]) == 2 * per_call
    await agg.close()


async def test_a_restart_reads_the_cache_from_sqlite_instead_of_asking(
        servers: dict[str, ProviderServer], tmp_path: Path) -> None:
    clock = Clock()
    store = Store.open(tmp_path / "m.sqlite3")
    agg = Aggregator(providers(servers), MarketDataCache(store, wall=clock), wall=clock)
    first = await agg.ticker("EUR/USD")
    meta = await agg.metadata("BTC/USD")
    await agg.close()
    store.close()
    total = sum(asked(s) for s in servers.values())

    clock.now += 30
    store = Store.open(tmp_path / "m.sqlite3")
    cache = MarketDataCache(store, wall=clock)
    assert await cache.load() == 2
    agg = Aggregator(providers(servers), cache, wall=clock)
    again = await agg.ticker("EUR/USD")
    meta_again = await agg.metadata("BTC/USD")
    assert sum(asked(s) for s in servers.values()) == total  # nobody was asked
    assert again.value == first.value and again.provider == first.provider
    assert isinstance(again.value.last, Decimal)
    assert meta_again.value == meta.value
    await agg.close()
    store.close()


async def test_coinmarketcap_metadata_carries_market_cap_and_rank(servers: dict[str, ProviderServer]) -> None:
    agg = Aggregator(providers(servers))
    meta = await agg.metadata("BTC/USD")
    assert meta.provider == "coinmarketcap"
    assert meta.value.rank == 1 and meta.value.market_cap and meta.value.market_cap > 0
    await agg.close()


async def test_candles_coinmarketcap_lacks_come_from_the_next_source(servers: dict[str, ProviderServer]) -> None:
    agg = Aggregator(providers(servers))
    got = await agg.ohlcv("BTC/USD", "1d", limit=10)
    assert got.provider != "coinmarketcap" and len(got.value) == 10
    assert not any("/quotes" in r.path for r in servers["coinmarketcap"].requests)
    await agg.close()


async def test_yahoo_hourly_candles_are_built_from_15m_on_the_hour(servers: dict[str, ProviderServer]) -> None:
    agg = Aggregator([build(Yahoo, servers["yahoo"], None)])
    got = await agg.ohlcv("AAPL", "1h", limit=12)
    assert got.value and all(c.ts % 3_600_000 == 0 for c in got.value)
    assert all(r.query.get("interval") == "15m" for r in servers["yahoo"].requests)
    await agg.close()


async def test_from_all_sources_returns_whatever_succeeded(servers: dict[str, ProviderServer]) -> None:
    servers["polygon"].faults.next_status(500, times=None)
    agg = Aggregator(providers(servers))
    answers = await agg.from_all_sources("AAPL")
    names = [a.provider for a in answers]
    assert "polygon" not in names and {"alphavantage", "yahoo"} <= set(names)
    assert all(a.value.last > 0 for a in answers)
    everything = await agg.from_all_sources("AAPL", include_failures=True)
    failed = [a for a in everything if not a.ok]
    assert [a.provider for a in failed] == ["polygon"] and "Polygon" in (failed[0].error or "")
    await agg.close()


def test_build_candles_sums_exactly_and_aligns_buckets() -> None:
    step = TIMEFRAMES["15m"] * 1000
    base = 1_700_002_800_000 - 1_700_002_800_000 % 3_600_000 + 30 * 60_000  # :30 past an hour
    finer = [Candle(base + i * step, Decimal(10 + i), Decimal(11 + i), Decimal(9 + i), Decimal("10.5") + i,
                    Decimal("0.1")) for i in range(4)]
    built = build_candles(finer, "1h")
    assert [c.ts % 3_600_000 for c in built] == [0, 0]
    assert built[0].volume == Decimal("0.2") and built[0].open == 10 and built[0].close == Decimal("11.5")
    assert built[1].high == 14 and built[1].low == 11


def test_median_of_exact_prices() -> None:
    assert median([Decimal("3"), Decimal("1"), Decimal("2")]) == 2
    assert median([Decimal("1"), Decimal("2")]) == Decimal("1.5")
    assert median([]) is None

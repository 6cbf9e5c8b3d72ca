"""Binance, Gate.io and MEXC venues: real ccxt and our streams against local servers speaking their formats."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from app.domain import OrderRequest, OrderStatus, OrderType, Side, Ticker, Trade
from app.resilience.guard import Guard, GuardConfig
from app.venues.base import UnknownSymbol, VenueError
from app.venues.binance import BinanceVenue
from app.venues.ccxt_venue import ExchangeConfig
from app.venues.gate import GateVenue
from app.venues.mexc import MexcVenue
from tests.servers.base import API_KEY, API_SECRET
from tests.servers.binance import BinanceServer
from tests.servers.gate import GateServer
from tests.servers.mexc import MexcServer

EXCHANGES = {
    "binance": (BinanceServer, BinanceVenue, ""),
    "gate": (GateServer, GateVenue, "/ws/v4/"),
    "mexc": (MexcServer, MexcVenue, "/ws"),
}


def make_venue(name: str, srv, *, keys: bool = True, guard: Guard | None = None, silence: float = 10.0):
    _, cls, ws_path = EXCHANGES[name]
    config = ExchangeConfig(rest_url=srv.rest_url, ws_url=srv.ws_url + ws_path,
                            api_key=API_KEY if keys else "", secret=API_SECRET if keys else "",
                            timeout_s=3.0, silence_multiple=silence)
    return cls(config, guard=guard)


@pytest.mark.parametrize("name", list(EXCHANGES))
async def test_public_market_data_is_normalised_to_decimal_and_unified_symbols(name: str) -> None:
    server_cls = EXCHANGES[name][0]
    async with server_cls() as srv:
        venue = make_venue(name, srv, keys=False)
        try:
            markets = await venue.load_markets()
            btc = markets["BTC/USDT"]
            assert btc.base == "BTC" and btc.quote == "USDT"
            assert isinstance(btc.price_tick, Decimal) and btc.price_tick > 0 and btc.amount_step > 0
            ticker = await venue.fetch_ticker("BTC/USDT")
            assert ticker.venue == name and isinstance(ticker.last, Decimal) and ticker.last > 0
            assert ticker.bid is not None and ticker.ask is not None and ticker.bid <= ticker.ask
            candles = await venue.fetch_ohlcv_arrays("BTC/USDT", "1m", limit=120)
            assert 100 <= len(candles) <= 120
            assert (candles.ts[1:] - candles.ts[:-1] >= 60_000).all() and (candles.ts % 60_000 == 0).all()
            assert (candles.low <= candles.open).all() and (candles.high >= candles.close).all()
            book = await venue.fetch_order_book("BTC/USDT", 5)
            assert book.bids[0].price < book.asks[0].price
            with pytest.raises(UnknownSymbol, match="does not list NOPE/USDT"):
                await venue.fetch_ticker("NOPE/USDT")
            with pytest.raises(VenueError, match="needs an API key"):
                await venue.fetch_balance()
        finally:
            await venue.close()


@pytest.mark.parametrize("name", list(EXCHANGES))
async def test_orders_carry_the_client_id_and_can_be_found_and_cancelled_by_it(name: str) -> None:
    server_cls = EXCHANGES[name][0]
    async with server_cls() as srv:
        venue = make_venue(name, srv)
        try:
            balances = await venue.fetch_balance()
            assert balances["USDT"].free == Decimal("100000")
            ticker = await venue.fetch_ticker("BTC/USDT")
            market = venue.markets["BTC/USDT"]
            price = (ticker.last * Decimal("0.9")).quantize(market.price_tick)
            cid = "mt" + uuid.uuid4().hex[:20]
            order = await venue.create_order(OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"), cid, price=price))
            assert order.status is OrderStatus.OPEN and order.price == price
            found = await venue.fetch_order_by_client_id(cid, "BTC/USDT")
            assert found.id == order.id and found.amount == Decimal("0.01")
            assert cid in found.client_order_id
            open_orders = await venue.fetch_open_orders("BTC/USDT")
            assert [o.id for o in open_orders] == [order.id]
            cancelled = await venue.cancel_order(order.id, "BTC/USDT")
            assert cancelled.status is OrderStatus.CANCELED
            assert await venue.fetch_open_orders("BTC/USDT") == []
        finally:
            await venue.close()


@pytest.mark.parametrize("name", list(EXCHANGES))
async def test_live_stream_yields_tickers_and_trades_for_the_subscribed_symbols(name: str) -> None:
    server_cls = EXCHANGES[name][0]
    async with server_cls(rate=20.0) as srv:
        venue = make_venue(name, srv, keys=False)
        seen: dict[type, int] = {}
        try:
            listed = await venue.load_markets()
            symbols = ["BTC/USDT"] + [s for s in ("ETH/USDT",) if s in listed]
            stream = venue.watch(symbols)
            async with asyncio.timeout(15):
                async for event in stream:
                    assert event.symbol in symbols and event.venue == name
                    seen[type(event)] = seen.get(type(event), 0) + 1
                    if isinstance(event, Ticker):
                        assert event.high_24h is not None and event.low_24h <= event.last <= event.high_24h
                        assert event.change_pct_24h is not None  # every venue's watchlist row shows the 24h change
                        if event.bid is not None and event.ask is not None:
                            assert event.bid <= event.ask
                            seen["quoted"] = seen.get("quoted", 0) + 1
                    if seen.get(Ticker, 0) >= 3 and seen.get(Trade, 0) >= 3 and seen.get("quoted", 0) >= 1:
                        break
            await stream.aclose()
        finally:
            await venue.close()
        assert seen.get(Ticker, 0) >= 3 and seen.get(Trade, 0) >= 3


async def test_the_full_binance_exchange_info_loads_without_loss() -> None:
    import json
    from pathlib import Path

    capture = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "binance" / "exchangeInfo-capture-2021-10-12.log"
    line = capture.read_text().splitlines()[0]
    info = json.loads(line[line.index("{"):])
    spot = {s["symbol"]: s for s in info["symbols"]}  # leveraged tokens (BTCUPUSDT) trade on spot too
    async with BinanceServer(full_exchange_info=True) as srv:
        venue = make_venue("binance", srv, keys=False)
        try:
            markets = await venue.load_markets()
        finally:
            await venue.close()
    by_id = {venue._ids[s]: m for s, m in markets.items()}
    assert len(info["symbols"]) == 1695
    assert set(by_id) == set(spot)  # every symbol, none lost, none invented
    for market_id, raw in spot.items():
        m = by_id[market_id]
        filters = {f["filterType"]: f for f in raw["filters"]}
        assert m.price_tick == Decimal(filters["PRICE_FILTER"]["tickSize"]), market_id
        assert m.amount_step == Decimal(filters["LOT_SIZE"]["stepSize"]), market_id
        assert m.min_amount == Decimal(filters["LOT_SIZE"]["minQty"]), market_id
        if "MIN_NOTIONAL" in filters:
            assert m.min_notional == Decimal(filters["MIN_NOTIONAL"]["minNotional"]), market_id


async def test_the_runtime_uses_the_keys_the_user_stored(tmp_path) -> None:
    from app.paths import resolve_paths
    from app.runtime import Runtime
    from app.secrets import ApiCredentials, MemorySecretStore
    from app.settings import ExchangeSettings, Settings, VenuesSettings, WatchlistSettings

    async with BinanceServer() as srv:
        settings = Settings(
            watchlist=WatchlistSettings(symbols=("BTC/USDT",)),
            venues=VenuesSettings(binance=ExchangeSettings(rest_url=srv.rest_url, ws_url=srv.ws_url + "/ws")),
        )
        runtime = Runtime(settings, resolve_paths(tmp_path / "s.toml", tmp_path / "data"), venue_name="binance")
        runtime.secrets = MemorySecretStore()
        await runtime.secrets.set("binance", ApiCredentials(API_KEY, API_SECRET))
        try:
            await runtime.start(stream=False)
            balances = await runtime.venue.fetch_balance()
            assert balances["BTC"].free == Decimal("1")
            assert any(r.signed and r.path == "/api/v3/account" for r in srv.requests)
            assert API_SECRET not in repr(runtime.venue.config)
        finally:
            await runtime.stop()

"""Paper trading: a real venue's prices and book, fills in a local account, nothing sent to the exchange."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import pytest

from app.domain import OrderRequest, OrderStatus, OrderType, Side, Trade
from app.trading.paper import PaperVenue
from app.venues.base import InsufficientFunds
from app.venues.sim import SimConfig, SimVenue
from tests.integration.test_exchanges import make_venue
from tests.servers.binance import BinanceServer


async def test_paper_orders_fill_against_the_real_book_and_never_reach_the_exchange() -> None:
    async with BinanceServer() as srv:
        paper = PaperVenue(make_venue("binance", srv, keys=False), {"USDT": Decimal("100000")})
        try:
            await paper.load_markets()
            book = await paper.fetch_order_book("BTC/USDT", 5)
            order = await paper.create_order(OrderRequest("BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), "p1"))
            assert order.status is OrderStatus.FILLED and order.filled == Decimal("0.01")
            assert order.average_price >= book.asks[0].price  # bought at the exchange's ask, or worse for size
            balances = await paper.fetch_balance()
            assert balances["BTC"].free == Decimal("0.01")
            spent = Decimal("100000") - balances["USDT"].free
            assert spent == order.average_price * order.filled + order.fee and order.fee > 0
            assert not any(r.path == "/api/v3/order" for r in srv.requests)  # nothing was sent
            with pytest.raises(InsufficientFunds, match="Not enough BTC"):
                await paper.create_order(OrderRequest("BTC/USDT", Side.SELL, OrderType.MARKET, Decimal("1"), "p2"))
            assert paper.title == "Binance (paper)" and paper.paper
            paper.reset({"USDT": Decimal("500")})
            assert {a: b.total for a, b in (await paper.fetch_balance()).items()} == {"USDT": Decimal("500")}
        finally:
            await paper.close()


class ScriptedVenue(SimVenue):
    """The simulated market's rules and book, with trades we choose."""

    def __init__(self, prints: list[str]) -> None:
        super().__init__(SimConfig(seed=2, history_days=1))
        self.prints = [Decimal(p) for p in prints]

    async def watch(self, symbols: Sequence[str]) -> AsyncIterator:  # type: ignore[override]
        await self._ensure_ready()
        for i, price in enumerate(self.prints):
            await asyncio.sleep(0)
            yield Trade("BTC/USDT", 1_800_000_000_000 + i, price, Decimal("0.5"), Side.SELL, str(i), "sim")


async def test_a_resting_paper_limit_fills_at_its_price_only_when_a_trade_prints_through_it() -> None:
    inner = ScriptedVenue(["101.00", "100.50", "100.01", "99.99", "100.20"])
    paper = PaperVenue(inner, {"USDT": Decimal("1000")})
    await paper.load_markets()
    await paper.fetch_ticker("BTC/USDT")
    inner._tickers["BTC/USDT"] = inner._tickers["BTC/USDT"].__class__(  # place the book near 101
        "BTC/USDT", 0, Decimal("101"), Decimal("100.99"), Decimal("101.01"))
    paper._books.pop("BTC/USDT", None)
    paper._last["BTC/USDT"] = Decimal("101")
    order = await paper.create_order(OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.5"), "p3",
                                                  price=Decimal("100.00")))
    assert order.status is OrderStatus.OPEN
    updates = paper.order_queue()
    seen = []
    async for trade in paper.watch(["BTC/USDT"]):
        state = await paper.fetch_order(order.id, "BTC/USDT")
        seen.append((trade.price, state.status))
    assert [s for p, s in seen if p > Decimal("100")][:3] == [OrderStatus.OPEN] * 3  # no fill above the limit
    assert dict(seen)[Decimal("99.99")] is OrderStatus.FILLED
    filled = updates.get_nowait()
    assert filled.average_price == Decimal("100.00") and filled.fills[0].is_maker
    balances = await paper.fetch_balance()
    assert balances["BTC"].free == Decimal("0.5")
    assert balances["USDT"].total == Decimal("1000") - Decimal("50.00") - filled.fee
    await paper.close()


def test_paper_orders_live_in_their_own_journal_namespace() -> None:
    inner = SimVenue(SimConfig(seed=1, history_days=1))
    paper = PaperVenue(inner)
    assert paper.name == "sim-paper" != inner.name  # the journal never mixes paper and live orders


class ScriptedNoOco(ScriptedVenue):
    supports_oco = False  # like Gate.io: the venue has no OCO lists, the paper account does


async def test_paper_oco_on_a_venue_without_oco_the_stop_triggering_cancels_the_limit_leg() -> None:
    from app.venues.base import OcoRequest

    inner = ScriptedNoOco(["100.50", "99.00", "98.40", "98.00"])
    paper = PaperVenue(inner, {"USDT": Decimal("1000"), "BTC": Decimal("1")})
    assert paper.supports_oco and not getattr(inner, "supports_oco")
    await paper.load_markets()
    await paper.fetch_ticker("BTC/USDT")
    inner._tickers["BTC/USDT"] = inner._tickers["BTC/USDT"].__class__(
        "BTC/USDT", 0, Decimal("101"), Decimal("100.99"), Decimal("101.01"))
    paper._books.pop("BTC/USDT", None)
    paper._last["BTC/USDT"] = Decimal("101")
    request = OcoRequest("BTC/USDT", Side.SELL, Decimal("0.5"), Decimal("103.00"), Decimal("98.50"),
                         Decimal("98.00"), "pL", "pL-limit", "pL-stop")
    placed = await paper.create_oco(request)
    assert [o.status for o in placed.orders] == [OrderStatus.OPEN, OrderStatus.OPEN]
    assert (await paper.fetch_balance())["BTC"].used == Decimal("0.5")  # reserved once for the list
    updates = paper.order_queue()
    async for _ in paper.watch(["BTC/USDT"]):
        pass
    seen = []
    while not updates.empty():
        seen.append(updates.get_nowait())
    limit = await paper.fetch_order_by_client_id("pL-limit", "BTC/USDT")
    stop = await paper.fetch_order_by_client_id("pL-stop", "BTC/USDT")
    assert limit.status is OrderStatus.CANCELED and "triggered" in limit.reason
    assert stop.filled > 0 and all(f.price >= Decimal("98.00") for f in stop.fills)
    assert {o.client_order_id for o in seen} >= {"pL-limit", "pL-stop"}  # both legs' changes were published
    await paper.close()

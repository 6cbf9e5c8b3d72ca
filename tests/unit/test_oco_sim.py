"""OCO lists in the simulated market's matching engine (app/venues/sim_orders.py), used by the simulated
market and by paper trading.

The engine is driven directly with a hand-made book and prints at chosen prices, so every case is hit on
purpose: the limit leg filling cancels the stop leg, the stop triggering cancels the limit leg, a partial
fill of the limit leg cancels the stop leg at once and leaves the rest working (Binance's behaviour), a
cancel of either leg cancels both, and the list's single reservation is spent or released exactly.
"""

from __future__ import annotations

import itertools
from decimal import Decimal as D

import pytest

from app.domain import ZERO, BookLevel, Market, OrderBook, OrderStatus, OrderType, Side
from app.venues.base import InsufficientFunds, OcoRequest, OrderRejected
from app.venues.sim import SimConfig, SimVenue
from app.venues.sim_orders import SimAccount, SimMatcher
from tests.unit.test_sim_orders import FakeClock, advance

BTC = Market("BTC/USDT", "BTC", "USDT", price_tick=D("0.01"), amount_step=D("0.00001"), min_amount=D("0.00001"),
             min_notional=D("5"), maker_fee=D("0.001"), taker_fee=D("0.001"))
LAST = D("30000")
T = 1_700_000_000_000
_ids = itertools.count(1)


def book(mid: D = LAST, depth: str = "5") -> OrderBook:
    tick = D("0.01")
    return OrderBook("BTC/USDT", T, tuple(BookLevel(mid - tick * (i + 1), D(depth)) for i in range(5)),
                     tuple(BookLevel(mid + tick * (i + 1), D(depth)) for i in range(5)))


def engine(usdt: str = "100000", btc: str = "2") -> tuple[SimMatcher, SimAccount]:
    account = SimAccount({"USDT": D(usdt), "BTC": D(btc)})
    return SimMatcher({"BTC/USDT": BTC}, account), account


def oco(side: Side, amount: str, price: str, stop: str, stop_limit: str) -> OcoRequest:
    n = next(_ids)
    return OcoRequest("BTC/USDT", side, D(amount), D(price), D(stop), D(stop_limit), f"L{n}", f"L{n}-limit",
                      f"L{n}-stop")


def free(account: SimAccount, asset: str) -> D:
    return account.balances()[asset].free


def used(account: SimAccount, asset: str) -> D:
    b = account.balances().get(asset)
    return b.used if b else ZERO


def test_a_sell_oco_rests_both_legs_and_reserves_the_amount_once() -> None:
    m, account = engine()
    lst = m.submit_oco(oco(Side.SELL, "0.5", "31000", "29000", "28900"), book(), LAST, T)
    limit, stop = lst.orders
    assert (limit.type, limit.price, limit.status) == (OrderType.LIMIT, D("31000"), OrderStatus.OPEN)
    assert (stop.type, stop.stop_price, stop.price, stop.status) == (OrderType.STOP_LIMIT, D("29000"), D("28900"),
                                                                     OrderStatus.OPEN)
    assert lst.list_client_id.startswith("L") and lst.list_id.startswith("SIML-")
    assert used(account, "BTC") == D("0.5") and free(account, "BTC") == D("1.5")  # once, not per leg
    assert {o.client_order_id for o in m.open_orders("BTC/USDT")} == {limit.client_order_id, stop.client_order_id}


def test_the_limit_leg_filling_cancels_the_stop_leg() -> None:
    m, account = engine()
    request = oco(Side.SELL, "0.5", "31000", "29000", "28900")
    m.submit_oco(request, book(), LAST, T)
    changed = m.on_print("BTC/USDT", D("31000.5"), book(D("31000.5")), T + 1)
    by_cid = {o.client_order_id: o for o in changed}
    limit, stop = by_cid[request.limit_client_id], by_cid[request.stop_client_id]
    assert limit.status is OrderStatus.FILLED and limit.filled == D("0.5") and limit.fills[0].price == D("31000")
    assert limit.fills[0].is_maker
    assert stop.status is OrderStatus.CANCELED and stop.filled == 0 and "filled" in stop.reason
    assert m.open_orders() == []
    fee = limit.fee
    assert used(account, "BTC") == 0 and free(account, "BTC") == D("1.5")
    assert free(account, "USDT") == D("100000") + D("15500") - fee
    # A print through the stop afterwards does nothing: the stop leg is gone.
    assert m.on_print("BTC/USDT", D("28000"), book(D("28000")), T + 2) == []


def test_the_stop_triggering_cancels_the_limit_leg_and_the_stop_leg_trades() -> None:
    m, account = engine()
    request = oco(Side.SELL, "0.5", "31000", "29000", "28900")
    m.submit_oco(request, book(), LAST, T)
    assert m.on_print("BTC/USDT", D("29500"), book(D("29500")), T + 1) == []  # between the legs: nothing
    changed = m.on_print("BTC/USDT", D("28999.99"), book(D("29000")), T + 2)
    by_cid = {o.client_order_id: o for o in changed}
    limit, stop = by_cid[request.limit_client_id], by_cid[request.stop_client_id]
    assert limit.status is OrderStatus.CANCELED and "triggered" in limit.reason
    # Triggered, the stop-limit sells into the bids down to its limit 28900: all 0.5 at 28999.99 .. 28999.95.
    assert stop.status is OrderStatus.FILLED and stop.filled == D("0.5")
    assert all(f.price >= D("28900") and not f.is_maker for f in stop.fills)
    assert used(account, "BTC") == 0 and free(account, "BTC") == D("1.5")
    value = sum((f.price * f.amount for f in stop.fills), ZERO)
    assert free(account, "USDT") == D("100000") + value - stop.fee


def test_a_partial_fill_of_the_limit_leg_cancels_the_stop_leg_and_the_rest_keeps_working() -> None:
    """Binance: "When one order is fully or partially filled, the other is automatically canceled."."""
    m, account = engine()
    request = oco(Side.SELL, "0.5", "31000", "29000", "28900")
    m.submit_oco(request, book(), LAST, T)
    changed = m.on_print("BTC/USDT", D("31000"), book(D("31000")), T + 1, size=D("0.2"))
    by_cid = {o.client_order_id: o for o in changed}
    limit, stop = by_cid[request.limit_client_id], by_cid[request.stop_client_id]
    assert limit.status is OrderStatus.PARTIALLY_FILLED and limit.filled == D("0.2")
    assert stop.status is OrderStatus.CANCELED and "partly filled" in stop.reason
    assert used(account, "BTC") == D("0.3")  # the rest of the list's reservation stays with the working leg
    # The market falls through the old stop: nothing triggers any more.
    assert m.on_print("BTC/USDT", D("28000"), book(D("28000")), T + 2) == []
    # The rest fills later; then everything reserved has been spent.
    (done,) = m.on_print("BTC/USDT", D("31001"), book(D("31001")), T + 3, size=D("5"))
    assert done.status is OrderStatus.FILLED and done.filled == D("0.5")
    assert used(account, "BTC") == 0 and free(account, "BTC") == D("1.5")


def test_a_buy_oco_reserves_the_dearer_leg_and_releases_the_difference() -> None:
    m, account = engine()
    request = oco(Side.BUY, "0.1", "29000", "31000", "31100")
    m.submit_oco(request, book(), LAST, T)
    reserved = D("0.1") * D("31100") * D("1.001")  # the stop leg's value and its taker fee
    assert used(account, "USDT") == reserved
    changed = m.on_print("BTC/USDT", D("28999"), book(D("28999")), T + 1)
    limit = next(o for o in changed if o.client_order_id == request.limit_client_id)
    assert limit.status is OrderStatus.FILLED and limit.fills[0].price == D("29000")
    assert used(account, "USDT") == 0
    assert free(account, "USDT") == D("100000") - D("2900") - limit.fee
    assert free(account, "BTC") == D("2.1")


def test_a_buy_oco_stop_triggers_above_the_market() -> None:
    m, account = engine()
    request = oco(Side.BUY, "0.1", "29000", "31000", "31100")
    m.submit_oco(request, book(), LAST, T)
    changed = m.on_print("BTC/USDT", D("31000"), book(D("31000")), T + 1)
    stop = next(o for o in changed if o.client_order_id == request.stop_client_id)
    limit = next(o for o in changed if o.client_order_id == request.limit_client_id)
    assert limit.status is OrderStatus.CANCELED and stop.status is OrderStatus.FILLED
    assert all(f.price <= D("31100") for f in stop.fills)
    assert used(account, "USDT") == 0 and free(account, "BTC") == D("2.1")


@pytest.mark.parametrize("which", ["limit", "stop"])
def test_cancelling_either_leg_cancels_the_list_and_frees_the_reservation(which: str) -> None:
    m, account = engine()
    request = oco(Side.SELL, "0.5", "31000", "29000", "28900")
    lst = m.submit_oco(request, book(), LAST, T)
    leg = lst.orders[0] if which == "limit" else lst.orders[1]
    cancelled = m.cancel(leg.id)
    assert cancelled.status is OrderStatus.CANCELED
    assert all(o.status is OrderStatus.CANCELED for o in m.get_list(request.list_client_id).orders)
    assert used(account, "BTC") == 0 and free(account, "BTC") == D("2")
    with pytest.raises(OrderRejected, match="nothing to cancel"):
        m.cancel_list(request.list_client_id)


@pytest.mark.parametrize(("side", "price", "stop", "words"), [
    (Side.SELL, "29999", "29000", "limit price"),   # a sell's limit must be above the last price
    (Side.SELL, "31000", "30000", "stop price"),    # ... and its stop strictly below it
    (Side.BUY, "30001", "31000", "limit price"),    # a buy's limit must be below
    (Side.BUY, "29000", "29999", "stop price"),     # ... and its stop above
])
def test_prices_that_do_not_straddle_the_last_price_are_refused_and_nothing_is_reserved(
        side: Side, price: str, stop: str, words: str) -> None:
    m, account = engine()
    with pytest.raises(OrderRejected, match="relationship of the prices") as info:
        m.submit_oco(oco(side, "0.1", price, stop, stop), book(), LAST, T)
    assert words in str(info.value)
    assert used(account, "BTC") == 0 and used(account, "USDT") == 0 and m.open_orders() == []


def test_a_limit_leg_that_would_take_is_refused() -> None:
    m, _ = engine()
    crossed = book(D("31000.02"))  # the bids reach 31000.01: a sell limit at 31000 would trade at once
    with pytest.raises(OrderRejected, match="would trade at once"):
        m.submit_oco(oco(Side.SELL, "0.1", "31000", "29000", "28900"), crossed, LAST, T)


def test_the_exchange_rules_apply_to_each_leg_and_ids_are_unique() -> None:
    m, _ = engine()
    with pytest.raises(OrderRejected, match="not a multiple"):
        m.submit_oco(oco(Side.SELL, "0.1", "31000.001", "29000", "28900"), book(), LAST, T)
    with pytest.raises(OrderRejected, match="minimum"):
        m.submit_oco(oco(Side.SELL, "0.0001", "31000", "29000", "28900"), book(), LAST, T)  # 2.89 USDT leg
    with pytest.raises(InsufficientFunds):
        m.submit_oco(oco(Side.SELL, "3", "31000", "29000", "28900"), book(), LAST, T)
    first = oco(Side.SELL, "0.1", "31000", "29000", "28900")
    m.submit_oco(first, book(), LAST, T)
    with pytest.raises(OrderRejected, match="already used"):
        m.submit_oco(first, book(), LAST, T)
    assert len(m.open_orders()) == 2


async def test_the_simulated_market_offers_oco_through_the_venue_protocol() -> None:
    clock = FakeClock()
    venue = SimVenue(SimConfig(seed=3, history_days=1), clock=clock)
    advance(venue, clock, 1_000)
    assert venue.supports_oco
    ticker = await venue.fetch_ticker("BTC/USDT")
    last, tick = ticker.last, D("0.01")
    request = OcoRequest("BTC/USDT", Side.SELL, D("0.01"), (last * D("1.5")).quantize(tick),
                         (last * D("0.5")).quantize(tick), (last * D("0.49")).quantize(tick), "V1", "V1-l", "V1-s")
    lst = await venue.create_oco(request)
    assert [o.status for o in lst.orders] == [OrderStatus.OPEN, OrderStatus.OPEN]
    assert (await venue.fetch_order_by_client_id("V1-s", "BTC/USDT")).stop_price == request.stop_price
    cancelled = await venue.cancel_order_list("V1", "BTC/USDT")
    assert [o.status for o in cancelled.orders] == [OrderStatus.CANCELED, OrderStatus.CANCELED]
    assert (await venue.fetch_balance())["BTC"].used == 0
    await venue.close()

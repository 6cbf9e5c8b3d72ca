"""OCO lists on Binance through real ccxt (its implicit `private_post_orderlist_oco` and
`private_delete_orderlist`) against the local Binance-compatible server (tests/servers/binance.py).

The server's ledger is the referee: after every fault there is exactly one order list on the exchange
or none, and the journal knows both legs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from app.bus import EventBus
from app.domain import OrderStatus, OrderType, Side
from app.store import Store
from app.trading.orders import OrderService
from app.venues.base import OcoRequest
from tests.integration.test_order_faults import binance
from tests.servers.binance import BinanceServer

SYMBOL = "BTC/USDT"
OCO_PATH = "/api/v3/orderList/oco"
REPEAT = 5


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    async with BinanceServer() as srv:
        yield srv


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus()
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "meridian.sqlite3") as s:
        yield s


async def service(srv: BinanceServer, store: Store, bus: EventBus, call_timeout: float = 3.0,
                  settle_window: float = 1.0) -> OrderService:
    venue = binance(srv.rest_url, srv.ws_url, call_timeout=call_timeout)
    svc = OrderService(venue, store, bus, settle_window=settle_window, backoff_first=0.02, backoff_max=0.2)
    await svc.start()
    return svc


async def oco_request(svc: OrderService, side: Side, amount: str = "0.01") -> OcoRequest:
    last = (await svc.venue.fetch_ticker(SYMBOL)).last
    tick = D("0.01")
    up, down = (last * D("1.05")).quantize(tick), (last * D("0.95")).quantize(tick)
    if side is Side.SELL:  # take profit above, stop loss below
        return OcoRequest(SYMBOL, side, D(amount), up, down, (down * D("0.999")).quantize(tick), "", "", "")
    return OcoRequest(SYMBOL, side, D(amount), down, up, (up * D("1.001")).quantize(tick), "", "", "")


def lists(srv: BinanceServer, list_client_id: str) -> list:
    return [lst for lst in srv.order_lists.values() if lst.client_id == list_client_id]


def posts(srv: BinanceServer) -> list:
    return [r for r in srv.requests if r.method == "POST" and r.path == OCO_PATH]


async def test_a_sell_oco_is_one_signed_request_with_our_ids_and_both_legs_are_journalled_open(
        server: BinanceServer, store: Store, bus: EventBus) -> None:
    svc = await service(server, store, bus)
    request = await oco_request(svc, Side.SELL)
    limit, stop = await svc.submit_oco(request)
    (post,) = posts(server)
    assert post.signed and post.status == 200
    assert {"symbol", "side", "quantity", "listClientOrderId", "aboveType", "aboveClientOrderId", "abovePrice",
            "belowType", "belowClientOrderId", "belowPrice", "belowStopPrice", "belowTimeInForce",
            "newOrderRespType", "timestamp", "signature"} <= set(post.params)
    list_id = svc.entry(limit.client_order_id).list_id
    (lst,) = lists(server, list_id)
    below, above = lst.legs
    assert (above.type, above.client_id, above.price) == ("limit_maker", limit.client_order_id, request.price)
    assert (below.type, below.client_id, below.stop_price, below.price) == (
        "stop_loss_limit", stop.client_order_id, request.stop_price, request.stop_limit_price)
    assert (limit.status, stop.status) == (OrderStatus.OPEN, OrderStatus.OPEN)
    assert (limit.id, stop.id) == (above.id, below.id)
    assert stop.type is OrderType.STOP_LIMIT and stop.stop_price == request.stop_price
    assert server.ledger.locked["BTC"] == D("0.01")  # one reservation for the list
    # Both legs are ordinary open orders to the exchange; a refresh keeps them open.
    await svc.refresh()
    assert [e.status for e in svc.list_legs(list_id)] == [OrderStatus.OPEN, OrderStatus.OPEN]
    await svc.close()
    await svc.venue.close()


async def test_a_buy_oco_puts_the_stop_above_and_the_limit_below(
        server: BinanceServer, store: Store, bus: EventBus) -> None:
    svc = await service(server, store, bus)
    request = await oco_request(svc, Side.BUY)
    limit, stop = await svc.submit_oco(request)
    (lst,) = lists(server, svc.entry(limit.client_order_id).list_id)
    below, above = lst.legs
    assert (below.type, below.client_id) == ("limit_maker", limit.client_order_id)
    assert (above.type, above.client_id, above.stop_price) == ("stop_loss_limit", stop.client_order_id,
                                                               request.stop_price)
    assert server.ledger.locked["USDT"] == D("0.01") * request.stop_limit_price  # the dearer leg
    await svc.close()
    await svc.venue.close()


async def test_the_limit_leg_filling_expires_the_stop_leg_and_a_refresh_shows_both(
        server: BinanceServer, store: Store, bus: EventBus) -> None:
    svc = await service(server, store, bus)
    limit, stop = await svc.submit_oco(await oco_request(svc, Side.SELL))
    server.oco_fill(limit.client_order_id, "0.004")  # partly: Binance expires the other leg at once
    await svc.refresh()
    a, b = svc.entry(limit.client_order_id), svc.entry(stop.client_order_id)
    assert a.status is OrderStatus.PARTIALLY_FILLED and a.filled == D("0.004")
    assert b.status is OrderStatus.CANCELED and "other order of its OCO list" in b.reason
    server.oco_fill(limit.client_order_id)
    await svc.refresh()
    assert svc.entry(limit.client_order_id).status is OrderStatus.FILLED
    assert server.ledger.locked["BTC"] == 0 and server.ledger.free["BTC"] == D("0.99")
    await svc.close()
    await svc.venue.close()


async def test_the_stop_triggering_expires_the_limit_leg(
        server: BinanceServer, store: Store, bus: EventBus) -> None:
    svc = await service(server, store, bus)
    limit, stop = await svc.submit_oco(await oco_request(svc, Side.SELL))
    server.oco_trigger(stop.client_order_id)
    server.oco_fill(stop.client_order_id)
    await svc.refresh()
    assert svc.entry(limit.client_order_id).status is OrderStatus.CANCELED
    assert svc.entry(stop.client_order_id).status is OrderStatus.FILLED
    await svc.close()
    await svc.venue.close()


@pytest.mark.parametrize("which", [0, 1])
async def test_cancelling_either_leg_cancels_the_list_on_binance(
        server: BinanceServer, store: Store, bus: EventBus, which: int) -> None:
    svc = await service(server, store, bus)
    legs = await svc.submit_oco(await oco_request(svc, Side.SELL))
    await svc.cancel(legs[which].client_order_id, SYMBOL)
    assert [r.method for r in server.requests if r.path == "/api/v3/orderList"] == ["DELETE"]
    assert [svc.entry(o.client_order_id).status for o in legs] == [OrderStatus.CANCELED, OrderStatus.CANCELED]
    assert server.ledger.open_orders() == [] and server.ledger.locked["BTC"] == 0
    await svc.close()
    await svc.venue.close()


async def test_binance_refusing_the_price_relation_rejects_both_legs(
        server: BinanceServer, store: Store, bus: EventBus) -> None:
    svc = await service(server, store, bus)
    good = await oco_request(svc, Side.SELL)
    bad = OcoRequest(SYMBOL, Side.SELL, good.amount, good.stop_price, good.price, good.stop_limit_price, "", "", "")
    limit, stop = await svc.submit_oco(bad)
    assert limit.status is OrderStatus.REJECTED and stop.status is OrderStatus.REJECTED
    assert "relationship of the prices" in limit.reason and limit.reason == stop.reason
    assert server.order_lists == {} and svc.may_resend(limit.client_order_id)
    await svc.close()
    await svc.venue.close()


@pytest.mark.parametrize("fault", ["drop", "late"])
async def test_an_accepted_oco_whose_answer_is_lost_exists_once_and_both_legs_become_known(
        server: BinanceServer, store: Store, bus: EventBus, fault: str) -> None:
    """The connection drops (or the answer comes after the client gave up) once the server has accepted
    the list: both legs go UNKNOWN, are found by their client ids, and the list is never sent again."""
    svc = await service(server, store, bus, call_timeout=0.25)
    for i in range(REPEAT):
        if fault == "drop":
            server.drop_oco_answers = 1
        else:
            server.faults.lose_answer(1.0, times=1, path=OCO_PATH)
        limit, stop = await svc.submit_oco(await oco_request(svc, Side.SELL, amount="0.01"))
        assert limit.status is OrderStatus.UNKNOWN and stop.status is OrderStatus.UNKNOWN, (limit, stop)
        a = await svc.wait_settled(limit.client_order_id, timeout=10)
        b = await svc.wait_settled(stop.client_order_id, timeout=10)
        (lst,) = lists(server, a.list_id)  # exactly one list on the exchange
        below, above = lst.legs
        assert (a.status, a.venue_order_id) == (OrderStatus.OPEN, above.id)
        assert (b.status, b.venue_order_id) == (OrderStatus.OPEN, below.id)
        assert len(posts(server)) == i + 1 and len(server.order_lists) == i + 1  # never sent twice
    assert server.errors == []
    await svc.close()
    await svc.venue.close()


async def test_an_oco_that_failed_before_the_matching_engine_is_known_not_placed(
        server: BinanceServer, store: Store, bus: EventBus) -> None:
    """A 500 (-1001) means the outcome is unknown; here the server never took the list, so after the in-flight
    window the legs are known not to exist and may be sent again."""
    svc = await service(server, store, bus, settle_window=0.3)
    server.faults.next_status(500, times=1, path=OCO_PATH)
    limit, stop = await svc.submit_oco(await oco_request(svc, Side.SELL))
    assert limit.status is OrderStatus.UNKNOWN
    a = await svc.wait_settled(limit.client_order_id, timeout=10)
    b = await svc.wait_settled(stop.client_order_id, timeout=10)
    assert a.status is OrderStatus.REJECTED and a.not_placed and b.not_placed
    assert server.order_lists == {}
    await svc.resend(limit.client_order_id)
    assert len(server.order_lists) == 1 and len(posts(server)) == 2
    await svc.close()
    await svc.venue.close()


async def test_the_wire_parameters_follow_binances_above_and_below_legs(server: BinanceServer) -> None:
    venue = binance(server.rest_url, server.ws_url, call_timeout=3.0)
    await venue.load_markets()
    common = dict(symbol="BTCUSDT", quantity="0.01", listClientOrderId="mtL", newOrderRespType="RESULT")
    sell = OcoRequest(SYMBOL, Side.SELL, D("0.01"), D("70000"), D("60000"), D("59900.5"), "mtL", "mtA", "mtB")
    assert venue.oco_params(sell) == {
        **common, "side": "SELL",
        "aboveType": "LIMIT_MAKER", "aboveClientOrderId": "mtA", "abovePrice": "70000",
        "belowType": "STOP_LOSS_LIMIT", "belowClientOrderId": "mtB", "belowPrice": "59900.5",
        "belowStopPrice": "60000", "belowTimeInForce": "GTC"}
    buy = OcoRequest(SYMBOL, Side.BUY, D("0.01"), D("60000"), D("70000"), D("70100"), "mtL", "mtA", "mtB")
    assert venue.oco_params(buy) == {
        **common, "side": "BUY",
        "aboveType": "STOP_LOSS_LIMIT", "aboveClientOrderId": "mtB", "abovePrice": "70100",
        "aboveStopPrice": "70000", "aboveTimeInForce": "GTC",
        "belowType": "LIMIT_MAKER", "belowClientOrderId": "mtA", "belowPrice": "60000"}
    await venue.close()

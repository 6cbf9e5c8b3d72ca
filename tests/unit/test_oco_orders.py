"""OCO lists through the order service, on a real SQLite file and the simulated market's real engine.

Faults are scripted around the real venue (`ScriptedSim`): the list placed but its answer lost, the request
lost before it arrived, a refusal. Whatever happens, both legs are journalled before anything is sent,
linked by the list's client id, and end up known: open on the venue exactly once, or known not to exist.
"""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal as D
from pathlib import Path

import pytest

from app.bus import EventBus
from app.domain import OrderStatus, OrderType, Side
from app.store import Store
from app.trading.journal import OrderJournal
from app.trading.orders import OrderService, OrderServiceError, OrderStillUnknown
from app.venues.base import OcoRequest, OrderList, OrderOutcomeUnknown, OrderRejected
from app.venues.sim import SimConfig, SimVenue
from tests.unit.test_sim_orders import FakeClock, advance

REPEAT = 10
FAST = dict(settle_window=0.0, backoff_first=0.002, backoff_max=0.01)
SYMBOL = "BTC/USDT"


class ScriptedSim(SimVenue):
    """The simulated market, with `create_oco` outcomes scripted per call:
    "ok"; "lose" (placed, the answer lost); "drop" (never arrived); "refuse" (a definite refusal)."""

    def __init__(self, db: Path | None = None) -> None:
        self.clock = FakeClock()
        super().__init__(SimConfig(seed=5, history_days=1), clock=self.clock)
        advance(self, self.clock, 1_000)
        self.db = db
        self.script: list[str] = []
        self.sent: list[str] = []
        self.rows_at_send: list[list[tuple]] = []

    async def create_oco(self, request: OcoRequest) -> OrderList:
        self.sent.append(request.list_client_id)
        if self.db is not None:  # what another process would see if we crashed right now
            conn = sqlite3.connect(self.db)
            try:
                self.rows_at_send.append(conn.execute(
                    "SELECT client_order_id, status, list_id FROM order_journal WHERE list_id = ? ORDER BY rowid",
                    (request.list_client_id,)).fetchall())
            finally:
                conn.close()
        action = self.script.pop(0) if self.script else "ok"
        if action == "refuse":
            raise OrderRejected("Simulated market rejected the order list: test refusal")
        if action == "drop":
            raise OrderOutcomeUnknown("no answer", request.list_client_id)
        placed = await super().create_oco(request)
        if action == "lose":
            raise OrderOutcomeUnknown("no answer", request.list_client_id)
        return placed

    def lists_on_venue(self, list_client_id: str) -> int:
        return int(list_client_id in self._matcher._lists)

    def print_at(self, price: D, size: D | None = None) -> None:
        """A trade prints at `price` (the test's stand-in for the market moving there)."""
        self._matcher.on_print(SYMBOL, price, self._book(SYMBOL), self.clock.ms, size)


class NoOcoVenue(SimVenue):
    supports_oco = False
    title = "Gate.io"




async def started(venue, store: Store, bus: EventBus, **kw) -> OrderService:
    svc = OrderService(venue, store, bus, **{**FAST, **kw})
    await svc.start()
    return svc


async def a_sell_oco(venue: SimVenue, amount: str = "0.01") -> OcoRequest:
    last = (await venue.fetch_ticker(SYMBOL)).last
    tick = D("0.01")
    return OcoRequest(SYMBOL, Side.SELL, D(amount), (last * D("1.02")).quantize(tick),
                      (last * D("0.98")).quantize(tick), (last * D("0.97")).quantize(tick), "", "", "")


async def test_both_legs_are_journalled_pending_and_linked_before_the_list_is_sent(
        store: Store, bus: EventBus, db: Path) -> None:
    venue = ScriptedSim(db)
    svc = await started(venue, store, bus)
    limit, stop = await svc.submit_oco(await a_sell_oco(venue))
    (rows,) = venue.rows_at_send
    assert [(r[0], r[1]) for r in rows] == [(limit.client_order_id, "pending"), (stop.client_order_id, "pending")]
    list_id = venue.sent[0]
    assert all(r[2] == list_id for r in rows)
    assert limit.status is OrderStatus.OPEN and stop.status is OrderStatus.OPEN
    assert limit.type is OrderType.LIMIT and stop.type is OrderType.STOP_LIMIT
    legs = svc.list_legs(list_id)
    assert [e.client_order_id for e in legs] == [limit.client_order_id, stop.client_order_id]
    assert all(e.venue_order_id and e.list_id == list_id for e in legs)
    assert legs[0].post_only and legs[1].stop_price is not None
    # The link survives a restart: a fresh service reads both legs back with their list id.
    again = await OrderJournal(store).load(venue.name)
    assert {e.client_order_id: e.list_id for e in again} == {limit.client_order_id: list_id,
                                                              stop.client_order_id: list_id}
    await svc.close()


async def test_a_lost_answer_makes_both_legs_unknown_then_both_are_found_and_nothing_is_sent_twice(
        store: Store, bus: EventBus) -> None:
    venue = ScriptedSim()
    svc = await started(venue, store, bus)
    for _ in range(REPEAT):
        venue.script.append("lose")
        limit, stop = await svc.submit_oco(await a_sell_oco(venue))
        assert limit.status is OrderStatus.UNKNOWN and stop.status is OrderStatus.UNKNOWN
        assert "Checking whether the order was placed" in limit.reason
        a = await svc.wait_settled(limit.client_order_id, timeout=5)
        b = await svc.wait_settled(stop.client_order_id, timeout=5)
        assert a.status is OrderStatus.OPEN and b.status is OrderStatus.OPEN and a.venue_order_id and b.venue_order_id
        assert venue.lists_on_venue(a.list_id) == 1
    assert len(venue.sent) == REPEAT and len(set(venue.sent)) == REPEAT  # each list sent once, never again
    assert len(await venue.fetch_open_orders(SYMBOL)) == 2 * REPEAT
    await svc.close()


async def test_a_list_that_never_arrived_is_known_not_placed_and_is_resent_whole_under_new_ids(
        store: Store, bus: EventBus) -> None:
    venue = ScriptedSim()
    svc = await started(venue, store, bus)
    venue.script.append("drop")
    limit, stop = await svc.submit_oco(await a_sell_oco(venue))
    a = await svc.wait_settled(limit.client_order_id, timeout=5)
    b = await svc.wait_settled(stop.client_order_id, timeout=5)
    assert a.status is OrderStatus.REJECTED and a.not_placed and b.status is OrderStatus.REJECTED and b.not_placed
    assert svc.may_resend(stop.client_order_id)
    again = await svc.resend(stop.client_order_id)  # either leg resends the whole list, never one leg alone
    assert again.status is OrderStatus.OPEN and again.type is OrderType.LIMIT
    new_list = svc.entry(again.client_order_id).list_id
    assert new_list != a.list_id and len(svc.list_legs(new_list)) == 2
    assert len(venue.sent) == 2 and len(await venue.fetch_open_orders(SYMBOL)) == 2
    await svc.close()


async def test_a_refusal_rejects_both_legs_with_one_sentence_and_nothing_is_reserved(
        store: Store, bus: EventBus) -> None:
    venue = ScriptedSim()
    svc = await started(venue, store, bus)
    rejected: list = []
    bus.subscribe("order.rejected", lambda e: rejected.append(e.payload))
    request = await a_sell_oco(venue)
    bad = OcoRequest(SYMBOL, Side.SELL, request.amount, request.stop_price, request.price, request.stop_limit_price,
                     "", "", "")  # limit and stop swapped: the real engine refuses the price relation
    limit, stop = await svc.submit_oco(bad)
    for leg in (limit, stop):
        assert leg.status is OrderStatus.REJECTED
        assert "Your OCO sell" in leg.reason and "relationship of the prices" in leg.reason
        assert "Nothing was traded" in leg.reason
    await bus.drain()
    assert {o.client_order_id for o in rejected} == {limit.client_order_id, stop.client_order_id}
    assert (await venue.fetch_balance())["BTC"].used == 0
    await svc.close()


@pytest.mark.parametrize("which", [0, 1])
async def test_cancelling_one_leg_cancels_the_list(store: Store, bus: EventBus, which: int) -> None:
    venue = ScriptedSim()
    svc = await started(venue, store, bus)
    legs = await svc.submit_oco(await a_sell_oco(venue))
    cancelled = await svc.cancel(legs[which].client_order_id, SYMBOL)
    assert cancelled.status is OrderStatus.CANCELED
    assert [svc.entry(o.client_order_id).status for o in legs] == [OrderStatus.CANCELED, OrderStatus.CANCELED]
    assert await venue.fetch_open_orders(SYMBOL) == []
    with pytest.raises(OrderServiceError, match="already canceled"):
        await svc.cancel(legs[1 - which].client_order_id, SYMBOL)
    await svc.close()


async def test_refresh_follows_the_venue_cancelling_the_other_leg_after_a_fill(store: Store, bus: EventBus) -> None:
    venue = ScriptedSim()
    svc = await started(venue, store, bus)
    request = await a_sell_oco(venue)
    limit, stop = await svc.submit_oco(request)
    venue.print_at(request.price + D("1"), size=D("0.004"))  # a partial fill of the limit leg
    await svc.refresh()
    a, b = svc.entry(limit.client_order_id), svc.entry(stop.client_order_id)
    assert a.status is OrderStatus.PARTIALLY_FILLED and a.filled == D("0.004")
    assert b.status is OrderStatus.CANCELED and "other leg" in b.reason
    assert len(await svc.fills(limit.client_order_id)) == 1
    # Cancelling the list now cancels what is left of the working leg.
    await svc.cancel(stop.client_order_id, SYMBOL)
    assert svc.entry(limit.client_order_id).status is OrderStatus.CANCELED
    await svc.close()


async def test_a_leg_still_being_checked_cannot_be_cancelled(store: Store, bus: EventBus) -> None:
    venue = ScriptedSim()
    svc = await started(venue, store, bus, settle_window=30.0)
    venue.script.append("drop")
    limit, _ = await svc.submit_oco(await a_sell_oco(venue))
    with pytest.raises(OrderStillUnknown):
        await svc.cancel(limit.client_order_id, SYMBOL)
    await svc.close()


async def test_legs_left_pending_by_a_crash_are_reconciled_at_start(store: Store, bus: EventBus) -> None:
    venue = ScriptedSim()
    request = await a_sell_oco(venue)
    request = OcoRequest(request.symbol, request.side, request.amount, request.price, request.stop_price,
                         request.stop_limit_price, "mtlist0001", "mtleg0001a", "mtleg0001b")
    # The last run journalled both legs, sent the list, and died before the answer.
    from app.trading.journal import JournalEntry

    journal = OrderJournal(store)
    await journal.insert_pending_many([JournalEntry.pending(venue.name, leg, 1, request.list_client_id)
                                       for leg in request.legs()])
    await venue.create_oco(request)
    svc = await started(venue, store, bus)
    assert svc.trading_enabled
    assert [e.status for e in svc.list_legs("mtlist0001")] == [OrderStatus.OPEN, OrderStatus.OPEN]
    await svc.close()


async def test_a_venue_without_oco_is_refused_with_a_sentence_and_nothing_is_journalled(
        store: Store, bus: EventBus) -> None:
    venue = NoOcoVenue(SimConfig(seed=5, history_days=1))
    svc = await started(venue, store, bus)
    assert not svc.supports_oco
    with pytest.raises(OrderServiceError, match="Gate.io does not offer OCO"):
        await svc.submit_oco(OcoRequest(SYMBOL, Side.SELL, D("0.01"), D("2"), D("1"), D("1"), "", "", ""))
    assert svc.orders() == []
    await svc.close()


async def test_the_validator_sees_each_leg_and_a_refusal_sends_nothing(store: Store, bus: EventBus) -> None:
    venue = ScriptedSim()
    seen: list = []

    def validator(request) -> None:
        seen.append(request)
        if request.type is OrderType.STOP_LIMIT:
            raise OrderRejected("Refused by your risk limits: test")

    svc = await started(venue, store, bus, validator=validator)
    with pytest.raises(OrderRejected, match="risk limits"):
        await svc.submit_oco(await a_sell_oco(venue))
    assert [r.type for r in seen] == [OrderType.LIMIT, OrderType.STOP_LIMIT]
    assert venue.sent == [] and svc.orders() == []

    calls: list[OcoRequest] = []
    svc.oco_validator = lambda r: calls.append(r)  # a list-wide validator replaces the per-leg one
    await svc.submit_oco(await a_sell_oco(venue))
    assert len(calls) == 1 and len(venue.sent) == 1
    await svc.close()


async def test_duplicate_ids_are_refused_before_anything_is_sent(store: Store, bus: EventBus) -> None:
    venue = ScriptedSim()
    svc = await started(venue, store, bus)
    base = await a_sell_oco(venue)
    first = OcoRequest(SYMBOL, Side.SELL, base.amount, base.price, base.stop_price, base.stop_limit_price,
                       "mtL1", "mtA1", "mtB1")
    await svc.submit_oco(first)
    from app.trading.orders import DuplicateClientOrderId

    with pytest.raises(DuplicateClientOrderId):
        await svc.submit_oco(OcoRequest(SYMBOL, Side.SELL, base.amount, base.price, base.stop_price,
                                        base.stop_limit_price, "mtL1", "mtA2", "mtB2"))
    with pytest.raises(OrderRejected, match="three different"):
        await svc.submit_oco(OcoRequest(SYMBOL, Side.SELL, base.amount, base.price, base.stop_price,
                                        base.stop_limit_price, "mtL3", "mtA3", "mtA3"))
    assert len(venue.sent) == 1
    await asyncio.sleep(0)
    await svc.close()

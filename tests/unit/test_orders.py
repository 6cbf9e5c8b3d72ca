"""The order service on a real SQLite file: journal first, send once, reconcile by client order id.

Two venues: the simulated market (`app.venues.sim`, the real matching engine with trade ids) and a
scripted fake whose `create_order` and lookups fail exactly when a test says, so each fault is hit
on purpose. Each fault runs many times (`REPEAT`), because a race that shows one time in ten would
lose or double real money.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from app.bus import Event, EventBus, Priority
from app.domain import Fill, Order, OrderRequest, OrderStatus, OrderType, Side
from app.store import MIGRATIONS, Store, schema_version
from app.trading.journal import JournalEntry, OrderJournal
from app.trading.orders import (
    CannotCancel,
    DuplicateClientOrderId,
    OrderService,
    OrderStillUnknown,
    PlaceOrder,
    TradingDisabled,
    new_client_order_id,
)
from app.venues.base import (
    InsufficientFunds,
    OrderNotFound,
    OrderOutcomeUnknown,
    OrderRejected,
    VenueUnavailable,
)
from app.venues.sim import SimConfig, SimVenue

REPEAT = 20
FAST = dict(settle_window=0.0, backoff_first=0.002, backoff_max=0.01)
LIVE = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


# --------------------------------------------------------------------------- the scripted venue


class FakeVenue:
    """A venue whose faults are scripted per call.

    create_script actions: "ok"; "lose" (placed, answer lost); "drop" (never arrived, outcome unknown);
    "inflight" (not arrived yet, outcome unknown: the test makes it arrive with `arrive`); "reject"
    (insufficient funds); "unavailable" (plain VenueUnavailable, not placed); "unavailable_placed" (plain
    VenueUnavailable, but placed: a 5xx after the matching engine took it); "boom" (placed, then the
    adapter crashed parsing the answer).
    """

    name = "fake"
    title = "Fake Exchange"

    def __init__(self, db: Path | None = None) -> None:
        self.db = db
        self.book: dict[str, Order] = {}  # the venue's ledger, by client order id
        self.closed_history: bool = False
        self.create_calls: list[str] = []
        self.create_script: list[str] = []
        self.rows_seen_at_send: list[tuple] = []
        self.lookups = 0
        self.down = False  # every read fails as unreachable
        self.by_client_id = True  # False: the lookup is unsupported
        self.inflight: dict[str, Order] = {}
        self.gate: asyncio.Event | None = None  # create_order waits for it (to cancel the caller meanwhile)
        self._ids = itertools.count(1000)

    # -- test controls

    def arrive(self, cid: str) -> None:
        self.book[cid] = self.inflight.pop(cid)

    def fill(self, cid: str, filled: str, average: str, fee: str = "0") -> None:
        o = self.book[cid]
        done = Decimal(filled) >= o.amount
        self.book[cid] = replace(o, filled=Decimal(filled), average_price=Decimal(average), fee=Decimal(fee),
                                 fee_asset="USDT", status=OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED)

    def placed(self, cid: str) -> int:
        return int(cid in self.book)

    # -- the Venue protocol (the parts the order service uses)

    async def create_order(self, request: OrderRequest) -> Order:
        self.create_calls.append(request.client_order_id)
        if self.db is not None:
            # An independent connection: what another process would see after a crash right now.
            conn = sqlite3.connect(self.db)
            try:
                row = conn.execute("SELECT status, amount, price FROM order_journal WHERE client_order_id = ?",
                                   (request.client_order_id,)).fetchone()
            finally:
                conn.close()
            assert row is not None, "the venue saw the order before its journal row was committed"
            assert row[0] == "pending"
            self.rows_seen_at_send.append(row)
        if self.gate is not None:
            await self.gate.wait()
        action = self.create_script.pop(0) if self.create_script else "ok"
        await asyncio.sleep(0)
        cid = request.client_order_id
        if action == "reject":
            raise InsufficientFunds("Fake Exchange says the balance is too low for this order.")
        order = Order(id=f"F{next(self._ids)}", client_order_id=cid, symbol=request.symbol, side=request.side,
                      type=request.type, status=OrderStatus.OPEN, amount=request.amount, ts=1, price=request.price)
        if action in ("ok", "lose", "boom", "unavailable_placed"):
            self.book[cid] = order
        if action == "inflight":
            self.inflight[cid] = order
        if action in ("lose", "drop", "inflight"):
            raise OrderOutcomeUnknown(f"The order {cid} was sent to Fake Exchange but no answer came back.", cid)
        if action in ("unavailable", "unavailable_placed"):
            raise VenueUnavailable("Fake Exchange failed to handle the request; try again in a moment.")
        if action == "boom":
            raise KeyError("a parser bug")
        return order

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> Order:
        self.lookups += 1
        await asyncio.sleep(0)
        if self.down:
            raise VenueUnavailable("Fake Exchange cannot be reached; check your connection.")
        if not self.by_client_id:
            raise NotImplementedError
        order = self.book.get(client_order_id)
        if order is None:
            raise OrderNotFound(f"Fake Exchange has no order with client id {client_order_id}.")
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        await asyncio.sleep(0)
        if self.down:
            raise VenueUnavailable("Fake Exchange cannot be reached; check your connection.")
        return [o for o in self.book.values() if o.status in LIVE and symbol in (None, o.symbol)]

    async def fetch_order(self, order_id: str, symbol: str) -> Order:
        if self.down:
            raise VenueUnavailable("Fake Exchange cannot be reached; check your connection.")
        for o in self.book.values():
            if o.id == order_id:
                return o
        raise OrderNotFound(f"Fake Exchange has no order {order_id}.")

    async def cancel_order(self, order_id: str, symbol: str) -> Order:
        o = await self.fetch_order(order_id, symbol)
        if o.status not in LIVE:
            raise OrderNotFound(f"Fake Exchange has no open order {order_id}.")
        self.book[o.client_order_id] = o = replace(o, status=OrderStatus.CANCELED)
        return o

    async def close(self) -> None:
        pass


class FakeWithHistory(FakeVenue):
    async def fetch_closed_orders(self, symbol: str) -> list[Order]:
        if self.down:
            raise VenueUnavailable("Fake Exchange cannot be reached; check your connection.")
        return [o for o in self.book.values() if o.status not in LIVE and o.symbol == symbol]


# --------------------------------------------------------------------------- fixtures and helpers




class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.events: list[Event] = []
        bus.subscribe("order.*", self.events.append)
        bus.subscribe("trade.executed", self.events.append)

    async def topic(self, topic: str) -> list[Event]:
        await self.bus.drain()
        return [e for e in self.events if e.topic == topic]

    async def statuses(self, cid: str) -> list[OrderStatus]:
        return [e.payload.status for e in await self.topic("order.updated") if e.payload.client_order_id == cid]


async def started(venue, store: Store, bus: EventBus, **kw) -> OrderService:
    svc = OrderService(venue, store, bus, **{**FAST, **kw})
    await svc.start()
    return svc


def limit(price: str = "100", amount: str = "0.5", cid: str = "", side: Side = Side.BUY,
          symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderType.LIMIT, Decimal(amount), cid, price=Decimal(price))


async def until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


# --------------------------------------------------------------------------- the journal comes first


def test_schema_v2_adds_the_journal_without_touching_v1(store: Store) -> None:
    assert store.call_sync(schema_version) == len(MIGRATIONS) >= 2
    names = set(store.call_sync(lambda c: [r[0] for r in c.execute("SELECT name FROM sqlite_master")]))
    assert {"ui_state", "kv", "order_journal", "order_fills"} <= names


async def test_the_journal_row_is_committed_as_pending_before_the_venue_sees_the_order(
        store: Store, bus: EventBus, db: Path) -> None:
    venue = FakeVenue(db)
    svc = await started(venue, store, bus)
    for i in range(REPEAT):
        order = await svc.submit(limit(price=f"100.{i:02d}", amount="0.00000001"))
        assert order.status is OrderStatus.OPEN and order.id
    assert len(venue.rows_seen_at_send) == REPEAT
    # Decimals are stored as exact text.
    assert venue.rows_seen_at_send[7][1:] == ("0.00000001", "100.07")
    await svc.close()


async def test_client_ids_are_short_unique_and_exchange_safe() -> None:
    ids = {new_client_order_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and i.startswith("mt") and i.isalnum() for i in ids)


# --------------------------------------------------------------------------- lost answers


async def test_a_lost_answer_makes_the_order_unknown_then_reconciles_it_open(store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    rec = Recorder(bus)
    svc = await started(venue, store, bus)
    for _ in range(REPEAT):
        venue.create_script.append("lose")
        order = await svc.submit(limit())
        cid = order.client_order_id
        assert order.status is OrderStatus.UNKNOWN and "will not be sent again" in order.reason
        assert not svc.may_resend(cid)
        entry = await svc.wait_settled(cid, timeout=5)
        assert entry.status is OrderStatus.OPEN and entry.venue_order_id == venue.book[cid].id
        assert entry.reason == "" and not svc.may_resend(cid)
        assert venue.create_calls.count(cid) == 1
        assert await rec.statuses(cid) == [OrderStatus.PENDING, OrderStatus.UNKNOWN, OrderStatus.OPEN]
    assert len(venue.book) == REPEAT
    assert await rec.topic("order.rejected") == []
    await svc.close()


async def test_a_request_that_never_arrived_is_not_placed_only_after_a_positive_not_found(
        store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    rec = Recorder(bus)
    svc = await started(venue, store, bus)
    for _ in range(REPEAT):
        venue.create_script.append("drop")
        cid = (await svc.submit(limit())).client_order_id
        entry = await svc.wait_settled(cid, timeout=5)
        assert entry.status is OrderStatus.REJECTED and entry.not_placed
        assert "was not placed" in entry.reason and "send it again" in entry.reason
        assert svc.may_resend(cid) and venue.placed(cid) == 0
        with pytest.raises(DuplicateClientOrderId):
            await svc.submit(limit(cid=cid))  # the same client id never goes out twice, even now
        again = await svc.resend(cid)
        assert again.client_order_id != cid and again.status is OrderStatus.OPEN
        assert venue.create_calls.count(cid) == 1 and venue.placed(again.client_order_id) == 1
        with pytest.raises(Exception, match="cannot be sent again"):
            await svc.resend(again.client_order_id)
    rejected = await rec.topic("order.rejected")
    assert len(rejected) == REPEAT
    assert all(e.priority is Priority.HIGH and "was not placed" in e.payload.reason for e in rejected)
    assert len(venue.book) == REPEAT  # one order per request, none lost, none doubled
    await svc.close()


async def test_not_found_while_the_request_may_still_be_in_flight_is_not_final(store: Store, bus: EventBus) -> None:
    now = [1_700_000_000.0]
    venue = FakeVenue()
    svc = await started(venue, store, bus, settle_window=15.0, clock=lambda: now[0])
    for i in range(REPEAT):
        venue.create_script.append("inflight")
        cid = (await svc.submit(limit())).client_order_id
        start = venue.lookups
        await until(lambda: venue.lookups >= start + 5)
        assert svc.entry(cid).status is OrderStatus.UNKNOWN and not svc.may_resend(cid)
        if i % 2 == 0:
            venue.arrive(cid)  # the delayed request reached the matching engine after all
            entry = await svc.wait_settled(cid, timeout=5)
            assert entry.status is OrderStatus.OPEN and venue.placed(cid) == 1
        else:
            now[0] += 15.0  # past the window: it can no longer arrive
            entry = await svc.wait_settled(cid, timeout=5)
            assert entry.status is OrderStatus.REJECTED and entry.not_placed and venue.placed(cid) == 0
    assert len(venue.create_calls) == REPEAT
    await svc.close()


@pytest.mark.parametrize("placed", [True, False])
async def test_while_the_venue_is_unreachable_the_order_stays_unknown_and_is_never_resent(
        store: Store, bus: EventBus, placed: bool) -> None:
    venue = FakeVenue()
    svc = await started(venue, store, bus)
    for _ in range(REPEAT):
        venue.create_script.append("lose" if placed else "drop")
        venue.down = True
        cid = (await svc.submit(limit())).client_order_id
        start = venue.lookups
        await until(lambda: venue.lookups >= start + 6)  # retrying, with backoff
        entry = svc.entry(cid)
        assert entry.status is OrderStatus.UNKNOWN and not svc.may_resend(cid)
        with pytest.raises(OrderStillUnknown):
            await svc.cancel(cid, "BTC/USDT")
        assert venue.create_calls.count(cid) == 1
        venue.down = False
        entry = await svc.wait_settled(cid, timeout=5)
        assert entry.status is (OrderStatus.OPEN if placed else OrderStatus.REJECTED)
        assert venue.create_calls.count(cid) == 1 and venue.placed(cid) == int(placed)
    await svc.close()


@pytest.mark.parametrize("action, placed", [("boom", True), ("unavailable_placed", True), ("unavailable", False)])
async def test_an_answer_that_is_not_a_definite_refusal_is_reconciled_not_trusted(
        store: Store, bus: EventBus, action: str, placed: bool) -> None:
    venue = FakeVenue()
    svc = await started(venue, store, bus)
    for _ in range(REPEAT):
        venue.create_script.append(action)
        order = await svc.submit(limit())
        assert order.status is OrderStatus.UNKNOWN
        entry = await svc.wait_settled(order.client_order_id, timeout=5)
        assert entry.status is (OrderStatus.OPEN if placed else OrderStatus.REJECTED)
        assert entry.not_placed is (not placed)
    assert len(venue.book) == (REPEAT if placed else 0)
    await svc.close()


async def test_a_definite_rejection_is_final_at_once_with_a_sentence(store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    rec = Recorder(bus)
    svc = await started(venue, store, bus)
    venue.create_script.append("reject")
    order = await svc.submit(limit())
    assert order.status is OrderStatus.REJECTED and "balance is too low" in order.reason
    entry = svc.entry(order.client_order_id)
    assert not entry.not_placed and svc.may_resend(order.client_order_id) and venue.lookups == 0
    [event] = await rec.topic("order.rejected")
    assert event.priority is Priority.HIGH and event.payload.reason.startswith("Your limit buy of 0.5 BTC/USDT at 100")
    await svc.close()


async def test_unlookupable_orders_are_found_in_open_orders_or_history_and_otherwise_stay_unknown(
        store: Store, bus: EventBus) -> None:
    venue = FakeWithHistory()
    venue.by_client_id = False
    svc = await started(venue, store, bus)
    for _ in range(REPEAT // 4):
        venue.create_script.append("lose")
        cid = (await svc.submit(limit())).client_order_id
        assert (await svc.wait_settled(cid, timeout=5)).status is OrderStatus.OPEN  # from the open orders

        venue.create_script.append("lose")
        venue.down = True
        cid = (await svc.submit(limit())).client_order_id
        venue.fill(cid, "0.5", "100")  # filled at once: only the history shows it now
        venue.down = False
        entry = await svc.wait_settled(cid, timeout=5)
        assert entry.status is OrderStatus.FILLED and entry.filled == Decimal("0.5")

        venue.create_script.append("drop")
        cid = (await svc.submit(limit())).client_order_id
        start = venue.lookups
        await until(lambda: venue.lookups >= start + 5)
        # Absent from every list, but nobody said "no such order": it is never called not placed.
        assert svc.entry(cid).status is OrderStatus.UNKNOWN and not svc.may_resend(cid)
    await svc.close()


async def test_a_cancelled_caller_does_not_interrupt_the_placement(store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    svc = await started(venue, store, bus)
    for _ in range(REPEAT):
        venue.gate = asyncio.Event()
        request = limit(cid=new_client_order_id())
        caller = asyncio.create_task(svc.submit(request))
        await until(lambda: request.client_order_id in venue.create_calls)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        venue.gate.set()
        await until(lambda: svc.entry(request.client_order_id).status is OrderStatus.OPEN)
    await svc.close()


# --------------------------------------------------------------------------- one client id, one order


async def test_a_client_id_is_never_sent_twice(store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    svc = await started(venue, store, bus)
    for _ in range(REPEAT):
        cid = new_client_order_id()
        results = await asyncio.gather(svc.submit(limit(cid=cid)), svc.submit(limit(cid=cid)),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["DuplicateClientOrderId", "Order"]
        with pytest.raises(DuplicateClientOrderId, match="never sent twice"):
            await svc.submit(limit(cid=cid))
        assert venue.create_calls.count(cid) == 1
    # While unknown, and from a second service on the same file (another run).
    venue.down = True
    venue.create_script.append("lose")
    cid = (await svc.submit(limit())).client_order_id
    with pytest.raises(DuplicateClientOrderId):
        await svc.submit(limit(cid=cid))
    await svc.close()
    other = OrderService(venue, store, bus, **FAST)
    other._trading_enabled = other._started = True  # skip start(): the check must hold in SQLite itself
    with pytest.raises(DuplicateClientOrderId):
        await other.submit(limit(cid=cid))
    assert venue.create_calls.count(cid) == 1


async def test_bad_client_ids_are_refused_before_anything_is_written(store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    svc = await started(venue, store, bus)
    for bad in ("has space", "x" * 37, "ünï"):
        with pytest.raises(OrderRejected, match="client order id"):
            await svc.submit(limit(cid=bad))
    assert venue.create_calls == [] and svc.orders() == []
    await svc.close()


# --------------------------------------------------------------------------- start-up


async def test_start_reconciles_rows_left_by_a_previous_run_before_trading_is_enabled(
        store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    for _ in range(REPEAT // 4):
        first = await started(venue, store, bus)
        venue.down = True
        venue.create_script += ["lose", "drop"]
        lost = (await first.submit(limit())).client_order_id  # on the venue, answer lost
        dropped = (await first.submit(limit())).client_order_id  # never arrived
        await first.close()  # the app closes (or dies) while both are UNKNOWN
        # A crash between the journal write and the answer leaves PENDING rows.
        journal = OrderJournal(store)
        crashed_sent, crashed_unsent = new_client_order_id(), new_client_order_id()
        for cid in (crashed_sent, crashed_unsent):
            assert await journal.insert_pending(JournalEntry.pending("fake", limit(cid=cid), 1_000))
        await venue.create_order(limit(cid=crashed_sent))  # it went out before the crash
        calls = len(venue.create_calls)

        second = OrderService(venue, store, bus, **FAST)
        starting = asyncio.create_task(second.start())
        start = venue.lookups
        await until(lambda: venue.lookups >= start + 8)
        assert not second.trading_enabled
        with pytest.raises(TradingDisabled, match="checked with Fake Exchange"):
            await second.submit(limit())
        mine = (lost, dropped, crashed_sent, crashed_unsent)
        assert {second.entry(cid).status for cid in mine} == {OrderStatus.PENDING, OrderStatus.UNKNOWN}
        assert not starting.done()
        venue.down = False
        await asyncio.wait_for(starting, 5)
        assert second.trading_enabled
        state = {e.client_order_id: e for e in second.orders()}
        assert state[lost].status is OrderStatus.OPEN and state[crashed_sent].status is OrderStatus.OPEN
        assert state[dropped].not_placed and state[crashed_unsent].not_placed
        assert second.may_resend(crashed_unsent) and not second.may_resend(crashed_sent)
        assert len(venue.create_calls) == calls  # reconciling never sends
        await second.close()


async def test_submit_before_start_is_refused(store: Store, bus: EventBus) -> None:
    svc = OrderService(FakeVenue(), store, bus, **FAST)
    with pytest.raises(TradingDisabled, match="not started"):
        await svc.submit(limit())


# --------------------------------------------------------------------------- fills


async def test_fills_are_published_once_across_refreshes_and_restarts(store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    rec = Recorder(bus)
    svc = await started(venue, store, bus)
    cid = (await svc.submit(limit(price="100", amount="1"))).client_order_id
    venue.fill(cid, "0.4", "100", fee="0.04")
    for _ in range(REPEAT):
        await svc.refresh()
    venue.fill(cid, "1", "99.4", fee="0.1")  # the rest filled at 99
    for _ in range(REPEAT):
        await svc.refresh()
    await svc.close()
    for _ in range(3):  # restarts: nothing is published twice
        again = await started(venue, store, bus)
        await again.refresh()
        await again.close()
    fills = [e.payload for e in await rec.topic("trade.executed")]
    assert [(f.amount, f.price, f.fee) for f in fills] == [
        (Decimal("0.4"), Decimal("100"), Decimal("0.04")), (Decimal("0.6"), Decimal("99"), Decimal("0.06"))]
    assert all(e.priority is Priority.MEDIUM for e in await rec.topic("trade.executed"))
    assert len({f.trade_id for f in fills}) == 2
    statuses = await rec.statuses(cid)
    assert statuses == [OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    assert all(e.priority is Priority.MEDIUM for e in await rec.topic("order.updated"))


async def test_fills_that_arrived_while_the_app_was_closed_are_fetched_at_start(store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    rec = Recorder(bus)
    svc = await started(venue, store, bus)
    cid = (await svc.submit(limit(amount="2"))).client_order_id
    await svc.close()
    venue.fill(cid, "2", "100")
    again = await started(venue, store, bus)
    assert again.entry(cid).status is OrderStatus.FILLED and again.trading_enabled
    [fill] = [e.payload for e in await rec.topic("trade.executed")]
    assert isinstance(fill, Fill) and fill.amount == Decimal("2") and fill.order_id == venue.book[cid].id
    await again.close()


# --------------------------------------------------------------------------- on the simulated market


@pytest.fixture
async def sim() -> AsyncIterator[SimVenue]:
    rich = {"USDT": Decimal("100000000"), "BTC": Decimal("1000"), "ETH": Decimal("10000")}
    venue = SimVenue(SimConfig(seed=3, history_days=1, balances=rich))
    await venue.load_markets()
    yield venue
    await venue.close()


async def test_sim_orders_fill_with_their_trade_ids_once_and_cancel(sim: SimVenue, store: Store, bus: EventBus) -> None:
    rec = Recorder(bus)
    svc = await started(sim, store, bus)
    ticker = await sim.fetch_ticker("BTC/USDT")
    tick = sim.markets["BTC/USDT"].price_tick
    market = await svc.submit(OrderRequest("BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.5"), ""))
    assert market.status is OrderStatus.FILLED and market.filled == Decimal("0.5")
    fills = await svc.fills(market.client_order_id)
    assert fills and sum(f.amount for f in fills) == Decimal("0.5")
    # A limit at the best ask, bigger than the ask: it takes that level and rests, partially filled. Every
    # refresh sees the same snapshot with the same trades.
    book = await sim.fetch_order_book("BTC/USDT")
    amount = (book.asks[0].amount * Decimal("1.5")).quantize(sim.markets["BTC/USDT"].amount_step)
    partial = await svc.submit(limit(price=str(book.asks[0].price), amount=str(amount)))
    assert partial.status is OrderStatus.PARTIALLY_FILLED
    fills += await svc.fills(partial.client_order_id)
    resting = await svc.submit(limit(price=str((ticker.last * Decimal("0.8")).quantize(tick)), amount="0.01"))
    assert resting.status is OrderStatus.OPEN
    for _ in range(REPEAT):
        await svc.refresh()
    await svc.close()
    svc = await started(sim, store, bus)  # a restart refreshes again: still no duplicate
    published = [e.payload for e in await rec.topic("trade.executed")]
    assert [f.trade_id for f in published] == [f.trade_id for f in fills]
    assert len({f.trade_id for f in published}) == len(published) >= 2
    cancelled = await svc.cancel(resting.client_order_id, "BTC/USDT")
    assert cancelled.status is OrderStatus.CANCELED and svc.entry(resting.client_order_id).status is OrderStatus.CANCELED
    with pytest.raises(CannotCancel, match="already canceled"):
        await svc.cancel(resting.id, "BTC/USDT")  # by venue order id too
    await svc.close()


async def test_a_post_only_order_that_would_cross_is_rejected_by_the_venue(sim: SimVenue, store: Store,
                                                                           bus: EventBus) -> None:
    rec = Recorder(bus)
    svc = await started(sim, store, bus)
    ticker = await sim.fetch_ticker("BTC/USDT")
    request = replace(limit(price=str(ticker.ask + 100), amount="0.01"), post_only=True)
    order = await svc.submit(request)
    assert order.status is OrderStatus.REJECTED and "post-only" in order.reason
    [event] = await rec.topic("order.rejected")
    assert event.priority is Priority.HIGH and event.payload.client_order_id == order.client_order_id
    await svc.close()


async def test_the_place_order_command_validates_executes_and_undoes(sim: SimVenue, store: Store,
                                                                     bus: EventBus) -> None:
    seen: list[OrderRequest] = []

    async def no_big_orders(request: OrderRequest) -> None:
        seen.append(request)
        if request.amount > 1:
            raise OrderRejected("Orders above 1 BTC need the risk desk's approval.")

    svc = await started(sim, store, bus, validator=no_big_orders)
    ticker = await sim.fetch_ticker("BTC/USDT")
    price = str((ticker.last * Decimal("0.9")).quantize(sim.markets["BTC/USDT"].price_tick))
    big = svc.place(limit(price=price, amount="2"))
    with pytest.raises(OrderRejected, match="risk desk"):
        await big.validate()
    with pytest.raises(OrderRejected, match="risk desk"):
        await svc.submit(limit(price=price, amount="2"))
    assert svc.orders() == [] and await sim.fetch_open_orders() == []  # nothing journalled, nothing sent

    command = svc.place(limit(price=price, amount="0.01"))
    assert isinstance(command, PlaceOrder) and command.request.client_order_id.startswith("mt")
    order = await command.execute()
    assert order.status is OrderStatus.OPEN and seen[-1] is command.request
    with pytest.raises(Exception, match="never sent twice"):
        await command.execute()
    undone = await command.undo()
    assert undone.status is OrderStatus.CANCELED
    assert (await sim.fetch_order(order.id, "BTC/USDT")).status is OrderStatus.CANCELED
    await svc.close()


async def test_cancel_all_cancels_the_open_orders_and_skips_finished_ones(sim: SimVenue, store: Store,
                                                                          bus: EventBus) -> None:
    svc = await started(sim, store, bus)
    ticker = await sim.fetch_ticker("BTC/USDT")
    tick = sim.markets["BTC/USDT"].price_tick
    placed = [await svc.submit(limit(price=str((ticker.last * Decimal(f"0.9{i}")).quantize(tick)), amount="0.01"))
              for i in range(5)]
    await sim.cancel_order(placed[0].id, "BTC/USDT")  # cancelled elsewhere meanwhile
    done = await svc.cancel_all("BTC/USDT")
    assert sorted(o.client_order_id for o in done) == sorted(o.client_order_id for o in placed[1:])
    assert all(e.status is OrderStatus.CANCELED for e in svc.orders())
    assert await sim.fetch_open_orders("BTC/USDT") == []
    assert await svc.cancel_all() == []
    await svc.close()


async def test_orders_can_be_listed_by_status(store: Store, bus: EventBus) -> None:
    venue = FakeVenue()
    svc = await started(venue, store, bus)
    venue.create_script += ["ok", "reject", "ok"]
    a, b, c = [await svc.submit(limit()) for _ in range(3)]
    assert [e.client_order_id for e in svc.orders()] == [a.client_order_id, b.client_order_id, c.client_order_id]
    assert [e.client_order_id for e in svc.orders(OrderStatus.REJECTED)] == [b.client_order_id]
    assert len(svc.orders([OrderStatus.OPEN, OrderStatus.REJECTED])) == 3
    await svc.close()

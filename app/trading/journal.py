"""The order journal: one SQLite row per order, written and committed before the order is sent.

The schema is migration 2 in `app.store.MIGRATIONS` (tables `order_journal` and
`order_fills`); migration 6 added `list_id`, which links the two legs of an OCO list
(both rows carry the list's client id; '' for an order that is not in a list). Every function here taking a `conn` runs on the store's worker
thread (`await store.run(fn, ...)`); `OrderJournal` wraps them for coroutines.

Money is stored as TEXT written with `format(d, "f")`, so a Decimal comes back
exactly as it went in. Times are integers, ms since the epoch.

Durability: the connection runs WAL with `synchronous=NORMAL`, under which a
committed transaction is in the WAL file (in the OS page cache) when COMMIT
returns, so it survives the process being killed at any later instant; only a
power loss or OS crash can lose the last commits. An order's first row is
written with `synchronous=FULL` for that one statement (an fsync, ~ms per
order), so the PENDING row is on disk before the venue ever sees the order,
even across a power cut. Later updates can always be recovered from the venue
by reconciliation, so they stay at NORMAL.

Updates are monotonic (`apply_order`): a stale snapshot of an order (an older
fill state, or an open state after a final one) never overwrites a newer one,
so the service may apply answers from create, reconcile, refresh and cancel in
any order.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from app.domain import ZERO, Fill, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from app.store import Store, transaction

log = logging.getLogger(__name__)

UNSETTLED = frozenset({OrderStatus.PENDING, OrderStatus.UNKNOWN})
"""The venue's view of these orders is not known: reconcile before anything else."""

LIVE = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})
"""Known to rest on the venue: refresh for fills."""

RECENT_FINAL_ROWS = 2000  # final rows loaded at start for the order panel; unsettled and live rows are always loaded


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journalled order as the terminal knows it."""

    client_order_id: str
    venue: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce
    post_only: bool
    status: OrderStatus
    venue_order_id: str = ""
    filled: Decimal = ZERO
    average: Decimal | None = None
    fee: Decimal = ZERO
    fee_asset: str = ""
    reason: str = ""
    not_placed: bool = False  # REJECTED because the venue positively said it has no such order
    created_at: int = 0
    updated_at: int = 0
    list_id: str = ""  # the OCO list's client id when this order is one of its legs

    @property
    def is_oco_leg(self) -> bool:
        return bool(self.list_id)

    @classmethod
    def pending(cls, venue: str, request: OrderRequest, now_ms: int, list_id: str = "") -> JournalEntry:
        return cls(
            client_order_id=request.client_order_id,
            venue=venue,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            amount=request.amount,
            price=request.price,
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
            post_only=request.post_only,
            status=OrderStatus.PENDING,
            created_at=now_ms,
            updated_at=now_ms,
            list_id=list_id,
        )

    @property
    def settled(self) -> bool:
        """The venue's view of this order is known (it exists, or it positively does not)."""
        return self.status not in UNSETTLED

    @property
    def may_resend(self) -> bool:
        """True only when the order is known not to exist on the venue (rejected, or not placed)."""
        return self.status is OrderStatus.REJECTED

    def request(self, client_order_id: str | None = None) -> OrderRequest:
        """The request as the user made it (with another client id for a resend)."""
        return OrderRequest(
            symbol=self.symbol,
            side=self.side,
            type=self.type,
            amount=self.amount,
            client_order_id=client_order_id or self.client_order_id,
            price=self.price,
            stop_price=self.stop_price,
            time_in_force=self.time_in_force,
            post_only=self.post_only,
        )

    def order(self, fills: tuple[Fill, ...] = ()) -> Order:
        fee_asset = self.fee_asset
        return Order(
            id=self.venue_order_id,
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            type=self.type,
            status=self.status,
            amount=self.amount,
            ts=self.created_at,
            price=self.price,
            stop_price=self.stop_price,
            filled=self.filled,
            average_price=self.average,
            fee=self.fee,
            fee_asset=fee_asset,
            fills=fills,
            reason=self.reason,
        )


# --------------------------------------------------------------------------- row mapping

_COLUMNS = (
    "client_order_id", "venue", "symbol", "side", "type", "amount", "price", "stop_price", "tif", "post_only",
    "status", "venue_order_id", "filled", "average", "fee", "fee_asset", "reason", "not_placed",
    "created_at", "updated_at", "list_id",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM order_journal"


def text(value: Decimal | None) -> str | None:
    """A Decimal as exact, exponent-free TEXT."""
    return None if value is None else format(value, "f")


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _entry(row: Sequence[Any]) -> JournalEntry:
    (cid, venue, symbol, side, type_, amount, price, stop, tif, post_only, status, vid, filled, average, fee,
     fee_asset, reason, not_placed, created, updated, list_id) = row
    return JournalEntry(
        client_order_id=cid,
        venue=venue,
        symbol=symbol,
        side=Side(side),
        type=OrderType(type_),
        amount=Decimal(amount),
        price=_dec(price),
        stop_price=_dec(stop),
        time_in_force=TimeInForce(tif),
        post_only=bool(post_only),
        status=OrderStatus(status),
        venue_order_id=vid,
        filled=Decimal(filled),
        average=_dec(average),
        fee=Decimal(fee),
        fee_asset=fee_asset,
        reason=reason,
        not_placed=bool(not_placed),
        created_at=int(created),
        updated_at=int(updated),
        list_id=list_id or "",
    )


def _values(e: JournalEntry) -> tuple[Any, ...]:
    return (
        e.client_order_id, e.venue, e.symbol, e.side.value, e.type.value, text(e.amount), text(e.price),
        text(e.stop_price), e.time_in_force.value, int(e.post_only), e.status.value, e.venue_order_id,
        text(e.filled), text(e.average), text(e.fee), e.fee_asset, e.reason, int(e.not_placed),
        e.created_at, e.updated_at, e.list_id,
    )


def _fill(row: Sequence[Any]) -> Fill:
    order_id, trade_id, symbol, side, price, amount, fee, fee_asset, ts, maker = row
    return Fill(order_id, trade_id, symbol, Side(side), Decimal(price), Decimal(amount), Decimal(fee), fee_asset,
                int(ts), bool(maker))


# --------------------------------------------------------------------------- functions on the store's thread


def get(conn: sqlite3.Connection, client_order_id: str) -> JournalEntry | None:
    row = conn.execute(f"{_SELECT} WHERE client_order_id = ?", (client_order_id,)).fetchone()
    return None if row is None else _entry(row)


def load(conn: sqlite3.Connection, venue: str, recent_final: int = RECENT_FINAL_ROWS) -> list[JournalEntry]:
    """Every unsettled or live row of `venue`, plus its `recent_final` newest final rows; oldest first."""
    active = tuple(s.value for s in (*UNSETTLED, *LIVE))
    marks = ", ".join("?" * len(active))
    rows = conn.execute(
        f"{_SELECT} WHERE venue = ? AND (status IN ({marks}) OR rowid IN "
        f"(SELECT rowid FROM order_journal WHERE venue = ? AND status NOT IN ({marks}) "
        f"ORDER BY created_at DESC, rowid DESC LIMIT ?)) ORDER BY created_at, rowid",
        (venue, *active, venue, *active, recent_final),
    ).fetchall()
    return [_entry(r) for r in rows]


def insert_pending(conn: sqlite3.Connection, entry: JournalEntry) -> bool:
    """Write the order's first row, durably (fsync'd), before it is sent. False if the client id is taken."""
    return insert_pending_many(conn, (entry,))


def insert_pending_many(conn: sqlite3.Connection, entries: Sequence[JournalEntry]) -> bool:
    """Write the first rows of orders sent together (an OCO list's legs) in one durable transaction: all or
    none, so a crash never leaves one leg journalled without the other. False if a client id is taken."""
    previous = conn.execute("PRAGMA synchronous").fetchone()[0]
    conn.execute("PRAGMA synchronous = FULL")
    try:
        with transaction(conn):
            conn.executemany(
                f"INSERT INTO order_journal ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                [_values(e) for e in entries],
            )
        return True
    except sqlite3.IntegrityError:
        if any(get(conn, e.client_order_id) is not None for e in entries) or \
                len({e.client_order_id for e in entries}) < len(entries):
            return False
        raise
    finally:
        conn.execute(f"PRAGMA synchronous = {int(previous):d}")


def _write(conn: sqlite3.Connection, e: JournalEntry) -> None:
    conn.execute(
        "UPDATE order_journal SET status = ?, venue_order_id = ?, filled = ?, average = ?, fee = ?, fee_asset = ?, "
        "reason = ?, not_placed = ?, updated_at = ? WHERE client_order_id = ?",
        (e.status.value, e.venue_order_id, text(e.filled), text(e.average), text(e.fee), e.fee_asset, e.reason,
         int(e.not_placed), e.updated_at, e.client_order_id),
    )


def _require(conn: sqlite3.Connection, client_order_id: str) -> JournalEntry:
    entry = get(conn, client_order_id)
    if entry is None:
        raise KeyError(f"no journal row for client order id {client_order_id}")
    return entry


def settle_unknown(conn: sqlite3.Connection, client_order_id: str, status: OrderStatus, reason: str,
                   now_ms: int, not_placed: bool = False) -> tuple[JournalEntry, bool]:
    """Move an unsettled row to `status` (UNKNOWN, or REJECTED). A row that has meanwhile become known
    (a refresh found the order) is left alone. Returns (current row, changed)."""
    with transaction(conn):
        entry = _require(conn, client_order_id)
        if entry.settled or (entry.status is status and entry.reason == reason):
            return entry, False
        entry = replace(entry, status=status, reason=reason, not_placed=not_placed, updated_at=now_ms)
        _write(conn, entry)
        return entry, True


_RANK = {
    OrderStatus.PENDING: 0,
    OrderStatus.UNKNOWN: 0,
    OrderStatus.OPEN: 1,
    OrderStatus.PARTIALLY_FILLED: 2,
    OrderStatus.FILLED: 3,
    OrderStatus.CANCELED: 3,
    OrderStatus.REJECTED: 3,
}


def _merge(entry: JournalEntry, order: Order, now_ms: int) -> JournalEntry:
    """The row after the venue showed `order`; the row itself when the snapshot is stale."""
    status = order.status
    if status in UNSETTLED:
        status = OrderStatus.PARTIALLY_FILLED if order.filled > 0 else OrderStatus.OPEN  # it exists: that is known
    if entry.not_placed:
        # The venue said "no such order" after the in-flight window, and now shows it: the venue is the
        # truth, and an order must never be lost, so the row follows it. Loud, because it should not happen.
        log.error("order %s was recorded as not placed, but %s now shows it (%s); following the venue",
                  entry.client_order_id, entry.venue, status.value)
        entry = replace(entry, status=OrderStatus.UNKNOWN, not_placed=False, reason="")
    elif entry.status.is_final and not status.is_final:
        return entry  # an older snapshot than what we hold
    elif entry.status.is_final and status is not entry.status:
        return entry  # final states do not change into each other
    if order.filled < entry.filled or (_RANK[status] < _RANK[entry.status] and order.filled <= entry.filled):
        return entry  # an older snapshot
    reason = order.reason or entry.reason
    if status is not OrderStatus.REJECTED and entry.status in UNSETTLED:
        reason = order.reason  # the "checking whether it was placed" note no longer applies
    return replace(
        entry,
        status=status,
        venue_order_id=order.id or entry.venue_order_id,
        filled=max(order.filled, entry.filled),
        average=order.average_price if order.average_price is not None else entry.average,
        fee=order.fee if order.filled >= entry.filled and order.fee >= entry.fee else entry.fee,
        fee_asset=order.fee_asset or entry.fee_asset,
        reason=reason,
        updated_at=now_ms,
    )


def _recorded_fills(conn: sqlite3.Connection, client_order_id: str) -> list[Fill]:
    rows = conn.execute(
        "SELECT order_id, trade_id, symbol, side, price, amount, fee, fee_asset, ts, is_maker FROM order_fills "
        "WHERE client_order_id = ? ORDER BY ts, rowid",
        (client_order_id,),
    ).fetchall()
    return [_fill(r) for r in rows]


def recent_fills(conn: sqlite3.Connection, venue: str, limit: int) -> list[Fill]:
    """The newest `limit` fills of `venue`, oldest first."""
    rows = conn.execute(
        "SELECT order_id, trade_id, symbol, side, price, amount, fee, fee_asset, ts, is_maker FROM order_fills "
        "WHERE venue = ? ORDER BY ts DESC, rowid DESC LIMIT ?",
        (venue, limit),
    ).fetchall()
    return [_fill(r) for r in reversed(rows)]


def _insert_fill(conn: sqlite3.Connection, venue: str, client_order_id: str, f: Fill, synthetic: bool) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO order_fills (venue, trade_id, client_order_id, order_id, symbol, side, price, amount, "
        "fee, fee_asset, ts, is_maker, synthetic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (venue, f.trade_id, client_order_id, f.order_id, f.symbol, f.side.value, text(f.price), text(f.amount),
         text(f.fee), f.fee_asset, f.ts, int(f.is_maker), int(synthetic)),
    )
    return cur.rowcount == 1


def _new_fills(conn: sqlite3.Connection, entry: JournalEntry, order: Order, now_ms: int) -> list[Fill]:
    """Record the fills `order` shows that are not recorded yet; return those.

    A venue that reports its trades (order.fills) is recorded trade by trade, de-duplicated on
    (venue, trade id). A venue that reports only the cumulative filled amount gets one synthetic
    fill per increase, with id "<order id>:<cumulative filled>" so that the same state seen twice
    (two refreshes, or a refresh after a restart) yields the same id and is recorded once."""
    fresh: list[Fill] = []
    recorded = _recorded_fills(conn, entry.client_order_id)
    done = sum((f.amount for f in recorded), ZERO)
    if order.fills:
        seen = {f.trade_id for f in recorded}
        for f in order.fills:
            if f.trade_id in seen:
                continue
            if done + f.amount > entry.filled:
                # Never record more than the order filled (a venue that switched from cumulative amounts
                # to trade lists would otherwise be counted twice).
                log.warning("order %s: fill %s would exceed the filled amount %s; not recorded",
                            entry.client_order_id, f.trade_id, entry.filled)
                continue
            if _insert_fill(conn, entry.venue, entry.client_order_id, f, synthetic=False):
                fresh.append(f)
                done += f.amount
        return fresh
    delta = entry.filled - done
    if delta <= 0:
        return fresh
    cost_done = sum((f.price * f.amount for f in recorded), ZERO)
    price = entry.average if entry.average is not None else (entry.price or ZERO)
    if recorded and entry.average is not None:
        marginal = (entry.average * entry.filled - cost_done) / delta
        if marginal > 0:
            price = marginal.quantize(Decimal("1e-12")).normalize()
    fee = max(ZERO, entry.fee - sum((f.fee for f in recorded), ZERO))
    order_id = entry.venue_order_id or entry.client_order_id
    f = Fill(order_id, f"{order_id}:{format(entry.filled.normalize(), 'f')}", entry.symbol, entry.side, price, delta,
             fee, entry.fee_asset, now_ms, False)
    if _insert_fill(conn, entry.venue, entry.client_order_id, f, synthetic=True):
        fresh.append(f)
    return fresh


def apply_order(conn: sqlite3.Connection, client_order_id: str, order: Order,
                now_ms: int) -> tuple[JournalEntry, bool, list[Fill]]:
    """Merge what the venue shows into the row and record new fills, in one transaction.

    Returns (row after, row changed, fills recorded now)."""
    with transaction(conn):
        entry = _require(conn, client_order_id)
        merged = _merge(entry, order, now_ms)
        changed = _visible(merged) != _visible(entry)
        if changed:
            _write(conn, merged)
        fills = _new_fills(conn, merged, order, now_ms) if merged.filled > 0 else []
        return (merged if changed else entry), changed, fills


def _visible(e: JournalEntry) -> tuple[Any, ...]:
    return (e.status, e.venue_order_id, e.filled, e.average, e.fee, e.fee_asset, e.reason, e.not_placed)


def fills(conn: sqlite3.Connection, client_order_id: str) -> list[Fill]:
    return _recorded_fills(conn, client_order_id)


# --------------------------------------------------------------------------- the repository


class OrderJournal:
    """The journal for coroutines: every call runs on the store's worker thread."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, client_order_id: str) -> JournalEntry | None:
        return await self.store.run(get, client_order_id)

    async def load(self, venue: str, recent_final: int = RECENT_FINAL_ROWS) -> list[JournalEntry]:
        return await self.store.run(load, venue, recent_final)

    async def insert_pending(self, entry: JournalEntry) -> bool:
        return await self.store.run(insert_pending, entry)

    async def insert_pending_many(self, entries: Sequence[JournalEntry]) -> bool:
        return await self.store.run(insert_pending_many, entries)

    async def settle_unknown(self, client_order_id: str, status: OrderStatus, reason: str, now_ms: int, *,
                             not_placed: bool = False) -> tuple[JournalEntry, bool]:
        return await self.store.run(settle_unknown, client_order_id, status, reason, now_ms, not_placed)

    async def apply_order(self, client_order_id: str, order: Order, now_ms: int) -> tuple[JournalEntry, bool, list[Fill]]:
        return await self.store.run(apply_order, client_order_id, order, now_ms)

    async def fills(self, client_order_id: str) -> list[Fill]:
        return await self.store.run(fills, client_order_id)

    async def recent_fills(self, venue: str, limit: int = 500) -> list[Fill]:
        return await self.store.run(recent_fills, venue, limit)


def statuses(values: OrderStatus | Iterable[OrderStatus] | None) -> frozenset[OrderStatus] | None:
    if values is None:
        return None
    if isinstance(values, OrderStatus):
        return frozenset({values})
    return frozenset(values)

"""The notification outbox: one SQLite row per (message id, channel) until it is delivered.

Schema: `notify_outbox`, migration 5 in app/store.py. Times are ms since the epoch
(wall clock: rows outlive the process).

Row life: pending -> delivered | failed | discarded; failed -> pending again on
`retry`. A pending row carries `next_attempt_at`; `attempts` counts finished
tries (a try cut short by a crash or a shutdown is not counted, and is simply
made again: delivery is at least once, and the email's Message-ID lets a
duplicate be recognised).

Duplicates: enqueueing an existing (message id, channel) pair changes nothing,
whatever the row's state, so the same event notified twice (a replayed fill, an
alert engine restarted mid-way) is delivered once. Delivered and discarded rows
are pruned after `keep_days`, which is therefore the de-duplication window.

Backoff after a retryable failure: `first * multiplier ** (attempts - 1)`,
capped at `cap`, times a jitter factor in [0.5, 1): spread out, but never close
to zero, so a server that is down is not hammered by a lucky draw. A failure
that names its own earliest retry (Discord's retry_after, an open circuit)
waits at least until then.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.notify.message import CHANNELS, Message
from app.store import Store, transaction

__all__ = ["Backoff", "NewRow", "Outbox", "OutboxRow", "Undelivered"]

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 30.0  # seconds before the first retry
    multiplier: float = 2.0
    cap: float = 3600.0  # at most an hour between tries

    def delay(self, attempts: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after `attempts` (>= 1) failed tries."""
        try:
            ceiling = min(self.cap, self.first * self.multiplier ** max(0, attempts - 1))
        except OverflowError:
            ceiling = self.cap
        return ceiling * (0.5 + 0.5 * rng())


@dataclass(frozen=True, slots=True)
class NewRow:
    message: Message
    channel: str
    status: str = PENDING  # FAILED for a channel known to be unable to send (with `error`)
    error: str = ""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    message_id: str
    channel: str
    kind: str
    title: str
    payload: str
    status: str
    attempts: int
    last_error: str
    progress: str
    next_attempt_at: int  # ms
    created_at: int  # ms
    delivered_at: int | None
    inserted: bool = False  # True when this enqueue created it (False: a duplicate)

    @property
    def message(self) -> Message:
        return Message.from_json(self.payload)


@dataclass(frozen=True, slots=True)
class Undelivered:
    """One row of the UI's list of messages that did not arrive (yet)."""

    message_id: str
    channel: str
    kind: str
    title: str
    status: str  # "pending" | "failed"
    attempts: int
    reason: str  # the last failure as a sentence ("" before the first try)
    next_attempt_at: float | None  # epoch seconds; None when failed (only `retry` sends it again)
    created_at: float  # epoch seconds


_COLUMNS = (
    "id, message_id, channel, kind, title, payload, status, attempts, last_error, progress, "
    "next_attempt_at, created_at, delivered_at"
)


def _row(r: tuple[Any, ...], inserted: bool = False) -> OutboxRow:
    row_id, message_id, channel, kind, title, payload, status, attempts, error, progress, next_at, created, done = r
    return OutboxRow(row_id, message_id, channel, kind, title, payload, status, attempts, error, progress, next_at,
                     created, done, inserted=inserted)


# --------------------------------------------------------------------------- functions on the store's thread


def _enqueue(conn: sqlite3.Connection, rows: Sequence[NewRow], now: int) -> list[OutboxRow]:
    out: list[OutboxRow] = []
    with transaction(conn):
        for new in rows:
            m = new.message
            cur = conn.execute(
                "INSERT INTO notify_outbox (message_id, channel, kind, title, payload, status, last_error, "
                "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (message_id, channel) DO NOTHING",
                (m.message_id, new.channel, m.kind, m.title, m.to_json(), new.status, new.error, now, now, now),
            )
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM notify_outbox WHERE message_id = ? AND channel = ?",
                (m.message_id, new.channel),
            ).fetchone()
            out.append(_row(found, inserted=cur.rowcount == 1))
    return out


def _due(conn: sqlite3.Connection, now: int, limit: int) -> list[OutboxRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM notify_outbox WHERE status = ? AND next_attempt_at <= ? "
        "ORDER BY next_attempt_at, id LIMIT ?",
        (PENDING, now, limit),
    ).fetchall()
    return [_row(r) for r in rows]


def _pending_times(conn: sqlite3.Connection) -> list[tuple[int, str, int]]:
    return conn.execute(
        "SELECT id, channel, next_attempt_at FROM notify_outbox WHERE status = ? ORDER BY next_attempt_at LIMIT 1000",
        (PENDING,),
    ).fetchall()


def _finish(
    conn: sqlite3.Connection, row_id: int, status: str, error: str, progress: str, next_at: int, now: int
) -> None:
    # Only a pending row is finished: a row discarded while its try was under way stays discarded.
    conn.execute(
        "UPDATE notify_outbox SET status = ?, attempts = attempts + 1, last_error = ?, progress = ?, "
        "next_attempt_at = ?, updated_at = ?, delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END "
        "WHERE id = ? AND status = 'pending'",
        (status, error, progress, next_at, now, status, now, row_id),
    )


def _set_status(
    conn: sqlite3.Connection,
    message_id: str,
    channel: str | None,
    status: str,
    now: int,
    from_statuses: tuple[str, ...],
) -> int:
    marks = ",".join("?" for _ in from_statuses)
    sql = (
        f"UPDATE notify_outbox SET status = ?, next_attempt_at = ?, updated_at = ? "
        f"WHERE message_id = ? AND status IN ({marks})"
    )
    args: list[object] = [status, now, now, message_id, *from_statuses]
    if channel is not None:
        sql += " AND channel = ?"
        args.append(channel)
    return conn.execute(sql, args).rowcount


def _undelivered(conn: sqlite3.Connection, limit: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT message_id, channel, kind, title, status, attempts, last_error, next_attempt_at, created_at "
        "FROM notify_outbox WHERE status IN ('pending', 'failed') ORDER BY created_at DESC, id DESC LIMIT ?",
        (limit,),
    ).fetchall()


def _rows_for(conn: sqlite3.Connection, message_id: str) -> list[OutboxRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM notify_outbox WHERE message_id = ? ORDER BY channel", (message_id,)
    ).fetchall()
    return [_row(r) for r in rows]


def _prune(conn: sqlite3.Connection, before: int) -> int:
    return conn.execute(
        "DELETE FROM notify_outbox WHERE status IN ('delivered', 'discarded') AND updated_at < ?", (before,)
    ).rowcount


# --------------------------------------------------------------------------- the repository


class Outbox:
    def __init__(
        self,
        store: Store,
        *,
        backoff: Backoff | None = None,
        wall: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self.backoff = backoff or Backoff()
        self._wall = wall
        self._rng = rng

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)

    async def enqueue(self, rows: Sequence[NewRow]) -> list[OutboxRow]:
        """Insert every row in one transaction; an existing (message id, channel) is kept as it is."""
        for new in rows:
            if new.channel not in CHANNELS:
                raise ValueError(
                    f"'{new.channel}' is not a notification channel; the channels are: {', '.join(CHANNELS)}"
                )
        return await self._store.run(_enqueue, list(rows), self._now_ms())

    async def due(self, limit: int = 200) -> list[OutboxRow]:
        """Pending rows whose next attempt is due, oldest first."""
        return await self._store.run(_due, self._now_ms(), limit)

    async def pending_times(self) -> list[tuple[int, str, float]]:
        """(row id, channel, next attempt in epoch seconds) of pending rows, soonest first."""
        rows = await self._store.run(_pending_times)
        return [(row_id, channel, at / 1000.0) for row_id, channel, at in rows]

    async def delivered(self, row: OutboxRow, progress: str = "") -> None:
        now = self._now_ms()
        await self._store.run(_finish, row.id, DELIVERED, "", progress, now, now)

    async def will_retry(
        self, row: OutboxRow, error: str, *, progress: str = "", not_before: float | None = None
    ) -> float:
        """Record a retryable failure; returns when (epoch seconds) the row is due again."""
        now = self._wall()
        at = now + self.backoff.delay(row.attempts + 1, self._rng)
        if not_before is not None:
            at = max(at, not_before)
        await self._store.run(_finish, row.id, PENDING, error, progress, int(at * 1000), int(now * 1000))
        return at

    async def failed(self, row: OutboxRow, error: str, *, progress: str = "") -> None:
        now = self._now_ms()
        await self._store.run(_finish, row.id, FAILED, error, progress, now, now)

    async def undelivered(self, limit: int = 500) -> list[Undelivered]:
        """Pending and failed rows, newest first: what the UI lists as "not delivered"."""
        rows = await self._store.run(_undelivered, limit)
        return [
            Undelivered(
                message_id=r[0], channel=r[1], kind=r[2], title=r[3], status=r[4], attempts=r[5], reason=r[6],
                next_attempt_at=r[7] / 1000.0 if r[4] == PENDING else None, created_at=r[8] / 1000.0,
            )
            for r in rows
        ]

    async def retry(self, message_id: str, channel: str | None = None) -> int:
        """Make failed (and waiting) rows of a message due now; returns how many."""
        return await self._store.run(_set_status, message_id, channel, PENDING, self._now_ms(), (PENDING, FAILED))

    async def discard(self, message_id: str, channel: str | None = None) -> int:
        """Stop trying to deliver a message (kept, so the same id is still suppressed); returns how many rows."""
        return await self._store.run(_set_status, message_id, channel, DISCARDED, self._now_ms(), (PENDING, FAILED))

    async def rows(self, message_id: str) -> list[OutboxRow]:
        return await self._store.run(_rows_for, message_id)

    async def prune(self, keep_days: float = 30.0) -> int:
        """Delete delivered and discarded rows older than `keep_days`."""
        return await self._store.run(_prune, int((self._wall() - keep_days * 86400) * 1000))

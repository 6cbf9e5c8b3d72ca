"""`BillingTx` on SQLite: the relay's own file, WAL, FULL sync, migrated on open.

A connection belongs to one thread (db.py runs every transaction on a single
worker thread). Transactions are `BEGIN IMMEDIATE`, so the write lock is taken
before the first read: a balance read and the entry written below it cannot
interleave with another writer, in this process or another.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.billing.migrations import MIGRATIONS
from app.billing.repository import (
    Account,
    LedgerEntry,
    LedgerKind,
    Notice,
    Payment,
    PendingRefund,
    Subscription,
)

__all__ = ["SCHEMA_VERSION", "SchemaTooNewError", "SqliteTx", "migrate", "open_connection", "transaction"]

SCHEMA_VERSION = MIGRATIONS[-1][0]


class SchemaTooNewError(RuntimeError):
    pass


def open_connection(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the relay database. `":memory:"` works for tests."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    if str(path) != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # money: a committed award survives a power cut
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations above the file's version, each in its own transaction; returns the version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"The relay database is at schema version {current}, newer than this relay ({SCHEMA_VERSION}); "
            "run the newer relay or restore a backup."
        )
    for version, sql in MIGRATIONS:
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return current


def _statements(sql: str) -> Iterator[str]:
    # executescript() would commit on its own; splitting keeps a migration inside our transaction.
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError("a migration ends with an unfinished statement")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[SqliteTx]:
    """One unit of work: committed if the block returns, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield SqliteTx(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _account(row: sqlite3.Row | None) -> Account | None:
    if row is None:
        return None
    return Account(row["id"], row["email"], row["token_hash"], row["customer_id"], row["created_at"])


def _subscription(row: sqlite3.Row | None) -> Subscription | None:
    if row is None:
        return None
    return Subscription(
        row["id"], row["account_id"], row["status"], row["event_created"], row["current_period_end"], bool(row["deleted"])
    )


_PAYMENT_COLUMNS = (
    "id", "account_id", "item", "kind", "points", "amount_cents", "currency", "state", "session_id",
    "payment_intent", "points_awarded", "points_reverted", "points_unrecovered", "refunded_cents", "failure",
    "created_at", "updated_at",
)


def _payment(row: sqlite3.Row | None) -> Payment | None:
    if row is None:
        return None
    return Payment(**{name: row[name] for name in _PAYMENT_COLUMNS})


def _entry(row: sqlite3.Row | None) -> LedgerEntry | None:
    if row is None:
        return None
    return LedgerEntry(
        row["id"], row["account_id"], row["kind"], row["points"], row["balance_after"], row["reference"],
        row["note"], row["created_at"],
    )


def _notice(row: sqlite3.Row) -> Notice:
    return Notice(row["seq"], row["account_id"], row["kind"], json.loads(row["payload"]), row["created_at"])


class SqliteTx:
    """The operations of one open SQLite transaction (see repository.BillingTx)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        return self._c.execute(sql, args).fetchone()

    # ------------------------------------------------------------------ accounts

    def insert_account(self, account: Account) -> None:
        self._c.execute(
            "INSERT INTO accounts (id, email, token_hash, customer_id, created_at) VALUES (?, ?, ?, ?, ?)",
            (account.id, account.email, account.token_hash, account.customer_id, account.created_at),
        )

    def account(self, account_id: str) -> Account | None:
        return _account(self._one("SELECT * FROM accounts WHERE id = ?", account_id))

    def account_by_email(self, email: str) -> Account | None:
        return _account(self._one("SELECT * FROM accounts WHERE email = ?", email))

    def account_by_token_hash(self, token_hash: str) -> Account | None:
        return _account(self._one("SELECT * FROM accounts WHERE token_hash = ?", token_hash))

    def account_by_customer(self, customer_id: str) -> Account | None:
        return _account(self._one("SELECT * FROM accounts WHERE customer_id = ?", customer_id))

    def set_customer(self, account_id: str, customer_id: str) -> None:
        self._c.execute("UPDATE accounts SET customer_id = ? WHERE id = ?", (customer_id, account_id))

    # ------------------------------------------------------------------ subscriptions

    def subscription(self, subscription_id: str) -> Subscription | None:
        return _subscription(self._one("SELECT * FROM subscriptions WHERE id = ?", subscription_id))

    def save_subscription(self, s: Subscription) -> None:
        self._c.execute(
            "INSERT INTO subscriptions (id, account_id, status, event_created, current_period_end, deleted) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET account_id = excluded.account_id, "
            "status = excluded.status, event_created = excluded.event_created, "
            "current_period_end = excluded.current_period_end, deleted = excluded.deleted",
            (s.id, s.account_id, s.status, s.event_created, s.current_period_end, int(s.deleted)),
        )

    def subscriptions_of(self, account_id: str) -> list[Subscription]:
        rows = self._c.execute("SELECT * FROM subscriptions WHERE account_id = ? ORDER BY id", (account_id,))
        return [s for s in map(_subscription, rows) if s is not None]

    # ------------------------------------------------------------------ payments

    def insert_payment(self, p: Payment) -> bool:
        cur = self._c.execute(
            f"INSERT OR IGNORE INTO payments ({', '.join(_PAYMENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_PAYMENT_COLUMNS))})",
            tuple(getattr(p, name) for name in _PAYMENT_COLUMNS),
        )
        return cur.rowcount == 1

    def payment(self, payment_id: str) -> Payment | None:
        return _payment(self._one("SELECT * FROM payments WHERE id = ?", payment_id))

    def payment_by_session(self, session_id: str) -> Payment | None:
        return _payment(self._one("SELECT * FROM payments WHERE session_id = ?", session_id))

    def payment_by_intent(self, payment_intent: str) -> Payment | None:
        return _payment(self._one("SELECT * FROM payments WHERE payment_intent = ?", payment_intent))

    def update_payment(self, p: Payment) -> None:
        names = [n for n in _PAYMENT_COLUMNS if n != "id"]
        self._c.execute(
            f"UPDATE payments SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
            (*(getattr(p, n) for n in names), p.id),
        )

    def pending_refund(self, payment_intent: str) -> PendingRefund | None:
        row = self._one("SELECT * FROM pending_refunds WHERE payment_intent = ?", payment_intent)
        return None if row is None else PendingRefund(row["payment_intent"], row["refunded_cents"], row["amount_cents"])

    def save_pending_refund(self, r: PendingRefund) -> None:
        self._c.execute(
            "INSERT INTO pending_refunds (payment_intent, refunded_cents, amount_cents) VALUES (?, ?, ?) "
            "ON CONFLICT(payment_intent) DO UPDATE SET refunded_cents = excluded.refunded_cents, "
            "amount_cents = excluded.amount_cents",
            (r.payment_intent, r.refunded_cents, r.amount_cents),
        )

    def delete_pending_refund(self, payment_intent: str) -> None:
        self._c.execute("DELETE FROM pending_refunds WHERE payment_intent = ?", (payment_intent,))

    # ------------------------------------------------------------------ ledger

    def last_balance(self, account_id: str) -> int:
        row = self._one(
            "SELECT balance_after FROM ledger_entries WHERE account_id = ? ORDER BY id DESC LIMIT 1", account_id
        )
        return 0 if row is None else int(row[0])

    def sum_points(self, account_id: str) -> int:
        row = self._one("SELECT COALESCE(SUM(points), 0) FROM ledger_entries WHERE account_id = ?", account_id)
        return int(row[0]) if row is not None else 0

    def insert_entry(
        self, account_id: str, kind: LedgerKind, points: int, balance_after: int, reference: str, note: str
    ) -> LedgerEntry:
        now = time.time()
        cur = self._c.execute(
            "INSERT INTO ledger_entries (account_id, kind, points, balance_after, reference, note, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account_id, kind, points, balance_after, reference, note, now),
        )
        return LedgerEntry(int(cur.lastrowid or 0), account_id, kind, points, balance_after, reference, note, now)

    def entry_by_reference(self, reference: str) -> LedgerEntry | None:
        return _entry(self._one("SELECT * FROM ledger_entries WHERE reference = ?", reference))

    def entries(self, account_id: str, limit: int, before_id: int | None = None) -> list[LedgerEntry]:
        if before_id is None:
            rows = self._c.execute(
                "SELECT * FROM ledger_entries WHERE account_id = ? ORDER BY id DESC LIMIT ?", (account_id, limit)
            )
        else:
            rows = self._c.execute(
                "SELECT * FROM ledger_entries WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (account_id, before_id, limit),
            )
        return [e for e in map(_entry, rows) if e is not None]

    # ------------------------------------------------------------------ Stripe events

    def event_seen(self, event_id: str) -> bool:
        return self._one("SELECT 1 FROM stripe_events WHERE id = ?", event_id) is not None

    def record_event(self, event_id: str, event_type: str, created: int, source: str) -> None:
        self._c.execute(
            "INSERT INTO stripe_events (id, type, created, source, processed_at) VALUES (?, ?, ?, ?, ?)",
            (event_id, event_type, created, source, time.time()),
        )

    # ------------------------------------------------------------------ notices

    def add_notice(self, account_id: str, kind: str, payload: dict[str, Any]) -> Notice:
        now = time.time()
        cur = self._c.execute(
            "INSERT INTO notices (account_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
            (account_id, kind, json.dumps(payload, separators=(",", ":")), now),
        )
        return Notice(int(cur.lastrowid or 0), account_id, kind, dict(payload), now)

    def notices_after(self, account_id: str, seq: int, limit: int) -> list[Notice]:
        rows = self._c.execute(
            "SELECT * FROM notices WHERE account_id = ? AND seq > ? ORDER BY seq LIMIT ?", (account_id, seq, limit)
        )
        return [_notice(r) for r in rows]

    def last_notice_seq(self, account_id: str) -> int:
        row = self._one("SELECT COALESCE(MAX(seq), 0) FROM notices WHERE account_id = ?", account_id)
        return int(row[0]) if row is not None else 0

    # ------------------------------------------------------------------ client idempotency keys

    def request_result(self, account_id: str, key: str) -> str | None:
        row = self._one("SELECT result FROM request_results WHERE account_id = ? AND key = ?", account_id, key)
        return None if row is None else str(row[0])

    def save_request_result(self, account_id: str, key: str, result: str) -> None:
        self._c.execute(
            "INSERT INTO request_results (account_id, key, result, created_at) VALUES (?, ?, ?, ?)",
            (account_id, key, result, time.time()),
        )

    # ------------------------------------------------------------------ settings

    def get_value(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", key)
        return None if row is None else str(row[0])

    def set_value(self, key: str, value: str) -> None:
        self._c.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

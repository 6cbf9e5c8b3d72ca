"""The relay database's numbered migrations (SQLite dialect); `PRAGMA user_version` holds the number applied.

These are the relay's own: the desktop's schema lives in app/store.py and never
shares a file with this one. A migration is appended, never edited, once it
has shipped. The CHECK constraints are the ledger's last line of defence:
even a bug above cannot write a negative balance or a purchase that removes
points.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS"]

_V1: Final = """
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    token_hash  TEXT NOT NULL UNIQUE,
    customer_id TEXT UNIQUE,
    created_at  REAL NOT NULL
);
CREATE TABLE subscriptions (
    id                 TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    status             TEXT NOT NULL,
    event_created      INTEGER NOT NULL,
    current_period_end INTEGER,
    deleted            INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
);
CREATE INDEX subscriptions_by_account ON subscriptions(account_id);
CREATE TABLE payments (
    id                 TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    item               TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('pack', 'plan')),
    points             INTEGER NOT NULL CHECK (points >= 0),
    amount_cents       INTEGER NOT NULL CHECK (amount_cents >= 0),
    currency           TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('created', 'pending', 'failed', 'succeeded', 'refunded')),
    session_id         TEXT UNIQUE,
    payment_intent     TEXT UNIQUE,
    points_awarded     INTEGER NOT NULL DEFAULT 0 CHECK (points_awarded >= 0),
    points_reverted    INTEGER NOT NULL DEFAULT 0 CHECK (points_reverted >= 0),
    points_unrecovered INTEGER NOT NULL DEFAULT 0 CHECK (points_unrecovered >= 0),
    refunded_cents     INTEGER NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    failure            TEXT NOT NULL DEFAULT '',
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL,
    CHECK (points_reverted + points_unrecovered <= points_awarded)
);
CREATE INDEX payments_by_account ON payments(account_id);
CREATE TABLE pending_refunds (
    payment_intent TEXT PRIMARY KEY,
    refunded_cents INTEGER NOT NULL,
    amount_cents   INTEGER NOT NULL
);
CREATE TABLE ledger_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    kind          TEXT NOT NULL CHECK (kind IN ('purchase', 'spend', 'transfer', 'refund')),
    points        INTEGER NOT NULL CHECK (points <> 0),
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    reference     TEXT NOT NULL UNIQUE,
    note          TEXT NOT NULL DEFAULT '',
    created_at    REAL NOT NULL,
    CHECK ((kind = 'purchase' AND points > 0) OR (kind IN ('spend', 'refund') AND points < 0) OR kind = 'transfer')
);
CREATE INDEX ledger_by_account ON ledger_entries(account_id, id);
CREATE TABLE stripe_events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    created      INTEGER NOT NULL,
    source       TEXT NOT NULL,
    processed_at REAL NOT NULL
);
CREATE TABLE notices (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX notices_by_account ON notices(account_id, seq);
CREATE TABLE request_results (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key        TEXT NOT NULL,
    result     TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = ((1, _V1),)
"""(version, SQL) in order; versions are 1, 2, 3, ... without gaps."""

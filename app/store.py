"""SQLite storage: one WAL-mode file in the data dir, numbered migrations, repositories.

Threading: the window must never block on disk I/O, so a `Store` owns one
connection that is created, used and closed only on its own single worker
thread. Coroutines reach it with `await store.run(fn, *args)`, which runs
`fn(conn, *args)` on that thread; start-up and shutdown code that runs outside
the event loop uses `store.call_sync(fn, *args)`. Work runs in submission order,
one function at a time, so each function sees a consistent connection and
repositories need no locks.

Transactions: the connection is in autocommit mode (`autocommit=True`), so a
single statement is its own transaction and Python never opens or commits one
behind our back. Functions that write several rows use `with transaction(conn):`.

Migrations: `MIGRATIONS[i]` turns schema version `i` into `i + 1`; the version
lives in `PRAGMA user_version`. Each runs in its own transaction together with
the version bump, so a failed migration leaves the file as it was. Never edit or
reorder a released migration: append a new one. A string migration is run with
`executescript` and must not contain BEGIN/COMMIT; a callable gets the
connection and must use `conn.execute` (not `executescript`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Migration = str | Callable[[sqlite3.Connection], None]

BUSY_TIMEOUT_MS = 5000  # another Meridian process (e.g. `--headless`) may hold the write lock briefly

_SCHEMA_V1 = """
CREATE TABLE ui_state (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    updated_at INTEGER NOT NULL  -- ms since the epoch
);
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

MIGRATIONS: list[Migration] = [
    _SCHEMA_V1,  # 1: ui_state (dock layout, geometry, selections), kv
    # 2: the order journal (app/trading/journal.py). Money is exact Decimal TEXT; times are ms since the epoch.
    """
CREATE TABLE order_journal (
    client_order_id TEXT NOT NULL UNIQUE CHECK (length(client_order_id) > 0),
    venue           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    type            TEXT NOT NULL,
    amount          TEXT NOT NULL,
    price           TEXT,
    stop_price      TEXT,
    tif             TEXT NOT NULL,
    post_only       INTEGER NOT NULL DEFAULT 0 CHECK (post_only IN (0, 1)),
    status          TEXT NOT NULL,
    venue_order_id  TEXT NOT NULL DEFAULT '',
    filled          TEXT NOT NULL DEFAULT '0',
    average         TEXT,
    fee             TEXT NOT NULL DEFAULT '0',
    fee_asset       TEXT NOT NULL DEFAULT '',
    reason          TEXT NOT NULL DEFAULT '',
    not_placed      INTEGER NOT NULL DEFAULT 0 CHECK (not_placed IN (0, 1)),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX order_journal_venue_status ON order_journal (venue, status);
CREATE INDEX order_journal_venue_order ON order_journal (venue, venue_order_id);
CREATE TABLE order_fills (
    venue           TEXT NOT NULL,
    trade_id        TEXT NOT NULL,
    client_order_id TEXT NOT NULL REFERENCES order_journal (client_order_id),
    order_id        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    price           TEXT NOT NULL,
    amount          TEXT NOT NULL,
    fee             TEXT NOT NULL,
    fee_asset       TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    is_maker        INTEGER NOT NULL DEFAULT 0,
    synthetic       INTEGER NOT NULL DEFAULT 0,  -- 1: derived from the order's cumulative filled amount
    PRIMARY KEY (venue, trade_id)
);
CREATE INDEX order_fills_order ON order_fills (client_order_id);
""",
    # 3: market data providers' answers (app/market/cache.py), so a restart does not stampede them.
    """
CREATE TABLE marketdata_cache (
    kind       TEXT NOT NULL,     -- 'ticker' | 'metadata' | 'ohlcv:<timeframe>'
    key        TEXT NOT NULL,     -- our symbol, e.g. 'AAPL', 'EUR/USD'
    provider   TEXT NOT NULL,
    value      TEXT NOT NULL,     -- JSON; money as Decimal strings
    fetched_at INTEGER NOT NULL,  -- ms since the epoch
    PRIMARY KEY (kind, key, provider)
);
""",
    # 4: alerts (app/alerts/). params is JSON with Decimal strings; channels a JSON list of channel names.
    """
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    venue         TEXT NOT NULL DEFAULT '',
    symbol        TEXT NOT NULL DEFAULT '',
    params        TEXT NOT NULL DEFAULT '{}',
    channels      TEXT NOT NULL DEFAULT '["desktop"]',
    cooldown_s    INTEGER NOT NULL DEFAULT 300 CHECK (cooldown_s >= 0),
    repeat        INTEGER NOT NULL DEFAULT 0 CHECK (repeat IN (0, 1)),
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    note          TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    last_fired_at INTEGER,
    fired_count   INTEGER NOT NULL DEFAULT 0
);
""",
    # 5: the notification outbox (app/notify/outbox.py): one row per (message id, channel) until delivered.
    """
CREATE TABLE notify_outbox (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL CHECK (length(message_id) > 0),
    channel         TEXT NOT NULL CHECK (channel IN ('desktop', 'email', 'discord', 'sms')),
    kind            TEXT NOT NULL,
    title           TEXT NOT NULL,
    payload         TEXT NOT NULL,                -- the rendered message as JSON
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'discarded')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT NOT NULL DEFAULT '',     -- a sentence for the user, never a secret
    progress        TEXT NOT NULL DEFAULT '',     -- what a multi-destination channel already delivered
    next_attempt_at INTEGER NOT NULL,             -- ms since the epoch
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (message_id, channel)
);
CREATE INDEX notify_outbox_due ON notify_outbox (status, next_attempt_at);
""",
    # 6: OCO order lists (app/trading/): each leg of a one-cancels-the-other pair is an ordinary journal row
    # whose list_id is the list's client id (the same on both legs); '' for an order that is not in a list.
    """
ALTER TABLE order_journal ADD COLUMN list_id TEXT NOT NULL DEFAULT '';
CREATE INDEX order_journal_list ON order_journal (list_id) WHERE list_id != '';
""",
]


class StoreError(Exception):
    """The data file cannot be used; `str(err)` is meant for the user."""


class NewerSchemaError(StoreError):
    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"This data file was written by a newer Meridian Terminal (schema {found}); "
            f"this version understands up to {supported}. Update the app or choose another --data-dir."
        )
        self.found = found
        self.supported = supported


class StoreClosed(StoreError):
    def __init__(self) -> None:
        super().__init__("The data store is closed.")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction; IMMEDIATE takes the write lock up front so it cannot fail half-way on a busy lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the migrations the file lacks; returns the resulting schema version."""
    supported = len(migrations)
    current = schema_version(conn)
    if current > supported:
        raise NewerSchemaError(current, supported)
    for number, step in enumerate(migrations, start=1):
        if number <= current:
            continue
        with transaction(conn):
            # Another process may have migrated while we waited for the write lock.
            found = schema_version(conn)
            if found > supported:
                raise NewerSchemaError(found, supported)
            if found >= number:
                continue
            if isinstance(step, str):
                conn.executescript(step)
            else:
                step(conn)
            conn.execute(f"PRAGMA user_version = {number:d}")
        log.info("data file migrated to schema %d", number)
    return schema_version(conn)


def _connect(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """Runs on the store's worker thread: the connection is bound to it."""
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, autocommit=True, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        # Check the version before anything writes to the file (switching to WAL does).
        found = schema_version(conn)
        if found > len(migrations):
            raise NewerSchemaError(found, len(migrations))
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("data file %s: WAL journal mode unavailable (got %s); continuing without it", path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")  # durable with WAL except for the last commits on power loss
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, migrations)
        return conn
    except BaseException as err:
        if conn is not None:
            conn.close()
        if isinstance(err, sqlite3.OperationalError):
            raise StoreError(
                f"The data file {path} could not be opened ({err}). Check that its folder is writable and that "
                "no other copy of Meridian Terminal is using it, or choose another --data-dir."
            ) from err
        if isinstance(err, sqlite3.DatabaseError):
            raise StoreError(
                f"{path} is not a Meridian Terminal data file ({err}). Move it away or choose another --data-dir."
            ) from err
        raise


class Store:
    """One SQLite connection on one worker thread. Build it with `Store.open`."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor, conn: sqlite3.Connection, worker: int) -> None:
        self._path = path
        self._executor = executor
        self._conn = conn
        self._worker = worker
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
        """Open (creating if needed) the file and bring its schema up to date. Blocking."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meridian-store")

        def start() -> tuple[sqlite3.Connection, int]:
            return _connect(path, list(migrations)), threading.get_ident()

        try:
            conn, worker = executor.submit(start).result()
        except BaseException:
            executor.shutdown(wait=True)
            raise
        return cls(path, executor, conn, worker)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` on the store's thread. Cancelling the await does not stop work already started."""
        if self._closed:
            raise StoreClosed()
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._call, fn, args)
        except RuntimeError:  # the executor shut down between the check and the submit
            raise StoreClosed() from None
        return await future

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` on the store's thread, blocking.

        For start-up and shutdown; never from the UI thread while the event loop runs.
        """
        if threading.get_ident() == self._worker:
            raise RuntimeError("call_sync from inside a store function would wait for itself forever")
        if self._closed:
            raise StoreClosed()
        try:
            future = self._executor.submit(self._call, fn, args)
        except RuntimeError:
            raise StoreClosed() from None
        return future.result()

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self._conn, *args)

    def close(self) -> None:
        """Finish queued work, then close the connection and the thread. Safe to call twice."""
        if threading.get_ident() == self._worker:
            raise RuntimeError("a store cannot be closed from its own thread")
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._executor.submit(self._close_conn).result()
        finally:
            self._executor.shutdown(wait=True)

    def _close_conn(self) -> None:
        try:
            self._conn.execute("PRAGMA optimize")  # cheap; keeps query plans good as tables grow
        except sqlite3.Error:
            log.debug("PRAGMA optimize failed", exc_info=True)
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- repositories


def _get_ui_state(conn: sqlite3.Connection, key: str) -> bytes | None:
    row = conn.execute("SELECT value FROM ui_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else bytes(row[0])


def _put_ui_state(conn: sqlite3.Connection, key: str, value: bytes, updated_at: int) -> None:
    conn.execute(
        "INSERT INTO ui_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, value, updated_at),
    )


class UiStateRepo:
    """The window's saved state (dock layout, geometry, selected symbol and timeframe) as opaque bytes."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def get(self, key: str) -> bytes | None:
        return await self._store.run(_get_ui_state, _check_key(key))

    async def put(self, key: str, value: bytes) -> None:
        await self._store.run(_put_ui_state, _check_key(key), _check_bytes(value), self._now_ms())

    def get_sync(self, key: str) -> bytes | None:
        return self._store.call_sync(_get_ui_state, _check_key(key))

    def put_sync(self, key: str, value: bytes) -> None:
        self._store.call_sync(_put_ui_state, _check_key(key), _check_bytes(value), self._now_ms())

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"a ui_state key must be a non-empty string, not {key!r}")
    return key


def _check_bytes(value: bytes) -> bytes:
    # Checked on the caller's thread so a wrong type fails where the mistake is, not inside the worker.
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"ui_state values are bytes (e.g. bytes(widget.saveState())), not {type(value).__name__}")
    return bytes(value)

"""The SQLite store on real files: pragmas, migrations, the worker thread, the ui_state repository."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.store import (
    MIGRATIONS,
    NewerSchemaError,
    Store,
    StoreClosed,
    StoreError,
    UiStateRepo,
    schema_version,
    transaction,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "meridian.sqlite3"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store.open(db)
    yield s
    s.close()


def pragma(conn: sqlite3.Connection, name: str) -> object:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# --------------------------------------------------------------------------- opening and pragmas


def test_open_creates_the_file_in_wal_mode_with_the_pragmas(store: Store, db: Path) -> None:
    assert db.is_file()
    assert store.call_sync(pragma, "journal_mode") == "wal"
    assert store.call_sync(pragma, "synchronous") == 1  # NORMAL
    assert store.call_sync(pragma, "foreign_keys") == 1
    assert store.call_sync(pragma, "busy_timeout") >= 1000

    # WAL is a property of the file: an independent connection sees it too.
    other = sqlite3.connect(db)
    try:
        assert pragma(other, "journal_mode") == "wal"
    finally:
        other.close()


def test_schema_v1_is_applied(store: Store) -> None:
    assert store.call_sync(schema_version) == len(MIGRATIONS) >= 1
    assert {"ui_state", "kv"} <= store.call_sync(tables)
    cols = store.call_sync(lambda c: [(r[1], r[2], r[3], r[5]) for r in c.execute("PRAGMA table_info(ui_state)")])
    assert cols == [("key", "TEXT", 0, 1), ("value", "BLOB", 1, 0), ("updated_at", "INTEGER", 1, 0)]


# --------------------------------------------------------------------------- migrations


def test_migrations_apply_once_and_reopen_keeps_data(db: Path) -> None:
    calls: list[int] = []

    def second(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("INSERT INTO kv (key, value) VALUES ('seeded', 'yes')")

    migrations = [*MIGRATIONS, second]

    with Store.open(db, migrations=migrations) as s:
        s.call_sync(lambda c: c.execute("INSERT INTO kv (key, value) VALUES ('mine', 'kept')"))
        assert s.call_sync(schema_version) == len(migrations)
    with Store.open(db, migrations=migrations) as s:
        rows = s.call_sync(lambda c: sorted(c.execute("SELECT key, value FROM kv").fetchall()))
        assert s.call_sync(schema_version) == len(migrations)

    assert calls == [1]  # a re-run would also have failed on the duplicate key
    assert rows == [("mine", "kept"), ("seeded", "yes")]


def test_new_migrations_are_applied_on_top_of_an_old_file(db: Path) -> None:
    with Store.open(db) as s:  # schema v1 only
        UiStateRepo(s).put_sync("geometry", b"\x01\x02")

    upgraded = [*MIGRATIONS, "CREATE TABLE extra (id INTEGER PRIMARY KEY)"]
    with Store.open(db, migrations=upgraded) as s:
        assert s.call_sync(schema_version) == len(MIGRATIONS) + 1
        assert "extra" in s.call_sync(tables)
        assert UiStateRepo(s).get_sync("geometry") == b"\x01\x02"


def test_a_failing_migration_rolls_back_completely(db: Path) -> None:
    with Store.open(db):
        pass

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError, match="migration bug"):
        Store.open(db, migrations=[*MIGRATIONS, broken])

    check = sqlite3.connect(db)
    try:
        assert schema_version(check) == len(MIGRATIONS)
        assert "half_done" not in tables(check)
    finally:
        check.close()


def test_a_file_from_a_newer_version_is_refused_untouched(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    with pytest.raises(NewerSchemaError) as info:
        Store.open(db)

    assert str(info.value) == (
        f"This data file was written by a newer Meridian Terminal (schema 99); this version understands up to "
        f"{len(MIGRATIONS)}. Update the app or choose another --data-dir."
    )
    assert isinstance(info.value, StoreError)
    conn = sqlite3.connect(db)
    try:
        assert schema_version(conn) == 99
        assert pragma(conn, "journal_mode") == "delete"  # not even switched to WAL
        assert tables(conn) == set()
    finally:
        conn.close()


def test_a_file_that_is_not_a_database_gives_a_clear_error(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is a text file, not SQLite" * 100)

    with pytest.raises(StoreError, match="is not a Meridian Terminal data file.*choose another --data-dir"):
        Store.open(db)
    assert db.read_bytes() == b"this is a text file, not SQLite" * 100


# --------------------------------------------------------------------------- the worker thread


async def test_run_executes_off_the_event_loop_thread(store: Store) -> None:
    loop_thread = threading.get_ident()

    worker = await store.run(lambda conn: threading.get_ident())
    again = await store.run(lambda conn: threading.get_ident())

    assert worker != loop_thread
    assert again == worker  # always the same, single, thread
    assert store.call_sync(lambda conn: threading.get_ident()) == worker


async def test_run_passes_arguments_and_propagates_errors(store: Store) -> None:
    assert await store.run(lambda conn, a, b: conn.execute("SELECT ? + ?", (a, b)).fetchone()[0], 2, 3) == 5
    with pytest.raises(sqlite3.OperationalError):
        await store.run(lambda conn: conn.execute("SELECT * FROM no_such_table"))
    assert await store.run(lambda conn: 1) == 1  # the store still works


async def test_transaction_helper_rolls_back_on_error(store: Store) -> None:
    def write_then_fail(conn: sqlite3.Connection) -> None:
        with transaction(conn):
            conn.execute("INSERT INTO kv (key, value) VALUES ('a', '1')")
            raise ValueError("boom")

    with pytest.raises(ValueError):
        await store.run(write_then_fail)
    assert await store.run(lambda c: c.execute("SELECT count(*) FROM kv").fetchone()[0]) == 0
    assert await store.run(lambda c: c.in_transaction) is False


def test_closed_store_refuses_work_and_close_is_idempotent(db: Path) -> None:
    s = Store.open(db)
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(StoreClosed):
        s.call_sync(lambda c: 1)
    with pytest.raises(StoreClosed):
        asyncio.run(s.run(lambda c: 1))


def test_call_sync_from_the_worker_thread_is_refused_not_deadlocked(store: Store) -> None:
    with pytest.raises(RuntimeError, match="wait for itself"):
        store.call_sync(lambda conn: store.call_sync(lambda c: 1))


# --------------------------------------------------------------------------- UiStateRepo


async def test_ui_state_round_trip_from_async_code(store: Store) -> None:
    repo = UiStateRepo(store, clock=lambda: 1_700_000_000.5)

    assert await repo.get("main_window/geometry") is None
    await repo.put("main_window/geometry", b"\x00\x01binary\xff")
    await repo.put("main_window/dock_state", bytearray(b"docks"))

    assert await repo.get("main_window/geometry") == b"\x00\x01binary\xff"
    assert await repo.get("main_window/dock_state") == b"docks"
    stamp = await store.run(lambda c: c.execute("SELECT updated_at FROM ui_state LIMIT 1").fetchone()[0])
    assert stamp == 1_700_000_000_500

    await repo.put("main_window/geometry", b"newer")
    assert await repo.get("main_window/geometry") == b"newer"


def test_ui_state_sync_api_survives_reopen(db: Path) -> None:
    with Store.open(db) as s:
        UiStateRepo(s).put_sync("selected_symbol", b"ETH/USDT")
    with Store.open(db) as s:
        assert UiStateRepo(s).get_sync("selected_symbol") == b"ETH/USDT"
        assert UiStateRepo(s).get_sync("missing") is None


def test_ui_state_rejects_non_bytes_and_empty_keys(store: Store) -> None:
    repo = UiStateRepo(store)
    with pytest.raises(TypeError):
        repo.put_sync("k", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        repo.put_sync("", b"x")


async def test_concurrent_async_puts_do_not_corrupt(store: Store) -> None:
    repo = UiStateRepo(store)
    keys = [f"key-{i}" for i in range(50)]
    values = {k: f"value of {k}".encode() * 50 for k in keys}

    # 50 distinct keys plus 100 writes racing on one key, all in flight at once.
    await asyncio.gather(
        *(repo.put(k, v) for k, v in values.items()),
        *(repo.put("shared", str(n).encode()) for n in range(100)),
    )

    got = await asyncio.gather(*(repo.get(k) for k in keys))
    assert dict(zip(keys, got, strict=True)) == values
    assert await repo.get("shared") == b"99"  # work runs in submission order: the last put wins
    assert await store.run(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0]) == "ok"
    assert await store.run(lambda c: c.execute("SELECT count(*) FROM ui_state").fetchone()[0]) == 51


async def test_a_second_connection_reads_committed_state_while_open(store: Store, db: Path) -> None:
    # WAL lets another process (e.g. a headless run) read while the window's store is open.
    await UiStateRepo(store).put("timeframe", b"1h")
    other = sqlite3.connect(db)
    try:
        assert other.execute("SELECT value FROM ui_state WHERE key = 'timeframe'").fetchone()[0] == b"1h"
    finally:
        other.close()

"""Fixtures the unit tests share: a data file, its Store, and a running event bus.

A test module with different needs (test_bus.py's unstarted bus, test_store.py's nested data dir)
defines its own fixture of the same name, which takes precedence."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.bus import EventBus
from app.store import Store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "meridian.sqlite3"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store.open(db)
    yield s
    s.close()


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus()
    await b.start()
    yield b
    await b.stop()

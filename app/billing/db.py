"""Run billing transactions off the event loop, one at a time, on a single worker thread.

One writer is all SQLite allows anyway; serialising here also means a webhook
and the reconciler applying the same Stripe event can never interleave: the
second one finds the event already recorded. The loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from app.billing.repository import BillingTx
from app.billing.sqlite_repo import open_connection, transaction

__all__ = ["Database"]

T = TypeVar("T")


class Database:
    """`await db.run(lambda tx: ...)`: the function runs inside one committed-or-rolled-back transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="billing-db")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, open_connection, self.path)

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._closed

    async def run(self, work: Callable[[BillingTx], T]) -> T:
        if not self.is_open:
            raise RuntimeError("the billing database is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_sync, work)

    def _run_sync(self, work: Callable[[BillingTx], T]) -> T:
        assert self._conn is not None
        with transaction(self._conn) as tx:
            return work(tx)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        loop = asyncio.get_running_loop()
        if conn is not None:
            await loop.run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)

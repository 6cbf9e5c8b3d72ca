"""Live notices for connected desktop apps: one bounded queue per open websocket, per account.

The hub only fans out; the notices table is the truth. A connection that falls
behind (its queue is full) is closed, and the app catches up on reconnect by
asking for the notices after the last sequence number it saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from app.billing.repository import Notice

__all__ = ["NoticeHub"]

_log = logging.getLogger(__name__)


class Listener:
    __slots__ = ("account_id", "overflowed", "queue")

    def __init__(self, account_id: str, size: int) -> None:
        self.account_id = account_id
        self.queue: asyncio.Queue[Notice | None] = asyncio.Queue(size)
        self.overflowed = False


class NoticeHub:
    def __init__(self, queue_size: int = 256) -> None:
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._size = queue_size

    def listen(self, account_id: str) -> Listener:
        listener = Listener(account_id, self._size)
        self._listeners[account_id].add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        group = self._listeners.get(listener.account_id)
        if group is not None:
            group.discard(listener)
            if not group:
                del self._listeners[listener.account_id]

    def publish(self, notices: list[Notice]) -> None:
        for notice in notices:
            for listener in list(self._listeners.get(notice.account_id, ())):
                try:
                    listener.queue.put_nowait(notice)
                except asyncio.QueueFull:
                    listener.overflowed = True
                    _log.warning("a desktop app of %s fell behind; closing its stream", notice.account_id)

    def connections(self, account_id: str | None = None) -> int:
        if account_id is not None:
            return len(self._listeners.get(account_id, ()))
        return sum(len(group) for group in self._listeners.values())

    def close_all(self) -> None:
        """Wake every stream so its handler closes it (the relay is stopping)."""
        for group in self._listeners.values():
            for listener in group:
                while True:
                    try:
                        listener.queue.put_nowait(None)
                        break
                    except asyncio.QueueFull:
                        listener.queue.get_nowait()

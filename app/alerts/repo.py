"""Alerts in SQLite (the `alerts` table, schema v4), reached through the store's worker thread."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace

from app.alerts.model import Alert, AlertKind
from app.store import Store

__all__ = ["AlertRepo"]

_COLUMNS = ("id, kind, venue, symbol, params, channels, cooldown_s, repeat, active, note, created_at, "
            "last_fired_at, fired_count")


def _row_to_alert(row: tuple) -> Alert:
    (id_, kind, venue, symbol, params, channels, cooldown, repeat, active, note, created, fired_at, count) = row
    return Alert(kind=AlertKind(kind), symbol=symbol, venue=venue, channels=tuple(json.loads(channels)),
                 cooldown_s=cooldown, repeat=bool(repeat), active=bool(active), note=note, id=id_,
                 created_at=created, last_fired_at=fired_at, fired_count=count,
                 **Alert.params_from_json(params))


def _all(conn: sqlite3.Connection) -> list[Alert]:
    return [_row_to_alert(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM alerts ORDER BY id")]


def _insert(conn: sqlite3.Connection, a: Alert) -> int:
    cur = conn.execute(
        "INSERT INTO alerts (kind, venue, symbol, params, channels, cooldown_s, repeat, active, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (a.kind.value, a.venue, a.symbol, a.params_json(), json.dumps(list(a.channels)), a.cooldown_s,
         int(a.repeat), int(a.active), a.note, a.created_at),
    )
    return int(cur.lastrowid or 0)


def _update(conn: sqlite3.Connection, a: Alert) -> None:
    conn.execute(
        "UPDATE alerts SET kind = ?, venue = ?, symbol = ?, params = ?, channels = ?, cooldown_s = ?, repeat = ?, "
        "active = ?, note = ?, last_fired_at = ?, fired_count = ? WHERE id = ?",
        (a.kind.value, a.venue, a.symbol, a.params_json(), json.dumps(list(a.channels)), a.cooldown_s,
         int(a.repeat), int(a.active), a.note, a.last_fired_at, a.fired_count, a.id),
    )


def _delete(conn: sqlite3.Connection, alert_id: int) -> None:
    conn.execute("DELETE FROM alerts WHERE id = ?", (alert_id,))


class AlertRepo:
    def __init__(self, store: Store, *, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self._wall = wall

    async def all(self) -> list[Alert]:
        return await self.store.run(_all)

    async def add(self, alert: Alert) -> Alert:
        alert = replace(alert, created_at=alert.created_at or int(self._wall() * 1000))
        new_id = await self.store.run(_insert, alert)
        return replace(alert, id=new_id)

    async def update(self, alert: Alert) -> None:
        await self.store.run(_update, alert)

    async def delete(self, alert_id: int) -> None:
        await self.store.run(_delete, alert_id)

"""Notifications → Undelivered: messages still waiting in the outbox or given up on, and why.

Refreshed when the notification service reports an outcome (`notify.status`) and every
few seconds (so "next try in 40 s" counts down). "Send again" puts a failed message back
in the queue; "Discard" drops it. A short line above the table says how many are waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableView, QVBoxLayout, QWidget

from ui import format as fmt
from ui import theme
from ui.table_model import Index, RowsModel

log = logging.getLogger(__name__)
COLUMNS = ("Message", "Channel", "State", "Tries", "Why", "Next try")
CHANNEL_TITLES = {"desktop": "Desktop", "email": "Email", "discord": "Discord", "sms": "SMS"}


class OutboxModel(RowsModel):
    columns = COLUMNS

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 5:
                if r.status == "failed" or r.next_attempt_at is None:
                    return "—"
                return "now" if r.next_attempt_at <= time.time() else f"in {fmt.age(r.next_attempt_at - time.time())}"
            return (r.title, CHANNEL_TITLES.get(r.channel, r.channel),
                    "Gave up" if r.status == "failed" else "Waiting", str(r.attempts), r.reason or "not tried yet",
                    None)[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 2:
            return QColor(theme.DOWN if r.status == "failed" else theme.WARN)
        if role == Qt.ItemDataRole.ToolTipRole and col == 4:
            return r.reason
        return None


class OutboxPanel(QWidget):
    def __init__(self, runtime: Any, refresh_s: float = 5.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.model = OutboxModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Why"), QHeaderView.ResizeMode.Stretch)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.retry_button = QPushButton("Send again")
        self.retry_button.clicked.connect(lambda: self._act("retry"))
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(lambda: self._act("discard"))
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary, 1)
        buttons.addWidget(self.retry_button)
        buttons.addWidget(self.discard_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 4, 4, 4)
        column.addLayout(buttons)
        column.addWidget(self.table, 1)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._sub: Any = None
        self.refreshes = 0
        self.timer = QTimer(self)
        self.timer.setInterval(int(refresh_s * 1000))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def attach(self) -> None:
        """Called once the notification service runs: follow its outcomes."""
        self._sub = self.runtime.bus.subscribe("notify.status", lambda _e: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        if self._closed or self.runtime.notifier is None or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        try:
            rows = await self.runtime.notifier.undelivered()
        except Exception:
            log.exception("could not read the outbox")
            return
        if self._closed or not shiboken6.isValid(self.model):
            return
        self.model.set_rows(rows)
        failed = sum(1 for r in rows if r.status == "failed")
        waiting = len(rows) - failed
        if not rows:
            self.summary.setText("Every notification was delivered.")
        else:
            parts = [f"{waiting} waiting to be sent" if waiting else "", f"{failed} given up on" if failed else ""]
            self.summary.setText("; ".join(p for p in parts if p) + ". Select one to send it again or discard it.")
        self.refreshes += 1

    def _selected(self) -> list[Any]:
        rows = {i.row() for i in self.table.selectionModel().selectedRows()}
        return [self.model.rows[r] for r in sorted(rows) if r < len(self.model.rows)]

    def _act(self, what: str) -> None:
        chosen = self._selected()
        if not chosen or self.runtime.notifier is None:
            self.summary.setText("Select a message in the list first.")
            return
        asyncio.ensure_future(self._apply(what, chosen))

    async def _apply(self, what: str, rows: list[Any]) -> None:
        for r in rows:
            action = self.runtime.notifier.retry if what == "retry" else self.runtime.notifier.discard
            await action(r.message_id, r.channel)
        self.refresh()

    def shutdown(self) -> None:
        self._closed = True
        self.timer.stop()
        if self._sub is not None:
            self._sub.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()

"""The sources view: the selected symbol's price from every exchange and market-data provider,
with its age and its distance from the median of all sources, refreshed live.

Rows come from `Runtime.sources` (app/market/sources.py). A source that failed shows
its reason in place of a price; one asked for a different symbol (a provider asked
for BTC/USD when the row is BTC/USDT) says so in its name.
"""

from __future__ import annotations

import asyncio
import logging

import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from app.market.sources import SourceRow
from ui import format as fmt
from ui import theme
from ui.table_model import Index, RowsModel

log = logging.getLogger(__name__)
COLUMNS = ("Source", "Type", "Bid", "Ask", "Last", "Age", "vs median")
DRIFT_BPS = 50  # a source this far from the median is highlighted: it may be frozen or wrong


class SourcesModel(RowsModel):
    columns = COLUMNS

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.decimals = 2

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r: SourceRow = self.rows[index.row()]
        col = index.column()
        t = r.ticker
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return f"{r.title} ({r.asked_as})" if r.asked_as else r.title
            if col == 1:
                return "Exchange" if r.kind == "exchange" else "Provider"
            if t is None:
                return r.error if col == 2 else ""
            d = self.decimals
            return (None, None, fmt.price(t.bid, d), fmt.price(t.ask, d), fmt.price(t.last, d),
                    fmt.age(r.age_s or 0), "—" if r.vs_median_bps is None else f"{r.vs_median_bps:+.2f} bps")[col]
        if role == Qt.ItemDataRole.ForegroundRole:
            if t is None and col == 2:
                return QColor(theme.WARN)
            if col == 6 and r.vs_median_bps is not None and abs(r.vs_median_bps) >= DRIFT_BPS:
                return QColor(theme.WARN)
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= 2 and t is not None:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            if t is None:
                return r.error
            if r.asked_as:
                return f"{r.title} was asked for {r.asked_as}: it does not quote the stablecoin pair."
        return None


class SourcesPanel(QWidget):
    def __init__(self, runtime, refresh_s: float = 5.0, parent: QWidget | None = None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.runtime = runtime
        self.symbol = ""
        self.model = SourcesModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet(f"color: {theme.MUTED};")
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 4, 4, 4)
        column.addWidget(self.caption)
        column.addWidget(self.table, 1)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.refreshes = 0
        self.timer = QTimer(self)
        self.timer.setInterval(int(refresh_s * 1000))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def set_symbol(self, symbol: str, decimals: int) -> None:
        if symbol != self.symbol:
            self.model.set_rows([])
            if self._task is not None and not self._task.done():
                self._task.cancel()  # the last symbol's answer is no use; ask for this one now
        self.symbol = symbol
        self.model.decimals = decimals
        self.caption.setText(f"{symbol}: every source's price, its age and its distance from the median.")
        self.refresh()

    def refresh(self) -> None:
        # Only while someone can see it: every refresh may cost provider quota (and, offline, DNS lookups).
        if self._closed or not self.symbol or not self.isVisible() or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.ensure_future(self._refresh(self.symbol))

    async def _refresh(self, symbol: str) -> None:
        try:
            rows = await self.runtime.sources(symbol)
        except Exception:  # the view keeps its last rows; the reason is in the log
            log.exception("sources for %s failed", symbol)
            return
        if not self._closed and shiboken6.isValid(self.model) and symbol == self.symbol:
            self.model.set_rows(rows)
            self.refreshes += 1

    def showEvent(self, event) -> None:  # noqa: N802, ANN001 (Qt API)
        super().showEvent(event)
        self.refresh()  # brought to the front: fresh rows at once, not at the next tick

    def shutdown(self) -> None:
        self._closed = True
        self.timer.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()

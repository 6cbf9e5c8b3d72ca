"""The venue comparison: the selected symbol's price on every connected venue, side by side.

Refreshed every few seconds from `VenueManager.compare`, which asks all venues
at once; a venue that fails shows its reason in its row instead of a price.
"""

from __future__ import annotations

import asyncio
import logging

import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.venues import factory
from app.venues.manager import VenueQuote
from ui import format as fmt
from ui import theme
from ui.table_model import Index, RowsModel

log = logging.getLogger(__name__)
COLUMNS = ("Venue", "Bid", "Ask", "Last", "Spread", "Buy vs best", "Sell vs best")


def _bps(value) -> str:
    return "—" if value is None else f"{value:.2f} bps"


class CompareModel(RowsModel):
    columns = COLUMNS

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.decimals = 2

    @property
    def quotes(self) -> list[VenueQuote]:
        return self.rows

    def set_quotes(self, quotes: list[VenueQuote], decimals: int) -> None:
        self.decimals = decimals
        self.set_rows(quotes)




    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        q = self.quotes[index.row()]
        col = index.column()
        t = q.ticker
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return factory.TITLES.get(q.venue, q.venue)
            if t is None:
                return q.error if col == 1 else ""
            d = self.decimals
            return (None, fmt.price(t.bid, d), fmt.price(t.ask, d), fmt.price(t.last, d), _bps(q.spread_bps),
                    _bps(q.buy_vs_best_bps), _bps(q.sell_vs_best_bps))[col]
        if role == Qt.ItemDataRole.ForegroundRole:
            if t is None and col == 1:
                return QColor(theme.WARN)
            if (col == 5 and q.buy_vs_best_bps == 0) or (col == 6 and q.sell_vs_best_bps == 0):
                return QColor(theme.UP)  # the best place to buy / to sell
        if role == Qt.ItemDataRole.TextAlignmentRole and col and t is not None:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and t is None:
            return q.error
        return None


class ComparePanel(QWidget):
    """Table plus a row to add a venue to the comparison."""

    def __init__(self, runtime, refresh_s: float = 3.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.symbol = ""
        self.decimals = 2
        self.model = CompareModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.venue_box = QComboBox()
        for name in factory.supported():
            self.venue_box.addItem(factory.TITLES.get(name, name), name)
        self.add_button = QPushButton("Add venue")
        self.add_button.clicked.connect(self._add_clicked)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        self.message.setStyleSheet(f"color: {theme.WARN};")
        row = QHBoxLayout()
        row.addWidget(self.venue_box)
        row.addWidget(self.add_button)
        row.addStretch(1)
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 4, 4, 4)
        column.addLayout(row)
        column.addWidget(self.message)
        column.addWidget(self.table, 1)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.refreshes = 0
        self.timer = QTimer(self)
        self.timer.setInterval(int(refresh_s * 1000))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def set_symbol(self, symbol: str, decimals: int) -> None:
        self.symbol, self.decimals = symbol, decimals
        self.refresh()

    def refresh(self) -> None:
        if self._closed or not self.symbol or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.ensure_future(self._refresh(self.symbol))

    async def _refresh(self, symbol: str) -> None:
        quotes = await self.runtime.manager.compare(symbol)
        if not self._closed and shiboken6.isValid(self.model) and symbol == self.symbol:
            self.model.set_quotes(quotes, self.decimals)
            self.refreshes += 1

    def _add_clicked(self) -> None:
        name = self.venue_box.currentData()
        self.add_button.setEnabled(False)
        self._say(f"Connecting to {factory.TITLES.get(name, name)}…")
        asyncio.ensure_future(self._add(name))

    async def _add(self, name: str) -> None:
        try:
            await self.runtime.add_venue(name)
            self._say("")
        except Exception as exc:  # the reason goes next to the button, never a traceback
            if shiboken6.isValid(self.message):
                self._say(str(exc))
            return
        finally:
            if shiboken6.isValid(self.add_button):
                self.add_button.setEnabled(True)
        self.refresh()

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def shutdown(self) -> None:
        self._closed = True
        self.timer.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()

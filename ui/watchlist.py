"""The watchlist: one row per symbol with last price, 24h change, bid/ask and volume.

The model reads `MarketState` on a timer and signals only the rows whose ticker
sequence moved, so a busy market costs a handful of row repaints per frame.
A price that rose flashes green and one that fell flashes red for a moment.
"""

from __future__ import annotations

import time
from decimal import Decimal

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from app.domain import Market, Ticker
from app.market.state import MarketState
from ui import format as fmt
from ui import theme

COLUMNS = ("Symbol", "Last", "24h %", "Bid", "Ask", "24h Vol")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
SYMBOL_ROLE = Qt.ItemDataRole.UserRole + 2
FLASH_SECONDS = 0.6

Index = QModelIndex | QPersistentModelIndex


class WatchlistModel(QAbstractTableModel):
    def __init__(self, state: MarketState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.symbols: list[str] = []
        self.markets: dict[str, Market] = {}
        self._seen: dict[str, int] = {}
        self._flash: dict[str, tuple[float, bool]] = {}  # symbol -> (until, rose)
        self._prev_last: dict[str, Decimal] = {}

    def set_symbols(self, symbols: list[str], markets: dict[str, Market]) -> None:
        self.beginResetModel()
        self.symbols = list(symbols)
        self.markets = markets
        self._seen.clear()
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 (Qt API)
        return 0 if parent.isValid() else len(self.symbols)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 (Qt API)
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.TextAlignmentRole and section:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        symbol = self.symbols[index.row()]
        col = index.column()
        if role == SYMBOL_ROLE:
            return symbol
        t: Ticker | None = self.state.tickers.get(symbol)
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return symbol
            if t is None:
                return "—"
            d = self.markets[symbol].price_decimals if symbol in self.markets else 2
            return (
                None,
                fmt.price(t.last, d),
                fmt.percent(t.change_pct_24h),
                fmt.price(t.bid, d),
                fmt.price(t.ask, d),
                fmt.compact(t.quote_volume_24h),
            )[col]
        if role == SORT_ROLE:
            if col == 0 or t is None:
                return symbol
            value = (None, t.last, t.change_pct_24h, t.bid, t.ask, t.quote_volume_24h)[col]
            return float(value) if value is not None else float("-inf")
        if role == Qt.ItemDataRole.TextAlignmentRole and col:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and t is not None:
            if col == 2 and t.change_pct_24h is not None:
                return QColor(theme.UP if t.change_pct_24h >= 0 else theme.DOWN)
            if col == 1:
                flash = self._flash.get(symbol)
                if flash and flash[0] > time.monotonic():
                    return QColor(theme.UP if flash[1] else theme.DOWN)
        if role == Qt.ItemDataRole.ToolTipRole and t is not None and col == 5:
            return f"24h volume: {fmt.compact(t.base_volume_24h)} {symbol.split('/')[0]} / {fmt.compact(t.quote_volume_24h)} {symbol.split('/')[1]}"
        return None

    def refresh(self) -> int:
        """Signal the rows whose ticker changed since the last call; returns how many."""
        changed = 0
        now = time.monotonic()
        last_col = len(COLUMNS) - 1
        for row, symbol in enumerate(self.symbols):
            seq = self.state.seq.get(symbol, 0)
            flash = self._flash.get(symbol)
            expired = flash is not None and flash[0] <= now
            if seq == self._seen.get(symbol) and not expired:
                continue
            if expired:
                del self._flash[symbol]
            if seq != self._seen.get(symbol):
                t = self.state.tickers.get(symbol)
                prev = self._prev_last.get(symbol)
                if t is not None:
                    if prev is not None and t.last != prev:
                        self._flash[symbol] = (now + FLASH_SECONDS, t.last > prev)
                    self._prev_last[symbol] = t.last
                self._seen[symbol] = seq
            self.dataChanged.emit(self.index(row, 1), self.index(row, last_col))
            changed += 1
        return changed


class WatchlistView(QTableView):
    symbolActivated = Signal(str)
    priceChosen = Signal(str, object)  # a double-click on a last, bid or ask cell: (symbol, Decimal price)

    def __init__(self, model: WatchlistModel, refresh_hz: int = 30, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = model
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setSortRole(SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # settings order until the user sorts
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(24)
        header = self.horizontalHeader()
        # Prices must never be cut to "86,81…": columns fit their contents, the last one takes the slack.
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        self.clicked.connect(self._activate)
        self.doubleClicked.connect(self._choose_price)
        self.timer = QTimer(self)
        self.timer.setInterval(max(16, int(1000 / max(1, min(60, refresh_hz)))))
        self.timer.timeout.connect(model.refresh)
        self.timer.start()

    def _activate(self, index: QModelIndex) -> None:
        symbol = self.proxy.data(index, SYMBOL_ROLE)
        if symbol:
            self.symbolActivated.emit(symbol)

    def _choose_price(self, index: QModelIndex) -> None:
        symbol = self.proxy.data(index, SYMBOL_ROLE)
        ticker = self.source.state.tickers.get(symbol)
        column = COLUMNS[index.column()]
        if ticker is None or column not in ("Last", "Bid", "Ask"):
            return
        price = {"Last": ticker.last, "Bid": ticker.bid, "Ask": ticker.ask}[column]
        if price is not None:
            self.priceChosen.emit(symbol, price)

    def select_symbol(self, symbol: str) -> None:
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if self.proxy.data(index, SYMBOL_ROLE) == symbol:
                self.selectRow(row)
                return

    def row_of(self, symbol: str) -> int:
        for row in range(self.proxy.rowCount()):
            if self.proxy.data(self.proxy.index(row, 0), SYMBOL_ROLE) == symbol:
                return row
        return -1

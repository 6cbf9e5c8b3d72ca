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
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QMenu, QTableView, QWidget

from app.alerts.model import AlertKind
from app.domain import Market, Ticker
from app.market.state import AltPrice, MarketState
from ui import format as fmt
from ui import theme

COLUMNS = ("Symbol", "Last", "24h %", "Bid", "Ask", "24h Vol", "Mkt cap", "Source")
SOURCE_COL = COLUMNS.index("Source")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
SYMBOL_ROLE = Qt.ItemDataRole.UserRole + 2
FLASH_SECONDS = 0.6
PROVIDER_TITLES = {"coinmarketcap": "CoinMarketCap", "yahoo": "Yahoo Finance", "alphavantage": "Alpha Vantage",
                   "polygon": "Polygon"}

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
        t, alt = self.state.shown(symbol)
        meta = self.state.meta.get(symbol)
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return symbol
            if col == 6:
                return self._market_cap(meta)
            if col == SOURCE_COL:
                return self._source(symbol, t, alt)
            if t is None:
                return "—"
            d = self._decimals(symbol, t)
            return (
                None,
                fmt.price(t.last, d),
                fmt.percent(t.change_pct_24h),
                fmt.price(t.bid, d),
                fmt.price(t.ask, d),
                fmt.compact(t.quote_volume_24h),
            )[col]
        if role == SORT_ROLE:
            if col == 6:
                cap = getattr(meta, "market_cap", None)
                return float(cap) if cap is not None else float("-inf")
            if col in (0, SOURCE_COL) or t is None:
                return symbol if col != SOURCE_COL else self._source(symbol, t, alt)
            value = (None, t.last, t.change_pct_24h, t.bid, t.ask, t.quote_volume_24h)[col]
            return float(value) if value is not None else float("-inf")
        if role == Qt.ItemDataRole.TextAlignmentRole and col:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col == SOURCE_COL and (alt is not None or t is None):
            return QColor(theme.WARN)  # a stand-in price, not the venue's own; or no price at all
        if role == Qt.ItemDataRole.ToolTipRole and col == SOURCE_COL:
            return self._source_tip(symbol, t, alt)
        if role == Qt.ItemDataRole.ForegroundRole and t is not None:
            if col == 2 and t.change_pct_24h is not None:
                return QColor(theme.UP if t.change_pct_24h >= 0 else theme.DOWN)
            if col == 1:
                flash = self._flash.get(symbol)
                if flash and flash[0] > time.monotonic():
                    return QColor(theme.UP if flash[1] else theme.DOWN)
        if role == Qt.ItemDataRole.ToolTipRole and t is not None and col == 5 and "/" in symbol:
            return f"24h volume: {fmt.compact(t.base_volume_24h)} {symbol.split('/')[0]} / {fmt.compact(t.quote_volume_24h)} {symbol.split('/')[1]}"
        return None

    def _decimals(self, symbol: str, t: Ticker) -> int:
        if symbol in self.markets:
            return self.markets[symbol].price_decimals
        exponent = t.last.as_tuple().exponent  # a provider's own precision (EUR/USD has 5 places)
        return min(8, max(2, -exponent)) if isinstance(exponent, int) else 2

    @staticmethod
    def _market_cap(meta: object) -> str:
        cap, rank = getattr(meta, "market_cap", None), getattr(meta, "rank", None)
        if cap is None:
            return ""
        return f"{fmt.compact(cap)} (#{rank})" if rank else fmt.compact(cap)

    def _age(self, symbol: str, alt: AltPrice | None) -> float:
        arrived = alt.fetched_at if alt is not None else self.state.arrived.get(symbol, 0.0)
        return max(0.0, time.time() - arrived)

    def _source(self, symbol: str, t: Ticker | None, alt: AltPrice | None) -> str:
        # Short names keep the dock narrow; the tooltip says it in full.
        if t is None:
            return "no price" if symbol in self.state.unpriced else ""
        if alt is not None:
            return f"≈ {alt.provider} · {fmt.age(self._age(symbol, alt))}"
        if symbol in self.state.provider_symbols:
            return f"{t.venue} · {fmt.age(self._age(symbol, None))}"
        return t.venue

    def _source_tip(self, symbol: str, t: Ticker | None, alt: AltPrice | None) -> str | None:
        if t is None and symbol in self.state.unpriced:
            return self.state.unpriced[symbol]
        if alt is not None:
            return (f"The venue's stream is not live, so this is {alt.title}'s {alt.ticker.symbol} price from "
                    f"{fmt.age(self._age(symbol, alt))} ago, shown until the venue's own prices return. "
                    "Orders still use the venue's prices.")
        if t is not None and symbol in self.state.provider_symbols:
            return (f"No connected exchange lists {symbol}: this price comes from "
                    f"{PROVIDER_TITLES.get(t.venue, t.venue)}, fetched {fmt.age(self._age(symbol, None))} ago.")
        return None

    def tick_ages(self) -> None:
        """Ages move with the clock, not with prices: repaint the source column of rows that show one."""
        for row, symbol in enumerate(self.symbols):
            if symbol in self.state.provider_symbols or symbol in self.state.alt:
                index = self.index(row, SOURCE_COL)
                self.dataChanged.emit(index, index)

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
            self.dataChanged.emit(self.index(row, 1), self.index(row, last_col))  # prices, cap and source
            changed += 1
        return changed


class WatchlistView(QTableView):
    symbolActivated = Signal(str)
    priceChosen = Signal(str, object)  # a double-click on a last, bid or ask cell: (symbol, Decimal price)
    alertRequested = Signal(str, object, object)  # the context menu: (symbol, Decimal price or None, AlertKind or None)
    widthWanted = Signal(int)  # a column appeared: the width that shows every column without scrolling

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
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.clicked.connect(self._activate)
        self.doubleClicked.connect(self._choose_price)
        self.timer = QTimer(self)
        self.timer.setInterval(max(16, int(1000 / max(1, min(60, refresh_hz)))))
        self.timer.timeout.connect(model.refresh)
        self.timer.start()
        self.age_timer = QTimer(self)
        self.age_timer.setInterval(1000)
        self.age_timer.timeout.connect(model.tick_ages)
        self.age_timer.timeout.connect(self.fit_columns)
        self.age_timer.start()
        self.fit_columns()

    def fit_columns(self) -> None:
        """Market cap and source take room only when there is something to show: a crypto-only watchlist
        on a live venue needs neither, and the dock stays narrow enough for prices."""
        state = self.source.state
        before = [self.isColumnHidden(c) for c in range(len(COLUMNS))]
        self.setColumnHidden(COLUMNS.index("Mkt cap"),
                             not any(getattr(m, "market_cap", None) for m in state.meta.values()))
        self.setColumnHidden(SOURCE_COL, not (state.provider_symbols or state.alt))
        if [self.isColumnHidden(c) for c in range(len(COLUMNS))] != before:
            QTimer.singleShot(0, self._ask_for_width)  # once the new column has measured its contents

    def _ask_for_width(self) -> None:
        header = self.horizontalHeader()
        needed = sum(header.sectionSizeHint(c) if header.sectionSize(c) == 0 else header.sectionSize(c)
                     for c in range(len(COLUMNS)) if not self.isColumnHidden(c))
        needed += self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth() + 8
        if needed > self.viewport().width():
            self.widthWanted.emit(needed)

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

    def menu_for(self, index: QModelIndex) -> QMenu | None:
        """The row's menu: alerts at the row's current price (above and below) or with the form."""
        symbol = self.proxy.data(index, SYMBOL_ROLE)
        if not symbol:
            return None
        ticker, _alt = self.source.state.shown(symbol)
        price = ticker.last if ticker is not None else None
        menu = QMenu(self)
        form = menu.addAction(f"Alert for {symbol}…")
        form.triggered.connect(lambda: self.alertRequested.emit(symbol, price, None))
        if price is not None:
            text = fmt.price(price, self.source._decimals(symbol, ticker))
            above = menu.addAction(f"Alert when {symbol} crosses above {text}…")
            above.triggered.connect(lambda: self.alertRequested.emit(symbol, price, AlertKind.PRICE_ABOVE))
            below = menu.addAction(f"Alert when {symbol} crosses below {text}…")
            below.triggered.connect(lambda: self.alertRequested.emit(symbol, price, AlertKind.PRICE_BELOW))
        return menu

    def _context_menu(self, pos) -> None:  # noqa: ANN001 - QPoint
        menu = self.menu_for(self.indexAt(pos))
        if menu is not None:
            menu.popup(self.viewport().mapToGlobal(pos))

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

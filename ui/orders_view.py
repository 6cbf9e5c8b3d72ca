"""Open orders, order history and balances tables, with cancel, cancel-all and CSV export.

The two legs of an OCO list are ordinary rows, grouped visibly: "· OCO" in their type, the list id in
the "OCO list" column, one tint per list, and a tooltip saying that cancelling either leg cancels both
(the order service cancels the list)."""

from __future__ import annotations

import asyncio
import datetime as dt

import shiboken6
from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.domain import OrderStatus, Side
from ui import theme
from ui.table_model import Index, RowsModel

LIVE = (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN)
ORDER_COLUMNS = ("Time", "Symbol", "Side", "Type", "Price", "Amount", "Filled", "Avg", "Status", "Client id", "Stop",
                 "OCO list", "Note")
OCO_TINTS = ("#2962ff", "#ab47bc")  # alternate per list, so neighbouring lists stay apart


def oco_tint(list_id: str) -> QColor:
    colour = QColor(OCO_TINTS[sum(map(ord, list_id)) % len(OCO_TINTS)])
    colour.setAlpha(40)
    return colour


def _num(value) -> str:  # noqa: ANN001
    return "—" if value is None else f"{value:f}"


def _sortable_table(parent: QWidget, model: RowsModel) -> tuple[QSortFilterProxyModel, QTableView]:
    """A table over `model`: sorted by the numbers behind the cells (UserRole), filterable on any column."""
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(model)
    proxy.setSortRole(Qt.ItemDataRole.UserRole)
    proxy.setFilterKeyColumn(-1)  # a filter matches any column: symbol, side, status, client id
    table = QTableView()
    table.setModel(proxy)
    table.setSortingEnabled(True)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.verticalHeader().setVisible(False)
    table.setAlternatingRowColors(True)
    table.setShowGrid(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return proxy, table


def _filter_box(proxy: QSortFilterProxyModel) -> QLineEdit:
    box = QLineEdit()
    box.setPlaceholderText("Filter (symbol, side, status…)")
    box.setClearButtonEnabled(True)
    box.setMaximumWidth(240)
    proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    box.textChanged.connect(proxy.setFilterFixedString)
    return box


class OrdersModel(RowsModel):
    columns = ORDER_COLUMNS

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        e = self.rows[index.row()]
        col = index.column()
        list_id = getattr(e, "list_id", "")
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.UserRole):
            when = dt.datetime.fromtimestamp(e.created_at / 1000).strftime("%Y-%m-%d %H:%M:%S") if e.created_at else ""
            kind = e.type.value.replace("_", "-") + (" · OCO" if list_id else "")
            values = (when, e.symbol, e.side.value, kind, _num(e.price), _num(e.amount), _num(e.filled),
                      _num(e.average), e.status.value.replace("_", " "), e.client_order_id,
                      "" if e.stop_price is None else _num(e.stop_price), list_id, e.reason)
            if role == Qt.ItemDataRole.UserRole and col in (4, 5, 6, 7, 10):
                raw = (e.price, e.amount, e.filled, e.average, None, None, e.stop_price)[col - 4]
                return float(raw) if raw is not None else float("-inf")
            if role == Qt.ItemDataRole.UserRole and col == 0:
                # Legs of one list sort next to each other (same time, then by list id).
                return f"{values[0]} {list_id} {e.type.value != 'limit'}"
            return values[col]
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == 2:
                return QColor(theme.UP if e.side is Side.BUY else theme.DOWN)
            if col == 8 and e.status in (OrderStatus.REJECTED, OrderStatus.UNKNOWN):
                return QColor(theme.WARN)
        if role == Qt.ItemDataRole.BackgroundRole and list_id:
            return oco_tint(list_id)
        if role == Qt.ItemDataRole.ToolTipRole:
            tips = [e.reason] if e.reason else []
            if list_id:
                tips.append(f"Leg of OCO list {list_id}: when one leg fills or its stop triggers, the other is "
                            "cancelled; cancelling either leg cancels both.")
            return "\n".join(tips) or None
        return None


class OrdersPanel(QWidget):
    """Open orders or history (a filter), sortable, with cancel and cancel-all."""

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.model = OrdersModel(self)
        self.proxy, self.table = _sortable_table(self, self.model)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.view = QComboBox()
        self.view.addItems(["Open orders", "Order history"])
        self.view.currentIndexChanged.connect(lambda _i: self.refresh())
        self.cancel_button = QPushButton("Cancel selected")
        self.cancel_button.clicked.connect(lambda: asyncio.ensure_future(self.cancel_selected()))
        self.cancel_all_button = QPushButton("Cancel all…")
        self.cancel_all_button.clicked.connect(lambda: asyncio.ensure_future(self.cancel_all()))
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export)
        self.filter = _filter_box(self.proxy)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.view)
        row.addWidget(self.filter)
        row.addWidget(self.cancel_button)
        row.addWidget(self.cancel_all_button)
        row.addWidget(self.export_button)
        row.addWidget(self.message, 1)
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 4, 4, 4)
        column.addLayout(row)
        column.addWidget(self.table, 1)
        self.timer = QTimer(self)
        self.timer.setInterval(500)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def refresh(self) -> None:
        orders = self.runtime.orders
        rows = orders.orders() if orders is not None else []
        live = self.view.currentIndex() == 0
        self.model.set_rows([e for e in rows if (e.status in LIVE) == live])
        self.cancel_button.setEnabled(live)
        self.cancel_all_button.setEnabled(live and bool(self.model.rows))

    def export(self) -> None:
        from ui.csv_export import export_model

        self.export_dialog = export_model(self, self.model, self.view.currentText(), self.message.setText)

    def selected(self) -> list:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return [self.model.rows[r] for r in sorted(rows)]

    async def cancel_selected(self) -> None:
        done_lists: set[str] = set()
        for entry in self.selected():
            list_id = getattr(entry, "list_id", "")
            if list_id and list_id in done_lists:
                continue  # its sibling's cancel already cancelled the whole list
            try:
                await self.runtime.orders.cancel(entry.client_order_id, entry.symbol)
                if list_id:
                    done_lists.add(list_id)
                    self._say(f"Cancelled OCO list {list_id} (both legs).")
                else:
                    self._say(f"Cancelled {entry.client_order_id}.")
            except Exception as exc:
                self._say(str(exc))

    async def cancel_all(self) -> None:
        count = len(self.model.rows)
        venue = getattr(self.runtime.venue, "title", "")
        box = QMessageBox(QMessageBox.Icon.Warning, "Cancel all orders?",
                          f"Cancel every open order on {venue} for this account: the {count} placed from Meridian, "
                          "and any placed elsewhere (another app, the website, a bot)?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        answer = asyncio.get_running_loop().create_future()
        box.finished.connect(lambda result: answer.done() or answer.set_result(result))
        self.confirm_dialog = box
        box.open()
        if await answer != QMessageBox.StandardButton.Yes:
            return
        try:
            cancelled = await self.runtime.orders.cancel_all()
            self._say(f"Cancelled {len(cancelled)} order(s).")
        except Exception as exc:
            self._say(str(exc))

    def _say(self, text: str) -> None:
        if shiboken6.isValid(self.message):
            self.message.setText(text)
            self.refresh()


class BalancesModel(RowsModel):
    columns = ("Asset", "Free", "In orders", "Total")

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or role != Qt.ItemDataRole.DisplayRole:
            return None
        b = self.rows[index.row()]
        # Exact Decimal text, never a float: the CSV export writes these cells as they are.
        return (b.asset, f"{b.free:f}", f"{b.used:f}", f"{b.total:f}")[index.column()]


class BalancesPanel(QWidget):
    """The account's balances, refreshed every few seconds, with CSV export like the other tables."""

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.balances_model = BalancesModel(self)
        self.table = QTableView()
        self.table.setModel(self.balances_model)
        self.table.verticalHeader().setVisible(False)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.message, 1)
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 4, 4, 4)
        column.addLayout(row)
        column.addWidget(self.table, 1)
        self.error = ""
        self._task: asyncio.Task[None] | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(3000)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def refresh(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._load())

    async def _load(self) -> None:
        try:
            balances = await self.runtime.venue.fetch_balance()
        except Exception as exc:  # no keys yet: say so in the tooltip, keep the table empty
            self.error = str(exc)
            if shiboken6.isValid(self):
                self.setToolTip(self.error)
            return
        if shiboken6.isValid(self.balances_model):
            self.error = ""
            self.setToolTip("")
            self.balances_model.set_rows([balances[a] for a in sorted(balances)])

    def export(self) -> None:
        from ui.csv_export import export_model

        self.export_dialog = export_model(self, self.balances_model, "Balances", self.message.setText)

    def shutdown(self) -> None:
        self.timer.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()


FILL_COLUMNS = ("Time", "Symbol", "Side", "Price", "Amount", "Fee", "Fee asset", "Maker", "Order", "Trade id")


class FillsModel(RowsModel):
    columns = FILL_COLUMNS

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ids: set[str] = set()

    def add(self, fills: list) -> None:
        new = [f for f in fills if f.trade_id not in self._ids]
        if not new:
            return
        self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(new) - 1)
        self.rows.extend(new)
        self._ids.update(f.trade_id for f in new)
        self.endInsertRows()




    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        f = self.rows[index.row()]
        col = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.UserRole):
            if role == Qt.ItemDataRole.UserRole and col in (3, 4, 5):
                return float((f.price, f.amount, f.fee)[col - 3])
            when = dt.datetime.fromtimestamp(f.ts / 1000).strftime("%Y-%m-%d %H:%M:%S") if f.ts else ""
            return (when, f.symbol, f.side.value, f"{f.price:f}", f"{f.amount:f}", f"{f.fee:f}", f.fee_asset,
                    "yes" if f.is_maker else "no", f.order_id, f.trade_id)[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 2:
            return QColor(theme.UP if f.side is Side.BUY else theme.DOWN)
        return None


class FillsPanel(QWidget):
    """Trades (fills): the journal's recent ones at start, then each `trade.executed` as it happens."""

    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.model = FillsModel(self)
        self.proxy, self.table = _sortable_table(self, self.model)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export)
        self.filter = _filter_box(self.proxy)
        self.message = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.filter)
        row.addWidget(self.export_button)
        row.addWidget(self.message, 1)
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 4, 4, 4)
        column.addLayout(row)
        column.addWidget(self.table, 1)
        self._subscription = None
        self._loaded = False
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self._load_once)
        self.timer.start()

    def _load_once(self) -> None:
        orders = self.runtime.orders
        if self._loaded or orders is None:
            return
        self._loaded = True
        self._subscription = self.runtime.bus.subscribe("trade.executed", lambda e: self._on_fill(e.payload))
        asyncio.ensure_future(self._load(orders))

    async def _load(self, orders) -> None:  # noqa: ANN001
        fills = await orders.recent_fills()
        if shiboken6.isValid(self.model):
            self.model.add(fills)

    def _on_fill(self, fill) -> None:  # noqa: ANN001
        if shiboken6.isValid(self.model):
            self.model.add([fill])

    def export(self) -> None:
        from ui.csv_export import export_model

        self.export_dialog = export_model(self, self.model, "Trades", self.message.setText)

    def shutdown(self) -> None:
        self.timer.stop()
        if self._subscription is not None:
            self._subscription.cancel()

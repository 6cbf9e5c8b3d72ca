"""The health panel: every endpoint group's circuit breaker, as the guard reports it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QTableView, QWidget

from ui import theme
from ui.table_model import Index, RowsModel

COLUMNS = ("Service", "State", "Failures", "Next probe", "Calls", "Rejected", "Last error")
STATE_TEXT = {"closed": "Healthy", "open": "Paused (circuit open)", "half_open": "Probing"}
STATE_COLOUR = {"closed": theme.UP, "open": theme.DOWN, "half_open": theme.WARN}


class HealthModel(RowsModel):
    columns = COLUMNS

    """Rows from `healths()` (a list of GuardHealth), re-read on a timer."""

    def __init__(self, healths: Callable[[], list], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.healths = healths

    def refresh(self) -> None:
        self.set_rows(self.healths())




    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        h = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return h.group
            if col == 1:
                return STATE_TEXT.get(h.state, h.state)
            if col == 2:
                return str(h.failures)
            if col == 3:
                if h.state == "open" and h.opened_until:
                    return dt.datetime.fromtimestamp(h.opened_until).strftime("%H:%M:%S")
                return "—"
            if col == 4:
                return str(h.calls)
            if col == 5:
                return str(h.rejected)
            return h.last_error or ""
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return QColor(STATE_COLOUR.get(h.state, theme.MUTED))
        if role == Qt.ItemDataRole.ToolTipRole and col == 6 and h.last_error:
            return h.last_error
        return None


class HealthView(QTableView):
    def __init__(self, healths: Callable[[], list], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.health_model = HealthModel(healths, self)
        self.setModel(self.health_model)
        self.verticalHeader().setVisible(False)
        self.setShowGrid(False)
        self.setAlternatingRowColors(True)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.timer = QTimer(self)
        self.timer.setInterval(500)
        self.timer.timeout.connect(self.health_model.refresh)
        self.timer.start()

"""The alerts panel: the user's alerts in a sortable table, and a form to create or edit one.

Decisions:
* The engine is the only judge of an alert. On every keystroke the form builds an `Alert`
  from what is typed and shows each sentence of `engine.check()` next to its field, so the
  form and `add`/`update` can never disagree about what is valid.
* A field's problem shows once the user has touched that field, or pressed Save: a form the
  user has not reached yet is not covered in red. Nothing typed is ever cleared by an error.
* Numbers go through `parse_decimal` into Decimal. Text that is not a number becomes "no value",
  which the engine explains in its own sentence ("Enter the price level as a number ...").
* Every engine call runs in a task whose reference the panel keeps: with a repository the write
  happens on the store's thread, and the window keeps painting meanwhile.
* Delete asks first with `QMessageBox.open()` and a future, never `exec()`: a nested Qt loop
  inside the asyncio loop re-enters tasks (docs/design-notes.md, "The window and asyncio").
* A channel that is not set up yet can still be ticked: its messages wait in the outbox, and the
  form says so (tooltip and a muted line) instead of refusing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import shiboken6
from PySide6.QtCore import QPoint, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.alerts import (
    CHANNELS,
    TOPIC_ALERT_FIRED,
    TOPIC_ALERTS_CHANGED,
    Alert,
    AlertEngine,
    AlertInvalid,
    AlertKind,
    describe,
    parse_decimal,
)
from ui import format as fmt
from ui import theme
from ui.table_model import Index, RowsModel

__all__ = ["COLUMNS", "AlertForm", "AlertsModel", "AlertsPanel"]

log = logging.getLogger(__name__)

COLUMNS = ("Condition", "Channels", "Cooldown", "Mode", "Status", "Fired", "Note")
STATUS_COL = COLUMNS.index("Status")
FIRED_COL = COLUMNS.index("Fired")
ALERT_ID_ROLE = Qt.ItemDataRole.UserRole + 1

CHANNEL_LABELS = {"desktop": "Desktop", "email": "Email", "discord": "Discord", "sms": "SMS"}
FIELDS = ("symbol", "price", "pct", "window", "multiple", "channels", "cooldown", "plan")
WINDOW_UNITS = (("minutes", 60), ("hours", 3600))
COOLDOWN_UNITS = (("seconds", 1), ("minutes", 60))
DEFAULT_WINDOW = ("60", 0)  # 60 minutes: valid for both % change (1 min to 7 days) and volume (5 min to 24 h)
DEFAULT_COOLDOWN = ("5", 1)  # 5 minutes, the engine's default of 300 s

KIND_HINTS = {
    AlertKind.PRICE_ABOVE: "Fires when the price moves from below the level to at or above it.",
    AlertKind.PRICE_BELOW: "Fires when the price moves from above the level to at or below it.",
    AlertKind.PCT_CHANGE: "Fires when the price moves at least this much, up or down, within the window.",
    AlertKind.VOLUME_SPIKE: "Fires when one minute's volume reaches this multiple of the window's average.",
    AlertKind.ORDER_FILLED: "Fires when one of your orders fills. Leave the symbol empty for any symbol.",
    AlertKind.ORDER_REJECTED: "Fires when an order is rejected. Leave the symbol empty for any symbol.",
    AlertKind.RISK_LIMIT: "Fires when a risk limit refuses an order. Leave the symbol empty for any symbol.",
}


def span(seconds: int) -> str:
    """A cooldown as people say it: 'none', '45s', '5m', '2h', '1h 30m'."""
    if seconds <= 0:
        return "none"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds >= 3600 and seconds % 60 == 0:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def fired_text(alert: Alert, now: float) -> str:
    """'Never', or how often and when it last fired, with how long ago (refreshed every second)."""
    if not alert.fired_count or alert.last_fired_at is None:
        return "Never"
    when = dt.datetime.fromtimestamp(alert.last_fired_at / 1000)
    today = dt.datetime.fromtimestamp(now).date()
    clock = when.strftime("%H:%M:%S") if when.date() == today else when.strftime("%Y-%m-%d %H:%M")
    times = "once" if alert.fired_count == 1 else f"{alert.fired_count} times"
    return f"{times}, last {clock} ({fmt.age(now - alert.last_fired_at / 1000)} ago)"


def _number_text(value: Decimal) -> str:
    """A Decimal for an input field: plain digits, no exponent, no trailing zeros after the point."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _error_label() -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    label.setStyleSheet(f"color: {theme.DOWN};")
    label.hide()
    return label


def _muted_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet(f"color: {theme.MUTED};")
    return label


class AlertsModel(RowsModel):
    """One row per alert (`engine.alerts`); UserRole carries the sort keys."""

    columns = COLUMNS

    def __init__(self, parent: QWidget | None = None, now: Callable[[], float] = time.time) -> None:
        super().__init__(parent)
        self._now = now

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        a: Alert = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (describe(a), ", ".join(CHANNEL_LABELS.get(c, c) for c in a.channels), span(a.cooldown_s),
                    "Repeat" if a.repeat else "Once", "Active" if a.active else "Off",
                    fired_text(a, self._now()), a.note)[col]
        if role == Qt.ItemDataRole.UserRole:  # sort keys: numbers sort as numbers, not as text
            if col == 0:
                level = a.price if a.price is not None else a.pct if a.pct is not None else a.multiple
                number = f"{float(level):030.10f}" if level is not None else ""
                return f"{a.symbol}\x00{list(AlertKind).index(a.kind):02d}\x00{number}"
            return (None, ",".join(a.channels), a.cooldown_s, int(a.repeat), int(a.active), a.last_fired_at or 0,
                    a.note.lower())[col]
        if role == ALERT_ID_ROLE:
            return a.id
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == STATUS_COL:
                return QColor(theme.UP if a.active else theme.MUTED)
            if not a.active:
                return QColor(theme.MUTED)  # a switched-off alert reads as dimmed
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 0:
                return f"{a.kind.label} — {describe(a)}" + ("" if a.active else " (switched off)")
            if col == FIRED_COL and a.last_fired_at is not None:
                return dt.datetime.fromtimestamp(a.last_fired_at / 1000).strftime("Last fired %Y-%m-%d %H:%M:%S")
        return None

    def tick(self) -> None:
        """Only the 'Fired' column's 'ago' changes with time: repaint that column, no model reset."""
        if self.rows:
            self.dataChanged.emit(self.index(0, FIRED_COL), self.index(len(self.rows) - 1, FIRED_COL),
                                  [Qt.ItemDataRole.DisplayRole])


class AlertForm(QWidget):
    """Create or edit one alert; problems are shown next to their fields as the user types."""

    saved = Signal(object)  # the Alert as the engine stored it

    def __init__(self, engine: AlertEngine, symbols: Callable[[], list[str]],
                 channels_ready: Callable[[], dict[str, str]] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self._symbols = symbols
        self._channels_ready = channels_ready
        self.editing: Alert | None = None  # the stored alert being edited; None while creating
        self.saving = False  # one save at a time: a second Enter while the first is stored does nothing
        self._touched: set[str] = set()
        self._attempted = False  # Save was pressed: show every problem, touched or not
        self._tasks: set[asyncio.Task[Any]] = set()
        self.problems: dict[str, str] = {}  # what engine.check() says of the form right now
        self.shown: dict[str, str] = {}  # the part of it on screen

        self.title = QLabel("New alert")
        self.title.setStyleSheet(f"color: {theme.TEXT}; font-weight: bold;")
        self.kind = QComboBox()
        for kind in AlertKind:
            self.kind.addItem(kind.label, kind)
        self.kind.currentIndexChanged.connect(lambda _i: self._kind_changed())
        self.kind_hint = _muted_label()

        self.symbol = QComboBox()
        self.symbol.setEditable(True)
        self.symbol.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)  # typing a symbol must not add it to the list
        self.symbol.lineEdit().textEdited.connect(lambda _t: self._touch("symbol"))
        self.symbol.activated.connect(lambda _i: self._touch("symbol"))
        self.price = QLineEdit()
        self.price.setPlaceholderText("for example 70000 or 0.5123")
        self.pct = QLineEdit()
        self.pct.setPlaceholderText("for example 2.5")
        self.window = QLineEdit(DEFAULT_WINDOW[0])
        self.window_unit = QComboBox()
        self.window_unit.addItems([name for name, _ in WINDOW_UNITS])
        self.window_unit.activated.connect(lambda _i: self._touch("window"))
        self.multiple = QLineEdit()
        self.multiple.setPlaceholderText("for example 3")
        for field, key in ((self.price, "price"), (self.pct, "pct"), (self.window, "window"),
                           (self.multiple, "multiple")):
            field.textEdited.connect(lambda _t, k=key: self._touch(k))

        self.channel_boxes: dict[str, QCheckBox] = {}
        channel_row = QHBoxLayout()
        channel_row.setContentsMargins(0, 0, 0, 0)
        for name in CHANNELS:
            box = QCheckBox(CHANNEL_LABELS.get(name, name))
            box.setChecked(name == "desktop")
            box.clicked.connect(lambda _on: self._touch("channels"))  # clicked: the user's ticks, not ours
            self.channel_boxes[name] = box
            channel_row.addWidget(box)
        channel_row.addStretch(1)
        self.channel_hint = _muted_label()
        self.channel_hint.hide()

        self.cooldown = QLineEdit(DEFAULT_COOLDOWN[0])
        self.cooldown.setToolTip("After firing, the alert stays quiet this long, so a price hovering at a level "
                                 "or a burst of fills sends one message, not fifty.")
        self.cooldown.textEdited.connect(lambda _t: self._touch("cooldown"))
        self.cooldown_unit = QComboBox()
        self.cooldown_unit.addItems([name for name, _ in COOLDOWN_UNITS])
        self.cooldown_unit.setCurrentIndex(DEFAULT_COOLDOWN[1])
        self.cooldown_unit.activated.connect(lambda _i: self._touch("cooldown"))
        self.repeat = QCheckBox("Repeat")
        self.repeat.setToolTip("Fire again after each cooldown. Unticked, the alert fires once and switches itself off.")
        self.repeat.clicked.connect(lambda _on: self.revalidate())
        self.note = QLineEdit()
        self.note.setPlaceholderText("optional, included in the message")
        self.note.textEdited.connect(lambda _t: self.revalidate())

        self.errors: dict[str, QLabel] = {key: _error_label() for key in FIELDS}
        self.save_button = QPushButton("Create alert")
        self.save_button.setStyleSheet(f"QPushButton {{ background: {theme.ACCENT}; color: white; font-weight: bold; "
                                       "padding: 5px 12px; } QPushButton:disabled { background: #3a3f4b; color: #7f8796; }")
        self.save_button.clicked.connect(self.save)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Empty the form (Esc)")
        self.clear_button.clicked.connect(self.clear)
        self.message = QLabel("")
        self.message.setWordWrap(True)

        self.form = QFormLayout()
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.addRow("Condition", self._with_note(self.kind, self.kind_hint))
        self.rows: dict[str, QWidget] = {}
        self.rows["symbol"] = self._field(self.symbol, "symbol")
        self.form.addRow("Symbol", self.rows["symbol"])
        self.rows["price"] = self._field(self.price, "price")
        self.form.addRow("Price", self.rows["price"])
        self.rows["pct"] = self._field(self.pct, "pct", suffix="%")
        self.form.addRow("Move", self.rows["pct"])
        self.rows["multiple"] = self._field(self.multiple, "multiple", suffix="× the average")
        self.form.addRow("Volume", self.rows["multiple"])
        self.rows["window"] = self._field(self.window, "window", unit=self.window_unit)
        self.window_label = QLabel("Within")
        self.form.addRow(self.window_label, self.rows["window"])
        channels = QWidget()
        channels_column = QVBoxLayout(channels)
        channels_column.setContentsMargins(0, 0, 0, 0)
        channels_column.setSpacing(2)
        channels_column.addLayout(channel_row)
        channels_column.addWidget(self.channel_hint)
        channels_column.addWidget(self.errors["channels"])
        self.form.addRow("Send to", channels)
        cooldown = self._field(self.cooldown, "cooldown", unit=self.cooldown_unit, extra=self.repeat)
        self.form.addRow("Cooldown", cooldown)
        self.form.addRow("Note", self.note)

        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        column = QVBoxLayout(self)
        column.setContentsMargins(8, 6, 8, 6)
        column.addWidget(self.title)
        column.addLayout(self.form)
        column.addWidget(self.errors["plan"])  # the plan limit is about the whole alert: above Save
        column.addLayout(buttons)
        column.addWidget(self.message)
        column.addStretch(1)

        self.refresh_symbols()
        self._kind_changed()

    # -- building -----------------------------------------------------------------------------

    def _field(self, widget: QWidget, key: str, *, unit: QComboBox | None = None, suffix: str = "",
               extra: QWidget | None = None) -> QWidget:
        """The input, its unit or suffix, and its own error line right under it."""
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(widget, 1)
        if unit is not None:
            row.addWidget(unit)
        if suffix:
            row.addWidget(_muted_label(suffix))
        if extra is not None:
            row.addSpacing(8)
            row.addWidget(extra)
        column.addLayout(row)
        column.addWidget(self.errors[key])
        return box

    @staticmethod
    def _with_note(widget: QWidget, note: QLabel) -> QWidget:
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(widget)
        column.addWidget(note)
        return box

    # -- what the form holds -----------------------------------------------------------------

    @property
    def current_kind(self) -> AlertKind:
        return AlertKind(self.kind.currentData())

    def set_kind(self, kind: AlertKind) -> None:
        self.kind.setCurrentIndex(self.kind.findData(kind))

    def refresh_symbols(self) -> None:
        """The symbol list follows the watchlist; what the user typed stays."""
        try:
            wanted = list(self._symbols())
        except Exception:  # the list is a convenience: typing a symbol still works
            log.exception("could not list the symbols for the alerts form")
            return
        have = [self.symbol.itemText(i) for i in range(self.symbol.count())]
        if wanted == have:
            return
        text = self.symbol.currentText()
        self.symbol.blockSignals(True)
        self.symbol.clear()
        self.symbol.addItems(wanted)
        self.symbol.setEditText(text)
        self.symbol.blockSignals(False)

    def _symbol_text(self) -> str:
        typed = self.symbol.currentText().strip()
        for i in range(self.symbol.count()):  # "btc/usdt" means the listed BTC/USDT
            if self.symbol.itemText(i).lower() == typed.lower():
                return self.symbol.itemText(i)
        return typed

    @staticmethod
    def _seconds(text: str, unit: int) -> int:
        """Whole seconds from a number of units; -1 (out of every range) when it is not a number,
        so the engine's sentence for that field explains it."""
        value = parse_decimal(text)
        if value is None:
            return -1
        return int((value * unit).to_integral_value(rounding=ROUND_HALF_UP))

    def form_alert(self) -> Alert:
        """The alert exactly as typed: what Save would store (an edited alert keeps its id, state and history)."""
        kind = self.current_kind
        window_s = 0
        if kind in (AlertKind.PCT_CHANGE, AlertKind.VOLUME_SPIKE):
            window_s = self._seconds(self.window.text(), WINDOW_UNITS[self.window_unit.currentIndex()][1])
        fields: dict[str, Any] = {
            "kind": kind,
            "symbol": self._symbol_text(),
            "price": parse_decimal(self.price.text()) if kind.is_price else None,
            "pct": parse_decimal(self.pct.text()) if kind is AlertKind.PCT_CHANGE else None,
            "window_s": window_s,
            "multiple": parse_decimal(self.multiple.text()) if kind is AlertKind.VOLUME_SPIKE else None,
            "channels": tuple(name for name, box in self.channel_boxes.items() if box.isChecked()),
            "cooldown_s": self._seconds(self.cooldown.text(), COOLDOWN_UNITS[self.cooldown_unit.currentIndex()][1]),
            "repeat": self.repeat.isChecked(),
            "note": self.note.text().strip(),
        }
        if self.editing is not None:
            return replace(self.editing, **fields)
        return Alert(**fields)

    # -- checking as the user types ------------------------------------------------------------

    def _kind_changed(self) -> None:
        kind = self.current_kind
        self.form.setRowVisible(self.rows["price"], kind.is_price)
        self.form.setRowVisible(self.rows["pct"], kind is AlertKind.PCT_CHANGE)
        self.form.setRowVisible(self.rows["multiple"], kind is AlertKind.VOLUME_SPIKE)
        self.form.setRowVisible(self.rows["window"], kind in (AlertKind.PCT_CHANGE, AlertKind.VOLUME_SPIKE))
        self.window_label.setText("Within" if kind is AlertKind.PCT_CHANGE else "Average over")
        self.symbol.lineEdit().setPlaceholderText("choose or type a symbol" if kind.is_market else "any symbol")
        self.kind_hint.setText(KIND_HINTS[kind])
        self.revalidate()

    def _touch(self, key: str) -> None:
        self._touched.add(key)
        self.revalidate()

    def revalidate(self) -> dict[str, str]:
        """Ask the engine about the alert as typed; show each problem next to its field."""
        try:
            self.problems = self.engine.check(self.form_alert())
        except Exception as exc:  # a broken symbol list must not make the form unusable
            log.exception("checking the alert form failed")
            self.problems = {"plan": f"The alert could not be checked: {exc}"}
        if self._attempted:
            shown = dict(self.problems)
        else:
            # The plan limit is about the alert as a whole: it shows once the user starts on one.
            shown = {k: v for k, v in self.problems.items() if k in self._touched or (k == "plan" and self._touched)}
        self._show(shown)
        self._update_channel_hint()
        return self.problems

    def _show(self, problems: dict[str, str]) -> None:
        self.shown = dict(problems)
        placed = {k: v for k, v in problems.items() if k in self.errors and k != "plan"
                  and (k not in self.rows or not self.rows[k].isHidden())}
        # Anything without a visible field of its own (a future field, say) is said above Save.
        rest = [v for k, v in problems.items() if k not in placed]
        for key, label in self.errors.items():
            text = " ".join(rest) if key == "plan" else placed.get(key, "")
            label.setText(text)
            label.setVisible(bool(text))

    def _update_channel_hint(self) -> None:
        try:
            missing = {k: v for k, v in (self._channels_ready() if self._channels_ready else {}).items() if v}
        except Exception:
            log.exception("could not ask which notification channels are set up")
            missing = {}
        lines = []
        for name, box in self.channel_boxes.items():
            sentence = missing.get(name, "")
            box.setToolTip(f"{sentence} Messages wait in the outbox until then." if sentence else
                           f"Send this alert to {CHANNEL_LABELS.get(name, name)}.")
            if sentence and box.isChecked():
                lines.append(sentence)
        text = " ".join(lines) + (" Messages wait in the outbox until then." if lines else "")
        self.channel_hint.setText(text)
        self.channel_hint.setVisible(bool(text))

    # -- keys -------------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key.Key_Escape:
            self.clear()
            return
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            focus = self.focusWidget()
            if isinstance(focus, QPushButton) and focus is not self.save_button:
                focus.click()  # Enter on "Clear" means Clear
            else:
                self.save()
            return
        super().keyPressEvent(event)

    # -- filling --------------------------------------------------------------------------------

    def clear(self) -> None:
        """Esc: an empty form for a new alert. The condition and the symbol stay: the next alert is
        usually another level on the same market."""
        self.editing = None
        for field in (self.price, self.pct, self.multiple, self.note):
            field.clear()
        self.window.setText(DEFAULT_WINDOW[0])
        self.window_unit.setCurrentIndex(DEFAULT_WINDOW[1])
        self.cooldown.setText(DEFAULT_COOLDOWN[0])
        self.cooldown_unit.setCurrentIndex(DEFAULT_COOLDOWN[1])
        for name, box in self.channel_boxes.items():
            box.setChecked(name == "desktop")
        self.repeat.setChecked(False)
        self._touched.clear()
        self._attempted = False
        self.message.setText("")
        self._set_mode()
        self.revalidate()

    def prefill(self, symbol: str, price: Decimal | None, kind: AlertKind | None = None) -> None:
        """A new alert on `symbol` at `price` (watchlist "Alert at this price…", the chart's right-click)."""
        self.clear()
        if kind is None:
            kind = self.current_kind if self.current_kind.is_price or price is None else AlertKind.PRICE_ABOVE
        self.set_kind(kind)
        self.symbol.setEditText(symbol)
        if price is not None:
            self.price.setText(_number_text(Decimal(price)))
        self.revalidate()
        target = self.price if kind.is_price else {AlertKind.PCT_CHANGE: self.pct,
                                                   AlertKind.VOLUME_SPIKE: self.multiple}.get(kind, self.note)
        target.setFocus()
        target.selectAll()

    def load(self, alert: Alert) -> None:
        """Edit a stored alert: every field as it was saved."""
        self.clear()
        self.editing = alert
        self.set_kind(alert.kind)
        self.symbol.setEditText(alert.symbol)
        self.price.setText(_number_text(alert.price) if alert.price is not None else "")
        self.pct.setText(_number_text(alert.pct) if alert.pct is not None else "")
        self.multiple.setText(_number_text(alert.multiple) if alert.multiple is not None else "")
        if alert.window_s:
            hours = alert.window_s % 3600 == 0
            self.window_unit.setCurrentIndex(1 if hours else 0)
            self.window.setText(_number_text(Decimal(alert.window_s) / (3600 if hours else 60)))
        minutes = alert.cooldown_s > 0 and alert.cooldown_s % 60 == 0
        self.cooldown_unit.setCurrentIndex(1 if minutes else 0)
        self.cooldown.setText(str(alert.cooldown_s // 60 if minutes else alert.cooldown_s))
        for name, box in self.channel_boxes.items():
            box.setChecked(name in alert.channels)
        self.repeat.setChecked(alert.repeat)
        self.note.setText(alert.note)
        self._set_mode()
        self.revalidate()

    def _set_mode(self) -> None:
        if self.editing is None:
            self.title.setText("New alert")
            self.save_button.setText("Create alert")
            self.clear_button.setText("Clear")
        else:
            self.title.setText(f"Editing: {describe(self.editing)}")
            self.save_button.setText("Save changes")
            self.clear_button.setText("Cancel edit")

    def engine_changed(self) -> None:
        """Keep an edit in step with the engine: the alert may have fired, or been deleted elsewhere."""
        if self.editing is None:
            return
        current = next((a for a in self.engine.alerts if a.id == self.editing.id), None)
        if current is None:
            self.editing = None  # what is typed stays; Save now creates it anew
            self._set_mode()
            self._say("The alert you were editing was deleted; Save creates it as a new alert.", theme.WARN)
        else:
            # Its state and history come from the engine (a firing may have switched it off), never the form.
            self.editing = replace(self.editing, active=current.active, fired_count=current.fired_count,
                                   last_fired_at=current.last_fired_at)
        self.revalidate()

    # -- saving ---------------------------------------------------------------------------------

    def save(self) -> None:
        if self.saving:
            return
        problems = self.revalidate()
        if problems:
            self._attempted = True
            self.revalidate()
            self._say("Not saved: fix what is marked in red.", theme.DOWN)
            return
        self.saving = True
        self.save_button.setEnabled(False)
        self._spawn(self._save(self.form_alert()))

    async def _save(self, alert: Alert) -> None:
        editing = self.editing is not None
        try:
            saved = await (self.engine.update(alert) if editing else self.engine.add(alert))
        except AlertInvalid as exc:  # the engine saw something the form did not (the plan filled up meanwhile)
            if shiboken6.isValid(self.message):
                self._attempted = True
                self._show(exc.problems)
                self._say("Not saved: fix what is marked in red.", theme.DOWN)
            return
        except KeyError:
            if shiboken6.isValid(self.message):
                self.editing = None
                self._set_mode()
                self._say("The alert you were editing was deleted meanwhile; Save again creates it as a new alert.",
                          theme.WARN)
            return
        except Exception as exc:  # a disk error: the sentence, and everything typed stays
            log.exception("saving an alert failed")
            if shiboken6.isValid(self.message):
                self._say(f"The alert could not be saved: {exc}", theme.DOWN)
            return
        finally:
            self.saving = False
            if shiboken6.isValid(self.save_button):
                self.save_button.setEnabled(True)
        if not shiboken6.isValid(self.message):
            return
        self.clear()
        self.symbol.setEditText(saved.symbol)  # "eth/usdt" was saved as the listed ETH/USDT: show that
        self._say(f"{'Saved' if editing else 'Created'}: {describe(saved)}.", theme.UP)
        self.saved.emit(saved)

    def _say(self, text: str, colour: str = theme.TEXT) -> None:
        self.message.setStyleSheet(f"color: {colour};")
        self.message.setText(text)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class AlertsPanel(QWidget):
    """The Alerts dock: the table of alerts with on/off, edit and delete, and the form beside it."""

    def __init__(self, engine: AlertEngine, symbols: Callable[[], list[str]],
                 channels_ready: Callable[[], dict[str, str]] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.confirm_dialog: QMessageBox | None = None
        self.context_menu: QMenu | None = None

        self.model = AlertsModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(lambda _i: self.edit_selected())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())

        self.toggle_button = QPushButton("Switch off")
        self.toggle_button.clicked.connect(self.toggle_selected)
        self.edit_button = QPushButton("Edit")
        self.edit_button.clicked.connect(self.edit_selected)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete_selected)
        self.count_label = _muted_label()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        actions = QHBoxLayout()
        actions.addWidget(self.toggle_button)
        actions.addWidget(self.edit_button)
        actions.addWidget(self.delete_button)
        actions.addSpacing(8)
        actions.addWidget(self.message, 1)
        actions.addWidget(self.count_label)
        left = QWidget()
        left_column = QVBoxLayout(left)
        left_column.setContentsMargins(4, 4, 4, 4)
        left_column.addLayout(actions)
        left_column.addWidget(self.table, 1)

        self.form = AlertForm(engine, symbols, channels_ready)
        self.form.saved.connect(self._saved)
        scroll = QScrollArea()  # a short bottom dock still reaches every field
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setMinimumWidth(360)
        scroll.setMaximumWidth(560)  # a form wider than this only spreads its fields apart
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(scroll)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([900, 400])  # the table first: its columns need the width
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.splitter)

        # Bus handlers run on the loop's dispatch: they only repaint from engine.alerts, no awaits.
        self._subscriptions = [engine.bus.subscribe(TOPIC_ALERTS_CHANGED, self._on_bus),
                               engine.bus.subscribe(TOPIC_ALERT_FIRED, self._on_bus)]
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        self.refresh()

    # -- the table --------------------------------------------------------------------------------

    def _on_bus(self, _event: object) -> None:
        if not self._closed and shiboken6.isValid(self.model):
            self.refresh()

    def refresh(self) -> None:
        """Rows from the engine. Unchanged rows do not reset the model, so selection and scroll stay."""
        rows = self.engine.alerts
        if rows != self.model.rows:
            keep = self.selected_ids()
            self.model.set_rows(rows)
            self._select_ids(keep)
            self.form.engine_changed()
        active = sum(1 for a in rows if a.active)
        self.count_label.setText(f"{active} active of {len(rows)}" if rows else "No alerts yet")
        self._update_buttons()

    def tick(self) -> None:
        """Every second: catch firings, age the 'last fired' text, follow the watchlist and channel setup."""
        if self._closed:
            return
        self.refresh()
        self.model.tick()
        self.form.refresh_symbols()
        self.form._update_channel_hint()

    def selected_ids(self) -> list[int]:
        return [self.proxy.data(i, ALERT_ID_ROLE) for i in self.table.selectionModel().selectedRows()]

    def selected(self) -> Alert | None:
        ids = self.selected_ids()
        return next((a for a in self.engine.alerts if ids and a.id == ids[0]), None)

    def _select_ids(self, ids: list[int]) -> None:
        for row in range(self.proxy.rowCount()):
            if self.proxy.data(self.proxy.index(row, 0), ALERT_ID_ROLE) in ids:
                self.table.selectRow(row)
                return

    def select_alert(self, alert_id: int) -> None:
        self._select_ids([alert_id])

    def _update_buttons(self) -> None:
        alert = self.selected()
        for button in (self.toggle_button, self.edit_button, self.delete_button):
            button.setEnabled(alert is not None)
        self.toggle_button.setText("Switch on" if alert is not None and not alert.active else "Switch off")

    def _context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        alert = self.selected()
        if alert is None:
            return
        menu = QMenu(self)
        menu.addAction("Switch on" if not alert.active else "Switch off", self.toggle_selected)
        menu.addAction("Edit", self.edit_selected)
        menu.addSeparator()
        menu.addAction("Delete…", self.delete_selected)
        self.context_menu = menu
        menu.popup(self.table.viewport().mapToGlobal(pos))  # popup, not exec: no nested event loop

    def _saved(self, alert: Alert) -> None:
        self.refresh()
        self.select_alert(alert.id)

    # -- actions ----------------------------------------------------------------------------------

    def toggle_selected(self) -> asyncio.Task[Any] | None:
        alert = self.selected()
        if alert is None:
            return None
        return self._spawn(self._set_active(alert, not alert.active))

    async def _set_active(self, alert: Alert, active: bool) -> None:
        try:
            await self.engine.set_active(alert.id, active)
        except AlertInvalid as exc:  # switching on past the Free plan's limit, or a symbol gone from the watchlist
            self._say(" ".join(exc.problems.values()), theme.DOWN)
            return
        except KeyError:
            self._say("That alert was deleted meanwhile.", theme.WARN)
        except Exception as exc:
            log.exception("switching alert %s failed", alert.id)
            self._say(f"The alert could not be switched {'on' if active else 'off'}: {exc}", theme.DOWN)
            return
        else:
            self._say(f"{'Switched on' if active else 'Switched off'}: {describe(alert)}.", theme.MUTED)
        if not self._closed:
            self.refresh()

    def edit_selected(self) -> None:
        alert = self.selected()
        if alert is not None:
            self.form.load(alert)
            self.form.price.setFocus()

    def delete_selected(self) -> asyncio.Task[Any] | None:
        alert = self.selected()
        if alert is None:
            return None
        return self._spawn(self._delete(alert))

    async def _delete(self, alert: Alert) -> None:
        box = QMessageBox(QMessageBox.Icon.Question, "Delete this alert?",
                          f"Delete the alert “{describe(alert)}”?\n\nIt stops watching at once; this cannot be undone. "
                          "To pause it instead, switch it off.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        box.finished.connect(lambda result: answer.done() or answer.set_result(result))
        self.confirm_dialog = box
        box.open()  # window-modal without a nested event loop
        if await answer != QMessageBox.StandardButton.Yes:
            self._say("Not deleted.", theme.MUTED)
            return
        try:
            await self.engine.delete(alert.id)
        except Exception as exc:
            log.exception("deleting alert %s failed", alert.id)
            self._say(f"The alert could not be deleted: {exc}", theme.DOWN)
            return
        self._say(f"Deleted: {describe(alert)}.", theme.MUTED)
        if not self._closed:
            self.refresh()

    # -- called by the main window ------------------------------------------------------------------

    def prefill(self, symbol: str, price: Decimal | None, kind: AlertKind | None = None) -> None:
        """Start a new alert on `symbol` at `price`; the user picks channels and presses Enter."""
        self.form.prefill(symbol, price, kind)

    def create(self, symbol: str, price: Decimal, kind: AlertKind) -> asyncio.Task[Any]:
        """Create a price alert at once (the chart's "Alert when price crosses …"): desktop, 5 minute
        cooldown, once. If the engine refuses it, the form is filled in with the refusal next to its field."""
        alert = Alert(kind, symbol, price=price, channels=("desktop",))
        return self._spawn(self._create(alert))

    async def _create(self, alert: Alert) -> None:
        try:
            saved = await self.engine.add(alert)
        except AlertInvalid as exc:
            if not self._closed:
                self.form.prefill(alert.symbol, alert.price, alert.kind)
                self.form._attempted = True
                self.form._show(exc.problems)
                self.form._say("Not created: fix what is marked in red, then press Enter.", theme.DOWN)
            return
        except Exception as exc:
            log.exception("creating an alert failed")
            self._say(f"The alert could not be created: {exc}", theme.DOWN)
            return
        if not self._closed:
            self._say(f"Created: {describe(saved)}.", theme.UP)
            self._saved(saved)

    def _say(self, text: str, colour: str = theme.TEXT) -> None:
        if self._closed or not shiboken6.isValid(self.message):
            return
        self.message.setStyleSheet(f"color: {colour};")
        self.message.setText(text)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def shutdown(self) -> None:
        """Stop the timer, leave the bus and drop what is in flight: the widgets are about to go."""
        self._closed = True
        self.timer.stop()
        for sub in self._subscriptions:
            sub.cancel()
        self._subscriptions.clear()
        if self.confirm_dialog is not None and shiboken6.isValid(self.confirm_dialog):
            self.confirm_dialog.close()
        for task in list(self._tasks):
            task.cancel()
        self.form.shutdown()

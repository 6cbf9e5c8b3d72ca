"""Price alerts on the chart: amber dashed lines the user drags, and "alert here" on right-click.

Decisions:
* Only ACTIVE price alerts (crosses above / below) of the charted symbol are drawn: a switched-off
  or fired once-only alert no longer watches the market, so a line for it would be a false promise.
* A drag is saved when it ends (`sigPositionChangeFinished`), rounded to the chart's price
  decimals, through `engine.move`. If the engine refuses (a level at or below zero, a symbol gone
  from the watchlist), the line snaps back to the stored price and `message` says why.
* The chart (ui/chart.py) has no symbol-changed signal and is not ours to edit: a 4 Hz timer
  notices a new `chart.symbol`. The main window may call `refresh()` right after `set_symbol`
  so the lines change in the same frame.
* The chart turned pyqtgraph's own ViewBox menu off; right-clicks are read from the scene's
  `sigMouseClicked` and answered with our menu via `popup()` (never `exec()`: no nested loop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import QObject, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import QMenu

from app.alerts import TOPIC_ALERTS_CHANGED, Alert, AlertEngine, AlertInvalid, AlertKind, describe
from ui import theme
from ui.chart import ChartWidget

__all__ = ["ChartAlerts", "line_label"]

log = logging.getLogger(__name__)

NEAR_LINE_PX = 6  # a right-click this close to an alert line also offers to switch that alert off
_CONTEXT = Context(prec=60)  # room for any price at any number of decimals when rounding
_LABEL_FILL = QColor(theme.BACKGROUND)
_LABEL_FILL.setAlpha(200)


def _plain(price: Decimal) -> str:
    """70000 -> '70,000'; 0.51230 -> '0.5123': the level as the user set it, with thousands separators."""
    text = f"{price:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def line_label(kind: AlertKind, price: Decimal) -> str:
    return f"alert {'≥' if kind is AlertKind.PRICE_ABOVE else '≤'} {_plain(price)}"


class ChartAlerts(QObject):
    """Draws the charted symbol's active price alerts on `chart.price_plot` and lets the user drag them."""

    # A right-click's "Alert when price crosses above/below <price>": the main window creates it at once.
    alertRequested = Signal(str, object, object)  # (symbol, Decimal price, AlertKind)
    # The right-click's "New alert at <price>…": the main window opens the alerts form prefilled.
    formRequested = Signal(str, object, object)  # (symbol, Decimal price, AlertKind)
    message = Signal(str)  # a sentence for the status bar: why a dragged alert did not move

    def __init__(self, chart: ChartWidget, engine: AlertEngine, parent: QObject | None = None) -> None:
        super().__init__(parent if parent is not None else chart)
        self.chart = chart
        self.engine = engine
        self.lines: dict[int, pg.InfiniteLine] = {}
        self.last_message = ""
        self.menu: QMenu | None = None
        self._alerts: dict[int, Alert] = {}  # what each line shows, as of the last refresh
        self._shown_symbol: str | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscription = engine.bus.subscribe(TOPIC_ALERTS_CHANGED, self._on_changed)
        chart.graphics.scene().sigMouseClicked.connect(self._on_click)
        chart.price_plot.getViewBox().sigYRangeChanged.connect(lambda *_: self._place_labels())
        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(self._follow_symbol)
        self.timer.start()
        self.refresh()

    # -- the lines --------------------------------------------------------------------------------

    def _alive(self) -> bool:
        return not self._closed and shiboken6.isValid(self.chart) and shiboken6.isValid(self.chart.price_plot)

    def _on_changed(self, _event: object) -> None:
        if self._alive():
            self.refresh()

    def _follow_symbol(self) -> None:
        if self._alive() and self.chart.symbol != self._shown_symbol:
            self.refresh()

    def refresh(self) -> None:
        """One line per active price alert of the charted symbol, at its stored level."""
        if not self._alive():
            return
        symbol = self.chart.symbol
        self._shown_symbol = symbol
        wanted = {a.id: a for a in self.engine.alerts
                  if a.active and a.kind.is_price and a.price is not None and symbol and a.symbol == symbol}
        for alert_id in [i for i in self.lines if i not in wanted]:
            self.chart.price_plot.removeItem(self.lines.pop(alert_id))
            self._alerts.pop(alert_id, None)
        for alert_id, alert in wanted.items():
            line = self.lines.get(alert_id)
            if line is None:
                line = self._new_line(alert)
            elif line.moving:
                continue  # the user is dragging it: the engine's copy must not yank it back mid-drag
            self._alerts[alert_id] = alert
            line.setPos(float(alert.price))  # type: ignore[arg-type]
            self._set_label(line, alert.kind, alert.price)  # type: ignore[arg-type]
            line.setToolTip(f"{describe(alert)}. Drag to move the level.")
        self._place_labels()

    def _place_labels(self) -> None:
        """A level outside the visible prices keeps its line off screen; its label would be drawn clipped
        at the pane's edge, so it hides until the level is back in view."""
        if not self._alive():
            return
        y0, y1 = self.chart.price_plot.getViewBox().viewRange()[1]
        for line in self.lines.values():
            if line.label is not None:
                line.label.setVisible(y0 <= line.value() <= y1)

    def _new_line(self, alert: Alert) -> pg.InfiniteLine:
        line = pg.InfiniteLine(
            pos=float(alert.price),  # type: ignore[arg-type]
            angle=0, movable=True,
            pen=pg.mkPen(theme.WARN, width=1, style=Qt.PenStyle.DashLine),
            hoverPen=pg.mkPen(theme.WARN, width=2),
            label=line_label(alert.kind, alert.price),  # type: ignore[arg-type]
            # Right of centre, clear of the order lines' labels (left) and the last-price tag (right edge).
            # A translucent backing keeps the text readable where it crosses candles.
            labelOpts={"position": 0.82, "color": theme.WARN, "anchors": [(1, 1), (1, 1)], "fill": _LABEL_FILL},
        )
        line.setCursor(Qt.CursorShape.SizeVerCursor)
        line.setZValue(5)  # above the candles, so it can be grabbed where they overlap
        line.sigDragged.connect(lambda ln, i=alert.id: self._dragging(i, ln))
        line.sigPositionChangeFinished.connect(lambda ln, i=alert.id: self._drag_finished(i, ln))
        self.lines[alert.id] = line
        self.chart.price_plot.addItem(line, ignoreBounds=True)  # a far level must not squash the candles
        return line

    @staticmethod
    def _set_label(line: pg.InfiniteLine, kind: AlertKind, price: Decimal) -> None:
        if line.label is not None:
            line.label.setFormat(line_label(kind, price))

    def round_price(self, value: float) -> Decimal:
        """A chart coordinate as a price at the chart's decimals (the market's tick precision)."""
        decimals = max(0, int(getattr(self.chart, "price_decimals", 2)))
        try:
            return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP, _CONTEXT)
        except (InvalidOperation, ValueError):
            return Decimal(0)

    # -- dragging -----------------------------------------------------------------------------------

    def _dragging(self, alert_id: int, line: pg.InfiniteLine) -> None:
        alert = self._alerts.get(alert_id)
        if alert is not None:
            self._set_label(line, alert.kind, self.round_price(line.value()))  # the level it will get, live

    def _drag_finished(self, alert_id: int, line: pg.InfiniteLine) -> None:
        alert = next((a for a in self.engine.alerts if a.id == alert_id), None)
        if alert is None or alert.price is None:
            self.refresh()  # deleted while dragged: the refresh removes its line
            return
        price = self.round_price(line.value())
        if price == alert.price:
            line.setPos(float(alert.price))
            self._set_label(line, alert.kind, alert.price)
            return
        line.setPos(float(price))  # on the tick while the engine stores it
        self._spawn(self._move(alert, price))

    async def _move(self, alert: Alert, price: Decimal) -> None:
        try:
            await self.engine.move(alert.id, price)
        except AlertInvalid as exc:
            self._snap_back(alert, "The alert was not moved: " + " ".join(exc.problems.values()))
            return
        except KeyError:
            self._say("The alert was deleted while it was being moved.")
        except Exception as exc:  # a disk error: the stored level still holds, so the line shows it
            log.exception("moving alert %s failed", alert.id)
            self._snap_back(alert, f"The alert was not moved: {exc}")
            return
        else:
            self._say("")
        self.refresh()

    def _snap_back(self, alert: Alert, sentence: str) -> None:
        if not self._alive():
            return
        line = self.lines.get(alert.id)
        if line is not None and alert.price is not None:
            line.setPos(float(alert.price))
            self._set_label(line, alert.kind, alert.price)
        self._say(sentence)

    def _say(self, sentence: str) -> None:
        self.last_message = sentence
        if self._alive():
            self.message.emit(sentence)

    # -- right-click --------------------------------------------------------------------------------

    def last_price(self) -> Decimal | None:
        series = self.chart.series
        row = series.last() if series is not None and len(series) else None
        return self.round_price(row[4]) if row is not None else None

    def _on_click(self, event: Any) -> None:  # pyqtgraph's MouseClickEvent
        if event.button() != Qt.MouseButton.RightButton or event.isAccepted() or not self._alive():
            return  # accepted: a line used the right-click to cancel its drag
        pos = event.scenePos()
        if not self.chart.symbol or not self.chart.price_plot.sceneBoundingRect().contains(pos):
            return
        event.accept()
        self.menu = self.menu_at(pos)
        self.menu.popup(event.screenPos().toPoint())  # popup, not exec(): no nested event loop

    def menu_at(self, scene_pos: QPointF) -> QMenu:
        """The right-click menu for a point of the price pane (public so tests and shortcuts can build it)."""
        vb = self.chart.price_plot.getViewBox()
        price = self.round_price(vb.mapSceneToView(scene_pos).y())
        symbol = self.chart.symbol
        last = self.last_price()
        menu = QMenu(self.chart)
        if last is None:  # no price yet to compare with: offer both directions
            kinds = [AlertKind.PRICE_ABOVE, AlertKind.PRICE_BELOW]
        else:
            kinds = [AlertKind.PRICE_ABOVE if price >= last else AlertKind.PRICE_BELOW]
        for kind in kinds:
            direction = "above" if kind is AlertKind.PRICE_ABOVE else "below"
            action = QAction(f"Alert when price crosses {direction} {_plain(price)}", menu)
            action.triggered.connect(lambda _c=False, k=kind: self.alertRequested.emit(symbol, price, k))
            menu.addAction(action)
        more = QAction(f"New alert at {_plain(price)}…", menu)
        more.triggered.connect(lambda _c=False, k=kinds[0]: self.formRequested.emit(symbol, price, k))
        menu.addAction(more)
        near = self._line_near(scene_pos)
        if near is not None:
            menu.addSeparator()
            off = QAction(f"Switch off {line_label(near.kind, near.price)}", menu)  # type: ignore[arg-type]
            off.triggered.connect(lambda _c=False, a=near: self._spawn(self._switch_off(a)))
            menu.addAction(off)
        return menu

    def _line_near(self, scene_pos: QPointF) -> Alert | None:
        vb = self.chart.price_plot.getViewBox()
        for alert_id, line in self.lines.items():
            y = vb.mapViewToScene(QPointF(0, line.value())).y()
            if abs(y - scene_pos.y()) <= NEAR_LINE_PX and alert_id in self._alerts:
                return self._alerts[alert_id]
        return None

    async def _switch_off(self, alert: Alert) -> None:
        try:
            await self.engine.set_active(alert.id, False)
        except (AlertInvalid, KeyError) as exc:
            self._say(f"The alert was not switched off: {exc}")
            return
        self.refresh()

    # -- life ---------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def shutdown(self) -> None:
        """Leave the bus and stop following the chart; call before the chart is deleted."""
        self._closed = True
        self._subscription.cancel()
        if shiboken6.isValid(self.timer):  # gone already if the chart (our parent) was deleted first
            self.timer.stop()
        for task in list(self._tasks):
            task.cancel()
        if shiboken6.isValid(self.chart):
            try:
                self.chart.graphics.scene().sigMouseClicked.disconnect(self._on_click)
            except (RuntimeError, TypeError):
                pass

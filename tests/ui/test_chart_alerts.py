"""Alert lines on a real ChartWidget: drawn per symbol, dragged to move, and created from a right-click."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest
import shiboken6
from PySide6.QtCore import QPointF, Qt

from app.alerts import Alert, AlertEngine, AlertKind
from app.bus import EventBus
from app.market.candles import CandleArrays, CandleSeries
from tests.ui.conftest import run
from ui.alerts_view import AlertsPanel
from ui.chart import ChartWidget
from ui.chart_alerts import ChartAlerts, line_label

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
BASE = {"BTC/USDT": 70_000.0, "ETH/USDT": 3_500.0}
BARS = 200


def series_for(symbol: str) -> CandleSeries:
    """A gentle wave around the symbol's level: a known last price, and room above and below it."""
    base = BASE[symbol]
    i = np.arange(BARS)
    close = base * (1 + 0.02 * np.sin(i / 9))
    open_ = np.roll(close, 1)
    open_[0] = close[0]
    ts = 1_800_000_000_000 - (BARS - i) * 60_000
    rows = [(int(t), o, max(o, c) * 1.001, min(o, c) * 0.999, c, 5.0) for t, o, c in zip(ts, open_, close, strict=True)]
    s = CandleSeries("1m", BARS + 10)
    s.load_arrays(CandleArrays.from_rows(rows))
    return s


async def load(symbol: str, _timeframe: str) -> CandleSeries:
    return series_for(symbol)


@pytest.fixture
def engine(qtbot, qloop) -> Iterator[AlertEngine]:
    bus = EventBus()
    run(qtbot, bus.start())
    eng = AlertEngine(bus, known_symbols=lambda: set(SYMBOLS))
    run(qtbot, eng.start())
    yield eng
    run(qtbot, eng.stop())
    run(qtbot, bus.stop())


@pytest.fixture
def chart(qtbot, qloop) -> Iterator[ChartWidget]:
    c = ChartWidget(load, refresh_hz=30)
    qtbot.addWidget(c)
    c.resize(1000, 600)
    c.show()
    qtbot.waitExposed(c)
    c.set_symbol("BTC/USDT", 2)
    qtbot.waitUntil(lambda: c.series is not None and c.live_updates > 0)
    yield c
    if shiboken6.isValid(c):  # pytest-qt may have deleted it already
        c.shutdown()


@pytest.fixture
def alerts(chart: ChartWidget, engine: AlertEngine) -> Iterator[ChartAlerts]:
    a = ChartAlerts(chart, engine)
    yield a
    a.shutdown()


def add(qtbot, engine: AlertEngine, **kw) -> Alert:  # noqa: ANN003
    return run(qtbot, engine.add(Alert(**kw)))


def test_a_line_at_each_active_price_alert_of_the_charted_symbol_only(chart, engine, alerts, qtbot) -> None:
    above = add(qtbot, engine, kind=AlertKind.PRICE_ABOVE, symbol="BTC/USDT", price=Decimal("70500"))
    below = add(qtbot, engine, kind=AlertKind.PRICE_BELOW, symbol="BTC/USDT", price=Decimal("68000.25"))
    add(qtbot, engine, kind=AlertKind.PRICE_ABOVE, symbol="BTC/USDT", price=Decimal("69000"), active=False)
    add(qtbot, engine, kind=AlertKind.PCT_CHANGE, symbol="BTC/USDT", pct=Decimal("2"), window_s=3600)
    eth = add(qtbot, engine, kind=AlertKind.PRICE_ABOVE, symbol="ETH/USDT", price=Decimal("3600"))
    qtbot.waitUntil(lambda: set(alerts.lines) == {above.id, below.id})  # via alerts.changed
    assert alerts.lines[above.id].value() == 70500.0
    assert alerts.lines[above.id].label.toPlainText() == "alert ≥ 70,500"
    assert alerts.lines[below.id].label.toPlainText() == "alert ≤ 68,000.25"
    assert alerts.lines[above.id].movable and alerts.lines[above.id] in chart.price_plot.items
    assert alerts.lines[above.id].pen.style() == Qt.PenStyle.DashLine
    chart.set_symbol("ETH/USDT", 2)
    qtbot.waitUntil(lambda: set(alerts.lines) == {eth.id})  # noticed without being told
    assert alerts.lines[eth.id].value() == 3600.0
    assert not any(line in chart.price_plot.items for i, line in alerts.lines.items() if i != eth.id)
    run(qtbot, engine.set_active(eth.id, False))
    qtbot.waitUntil(lambda: alerts.lines == {})


def test_dragging_a_line_moves_the_alert_rounded_and_an_invalid_level_snaps_back(chart, engine, alerts, qtbot) -> None:
    alert = add(qtbot, engine, kind=AlertKind.PRICE_ABOVE, symbol="BTC/USDT", price=Decimal("70500"),
                channels=("desktop", "discord"), note="keep")
    qtbot.waitUntil(lambda: alert.id in alerts.lines)
    line = alerts.lines[alert.id]
    line.setValue(70612.3456)  # where the mouse let go
    line.sigPositionChangeFinished.emit(line)
    qtbot.waitUntil(lambda: engine.alerts[0].price == Decimal("70612.35"))
    moved = engine.alerts[0]
    assert isinstance(moved.price, Decimal) and moved.price.as_tuple().exponent == -2  # the chart's 2 decimals
    assert (moved.channels, moved.note, moved.id) == (("desktop", "discord"), "keep", alert.id)
    qtbot.waitUntil(lambda: line.label.toPlainText() == "alert ≥ 70,612.35" and line.value() == 70612.35)

    line.setValue(-5.0)  # dragged below zero: the engine refuses
    line.sigPositionChangeFinished.emit(line)
    qtbot.waitUntil(lambda: line.value() == 70612.35)
    assert engine.alerts[0].price == Decimal("70612.35")
    assert alerts.last_message.startswith("The alert was not moved: Enter the price level as a number above zero")
    assert line.label.toPlainText() == "alert ≥ 70,612.35"


def view_point(chart: ChartWidget, price: float):  # noqa: ANN201
    """The viewport pixel of `price` in the middle of the visible candles."""
    vb = chart.price_plot.getViewBox()
    (x0, x1), _ = vb.viewRange()
    return chart.graphics.mapFromScene(vb.mapViewToScene(QPointF((x0 + x1) / 2, price)))


def test_right_click_offers_an_alert_on_the_side_of_the_last_price(chart, engine, alerts, qtbot) -> None:
    last = alerts.last_price()
    assert last is not None
    (_, _), (y0, y1) = chart.price_plot.getViewBox().viewRange()
    high = (float(last) + y1) / 2
    qtbot.mouseClick(chart.graphics.viewport(), Qt.MouseButton.RightButton, pos=view_point(chart, high))
    qtbot.waitUntil(lambda: alerts.menu is not None and alerts.menu.isVisible())
    first = alerts.menu.actions()[0]
    assert first.text().startswith("Alert when price crosses above ")
    with qtbot.waitSignal(alerts.alertRequested) as got:
        first.trigger()
    symbol, price, kind = got.args
    assert (symbol, kind) == ("BTC/USDT", AlertKind.PRICE_ABOVE)
    assert isinstance(price, Decimal) and price.as_tuple().exponent == -2 and price > last
    assert abs(float(price) - high) < (y1 - y0) / 50  # where the user clicked, to within a few pixels
    assert Decimal(first.text().rsplit(" ", 1)[1].replace(",", "")) == price
    alerts.menu.close()

    low = (float(last) + y0) / 2
    qtbot.mouseClick(chart.graphics.viewport(), Qt.MouseButton.RightButton, pos=view_point(chart, low))
    qtbot.waitUntil(lambda: alerts.menu.isVisible() and "below" in alerts.menu.actions()[0].text())
    with qtbot.waitSignal(alerts.formRequested) as got:
        alerts.menu.actions()[1].trigger()  # "New alert at …": finish it in the alerts form
    assert got.args[2] is AlertKind.PRICE_BELOW and got.args[1] < last
    alerts.menu.close()


def test_the_right_click_alert_is_created_through_the_panel_and_drawn(chart, engine, alerts, qtbot) -> None:
    panel = AlertsPanel(engine, lambda: list(SYMBOLS))
    qtbot.addWidget(panel)
    alerts.alertRequested.connect(panel.create)  # what the main window wires
    alerts.formRequested.connect(panel.prefill)
    last = alerts.last_price()
    (_, _), (_, y1) = chart.price_plot.getViewBox().viewRange()
    menu = alerts.menu_at(chart.price_plot.getViewBox().mapViewToScene(QPointF(0, (float(last) + y1) / 2)))
    menu.actions()[0].trigger()
    qtbot.waitUntil(lambda: len(engine.alerts) == 1 and len(alerts.lines) == 1)
    (alert,) = engine.alerts
    assert alert.kind is AlertKind.PRICE_ABOVE and alert.symbol == "BTC/USDT" and alert.channels == ("desktop",)
    (line,) = alerts.lines.values()
    assert line.value() == float(alert.price)
    # Right-clicking on the line itself also offers to switch that alert off.
    menu = alerts.menu_at(chart.price_plot.getViewBox().mapViewToScene(QPointF(0, float(alert.price))))
    assert menu.actions()[-1].text() == f"Switch off {line_label(AlertKind.PRICE_ABOVE, alert.price)}"
    menu.actions()[-1].trigger()
    qtbot.waitUntil(lambda: not engine.alerts[0].active and alerts.lines == {})
    menu.actions()[1].trigger()
    assert Decimal(panel.form.price.text()) == alert.price and panel.form.symbol.currentText() == "BTC/USDT"
    panel.shutdown()

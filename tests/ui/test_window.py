"""The main window as a user meets it: watchlist, chart, timeframes, crosshair, saved layout."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from PySide6.QtCore import QPoint, Qt

from app.domain import TIMEFRAMES
from tests.ui.conftest import FAST, run
from ui.main_window import MainWindow
from ui.watchlist import COLUMNS, SYMBOL_ROLE

LAST = COLUMNS.index("Last")
CHANGE = COLUMNS.index("24h %")


def cell(window: MainWindow, row: int, col: int) -> str:
    proxy = window.watchlist.proxy
    return proxy.data(proxy.index(row, col))


def test_watchlist_fills_with_every_symbol_and_live_prices(open_window, qtbot) -> None:
    window = open_window()
    symbols = list(FAST.watchlist.symbols)
    proxy = window.watchlist.proxy
    assert [proxy.data(proxy.index(r, 0), SYMBOL_ROLE) for r in range(proxy.rowCount())] == symbols
    for row in range(len(symbols)):
        assert cell(window, row, LAST) not in ("", "—")
        assert cell(window, row, CHANGE).endswith("%")
    # Live: the BTC row's last price text changes as the market ticks.
    first = cell(window, 0, LAST)
    state = window.runtime.state
    seq = state.seq["BTC/USDT"]
    qtbot.waitUntil(lambda: state.seq["BTC/USDT"] > seq + 3 and cell(window, 0, LAST) != first, timeout=10_000)
    shown = Decimal(cell(window, 0, LAST).replace(",", ""))
    assert shown == state.tickers["BTC/USDT"].last or state.seq["BTC/USDT"] > seq  # shown value tracks the state


def test_change_percent_is_coloured_by_sign(open_window) -> None:
    window = open_window()
    proxy = window.watchlist.proxy
    for row in range(proxy.rowCount()):
        text = cell(window, row, CHANGE)
        colour = proxy.data(proxy.index(row, CHANGE), Qt.ItemDataRole.ForegroundRole)
        expected = "#26a69a" if not text.startswith("-") else "#ef5350"
        assert colour.name() == expected, text


def test_clicking_a_row_charts_that_symbol(open_window, qtbot) -> None:
    window = open_window()
    qtbot.waitUntil(lambda: window.chart.series is not None, timeout=10_000)
    assert window.chart.symbol == "BTC/USDT"
    row = window.watchlist.row_of("ETH/USDT")
    rect = window.watchlist.visualRect(window.watchlist.proxy.index(row, 0))
    qtbot.mouseClick(window.watchlist.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.chart.series is not None and window.chart.symbol == "ETH/USDT", timeout=10_000)
    assert "ETH/USDT" in window.chart.title.text()
    eth_close = window.runtime.state.tickers["ETH/USDT"].last
    # The chart now shows ETH prices (thousands), not BTC's (tens of thousands).
    qtbot.waitUntil(lambda: window.chart.live_updates > 0)
    assert abs(window.chart.last_line.value() - float(eth_close)) / float(eth_close) < 0.05


def test_timeframe_switch_redraws_with_aggregated_candles(open_window, qtbot) -> None:
    window = open_window()
    chart = window.chart
    qtbot.waitUntil(lambda: chart.series is not None, timeout=10_000)
    minute_bars = len(chart.series)
    qtbot.mouseClick(chart.tf_buttons["1h"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: chart.series is not None and chart.series.timeframe == "1h", timeout=10_000)
    qtbot.waitUntil(lambda: chart._history_version == chart.series.history_version)
    hour_bars = len(chart.series)
    assert minute_bars / 61 <= hour_bars <= minute_bars / 59 + 2
    assert chart.tf_buttons["1h"].isChecked() and not chart.tf_buttons["1m"].isChecked()
    # Every drawn hourly candle is one hour apart, and the bodies drawn equal the closed candles.
    drawn = len(chart.candles._rects[0]) + len(chart.candles._rects[1])
    assert drawn == hour_bars - 1
    assert np.all(np.diff(chart._x) % TIMEFRAMES["1h"] == 0)


def test_live_candle_and_last_price_line_follow_ticks(open_window, qtbot) -> None:
    window = open_window()
    chart = window.chart
    qtbot.waitUntil(lambda: chart.series is not None, timeout=10_000)
    updates = chart.live_updates
    qtbot.waitUntil(lambda: chart.live_updates > updates + 3, timeout=10_000)
    qtbot.wait(100)
    close = chart.series.last()[4]
    qtbot.waitUntil(lambda: abs(chart.last_line.value() - chart.series.last()[4]) < 1e-9, timeout=2_000)
    assert chart.last_label.toPlainText().replace(",", "") == f"{chart.last_line.value():.2f}"
    assert close > 0


def test_crosshair_reads_out_the_candle_under_the_mouse(open_window, qtbot) -> None:
    window = open_window()
    chart = window.chart
    qtbot.waitUntil(lambda: chart.series is not None and len(chart._x) > 0, timeout=10_000)
    vb = chart.price_plot.getViewBox()
    # Aim at a closed candle in the middle of the view and read what the crosshair says.
    target = len(chart._x) - 40
    from PySide6.QtCore import QPointF

    scene_pos = vb.mapViewToScene(QPointF(chart._x[target], chart._arrays.close[target]))
    view_pos = chart.graphics.mapFromScene(scene_pos)
    qtbot.mouseMove(chart.graphics.viewport(), QPoint(int(view_pos.x()), int(view_pos.y())))
    qtbot.waitUntil(lambda: chart.cross_v.isVisible(), timeout=3_000)
    assert abs(chart.readout_index - target) <= 1
    i = chart.readout_index
    text = chart.readout.toPlainText()
    assert f"{chart._arrays.open[i]:,.2f}" in text and f"{chart._arrays.close[i]:,.2f}" in text


def test_layout_symbol_and_timeframe_survive_a_restart(open_window, qtbot, tmp_path) -> None:
    data = tmp_path / "shared-data"
    window = open_window(data_dir=data)
    qtbot.waitUntil(lambda: window.chart.series is not None, timeout=10_000)
    window.show_symbol("SOL/USDT")
    window.chart.set_timeframe("15m")
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, window.watchlist_dock)
    window.resize(1250, 700)
    qtbot.waitUntil(lambda: window.chart.series is not None and window.chart.series.timeframe == "15m", timeout=10_000)
    size = (window.width(), window.height())
    assert size == (1250, 700)
    window.close()
    run(qtbot, window.runtime.stop())

    again = open_window(data_dir=data)
    qtbot.waitUntil(lambda: again.chart.series is not None, timeout=10_000)
    assert again.dockWidgetArea(again.watchlist_dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert (again.width(), again.height()) == size
    assert again.chart.symbol == "SOL/USDT"
    assert again.chart.timeframe == "15m" and again.chart.tf_buttons["15m"].isChecked()


def test_notices_are_shown_in_the_window(open_window) -> None:
    message = "sim.tick_interval_ms must be a whole number from 20 to 10000 (milliseconds); found 'fast'."
    window = open_window(notices=[message])
    assert window.notice.isVisible()
    assert message in window.notice.label.text()


def test_status_bar_shows_venue_connection_and_last_tick(open_window, qtbot) -> None:
    window = open_window()
    status = window.status
    qtbot.waitUntil(lambda: "Live" in status.connection_label.text(), timeout=10_000)
    assert status.venue_label.text() == "Simulated market"
    qtbot.waitUntil(lambda: status.tick_label.text().startswith("Last tick 2"), timeout=5_000)

"""The venue comparison and connection health panels."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt

from app.resilience.guard import HEALTH_TOPIC, GuardHealth
from ui.health import COLUMNS as HEALTH_COLUMNS


def test_health_panel_shows_each_group_state_failures_and_next_probe(open_window, qtbot) -> None:
    window = open_window()
    until = time.time() + 30
    window.runtime.bus.publish(HEALTH_TOPIC, GuardHealth("exchange:binance", "open", 5, until,
                                                         "Binance did not answer in time", 12, 3))
    window.runtime.bus.publish(HEALTH_TOPIC, GuardHealth("exchange:gate", "closed", 0, None, "", 4, 0))
    model = window.health.health_model
    # Market-data providers (healthy, unasked) follow the exchanges: groups are sorted by name.
    qtbot.waitUntil(lambda: model.rowCount() >= 2, timeout=3_000)

    def cell(row: int, name: str) -> str:
        return model.data(model.index(row, HEALTH_COLUMNS.index(name)))

    assert cell(0, "Service") == "exchange:binance"
    assert cell(0, "State") == "Paused (circuit open)"
    assert cell(0, "Failures") == "5"
    assert cell(0, "Next probe") == time.strftime("%H:%M:%S", time.localtime(until))
    assert cell(0, "Last error") == "Binance did not answer in time"
    assert cell(1, "State") == "Healthy" and cell(1, "Next probe") == "—"
    colour = model.data(model.index(0, HEALTH_COLUMNS.index("State")), Qt.ItemDataRole.ForegroundRole)
    assert colour.name() == "#ef5350"


def test_compare_panel_lists_the_current_venue_for_the_selected_symbol(open_window, qtbot) -> None:
    window = open_window()
    panel = window.compare
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1, timeout=10_000)
    model = panel.model
    assert model.data(model.index(0, 0)) == "Simulated market"
    bid = float(model.data(model.index(0, 1)).replace(",", ""))
    ask = float(model.data(model.index(0, 2)).replace(",", ""))
    assert 0 < bid < ask
    assert model.data(model.index(0, 5)) == "0.00 bps"  # the only venue is the best place to buy


def test_adding_a_venue_that_cannot_run_here_says_why_next_to_the_button(open_window, qtbot) -> None:
    window = open_window()
    panel = window.compare
    panel.venue_box.setCurrentIndex(panel.venue_box.findData("mt5"))
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "runs only on Windows" in panel.message.text(), timeout=10_000)
    assert panel.message.isVisible() and panel.add_button.isEnabled()
    assert "Traceback" not in panel.message.text()
    assert "mt5" not in window.runtime.manager.venues


def test_status_bar_counts_down_to_the_next_reconnect(open_window, qtbot) -> None:
    from app.market.feed import TOPIC_CONNECTION, ConnectionState, ConnectionStatus

    window = open_window()
    window.runtime.feed._tasks and [t.cancel() for t in window.runtime.feed._tasks]  # freeze the live feed
    qtbot.wait(100)
    window.runtime.bus.publish(TOPIC_CONNECTION, ConnectionStatus(
        "sim", ConnectionState.RECONNECTING, "The Binance stream closed (code 1001); reconnecting.",
        time.time(), time.time() + 12.4))
    label = window.status.connection_label
    qtbot.waitUntil(lambda: "Reconnecting in 1" in label.text(), timeout=3_000)
    assert "code 1001" in label.text()


def test_paper_trading_is_marked_in_the_status_bar_and_title(open_window) -> None:
    from dataclasses import replace

    from app.settings import PaperSettings
    from tests.ui.conftest import FAST

    window = open_window(replace(FAST, paper=PaperSettings(enabled=True, starting_usdt=2500.0)))
    assert window.status.paper_label.isVisible() and window.status.paper_label.text() == "PAPER"
    assert "(paper)" in window.windowTitle() and "(paper)" in window.status.venue_label.text()


def test_real_trading_shows_no_paper_mark(open_window) -> None:
    window = open_window()
    assert not window.status.paper_label.isVisible()

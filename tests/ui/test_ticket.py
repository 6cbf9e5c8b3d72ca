"""The order ticket and the orders table, driven like a user on the simulated market."""

from __future__ import annotations

from decimal import Decimal

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.domain import OrderStatus, OrderType, Side


def ready(window, qtbot):
    ticket = window.ticket
    qtbot.waitUntil(lambda: window.runtime.orders is not None and window.runtime.orders.trading_enabled, timeout=10_000)
    qtbot.waitUntil(lambda: bool(ticket.balances) and bool(ticket.price.text()), timeout=10_000)
    return ticket


def test_a_valid_limit_order_is_sent_rounded_and_shows_in_open_orders(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.confirm_box.setChecked(False)
    last = window.runtime.state.tickers["BTC/USDT"].last
    ticket.price.clear()
    qtbot.keyClicks(ticket.price, f"{last * Decimal('0.9'):.4f}")  # too many decimals: rounded to the tick
    qtbot.keyClicks(ticket.amount, "0.0123456")  # truncated to the step
    assert ticket.submit.isEnabled()
    assert "truncated" in ticket.notes.text().lower() and "rounded" in ticket.notes.text().lower()
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "open" in ticket.message.text(), timeout=10_000)
    (sent,) = ticket.sent
    assert (sent.side, sent.type, sent.amount) == (Side.BUY, OrderType.LIMIT, Decimal("0.01234"))
    assert sent.price == (last * Decimal("0.9")).quantize(Decimal("0.01"))
    entry = window.runtime.orders.entry(sent.client_order_id)
    assert entry is not None and entry.status is OrderStatus.OPEN
    panel = window.orders_panel
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1, timeout=3_000)
    assert panel.model.data(panel.model.index(0, 9)) == sent.client_order_id
    panel.table.selectRow(0)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.runtime.orders.entry(sent.client_order_id).status is OrderStatus.CANCELED, timeout=5_000)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 0, timeout=3_000)


def test_bad_input_is_explained_next_to_the_field_and_nothing_is_sent(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    qtbot.keyClicks(ticket.amount, "abc")
    assert ticket.amount_error.isVisible() and ticket.amount_error.text()
    assert not ticket.submit.isEnabled()
    ticket.amount.clear()
    qtbot.keyClicks(ticket.amount, "0.00002")  # about 2 USDT: below the minimum order value of 5 USDT
    assert not ticket.submit.isEnabled()
    shown = ticket.amount_error.text() + ticket.order_error.text()
    assert "minimum" in shown and "5" in shown
    ticket.amount.clear()
    qtbot.keyClicks(ticket.amount, "1000")  # far more than the balance
    assert not ticket.submit.isEnabled() and "USDT" in (ticket.amount_error.text() + ticket.order_error.text())
    qtbot.keyClick(ticket.amount, Qt.Key.Key_Return)  # Enter on an invalid order sends nothing
    assert ticket.sent == [] and ticket.amount.text() == "1000"  # and keeps what was typed
    qtbot.keyClick(ticket, Qt.Key.Key_Escape)
    assert ticket.amount.text() == ""


def test_the_confirmation_shows_exactly_what_will_be_sent_and_cancel_sends_nothing(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.type.setCurrentText("Market")
    ticket.sell.click()
    qtbot.keyClicks(ticket.amount, "0.01")
    assert ticket.submit.text() == "Sell BTC" and ticket.submit.isEnabled()
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: getattr(ticket, "confirm_dialog", None) is not None and ticket.confirm_dialog.isVisible())
    text = ticket.confirm_dialog.text()
    assert "Sell 0.01 BTC BTC/USDT at market on Simulated market" in text and "client order id mt" in text
    ticket.confirm_dialog.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: ticket.message.text() == "Not sent.")
    assert window.runtime.orders.orders() == []
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ticket.confirm_dialog.isVisible())
    ticket.confirm_dialog.button(QMessageBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: "filled" in ticket.message.text(), timeout=10_000)
    (entry,) = window.runtime.orders.orders()
    assert entry.status is OrderStatus.FILLED and entry.side is Side.SELL and entry.amount == Decimal("0.01")


def test_risk_limits_refuse_before_sending_with_the_rule(open_window, qtbot) -> None:
    from dataclasses import replace

    from app.settings import RiskSettings
    from tests.ui.conftest import FAST

    window = open_window(replace(FAST, risk=RiskSettings(max_order_notional=100.0)))
    ticket = ready(window, qtbot)
    ticket.confirm_box.setChecked(False)
    ticket.type.setCurrentText("Market")
    qtbot.keyClicks(ticket.amount, "0.01")  # about 870 USDT
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "risk limits" in ticket.message.text(), timeout=10_000)
    assert "max_order_notional" in ticket.message.text()
    assert window.runtime.orders.orders() == [] and ticket.amount.text() == "0.01"


def test_prices_fill_from_the_watchlist_and_the_chart_and_hotkeys_pick_the_side(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    bid_col = 3
    row = window.watchlist.row_of("ETH/USDT")
    rect = window.watchlist.visualRect(window.watchlist.proxy.index(row, bid_col))
    qtbot.mouseClick(window.watchlist.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # a real
    qtbot.mouseDClick(window.watchlist.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # double-click
    qtbot.waitUntil(lambda: ticket.symbol == "ETH/USDT")
    assert Decimal(ticket.price.text()) == window.runtime.state.tickers["ETH/USDT"].bid
    window.chart.priceClicked.emit(3000.123)
    assert ticket.price.text() == "3000.12"
    qtbot.keyClick(window, Qt.Key.Key_F3)
    assert ticket.sell.isChecked() and ticket.submit.text() == "Sell ETH"
    qtbot.keyClick(window, Qt.Key.Key_F2)
    assert ticket.buy.isChecked()


def test_trades_table_shows_fills_and_exports_csv(open_window, qtbot, tmp_path) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.confirm_box.setChecked(False)
    ticket.type.setCurrentText("Market")
    qtbot.keyClicks(ticket.amount, "0.01")
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    fills = window.fills
    qtbot.waitUntil(lambda: fills.model.rowCount() >= 1, timeout=10_000)
    assert fills.model.data(fills.model.index(0, 1)) == "BTC/USDT"
    assert fills.model.data(fills.model.index(0, 2)) == "buy"
    fills.export()
    target = tmp_path / "trades.csv"
    fills.export_dialog.fileSelected.emit(str(target))
    qtbot.waitUntil(lambda: "Saved" in fills.message.text(), timeout=5_000)
    lines = target.read_text().splitlines()
    assert lines[0].startswith("Time,Symbol,Side,Price") and len(lines) == 1 + fills.model.rowCount()
    fills.export_dialog.close()


def test_open_orders_and_fills_are_drawn_on_the_chart(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.confirm_box.setChecked(False)
    last = window.runtime.state.tickers["BTC/USDT"].last
    ticket.set_price(last * Decimal("0.95"))
    qtbot.keyClicks(ticket.amount, "0.01")
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.chart.order_lines) == 1, timeout=10_000)
    (line,) = window.chart.order_lines.values()
    assert abs(line.value() - float((last * Decimal("0.95")).quantize(Decimal("0.01")))) < 1e-6
    ticket.type.setCurrentText("Market")
    qtbot.keyClicks(ticket.amount, "0.01")  # the ticket cleared the amount after the first order
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.chart.fill_markers.data) >= 1, timeout=10_000)
    x, y = window.chart.fill_markers.data[0]["x"], window.chart.fill_markers.data[0]["y"]
    assert abs(y - float(last)) / float(last) < 0.01 and x > 1.7e9


def test_orders_history_can_be_filtered(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.confirm_box.setChecked(False)
    ticket.type.setCurrentText("Market")
    for amount in ("0.01", "0.02"):
        qtbot.keyClicks(ticket.amount, amount)
        qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "filled" in ticket.message.text(), timeout=10_000)
        ticket.message.setText("")
    panel = window.orders_panel
    panel.view.setCurrentText("Order history")
    qtbot.waitUntil(lambda: panel.proxy.rowCount() == 2, timeout=3_000)
    qtbot.keyClicks(panel.filter, "0.02")
    assert panel.proxy.rowCount() == 1
    panel.filter.clear()
    qtbot.keyClicks(panel.filter, "ETH")
    assert panel.proxy.rowCount() == 0


def test_enter_sends_one_order_and_a_second_press_while_sending_sends_nothing(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.confirm_box.setChecked(False)
    ticket.type.setCurrentText("Market")
    qtbot.keyClicks(ticket.amount, "0.01")
    qtbot.keyClick(ticket.amount, Qt.Key.Key_Return)
    qtbot.keyClick(ticket.amount, Qt.Key.Key_Return)  # impatient: pressed again before the answer
    ticket.submit_clicked()
    qtbot.waitUntil(lambda: "filled" in ticket.message.text(), timeout=10_000)
    qtbot.wait(300)
    assert len(ticket.sent) == 1 and len(window.runtime.orders.orders()) == 1

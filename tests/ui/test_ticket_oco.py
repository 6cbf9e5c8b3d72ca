"""The ticket's OCO form, the grouped legs in the orders table, and the balances CSV export, driven like a
user on the simulated market (which has OCO lists, like Binance); plus a venue without OCO."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.domain import OrderStatus, OrderType, Side
from app.paths import resolve_paths
from app.runtime import Runtime
from app.trading.orders import OrderServiceError
from app.venues.base import OcoRequest, OrderRejected
from app.venues.sim import SimConfig, SimVenue
from tests.ui.conftest import FAST, run
from tests.ui.test_ticket import ready
from ui.main_window import MainWindow
from ui.orders_view import ORDER_COLUMNS
from ui.ticket import OCO

TICK = Decimal("0.01")


def choose_oco(ticket, qtbot) -> Decimal:
    """Pick OCO in the type box like a user; returns the last price the form checks against."""
    assert ticket.type.findText(OCO) >= 0, "the simulated market offers OCO"
    ticket.type.setCurrentText(OCO)
    assert ticket.stop_limit.isVisible() and ticket.stop.isVisible() and ticket.price_label.text() == "Limit price"
    assert not ticket.tif.isEnabled() and not ticket.post_only.isEnabled() and not ticket.amount_unit.isEnabled()
    return ticket.runtime.state.tickers[ticket.symbol].last


def type_into(qtbot, field, text: str) -> None:
    field.clear()
    qtbot.keyClicks(field, text)


def col(name: str) -> int:
    return ORDER_COLUMNS.index(name)


def test_a_valid_sell_oco_is_sent_as_one_list_and_its_legs_show_grouped_and_cancel_together(
        open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.confirm_box.setChecked(False)
    ticket.sell.click()
    last = choose_oco(ticket, qtbot)
    limit, stop, stop_limit = last * Decimal("1.05"), last * Decimal("0.95"), last * Decimal("0.949")
    type_into(qtbot, ticket.price, f"{limit:.4f}")  # more decimals than the tick: rounded, and noted
    type_into(qtbot, ticket.stop, f"{stop:.2f}")
    type_into(qtbot, ticket.stop_limit, f"{stop_limit:.2f}")
    qtbot.keyClicks(ticket.amount, "0.0123456")
    assert ticket.submit.isEnabled() and ticket.submit.text() == "Sell BTC (OCO)", ticket.order_error.text()
    assert not any(e.isVisible() for e in (ticket.price_error, ticket.stop_error, ticket.stop_limit_error))
    assert "Limit price rounded" in ticket.notes.text() and "truncated" in ticket.notes.text()
    assert "Value up to" in ticket.preview.text()
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "stop-limit open" in ticket.message.text(), timeout=10_000)
    assert "limit open" in ticket.message.text()
    (sent,) = ticket.sent
    assert isinstance(sent, OcoRequest)
    assert (sent.side, sent.amount) == (Side.SELL, Decimal("0.01234"))
    assert (sent.price, sent.stop_price, sent.stop_limit_price) == (
        limit.quantize(TICK), stop.quantize(TICK), stop_limit.quantize(TICK))
    orders = window.runtime.orders
    legs = orders.list_legs(sent.list_client_id)
    assert [(e.client_order_id, e.type, e.status) for e in legs] == [
        (sent.limit_client_id, OrderType.LIMIT, OrderStatus.OPEN),
        (sent.stop_client_id, OrderType.STOP_LIMIT, OrderStatus.OPEN)]
    # The orders table groups the two legs: the OCO tag, the list id, a shared tint, a tooltip.
    panel = window.orders_panel
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2, timeout=3_000)
    model = panel.model
    rows = range(model.rowCount())
    assert sorted(model.data(model.index(r, col("Type"))) for r in rows) == ["limit · OCO", "stop-limit · OCO"]
    assert {model.data(model.index(r, col("OCO list"))) for r in rows} == {sent.list_client_id}
    assert {model.data(model.index(r, col("Stop"))) for r in rows} == {"", f"{sent.stop_price:f}"}
    tint = {model.data(model.index(r, 0), Qt.ItemDataRole.BackgroundRole).name() for r in rows}
    assert len(tint) == 1
    assert "cancelling either leg cancels both" in model.data(model.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    # The chart draws both legs like any open orders.
    qtbot.waitUntil(lambda: len(window.chart.order_lines) == 2, timeout=5_000)
    # Cancel one leg: the list goes.
    panel.table.selectRow(0)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: all(orders.entry(c).status is OrderStatus.CANCELED
                                for c in (sent.limit_client_id, sent.stop_client_id)), timeout=5_000)
    assert f"Cancelled OCO list {sent.list_client_id} (both legs)." in panel.message.text()
    qtbot.waitUntil(lambda: panel.model.rowCount() == 0, timeout=3_000)


def test_invalid_oco_input_is_explained_next_to_each_field_and_nothing_is_sent(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.sell.click()
    last = choose_oco(ticket, qtbot)
    type_into(qtbot, ticket.price, f"{last * Decimal('0.9'):.2f}")  # a sell's limit below the last price
    type_into(qtbot, ticket.stop, f"{last * Decimal('1.1'):.2f}")  # and its stop above it
    type_into(qtbot, ticket.stop_limit, "abc")
    qtbot.keyClicks(ticket.amount, "0.01")
    assert not ticket.submit.isEnabled()
    assert ticket.price_error.isVisible() and "limit price must be above the last price" in ticket.price_error.text()
    assert ticket.stop_error.isVisible() and "stop price must be below the last price" in ticket.stop_error.text()
    assert ticket.stop_limit_error.isVisible() and "is not a number" in ticket.stop_limit_error.text()
    qtbot.keyClick(ticket.amount, Qt.Key.Key_Return)  # Enter on an invalid OCO sends nothing
    assert ticket.sent == [] and window.runtime.orders.orders() == []
    # Fixing one field clears its message only.
    type_into(qtbot, ticket.stop_limit, f"{last * Decimal('0.94'):.2f}")
    assert not ticket.stop_limit_error.isVisible() and ticket.price_error.isVisible()
    # Too little for the minimum order value (5 USDT on the cheaper leg), next to the order.
    type_into(qtbot, ticket.price, f"{last * Decimal('1.1'):.2f}")
    type_into(qtbot, ticket.stop, f"{last * Decimal('0.95'):.2f}")
    type_into(qtbot, ticket.amount, "0.00002")
    assert not ticket.submit.isEnabled()
    assert "stop-limit leg's value" in ticket.order_error.text() and "minimum" in ticket.order_error.text()
    # More than the free BTC.
    type_into(qtbot, ticket.amount, "5")
    assert not ticket.submit.isEnabled() and "Not enough BTC" in ticket.order_error.text()
    assert ticket.sent == []
    # Back to a plain limit order: the OCO field and its message go away.
    ticket.type.setCurrentText("Limit")
    assert not ticket.stop_limit.isVisible() and not ticket.stop_limit_error.isVisible()
    assert ticket.amount_unit.isEnabled()


def test_the_confirmation_describes_the_whole_list_and_cancel_sends_nothing(open_window, qtbot) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    last = choose_oco(ticket, qtbot)  # a buy OCO: limit below the market, stop above it
    type_into(qtbot, ticket.price, f"{last * Decimal('0.95'):.2f}")
    type_into(qtbot, ticket.stop, f"{last * Decimal('1.05'):.2f}")
    type_into(qtbot, ticket.stop_limit, f"{last * Decimal('1.06'):.2f}")
    qtbot.keyClicks(ticket.amount, "0.01")
    assert ticket.submit.isEnabled(), ticket.order_error.text()
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: getattr(ticket, "confirm_dialog", None) is not None and ticket.confirm_dialog.isVisible())
    text = ticket.confirm_dialog.text()
    assert "Buy 0.01 BTC BTC/USDT as an OCO on Simulated market" in text
    assert "if the price rises to" in text and "Whichever fills or triggers first cancels the other" in text
    ticket.confirm_dialog.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: ticket.message.text() == "Not sent.")
    assert window.runtime.orders.orders() == []
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ticket.confirm_dialog.isVisible())
    ticket.confirm_dialog.button(QMessageBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: "stop-limit open" in ticket.message.text(), timeout=10_000)
    assert len(window.runtime.orders.orders()) == 2


class NoOcoSim(SimVenue):
    """A venue without OCO lists (as Gate.io, MEXC and MetaTrader 5 are in Meridian)."""

    supports_oco = False


@pytest.fixture
def window_without_oco(qtbot, qloop, tmp_path):
    paths = resolve_paths(tmp_path / "settings.toml", tmp_path / "data")
    s = FAST.sim
    runtime = Runtime(FAST, paths, venue=NoOcoSim(SimConfig(seed=s.seed, tick_interval_ms=s.tick_interval_ms,
                                                            history_days=s.history_days)))
    runtime.open_store()
    window = MainWindow(runtime)
    qtbot.addWidget(window)
    window.show()
    run(qtbot, window.start())
    yield window
    run(qtbot, runtime.stop())


def test_a_venue_without_oco_does_not_offer_it_and_the_api_says_why(window_without_oco, qtbot) -> None:
    window = window_without_oco
    ticket = ready(window, qtbot)
    assert ticket.type.findText(OCO) == -1
    assert [ticket.type.itemText(i) for i in range(ticket.type.count())] == ["Limit", "Market", "Stop-limit"]
    request = OcoRequest("BTC/USDT", Side.SELL, Decimal("0.01"), Decimal("2"), Decimal("1"), Decimal("1"), "", "", "")
    with pytest.raises(OrderServiceError, match="does not offer OCO"):
        run(qtbot, window.runtime.orders.submit_oco(request))
    assert window.runtime.orders.orders() == []


def test_the_balances_table_exports_exact_decimal_strings_to_csv(open_window, qtbot, tmp_path) -> None:
    window = open_window()
    ticket = ready(window, qtbot)
    ticket.confirm_box.setChecked(False)
    ticket.type.setCurrentText("Market")
    qtbot.keyClicks(ticket.amount, "0.0123")  # a fill with fees: balances with many decimals
    qtbot.mouseClick(ticket.submit, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "filled" in ticket.message.text(), timeout=10_000)
    balances = run(qtbot, window.runtime.venue.fetch_balance())
    panel = window.balances
    panel.refresh()
    qtbot.waitUntil(lambda: [r.free for r in panel.balances_model.rows] == [balances[a].free for a in sorted(balances)],
                    timeout=10_000)
    panel.export()
    target = tmp_path / "balances.csv"
    panel.export_dialog.fileSelected.emit(str(target))
    qtbot.waitUntil(lambda: "Saved" in panel.message.text(), timeout=5_000)
    with target.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["Asset", "Free", "In orders", "Total"]
    assert [r[0] for r in rows] == sorted(balances)
    for asset, free, used, total in rows:
        b = balances[asset]
        assert (free, used, total) == (f"{b.free:f}", f"{b.used:f}", f"{b.total:f}")  # exact text, no float
        assert Decimal(free) + Decimal(used) == Decimal(total)
    usdt = next(r for r in rows if r[0] == "USDT")
    assert len(usdt[1].partition(".")[2]) >= 4  # the fill's value and fee: more decimals than a float would keep
    panel.export_dialog.close()


def test_an_oco_list_is_held_to_the_risk_limits_by_its_dearer_leg(open_window, qtbot) -> None:
    from dataclasses import replace as dc_replace

    from app.settings import RiskSettings
    from tests.ui.conftest import FAST

    window = open_window(dc_replace(FAST, risk=RiskSettings(max_order_notional=1000.0)))
    ticket = ready(window, qtbot)
    last = window.runtime.state.tickers["BTC/USDT"].last
    request = OcoRequest("BTC/USDT", Side.SELL, Decimal("0.02"), (last * Decimal("1.05")).quantize(TICK),
                         (last * Decimal("0.95")).quantize(TICK), (last * Decimal("0.949")).quantize(TICK),
                         "", "", "")
    assert ticket is not None
    with pytest.raises(OrderRejected, match="max_order_notional"):
        run(qtbot, window.runtime.orders.submit_oco(request))
    assert window.runtime.orders.orders() == []  # refused before anything was journalled or sent

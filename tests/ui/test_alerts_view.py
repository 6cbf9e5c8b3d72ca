"""The alerts panel driven like a user: typing into the real form, clicking, confirming, on a real engine."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.alerts import Alert, AlertEngine, AlertKind
from app.bus import EventBus
from app.domain import Ticker
from tests.ui.conftest import run
from ui.alerts_view import COLUMNS, FIRED_COL, STATUS_COL, AlertsPanel

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
EMAIL_NOT_SET_UP = "Email is not set up: fill in [notify.email] in settings."


class Plan:
    pro = False


@pytest.fixture
def engine(qtbot, qloop) -> Iterator[AlertEngine]:
    bus = EventBus()
    run(qtbot, bus.start())
    eng = AlertEngine(bus, pro=lambda: Plan.pro, known_symbols=lambda: set(SYMBOLS))
    run(qtbot, eng.start())
    yield eng
    Plan.pro = False
    run(qtbot, eng.stop())
    run(qtbot, bus.stop())


@pytest.fixture
def panel(qtbot, engine: AlertEngine) -> Iterator[AlertsPanel]:
    p = AlertsPanel(engine, lambda: list(SYMBOLS), lambda: {"email": EMAIL_NOT_SET_UP, "discord": ""})
    qtbot.addWidget(p)
    p.resize(1200, 460)
    p.show()
    qtbot.waitExposed(p)
    yield p
    p.shutdown()


def cell(panel: AlertsPanel, row: int, col: int) -> str:
    return panel.proxy.data(panel.proxy.index(row, col))


def type_into(qtbot, field, text: str) -> None:  # noqa: ANN001
    field.clear()
    qtbot.keyClicks(field, text)


def test_an_alert_typed_into_the_form_is_created_and_listed(panel: AlertsPanel, engine: AlertEngine, qtbot) -> None:
    form = panel.form
    assert form.current_kind is AlertKind.PRICE_ABOVE
    assert form.price.isVisible() and not form.pct.isVisible() and not form.multiple.isVisible()
    type_into(qtbot, form.symbol.lineEdit(), "eth/usdt")  # the listed spelling is used
    qtbot.keyClicks(form.price, "3,500.5")
    qtbot.mouseClick(form.channel_boxes["email"], Qt.MouseButton.LeftButton)
    # Email is not set up: still tickable, and the form says where to set it up.
    assert form.channel_boxes["email"].isChecked()
    assert form.channel_hint.isVisible() and EMAIL_NOT_SET_UP in form.channel_hint.text()
    assert EMAIL_NOT_SET_UP in form.channel_boxes["email"].toolTip()
    type_into(qtbot, form.cooldown, "90")
    form.cooldown_unit.setCurrentIndex(0)  # seconds
    qtbot.mouseClick(form.repeat, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(form.note, "breakout")
    assert not any(label.isVisible() for label in form.errors.values())
    qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(engine.alerts) == 1)
    (alert,) = engine.alerts
    assert (alert.kind, alert.symbol, alert.price, alert.channels, alert.cooldown_s, alert.repeat, alert.note) == (
        AlertKind.PRICE_ABOVE, "ETH/USDT", Decimal("3500.5"), ("desktop", "email"), 90, True, "breakout")
    assert isinstance(alert.price, Decimal) and alert.active
    qtbot.waitUntil(lambda: panel.proxy.rowCount() == 1)
    assert cell(panel, 0, 0) == "ETH/USDT crosses above 3,500.5"
    assert [cell(panel, 0, c) for c in range(1, len(COLUMNS))] == [
        "Desktop, Email", "90s", "Repeat", "Active", "Never", "breakout"]
    assert "Created: ETH/USDT crosses above 3,500.5." == form.message.text()
    assert form.price.text() == "" and form.symbol.currentText() == "ETH/USDT"  # ready for the next level


def test_a_percent_change_alert_shows_only_its_fields_and_converts_hours(panel: AlertsPanel, engine: AlertEngine,
                                                                          qtbot) -> None:
    form = panel.form
    form.kind.setCurrentIndex(form.kind.findData(AlertKind.PCT_CHANGE))
    assert form.pct.isVisible() and form.window.isVisible() and not form.price.isVisible()
    assert form.window_label.text() == "Within"
    type_into(qtbot, form.symbol.lineEdit(), "BTC/USDT")
    qtbot.keyClicks(form.pct, "2.5")
    type_into(qtbot, form.window, "1.5")
    form.window_unit.setCurrentIndex(1)  # hours
    qtbot.keyClick(form.pct, Qt.Key.Key_Return)  # Enter saves
    qtbot.waitUntil(lambda: len(engine.alerts) == 1)
    (alert,) = engine.alerts
    assert (alert.kind, alert.pct, alert.window_s, alert.price) == (AlertKind.PCT_CHANGE, Decimal("2.5"), 5400, None)
    form.kind.setCurrentIndex(form.kind.findData(AlertKind.VOLUME_SPIKE))
    assert form.multiple.isVisible() and form.window.isVisible() and not form.pct.isVisible()
    assert form.window_label.text() == "Average over"
    form.kind.setCurrentIndex(form.kind.findData(AlertKind.ORDER_FILLED))
    assert not any(w.isVisible() for w in (form.price, form.pct, form.window, form.multiple))
    assert form.symbol.lineEdit().placeholderText() == "any symbol"


def test_invalid_input_is_explained_next_to_its_field_and_nothing_is_saved(panel: AlertsPanel, engine: AlertEngine,
                                                                           qtbot) -> None:
    form = panel.form
    type_into(qtbot, form.symbol.lineEdit(), "BTC/USDT")
    qtbot.keyClicks(form.price, "abc")
    price_error = form.errors["price"]
    assert price_error.isVisible()
    assert price_error.text() == "Enter the price level as a number above zero, for example 70000 or 0.5123."
    assert price_error.parentWidget() is form.rows["price"]  # right under the price field, not somewhere else
    assert [k for k, label in form.errors.items() if label.isVisible()] == ["price"]
    qtbot.keyClick(form.price, Qt.Key.Key_Return)
    qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    qtbot.wait(100)
    assert engine.alerts == [] and form.price.text() == "abc"  # nothing sent, nothing typed lost
    assert "Not saved" in form.message.text()

    form.kind.setCurrentIndex(form.kind.findData(AlertKind.PCT_CHANGE))
    qtbot.keyClicks(form.pct, "0")
    type_into(qtbot, form.window, "0.5")  # half a minute
    type_into(qtbot, form.cooldown, "ten")
    assert form.errors["pct"].text() == "Enter the move in percent, above 0 and at most 1000, for example 2.5."
    assert form.errors["window"].text() == "The window must be between 1 minute and 7 days."
    assert form.errors["cooldown"].text() == "The cooldown must be between 0 seconds and 7 days."
    assert not form.errors["price"].isVisible()  # the price field is hidden for this kind, and so is its problem
    type_into(qtbot, form.symbol.lineEdit(), "DOGE/USDT")
    assert "DOGE/USDT is not in the watchlist" in form.errors["symbol"].text()
    for box in form.channel_boxes.values():
        if box.isChecked():
            qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    assert form.errors["channels"].text() == "Tick at least one channel to send this alert to."
    qtbot.keyClick(form.pct, Qt.Key.Key_Return)
    qtbot.wait(100)
    assert engine.alerts == [] and (form.pct.text(), form.window.text(), form.cooldown.text()) == ("0", "0.5", "ten")
    qtbot.keyClick(form.pct, Qt.Key.Key_Escape)  # Esc clears, problems go with it
    assert form.pct.text() == "" and not any(label.isVisible() for label in form.errors.values())


def test_sms_must_be_unticked_on_the_free_plan(panel: AlertsPanel, engine: AlertEngine, qtbot) -> None:
    form = panel.form
    type_into(qtbot, form.symbol.lineEdit(), "BTC/USDT")
    qtbot.keyClicks(form.price, "70000")
    qtbot.mouseClick(form.channel_boxes["sms"], Qt.MouseButton.LeftButton)
    assert form.errors["channels"].isVisible()
    assert form.errors["channels"].text() == "SMS alerts are part of the Pro plan: untick SMS, or upgrade in Billing."
    qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    qtbot.wait(100)
    assert engine.alerts == []
    qtbot.mouseClick(form.channel_boxes["sms"], Qt.MouseButton.LeftButton)
    assert not form.errors["channels"].isVisible()
    qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(engine.alerts) == 1)
    assert engine.alerts[0].channels == ("desktop",)


def test_the_free_plan_limit_shows_above_save(panel: AlertsPanel, engine: AlertEngine, qtbot) -> None:
    for i in range(20):
        run(qtbot, engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal(1000 + i))))
    form = panel.form
    type_into(qtbot, form.symbol.lineEdit(), "BTC/USDT")
    qtbot.keyClicks(form.price, "5")
    plan = form.errors["plan"]
    assert plan.isVisible() and "at most 20 active alerts and you have 20" in plan.text()
    assert plan.mapTo(form, plan.rect().bottomLeft()).y() <= form.save_button.mapTo(form, form.save_button.rect().topLeft()).y()
    qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    qtbot.wait(100)
    assert len(engine.alerts) == 20


def test_edit_keeps_the_alert_and_delete_asks_first(panel: AlertsPanel, engine: AlertEngine, qtbot) -> None:
    original = run(qtbot, engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal("70000"), cooldown_s=600,
                                           channels=("desktop", "discord"), note="old high")))
    qtbot.waitUntil(lambda: panel.proxy.rowCount() == 1)
    panel.table.selectRow(0)
    qtbot.mouseClick(panel.edit_button, Qt.MouseButton.LeftButton)
    form = panel.form
    assert form.save_button.text() == "Save changes" and "Editing" in form.title.text()
    assert (form.price.text(), form.cooldown.text(), form.cooldown_unit.currentText(), form.note.text()) == (
        "70000", "10", "minutes", "old high")
    assert form.channel_boxes["discord"].isChecked() and not form.channel_boxes["email"].isChecked()
    type_into(qtbot, form.price, "71,250.5")
    qtbot.keyClick(form.price, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: engine.alerts[0].price == Decimal("71250.5"))
    (edited,) = engine.alerts
    assert edited.id == original.id and edited.channels == ("desktop", "discord") and edited.cooldown_s == 600
    qtbot.waitUntil(lambda: cell(panel, 0, 0) == "BTC/USDT crosses above 71,250.5")
    assert form.save_button.text() == "Create alert"

    panel.table.selectRow(0)
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.confirm_dialog is not None and panel.confirm_dialog.isVisible())
    assert "BTC/USDT crosses above 71,250.5" in panel.confirm_dialog.text()
    panel.confirm_dialog.button(QMessageBox.StandardButton.No).click()
    qtbot.waitUntil(lambda: panel.message.text() == "Not deleted.")
    assert len(engine.alerts) == 1
    panel.table.selectRow(0)
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.confirm_dialog.isVisible())
    panel.confirm_dialog.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: engine.alerts == [] and panel.proxy.rowCount() == 0)
    assert panel.message.text() == "Deleted: BTC/USDT crosses above 71,250.5."


def test_switch_off_and_on_from_the_table(panel: AlertsPanel, engine: AlertEngine, qtbot) -> None:
    run(qtbot, engine.add(Alert(AlertKind.PRICE_BELOW, "SOL/USDT", price=Decimal("120"))))
    qtbot.waitUntil(lambda: panel.proxy.rowCount() == 1)
    panel.table.selectRow(0)
    assert panel.toggle_button.text() == "Switch off"
    qtbot.mouseClick(panel.toggle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not engine.alerts[0].active)
    qtbot.waitUntil(lambda: cell(panel, 0, STATUS_COL) == "Off")
    assert panel.toggle_button.text() == "Switch on"  # the selection survived the refresh
    assert panel.proxy.data(panel.proxy.index(0, 0), Qt.ItemDataRole.ForegroundRole).name() == "#7f8796"
    qtbot.mouseClick(panel.toggle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: engine.alerts[0].active and cell(panel, 0, STATUS_COL) == "Active")


def test_a_firing_shows_in_the_table_and_switches_a_once_alert_off(panel: AlertsPanel, engine: AlertEngine,
                                                                   qtbot) -> None:
    run(qtbot, engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal("70000"))))
    for price in ("69000", "70500"):
        engine.bus.publish("price.updated", Ticker("BTC/USDT", 0, Decimal(price), venue="sim"))
        run(qtbot, engine.bus.drain())
    qtbot.waitUntil(lambda: cell(panel, 0, STATUS_COL) == "Off")
    assert cell(panel, 0, FIRED_COL).startswith("once, last ") and cell(panel, 0, FIRED_COL).endswith("s ago)")


def test_prefill_and_a_refused_quick_create_keep_everything_in_the_form(panel: AlertsPanel, engine: AlertEngine,
                                                                       qtbot) -> None:
    form = panel.form
    panel.prefill("ETH/USDT", Decimal("3012.50"), AlertKind.PRICE_BELOW)
    assert (form.current_kind, form.symbol.currentText(), form.price.text()) == (
        AlertKind.PRICE_BELOW, "ETH/USDT", "3012.5")
    assert form.price.hasFocus() and not any(label.isVisible() for label in form.errors.values())
    run(qtbot, panel.create("DOGE/USDT", Decimal("0.2"), AlertKind.PRICE_ABOVE))
    assert engine.alerts == []
    assert (form.symbol.currentText(), form.price.text()) == ("DOGE/USDT", "0.2")
    assert "not in the watchlist" in form.errors["symbol"].text() and form.errors["symbol"].isVisible()
    run(qtbot, panel.create("BTC/USDT", Decimal("65000"), AlertKind.PRICE_BELOW))
    assert [a.price for a in engine.alerts] == [Decimal("65000")]

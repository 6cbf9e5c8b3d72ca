"""The tray menu, minimise-to-tray, and an alert in the real window firing through a real SMTP server:
exactly one message per channel per cooldown, and what could not be delivered listed with its reason."""

from __future__ import annotations

import socket
from dataclasses import replace
from decimal import Decimal
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from app.alerts import Alert, AlertKind
from app.settings import DesktopNotifySettings, EmailSettings, NotifySettings
from tests.ui.conftest import FAST, run


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Any:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def test_tray_menu_shows_status_toggles_the_window_and_quits(open_window, qtbot) -> None:
    window = open_window()
    from ui.watchlist import COLUMNS

    # A crypto-only watchlist on a live venue: no source or market cap column taking room from prices.
    assert window.watchlist.isColumnHidden(COLUMNS.index("Source"))
    assert window.watchlist.isColumnHidden(COLUMNS.index("Mkt cap"))
    tray = window.tray
    tray.menu.aboutToShow.emit()
    assert tray.status_action.text().startswith("Simulated market · ")
    assert "active alert(s)" in tray.status_action.text()
    texts = [a.text() for a in tray.menu.actions() if a.text()]
    assert texts[1:] == ["Hide window", "Quit Meridian"]
    tray.toggle_action.trigger()
    assert not window.isVisible()
    tray.menu.aboutToShow.emit()
    assert tray.toggle_action.text() == "Show window"
    tray.toggle_action.trigger()
    assert window.isVisible()
    with qtbot.waitSignal(window.closed, timeout=5_000):
        tray.quit_action.trigger()


def test_closing_hides_to_the_tray_only_when_asked_and_a_tray_exists(open_window, qtbot) -> None:
    settings = replace(FAST, notify=NotifySettings(desktop=DesktopNotifySettings(minimise_to_tray=True)))
    window = open_window(settings)
    window.tray.available = True  # offscreen has no tray; pretend, to exercise the window's side
    window.tray.icon.showMessage = lambda *a, **k: None  # noqa: ARG005
    window.close()
    assert not window.isVisible() and not window._saved  # hidden, still running
    assert window.tray.messages[0][0] == "Meridian is still running"
    window.tray.available = False  # without a tray, closing must really close: it could not come back
    with qtbot.waitSignal(window.closed, timeout=5_000):
        window.close()


def test_a_price_move_sends_one_email_per_cooldown_and_lists_what_the_desktop_could_not_show(
        open_window, qtbot, smtp) -> None:
    port, inbox = smtp
    email = EmailSettings(host="127.0.0.1", port=port, security="none", sender="m@example.com",
                          recipients=("trader@example.com",))
    window = open_window(replace(FAST, notify=NotifySettings(email=email)))
    engine = window.runtime.alerts
    assert engine is not None
    run(qtbot, engine.add(Alert(AlertKind.PCT_CHANGE, "BTC/USDT", pct=Decimal("0.0001"), window_s=60,
                                channels=("email", "desktop"), cooldown_s=3600, repeat=True)))
    qtbot.waitUntil(lambda: len(inbox.messages) == 1, timeout=15_000)
    qtbot.wait(1500)  # dozens more ticks move the price: the cooldown holds
    assert len(inbox.messages) == 1
    assert "BTC/USDT" in inbox.messages[0]["Subject"]
    assert engine.alerts[0].fired_count == 1

    # Offscreen there is neither a notification server nor a tray: the desktop message is listed, with why.
    outbox = window.outbox
    outbox.refresh()
    qtbot.waitUntil(lambda: any(r.channel == "desktop" for r in outbox.model.rows), timeout=15_000)
    row = next(r for r in outbox.model.rows if r.channel == "desktop")
    assert row.reason and "email" not in {r.channel for r in outbox.model.rows}
    assert outbox.summary.text().endswith("Select one to send it again or discard it.")
    outbox.table.selectRow(outbox.model.rows.index(row))
    outbox.discard_button.click()
    qtbot.waitUntil(lambda: not any(r.channel == "desktop" for r in outbox.model.rows), timeout=10_000)


def test_watchlist_menu_and_chart_open_the_alert_form_at_the_price(open_window, qtbot) -> None:
    from app.alerts import AlertKind

    window = open_window()
    view = window.watchlist
    qtbot.waitUntil(lambda: window.runtime.state.tickers.get("BTC/USDT") is not None)
    menu = view.menu_for(view.proxy.index(view.row_of("BTC/USDT"), 0))
    texts = [a.text() for a in menu.actions()]
    assert texts[0] == "Alert for BTC/USDT…" and texts[1].startswith("Alert when BTC/USDT crosses above ")
    menu.actions()[2].trigger()  # below
    assert window.alerts_dock.isVisible()
    form = window.alerts_panel.form
    assert form.kind.currentData() == AlertKind.PRICE_BELOW or form.kind.currentText() == AlertKind.PRICE_BELOW.label
    assert form.price.text().replace(",", "") != ""


def test_send_test_email_reports_next_to_the_button(open_window, qtbot, smtp) -> None:
    port, inbox = smtp
    email = EmailSettings(host="127.0.0.1", port=port, security="none", sender="m@example.com",
                          recipients=("trader@example.com",))
    window = open_window(replace(FAST, notify=NotifySettings(email=email)))
    dialog = window.open_notifications_dialog()
    assert dialog.test_button.isEnabled() and dialog.email_state.text() == "Ready."
    dialog.test_button.click()
    qtbot.waitUntil(lambda: dialog.test_result.text().startswith("A test email was sent"), timeout=10_000)
    assert len(inbox.messages) == 1 and inbox.messages[0]["To"] == "trader@example.com"
    dialog.close()

    # Nothing set up: the button is off and the dialog says what to fill in.
    plain = open_window()
    d2 = plain.open_notifications_dialog()
    assert not d2.test_button.isEnabled() and "Email is not set up" in d2.email_state.text()

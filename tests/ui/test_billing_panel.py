"""The billing panel against a real relay and the local Stripe (both on 127.0.0.1, in a thread of their own)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from app.billing.client import BillingClient
from app.billing.relay import RelayServer
from app.billing.token_store import StoredToken, memory_token_io
from app.resilience import Guard, GuardConfig
from tests.servers.stripe import FakeStripe, relay_config
from tests.ui.conftest import run
from ui.billing_panel import BILLING_OFF, BillingPanel, validate_transfer

FAST = GuardConfig(retry_first_delay=0.01, retry_max_delay=0.05, call_timeout=5.0)


class Servers:
    """Stripe and the relay on their own loop and thread, like a separate process: the panel's loop is Qt's."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="billing-servers", daemon=True)
        self.fake = FakeStripe()
        self.relay: RelayServer | None = None

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()

        async def up() -> None:
            await self.fake.start()
            self.relay = RelayServer(relay_config(self.fake, self.db))
            await self.relay.start()

        self.call(up())

    def stop(self) -> None:
        async def down() -> None:
            if self.relay is not None:
                await self.relay.stop()
            await self.fake.stop()

        self.call(down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    @property
    def url(self) -> str:
        assert self.relay is not None
        return self.relay.url

    def pay(self, payment_url: str) -> None:
        """The user pays on the checkout page they were sent to; Stripe sends its webhooks."""
        session = next(s for s in self.fake.sessions.values() if s["url"] == payment_url)

        async def pay() -> None:
            await self.fake.deliver(self.fake.pay_checkout(session["id"]), self.url + "/v1/stripe/webhook")

        self.call(pay())

    def create_account(self, email: str) -> None:
        assert self.relay is not None
        self.call(self.relay.service.create_account(email))

    def balance_of(self, email: str) -> int:
        assert self.relay is not None
        service = self.relay.service

        async def read() -> int:
            def work(tx: Any) -> int:
                account = tx.account_by_email(email)
                return tx.last_balance(account.id)

            return await service.db.run(work)

        return self.call(read())


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    running = Servers(tmp_path_factory.mktemp("billing") / "relay.sqlite3")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def make_panel(qtbot, qloop, servers: Servers) -> Iterator[Callable[[], tuple[BillingPanel, list[str]]]]:
    clients: list[BillingClient] = []

    def make() -> tuple[BillingPanel, list[str]]:
        load, save, _ = memory_token_io()
        client = BillingClient(servers.url, guard=Guard("relay", FAST), load_token=load, save_token=save,
                               poll_interval=0.5)
        clients.append(client)
        opened: list[str] = []
        panel = BillingPanel(client, open_url=opened.append)
        qtbot.addWidget(panel)
        panel.show()
        run(qtbot, panel.start())
        return panel, opened

    yield make
    for client in clients:
        run(qtbot, client.close())


def sign_up(qtbot, panel: BillingPanel, email: str) -> None:
    assert panel.stack.currentWidget() is panel.sign_up_page
    qtbot.keyClicks(panel.email, email)
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.stack.currentWidget() is panel.account_page, timeout=10_000)


def buy(qtbot, panel: BillingPanel, opened: list[str], servers: Servers, code: str) -> None:
    if code == "pro_monthly":
        qtbot.mouseClick(panel.upgrade_button, Qt.MouseButton.LeftButton)
    else:
        panel.pack_combo.setCurrentIndex(panel.pack_combo.findData(code))
        qtbot.mouseClick(panel.buy_button, Qt.MouseButton.LeftButton)
    count = len(opened)
    qtbot.waitUntil(lambda: len(opened) > count, timeout=10_000)
    servers.pay(opened[-1])


def test_without_a_relay_the_panel_says_billing_is_off_and_how_to_turn_it_on(qtbot, qloop) -> None:
    panel = BillingPanel(None)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.stack.currentIndex() == 0 and panel.off_label.isVisible()
    assert panel.off_label.text() == BILLING_OFF
    assert "relay_url under [billing]" in BILLING_OFF


def test_the_panel_shows_plan_and_balance_and_a_payment_updates_them_live(
    qtbot, make_panel, servers: Servers
) -> None:
    panel, opened = make_panel()
    sign_up(qtbot, panel, "ada@example.com")
    assert "Plan: Free — up to 20 active alerts, no SMS alerts" in panel.plan_label.text()
    assert panel.balance_label.text() == "Points balance: 0 points"
    assert panel.ledger_model.rowCount() == 0

    buy(qtbot, panel, opened, servers, "points_500")
    assert opened[-1].startswith("https://checkout.stripe.com/")
    # Nobody clicked anything: the relay pushed the payment and the panel followed.
    qtbot.waitUntil(lambda: panel.balance_label.text() == "Points balance: 500 points", timeout=10_000)
    qtbot.waitUntil(lambda: panel.ledger_model.rowCount() == 1, timeout=10_000)
    model = panel.ledger_model
    assert [model.index(0, c).data() for c in (1, 2, 3, 4)] == ["Purchase", "+500", "500", "Bought 500 points"]

    buy(qtbot, panel, opened, servers, "pro_monthly")
    qtbot.waitUntil(lambda: "Plan: Pro" in panel.plan_label.text(), timeout=10_000)
    assert not panel.upgrade_button.isEnabled()
    assert panel.balance_label.text() == "Points balance: 500 points"


def test_the_transfer_form_rejects_bad_input_next_to_the_field_and_sends_nothing(
    qtbot, make_panel, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel, opened = make_panel()
    sign_up(qtbot, panel, "bo@example.com")
    servers.create_account("cy@example.com")
    buy(qtbot, panel, opened, servers, "points_100")
    qtbot.waitUntil(lambda: panel.balance_label.text() == "Points balance: 100 points", timeout=10_000)

    sent: list[tuple[str, int]] = []
    real_transfer = panel.client.transfer

    async def counting(to_email: str, points: int) -> Any:
        sent.append((to_email, points))
        return await real_transfer(to_email, points)

    monkeypatch.setattr(panel.client, "transfer", counting)
    form = panel.transfer
    cases = [
        ("not-an-email", "10", "recipient", "Enter an email address like name@example.com."),
        ("", "10", "recipient", "Enter an email address."),
        ("bo@example.com", "10", "recipient", "That is your own account"),
        ("cy@example.com", "", "points", "Enter how many points to transfer."),
        ("cy@example.com", "-5", "points", "Enter a whole number of points above zero, such as 50."),
        ("cy@example.com", "2.5", "points", "Enter a whole number of points above zero, such as 50."),
        ("cy@example.com", "0", "points", "Enter a whole number of points above zero, such as 50."),
        ("cy@example.com", "101", "points", "You have 100 points; enter 100 or fewer."),
    ]
    for recipient, points, field, message in cases:
        form.recipient.setText(recipient)
        form.points.setText(points)
        qtbot.mouseClick(form.send_button, Qt.MouseButton.LeftButton)
        bad = form.recipient_error if field == "recipient" else form.points_error
        good = form.points_error if field == "recipient" else form.recipient_error
        assert bad.isVisible() and bad.text().startswith(message), (recipient, points, bad.text())
        assert not good.isVisible(), (recipient, points, good.text())
    qtbot.wait(200)
    assert sent == []
    assert servers.balance_of("bo@example.com") == 100 and servers.balance_of("cy@example.com") == 0

    form.points.clear()
    qtbot.keyClicks(form.points, "x")  # checked while typing, too
    assert form.points_error.isVisible()
    form.points.clear()
    qtbot.keyClicks(form.points, "40")
    assert not form.points_error.isVisible()
    form.recipient.setText("cy@example.com")
    qtbot.mouseClick(form.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: form.result.text() == "Sent 40 points to cy@example.com.", timeout=10_000)
    assert sent == [("cy@example.com", 40)]
    qtbot.waitUntil(lambda: panel.balance_label.text() == "Points balance: 60 points", timeout=10_000)
    assert servers.balance_of("cy@example.com") == 40

    form.recipient.setText("nobody@example.com")
    form.points.setText("5")
    qtbot.mouseClick(form.send_button, Qt.MouseButton.LeftButton)  # valid here; the relay knows no such account
    qtbot.waitUntil(form.recipient_error.isVisible, timeout=10_000)
    assert form.recipient_error.text().startswith("No Meridian account uses nobody@example.com")
    assert servers.balance_of("bo@example.com") == 60


def test_validate_transfer_accepts_only_an_email_and_points_within_the_balance() -> None:
    assert validate_transfer("a@b.co", "1,000", 1000) == {}
    assert set(validate_transfer("a@b", "1001", 1000)) == {"recipient", "points"}
    assert validate_transfer("me@x.io", "1", 5, "ME@x.io") == {
        "recipient": "That is your own account; enter the email of the account to receive the points."}


def test_an_unreachable_relay_is_a_sentence_on_the_panel_not_a_frozen_window(qtbot, qloop) -> None:
    load, save, _ = memory_token_io(StoredToken("ada@example.com", "mrt_stored-token"))
    client = BillingClient("http://127.0.0.1:9", guard=Guard("relay", FAST), load_token=load, save_token=save)
    panel = BillingPanel(client, open_url=lambda url: None)
    qtbot.addWidget(panel)
    panel.show()
    try:
        run(qtbot, panel.start())
        assert panel.stack.currentWidget() is panel.account_page
        assert panel.status.text().startswith("The billing relay at http://127.0.0.1:9 is not answering")
        assert "mrt_stored-token" not in panel.status.text() + panel.plan_label.text()
    finally:
        run(qtbot, client.close())

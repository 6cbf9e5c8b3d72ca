"""The billing panel: plan, points balance and history; upgrade, buy points, transfer, manage billing.

It only talks to `app.billing.client.BillingClient` (which talks to the relay)
and never blocks the window: every call is an asyncio task on the Qt-hosted
loop (qasync), and buttons stay disabled while theirs runs. No dialog is run
modally from a coroutine. Checkout and the customer portal open in the
browser; the balance updates by itself when the relay pushes the payment.

The transfer form checks its input next to each field as the user types and
sends nothing until both fields are right: a recipient email and a whole number
of points above zero and not above the balance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.billing.accounts import email_problem
from app.billing.catalog import FREE_ALERT_LIMIT, PACKS, PRO_PLAN
from app.billing.client import BillingClient, RelayError
from app.billing.errors import BillingError
from app.billing.models import AccountView, LedgerRow
from ui import theme
from ui.table_model import Index, RowsModel

__all__ = ["BILLING_OFF", "BillingPanel", "LedgerModel", "validate_transfer"]

log = logging.getLogger(__name__)

BILLING_OFF = (
    "Billing is off: no billing relay is configured. To turn it on, set relay_url under [billing] in "
    "settings.toml to your billing relay's address (for example https://relay.example.com) and restart "
    "Meridian Terminal."
)
_KINDS = {"purchase": "Purchase", "spend": "Spend", "transfer": "Transfer", "refund": "Refund"}


def validate_transfer(recipient: str, points: str, balance: int, own_email: str | None = None) -> dict[str, str]:
    """Problems with the transfer form, by field ("recipient", "points"); empty when it may be sent."""
    problems: dict[str, str] = {}
    email = email_problem(recipient)
    if email:
        problems["recipient"] = email
    elif own_email and recipient.strip().lower() == own_email.strip().lower():
        problems["recipient"] = "That is your own account; enter the email of the account to receive the points."
    text = points.strip().replace(",", "")
    if not text:
        problems["points"] = "Enter how many points to transfer."
    elif not text.isdigit() or int(text) == 0:
        problems["points"] = "Enter a whole number of points above zero, such as 50."
    elif int(text) > balance:
        unit = "point" if balance == 1 else "points"
        problems["points"] = f"You have {balance:,} {unit}; enter {balance:,} or fewer."
    return problems


class LedgerModel(RowsModel):
    """The points history, newest first."""

    columns = ("When", "Type", "Points", "Balance", "Details")

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row: LedgerRow = self.rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return row.created.astimezone().strftime("%Y-%m-%d %H:%M")
            if column == 1:
                return _KINDS.get(row.kind, row.kind)
            if column == 2:
                return f"{row.points:+,}"
            if column == 3:
                return f"{row.balance_after:,}"
            return row.note
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (2, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and column == 2:
            return QColor(theme.UP if row.points > 0 else theme.DOWN)
        return None


def _error_label() -> QLabel:
    label = QLabel("")
    label.setStyleSheet(f"color: {theme.DOWN};")
    label.setWordWrap(True)
    label.hide()
    return label


def _open_in_browser(url: str) -> None:
    QDesktopServices.openUrl(QUrl(url))


class TransferForm(QGroupBox):
    """Recipient and points, each with its own error line underneath; `send_button` is the only way out."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Transfer points", parent)
        self.recipient = QLineEdit()
        self.recipient.setPlaceholderText("name@example.com")
        self.recipient_error = _error_label()
        self.points = QLineEdit()
        self.points.setPlaceholderText("e.g. 50")
        self.points_error = _error_label()
        self.send_button = QPushButton("Transfer")
        self.result = QLabel("")
        self.result.setWordWrap(True)
        form = QFormLayout(self)
        recipient_box = QVBoxLayout()
        recipient_box.addWidget(self.recipient)
        recipient_box.addWidget(self.recipient_error)
        points_box = QVBoxLayout()
        points_box.addWidget(self.points)
        points_box.addWidget(self.points_error)
        form.addRow("Recipient email", recipient_box)
        form.addRow("Points", points_box)
        form.addRow("", self.send_button)
        form.addRow("", self.result)

    def show_problems(self, problems: dict[str, str], only: set[str] | None = None) -> None:
        for name, label in (("recipient", self.recipient_error), ("points", self.points_error)):
            if only is not None and name not in only:
                continue
            message = problems.get(name, "")
            label.setText(message)
            label.setVisible(bool(message))


class BillingPanel(QWidget):
    def __init__(
        self,
        client: BillingClient | None,
        *,
        open_url: Callable[[str], object] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.client = client
        self._open_url = open_url or _open_in_browser
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ledger_task: asyncio.Task[None] | None = None
        self._ledger_again = False
        self._unsubscribe: Callable[[], None] | None = None
        self.setObjectName("billingPanel")

        self.stack = QStackedWidget()
        layout = QVBoxLayout(self)
        layout.addWidget(self.stack)

        self.off_label = QLabel(BILLING_OFF)
        self.off_label.setWordWrap(True)
        self.off_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stack.addWidget(self._page(self.off_label))

        self._build_sign_up()
        self._build_account()

        if client is None:
            self.stack.setCurrentIndex(0)
        else:
            self.stack.setCurrentWidget(self.sign_up_page)
            self.sign_up_status.setText("Connecting to the billing relay…")
            self._unsubscribe = client.add_listener(self._account_changed)
            self.destroyed.connect(lambda *_: self._forget_listener())

    # ------------------------------------------------------------------ layout

    @staticmethod
    def _page(*widgets: QWidget) -> QWidget:
        page = QWidget()
        box = QVBoxLayout(page)
        for widget in widgets:
            box.addWidget(widget)
        box.addStretch(1)
        return page

    def _build_sign_up(self) -> None:
        intro = QLabel(
            "Create a billing account to upgrade to Pro (SMS alerts and more than "
            f"{FREE_ALERT_LIMIT} active alerts) or to buy points. Your account key is kept in this computer's keyring."
        )
        intro.setWordWrap(True)
        self.email = QLineEdit()
        self.email.setPlaceholderText("name@example.com")
        self.email_error = _error_label()
        self.create_button = QPushButton("Create account")
        self.sign_up_status = QLabel("")
        self.sign_up_status.setWordWrap(True)
        form = QFormLayout()
        email_box = QVBoxLayout()
        email_box.addWidget(self.email)
        email_box.addWidget(self.email_error)
        form.addRow("Email", email_box)
        form.addRow("", self.create_button)
        holder = QWidget()
        holder.setLayout(form)
        self.sign_up_page = self._page(intro, holder, self.sign_up_status)
        self.stack.addWidget(self.sign_up_page)
        self.create_button.clicked.connect(self._create_clicked)
        self.email.returnPressed.connect(self._create_clicked)

    def _build_account(self) -> None:
        self.plan_label = QLabel("")
        self.plan_label.setWordWrap(True)
        self.balance_label = QLabel("")
        self.balance_label.setStyleSheet("font-size: 16px; font-weight: 600;")
        self.upgrade_button = QPushButton(f"Upgrade to Pro (${PRO_PLAN.price:,.2f} a month)")
        self.pack_combo = QComboBox()
        for pack in PACKS:
            self.pack_combo.addItem(pack.label, pack.code)
        self.buy_button = QPushButton("Buy points")
        self.portal_button = QPushButton("Manage billing…")
        self.portal_button.setToolTip("Opens Stripe's customer portal: cards, invoices, cancelling Pro")
        self.refresh_button = QPushButton("Refresh")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        buy_row = QHBoxLayout()
        buy_row.addWidget(self.pack_combo, 1)
        buy_row.addWidget(self.buy_button)
        actions = QHBoxLayout()
        actions.addWidget(self.upgrade_button)
        actions.addWidget(self.portal_button)
        actions.addWidget(self.refresh_button)
        actions.addStretch(1)

        self.ledger_model = LedgerModel(self)
        self.ledger_view = QTableView()
        self.ledger_view.setModel(self.ledger_model)
        self.ledger_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.ledger_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.ledger_view.verticalHeader().hide()
        self.ledger_view.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)

        self.transfer = TransferForm()

        page = QWidget()
        box = QVBoxLayout(page)
        box.addWidget(self.plan_label)
        box.addWidget(self.balance_label)
        box.addLayout(actions)
        box.addLayout(buy_row)
        box.addWidget(self.status)
        box.addWidget(QLabel("Points history"))
        box.addWidget(self.ledger_view, 1)
        box.addWidget(self.transfer)
        self.account_page = page
        self.stack.addWidget(page)

        self.upgrade_button.clicked.connect(lambda: self._spawn(self._checkout(PRO_PLAN.code), self.upgrade_button))
        self.buy_button.clicked.connect(
            lambda: self._spawn(self._checkout(str(self.pack_combo.currentData())), self.buy_button))
        self.portal_button.clicked.connect(lambda: self._spawn(self._portal(), self.portal_button))
        self.refresh_button.clicked.connect(lambda: self._spawn(self.refresh(), self.refresh_button))
        self.transfer.send_button.clicked.connect(self._transfer_clicked)
        self.transfer.recipient.textEdited.connect(lambda _t: self._check_transfer({"recipient"}))
        self.transfer.points.textEdited.connect(lambda _t: self._check_transfer({"points"}))

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Coroutine[Any, Any, Any], button: QPushButton | None = None) -> asyncio.Task[Any]:
        """Run `coro` on the loop; its button is disabled meanwhile and a BillingError becomes the status line."""
        if button is not None:
            button.setEnabled(False)
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            try:
                if button is not None:
                    button.setEnabled(True)
                    self._apply_plan_buttons()
                if t.cancelled():
                    return
                exc = t.exception()
                if isinstance(exc, BillingError):
                    self._say(str(exc), error=True)
                elif exc is not None:
                    log.error("billing panel task failed", exc_info=exc)
                    self._say("Something went wrong in the billing panel; the details are in the log.", error=True)
            except RuntimeError:
                pass  # the panel was closed while the call ran

        task.add_done_callback(done)
        return task

    def _say(self, text: str, *, error: bool = False) -> None:
        label = self.status if self.stack.currentWidget() is self.account_page else self.sign_up_status
        label.setStyleSheet(f"color: {theme.DOWN};" if error else "")
        label.setText(text)

    # ------------------------------------------------------------------ start and refresh

    async def start(self) -> None:
        """Sign in with the stored token (if any) and show the account; call once when the panel is shown."""
        if self.client is None:
            return
        try:
            account = await self.client.start()
        except BillingError as exc:
            # A token the relay no longer knows (401) means: create an account again. Anything else (the relay
            # is down) keeps the account page with the reason; Refresh tries again.
            refused = isinstance(exc, RelayError) and exc.status == 401
            signed_in = self.client.signed_in and not refused
            self.stack.setCurrentWidget(self.account_page if signed_in else self.sign_up_page)
            if signed_in and self.client.email:
                self.plan_label.setText(f"{self.client.email}\nYour plan and points could not be loaded.")
            self._say(str(exc), error=True)
            return
        if account is None:
            self.stack.setCurrentWidget(self.sign_up_page)
            self.sign_up_status.setText("")
            return
        await self._load_ledger()

    async def refresh(self) -> None:
        if self.client is None:
            return
        if self.client.account is None:
            await self.start()
            return
        await self.client.refresh()
        await self._load_ledger()
        self._say("")

    async def _load_ledger(self) -> None:
        if self.client is None or self.client.account is None:
            return
        rows = await self.client.ledger()
        self.ledger_model.set_rows(rows)

    def _reload_ledger_soon(self) -> None:
        # Payments can arrive in bursts: one reload at a time, and one more if something changed meanwhile.
        if self._ledger_task is not None and not self._ledger_task.done():
            self._ledger_again = True
            return

        async def reload() -> None:
            while True:
                self._ledger_again = False
                try:
                    await self._load_ledger()
                except BillingError as exc:
                    self._say(str(exc), error=True)
                if not self._ledger_again:
                    return

        self._ledger_task = self._spawn(reload())

    def _account_changed(self, account: AccountView) -> None:
        try:
            self.stack.setCurrentWidget(self.account_page)
        except RuntimeError:  # the Qt side is gone; the listener is removed on destroy, this is a race
            return
        if account.is_pro:
            status = {"past_due": " (payment overdue: update your card under Manage billing)"}
            plan = f"Plan: Pro — SMS alerts and unlimited active alerts{status.get(account.subscription_status, '')}"
        else:
            plan = f"Plan: Free — up to {FREE_ALERT_LIMIT} active alerts, no SMS alerts"
        self.plan_label.setText(f"{account.email}\n{plan}")
        unit = "point" if account.balance == 1 else "points"
        self.balance_label.setText(f"Points balance: {account.balance:,} {unit}")
        self._apply_plan_buttons()
        if self.transfer.points.text().strip():
            self._check_transfer({"points"})  # the limit moved with the balance
        self._reload_ledger_soon()

    def _apply_plan_buttons(self) -> None:
        account = self.client.account if self.client else None
        if account is not None and account.is_pro:
            self.upgrade_button.setEnabled(False)
            self.upgrade_button.setToolTip("You have Pro; manage or cancel it under Manage billing.")

    def _forget_listener(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ------------------------------------------------------------------ actions

    def _create_clicked(self) -> None:
        problem = email_problem(self.email.text())
        self.email_error.setText(problem or "")
        self.email_error.setVisible(bool(problem))
        if problem or self.client is None:
            return
        self.sign_up_status.setText("Creating your account…")
        self._spawn(self._create(self.email.text().strip()), self.create_button)

    async def _create(self, email: str) -> None:
        assert self.client is not None
        await self.client.create_account(email)
        self._say("Account created. Upgrade to Pro or buy points below.")
        await self._load_ledger()

    async def _checkout(self, item: str) -> None:
        assert self.client is not None
        self._say("Opening Stripe's checkout page in your browser…")
        url = await self.client.checkout_url(item)
        self._open_url(url)
        self._say("Finish paying in your browser; your plan and points update here once Stripe confirms it.")

    async def _portal(self) -> None:
        assert self.client is not None
        url = await self.client.portal_url()
        self._open_url(url)
        self._say("Stripe's billing portal is open in your browser.")

    def _balance(self) -> int:
        account = self.client.account if self.client else None
        return account.balance if account else 0

    def _check_transfer(self, fields: set[str] | None = None) -> dict[str, str]:
        account = self.client.account if self.client else None
        problems = validate_transfer(self.transfer.recipient.text(), self.transfer.points.text(), self._balance(),
                                     account.email if account else None)
        self.transfer.show_problems(problems, fields)
        return problems

    def _transfer_clicked(self) -> None:
        problems = self._check_transfer()
        if problems or self.client is None:
            self.transfer.result.setText("")
            return  # nothing is sent until every field is right
        recipient = self.transfer.recipient.text().strip()
        points = int(self.transfer.points.text().strip().replace(",", ""))
        self.transfer.result.setText("Transferring…")
        self._spawn(self._transfer(recipient, points), self.transfer.send_button)

    async def _transfer(self, recipient: str, points: int) -> None:
        assert self.client is not None
        try:
            await self.client.transfer(recipient, points)
        except RelayError as exc:
            # The relay's refusal goes next to the field it is about, like the form's own checks.
            self.transfer.result.setText("")
            if exc.code == "not_found" or "own account" in str(exc):
                self.transfer.show_problems({"recipient": str(exc)}, {"recipient"})
            elif exc.code in ("insufficient_points", "invalid_request"):
                self.transfer.show_problems({"points": str(exc)}, {"points"})
            else:
                raise
            return
        self.transfer.result.setText(f"Sent {points:,} points to {recipient}.")
        self.transfer.recipient.clear()
        self.transfer.points.clear()
        self._reload_ledger_soon()

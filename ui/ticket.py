"""The order ticket: buy or sell, market / limit / stop-limit / OCO, checked as the user types.

Every keystroke re-runs `app.trading.rules.check_order` against the market's rules
and the last balances, and each problem shows next to its field; Submit is enabled
only for an order that passes. What will be sent (rounded amounts and prices, the
order value, the estimated fee, the balance after) is shown before sending, and,
unless the user turned it off, confirmed in a dialog. Enter submits, Esc clears.
Nothing typed is lost when an order is refused.

OCO (one-cancels-the-other: a maker-only limit leg plus a stop-limit leg on one amount) is offered
only when the venue has it (`supports_oco`: Binance, the simulated market, paper trading). Its form
is the limit price, the stop price, the stop-limit price and the amount in the base currency,
checked by `rules.check_oco` against the last traded price, as Binance checks it.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.domain import Balance, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from app.trading.orders import new_client_order_id
from app.trading.rules import OcoCheck, OrderCheck, check_oco, check_order
from app.venues.base import OcoRequest
from ui import format as fmt
from ui import theme

log = logging.getLogger(__name__)
TYPES = {"Limit": OrderType.LIMIT, "Market": OrderType.MARKET, "Stop-limit": OrderType.STOP_LIMIT}
OCO = "OCO"  # the type box's entry for a one-cancels-the-other list, where the venue offers it


def _error_label() -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    label.setStyleSheet(f"color: {theme.DOWN};")
    label.hide()
    return label


class OrderTicket(QWidget):
    def __init__(self, runtime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.symbol = ""
        self.balances: dict[str, Balance] = {}
        self.check: OrderCheck | OcoCheck | None = None
        self.confirm = True
        self.sent: list[OrderRequest | OcoRequest] = []  # what this ticket sent, for tests and the log
        self._task: asyncio.Task[None] | None = None
        self.sending = False  # one order at a time: set before anything is scheduled, so no second press slips in

        self.title = QLabel("")
        self.title.setStyleSheet(f"color: {theme.TEXT}; font-weight: bold;")
        self.buy = QPushButton("Buy")
        self.sell = QPushButton("Sell")
        for button, colour in ((self.buy, theme.UP), (self.sell, theme.DOWN)):
            button.setCheckable(True)
            button.setStyleSheet(f"QPushButton:checked {{ background: {colour}; color: white; font-weight: bold; }}")
        self.buy.setChecked(True)
        self.side_group = QButtonGroup(self)
        self.side_group.addButton(self.buy)
        self.side_group.addButton(self.sell)
        self.side_group.buttonClicked.connect(lambda _b: self.revalidate())
        self.type = QComboBox()
        self.type.addItems(list(TYPES))
        self.type.currentIndexChanged.connect(lambda _i: self._type_changed())

        self.price = QLineEdit()
        self.price_error = _error_label()
        self.stop = QLineEdit()
        self.stop_error = _error_label()
        self.stop_limit = QLineEdit()  # an OCO's stop-limit leg: its limit price once the stop triggers
        self.stop_limit_error = _error_label()
        self.amount = QLineEdit()
        self.amount_error = _error_label()
        self.amount_unit = QComboBox()
        self.amount_unit.currentIndexChanged.connect(lambda _i: self.revalidate())
        self.percent = QSlider(Qt.Orientation.Horizontal)
        self.percent.setRange(0, 100)
        self.percent.setToolTip("Use this share of the free balance")
        self.percent.valueChanged.connect(self._percent_changed)
        self.tif = QComboBox()
        self.tif.addItems([t.value for t in TimeInForce])
        self.post_only = QCheckBox("Post-only")
        self.confirm_box = QCheckBox("Confirm before sending")
        self.confirm_box.setChecked(True)
        self.confirm_box.toggled.connect(lambda on: setattr(self, "confirm", on))
        for field in (self.price, self.stop, self.stop_limit, self.amount):
            field.textEdited.connect(lambda _t: self.revalidate())  # Enter reaches keyPressEvent: one path only
        self.tif.currentIndexChanged.connect(lambda _i: self.revalidate())
        self.post_only.toggled.connect(lambda _b: self.revalidate())

        self.preview = QLabel("")
        self.preview.setWordWrap(True)
        self.order_error = _error_label()
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet(f"color: {theme.MUTED};")
        self.submit = QPushButton("Buy")
        self.submit.clicked.connect(self.submit_clicked)
        self.message = QLabel("")
        self.message.setWordWrap(True)

        sides = QHBoxLayout()
        sides.addWidget(self.buy)
        sides.addWidget(self.sell)
        amount_row = QHBoxLayout()
        amount_row.addWidget(self.amount, 1)
        amount_row.addWidget(self.amount_unit)
        form = QFormLayout()
        form.addRow(sides)
        form.addRow("Type", self.type)
        self.stop_label = QLabel("Stop price")
        form.addRow(self.stop_label, self.stop)
        form.addRow("", self.stop_error)
        self.stop_limit_label = QLabel("Stop-limit price")
        form.addRow(self.stop_limit_label, self.stop_limit)
        form.addRow("", self.stop_limit_error)
        self.price_label = QLabel("Price")
        form.addRow(self.price_label, self.price)
        form.addRow("", self.price_error)
        form.addRow("Amount", amount_row)
        form.addRow("", self.amount_error)
        form.addRow("% of balance", self.percent)
        tif_row = QHBoxLayout()
        tif_row.addWidget(self.tif)
        tif_row.addWidget(self.post_only)
        form.addRow("Time in force", tif_row)
        column = QVBoxLayout(self)
        column.setContentsMargins(8, 6, 8, 6)
        column.addWidget(self.title)
        column.addLayout(form)
        column.addWidget(self.preview)
        column.addWidget(self.notes)
        column.addWidget(self.order_error)
        column.addWidget(self.confirm_box)
        column.addWidget(self.submit)
        column.addWidget(self.message)
        column.addStretch(1)
        self.balance_timer = QTimer(self)
        self.balance_timer.setInterval(3000)
        self.balance_timer.timeout.connect(self.refresh_balances)
        self.balance_timer.start()
        self._refresh_types()
        self._type_changed()

    # -- what the ticket is for -------------------------------------------------------------

    @property
    def side(self) -> Side:
        return Side.BUY if self.buy.isChecked() else Side.SELL

    @property
    def is_oco(self) -> bool:
        return self.type.currentText() == OCO

    @property
    def order_type(self) -> OrderType:
        """The single order's type (an OCO is checked and sent as a list; its legs are limit + stop-limit)."""
        return TYPES.get(self.type.currentText(), OrderType.LIMIT)

    @property
    def venue_offers_oco(self) -> bool:
        return bool(getattr(self.runtime.venue, "supports_oco", False))

    def _refresh_types(self) -> None:
        """Offer OCO only where the venue has it (the runtime may swap its venue once keys are read)."""
        has = self.type.findText(OCO) >= 0
        if self.venue_offers_oco and not has:
            self.type.addItem(OCO)
        elif not self.venue_offers_oco and has:
            self.type.removeItem(self.type.findText(OCO))  # the current item changes: the form follows

    def set_symbol(self, symbol: str) -> None:
        if symbol == self.symbol:
            return
        self.symbol = symbol
        self._refresh_types()
        market = self.runtime.markets.get(symbol)
        self.title.setText(f"{symbol}  ·  {getattr(self.runtime.venue, 'title', self.runtime.venue.name)}")
        self.amount_unit.blockSignals(True)
        self.amount_unit.clear()
        if market is not None:
            self.amount_unit.addItems([market.base, market.quote])
        self.amount_unit.blockSignals(False)
        self.fill_price_from_market()
        self.refresh_balances()

    def fill_price_from_market(self) -> None:
        """Prefill the price from the book: the ask to buy, the bid to sell."""
        ticker = self.runtime.state.tickers.get(self.symbol)
        market = self.runtime.markets.get(self.symbol)
        if ticker is None or market is None:
            return
        value = (ticker.ask if self.side is Side.BUY else ticker.bid) or ticker.last
        self.set_price(value)

    def set_price(self, value: Decimal | float) -> None:
        """Click-to-fill from the chart or the watchlist."""
        market = self.runtime.markets.get(self.symbol)
        decimals = market.price_decimals if market else 8
        self.price.setText(f"{Decimal(str(value)):.{decimals}f}")
        self.revalidate()

    def refresh_balances(self) -> None:
        self._refresh_types()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._load_balances())

    async def _load_balances(self) -> None:
        try:
            balances = await self.runtime.venue.fetch_balance()
        except Exception as exc:  # no keys, or the venue down: the ticket says so, typing still works
            if shiboken6.isValid(self.notes):
                self.balances = {}
                self.revalidate()
                self.order_error.setText(str(exc))
                self.order_error.show()
            return
        if shiboken6.isValid(self.notes):
            self.balances = balances
            if not self.price.text().strip():
                self.fill_price_from_market()  # prices may not have arrived when the symbol was chosen
            self.revalidate()

    # -- checking as the user types -----------------------------------------------------------

    def _type_changed(self) -> None:
        kind, oco = self.order_type, self.is_oco
        limit = kind is not OrderType.MARKET
        for widget in (self.price, self.price_label):
            widget.setVisible(limit)
        for widget in (self.stop, self.stop_label):
            widget.setVisible(kind is OrderType.STOP_LIMIT or oco)
        for widget in (self.stop_limit, self.stop_limit_label):
            widget.setVisible(oco)
        if not oco:
            self.stop_limit_error.hide()
        self.price_label.setText("Limit price" if oco else "Price")
        self.post_only.setEnabled(kind is OrderType.LIMIT and not oco)  # an OCO's limit leg is always maker-only
        self.tif.setEnabled(kind is OrderType.LIMIT and not oco)  # both legs are good-till-cancelled
        if oco:
            self.amount_unit.setCurrentIndex(0)  # one amount for both legs, in the base currency
        self.amount_unit.setEnabled(not oco)
        self.revalidate()

    def _percent_changed(self, value: int) -> None:
        market = self.runtime.markets.get(self.symbol)
        if market is None or not value:
            return
        in_quote = self.amount_unit.currentIndex() == 1
        if self.side is Side.BUY:
            free = self.balances.get(market.quote)
            if free is None:
                return
            quote = free.free * value / 100
            if in_quote:
                self.amount.setText(f"{quote:f}")
            else:
                price = self._price_for_amounts()
                if not price:
                    return
                self.amount.setText(f"{(quote / price).quantize(market.amount_step, rounding='ROUND_DOWN'):f}")
        else:
            free = self.balances.get(market.base)
            if free is None:
                return
            self.amount.setText(f"{(free.free * value / 100).quantize(market.amount_step, rounding='ROUND_DOWN'):f}")
        self.revalidate()

    def _price_for_amounts(self) -> Decimal | None:
        try:
            price = Decimal(self.price.text().replace(",", "")) if self.price.text().strip() else self._reference()
            if self.is_oco and self.stop_limit.text().strip() and price is not None:
                # A buy OCO reserves its dearer leg: size the amount so that one fits the balance.
                price = max(price, Decimal(self.stop_limit.text().replace(",", "")))
            return price
        except ArithmeticError:
            return self._reference()

    def _reference(self) -> Decimal | None:
        ticker = self.runtime.state.tickers.get(self.symbol)
        if ticker is None:
            return None
        return (ticker.ask if self.side is Side.BUY else ticker.bid) or ticker.last

    def revalidate(self) -> OrderCheck | OcoCheck | None:
        market = self.runtime.markets.get(self.symbol)
        side = self.side
        label = f"{'Buy' if side is Side.BUY else 'Sell'} {market.base if market else ''}".strip()
        self.submit.setText(f"{label} (OCO)" if self.is_oco else label)
        colour = theme.UP if side is Side.BUY else theme.DOWN
        self.submit.setStyleSheet(f"QPushButton {{ background: {colour}; color: white; font-weight: bold; padding: 6px; }}"
                                  "QPushButton:disabled { background: #3a3f4b; color: #7f8796; }")
        if market is None:
            self.submit.setEnabled(False)
            return None
        if self.is_oco:
            return self._revalidate_oco(market)
        kind = self.order_type
        check = check_order(
            market, side=side, type=kind, amount=self.amount.text(),
            price=self.price.text() if kind is not OrderType.MARKET else None,
            stop_price=self.stop.text() if kind is OrderType.STOP_LIMIT else None,
            amount_in_quote=self.amount_unit.currentIndex() == 1,
            reference_price=self._reference(), balances=self.balances or None,
            client_order_id="preview", time_in_force=TimeInForce(self.tif.currentText()) if kind is OrderType.LIMIT else TimeInForce.GTC,
            post_only=self.post_only.isChecked() and kind is OrderType.LIMIT,
            venue_title=str(getattr(self.runtime.venue, "title", self.runtime.venue.name)),
        )
        self.check = check
        typing = bool(self.amount.text().strip())
        for label, name in ((self.amount_error, "amount"), (self.price_error, "price"), (self.stop_error, "stop_price")):
            messages = check.messages(name) if (typing or name != "amount") and (self.amount.text() or self.price.text()) else ()
            label.setText(" ".join(messages))
            label.setVisible(bool(messages))
        self._show_outcome(check, market, show_order_problems=typing, value_label="Value")
        return check

    def _revalidate_oco(self, market) -> OcoCheck:  # noqa: ANN001 - app.domain.Market
        ticker = self.runtime.state.tickers.get(self.symbol)
        check = check_oco(
            market, side=self.side, amount=self.amount.text(), price=self.price.text(), stop_price=self.stop.text(),
            stop_limit_price=self.stop_limit.text(),
            # Binance checks an OCO's prices against the last trade, and its limit leg against the book.
            last_price=ticker.last if ticker is not None else None, reference_price=self._reference(),
            balances=self.balances or None, list_client_id="preview", limit_client_id="preview-l",
            stop_client_id="preview-s", venue_title=str(getattr(self.runtime.venue, "title", self.runtime.venue.name)),
        )
        self.check = check
        typing = bool(self.amount.text().strip())
        # The price field is prefilled from the book, so the form counts as started once anything else is typed.
        started = any(f.text().strip() for f in (self.amount, self.stop, self.stop_limit))
        for label, name, field in ((self.amount_error, "amount", self.amount), (self.price_error, "price", self.price),
                                   (self.stop_error, "stop_price", self.stop),
                                   (self.stop_limit_error, "stop_limit_price", self.stop_limit)):
            # An empty field says "enter ..." only once the user has started on the form, and never for the amount
            # before it is typed; a field with text always shows what is wrong with it.
            shown = field.text().strip() or (started and name != "amount") or (typing and name == "amount")
            messages = check.messages(name) if shown else ()
            label.setText(" ".join(messages))
            label.setVisible(bool(messages))
        # An OCO reserves for its dearer leg: the value shown is an upper bound.
        self._show_outcome(check, market, show_order_problems=started, value_label="Value up to")
        return check

    def _show_outcome(self, check: OrderCheck | OcoCheck, market, *, show_order_problems: bool,  # noqa: ANN001
                      value_label: str) -> None:
        """What a single order and an OCO list show alike: problems of the whole order, the preview
        (value, estimated fee, balances after), the rounding notes and whether Submit is enabled."""
        other = [p.message for p in check.problems if p.field in ("total", "balance", "order")] \
            if show_order_problems else []
        self.order_error.setText(" ".join(other))
        self.order_error.setVisible(bool(other))
        d = market.price_decimals
        parts = []
        if check.notional is not None:
            parts.append(f"{value_label} {fmt.price(check.notional, d)} {market.quote}")
        if check.fee is not None:
            parts.append(f"est. fee {fmt.price(check.fee, max(d, 2))} {market.quote}")
        if check.balance_after:
            parts.append("after: " + ", ".join(f"{v:f} {a}" for a, v in check.balance_after.items()))
        self.preview.setText("  ·  ".join(parts))
        self.notes.setText(" ".join(check.notes))
        self.submit.setEnabled(check.ok and self.runtime.orders is not None and not self.sending)

    # -- sending ----------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key.Key_Escape:
            self.clear()
            return
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submit_clicked()
            return
        super().keyPressEvent(event)

    def clear(self) -> None:
        for field in (self.amount, self.stop, self.stop_limit):
            field.clear()
        self.percent.setValue(0)
        self.message.setText("")
        self.fill_price_from_market()

    def submit_clicked(self) -> None:
        if self.sending:
            return  # a second Enter or click while this order is being confirmed or sent
        check = self.revalidate()
        if check is None or not check.ok or self.runtime.orders is None:
            return
        self.sending = True
        self.submit.setEnabled(False)
        if isinstance(check, OcoCheck):
            assert check.request is not None
            r = check.request
            oco = OcoRequest(r.symbol, r.side, r.amount, r.price, r.stop_price, r.stop_limit_price,
                             new_client_order_id(), new_client_order_id(), new_client_order_id())
            asyncio.ensure_future(self._send_once(oco, check))
            return
        assert isinstance(check, OrderCheck) and check.request is not None
        request = OrderRequest(
            check.request.symbol, check.request.side, check.request.type, check.request.amount,
            new_client_order_id(), price=check.request.price, stop_price=check.request.stop_price,
            time_in_force=check.request.time_in_force, post_only=check.request.post_only,
        )
        asyncio.ensure_future(self._send_once(request, check))

    async def _send_once(self, request: OrderRequest | OcoRequest, check: OrderCheck | OcoCheck) -> None:
        try:
            if isinstance(request, OcoRequest):
                assert isinstance(check, OcoCheck)
                await self._send_oco(request, check)
            else:
                assert isinstance(check, OrderCheck)
                await self._send(request, check)
        finally:
            self.sending = False  # before this coroutine returns: the next press is the user's
            if shiboken6.isValid(self.submit):
                self.revalidate()

    def describe(self, request: OrderRequest, check: OrderCheck) -> str:
        market = self.runtime.markets[request.symbol]
        what = f"{request.side.value.capitalize()} {request.amount:f} {market.base} {request.symbol}"
        if request.type is OrderType.MARKET:
            what += " at market"
        else:
            what += f" limit {request.price:f} {market.quote}"
        if request.stop_price is not None:
            what += f", stop {request.stop_price:f}"
        if request.type is OrderType.LIMIT:
            what += f", {request.time_in_force.value}" + (", post-only" if request.post_only else "")
        venue = getattr(self.runtime.venue, "title", self.runtime.venue.name)
        value = f"{check.notional:f} {market.quote}" if check.notional is not None else "?"
        return f"{what} on {venue}.\nValue about {value}; client order id {request.client_order_id}."

    def describe_oco(self, request: OcoRequest, check: OcoCheck) -> str:
        market = self.runtime.markets[request.symbol]
        q = market.quote
        moves = "rises" if request.side is Side.BUY else "falls"
        venue = getattr(self.runtime.venue, "title", self.runtime.venue.name)
        value = f"{check.notional:f} {q}" if check.notional is not None else "?"
        return (f"{request.side.value.capitalize()} {request.amount:f} {market.base} {request.symbol} as an OCO on "
                f"{venue}:\nlimit {request.price:f} {q} (maker-only), or, if the price {moves} to "
                f"{request.stop_price:f} {q}, a stop-limit at {request.stop_limit_price:f} {q}.\n"
                f"Whichever fills or triggers first cancels the other. Value up to {value}; "
                f"list id {request.list_client_id}.")

    async def _confirmed(self, text: str) -> bool:
        """Ask before sending (when the user wants that): a window-modal box and a future, never exec()."""
        if not self.confirm:
            return True
        box = QMessageBox(QMessageBox.Icon.Question, "Send this order?", text,
                          QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel, self)
        answer = asyncio.get_running_loop().create_future()
        box.finished.connect(lambda result: answer.done() or answer.set_result(result))
        self.confirm_dialog = box
        box.open()  # no nested event loop (exec() would re-enter asyncio)
        if await answer != QMessageBox.StandardButton.Ok:
            self.message.setText("Not sent.")
            return False
        return True

    async def _send_oco(self, request: OcoRequest, check: OcoCheck) -> None:
        if not await self._confirmed(self.describe_oco(request, check)):
            return
        self.submit.setEnabled(False)
        self.message.setText("Sending…")
        try:
            self.sent.append(request)
            legs: tuple[Order, Order] = await self.runtime.orders.submit_oco(request)
        except Exception as exc:  # refused before sending: the sentence, and the form keeps what was typed
            if shiboken6.isValid(self.message):
                self.message.setStyleSheet(f"color: {theme.DOWN};")
                self.message.setText(str(exc))
                self.submit.setEnabled(True)
            return
        if not shiboken6.isValid(self.message):
            return
        good = all(o.status not in (OrderStatus.REJECTED, OrderStatus.UNKNOWN) for o in legs)
        self.message.setStyleSheet(f"color: {theme.UP if good else theme.WARN};")
        states = ", ".join(f"{name} {o.status.value.replace('_', ' ')}" for name, o in zip(("limit", "stop-limit"), legs))
        reasons = " ".join(dict.fromkeys(o.reason for o in legs if o.reason))  # one sentence when both share it
        self.message.setText(f"OCO {request.side.value} {request.amount:f} {request.symbol}: {states}."
                             + (f" {reasons}" if reasons else ""))
        self.amount.clear()
        self.percent.setValue(0)
        self.refresh_balances()

    async def _send(self, request: OrderRequest, check: OrderCheck) -> None:
        if not await self._confirmed(self.describe(request, check)):
            return
        self.submit.setEnabled(False)
        self.message.setText("Sending…")
        try:
            self.sent.append(request)
            order = await self.runtime.orders.submit(request)
        except Exception as exc:  # a refusal before sending: the sentence, the form keeps what was typed
            if shiboken6.isValid(self.message):
                self.message.setStyleSheet(f"color: {theme.DOWN};")
                self.message.setText(str(exc))
                self.submit.setEnabled(True)
            return
        if not shiboken6.isValid(self.message):
            return
        good = order.status not in (OrderStatus.REJECTED, OrderStatus.UNKNOWN)
        self.message.setStyleSheet(f"color: {theme.UP if good else theme.WARN};")
        state = order.status.value.replace("_", " ")
        self.message.setText(f"{request.side.value.capitalize()} {request.amount:f} {request.symbol}: {state}."
                             + (f" {order.reason}" if order.reason else ""))
        self.amount.clear()
        self.percent.setValue(0)
        self.refresh_balances()

    def shutdown(self) -> None:
        self.balance_timer.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()

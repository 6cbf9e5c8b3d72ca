"""Risk limits: refused before anything is sent, with the rule and the numbers in the message.

Limits are in the quote currency of the order (USDT for the usual pairs); 0 means no
limit. A refusal raises `RiskLimitExceeded` (an `OrderRejected`, so it is shown where
the order was typed) and publishes `risk.limit.exceeded` at HIGH priority so the
alert and notification layers hear about it even with the window closed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from app.bus import Priority
from app.domain import ZERO, Balance, Market, OrderRequest, Side
from app.venues.base import OrderRejected

TOPIC_RISK = "risk.limit.exceeded"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_order_notional: Decimal = ZERO  # one order's value
    max_position_notional: Decimal = ZERO  # value held in one symbol's base asset after the order
    max_daily_loss: Decimal = ZERO  # fall in account value since 00:00 UTC
    max_open_orders: int = 0  # orders resting on the venue at once

    @classmethod
    def from_settings(cls, s) -> RiskLimits:  # noqa: ANN001 - app.settings.RiskSettings
        return cls(Decimal(repr(s.max_order_notional)), Decimal(repr(s.max_position_notional)),
                   Decimal(repr(s.max_daily_loss)), int(s.max_open_orders))


@dataclass(frozen=True, slots=True)
class RiskBreach:
    rule: str  # "max_order_notional" ...
    limit: Decimal
    value: Decimal
    symbol: str
    message: str


class RiskLimitExceeded(OrderRejected):
    def __init__(self, breach: RiskBreach) -> None:
        super().__init__(breach.message)
        self.breach = breach


def _q(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


class RiskChecker:
    """Checks one order against the limits; remembers the day's starting equity for the loss limit."""

    def __init__(self, limits: RiskLimits, bus=None) -> None:  # noqa: ANN001 - app.bus.EventBus
        self.limits = limits
        self.bus = bus
        # Per quote currency: (day, equity at the day's first look). A caller that persists these
        # (`day_starts`, `restore`) keeps a restart from resetting the day's loss to zero.
        self.day_starts: dict[str, tuple[dt.date, Decimal]] = {}

    def equity(self, balances: Mapping[str, Balance], prices: Mapping[str, Decimal], quote: str) -> Decimal:
        """Account value in `quote`: each asset at its last price against `quote` (unpriced assets count 0)."""
        total = ZERO
        for asset, balance in balances.items():
            if asset == quote:
                total += balance.total
            elif (price := prices.get(f"{asset}/{quote}")) is not None:
                total += balance.total * price
        return total

    def observe_equity(self, equity: Decimal, now: dt.datetime | None = None, quote: str = "") -> Decimal:
        """Record the account value in `quote`; returns the loss since the UTC day started (0 when up).
        Each quote currency has its own start, so a BTC-quoted order never compares with USDT."""
        today = (now or dt.datetime.now(dt.UTC)).date()
        start = self.day_starts.get(quote)
        if start is None or start[0] != today:
            start = self.day_starts[quote] = (today, equity)
        return max(ZERO, start[1] - equity)

    def restore(self, saved: dict[str, str]) -> None:
        """Day starts saved by `saved_form`, e.g. after a restart; stale days are dropped by observe_equity."""
        for quote, text in saved.items():
            day, _, value = text.partition("|")
            try:
                self.day_starts[quote] = (dt.date.fromisoformat(day), Decimal(value))
            except (ValueError, ArithmeticError):
                continue  # an unreadable entry: the day starts again from now, never from garbage

    def saved_form(self) -> dict[str, str]:
        return {q: f"{day.isoformat()}|{value}" for q, (day, value) in self.day_starts.items()}

    def check(self, request: OrderRequest, market: Market, *, price: Decimal, position_base: Decimal,
              open_orders: int, daily_loss: Decimal = ZERO) -> None:
        """Raise RiskLimitExceeded (and publish it) if the order would break a limit."""
        limits = self.limits
        quote = market.quote
        notional = request.amount * price
        breach: RiskBreach | None = None
        if limits.max_order_notional and notional > limits.max_order_notional:
            breach = RiskBreach("max_order_notional", limits.max_order_notional, notional, request.symbol,
                                f"Refused by your risk limits: this order is worth {_q(notional)} {quote}, above the "
                                f"maximum order value of {_q(limits.max_order_notional)} {quote} ([risk] max_order_notional).")
        elif limits.max_position_notional and request.side is Side.BUY:
            after = (position_base + request.amount) * price
            if after > limits.max_position_notional:
                breach = RiskBreach("max_position_notional", limits.max_position_notional, after, request.symbol,
                                    f"Refused by your risk limits: after this order you would hold {_q(after)} {quote} of "
                                    f"{market.base}, above the maximum position of {_q(limits.max_position_notional)} "
                                    f"{quote} ([risk] max_position_notional).")
        if breach is None and limits.max_open_orders and request.type.value != "market" and open_orders >= limits.max_open_orders:
            breach = RiskBreach("max_open_orders", Decimal(limits.max_open_orders), Decimal(open_orders), request.symbol,
                                f"Refused by your risk limits: {open_orders} orders are already open, the maximum is "
                                f"{limits.max_open_orders} ([risk] max_open_orders). Cancel one first.")
        if breach is None and limits.max_daily_loss and daily_loss >= limits.max_daily_loss:
            breach = RiskBreach("max_daily_loss", limits.max_daily_loss, daily_loss, request.symbol,
                                f"Refused by your risk limits: today's loss is {_q(daily_loss)} {quote}, at or beyond the "
                                f"maximum daily loss of {_q(limits.max_daily_loss)} {quote} ([risk] max_daily_loss). "
                                "Trading resumes at 00:00 UTC.")
        if breach is not None:
            if self.bus is not None:
                self.bus.publish(TOPIC_RISK, breach, Priority.HIGH)
            raise RiskLimitExceeded(breach)

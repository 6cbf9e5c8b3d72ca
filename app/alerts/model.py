"""What an alert is: its condition, where it is sent, and how often it may fire.

Decisions:
* Prices and percentages are Decimal, kept as strings in SQLite (`params`).
* "Crosses above 70,000" fires when the price moves from below the level to at or
  above it; a price already above when the alert is made does not fire until it has
  gone below and come back. That is what a trader means by crossing, and it stops a
  fresh alert from firing at once on a level that is already behind the market.
* Once-only alerts switch themselves off after firing; repeating ones wait for their
  cooldown. The cooldown also applies to order events (a burst of partial fills is
  one message per cooldown, not fifty).
* Validation returns one sentence per problem, named by the field it belongs to, so
  the form can show each next to its field.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "CHANNELS",
    "FREE_ACTIVE_LIMIT",
    "Alert",
    "AlertKind",
    "describe",
    "parse_decimal",
    "validate",
]

CHANNELS: tuple[str, ...] = ("desktop", "email", "discord", "sms")
FREE_ACTIVE_LIMIT = 20  # the Free plan's active alerts; Pro has no limit


class AlertKind(enum.StrEnum):
    PRICE_ABOVE = "price_above"
    PRICE_BELOW = "price_below"
    PCT_CHANGE = "pct_change"  # |change| over `window_s` at least `pct` percent
    VOLUME_SPIKE = "volume_spike"  # this minute's volume at least `multiple` x the average of the window
    ORDER_FILLED = "order_filled"
    ORDER_REJECTED = "order_rejected"
    RISK_LIMIT = "risk_limit"

    @property
    def is_price(self) -> bool:
        return self in (AlertKind.PRICE_ABOVE, AlertKind.PRICE_BELOW)

    @property
    def is_market(self) -> bool:
        return self in (AlertKind.PRICE_ABOVE, AlertKind.PRICE_BELOW, AlertKind.PCT_CHANGE, AlertKind.VOLUME_SPIKE)

    @property
    def label(self) -> str:
        return KIND_LABELS[self]


KIND_LABELS = {
    AlertKind.PRICE_ABOVE: "Price crosses above",
    AlertKind.PRICE_BELOW: "Price crosses below",
    AlertKind.PCT_CHANGE: "% change within",
    AlertKind.VOLUME_SPIKE: "Volume spike",
    AlertKind.ORDER_FILLED: "Order filled",
    AlertKind.ORDER_REJECTED: "Order rejected",
    AlertKind.RISK_LIMIT: "Risk limit hit",
}


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    symbol: str = ""  # "" for order events on any symbol
    venue: str = ""
    price: Decimal | None = None  # price alerts
    pct: Decimal | None = None  # % change alerts
    window_s: int = 0  # % change and volume spike: the look-back
    multiple: Decimal | None = None  # volume spike
    channels: tuple[str, ...] = ("desktop",)
    cooldown_s: int = 300
    repeat: bool = False
    active: bool = True
    note: str = ""
    id: int = 0  # 0 until saved
    created_at: int = 0  # ms
    last_fired_at: int | None = None  # ms
    fired_count: int = 0

    def params_json(self) -> str:
        params: dict[str, Any] = {}
        for name in ("price", "pct", "multiple"):
            value = getattr(self, name)
            if value is not None:
                params[name] = str(value)
        if self.window_s:
            params["window_s"] = self.window_s
        return json.dumps(params, sort_keys=True)

    @staticmethod
    def params_from_json(text: str) -> dict[str, Any]:
        data = json.loads(text or "{}")
        out: dict[str, Any] = {}
        for name in ("price", "pct", "multiple"):
            if data.get(name) is not None:
                out[name] = Decimal(data[name])
        out["window_s"] = int(data.get("window_s", 0))
        return out

    def with_price(self, price: Decimal) -> Alert:
        return replace(self, price=price)


def parse_decimal(text: str) -> Decimal | None:
    """A plain positive-or-zero decimal as typed (commas as thousands separators allowed); None if not one."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    if not cleaned or any(c in cleaned for c in "eE") or cleaned.lower() in ("nan", "inf", "infinity"):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def validate(alert: Alert, *, pro: bool, active_count: int, known_symbols: set[str] | None = None
             ) -> dict[str, str]:
    """Problems by field name ("symbol", "price", "pct", "window", "multiple", "channels", "cooldown",
    "plan"); empty when the alert can be saved."""
    problems: dict[str, str] = {}
    kind = alert.kind
    if kind.is_market and not alert.symbol:
        problems["symbol"] = "Choose the symbol this alert watches."
    elif alert.symbol and known_symbols is not None and alert.symbol not in known_symbols:
        problems["symbol"] = f"{alert.symbol} is not in the watchlist; add it there first, or pick another symbol."
    if kind.is_price and (alert.price is None or alert.price <= 0):
        problems["price"] = "Enter the price level as a number above zero, for example 70000 or 0.5123."
    if kind is AlertKind.PCT_CHANGE:
        if alert.pct is None or alert.pct <= 0 or alert.pct > 1000:
            problems["pct"] = "Enter the move in percent, above 0 and at most 1000, for example 2.5."
        if not 60 <= alert.window_s <= 7 * 86_400:
            problems["window"] = "The window must be between 1 minute and 7 days."
    if kind is AlertKind.VOLUME_SPIKE:
        if alert.multiple is None or alert.multiple <= 1 or alert.multiple > 1000:
            problems["multiple"] = "Enter how many times the usual volume counts as a spike: above 1, for example 3."
        if not 300 <= alert.window_s <= 86_400:
            problems["window"] = "The average is taken over 5 minutes to 24 hours."
    if not alert.channels:
        problems["channels"] = "Tick at least one channel to send this alert to."
    elif any(c not in CHANNELS for c in alert.channels):
        problems["channels"] = f"Channels are: {', '.join(CHANNELS)}."
    elif "sms" in alert.channels and not pro:
        problems["channels"] = "SMS alerts are part of the Pro plan: untick SMS, or upgrade in Billing."
    if not 0 <= alert.cooldown_s <= 7 * 86_400:
        problems["cooldown"] = "The cooldown must be between 0 seconds and 7 days."
    if alert.active and not pro and active_count >= FREE_ACTIVE_LIMIT:
        problems["plan"] = (f"The Free plan has at most {FREE_ACTIVE_LIMIT} active alerts and you have {active_count}: "
                            "switch one off or delete it, or upgrade to Pro in Billing.")
    return problems


def _num(value: Decimal | None) -> str:
    if value is None:
        return "?"
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def describe(alert: Alert) -> str:
    """The condition as a short phrase for the alerts table: 'BTC/USDT crosses above 70,000'."""
    k = alert.kind
    if k is AlertKind.PRICE_ABOVE:
        return f"{alert.symbol} crosses above {_num(alert.price)}"
    if k is AlertKind.PRICE_BELOW:
        return f"{alert.symbol} crosses below {_num(alert.price)}"
    if k is AlertKind.PCT_CHANGE:
        return f"{alert.symbol} moves {_num(alert.pct)}% within {_duration(alert.window_s)}"
    if k is AlertKind.VOLUME_SPIKE:
        return f"{alert.symbol} volume {_num(alert.multiple)}x its {_duration(alert.window_s)} average"
    scope = alert.symbol or "any symbol"
    return {AlertKind.ORDER_FILLED: f"an order on {scope} fills",
            AlertKind.ORDER_REJECTED: f"an order on {scope} is rejected",
            AlertKind.RISK_LIMIT: "a risk limit refuses an order"}[k]


def _duration(seconds: int) -> str:
    if seconds % 86_400 == 0:
        return f"{seconds // 86_400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"



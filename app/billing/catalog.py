"""What can be bought: the Pro plan and the points packs, with their prices as Decimal.

Prices live here, on the relay's side, and are sent to Stripe inline
(`price_data`) when a Checkout Session is created: the desktop names an item,
never an amount, so a modified client cannot buy 2,000 points for a cent.
Stripe counts money in the currency's smallest unit (cents for USD); the only
conversions between that and Decimal are `to_cents` and `from_cents`, which
refuse anything that is not a whole number of cents instead of rounding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

__all__ = [
    "CURRENCY",
    "FREE_ALERT_LIMIT",
    "ITEMS",
    "PACKS",
    "PRO_PLAN",
    "Item",
    "find_item",
    "from_cents",
    "to_cents",
]

CURRENCY: Final = "usd"  # a two-decimal currency: 1 unit = 100 cents
FREE_ALERT_LIMIT: Final = 20  # active alerts on the Free plan; Pro has no limit
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Item:
    code: str  # what the desktop asks for and what Stripe metadata carries
    kind: Literal["plan", "pack"]
    name: str  # shown on Stripe's checkout page and in the panel
    price: Decimal  # per purchase (pack) or per month (plan)
    points: int  # awarded by a pack; 0 for the plan

    @property
    def label(self) -> str:
        per = " a month" if self.kind == "plan" else ""
        return f"{self.name} — ${self.price:,.2f}{per}"


PRO_PLAN: Final = Item("pro_monthly", "plan", "Meridian Pro (monthly)", Decimal("9.00"), 0)
PACKS: Final[tuple[Item, ...]] = (
    Item("points_100", "pack", "100 points", Decimal("5.00"), 100),
    Item("points_500", "pack", "500 points", Decimal("20.00"), 500),
    Item("points_2000", "pack", "2,000 points", Decimal("70.00"), 2000),
)
ITEMS: Final[dict[str, Item]] = {item.code: item for item in (PRO_PLAN, *PACKS)}


def find_item(code: str) -> Item | None:
    return ITEMS.get(code) if isinstance(code, str) else None


def to_cents(amount: Decimal) -> int:
    """Decimal dollars -> integer cents for Stripe; refuses fractions of a cent rather than round money."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"an amount must be a finite Decimal, not {amount!r}")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of cents")
    return int(cents)


def from_cents(cents: int) -> Decimal:
    """Stripe's integer cents -> Decimal dollars with two places."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise ValueError(f"an amount in cents must be an integer, not {cents!r}")
    return (Decimal(cents) / 100).quantize(_CENT)

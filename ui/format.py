"""How numbers read on screen: prices at the market's precision, volumes abbreviated."""

from __future__ import annotations

from decimal import Decimal


def price(value: Decimal | float | None, decimals: int) -> str:
    if value is None:
        return "—"
    return f"{value:,.{decimals}f}"


def percent(value: Decimal | float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}%"


def compact(value: Decimal | float | None) -> str:
    """2,412,345,678 -> '2.41B': volumes are read by magnitude, not to the unit."""
    if value is None:
        return "—"
    v = float(value)
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= limit:
            return f"{v / limit:.2f}{suffix}"
    return f"{v:.2f}"


def age(seconds: float) -> str:
    """How old a price is, in the largest whole unit: 42s, 5m, 3h, 2d."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"

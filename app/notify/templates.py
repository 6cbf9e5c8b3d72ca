"""One template per kind of notification: event data -> `Message`.

`render(kind, data, message_id, now)` accepts a mapping or any object with the
named attributes (a `domain.Fill`, a `trading.risk.RiskBreach`), so callers can
hand over what they have. What each kind reads (required first):

| kind | fields |
|---|---|
| trade_executed | symbol, side, amount, price; venue, fee, fee_asset, order_id, trade_id, ts (ms) |
| price_alert | symbol, price; condition ("above" / "below" / "crosses" ...), threshold, venue, note, ts |
| risk_limit_exceeded | rule, limit, value; symbol, message, venue, currency, ts |
| strategy_stopped | strategy, reason; symbol, venue, pnl, currency, ts |
| payment_succeeded | amount, currency; points, reference, plan, ts |
| payment_failed | amount, currency, reason; reference, ts |

Money and amounts must be `Decimal` (or int / numeric strings): a float is
refused, because it has already lost the exact value the user traded.
Everything that came from outside (symbols, notes, reasons) is escaped in the
HTML part: an alert note is user input and an email client renders HTML.
"""

from __future__ import annotations

import enum
import html
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.notify.message import Field, Message, Severity, Target, format_amount, format_money

__all__ = ["KINDS", "TemplateError", "render"]

GREEN = 0x2ECC71
RED = 0xE74C3C
AMBER = 0xF1C40F
ORANGE = 0xE67E22
BLUE = 0x3498DB

APP = "Meridian Terminal"


class TemplateError(ValueError):
    """The data cannot be rendered (a missing field, a float amount): a bug in the caller."""


_MISSING = object()


def _get(data: Any, key: str, default: Any = _MISSING) -> Any:
    if isinstance(data, Mapping):
        value = data.get(key, default)
    else:
        value = getattr(data, key, default)
    if value is _MISSING or (value is None and default is _MISSING):
        raise TemplateError(f"the notification data has no '{key}'")
    return value.value if isinstance(value, enum.Enum) else value


def _opt(data: Any, key: str) -> Any:
    value = _get(data, key, None)
    return None if value in (None, "") else value


def _text(data: Any, key: str) -> str:
    return str(_get(data, key)).strip()


def _amount(value: Any, what: str) -> Decimal:
    if isinstance(value, float) or isinstance(value, bool):
        raise TemplateError(f"{what} must be a Decimal, not {type(value).__name__}: a float has lost the exact amount")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except ArithmeticError:
        raise TemplateError(f"{what} {value!r} is not a number") from None
    if not amount.is_finite():
        raise TemplateError(f"{what} must be a finite number, not {value!r}")
    return amount


def _split(symbol: str) -> tuple[str, str]:
    base, sep, quote = symbol.partition("/")
    return (base, quote) if sep else (symbol, "")


def _when(data: Any, now: float) -> float:
    ts = _opt(data, "ts")
    if ts is None:
        return now
    try:
        return int(ts) / 1000.0
    except (TypeError, ValueError):
        raise TemplateError(f"ts must be milliseconds since the epoch, not {ts!r}") from None


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _venue_name(venue: str) -> str:
    names = {"binance": "Binance", "gate": "Gate.io", "mexc": "MEXC", "mt5": "MetaTrader 5", "sim": "the simulator"}
    return names.get(venue.lower(), venue)


# --------------------------------------------------------------------------- assembling a message


def _assemble(
    *,
    message_id: str,
    kind: str,
    title: str,
    summary: str,
    fields: list[Field],
    colour: int,
    target: Target | None,
    severity: str,
    created_at: float,
    detail: str = "",
) -> Message:
    fields = [f for f in fields if f.value != ""]
    when = _utc(created_at)
    text_lines = [summary]
    if detail:
        text_lines += ["", detail]
    if fields:
        text_lines.append("")
        text_lines += [f"{f.name}: {f.value}" for f in fields]
    text_lines += ["", f"{APP} · {when}"]
    text = "\n".join(text_lines)

    e = html.escape
    th = '<th align="left" style="padding:2px 12px 2px 0">'
    rows = "".join(f"<tr>{th}{e(f.name)}</th><td>{e(f.value)}</td></tr>" for f in fields)
    detail_html = f"<p>{e(detail)}</p>" if detail else ""
    table = f'<table cellspacing="0" cellpadding="0">{rows}</table>' if rows else ""
    body = (
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">"
        f'<h2 style="border-left:6px solid #{colour:06x};padding-left:8px">{e(title)}</h2>'
        f"<p>{e(summary)}</p>{detail_html}{table}"
        f'<p style="color:#888;font-size:small">{e(APP)} · {e(when)}</p>'
        "</body></html>"
    )
    return Message(
        message_id=message_id,
        kind=kind,
        title=title,
        text=text,
        html=body,
        fields=tuple(fields),
        colour=colour,
        target=target,
        severity=severity,
        created_at=created_at,
        summary=summary,
        detail=detail,
        extra={"footer": APP},
    )


# --------------------------------------------------------------------------- the kinds


def _trade_executed(data: Any, message_id: str, now: float) -> Message:
    symbol = _text(data, "symbol")
    side = _text(data, "side").lower()
    amount = _amount(_get(data, "amount"), "amount")
    price = _amount(_get(data, "price"), "price")
    venue = str(_opt(data, "venue") or "")
    base, quote = _split(symbol)
    value = amount * price
    verb = {"buy": "Bought", "sell": "Sold"}.get(side)
    if verb is None:
        raise TemplateError(f"side must be 'buy' or 'sell', not {side!r}")
    where = f" on {_venue_name(venue)}" if venue else ""
    title = f"{verb} {format_amount(amount)} {base} at {format_money(price, quote)}"
    summary = (
        f"{verb} {format_amount(amount)} {base} at {format_money(price, quote)}{where} "
        f"(value {format_money(value, quote)})."
    )
    fee = _opt(data, "fee")
    fee_text = format_money(_amount(fee, "fee"), str(_opt(data, "fee_asset") or "")) if fee is not None else ""
    order_id = str(_opt(data, "order_id") or "")
    fields = [
        Field("Symbol", symbol),
        Field("Side", side.capitalize()),
        Field("Amount", format_money(amount, base)),
        Field("Price", format_money(price, quote)),
        Field("Value", format_money(value, quote)),
        Field("Fee", fee_text),
        Field("Venue", _venue_name(venue) if venue else ""),
        Field("Order", order_id, inline=False),
        Field("Trade", str(_opt(data, "trade_id") or ""), inline=False),
    ]
    target = Target("order", order_id, venue, symbol) if order_id else Target("symbol", symbol, venue, symbol)
    return _assemble(
        message_id=message_id, kind="trade_executed", title=title, summary=summary, fields=fields,
        colour=GREEN if side == "buy" else RED, target=target, severity=Severity.INFO, created_at=_when(data, now),
    )


def _price_alert(data: Any, message_id: str, now: float) -> Message:
    symbol = _text(data, "symbol")
    price = _amount(_get(data, "price"), "price")
    _, quote = _split(symbol)
    venue = str(_opt(data, "venue") or "")
    condition = str(_opt(data, "condition") or "").strip().lower()
    threshold_raw = _opt(data, "threshold")
    threshold = _amount(threshold_raw, "threshold") if threshold_raw is not None else None
    note = str(_opt(data, "note") or "").strip()
    where = f" on {_venue_name(venue)}" if venue else ""
    if condition and threshold is not None:
        title = f"{symbol} {condition} {format_amount(threshold)}"
        summary = (
            f"{symbol} is {format_money(price, quote)}{where}: {condition} your alert at {format_amount(threshold)}."
        )
    else:
        title = f"Price alert: {symbol} at {format_amount(price)}"
        summary = f"{symbol} is {format_money(price, quote)}{where}."
    fields = [
        Field("Symbol", symbol),
        Field("Price", format_money(price, quote)),
        Field("Alert", f"{condition} {format_amount(threshold)}".strip() if threshold is not None else condition),
        Field("Venue", _venue_name(venue) if venue else ""),
    ]
    return _assemble(
        message_id=message_id, kind="price_alert", title=title, summary=summary, fields=fields, colour=AMBER,
        target=Target("symbol", symbol, venue, symbol), severity=Severity.WARNING, created_at=_when(data, now),
        detail=f"Note: {note}" if note else "",
    )


_RULES = {
    "max_order_notional": "largest order value",
    "max_position_notional": "largest position value",
    "max_daily_loss": "daily loss limit",
    "max_open_orders": "most open orders",
}


def _risk_limit_exceeded(data: Any, message_id: str, now: float) -> Message:
    rule = _text(data, "rule")
    limit = _amount(_get(data, "limit"), "limit")
    value = _amount(_get(data, "value"), "value")
    symbol = str(_opt(data, "symbol") or "")
    venue = str(_opt(data, "venue") or "")
    currency = str(_opt(data, "currency") or (_split(symbol)[1] if rule != "max_open_orders" else ""))
    rule_name = _RULES.get(rule, rule.replace("_", " "))
    message = str(_opt(data, "message") or "").strip()
    title = f"Risk limit exceeded: {rule_name}"
    summary = message or (
        f"{format_money(value, currency)} exceeds your {rule_name} of {format_money(limit, currency)}"
        + (f" ({symbol})." if symbol else ".")
    )
    fields = [
        Field("Limit", f"{rule_name}: {format_money(limit, currency)}", inline=False),
        Field("Value", format_money(value, currency)),
        Field("Symbol", symbol),
        Field("Venue", _venue_name(venue) if venue else ""),
    ]
    target = Target("symbol", symbol, venue, symbol) if symbol else Target("risk", rule)
    return _assemble(
        message_id=message_id, kind="risk_limit_exceeded", title=title, summary=summary, fields=fields, colour=RED,
        target=target, severity=Severity.CRITICAL, created_at=_when(data, now),
    )


def _strategy_stopped(data: Any, message_id: str, now: float) -> Message:
    strategy = _text(data, "strategy")
    reason = _text(data, "reason")
    symbol = str(_opt(data, "symbol") or "")
    venue = str(_opt(data, "venue") or "")
    pnl = _opt(data, "pnl")
    currency = str(_opt(data, "currency") or _split(symbol)[1])
    title = f"Strategy stopped: {strategy}"
    summary = f"The strategy {strategy} stopped: {reason.rstrip('.')}."
    fields = [
        Field("Strategy", strategy),
        Field("Symbol", symbol),
        Field("Venue", _venue_name(venue) if venue else ""),
        Field("Profit/loss", format_money(_amount(pnl, "pnl"), currency) if pnl is not None else ""),
    ]
    return _assemble(
        message_id=message_id, kind="strategy_stopped", title=title, summary=summary, fields=fields, colour=ORANGE,
        target=Target("strategy", strategy, venue, symbol), severity=Severity.WARNING, created_at=_when(data, now),
    )


def _payment_succeeded(data: Any, message_id: str, now: float) -> Message:
    amount = _amount(_get(data, "amount"), "amount")
    currency = _text(data, "currency").upper()
    points = _opt(data, "points")
    reference = str(_opt(data, "reference") or "")
    plan = str(_opt(data, "plan") or "")
    title = f"Payment received: {format_money(amount, currency)}"
    # A plan payment carries no points (0 or absent): say nothing about points then.
    has_points = points is not None and _amount(points, "points") != 0
    extra = ""
    if has_points:
        extra = f"; {format_amount(_amount(points, 'points'))} points were added to your account"
    summary = f"Your payment of {format_money(amount, currency)} went through{extra}."
    fields = [
        Field("Amount", format_money(amount, currency)),
        Field("Points", format_amount(_amount(points, "points")) if has_points else ""),
        Field("Plan", plan),
        Field("Reference", reference, inline=False),
    ]
    return _assemble(
        message_id=message_id, kind="payment_succeeded", title=title, summary=summary, fields=fields, colour=GREEN,
        target=Target("billing", reference), severity=Severity.INFO, created_at=_when(data, now),
    )


def _payment_failed(data: Any, message_id: str, now: float) -> Message:
    amount = _amount(_get(data, "amount"), "amount")
    currency = _text(data, "currency").upper()
    reason = _text(data, "reason")
    reference = str(_opt(data, "reference") or "")
    title = f"Payment failed: {format_money(amount, currency)}"
    summary = (
        f"Your payment of {format_money(amount, currency)} did not go through: {reason.rstrip('.')}. "
        "Nothing was charged."
    )
    fields = [
        Field("Amount", format_money(amount, currency)),
        Field("Reason", reason, inline=False),
        Field("Reference", reference, inline=False),
    ]
    return _assemble(
        message_id=message_id, kind="payment_failed", title=title, summary=summary, fields=fields, colour=RED,
        target=Target("billing", reference), severity=Severity.CRITICAL, created_at=_when(data, now),
    )


def _order_rejected(data: Any, message_id: str, now: float) -> Message:
    symbol = _text(data, "symbol")
    side = _text(data, "side").lower()
    amount = _amount(_get(data, "amount"), "amount")
    price = _opt(data, "price")
    reason = str(_opt(data, "reason") or "no reason was given").strip()
    venue = str(_opt(data, "venue") or "")
    order_id = str(_opt(data, "order_id") or "")
    base, quote = _split(symbol)
    at = f" at {format_money(_amount(price, 'price'), quote)}" if price is not None else ""
    title = f"Order rejected: {side} {format_amount(amount)} {base}{at}"
    where = f" by {_venue_name(venue)}" if venue else ""
    summary = f"Your {side} order for {format_amount(amount)} {base}{at} was rejected{where}: {reason.rstrip('.')}."
    fields = [
        Field("Symbol", symbol),
        Field("Side", side.capitalize()),
        Field("Amount", format_money(amount, base)),
        Field("Price", format_money(_amount(price, "price"), quote) if price is not None else "market"),
        Field("Reason", reason, inline=False),
        Field("Order", order_id, inline=False),
    ]
    target = Target("order", order_id, venue, symbol) if order_id else Target("symbol", symbol, venue, symbol)
    return _assemble(
        message_id=message_id, kind="order_rejected", title=title, summary=summary, fields=fields, colour=RED,
        target=target, severity=Severity.WARNING, created_at=_when(data, now),
    )


_TEMPLATES: dict[str, Callable[[Any, str, float], Message]] = {
    "trade_executed": _trade_executed,
    "price_alert": _price_alert,
    "risk_limit_exceeded": _risk_limit_exceeded,
    "strategy_stopped": _strategy_stopped,
    "payment_succeeded": _payment_succeeded,
    "payment_failed": _payment_failed,
    "order_rejected": _order_rejected,  # the alerts' "order rejected" event
}

KINDS: tuple[str, ...] = tuple(_TEMPLATES)


def render(kind: str, data: Any, message_id: str, now: float | None = None) -> Message:
    """The message for one event; raises TemplateError for an unknown kind or unusable data."""
    template = _TEMPLATES.get(kind)
    if template is None:
        raise TemplateError(f"'{kind}' is not a kind of notification; the kinds are: {', '.join(KINDS)}")
    return template(data, message_id, time.time() if now is None else now)

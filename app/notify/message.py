"""The rendered notification: what every channel sends, and what the outbox stores.

A `Message` is rendered once, when it is enqueued, and stored as JSON: a
message retried after a restart (or after an app update) says exactly what it
said the first time, and a channel never needs the original domain objects.

Decisions:
* `message_id` identifies the *notification*, not a channel's copy of it: the
  same id on two channels is the same news. The outbox keys rows by
  (message_id, channel), which is what suppresses duplicates.
* `target` says where a click should take the user (a symbol, an order, the
  billing panel); the UI interprets it, the core never does.
* Money is formatted from `Decimal` with `format_money`, never through float.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["CHANNELS", "Field", "Message", "Severity", "Target", "format_amount", "format_money"]

CHANNELS: tuple[str, ...] = ("desktop", "email", "discord", "sms")
"""Every channel name the service and the outbox accept."""


class Severity:
    """How loudly a message should be shown (desktop urgency, Discord colour defaults)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    ALL = (INFO, WARNING, CRITICAL)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a click on the notification brings the window.

    kind: "symbol" (value "BTC/USDT"), "order" (value: an order id), "strategy"
    (value: its name), "billing" (value: a payment reference or ""). `symbol` is
    set whenever one is known, so the UI can also open its chart.
    """

    kind: str
    value: str
    venue: str = ""
    symbol: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value, "venue": self.venue, "symbol": self.symbol}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        return cls(str(data["kind"]), str(data["value"]), str(data.get("venue", "")), str(data.get("symbol", "")))


@dataclass(frozen=True, slots=True)
class Field:
    """One labelled value: a Discord embed field, a row of the email's table."""

    name: str
    value: str
    inline: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    kind: str  # "trade_executed", "price_alert", ... (templates.KINDS)
    title: str  # one line, plain text
    text: str  # plain text body (email text part, SMS, desktop)
    html: str  # HTML body with every piece of user data escaped
    fields: tuple[Field, ...] = ()
    colour: int = 0x5865F2  # 0xRRGGBB
    target: Target | None = None
    severity: str = Severity.INFO
    created_at: float = 0.0  # epoch seconds when the event happened (or was rendered)
    summary: str = ""  # a one-line version of `text` for SMS and the desktop popup
    detail: str = ""  # longer prose after the summary (an alert's note, a long reason)
    extra: dict[str, str] = field(default_factory=dict)  # free-form, e.g. the footer

    def short_text(self) -> str:
        return self.summary or self.text

    def to_json(self) -> str:
        return json.dumps(
            {
                "message_id": self.message_id,
                "kind": self.kind,
                "title": self.title,
                "text": self.text,
                "html": self.html,
                "fields": [[f.name, f.value, f.inline] for f in self.fields],
                "colour": self.colour,
                "target": self.target.to_dict() if self.target else None,
                "severity": self.severity,
                "created_at": self.created_at,
                "summary": self.summary,
                "detail": self.detail,
                "extra": self.extra,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Message:
        data = json.loads(text)
        target = data.get("target")
        return cls(
            message_id=data["message_id"],
            kind=data["kind"],
            title=data["title"],
            text=data["text"],
            html=data["html"],
            fields=tuple(Field(str(n), str(v), bool(i)) for n, v, i in data.get("fields", [])),
            colour=int(data.get("colour", 0)),
            target=Target.from_dict(target) if target else None,
            severity=data.get("severity", Severity.INFO),
            created_at=float(data.get("created_at", 0.0)),
            summary=data.get("summary", ""),
            detail=data.get("detail", ""),
            extra=dict(data.get("extra", {})),
        )


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or isinstance(value, float):
        # A float has already lost the exact amount; refusing it finds the caller that converted.
        raise TypeError(f"money must be a Decimal, an int or a numeric string, not {type(value).__name__}")
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount") from None


def format_amount(value: object) -> str:
    """An exact amount with thousands separators and every given decimal: 65000.10 -> '65,000.10'."""
    amount = _decimal(value)
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite amount")
    return f"{amount:,f}"


def format_money(value: object, currency: str = "") -> str:
    """'1,234.50 USDT' (the currency after the amount, as exchanges show it)."""
    text = format_amount(value)
    return f"{text} {currency}".strip()

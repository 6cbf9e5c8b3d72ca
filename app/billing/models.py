"""What the desktop sees of billing: frozen values parsed from the relay's JSON, and the bus payloads.

Bus topics the desktop client publishes (at Priority.HIGH: money is involved):

    payment.succeeded   PaymentEvent   a plan or pack was paid; points awarded
    payment.failed      PaymentEvent   a payment was declined (reason says why and what to do)
    payment.refunded    PaymentEvent   a refund took points back (points = how many)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "PAYMENT_TOPICS",
    "AccountView",
    "LedgerRow",
    "PaymentEvent",
    "RelayNotice",
]

PAYMENT_TOPICS: Final = ("payment.succeeded", "payment.failed", "payment.refunded")


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal("0")


@dataclass(frozen=True, slots=True)
class AccountView:
    id: str
    email: str
    plan: str  # "free" | "pro"
    subscription_status: str  # Stripe's status of the current subscription, "" if none
    balance: int  # points
    sms_alerts: bool
    max_active_alerts: int | None  # None: no limit (Pro)
    last_notice_seq: int

    @property
    def is_pro(self) -> bool:
        return self.plan == "pro"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountView:
        rights = data.get("entitlements") or {}
        limit = rights.get("max_active_alerts")
        return cls(
            id=str(data["id"]),
            email=str(data.get("email", "")),
            plan=str(data.get("plan", "free")),
            subscription_status=str(data.get("subscription_status") or ""),
            balance=_int(data.get("balance")),
            sms_alerts=bool(rights.get("sms_alerts", False)),
            max_active_alerts=_int(limit) if limit is not None else None,
            last_notice_seq=_int(data.get("last_notice_seq")),
        )


@dataclass(frozen=True, slots=True)
class LedgerRow:
    id: int
    kind: str  # purchase | spend | transfer | refund
    points: int  # signed
    balance_after: int
    note: str
    created: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerRow:
        created = data.get("created")
        when = datetime.fromtimestamp(float(created), UTC) if isinstance(created, (int, float)) else datetime.now(UTC)
        return cls(_int(data.get("id")), str(data.get("kind", "")), _int(data.get("points")),
                   _int(data.get("balance_after")), str(data.get("note", "")), when)


@dataclass(frozen=True, slots=True)
class RelayNotice:
    seq: int
    kind: str
    data: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RelayNotice:
        return cls(_int(data.get("seq")), str(data.get("kind", "")), dict(data))


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """The payload of payment.* bus events: only what the account holder may see."""

    item: str  # "points_500", "pro_monthly"
    item_name: str  # "500 points", "Meridian Pro (monthly)"
    points: int  # awarded (succeeded) or taken back (refunded); 0 for the plan
    amount: Decimal  # in `currency`, e.g. Decimal("20.00")
    currency: str  # ISO code, lower case as Stripe writes it
    reference: str  # the relay's payment reference ("pay_...") or Stripe's invoice id
    reason: str = ""  # why a payment failed, as a sentence
    balance: int | None = None  # the points balance after this event

    @property
    def plan(self) -> str:
        """The plan this payment is for ("Pro"), or "" for a points pack (notification templates show it)."""
        return "Pro" if self.item == "pro_monthly" else ""

    @classmethod
    def from_notice(cls, notice: RelayNotice) -> PaymentEvent:
        d = notice.data
        balance = d.get("balance")
        return cls(
            item=str(d.get("item", "")),
            item_name=str(d.get("item_name", "")),
            points=_int(d.get("points")),
            amount=_decimal(d.get("amount", "0")),
            currency=str(d.get("currency", "usd")),
            reference=str(d.get("reference", "")),
            reason=str(d.get("reason", "")),
            balance=_int(balance) if balance is not None else None,
        )

"""The relay's storage interface: rows as frozen dataclasses, and one transaction's operations.

Everything billing does to storage happens inside one `BillingTx` (a unit of
work): an event is applied, its ledger entries written and the event marked as
seen together or not at all. SQLite implements it (sqlite_repo.py); a
PostgreSQL implementation needs the same methods over `SELECT ... FOR UPDATE`
or SERIALIZABLE transactions, since the ledger reads a balance and then writes
below it. Nothing above this module writes SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "LEDGER_KINDS",
    "Account",
    "BillingTx",
    "LedgerEntry",
    "LedgerKind",
    "Notice",
    "Payment",
    "PendingRefund",
    "Subscription",
]

LedgerKind = Literal["purchase", "spend", "transfer", "refund"]
LEDGER_KINDS: tuple[LedgerKind, ...] = ("purchase", "spend", "transfer", "refund")


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    email: str
    token_hash: str  # SHA-256 of the account token; the token itself is never stored
    customer_id: str | None  # Stripe customer, created on the first checkout or portal visit
    created_at: float

    def __repr__(self) -> str:  # the hash is not the token, but it has no business in a log either
        return f"Account(id={self.id!r}, email={self.email!r}, customer_id={self.customer_id!r})"


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str  # Stripe's sub_...
    account_id: str
    status: str  # Stripe's status: active, trialing, past_due, canceled, unpaid, incomplete, ...
    event_created: int  # Stripe `created` of the event this state came from (orders stale events)
    current_period_end: int | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class Payment:
    id: str  # our reference "pay_...", also in the Stripe metadata of the session and payment intent
    account_id: str
    item: str
    kind: Literal["pack", "plan"]
    points: int
    amount_cents: int
    currency: str
    state: str  # flow.PaymentState value
    session_id: str | None = None
    payment_intent: str | None = None
    points_awarded: int = 0
    points_reverted: int = 0
    points_unrecovered: int = 0  # refunded points already spent: not taken back (balances never go negative)
    refunded_cents: int = 0  # Stripe's cumulative amount_refunded, the largest seen
    failure: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class PendingRefund:
    """A refund seen before its payment was known (events arrive out of order)."""

    payment_intent: str
    refunded_cents: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    account_id: str
    kind: LedgerKind
    points: int  # signed: + credit, - debit
    balance_after: int  # running balance; equals the sum of the account's entries up to this one
    reference: str  # unique: the same purchase, spend or transfer can never be written twice
    note: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the account's desktop apps should hear about (the outbox the websocket and polling read)."""

    seq: int
    account_id: str
    kind: str  # payment.succeeded | payment.failed | payment.refunded | plan.changed | points.received
    payload: dict[str, Any]
    created_at: float

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "created": self.created_at, **self.payload}


class BillingTx(Protocol):
    """One open transaction. Methods raise only on storage faults or broken invariants."""

    # accounts
    def insert_account(self, account: Account) -> None: ...
    def account(self, account_id: str) -> Account | None: ...
    def account_by_email(self, email: str) -> Account | None: ...
    def account_by_token_hash(self, token_hash: str) -> Account | None: ...
    def account_by_customer(self, customer_id: str) -> Account | None: ...
    def set_customer(self, account_id: str, customer_id: str) -> None: ...

    # subscriptions
    def subscription(self, subscription_id: str) -> Subscription | None: ...
    def save_subscription(self, subscription: Subscription) -> None: ...
    def subscriptions_of(self, account_id: str) -> list[Subscription]: ...

    # payments
    def insert_payment(self, payment: Payment) -> bool: ...  # False if the id exists
    def payment(self, payment_id: str) -> Payment | None: ...
    def payment_by_session(self, session_id: str) -> Payment | None: ...
    def payment_by_intent(self, payment_intent: str) -> Payment | None: ...
    def update_payment(self, payment: Payment) -> None: ...
    def pending_refund(self, payment_intent: str) -> PendingRefund | None: ...
    def save_pending_refund(self, refund: PendingRefund) -> None: ...
    def delete_pending_refund(self, payment_intent: str) -> None: ...

    # ledger
    def last_balance(self, account_id: str) -> int: ...
    def sum_points(self, account_id: str) -> int: ...
    def insert_entry(
        self, account_id: str, kind: LedgerKind, points: int, balance_after: int, reference: str, note: str
    ) -> LedgerEntry: ...
    def entry_by_reference(self, reference: str) -> LedgerEntry | None: ...
    def entries(self, account_id: str, limit: int, before_id: int | None = None) -> list[LedgerEntry]: ...

    # Stripe events already applied (idempotency on the event id)
    def event_seen(self, event_id: str) -> bool: ...
    def record_event(self, event_id: str, event_type: str, created: int, source: str) -> None: ...

    # notices (outbox)
    def add_notice(self, account_id: str, kind: str, payload: dict[str, Any]) -> Notice: ...
    def notices_after(self, account_id: str, seq: int, limit: int) -> list[Notice]: ...
    def last_notice_seq(self, account_id: str) -> int: ...

    # results of client requests made with an Idempotency-Key
    def request_result(self, account_id: str, key: str) -> str | None: ...
    def save_request_result(self, account_id: str, key: str, result: str) -> None: ...

    # small settings (the reconciler's cursor)
    def get_value(self, key: str) -> str | None: ...
    def set_value(self, key: str, value: str) -> None: ...

"""A payment's state machine, and the ledger commands its transitions run (with their undo).

    CREATED --> PENDING --> SUCCEEDED --> REFUNDED
       |  \\        |  ^        ^
       |   \\       v  |        |
       |    '--> FAILED ------'  (a failed attempt may be retried and succeed)
       '---------------------------> REFUNDED (refund seen before the success)

(DESIGN.md calls these Initiated, Processing, Completed | Failed, Refunded.)

Stripe delivers events more than once and in any order, so every operation
here is safe to repeat and to receive late:

* `succeed` awards a pack's points exactly once (the `AwardPoints` command's
  ledger reference is unique) and is a no-op once SUCCEEDED or REFUNDED;
* `fail` after SUCCEEDED is a stale event and changes nothing;
* `refund` takes Stripe's *cumulative* refunded amount, so a duplicate or older
  charge.refunded is a no-op; it undoes the award in proportion (a full refund
  takes back every point still there). A refund seen before the success moves
  the payment straight to REFUNDED with nothing awarded, or, if partial, is
  remembered and undone right after the award.

Each method returns the updated payment and the notices it queued for the
account's desktop apps. Call them inside one transaction with the event record.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from app.billing import ledger
from app.billing.catalog import Item, from_cents, find_item
from app.billing.errors import IllegalTransition
from app.billing.repository import BillingTx, Notice, Payment

__all__ = ["AwardPoints", "FlowResult", "PaymentFlow", "PaymentState", "TRANSITIONS"]


class PaymentState(enum.StrEnum):
    CREATED = "created"
    PENDING = "pending"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    REFUNDED = "refunded"


S = PaymentState
TRANSITIONS: Final[dict[PaymentState, frozenset[PaymentState]]] = {
    S.CREATED: frozenset({S.PENDING, S.FAILED, S.SUCCEEDED, S.REFUNDED}),
    S.PENDING: frozenset({S.FAILED, S.SUCCEEDED, S.REFUNDED}),
    S.FAILED: frozenset({S.PENDING, S.SUCCEEDED, S.REFUNDED}),
    S.SUCCEEDED: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
}
_SETTLED: Final = frozenset({S.SUCCEEDED, S.REFUNDED})


@dataclass(frozen=True, slots=True)
class FlowResult:
    payment: Payment
    notices: list[Notice] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.notices)


class AwardPoints:
    """The command a pack's success runs; its undo is a `refund` entry taking (some of) the points back."""

    def __init__(self, payment: Payment) -> None:
        self.payment = payment

    @property
    def reference(self) -> str:
        return f"purchase:{self.payment.id}"

    def do(self, tx: BillingTx) -> int:
        item = find_item(self.payment.item)
        name = item.name if item else self.payment.item
        entry = ledger.credit_purchase(tx, self.payment.account_id, self.payment.points, self.reference, f"Bought {name}")
        return entry.points

    def undo(self, tx: BillingTx, points: int, step: str) -> tuple[int, int]:
        """Take back `points`; returns (taken, not recoverable because already spent). `step` names this undo."""
        entry, short = ledger.take_back(
            tx, self.payment.account_id, points, f"refund:{self.payment.id}:{step}", "Refunded purchase"
        )
        return (-entry.points if entry else 0), short


class PaymentFlow:
    def __init__(self, tx: BillingTx, clock: Callable[[], float] = time.time) -> None:
        self.tx = tx
        self._clock = clock

    # ------------------------------------------------------------------ creation and linking

    def create(self, *, payment_id: str, account_id: str, item: Item, amount_cents: int, currency: str) -> Payment:
        """A CREATED payment, or the existing one with this id (a retried checkout request)."""
        now = self._clock()
        payment = Payment(
            id=payment_id, account_id=account_id, item=item.code, kind=item.kind, points=item.points,
            amount_cents=amount_cents, currency=currency, state=S.CREATED.value, created_at=now, updated_at=now,
        )
        if not self.tx.insert_payment(payment):
            existing = self.tx.payment(payment_id)
            assert existing is not None
            return existing
        return payment

    def attach(self, p: Payment, *, session_id: str | None = None, payment_intent: str | None = None) -> FlowResult:
        """Record Stripe's ids for the payment; applies a refund that arrived before the payment was known."""
        changes: dict[str, Any] = {}
        if session_id and not p.session_id:
            changes["session_id"] = session_id
        if payment_intent and not p.payment_intent:
            changes["payment_intent"] = payment_intent
        if changes:
            p = self._save(replace(p, **changes))
        if payment_intent:
            pending = self.tx.pending_refund(payment_intent)
            if pending is not None:
                self.tx.delete_pending_refund(payment_intent)
                return self.refund(p, pending.refunded_cents)
        return FlowResult(p)

    # ------------------------------------------------------------------ transitions

    def mark_pending(self, p: Payment) -> FlowResult:
        if S(p.state) not in (S.CREATED, S.FAILED):
            return FlowResult(p)
        return FlowResult(self._move(p, S.PENDING))

    def succeed(self, p: Payment) -> FlowResult:
        if S(p.state) in _SETTLED:
            return FlowResult(p)  # a duplicate, or a success older than the refund we already applied
        p = self._move(p, S.SUCCEEDED, failure="")
        if p.kind == "pack" and p.points > 0:
            awarded = AwardPoints(p).do(self.tx)
            p = self._save(replace(p, points_awarded=awarded))
        notices = [self._notice(p, "payment.succeeded", points=p.points_awarded, cents=p.amount_cents)]
        if p.refunded_cents > 0:  # a partial refund was seen first: undo its share now
            p, taken, short = self._revert_share(p)
            notices.append(self._notice(p, "payment.refunded", points=taken, cents=p.refunded_cents, unrecovered=short))
            if p.refunded_cents >= p.amount_cents:
                p = self._move(p, S.REFUNDED)
        return FlowResult(p, notices)

    def fail(self, p: Payment, reason: str, *, notify: bool = True) -> FlowResult:
        if S(p.state) in _SETTLED:
            return FlowResult(p)  # stale: the payment went through after all
        p = self._move(p, S.FAILED, failure=reason[:300])
        notices = [self._notice(p, "payment.failed", points=0, cents=p.amount_cents, reason=reason)] if notify else []
        return FlowResult(p, notices)

    def refund(self, p: Payment, refunded_total_cents: int) -> FlowResult:
        """Apply Stripe's cumulative refunded amount for this payment."""
        total = min(max(int(refunded_total_cents), 0), p.amount_cents)
        if total <= p.refunded_cents or S(p.state) is S.REFUNDED:
            return FlowResult(p)  # a duplicate or an older charge.refunded
        delta = total - p.refunded_cents
        p = self._save(replace(p, refunded_cents=total))
        taken = short = 0
        if S(p.state) is S.SUCCEEDED:
            p, taken, short = self._revert_share(p)
        if total >= p.amount_cents:
            p = self._move(p, S.REFUNDED)
        # Before the success nothing was awarded, so there is nothing to undo; the notice still tells the user.
        return FlowResult(p, [self._notice(p, "payment.refunded", points=taken, cents=delta, unrecovered=short)])

    # ------------------------------------------------------------------ helpers

    def _revert_share(self, p: Payment) -> tuple[Payment, int, int]:
        """Bring the points taken back up to the refunded share of the award."""
        if p.points_awarded == 0 or p.amount_cents == 0:
            return p, 0, 0
        if p.refunded_cents >= p.amount_cents:
            target = p.points_awarded
        else:
            target = p.points_awarded * p.refunded_cents // p.amount_cents
        need = target - p.points_reverted - p.points_unrecovered
        if need <= 0:
            return p, 0, 0
        taken, short = AwardPoints(p).undo(self.tx, need, str(p.refunded_cents))
        p = self._save(
            replace(p, points_reverted=p.points_reverted + taken, points_unrecovered=p.points_unrecovered + short)
        )
        return p, taken, short

    def _move(self, p: Payment, to: PaymentState, **changes: Any) -> Payment:
        here = S(p.state)
        if to is not here and to not in TRANSITIONS[here]:
            raise IllegalTransition(f"payment {p.id} cannot go from {here.value} to {to.value}")
        return self._save(replace(p, state=to.value, **changes))

    def _save(self, p: Payment) -> Payment:
        p = replace(p, updated_at=self._clock())
        self.tx.update_payment(p)
        return p

    def _notice(self, p: Payment, kind: str, *, points: int, cents: int, reason: str = "", unrecovered: int = 0) -> Notice:
        item = find_item(p.item)
        payload: dict[str, Any] = {
            "item": p.item,
            "item_name": item.name if item else p.item,
            "points": points,
            "amount": str(from_cents(cents)),
            "currency": p.currency,
            "reference": p.id,
            "reason": reason,
            "balance": self.tx.last_balance(p.account_id),
        }
        if unrecovered:
            payload["unrecovered"] = unrecovered
        return self.tx.add_notice(p.account_id, kind, payload)

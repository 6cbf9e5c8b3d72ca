"""Apply one Stripe event to the relay's state: the same code for webhooks and the reconciler.

`EventProcessor.apply(tx, event, source)` runs inside one transaction with the
record of the event, so an event is applied completely and marked seen, or not
at all (and Stripe's retry or the reconciler will bring it again). Idempotency
has two layers: the event id (the same delivery twice), and the payment's own
state (two different events about one payment, e.g. checkout.session.completed
and payment_intent.succeeded, award once).

Payments are found by our reference in the Stripe metadata (`meridian_payment`,
set on both the Checkout Session and its PaymentIntent), then by Stripe's ids.
Charges carry only their payment intent's id: a charge.refunded for a payment
intent not yet linked to a payment is kept as a pending refund and applied when
the link arrives. Subscriptions are ordered by the event's `created` time: an
update older than the state held is ignored, and a deleted subscription stays
deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from app.billing.accounts import plan_of
from app.billing.catalog import PRO_PLAN, from_cents
from app.billing.flow import FlowResult, PaymentFlow
from app.billing.repository import Account, BillingTx, Notice, Payment, PendingRefund, Subscription

__all__ = ["HANDLED_EVENTS", "EventProcessor", "METADATA_ACCOUNT", "METADATA_ITEM", "METADATA_PAYMENT"]

_log = logging.getLogger(__name__)

METADATA_ACCOUNT = "meridian_account"
METADATA_ITEM = "meridian_item"
METADATA_PAYMENT = "meridian_payment"

Event = Mapping[str, Any]
Handler = Callable[[BillingTx, Event], list[Notice]]


def _obj(event: Event) -> Mapping[str, Any]:
    data = event.get("data") or {}
    obj = data.get("object") if isinstance(data, Mapping) else None
    return obj if isinstance(obj, Mapping) else {}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _id(value: Any) -> str | None:
    """A Stripe reference field: an id string, or an expanded object with an id."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return value["id"]
    return None


class EventProcessor:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {
            "checkout.session.completed": self._session_completed,
            "checkout.session.async_payment_succeeded": self._session_completed,
            "checkout.session.async_payment_failed": self._session_async_failed,
            "checkout.session.expired": self._session_expired,
            "payment_intent.succeeded": self._intent_succeeded,
            "payment_intent.processing": self._intent_processing,
            "payment_intent.payment_failed": self._intent_failed,
            "charge.refunded": self._charge_refunded,
            "invoice.payment_failed": self._invoice_failed,
            "customer.subscription.created": self._subscription_changed,
            "customer.subscription.updated": self._subscription_changed,
            "customer.subscription.deleted": self._subscription_changed,
        }

    @property
    def handled(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def apply(self, tx: BillingTx, event: Event, source: str) -> list[Notice]:
        """Apply `event` once; returns the notices to push (empty for a duplicate or an event we ignore)."""
        event_id = event.get("id")
        event_type = event.get("type")
        if not isinstance(event_id, str) or not isinstance(event_type, str):
            raise ValueError("a Stripe event needs an id and a type")
        if tx.event_seen(event_id):
            return []
        handler = self._handlers.get(event_type)
        notices = handler(tx, event) if handler is not None else []
        tx.record_event(event_id, event_type, int(event.get("created") or 0), source)
        return notices

    # ------------------------------------------------------------------ finding our payment

    def _payment_for(self, tx: BillingTx, obj: Mapping[str, Any], *, session: bool) -> Payment | None:
        ref = _meta(obj).get(METADATA_PAYMENT)
        payment = tx.payment(ref) if isinstance(ref, str) else None
        oid = _id(obj.get("id"))
        if payment is None and oid:
            payment = tx.payment_by_session(oid) if session else tx.payment_by_intent(oid)
        if payment is None:
            intent = _id(obj.get("payment_intent")) if session else None
            payment = tx.payment_by_intent(intent) if intent else None
        return payment

    def _not_ours(self, event: Event) -> list[Notice]:
        # Payments made outside the relay (a dashboard invoice, another integration) are not ours to award.
        _log.info("Stripe event %s (%s) is not about a payment this relay created; ignored",
                  event.get("id"), event.get("type"))
        return []

    # ------------------------------------------------------------------ checkout sessions

    def _session_completed(self, tx: BillingTx, event: Event) -> list[Notice]:
        session = _obj(event)
        payment = self._payment_for(tx, session, session=True)
        if payment is None:
            return self._not_ours(event)
        flow = PaymentFlow(tx)
        result = flow.attach(payment, session_id=_id(session.get("id")), payment_intent=_id(session.get("payment_intent")))
        notices = list(result.notices)
        payment = result.payment
        if session.get("mode") == "subscription":
            sub_id = _id(session.get("subscription"))
            account = tx.account(payment.account_id)
            if sub_id and account is not None:
                customer = _id(session.get("customer"))
                if customer and not account.customer_id:
                    tx.set_customer(account.id, customer)
                status = "active" if session.get("payment_status") in ("paid", "no_payment_required") else "incomplete"
                notices += self._save_subscription(tx, account, sub_id, status, int(event.get("created") or 0), None, False)
        status = session.get("payment_status")
        if status in ("paid", "no_payment_required"):
            notices += flow.succeed(payment).notices
        elif status == "unpaid":
            notices += flow.mark_pending(payment).notices  # a delayed method (bank debit): the money comes later
        return notices

    def _session_async_failed(self, tx: BillingTx, event: Event) -> list[Notice]:
        payment = self._payment_for(tx, _obj(event), session=True)
        if payment is None:
            return self._not_ours(event)
        return PaymentFlow(tx).fail(payment, "The bank declined the payment.").notices

    def _session_expired(self, tx: BillingTx, event: Event) -> list[Notice]:
        payment = self._payment_for(tx, _obj(event), session=True)
        if payment is None:
            return self._not_ours(event)
        # An abandoned checkout page is not a failure the user needs to be told about.
        return PaymentFlow(tx).fail(payment, "The checkout page expired before payment.", notify=False).notices

    # ------------------------------------------------------------------ payment intents and charges

    def _intent(self, tx: BillingTx, event: Event) -> tuple[PaymentFlow, FlowResult] | None:
        intent = _obj(event)
        payment = self._payment_for(tx, intent, session=False)
        if payment is None:
            return None
        flow = PaymentFlow(tx)
        return flow, flow.attach(payment, payment_intent=_id(intent.get("id")))

    def _intent_succeeded(self, tx: BillingTx, event: Event) -> list[Notice]:
        found = self._intent(tx, event)
        if found is None:
            return self._not_ours(event)
        flow, attached = found
        return attached.notices + flow.succeed(attached.payment).notices

    def _intent_processing(self, tx: BillingTx, event: Event) -> list[Notice]:
        found = self._intent(tx, event)
        if found is None:
            return self._not_ours(event)
        flow, attached = found
        return attached.notices + flow.mark_pending(attached.payment).notices

    def _intent_failed(self, tx: BillingTx, event: Event) -> list[Notice]:
        found = self._intent(tx, event)
        if found is None:
            return self._not_ours(event)
        flow, attached = found
        error = _obj(event).get("last_payment_error")
        reason = error.get("message") if isinstance(error, Mapping) else None
        reason = reason if isinstance(reason, str) and reason else "The payment was declined."
        return attached.notices + flow.fail(attached.payment, reason).notices

    def _charge_refunded(self, tx: BillingTx, event: Event) -> list[Notice]:
        charge = _obj(event)
        intent = _id(charge.get("payment_intent"))
        refunded = int(charge.get("amount_refunded") or 0)
        payment = tx.payment_by_intent(intent) if intent else None
        if payment is None:
            payment = self._payment_for(tx, charge, session=False) if _meta(charge) else None
        if payment is None:
            if intent:
                # Out of order: the refund came before we learnt which payment this intent belongs to.
                held = tx.pending_refund(intent)
                if held is None or refunded > held.refunded_cents:
                    tx.save_pending_refund(PendingRefund(intent, refunded, int(charge.get("amount") or 0)))
            return []
        return PaymentFlow(tx).refund(payment, refunded).notices

    # ------------------------------------------------------------------ subscriptions and invoices

    def _account_for(self, tx: BillingTx, obj: Mapping[str, Any]) -> Account | None:
        customer = _id(obj.get("customer"))
        account = tx.account_by_customer(customer) if customer else None
        if account is None:
            ref = _meta(obj).get(METADATA_ACCOUNT)
            account = tx.account(ref) if isinstance(ref, str) else None
        return account

    def _subscription_changed(self, tx: BillingTx, event: Event) -> list[Notice]:
        sub = _obj(event)
        sub_id = _id(sub.get("id"))
        account = self._account_for(tx, sub)
        if sub_id is None or account is None:
            return self._not_ours(event)
        deleted = event.get("type") == "customer.subscription.deleted"
        status = "canceled" if deleted else str(sub.get("status") or "")
        period_end = sub.get("current_period_end")
        if period_end is None:  # newer API versions keep it per subscription item
            items = (sub.get("items") or {}).get("data") if isinstance(sub.get("items"), Mapping) else None
            if items and isinstance(items[0], Mapping):
                period_end = items[0].get("current_period_end")
        end = int(period_end) if isinstance(period_end, int) else None
        return self._save_subscription(tx, account, sub_id, status, int(event.get("created") or 0), end, deleted)

    def _save_subscription(
        self, tx: BillingTx, account: Account, sub_id: str, status: str, created: int, period_end: int | None,
        deleted: bool,
    ) -> list[Notice]:
        held = tx.subscription(sub_id)
        if held is not None and not deleted:
            if held.deleted or created < held.event_created:
                return []  # an older state than the one held: events arrive out of order
        before = plan_of(tx, account.id)
        if held is not None and period_end is None:
            period_end = held.current_period_end
        created = max(created, held.event_created) if held is not None else created
        tx.save_subscription(Subscription(sub_id, account.id, status, created, period_end, deleted))
        after = plan_of(tx, account.id)
        if after == before:
            return []
        return [tx.add_notice(account.id, "plan.changed", {"plan": after, "subscription_status": status})]

    def _invoice_failed(self, tx: BillingTx, event: Event) -> list[Notice]:
        invoice = _obj(event)
        account = self._account_for(tx, invoice)
        if account is None:
            return self._not_ours(event)
        cents = invoice.get("amount_due")
        amount = from_cents(cents) if isinstance(cents, int) and not isinstance(cents, bool) else from_cents(0)
        payload = {
            "item": PRO_PLAN.code,
            "item_name": PRO_PLAN.name,
            "points": 0,
            "amount": str(amount),
            "currency": str(invoice.get("currency") or "usd"),
            "reference": _id(invoice.get("id")) or "",
            "reason": "Your Pro subscription payment failed; update your card in the billing portal to keep Pro.",
            "balance": tx.last_balance(account.id),
        }
        return [tx.add_notice(account.id, "payment.failed", payload)]

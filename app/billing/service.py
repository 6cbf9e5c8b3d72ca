"""What the relay does, without HTTP: accounts, checkout, portal, transfers, spends, webhooks.

relay.py maps requests onto these methods and `BillingError`s onto JSON
answers. Every method that changes points runs in one database transaction;
every call to Stripe goes through the gateway (and so through the guard).
Requests that create something take the client's Idempotency-Key: a repeated
request returns the first answer instead of acting twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import stripe

from app.billing import ledger
from app.billing.accounts import account_view, hash_token, new_account, normalise_email, plan_of
from app.billing.catalog import CURRENCY, find_item, to_cents
from app.billing.db import Database
from app.billing.errors import (
    AccountExists,
    BillingError,
    InvalidRequest,
    NotFound,
    PaymentProviderUnavailable,
    Unauthorised,
)
from app.billing.flow import PaymentFlow
from app.billing.hub import NoticeHub
from app.billing.processor import EventProcessor
from app.billing.reconciler import Reconciler
from app.billing.repository import Account, BillingTx, LedgerEntry, Notice
from app.billing.stripe_gateway import StripeGateway
from app.resilience import (
    FailureKind,
    GuardConfig,
    GuardRegistry,
    ResilienceError,
    classify,
    describe_error,
    scrub,
)

__all__ = ["STRIPE_GUARD", "RelayConfig", "RelayService", "entry_json"]

_log = logging.getLogger(__name__)

# Stripe allows 100 requests/s in live mode and 25 in test mode; stay under the lower one.
STRIPE_GUARD = GuardConfig(
    failure_threshold=5, reset_timeout=30.0, retry_attempts=3, retry_first_delay=0.5, retry_max_delay=8.0,
    max_concurrent=10, call_timeout=20.0, rate_per_second=20.0, burst=20.0,
)
_KEY = re.compile(r"[A-Za-z0-9_-]{8,100}")
SPEND_REASONS = {"sms_alert": "SMS alert"}


@dataclass(frozen=True, slots=True)
class RelayConfig:
    stripe_secret_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    db_path: Path | str
    stripe_api_base: str | None = None
    public_url: str | None = None  # where browsers return after Checkout; default http://host:port
    webhook_tolerance: int = 300  # seconds; Stripe's own default
    reconcile_interval: float | None = 300.0  # None: only on request (tests)
    reconcile_lookback: float = 3 * 86400.0
    stripe_guard: GuardConfig = STRIPE_GUARD


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
    # The reference is internal (a transfer's holds the other account's id): never sent to a client.
    return {
        "id": entry.id,
        "kind": entry.kind,
        "points": entry.points,
        "balance_after": entry.balance_after,
        "note": entry.note,
        "created": entry.created_at,
    }


def idempotency_key(value: str | None) -> str:
    """The client's Idempotency-Key, checked; a fresh one if it sent none (then a retry is a new request)."""
    if value is None or value == "":
        return uuid.uuid4().hex
    if not _KEY.fullmatch(value):
        raise InvalidRequest("The Idempotency-Key header must be 8 to 100 letters, digits, '-' or '_'.")
    return value


class RelayService:
    def __init__(self, config: RelayConfig, *, guards: GuardRegistry | None = None) -> None:
        self.config = config
        self.public_url = (config.public_url or "").rstrip("/")
        self.db = Database(config.db_path)
        registry = guards or GuardRegistry(None, {"stripe": config.stripe_guard})
        self.gateway = StripeGateway(config.stripe_secret_key, guard=registry.get("stripe"), api_base=config.stripe_api_base)
        self.processor = EventProcessor()
        self.hub = NoticeHub()
        self.reconciler = Reconciler(
            self.gateway, self.db, self.processor, self.hub,
            interval=config.reconcile_interval, lookback=config.reconcile_lookback,
        )

    def __repr__(self) -> str:
        return f"<RelayService db={self.config.db_path}>"

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.reconciler.stop()
        await self.gateway.close()
        await self.db.close()

    @property
    def ready(self) -> bool:
        return self.db.is_open

    # ------------------------------------------------------------------ accounts

    async def create_account(self, email: object) -> tuple[dict[str, Any], str]:
        account, token = new_account(email)  # type: ignore[arg-type]  # validated inside

        def work(tx: BillingTx) -> dict[str, Any]:
            if tx.account_by_email(account.email) is not None:
                raise AccountExists(
                    "An account with this email already exists. Use the computer it was created on, "
                    "or choose another email."
                )
            tx.insert_account(account)
            return account_view(tx, account)

        view = await self.db.run(work)
        _log.info("created billing account %s", account.id)
        return view, token

    async def authenticate(self, token: str | None) -> Account:
        if not token:
            raise Unauthorised("Sign in to billing first: the request carried no account token.")
        digest = hash_token(token)
        account = await self.db.run(lambda tx: tx.account_by_token_hash(digest))
        if account is None:
            raise Unauthorised("This computer's billing sign-in is no longer valid; sign in to billing again.")
        return account

    async def view(self, account: Account) -> dict[str, Any]:
        return await self.db.run(lambda tx: account_view(tx, tx.account(account.id) or account))

    async def ledger(self, account: Account, limit: int = 50, before: int | None = None) -> dict[str, Any]:
        limit = max(1, min(int(limit), 200))
        rows = await self.db.run(lambda tx: tx.entries(account.id, limit + 1, before))
        return {"entries": [entry_json(e) for e in rows[:limit]], "has_more": len(rows) > limit}

    async def notices(self, account: Account, after: int, limit: int = 200) -> list[Notice]:
        return await self.db.run(lambda tx: tx.notices_after(account.id, after, limit))

    # ------------------------------------------------------------------ Stripe-backed requests

    def _stripe_failed(self, exc: Exception, doing: str) -> BillingError:
        """A sentence for the desktop; the operator's detail goes to the log, scrubbed."""
        kind = classify(exc)
        if isinstance(exc, ResilienceError):
            return PaymentProviderUnavailable(str(exc))  # the guard's own sentence: paused until when, and why
        if kind is FailureKind.AUTH:
            # Stripe's message would echo the key's last characters: say only what the operator must fix.
            _log.error("Stripe refused the relay's API key; check STRIPE_SECRET_KEY")
            return PaymentProviderUnavailable(
                f"The billing relay is misconfigured, so we could not {doing}; its operator must fix its Stripe key."
            )
        if kind is FailureKind.BUSINESS and isinstance(exc, stripe.StripeError):
            _log.error("Stripe refused to %s: %s", doing, scrub(exc.user_message or type(exc).__name__))
            return PaymentProviderUnavailable(
                f"Stripe refused to {doing}; the relay's operator has been told in its log. Try again later."
            )
        if kind is FailureKind.RATE_LIMITED:
            _log.warning("Stripe rate-limited the relay while trying to %s", doing)
            return PaymentProviderUnavailable(f"Stripe is busy, so we could not {doing}. Try again in a minute.")
        _log.warning("Stripe could not %s: %s", doing, describe_error(exc))
        return PaymentProviderUnavailable(f"Stripe is not answering, so we could not {doing}. Try again in a minute.")

    async def _customer(self, account: Account) -> str:
        fresh = await self.db.run(lambda tx: tx.account(account.id))
        if fresh is not None and fresh.customer_id:
            return fresh.customer_id
        customer = await self.gateway.create_customer(account_id=account.id, email=account.email)

        def save(tx: BillingTx) -> str:
            held = tx.account(account.id)
            if held is not None and held.customer_id:
                return held.customer_id  # another request got there first (same idempotency key: same customer)
            tx.set_customer(account.id, customer)
            return customer

        return await self.db.run(save)

    async def checkout(self, account: Account, item_code: object, key: str) -> dict[str, Any]:
        item = find_item(item_code) if isinstance(item_code, str) else None
        if item is None:
            raise InvalidRequest("Choose the Pro plan or a points pack of 100, 500 or 2,000 points.")
        request = f"checkout:{key}"
        stored = await self.db.run(lambda tx: tx.request_result(account.id, request))
        if stored is not None:
            return dict(json.loads(stored))
        if item.kind == "plan" and await self.db.run(lambda tx: plan_of(tx, account.id)) == "pro":
            raise AccountExists("You already have Pro; manage it from the billing portal.", code="already_pro")
        # Derived from the request key, so a retried request names the same payment and sends Stripe the
        # same parameters under the same idempotency key.
        payment_id = "pay_" + hashlib.sha256(f"{account.id}:{key}".encode()).hexdigest()[:24]
        amount = to_cents(item.price)
        await self.db.run(lambda tx: PaymentFlow(tx).create(
            payment_id=payment_id, account_id=account.id, item=item, amount_cents=amount, currency=CURRENCY))
        try:
            customer = await self._customer(account)
            session = await self.gateway.create_checkout_session(
                account_id=account.id, customer_id=customer, item=item, payment_id=payment_id,
                success_url=f"{self.public_url}/billing/done", cancel_url=f"{self.public_url}/billing/cancelled",
                idempotency_key=f"meridian-checkout-{account.id}-{key}",
            )
        except (stripe.StripeError, ResilienceError, aiohttp.ClientError, OSError) as exc:
            raise self._stripe_failed(exc, "start the checkout") from None
        result = {"url": session.url, "payment": payment_id, "item": item.code}

        def save(tx: BillingTx) -> None:
            payment = tx.payment(payment_id)
            if payment is not None:
                PaymentFlow(tx).attach(payment, session_id=session.id)
            if tx.request_result(account.id, request) is None:
                tx.save_request_result(account.id, request, json.dumps(result))

        await self.db.run(save)
        _log.info("checkout %s for %s: %s", payment_id, account.id, item.code)
        return result

    async def portal(self, account: Account, key: str) -> dict[str, Any]:
        try:
            customer = await self._customer(account)
            url = await self.gateway.create_portal_session(
                customer_id=customer, return_url=f"{self.public_url}/billing/portal-done",
                idempotency_key=f"meridian-portal-{account.id}-{key}",
            )
        except (stripe.StripeError, ResilienceError, aiohttp.ClientError, OSError) as exc:
            raise self._stripe_failed(exc, "open the billing portal") from None
        return {"url": url}

    # ------------------------------------------------------------------ points

    async def transfer(self, account: Account, to_email: object, points: object, key: str) -> dict[str, Any]:
        email = normalise_email(to_email)
        amount = ledger.check_points(points)
        request = f"transfer:{key}"

        def work(tx: BillingTx) -> tuple[dict[str, Any], list[Notice]]:
            stored = tx.request_result(account.id, request)
            if stored is not None:
                return dict(json.loads(stored)), []
            recipient = tx.account_by_email(email)
            if recipient is None:
                raise NotFound(f"No Meridian account uses {email}; check the address with the recipient.")
            out, _ = ledger.transfer(
                tx, account.id, recipient.id, amount, f"transfer:{account.id}:{key}",
                note_out=f"To {recipient.email}", note_in=f"From {account.email}",
            )
            notice = tx.add_notice(
                recipient.id, "points.received",
                {"points": amount, "from": account.email, "balance": tx.last_balance(recipient.id)},
            )
            result = {"balance": tx.last_balance(account.id), "entry": entry_json(out)}
            tx.save_request_result(account.id, request, json.dumps(result))
            return result, [notice]

        result, notices = await self.db.run(work)
        self.hub.publish(notices)
        return result

    async def spend(self, account: Account, points: object, reason: object, key: str) -> dict[str, Any]:
        amount = ledger.check_points(points)
        if reason not in SPEND_REASONS:
            raise InvalidRequest("Points can only be spent on SMS alerts (reason 'sms_alert').")
        request = f"spend:{key}"

        def work(tx: BillingTx) -> dict[str, Any]:
            stored = tx.request_result(account.id, request)
            if stored is not None:
                return dict(json.loads(stored))
            if plan_of(tx, account.id) != "pro":
                raise InvalidRequest("SMS alerts need the Pro plan; upgrade in the billing panel.", code="pro_required")
            entry = ledger.spend(tx, account.id, amount, f"spend:{account.id}:{key}", SPEND_REASONS[str(reason)])
            result = {"balance": entry.balance_after, "entry": entry_json(entry)}
            tx.save_request_result(account.id, request, json.dumps(result))
            return result

        return await self.db.run(work)

    # ------------------------------------------------------------------ Stripe events

    async def webhook(self, body: bytes, signature: str | None) -> int:
        """Verify and apply one webhook delivery; returns how many notices it produced."""
        try:
            event: Mapping[str, Any] = self.gateway.verify_webhook(
                body, signature, self.config.webhook_secret, self.config.webhook_tolerance
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:
            _log.warning("rejected a webhook: %s", type(exc).__name__)
            raise InvalidRequest(
                "The webhook's Stripe-Signature is missing, does not match, or is too old.", code="bad_signature"
            ) from None
        try:
            notices = await self.db.run(lambda tx: self.processor.apply(tx, event, "webhook"))
        except ValueError:
            raise InvalidRequest("The webhook body is not a Stripe event.") from None
        self.hub.publish(notices)
        return len(notices)

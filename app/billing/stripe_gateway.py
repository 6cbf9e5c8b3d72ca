"""Every call the relay makes to Stripe, through the `stripe` package and the relay's Guard.

* The package's own retries are off (`max_network_retries=0`): the guard is the
  one retry layer, with its breaker and backoff.
* Every POST carries an explicit Stripe idempotency key derived from what it
  creates (`customer:<account>`, `checkout:<account>:<request key>`, ...). Stripe
  replays the first answer for a key it has seen, so a create whose answer was
  lost (a timeout) and that the guard retries returns the same customer or
  session instead of making a second one. That is why these POSTs are called
  with `idempotent=True`. (Without an explicit key the package would invent a
  new random one per call, and a retry would create a duplicate.)
* Stripe's errors are tagged for the guard: 5xx and connection errors count as
  an unhealthy service and are retried; 429 is rate limiting (with its
  Retry-After); 409 (the same idempotency key in flight) is retried once; other
  4xx are refusals. A `Stripe-Should-Retry` header overrides the status.
* The secret key lives only inside the StripeClient; no message, log or repr here holds it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import stripe

from app.billing.catalog import CURRENCY, Item, to_cents
from app.billing.processor import METADATA_ACCOUNT, METADATA_ITEM, METADATA_PAYMENT
from app.resilience import FailureKind, Guard, classify_status

__all__ = ["CheckoutSession", "StripeGateway", "tag_stripe_error"]

_log = logging.getLogger(__name__)
T = TypeVar("T")


def tag_stripe_error(exc: stripe.StripeError) -> None:
    """Give a Stripe error the `failure_kind` the guard reads (see the module docstring)."""
    headers = exc.headers or {}
    should_retry = None
    for name, value in headers.items():
        if name.lower() == "stripe-should-retry":
            should_retry = str(value).lower()
    if should_retry == "false":
        exc.failure_kind = FailureKind.BUSINESS  # type: ignore[attr-defined]
    elif should_retry == "true":
        exc.failure_kind = FailureKind.UNHEALTHY  # type: ignore[attr-defined]
    elif exc.http_status == 409:
        exc.failure_kind = FailureKind.TRANSIENT_CLIENT  # type: ignore[attr-defined]
    elif exc.http_status:
        exc.failure_kind = classify_status(exc.http_status)  # type: ignore[attr-defined]
    # No status (APIConnectionError): the guard classifies its cause, the aiohttp or timeout error.


class CheckoutSession:
    __slots__ = ("id", "url")

    def __init__(self, session_id: str, url: str) -> None:
        self.id = session_id
        self.url = url


class StripeGateway:
    def __init__(self, secret_key: str, *, guard: Guard, api_base: str | None = None, http_timeout: float = 60.0) -> None:
        # The package's HTTP timeout is a backstop only: the guard's call timeout, shorter, decides.
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=http_timeout))
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=0,
        )
        self._guard = guard

    def __repr__(self) -> str:
        return f"<StripeGateway guard={self._guard.group}>"

    @property
    def client(self) -> stripe.StripeClient:
        return self._client

    async def _call(self, fn: Callable[[], Awaitable[T]], *, idempotent: bool, what: str) -> T:
        async def attempt() -> T:
            try:
                return await fn()
            except stripe.StripeError as exc:
                tag_stripe_error(exc)
                raise

        return await self._guard.call(attempt, idempotent=idempotent, what=what)

    # ------------------------------------------------------------------ calls

    async def create_customer(self, *, account_id: str, email: str) -> str:
        params: dict[str, Any] = {"email": email, "metadata": {METADATA_ACCOUNT: account_id}}
        options: Any = {"idempotency_key": f"meridian-customer-{account_id}"}
        customer = await self._call(
            lambda: self._client.v1.customers.create_async(params, options), idempotent=True, what="create a customer"
        )
        return str(customer.id)

    async def create_checkout_session(
        self,
        *,
        account_id: str,
        customer_id: str,
        item: Item,
        payment_id: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession:
        metadata = {METADATA_ACCOUNT: account_id, METADATA_ITEM: item.code, METADATA_PAYMENT: payment_id}
        price_data: dict[str, Any] = {
            "currency": CURRENCY,
            "unit_amount": to_cents(item.price),
            "product_data": {"name": item.name},
        }
        params: dict[str, Any] = {
            "customer": customer_id,
            "client_reference_id": account_id,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "line_items": [{"quantity": 1, "price_data": price_data}],
        }
        if item.kind == "plan":
            price_data["recurring"] = {"interval": "month"}
            params["mode"] = "subscription"
            params["subscription_data"] = {"metadata": metadata}
        else:
            params["mode"] = "payment"
            params["payment_intent_data"] = {"metadata": metadata}
        options: Any = {"idempotency_key": idempotency_key}
        session = await self._call(
            lambda: self._client.v1.checkout.sessions.create_async(params, options),
            idempotent=True,
            what="create a checkout session",
        )
        return CheckoutSession(str(session.id), str(session.url))

    async def create_portal_session(self, *, customer_id: str, return_url: str, idempotency_key: str) -> str:
        params: dict[str, Any] = {"customer": customer_id, "return_url": return_url}
        options: Any = {"idempotency_key": idempotency_key}
        portal = await self._call(
            lambda: self._client.v1.billing_portal.sessions.create_async(params, options),
            idempotent=True,
            what="open the billing portal",
        )
        return str(portal.url)

    async def list_events(
        self, *, created_gte: int, starting_after: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of events, newest first, as plain dicts; and whether more (older) pages follow."""
        params: dict[str, Any] = {"created": {"gte": int(created_gte)}, "limit": limit}
        if starting_after:
            params["starting_after"] = starting_after
        page = await self._call(
            lambda: self._client.v1.events.list_async(params), idempotent=True, what="list recent events"
        )
        events = [e.to_dict() if hasattr(e, "to_dict") else dict(e) for e in page.data]
        return events, bool(page.has_more)

    def verify_webhook(self, payload: bytes, signature: str | None, secret: str, tolerance: int) -> Mapping[str, Any]:
        """Stripe's signature check on the raw body; raises stripe.SignatureVerificationError or ValueError."""
        event = self._client.construct_event(payload, signature, secret, tolerance)
        return event.to_dict()

    async def close(self) -> None:
        if getattr(self._http, "_cached_session", True) is None:
            return  # never used: closing would open a session just to close it
        try:
            await self._http.close_async()
        except Exception:  # closing an unused client's session must not fail a shutdown
            _log.debug("closing Stripe's HTTP session failed", exc_info=True)

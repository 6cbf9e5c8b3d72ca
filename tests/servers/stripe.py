"""A local, stateful Stripe for tests: the parts of Stripe's REST API the billing relay uses, on 127.0.0.1.

    async with FakeStripe() as fake:                  # fake.url -> give to RelayConfig.stripe_api_base
        ...                                           # the relay creates customers and checkout sessions
        events = fake.pay_checkout(session_id)        # the customer paid: Stripe's events, stored in /v1/events
        await fake.deliver(events, relay_url + "/v1/stripe/webhook")   # signed webhooks, as Stripe sends them
        fake.decline_checkout(session_id)             # payment_intent.payment_failed
        fake.refund(payment_intent_id)                # charge.refunded (full, or amount= for partial)
        fake.update_subscription(sub_id, "past_due"); fake.cancel_subscription(sub_id); fake.fail_invoice(sub_id)
        fake.faults.fail_next(500, path="/v1/checkout/sessions")    # or 429 with retry_after=...
        fake.faults.delay_next(2.0, path="/v1/checkout/sessions")   # act, then answer too late: a lost answer
        fake.requests                                  # what the relay sent (form decoded), with idempotency keys

Wire format, as the real API: requests are form-encoded with bracketed keys
(`metadata[meridian_account]=...`, `line_items[0][price_data][unit_amount]=500`)
exactly as the `stripe` package sends them; answers are Stripe's JSON objects
(`object`, `id`, `created`, `livemode`, ...); errors are
`{"error": {"type", "message", "code", "param"}}` with Stripe's statuses (400,
401, 404, 429, 500). POSTs honour `Idempotency-Key`: the same key and
parameters replay the first answer (`Idempotent-Replayed: true`); the same key
with other parameters is Stripe's 400 `idempotency_error`. Injected 5xx/429
faults answer before the request is executed (like a load balancer), so they
are not saved under the key; an injected delay answers late *after* acting,
so a retry under the same key must get the same object back.

Events list newest first with `limit`, `starting_after`, `ending_before`,
`created[gte|gt|lte|lt]` and `type`/`types[]` filters, as `GET /v1/events`
does. Webhooks are signed like Stripe's: `Stripe-Signature: t=<unix>,v1=<hex
HMAC-SHA256 of "<t>.<raw body>" under the endpoint secret>`.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
API_KEY = "sk_test_meridianfake0000000000000000"
WEBHOOK_SECRET = "whsec_meridianfake000000000000000"
API_VERSION = "2025-09-30.clover"

__all__ = ["API_KEY", "WEBHOOK_SECRET", "FakeStripe", "Recorded", "decode_form", "sign_payload"]


# --------------------------------------------------------------------------- wire helpers


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracketed form keys -> nested dicts and lists (`a[0][b]=1` -> {"a": [{"b": "1"}]})."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        path = [head] + ([p.rstrip("]") for p in rest.split("[")] if rest else [])
        node: Any = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            nxt: Any = value if last else ([] if path[i + 1].isdigit() or path[i + 1] == "" else {})
            if isinstance(node, list):
                index = len(node) if part == "" else int(part)
                while len(node) <= index:
                    node.append(None)
                if node[index] is None or last:
                    node[index] = nxt
                node = node[index]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    return root


def sign_payload(payload: str, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _error(status: int, type_: str, message: str, *, code: str | None = None, param: str | None = None,
           headers: Mapping[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"type": type_, "message": message}
    if code:
        body["code"] = code
    if param:
        body["param"] = param
    return web.json_response({"error": body}, status=status, headers=dict(headers or {}))


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    replayed: bool
    status: int


@dataclass
class _Fault:
    kind: str  # "status" | "delay"
    path: str | None
    times: int
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0


class Faults:
    def __init__(self) -> None:
        self._queue: list[_Fault] = []

    def fail_next(self, status: int = 500, *, times: int = 1, path: str | None = None,
                  retry_after: float | None = None) -> None:
        """Answer the next `times` matching requests with `status` (Stripe's body for it), without acting."""
        self._queue.append(_Fault("status", path, times, status=status, retry_after=retry_after))

    def delay_next(self, seconds: float, *, times: int = 1, path: str | None = None) -> None:
        """Act on the next matching requests, then hold the answer `seconds` (the client times out)."""
        self._queue.append(_Fault("delay", path, times, delay=seconds))

    def clear(self) -> None:
        self._queue.clear()

    def take(self, path: str) -> _Fault | None:
        for fault in self._queue:
            if fault.path is None or path.startswith(fault.path):
                fault.times -= 1
                if fault.times <= 0:
                    self._queue.remove(fault)
                return fault
        return None


# --------------------------------------------------------------------------- the server


class FakeStripe:
    def __init__(self, *, api_key: str = API_KEY, webhook_secret: str = WEBHOOK_SECRET) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.faults = Faults()
        self.requests: list[Recorded] = []
        self.deliveries: list[tuple[str, int]] = []  # (event id, HTTP status the endpoint answered)
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.portal_sessions: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # oldest first
        # What a session's payment intent / subscription will carry (not part of Stripe's session object).
        self._session_extras: dict[str, dict[str, Any]] = {}
        self._last_refund_event: dict[str, Any] = {}
        self._idempotency: dict[str, tuple[str, dict[str, Any], int, dict[str, Any]]] = {}
        self._last_created = 0
        self._seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._client: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/customers", self._create_customer)
        app.router.add_get("/v1/customers/{id}", self._get("customer", self.customers))
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self._get("checkout.session", self.sessions))
        app.router.add_post("/v1/billing_portal/sessions", self._create_portal)
        app.router.add_get("/v1/payment_intents/{id}", self._get("payment_intent", self.payment_intents))
        app.router.add_get("/v1/subscriptions/{id}", self._get("subscription", self.subscriptions))
        app.router.add_post("/v1/refunds", self._create_refund)
        app.router.add_get("/v1/events", self._list_events)
        app.router.add_get("/v1/events/{id}", self._get_event)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ ids, time, objects

    def _id(self, prefix: str) -> str:
        return f"{prefix}_test_{next(self._seq):04d}{secrets.token_hex(8)}"

    def _now(self) -> int:
        # Strictly increasing, so tests can order events by `created` like Stripe's clock would.
        self._last_created = max(int(time.time()), self._last_created + 1)
        return self._last_created

    def event(self, type_: str, obj: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record a Stripe event about `obj` (a snapshot) and return it; it is listed at /v1/events."""
        data: dict[str, Any] = {"object": copy.deepcopy(dict(obj))}
        if previous:
            data["previous_attributes"] = dict(previous)
        event = {
            "id": self._id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self._now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        self.events.append(event)
        return event

    # ------------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST":
            params = decode_form((await request.post()).items())  # type: ignore[arg-type]
        else:
            params = decode_form(request.query.items())
        key = request.headers.get("Idempotency-Key")
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}":
            shown = auth.removeprefix("Bearer ")[-4:]
            response = _error(401, "invalid_request_error",
                              f"Invalid API Key provided: sk_test_****{shown}")
            self.requests.append(Recorded(request.method, request.path, params, key, False, 401))
            return response
        fault = self.faults.take(request.path)
        if fault is not None and fault.kind == "status":
            self.requests.append(Recorded(request.method, request.path, params, key, False, fault.status))
            return self._fault_response(fault)
        replayed = False
        if request.method == "POST" and key:
            held = self._idempotency.get(key)
            if held is not None:
                path, first_params, status, body = held
                if path != request.path or first_params != params:
                    response = _error(
                        400, "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                    )
                else:
                    replayed = True
                    response = web.json_response(body, status=status, headers={"Idempotent-Replayed": "true"})
            else:
                response = await handler(request, params)
                if response.status < 500:
                    self._idempotency[key] = (request.path, params, response.status, json.loads(response.text or "{}"))
        else:
            response = await handler(request, params)
        self.requests.append(Recorded(request.method, request.path, params, key, replayed, response.status))
        response.headers["Request-Id"] = f"req_{secrets.token_hex(7)}"
        if key:
            response.headers["Idempotency-Key"] = key
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay)  # acted already: the client gives up before this answer
        return response

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        if fault.status == 429:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return _error(429, "invalid_request_error",
                          "Request rate limit exceeded. Learn more about rate limits here "
                          "https://stripe.com/docs/rate-limits.", code="rate_limit", headers=headers)
        if fault.status >= 500:
            return _error(fault.status, "api_error",
                          "An unknown error occurred. Please retry your request or contact support.")
        return _error(fault.status, "invalid_request_error", "Injected failure.")

    def _get(self, kind: str, store: dict[str, dict[str, Any]]) -> Any:
        async def handler(request: web.Request, params: dict[str, Any]) -> web.Response:
            obj = store.get(request.match_info["id"])
            if obj is None:
                return _error(404, "invalid_request_error", f"No such {kind}: '{request.match_info['id']}'",
                              code="resource_missing", param="id")
            return web.json_response(obj)

        return handler

    # ------------------------------------------------------------------ endpoints

    async def _create_customer(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        customer = {
            "id": self._id("cus"), "object": "customer", "created": int(time.time()), "livemode": False,
            "email": params.get("email"), "metadata": params.get("metadata") or {}, "name": params.get("name"),
        }
        self.customers[customer["id"]] = customer
        return web.json_response(customer)

    async def _create_session(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        mode = params.get("mode")
        if mode not in ("payment", "subscription", "setup"):
            return _error(400, "invalid_request_error", "Missing required param: mode.", code="parameter_missing",
                          param="mode")
        if not params.get("success_url"):
            return _error(400, "invalid_request_error", "Missing required param: success_url.",
                          code="parameter_missing", param="success_url")
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            return _error(400, "invalid_request_error", f"No such customer: '{customer}'", code="resource_missing",
                          param="customer")
        items = params.get("line_items") or []
        if not items:
            return _error(400, "invalid_request_error", "Missing required param: line_items.",
                          code="parameter_missing", param="line_items")
        total = 0
        for item in items:
            price = item.get("price_data") or {}
            if mode == "subscription" and not (price.get("recurring") or {}).get("interval"):
                return _error(400, "invalid_request_error",
                              "You must specify `line_items[0][price_data][recurring]` in `subscription` mode.",
                              param="line_items[0][price_data][recurring]")
            total += int(price.get("unit_amount", 0)) * int(item.get("quantity", 1))
        session_id = self._id("cs")
        session = {
            "id": session_id, "object": "checkout.session", "created": int(time.time()), "livemode": False,
            "mode": mode, "status": "open", "payment_status": "unpaid", "customer": customer,
            "client_reference_id": params.get("client_reference_id"), "metadata": params.get("metadata") or {},
            "amount_total": total, "amount_subtotal": total,
            "currency": (items[0].get("price_data") or {}).get("currency", "usd"),
            "payment_intent": None, "subscription": None, "invoice": None,
            "success_url": params["success_url"], "cancel_url": params.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "expires_at": int(time.time()) + 86400,
        }
        self.sessions[session_id] = session
        self._session_extras[session_id] = {
            "payment_intent_data": params.get("payment_intent_data") or {},
            "subscription_data": params.get("subscription_data") or {},
        }
        return web.json_response(session)

    async def _create_portal(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        customer = params.get("customer")
        if customer not in self.customers:
            return _error(400, "invalid_request_error", f"No such customer: '{customer}'", code="resource_missing",
                          param="customer")
        portal_id = self._id("bps")
        portal = {
            "id": portal_id, "object": "billing_portal.session", "created": int(time.time()), "livemode": False,
            "customer": customer, "return_url": params.get("return_url"),
            "url": f"https://billing.stripe.com/p/session/{portal_id}",
        }
        self.portal_sessions[portal_id] = portal
        return web.json_response(portal)

    async def _create_refund(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        intent_id = params.get("payment_intent")
        if intent_id not in self.payment_intents:
            return _error(400, "invalid_request_error", f"No such payment_intent: '{intent_id}'",
                          code="resource_missing", param="payment_intent")
        amount = int(params["amount"]) if "amount" in params else None
        refund = self._refund(intent_id, amount)
        return web.json_response(refund)

    async def _get_event(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        for event in self.events:
            if event["id"] == request.match_info["id"]:
                return web.json_response(event)
        return _error(404, "invalid_request_error", f"No such event: '{request.match_info['id']}'",
                      code="resource_missing", param="id")

    async def _list_events(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        limit = int(params.get("limit", 10))
        if not 1 <= limit <= 100:
            return _error(400, "invalid_request_error", "Invalid integer: limit must be between 1 and 100.",
                          param="limit")
        newest_first = list(reversed(self.events))
        created = params.get("created")
        if isinstance(created, dict):
            tests = {"gte": lambda c, v: c >= v, "gt": lambda c, v: c > v,
                     "lte": lambda c, v: c <= v, "lt": lambda c, v: c < v}
            for op, value in created.items():
                newest_first = [e for e in newest_first if tests[op](e["created"], int(value))]
        elif created is not None:
            newest_first = [e for e in newest_first if e["created"] == int(created)]
        types = params.get("types") or ([params["type"]] if "type" in params else None)
        if types:
            newest_first = [e for e in newest_first if any(_type_matches(t, e["type"]) for t in types)]
        ids = [e["id"] for e in newest_first]
        if "starting_after" in params:
            if params["starting_after"] not in ids:
                return _error(400, "invalid_request_error", f"No such event: '{params['starting_after']}'",
                              code="resource_missing", param="starting_after")
            newest_first = newest_first[ids.index(params["starting_after"]) + 1:]
        elif "ending_before" in params:
            if params["ending_before"] not in ids:
                return _error(400, "invalid_request_error", f"No such event: '{params['ending_before']}'",
                              code="resource_missing", param="ending_before")
            newest_first = newest_first[:ids.index(params["ending_before"])][-limit:]
        page = newest_first[:limit]
        return web.json_response({"object": "list", "url": "/v1/events", "has_more": len(newest_first) > limit,
                                  "data": page})

    # ------------------------------------------------------------------ what customers and Stripe do

    def session(self, session_id: str) -> dict[str, Any]:
        return self.sessions[session_id]

    def session_for_payment(self, payment_ref: str) -> dict[str, Any]:
        """The checkout session the relay created for one of its payment references."""
        for session in self.sessions.values():
            if session["metadata"].get("meridian_payment") == payment_ref:
                return session
        raise KeyError(payment_ref)

    def _intent_for(self, session: dict[str, Any]) -> dict[str, Any]:
        if session["payment_intent"]:
            return self.payment_intents[session["payment_intent"]]
        extras = self._session_extras[session["id"]]["payment_intent_data"]
        intent = {
            "id": self._id("pi"), "object": "payment_intent", "created": int(time.time()), "livemode": False,
            "amount": session["amount_total"], "amount_received": 0, "currency": session["currency"],
            "customer": session["customer"], "metadata": dict(extras.get("metadata") or {}),
            "status": "requires_payment_method", "last_payment_error": None, "latest_charge": None,
        }
        self.payment_intents[intent["id"]] = intent
        session["payment_intent"] = intent["id"]
        return intent

    def pay_checkout(self, session_id: str) -> list[dict[str, Any]]:
        """The customer paid on the checkout page; returns Stripe's events in the order Stripe sends them."""
        session = self.sessions[session_id]
        if session["mode"] == "subscription":
            return self._start_subscription(session)
        intent = self._intent_for(session)
        charge = {
            "id": self._id("ch"), "object": "charge", "created": int(time.time()), "livemode": False,
            "amount": intent["amount"], "amount_captured": intent["amount"], "amount_refunded": 0,
            "currency": intent["currency"], "customer": session["customer"], "paid": True, "refunded": False,
            "payment_intent": intent["id"], "status": "succeeded", "metadata": {},
        }
        self.charges[charge["id"]] = charge
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge["id"],
                      last_payment_error=None)
        session.update(status="complete", payment_status="paid")
        return [
            self.event("charge.succeeded", charge),
            self.event("payment_intent.succeeded", intent),
            self.event("checkout.session.completed", session),
        ]

    def decline_checkout(self, session_id: str, message: str = "Your card was declined.") -> list[dict[str, Any]]:
        """A payment attempt on the checkout page failed (the page stays open for another try)."""
        session = self.sessions[session_id]
        intent = self._intent_for(session)
        intent.update(status="requires_payment_method", last_payment_error={
            "type": "card_error", "code": "card_declined", "decline_code": "generic_decline", "message": message,
        })
        return [self.event("payment_intent.payment_failed", intent)]

    def _refund(self, intent_id: str, amount: int | None) -> dict[str, Any]:
        intent = self.payment_intents[intent_id]
        charge = self.charges[intent["latest_charge"]]
        amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        refund = {"id": self._id("re"), "object": "refund", "amount": amount, "charge": charge["id"],
                  "payment_intent": intent_id, "status": "succeeded", "created": int(time.time())}
        self._last_refund_event = self.event("charge.refunded", charge, {"amount_refunded": charge["amount_refunded"] - amount})
        return refund

    def refund(self, payment_intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund (all that is left, or `amount` cents); returns the charge.refunded event."""
        self._refund(payment_intent_id, amount)
        return self._last_refund_event

    def _start_subscription(self, session: dict[str, Any]) -> list[dict[str, Any]]:
        extras = self._session_extras[session["id"]]["subscription_data"]
        now = int(time.time())
        sub = {
            "id": self._id("sub"), "object": "subscription", "created": now, "livemode": False,
            "customer": session["customer"], "status": "active", "metadata": dict(extras.get("metadata") or {}),
            "cancel_at_period_end": False,
            "items": {"object": "list", "data": [{"id": self._id("si"), "object": "subscription_item",
                                                 "current_period_start": now,
                                                 "current_period_end": now + 30 * 86400}]},
        }
        self.subscriptions[sub["id"]] = sub
        invoice = {
            "id": self._id("in"), "object": "invoice", "customer": session["customer"], "status": "paid",
            "amount_due": session["amount_total"], "amount_paid": session["amount_total"],
            "currency": session["currency"], "billing_reason": "subscription_create",
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub["id"]}},
        }
        self.invoices[invoice["id"]] = invoice
        session.update(status="complete", payment_status="paid", subscription=sub["id"], invoice=invoice["id"])
        return [
            self.event("customer.subscription.created", sub),
            self.event("invoice.paid", invoice),
            self.event("checkout.session.completed", session),
        ]

    def update_subscription(self, sub_id: str, status: str) -> dict[str, Any]:
        sub = self.subscriptions[sub_id]
        previous = {"status": sub["status"]}
        sub["status"] = status
        return self.event("customer.subscription.updated", sub, previous)

    def cancel_subscription(self, sub_id: str) -> dict[str, Any]:
        sub = self.subscriptions[sub_id]
        sub.update(status="canceled", canceled_at=int(time.time()), ended_at=int(time.time()))
        return self.event("customer.subscription.deleted", sub)

    def fail_invoice(self, sub_id: str) -> dict[str, Any]:
        sub = self.subscriptions[sub_id]
        items = sub["items"]["data"]
        amount = 900
        invoice = {
            "id": self._id("in"), "object": "invoice", "customer": sub["customer"], "status": "open",
            "amount_due": amount, "amount_paid": 0, "currency": "usd", "billing_reason": "subscription_cycle",
            "attempt_count": 1, "next_payment_attempt": items[0]["current_period_end"] + 3 * 86400,
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub_id}},
        }
        self.invoices[invoice["id"]] = invoice
        return self.event("invoice.payment_failed", invoice)

    # ------------------------------------------------------------------ webhooks

    def sign(self, payload: str, timestamp: int | None = None, secret: str | None = None) -> str:
        return sign_payload(payload, secret or self.webhook_secret, int(time.time()) if timestamp is None else timestamp)

    async def deliver(
        self,
        events: dict[str, Any] | Iterable[dict[str, Any]],
        url: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        signature: str | None = "sign",
        body: str | None = None,
    ) -> list[int]:
        """POST each event to `url` as Stripe does; returns the HTTP statuses.

        `signature=None` sends no Stripe-Signature header; any other string than
        "sign" is sent verbatim; `body` replaces the signed body (tampering)."""
        batch = [events] if isinstance(events, dict) else list(events)
        if self._client is None:
            self._client = aiohttp.ClientSession()
        statuses: list[int] = []
        for event in batch:
            payload = json.dumps(event, indent=2)  # Stripe sends pretty-printed JSON
            headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
            if signature == "sign":
                headers["Stripe-Signature"] = self.sign(payload, timestamp, secret)
            elif signature is not None:
                headers["Stripe-Signature"] = signature
            async with self._client.post(url, data=(body if body is not None else payload).encode(), headers=headers) as resp:
                await resp.read()
                statuses.append(resp.status)
                self.deliveries.append((event["id"], resp.status))
        return statuses


def _type_matches(pattern: str, event_type: str) -> bool:
    return event_type.startswith(pattern[:-1]) if pattern.endswith("*") else pattern == event_type


# --------------------------------------------------------------------------- the relay against it


def relay_config(fake: FakeStripe, db_path: Any, **overrides: Any) -> Any:
    """A RelayConfig pointed at `fake`, with fast retries and no background reconciler (tests call it)."""
    from dataclasses import replace

    from app.billing.service import STRIPE_GUARD, RelayConfig

    guard = replace(STRIPE_GUARD, retry_first_delay=0.01, retry_max_delay=0.05, call_timeout=1.5,
                    reset_timeout=1.0)
    settings: dict[str, Any] = {"stripe_api_base": fake.url, "reconcile_interval": None, "stripe_guard": guard}
    settings.update(overrides)
    return RelayConfig(fake.api_key, fake.webhook_secret, db_path, **settings)

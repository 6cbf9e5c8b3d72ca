"""The billing relay over HTTP, with the real `stripe` package talking to a local stateful Stripe.

Every webhook here is signed and sent the way Stripe sends it; every Stripe
call the relay makes goes over TCP to tests/servers/stripe.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.billing.relay import RelayServer
from tests.servers.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe, relay_config


@dataclass(frozen=True)
class Acct:
    id: str
    token: str
    email: str


class Api:
    """The relay's HTTP API as a desktop (or an attacker) would call it."""

    def __init__(self, session: aiohttp.ClientSession, relay: RelayServer) -> None:
        self.session = session
        self.relay = relay

    @property
    def hook(self) -> str:
        return self.relay.url + "/v1/stripe/webhook"

    async def call(self, method: str, path: str, token: str | None = None, body: Any = None,
                   key: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key:
            headers["Idempotency-Key"] = key
        async with self.session.request(method, self.relay.url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def create(self, email: str) -> Acct:
        status, body = await self.call("POST", "/v1/accounts", body={"email": email})
        assert status == 201, body
        return Acct(body["account"]["id"], body["token"], email)

    async def account(self, a: Acct) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/accounts/{a.id}", a.token)
        assert status == 200, body
        return body

    async def balance(self, a: Acct) -> int:
        return (await self.account(a))["balance"]

    async def ledger(self, a: Acct) -> list[dict[str, Any]]:
        status, body = await self.call("GET", f"/v1/accounts/{a.id}/ledger", a.token)
        assert status == 200, body
        return body["entries"]

    async def notices(self, a: Acct) -> list[dict[str, Any]]:
        status, body = await self.call("GET", f"/v1/accounts/{a.id}/notices", a.token)
        assert status == 200, body
        return body["notices"]

    async def checkout(self, a: Acct, item: str, key: str | None = None) -> dict[str, Any]:
        status, body = await self.call("POST", f"/v1/accounts/{a.id}/checkout", a.token, {"item": item}, key)
        assert status == 200, body
        return body


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        yield server


@pytest.fixture
async def relay(fake: FakeStripe, tmp_path: Path) -> AsyncIterator[RelayServer]:
    async with RelayServer(relay_config(fake, tmp_path / "relay.sqlite3")) as server:
        yield server


@pytest.fixture
async def api(relay: RelayServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, relay)


async def buy(api: Api, fake: FakeStripe, a: Acct, item: str = "points_500") -> tuple[dict[str, Any], list[dict]]:
    """Checkout through the relay and pay on the (fake) checkout page; returns (session, Stripe's events)."""
    started = await api.checkout(a, item)
    session = fake.session_for_payment(started["payment"])
    return session, fake.pay_checkout(session["id"])


# ---------------------------------------------------------------------------- checkout


async def test_checkout_creates_the_customer_once_and_a_session_carrying_account_and_item(
    api: Api, fake: FakeStripe
) -> None:
    a = await api.create("ada@example.com")
    pack = await api.checkout(a, "points_500")
    plan = await api.checkout(a, "pro_monthly")

    customers = [r for r in fake.requests if r.path == "/v1/customers"]
    assert len(customers) == 1 and len(fake.customers) == 1
    customer = next(iter(fake.customers.values()))
    assert customer["email"] == "ada@example.com" and customer["metadata"] == {"meridian_account": a.id}
    sessions = [r for r in fake.requests if r.path == "/v1/checkout/sessions"]
    assert len(sessions) == 2 and all(r.idempotency_key for r in sessions)
    assert len({r.idempotency_key for r in sessions}) == 2

    pack_params, plan_params = sessions[0].params, sessions[1].params
    assert pack_params["mode"] == "payment" and pack_params["customer"] == customer["id"]
    assert pack_params["line_items"][0]["price_data"]["unit_amount"] == "2000"  # $20.00, in cents on the wire
    assert pack_params["metadata"] == {"meridian_account": a.id, "meridian_item": "points_500",
                                       "meridian_payment": pack["payment"]}
    assert pack_params["payment_intent_data"]["metadata"]["meridian_payment"] == pack["payment"]
    assert plan_params["mode"] == "subscription"
    assert plan_params["line_items"][0]["price_data"]["recurring"] == {"interval": "month"}
    assert plan_params["subscription_data"]["metadata"]["meridian_account"] == a.id
    assert pack["url"] == fake.session_for_payment(pack["payment"])["url"]
    assert pack["url"].startswith("https://checkout.stripe.com/")


async def test_unknown_item_is_refused_with_a_sentence_and_nothing_sent_to_stripe(api: Api, fake: FakeStripe) -> None:
    a = await api.create("bob@example.com")
    status, body = await api.call("POST", f"/v1/accounts/{a.id}/checkout", a.token, {"item": "points_1"})
    assert status == 400
    assert "points pack of 100, 500 or 2,000" in body["error"]["message"]
    assert fake.requests == []


async def test_a_repeated_checkout_request_returns_the_same_session(api: Api, fake: FakeStripe) -> None:
    a = await api.create("cy@example.com")
    first = await api.checkout(a, "points_100", key="desktop-key-0001")
    again = await api.checkout(a, "points_100", key="desktop-key-0001")
    assert again == first
    assert len(fake.sessions) == 1


# ---------------------------------------------------------------------------- webhooks: idempotency and order


async def test_a_duplicated_webhook_awards_the_points_once(api: Api, fake: FakeStripe) -> None:
    a = await api.create("dee@example.com")
    _, events = await buy(api, fake, a)
    assert await fake.deliver(events, api.hook) == [200, 200, 200]
    assert await fake.deliver(events, api.hook) == [200, 200, 200]  # Stripe retried every one
    assert await fake.deliver(list(reversed(events)), api.hook) == [200, 200, 200]

    assert await api.balance(a) == 500
    entries = await api.ledger(a)
    assert [(e["kind"], e["points"]) for e in entries] == [("purchase", 500)]
    # Two different events (payment_intent.succeeded, checkout.session.completed) said "paid": one notice.
    assert [n["kind"] for n in await api.notices(a)] == ["payment.succeeded"]


async def test_a_refund_after_the_award_reverts_the_points(api: Api, fake: FakeStripe) -> None:
    a = await api.create("eve@example.com")
    session, events = await buy(api, fake, a)
    await fake.deliver(events, api.hook)
    half = fake.refund(session["payment_intent"], amount=1000)  # $10 of $20
    await fake.deliver(half, api.hook)
    assert await api.balance(a) == 250
    rest = fake.refund(session["payment_intent"])
    await fake.deliver([rest, half, rest], api.hook)  # duplicates and an older one, out of order

    assert await api.balance(a) == 0
    kinds = [(e["kind"], e["points"]) for e in reversed(await api.ledger(a))]
    assert kinds == [("purchase", 500), ("refund", -250), ("refund", -250)]
    refunds = [n for n in await api.notices(a) if n["kind"] == "payment.refunded"]
    assert [(n["points"], n["amount"]) for n in refunds] == [(250, "10.00"), (250, "10.00")]


async def test_a_refund_seen_before_the_completion_awards_nothing(api: Api, fake: FakeStripe) -> None:
    a = await api.create("fay@example.com")
    session, events = await buy(api, fake, a)
    refund = fake.refund(session["payment_intent"])
    assert await fake.deliver(refund, api.hook) == [200]
    assert await fake.deliver(events, api.hook) == [200, 200, 200]

    assert await api.balance(a) == 0
    assert await api.ledger(a) == []
    assert "payment.succeeded" not in [n["kind"] for n in await api.notices(a)]


async def test_a_refund_never_takes_the_balance_below_zero(api: Api, fake: FakeStripe) -> None:
    a = await api.create("gus@example.com")
    b = await api.create("hal@example.com")
    session, events = await buy(api, fake, a, "points_100")
    await fake.deliver(events, api.hook)
    status, _ = await api.call("POST", f"/v1/accounts/{a.id}/transfers", a.token,
                               {"to_email": b.email, "points": 80}, key="transfer-0001")
    assert status == 200
    await fake.deliver(fake.refund(session["payment_intent"]), api.hook)

    assert await api.balance(a) == 0  # the 20 points left were taken back; the 80 given away could not be
    assert await api.balance(b) == 80
    refund = [n for n in await api.notices(a) if n["kind"] == "payment.refunded"][0]
    assert refund["points"] == 20 and refund["unrecovered"] == 80


async def test_a_failed_payment_awards_nothing_and_is_pushed_as_payment_failed(api: Api, fake: FakeStripe) -> None:
    a = await api.create("ida@example.com")
    started = await api.checkout(a, "points_500")
    session = fake.session_for_payment(started["payment"])
    async with api.session.ws_connect(f"{api.relay.url}/v1/accounts/{a.id}/stream",
                                      headers={"Authorization": f"Bearer {a.token}"}) as ws:
        await fake.deliver(fake.decline_checkout(session["id"], "Your card has insufficient funds."), api.hook)
        pushed = json.loads((await ws.receive(timeout=5)).data)
        assert pushed["kind"] == "payment.failed"
        assert pushed["reason"] == "Your card has insufficient funds."
        assert pushed["item"] == "points_500" and pushed["amount"] == "20.00" and pushed["points"] == 0
        assert await api.balance(a) == 0

        # The customer tries another card on the same page, and it goes through.
        await fake.deliver(fake.pay_checkout(session["id"]), api.hook)
        pushed = json.loads((await ws.receive(timeout=5)).data)
        assert pushed["kind"] == "payment.succeeded" and pushed["points"] == 500 and pushed["balance"] == 500
    assert await api.balance(a) == 500


async def test_subscription_updates_older_than_the_state_held_are_ignored(api: Api, fake: FakeStripe) -> None:
    a = await api.create("jo@example.com")
    session, events = await buy(api, fake, a, "pro_monthly")
    await fake.deliver(events, api.hook)
    view = await api.account(a)
    assert view["plan"] == "pro" and view["entitlements"] == {"sms_alerts": True, "max_active_alerts": None}

    sub = session["subscription"]
    older = fake.update_subscription(sub, "past_due")
    newer = fake.update_subscription(sub, "active")
    await fake.deliver([newer, older], api.hook)  # delivered newest first
    view = await api.account(a)
    assert view["plan"] == "pro" and view["subscription_status"] == "active"

    late_update = fake.update_subscription(sub, "active")
    deleted = fake.cancel_subscription(sub)
    await fake.deliver([deleted, late_update], api.hook)
    view = await api.account(a)
    assert view["plan"] == "free" and view["entitlements"]["max_active_alerts"] == 20
    assert [n["plan"] for n in await api.notices(a) if n["kind"] == "plan.changed"] == ["pro", "free"]


async def test_a_failed_subscription_invoice_is_pushed_as_payment_failed(api: Api, fake: FakeStripe) -> None:
    a = await api.create("kit@example.com")
    session, events = await buy(api, fake, a, "pro_monthly")
    await fake.deliver(events, api.hook)
    await fake.deliver(fake.fail_invoice(session["subscription"]), api.hook)
    failed = [n for n in await api.notices(a) if n["kind"] == "payment.failed"]
    assert len(failed) == 1
    assert failed[0]["item"] == "pro_monthly" and failed[0]["amount"] == "9.00"
    assert "update your card" in failed[0]["reason"]


# ---------------------------------------------------------------------------- webhooks: signatures


@pytest.mark.parametrize("how", ["unsigned", "wrong secret", "tampered body", "stale", "garbled header"])
async def test_a_badly_signed_or_stale_webhook_is_rejected_and_changes_nothing(
    api: Api, fake: FakeStripe, how: str
) -> None:
    a = await api.create("lou@example.com")
    session, events = await buy(api, fake, a)
    completed = events[-1]
    if how == "unsigned":
        statuses = await fake.deliver(completed, api.hook, signature=None)
    elif how == "wrong secret":
        statuses = await fake.deliver(completed, api.hook, secret="whsec_someone_else")
    elif how == "tampered body":
        forged = json.loads(json.dumps(completed))
        forged["data"]["object"]["metadata"]["meridian_payment"] = "pay_forged"
        statuses = await fake.deliver(completed, api.hook, body=json.dumps(forged))
    elif how == "stale":
        statuses = await fake.deliver(completed, api.hook, timestamp=int(time.time()) - 301)
    else:
        statuses = await fake.deliver(completed, api.hook, signature="t=soon,v1=")
    assert statuses == [400]
    assert await api.balance(a) == 0 and await api.notices(a) == []

    # The genuine delivery still works afterwards: the rejected one was not recorded as seen.
    assert await fake.deliver(completed, api.hook) == [200]
    assert await api.balance(a) == 500


async def test_a_webhook_signed_within_the_tolerance_is_accepted(api: Api, fake: FakeStripe) -> None:
    a = await api.create("max@example.com")
    _, events = await buy(api, fake, a)
    assert await fake.deliver(events[-1], api.hook, timestamp=int(time.time()) - 200) == [200]
    assert await api.balance(a) == 500


# ---------------------------------------------------------------------------- accounts are walled off


async def test_one_account_cannot_read_or_change_another(api: Api, fake: FakeStripe) -> None:
    a = await api.create("ned@example.com")
    b = await api.create("ola@example.com")
    _, events = await buy(api, fake, b)
    await fake.deliver(events, api.hook)
    sent_to_stripe = len(fake.requests)

    for method, path, body in [
        ("GET", f"/v1/accounts/{b.id}", None),
        ("GET", f"/v1/accounts/{b.id}/ledger", None),
        ("GET", f"/v1/accounts/{b.id}/notices", None),
        ("POST", f"/v1/accounts/{b.id}/checkout", {"item": "points_100"}),
        ("POST", f"/v1/accounts/{b.id}/portal", {}),
        ("POST", f"/v1/accounts/{b.id}/transfers", {"to_email": a.email, "points": 100}),
        ("POST", f"/v1/accounts/{b.id}/spend", {"points": 1, "reason": "sms_alert"}),
    ]:
        status, answer = await api.call(method, path, a.token, body)
        assert status == 404, (path, answer)
        assert "entries" not in answer and "balance" not in answer
        status, _ = await api.call(method, path, None, body)
        assert status == 401
        status, _ = await api.call(method, path, "mrt_not-a-real-token", body)
        assert status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.session.ws_connect(f"{api.relay.url}/v1/accounts/{b.id}/stream",
                                     headers={"Authorization": f"Bearer {a.token}"})
    assert refused.value.status == 404

    assert len(fake.requests) == sent_to_stripe
    assert await api.balance(b) == 500 and await api.balance(a) == 0
    status, me = await api.call("GET", "/v1/me", a.token)
    assert status == 200 and me["id"] == a.id and me["email"] == a.email


async def test_an_email_can_hold_only_one_account(api: Api) -> None:
    await api.create("pia@example.com")
    status, body = await api.call("POST", "/v1/accounts", body={"email": "PIA@example.com"})
    assert status == 409 and "already exists" in body["error"]["message"]
    status, body = await api.call("POST", "/v1/accounts", body={"email": "not an email"})
    assert status == 400 and "name@example.com" in body["error"]["message"]


# ---------------------------------------------------------------------------- points


async def test_transfers_move_points_once_and_refuse_beyond_the_balance(api: Api, fake: FakeStripe) -> None:
    a = await api.create("quin@example.com")
    b = await api.create("rae@example.com")
    _, events = await buy(api, fake, a)
    await fake.deliver(events, api.hook)
    path = f"/v1/accounts/{a.id}/transfers"

    status, body = await api.call("POST", path, a.token, {"to_email": "RAE@example.com", "points": 120}, "xfer-00001")
    assert status == 200 and body["balance"] == 380
    status, again = await api.call("POST", path, a.token, {"to_email": b.email, "points": 120}, "xfer-00001")
    assert status == 200 and again == body  # a retried request is answered, not applied twice
    assert await api.balance(a) == 380 and await api.balance(b) == 120
    assert [n["kind"] for n in await api.notices(b)] == ["points.received"]

    status, body = await api.call("POST", path, a.token, {"to_email": b.email, "points": 381}, "xfer-00002")
    assert status == 409
    assert body["error"]["message"] == (
        "You have 380 points, so you cannot transfer 381. Choose a smaller number of points or buy a points pack."
    )
    for bad, words in [({"to_email": b.email, "points": 0}, "whole number above zero"),
                       ({"to_email": b.email, "points": 1.5}, "whole number above zero"),
                       ({"to_email": a.email, "points": 1}, "your own account"),
                       ({"to_email": "nobody@example.com", "points": 1}, "No Meridian account uses")]:
        status, body = await api.call("POST", path, a.token, bad)
        assert status in (400, 404) and words in body["error"]["message"]
    assert await api.balance(a) == 380 and await api.balance(b) == 120


async def test_sms_alerts_spend_points_on_pro_only(api: Api, fake: FakeStripe) -> None:
    a = await api.create("sol@example.com")
    _, events = await buy(api, fake, a, "points_100")
    await fake.deliver(events, api.hook)
    path = f"/v1/accounts/{a.id}/spend"
    status, body = await api.call("POST", path, a.token, {"points": 1, "reason": "sms_alert"}, "spend-00001")
    assert status == 400 and body["error"]["code"] == "pro_required"

    _, events = await buy(api, fake, a, "pro_monthly")
    await fake.deliver(events, api.hook)
    status, body = await api.call("POST", path, a.token, {"points": 1, "reason": "sms_alert"}, "spend-00002")
    assert status == 200 and body["balance"] == 99
    status, body = await api.call("POST", path, a.token, {"points": 1, "reason": "sms_alert"}, "spend-00002")
    assert body["balance"] == 99  # the same key: spent once


# ---------------------------------------------------------------------------- restart and reconciliation


async def test_a_relay_restarted_mid_flow_resumes_from_sqlite(fake: FakeStripe, tmp_path: Path) -> None:
    config = relay_config(fake, tmp_path / "relay.sqlite3")
    async with aiohttp.ClientSession() as http:
        first = RelayServer(config)
        await first.start()
        api = Api(http, first)
        a = await api.create("tam@example.com")
        started = await api.checkout(a, "points_2000", key="before-restart-1")
        await first.stop()
        # Meanwhile the customer pays; Stripe's first delivery fails because the relay is down.
        events = fake.pay_checkout(fake.session_for_payment(started["payment"])["id"])
        with pytest.raises(aiohttp.ClientConnectionError):
            await fake.deliver(events, api.hook)

        second = RelayServer(config)
        await second.start()
        try:
            api = Api(http, second)
            assert await fake.deliver(events, api.hook) == [200, 200, 200]  # Stripe's retry reaches the new one
            assert await api.balance(a) == 2000  # the old token works: the account came from the file
            sessions = len(fake.sessions)
            assert await api.checkout(a, "points_2000", key="before-restart-1") == started
            assert len(fake.sessions) == sessions
        finally:
            await second.stop()


async def test_the_reconciler_applies_an_event_whose_webhook_never_came(
    api: Api, fake: FakeStripe, relay: RelayServer
) -> None:
    a = await api.create("uma@example.com")
    _, events = await buy(api, fake, a)  # paid, but no webhook is ever sent
    for n in range(130):  # other account activity, so the listing needs more than one page of 100
        fake.event("customer.updated", {"id": f"cus_other{n}", "object": "customer"})
    assert await api.balance(a) == 0

    applied = await relay.reconcile_once()
    assert applied == 133
    assert await api.balance(a) == 500
    pages = [r for r in fake.requests if r.path == "/v1/events"]
    assert len(pages) == 2 and "starting_after" in pages[1].params and pages[0].params["created"]["gte"]

    assert await relay.reconcile_once() == 0  # seen already: nothing twice
    await fake.deliver(events, api.hook)  # the webhooks turn up after all
    assert await api.balance(a) == 500
    assert [n["kind"] for n in await api.notices(a)] == ["payment.succeeded"]


# ---------------------------------------------------------------------------- Stripe failing


async def test_a_stripe_500_is_retried_under_the_same_idempotency_key(api: Api, fake: FakeStripe) -> None:
    a = await api.create("vic@example.com")
    fake.faults.fail_next(500, path="/v1/checkout/sessions")
    started = await api.checkout(a, "points_100")
    tries = [r for r in fake.requests if r.path == "/v1/checkout/sessions"]
    assert [r.status for r in tries] == [500, 200]
    assert tries[0].idempotency_key == tries[1].idempotency_key
    assert len(fake.sessions) == 1 and started["url"] == next(iter(fake.sessions.values()))["url"]


async def test_a_lost_answer_is_retried_and_gets_the_same_session_back(api: Api, fake: FakeStripe) -> None:
    a = await api.create("wes@example.com")
    fake.faults.delay_next(3.0, path="/v1/checkout/sessions")  # longer than the guard's 1.5 s call timeout
    started = await api.checkout(a, "points_100")
    tries = [r for r in fake.requests if r.path == "/v1/checkout/sessions"]
    assert len(tries) == 2 and tries[1].replayed  # Stripe answered the retry from its idempotency store
    assert len(fake.sessions) == 1 and started["url"] == next(iter(fake.sessions.values()))["url"]


async def test_stripe_down_or_refusing_is_a_sentence_without_secrets(
    fake: FakeStripe, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "sk_test_wrongkey0000000000000001234"
    config = relay_config(fake, tmp_path / "relay.sqlite3")
    async with RelayServer(config) as relay, aiohttp.ClientSession() as http:
        api = Api(http, relay)
        a = await api.create("xan@example.com")
        fake.faults.fail_next(503, times=10)
        status, body = await api.call("POST", f"/v1/accounts/{a.id}/checkout", a.token, {"item": "points_100"})
        assert status == 502
        assert body["error"]["message"] == (
            "Stripe is not answering, so we could not start the checkout. Try again in a minute.")
    bad = replace(config, stripe_secret_key=wrong_key, db_path=tmp_path / "other.sqlite3")
    fake.faults.clear()
    async with RelayServer(bad) as relay, aiohttp.ClientSession() as http:
        api = Api(http, relay)
        a = await api.create("yul@example.com")
        status, body = await api.call("POST", f"/v1/accounts/{a.id}/checkout", a.token, {"item": "points_100"})
        assert status == 502 and body["error"]["message"] == (
            "The billing relay is misconfigured, so we could not start the checkout; "
            "its operator must fix its Stripe key.")
    for secret in (API_KEY, WEBHOOK_SECRET, wrong_key, a.token, "wrongkey0000000000000001234"):
        assert secret not in caplog.text
        assert secret not in json.dumps(body)
    assert "RelayConfig" not in repr(relay.service) and API_KEY not in repr(config)


async def test_a_429_pauses_calls_to_stripe_for_its_retry_after(api: Api, fake: FakeStripe) -> None:
    a = await api.create("ivy@example.com")
    fake.faults.fail_next(429, retry_after=1, path="/v1/customers")
    status, body = await api.call("POST", f"/v1/accounts/{a.id}/checkout", a.token, {"item": "points_100"})
    assert status == 502 and body["error"]["message"] == (
        "Stripe is busy, so we could not start the checkout. Try again in a minute.")
    asked = len(fake.requests)
    status, body = await api.call("POST", f"/v1/accounts/{a.id}/checkout", a.token, {"item": "points_100"})
    assert status == 502 and body["error"]["message"].startswith("Stripe asked us to slow down")
    assert len(fake.requests) == asked  # refused by the relay's breaker: Stripe was not asked again
    await asyncio.sleep(1.1)
    await api.checkout(a, "points_100")
    assert len(fake.sessions) == 1


async def test_healthz_answers_when_ready(api: Api) -> None:
    status, body = await api.call("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}


async def test_concurrent_duplicate_deliveries_award_once(api: Api, fake: FakeStripe) -> None:
    a = await api.create("zed@example.com")
    _, events = await buy(api, fake, a, "points_100")
    await asyncio.gather(*(fake.deliver(events, api.hook) for _ in range(5)))
    assert await api.balance(a) == 100

"""The desktop's billing client against a real relay and the local Stripe: tokens, calls, live payment events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

import app.billing.client as client_module
from app.billing.client import BillingClient, NotSignedIn, RelayError, RelayUnavailable
from app.billing.models import AccountView, PaymentEvent
from app.billing.relay import RelayServer
from app.billing.token_store import StoredToken, memory_token_io
from app.bus import Event, EventBus, Priority
from app.resilience import Guard, GuardConfig
from tests.servers.stripe import FakeStripe, relay_config

FAST = GuardConfig(retry_first_delay=0.01, retry_max_delay=0.05, call_timeout=3.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        yield server


@pytest.fixture
async def relay(fake: FakeStripe, tmp_path: Path) -> AsyncIterator[RelayServer]:
    async with RelayServer(relay_config(fake, tmp_path / "relay.sqlite3")) as server:
        yield server


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    events = EventBus()
    await events.start()
    yield events
    await events.stop()


@pytest.fixture
async def make_client(relay: RelayServer, bus: EventBus) -> AsyncIterator[Callable[..., BillingClient]]:
    made: list[BillingClient] = []

    def make(stored: StoredToken | None = None, **options: object) -> BillingClient:
        load, save, box = memory_token_io(stored)
        client = BillingClient(relay.url, guard=Guard("relay", FAST), bus=bus, load_token=load, save_token=save,
                               **options)  # type: ignore[arg-type]
        client.box = box  # type: ignore[attr-defined]  # what the "keyring" holds
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def paid_events(fake: FakeStripe) -> list[dict]:
    session = next(s for s in fake.sessions.values() if s["status"] == "open")
    return fake.pay_checkout(session["id"])


async def test_a_new_account_keeps_its_token_and_a_restarted_app_signs_in_with_it(
    make_client: Callable[..., BillingClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = make_client()
    assert await first.start() is None and not first.signed_in
    with pytest.raises(NotSignedIn):
        await first.ledger()
    account = await first.create_account("ada@example.com")
    assert account.plan == "free" and account.balance == 0 and account.max_active_alerts == 20
    stored = first.box[0]  # type: ignore[attr-defined]
    assert stored.email == "ada@example.com" and stored.token.startswith("mrt_")
    assert stored.token not in repr(stored) and stored.token not in repr(first)

    again = make_client(stored)
    view = await again.start()
    assert view is not None and view.id == account.id and again.signed_in
    assert stored.token not in caplog.text

    with pytest.raises(RelayError) as taken:
        await make_client().create_account("ADA@example.com")
    assert taken.value.status == 409 and "already exists" in str(taken.value)


async def test_a_payment_is_published_on_the_bus_and_updates_the_account_live(
    make_client: Callable[..., BillingClient], fake: FakeStripe, relay: RelayServer, bus: EventBus
) -> None:
    seen: list[Event] = []
    bus.subscribe("payment.*", seen.append)
    client = make_client()
    await client.create_account("bo@example.com")
    views: list[AccountView] = []
    client.add_listener(views.append)
    await until(lambda: client.connected)

    url = await client.checkout_url("points_500")
    assert url.startswith("https://checkout.stripe.com/")
    await fake.deliver(paid_events(fake), relay.url + "/v1/stripe/webhook")

    await until(lambda: bool(seen) and client.account is not None and client.account.balance == 500)
    assert [e.topic for e in seen] == ["payment.succeeded"]
    assert seen[0].priority is Priority.HIGH
    assert seen[0].payload == PaymentEvent(item="points_500", item_name="500 points", points=500,
                                           amount=Decimal("20.00"), currency="usd",
                                           reference=seen[0].payload.reference, reason="", balance=500)
    assert seen[0].payload.reference.startswith("pay_")
    assert views[-1].balance == 500
    rows = await client.ledger()
    assert [(r.kind, r.points, r.note) for r in rows] == [("purchase", 500, "Bought 500 points")]

    assert await client.poll() == 0  # the stream delivered it: polling finds nothing new
    await asyncio.sleep(0.1)
    assert len(seen) == 1


async def test_with_the_stream_unreachable_payments_arrive_by_polling(
    make_client: Callable[..., BillingClient], fake: FakeStripe, relay: RelayServer, bus: EventBus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_websockets(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("a proxy that drops websocket upgrades")

    monkeypatch.setattr(client_module, "connect", no_websockets)
    failed: list[Event] = []
    bus.subscribe("payment.failed", failed.append)
    client = make_client(poll_interval=0.1)
    await client.create_account("cy@example.com")
    await client.checkout_url("points_100")
    session = next(iter(fake.sessions.values()))
    await fake.deliver(fake.decline_checkout(session["id"]), relay.url + "/v1/stripe/webhook")

    await until(lambda: bool(failed))
    assert not client.connected and client.polls >= 1
    assert failed[0].payload.reason == "Your card was declined."
    assert failed[0].payload.points == 0 and failed[0].payload.amount == Decimal("5.00")
    assert client.account is not None and client.account.balance == 0


async def test_transfers_and_their_refusals_reach_the_caller_as_sentences(
    make_client: Callable[..., BillingClient], fake: FakeStripe, relay: RelayServer
) -> None:
    alice, bob = make_client(), make_client()
    await alice.create_account("al@example.com")
    await bob.create_account("bob@example.com")
    await alice.checkout_url("points_100")
    await fake.deliver(paid_events(fake), relay.url + "/v1/stripe/webhook")
    await until(lambda: alice.account is not None and alice.account.balance == 100)

    view = await alice.transfer("bob@example.com", 40)
    assert view.balance == 60
    await until(lambda: bob.account is not None and bob.account.balance == 40)  # pushed to bob's app
    with pytest.raises(RelayError) as refused:
        await alice.transfer("bob@example.com", 61)
    assert str(refused.value).startswith("You have 60 points, so you cannot transfer 61.")
    assert (await alice.refresh()).balance == 60


async def test_an_unreachable_relay_is_a_sentence(tmp_path: Path) -> None:
    load, save, _ = memory_token_io()
    client = BillingClient("http://127.0.0.1:9", guard=Guard("relay", FAST), load_token=load, save_token=save)
    try:
        with pytest.raises(RelayUnavailable) as down:
            await client.create_account("dee@example.com")
        assert str(down.value).startswith("The billing relay at http://127.0.0.1:9 is not answering")
    finally:
        await client.close()


async def test_the_portal_url_comes_from_stripe(make_client: Callable[..., BillingClient], fake: FakeStripe) -> None:
    client = make_client()
    await client.create_account("eli@example.com")
    url = await client.portal_url()
    assert url == next(iter(fake.portal_sessions.values()))["url"]
    assert len(fake.customers) == 1

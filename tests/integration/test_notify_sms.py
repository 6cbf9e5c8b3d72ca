"""SMS through Twilio's real Python SDK, pointed at a local server that speaks Twilio's Messages API
(tests/servers/twilio.py): delivery, refused tokens and numbers, 5xx, the Pro gate, a missing SDK.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from app.notify import sms as sms_module
from app.notify.outbox import Backoff, Outbox
from app.notify.service import NotificationService
from app.notify.sms import SmsChannel
from app.settings import SmsSettings
from app.store import Store
from tests.integration.notify_support import (  # noqa: F401 - store_fixture is the `store` fixture
    Secrets,
    eventually,
    fast_guards,
    settled,
    store_fixture,
    track,
)
from tests.servers.twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, TwilioServer

PHONE = "+447700900123"
RISK = {"rule": "max_daily_loss", "limit": Decimal("500"), "value": Decimal("512.75"), "symbol": "BTC/USDT"}


@pytest.fixture
async def srv() -> AsyncIterator[TwilioServer]:
    async with TwilioServer() as server:
        yield server


def sms_service(store: Store, srv: TwilioServer, *, token: str = AUTH_TOKEN, to: str = PHONE,
                allowed: bool = True, **channel_kw: Any) -> NotificationService:
    settings = SmsSettings(enabled=True, account_sid=ACCOUNT_SID, from_number=FROM_NUMBER, to_number=to,
                           api_base=srv.url)
    channel = SmsChannel(settings, Secrets({"notify_twilio": token}), fast_guards().get("notify:sms"),
                         allowed=lambda: allowed, **channel_kw)
    return track(NotificationService(Outbox(store, backoff=Backoff(first=0.2, cap=0.2)), [channel], idle_poll=0.05))


async def test_an_sms_is_sent_through_the_sdk_off_the_event_loop(store: Store, srv: TwilioServer) -> None:
    threads: list[int] = []

    def factory(sid: str, token: str, base: str, timeout: float) -> Any:
        client = sms_module._make_client(sid, token, base, timeout)
        create = client.messages.create

        def recording_create(**kw: Any) -> Any:
            threads.append(threading.get_ident())
            return create(**kw)

        client.messages.create = recording_create  # type: ignore[method-assign]
        return client

    service = sms_service(store, srv, client_factory=factory)
    await service.start()
    await service.notify("risk_limit_exceeded", RISK, ["sms"], message_id="risk:1")
    row = await settled(service, "risk:1", "sms")
    assert row.status == "delivered", row.last_error
    (sms,) = srv.messages
    assert (sms.to, sms.from_) == (PHONE, FROM_NUMBER)
    assert sms.body == ("Risk limit exceeded: daily loss limit\n"
                        "512.75 USDT exceeds your daily loss limit of 500 USDT (BTC/USDT).")
    assert threads and threads[0] != threading.get_ident()  # the blocking SDK ran in a worker thread
    await service.stop()


async def test_a_refused_auth_token_fails_for_good_and_never_shows(
    store: Store, srv: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    service = sms_service(store, srv, token="wrong-SECRET-twilio-token")
    await service.start()
    await service.notify("risk_limit_exceeded", RISK, ["sms"], message_id="risk:2")
    row = await settled(service, "risk:2", "sms")
    assert row.status == "failed"
    assert row.last_error == ("Twilio refused the account SID or the auth token: check them in "
                              "Settings → Notifications.")
    assert srv.attempts == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-SECRET" not in logged and AUTH_TOKEN not in logged
    await service.stop()


async def test_an_invalid_phone_number_fails_for_good_with_a_sentence(store: Store, srv: TwilioServer) -> None:
    service = sms_service(store, srv, to="+44")
    await service.start()
    await service.notify("risk_limit_exceeded", RISK, ["sms"], message_id="risk:3")
    row = await settled(service, "risk:3", "sms")
    assert (row.status, row.last_error) == (
        "failed", "Twilio refused the phone number to send to (error 21211): check it in Settings → Notifications.")
    await service.stop()


async def test_a_server_error_is_retried_and_the_sms_arrives_once(store: Store, srv: TwilioServer) -> None:
    srv.faults.status(503)
    service = sms_service(store, srv)
    await service.start()
    await service.notify("risk_limit_exceeded", RISK, ["sms"], message_id="risk:4")
    row = await settled(service, "risk:4", "sms")
    assert (row.status, row.last_error) == ("pending",
                                            "Twilio had a server error (HTTP 503); the SMS will be sent again later.")
    assert await eventually(lambda: srv.messages, timeout=3)
    assert await service.wait_idle()
    assert len(srv.messages) == 1 and srv.attempts == 2
    await service.stop()


async def test_without_the_pro_plan_nothing_is_sent(store: Store, srv: TwilioServer) -> None:
    service = sms_service(store, srv, allowed=False)
    await service.start()
    await service.notify("risk_limit_exceeded", RISK, ["sms"], message_id="risk:5")
    row = await settled(service, "risk:5", "sms")
    assert (row.status, row.last_error) == (
        "failed", "SMS notifications are part of the Pro plan: upgrade in the billing panel to receive them.")
    assert srv.attempts == 0
    await service.stop()


async def test_without_the_twilio_package_the_channel_says_so(
    store: Store, srv: TwilioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms_module, "twilio_available", lambda: False)
    service = sms_service(store, srv)
    await service.start()
    await service.notify("risk_limit_exceeded", RISK, ["sms"], message_id="risk:6")
    row = await settled(service, "risk:6", "sms")
    assert (row.status, row.last_error) == (
        "failed", "SMS needs the Twilio package, which is not installed: install meridian-terminal[sms].")
    assert srv.attempts == 0
    await service.stop()

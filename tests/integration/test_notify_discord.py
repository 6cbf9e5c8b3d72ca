"""Discord notifications against a local server that speaks Discord's API (tests/servers/discord.py):
webhook and bot DMs with embeds, Discord's limits, 429 with retry_after, exhausted buckets, 5xx
and refused tokens. The server validates embeds the way Discord does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from app.notify.discord import DiscordChannel
from app.notify.outbox import Backoff, Outbox
from app.notify.service import NotificationService
from app.settings import DiscordSettings
from app.store import Store
from tests.integration.notify_support import (  # noqa: F401 - store_fixture is the `store` fixture
    Secrets,
    eventually,
    fast_guards,
    settled,
    store_fixture,
    track,
)
from tests.servers.discord import BOT_TOKEN, DM_CHANNEL_ID, USER_ID, WEBHOOK_TOKEN, DiscordServer, embed_problems

ALERT = {"symbol": "BTC/USDT", "price": Decimal("70012.5"), "condition": "above", "threshold": Decimal("70000")}


@pytest.fixture
async def srv() -> AsyncIterator[DiscordServer]:
    async with DiscordServer() as server:
        yield server


def discord_service(store: Store, srv: DiscordServer, *, dm: bool = False, webhook: str | None = None,
                    bot: str = BOT_TOKEN, backoff: Backoff | None = None,
                    max_inline_wait: float = 5.0) -> NotificationService:
    settings = DiscordSettings(enabled=True, user_id=USER_ID if dm else "", api_base=srv.api_base)
    secrets = Secrets({"notify_discord_webhook": srv.webhook_url if webhook is None else webhook,
                       "notify_discord_bot": bot})
    channel = DiscordChannel(settings, secrets, fast_guards().get("notify:discord"), timeout=3.0,
                             max_inline_wait=max_inline_wait)
    backoff = backoff or Backoff(first=0.2, cap=0.3)
    return track(NotificationService(Outbox(store, backoff=backoff), [channel], idle_poll=0.05))


async def test_a_webhook_message_and_a_dm_carry_the_embed(store: Store, srv: DiscordServer) -> None:
    service = discord_service(store, srv, dm=True)
    await service.start()
    await service.notify("price_alert", ALERT, ["discord"], message_id="alert:1")
    await service.notify("trade_executed", {"symbol": "ETH/USDT", "side": "sell", "amount": Decimal("2"),
                                            "price": Decimal("3000.25")}, ["discord"], message_id="fill:1")
    assert await eventually(lambda: len(srv.messages) == 4)
    assert await service.wait_idle()
    webhook = [r for r in srv.messages if r.kind == "webhook"]
    dms = [r for r in srv.messages if r.kind == "dm"]
    assert len(webhook) == 2 and len(dms) == 2
    assert all(r.path == f"/api/v10/channels/{DM_CHANNEL_ID}/messages" for r in dms)
    assert all(r.headers["Authorization"] == f"Bot {BOT_TOKEN}" for r in dms)
    assert [r.kind for r in srv.requests].count("dm-open") == 1  # the DM channel id is cached
    alert = next(r.body for r in webhook if r.body["embeds"][0]["title"] == "BTC/USDT above 70,000")
    (embed,) = alert["embeds"]
    assert embed["description"] == "BTC/USDT is 70,012.5 USDT: above your alert at 70,000."
    assert {"name": "Price", "value": "70,012.5 USDT", "inline": True} in embed["fields"]
    assert embed["color"] == 0xF1C40F and embed["footer"]["text"] == "Meridian Terminal" and embed["timestamp"]
    assert alert["allowed_mentions"] == {"parse": []}  # user text can never ping @everyone
    await service.stop()


async def test_oversized_input_is_fitted_into_discords_limits(store: Store, srv: DiscordServer) -> None:
    service = discord_service(store, srv)
    await service.start()
    await service.notify("strategy_stopped", {"strategy": "S" * 400, "reason": "because " * 3000,
                                              "symbol": "BTC/USDT"}, ["discord"], message_id="strat:1")
    row = await settled(service, "strat:1", "discord")
    assert row.status == "delivered", row.last_error
    (posted,) = srv.messages
    assert embed_problems(posted.body) == []
    assert posted.body["embeds"][0]["title"].endswith("…") and len(posted.body["embeds"][0]["title"]) == 256
    assert posted.body["embeds"][-1]["description"].endswith("the full text is in Meridian Terminal)")
    await service.stop()


async def test_a_429_is_waited_out_and_the_message_delivered_once(store: Store, srv: DiscordServer) -> None:
    srv.faults.rate_limit(retry_after=0.4)
    service = discord_service(store, srv)
    await service.start()
    started = time.monotonic()
    await service.notify("price_alert", ALERT, ["discord"], message_id="alert:2")
    row = await settled(service, "alert:2", "discord")
    assert row.status == "delivered" and row.attempts == 1  # waited inside the one outbox try
    assert [r.status for r in srv.requests] == [429, 200]
    assert srv.request_times[1] - srv.request_times[0] >= 0.4
    assert time.monotonic() - started >= 0.4
    assert len(srv.messages) == 1
    await service.stop()


async def test_a_long_rate_limit_goes_back_to_the_outbox_until_retry_after(store: Store, srv: DiscordServer) -> None:
    srv.faults.rate_limit(retry_after=0.6)
    service = discord_service(store, srv, max_inline_wait=0.1, backoff=Backoff(first=0.01, cap=0.01))
    await service.start()
    await service.notify("price_alert", ALERT, ["discord"], message_id="alert:3")
    row = await settled(service, "alert:3", "discord")
    assert row.status == "pending"
    assert row.last_error == ("Discord asked us to slow down (this destination, for 0.6 s); the message will be "
                              "sent after that.")
    assert row.next_attempt_at / 1000 - row.created_at / 1000 >= 0.55  # retry_after, not the tiny backoff
    assert await eventually(lambda: srv.messages, timeout=3)
    assert [r.status for r in srv.requests] == [429, 200]
    await service.stop()


async def test_an_exhausted_bucket_makes_the_next_call_wait(store: Store, srv: DiscordServer) -> None:
    srv.faults.exhaust_bucket(reset_after=0.5)  # the first answer says: 0 remaining for 0.5 s
    service = discord_service(store, srv)
    await service.start()
    await service.notify("price_alert", ALERT, ["discord"], message_id="b1")
    await settled(service, "b1", "discord")
    await service.notify("price_alert", ALERT, ["discord"], message_id="b2")
    assert await eventually(lambda: len(srv.messages) == 2, timeout=3)
    assert srv.request_times[1] - srv.request_times[0] >= 0.45
    assert all(r.status == 200 for r in srv.requests)  # no 429 was needed
    await service.stop()


async def test_a_server_error_leaves_the_row_pending_and_it_is_delivered_later(
    store: Store, srv: DiscordServer
) -> None:
    srv.faults.status(502)
    service = discord_service(store, srv, backoff=Backoff(first=0.3, cap=0.3))
    await service.start()
    await service.notify("payment_succeeded", {"amount": Decimal("49.00"), "currency": "USD", "points": 5000},
                         ["discord"], message_id="pay:1")
    row = await settled(service, "pay:1", "discord")
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error == "Discord had a server error (HTTP 502); the message will be sent again later."
    assert row.next_attempt_at - row.created_at >= 150  # ms: the backoff, at least half of 0.3 s
    assert await eventually(lambda: srv.messages, timeout=3)
    assert await service.wait_idle()
    (row,) = await service.outbox.rows("pay:1")
    assert (row.status, row.attempts) == ("delivered", 2)
    assert [r.status for r in srv.requests] == [502, 200]
    await service.stop()


async def test_a_refused_webhook_token_fails_for_good_without_showing_the_token(
    store: Store, srv: DiscordServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = srv.webhook_url.replace(WEBHOOK_TOKEN, "wrong-SECRET-webhook-token-xyz")
    service = discord_service(store, srv, webhook=bad, backoff=Backoff(first=0.05, cap=0.05))
    await service.start()
    await service.notify("price_alert", ALERT, ["discord"], message_id="alert:4")
    row = await settled(service, "alert:4", "discord")
    await asyncio.sleep(0.2)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == ("Discord refused the webhook (its token is invalid): copy the webhook URL again into "
                              "Settings → Notifications.")
    assert [r.status for r in srv.requests] == [401]  # not retried
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-SECRET" not in logged and WEBHOOK_TOKEN not in logged
    await service.stop()


async def test_a_refused_bot_token_fails_for_good(store: Store, srv: DiscordServer) -> None:
    service = discord_service(store, srv, dm=True, webhook="", bot="bad-SECRET-bot-token")
    await service.start()
    await service.notify("price_alert", ALERT, ["discord"], message_id="alert:5")
    row = await settled(service, "alert:5", "discord")
    assert row.status == "failed"
    assert row.last_error == "Discord refused the bot token: enter it again in Settings → Notifications."
    await service.stop()


async def test_when_the_dm_fails_the_retry_does_not_repeat_the_webhook(store: Store, srv: DiscordServer) -> None:
    srv.faults.status(503, kind="dm")  # the webhook and opening the DM work; the DM itself fails once
    service = discord_service(store, srv, dm=True, backoff=Backoff(first=0.1, cap=0.1))
    await service.start()
    await service.notify("price_alert", ALERT, ["discord"], message_id="alert:6")
    row = await settled(service, "alert:6", "discord")
    assert (row.status, row.progress) == ("pending", "webhook")
    assert await eventually(lambda: any(r.kind == "dm" and r.status == 200 for r in srv.requests), timeout=3)
    assert await service.wait_idle()
    assert [r.kind for r in srv.messages] == ["webhook", "dm"]  # the webhook got it once
    (row,) = await service.outbox.rows("alert:6")
    assert (row.status, row.attempts) == ("delivered", 2)
    await service.stop()

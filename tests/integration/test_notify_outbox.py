"""The outbox with the real channels and real servers: a restart delivers what was pending, a
repeated message id is delivered once, and an SMTP server that hangs does not hold up Discord.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from app.notify.outbox import Backoff
from app.notify.service import NotificationService, create_notification_service
from app.settings import DiscordSettings, EmailSettings, NotifySettings
from app.store import Store
from tests.integration.notify_support import (
    HOST,
    SMTP_PASSWORD,
    SMTP_USER,
    HangingServer,
    Secrets,
    SmtpServer,
    eventually,
    fast_guards,
    free_port,
    make_certificate,
    settled,
)
from tests.servers.discord import DiscordServer

ALERT = {"symbol": "SOL/USDT", "price": Decimal("182.345"), "condition": "below", "threshold": Decimal("185")}


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def build(store: Store, smtp_port: int, discord: DiscordServer, cert: tuple[Path, Path],
          **guard_overrides: float) -> NotificationService:
    settings = NotifySettings(
        email=EmailSettings(host=HOST, port=smtp_port, security="starttls", username=SMTP_USER, sender=SMTP_USER,
                            recipients=("trader@example.com",)),
        discord=DiscordSettings(enabled=True, api_base=discord.api_base),
    )
    secrets = Secrets({"notify_smtp": SMTP_PASSWORD, "notify_discord_webhook": discord.webhook_url})
    return create_notification_service(
        store, settings, secrets, guards=fast_guards(**guard_overrides), channels=("email", "discord"),
        email_ca_file=str(cert[0]), backoff=Backoff(first=0.2, cap=0.2), idle_poll=0.05,
    )


async def test_pending_messages_are_delivered_after_a_restart(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    path = tmp_path / "data.sqlite"
    port = free_port()
    async with DiscordServer() as discord:
        await discord.stop()  # Discord unreachable too, during the first run
        store = Store.open(path)
        service = build(store, port, discord, cert)
        try:
            await service.start()
            await service.notify("price_alert", ALERT, ["email", "discord"], message_id="alert:9:1")
            await settled(service, "alert:9:1", "email")
            await settled(service, "alert:9:1", "discord")
        finally:
            await service.stop()
            store.close()  # the app quits with both messages pending

        await discord.start()
        with SmtpServer("starttls", cert, port=port) as smtp:
            store = Store.open(path)
            service = build(store, port, discord, cert)
            try:
                await service.start()  # a new run picks up what the last one left
                assert await eventually(lambda: smtp.box.parsed() and discord.messages, timeout=5)
                assert await service.wait_idle()
                assert smtp.box.parsed()[0]["Subject"] == "SOL/USDT below 185"
                assert discord.messages[0].body["embeds"][0]["title"] == "SOL/USDT below 185"
                assert {r.status for r in await service.outbox.rows("alert:9:1")} == {"delivered"}
            finally:
                await service.stop()
                store.close()


async def test_a_message_id_seen_twice_is_delivered_once_per_channel(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    async with DiscordServer() as discord:
        with SmtpServer("starttls", cert) as smtp:
            store = Store.open(tmp_path / "data.sqlite")
            service = build(store, smtp.port, discord, cert)
            try:
                await service.start()
                for _ in range(3):  # e.g. a fill event replayed by reconciliation
                    await service.notify("trade_executed", {"symbol": "BTC/USDT", "side": "buy",
                                                            "amount": Decimal("1"), "price": Decimal("1")},
                                         ["email", "discord"], message_id="fill:binance:777")
                assert await eventually(lambda: smtp.box.parsed() and discord.messages)
                assert await service.wait_idle()
                await asyncio.sleep(0.3)
                assert len(smtp.box.parsed()) == 1 and len(discord.messages) == 1
            finally:
                await service.stop()
                store.close()


async def test_a_hanging_smtp_server_does_not_hold_up_discord(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    async with DiscordServer() as discord, HangingServer() as hanging:
        store = Store.open(tmp_path / "data.sqlite")
        service = build(store, hanging.port, discord, cert, call_timeout=5.0)
        try:
            await service.start()
            for i in range(4):
                await service.notify("price_alert", ALERT, ["email", "discord"], message_id=f"alert:{i}")
            assert await eventually(lambda: len(discord.messages) == 4, timeout=4.0)
            # Discord was done while every email was still in its first try or waiting for a slot.
            emails = [r for i in range(4) for r in await service.outbox.rows(f"alert:{i}") if r.channel == "email"]
            assert [(r.status, r.attempts) for r in emails] == [("pending", 0)] * 4
            # Only as many SMTP connections as the email guard's bulkhead allows; the rest wait their turn.
            assert await eventually(lambda: hanging.connections == 2)
            await asyncio.sleep(0.2)
            assert hanging.connections == 2
        finally:
            await service.stop()
            store.close()

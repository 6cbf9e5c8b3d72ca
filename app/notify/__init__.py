"""Notifications: templates, a SQLite outbox, and four channels (desktop, email, Discord, SMS).

    service = create_notification_service(store, settings.notify, secret, bus=bus, guards=guards)
    await service.start()
    await service.notify("price_alert", {"symbol": "BTC/USDT", "price": Decimal("70012.5")}, ["desktop", "email"])

See docs/notifications.md for how channels, the outbox and secrets work. Never imports Qt.
"""

from app.notify.channel import (
    SECRET_DISCORD_BOT,
    SECRET_DISCORD_WEBHOOK,
    SECRET_SMTP,
    SECRET_TWILIO,
    Channel,
    ChannelError,
    NotConfigured,
    SecretGetter,
)
from app.notify.desktop import DesktopChannel
from app.notify.discord import DiscordChannel
from app.notify.email import EmailChannel, send_test_email
from app.notify.message import CHANNELS, Field, Message, Severity, Target, format_amount, format_money
from app.notify.outbox import Backoff, Outbox, OutboxRow, Undelivered
from app.notify.service import (
    GUARD_CONFIGS,
    STATUS_TOPIC,
    DeliveryStatus,
    FlushResult,
    NotificationService,
    create_notification_service,
)
from app.notify.sms import SmsChannel
from app.notify.templates import KINDS, TemplateError, render

__all__ = [
    "CHANNELS",
    "GUARD_CONFIGS",
    "KINDS",
    "SECRET_DISCORD_BOT",
    "SECRET_DISCORD_WEBHOOK",
    "SECRET_SMTP",
    "SECRET_TWILIO",
    "STATUS_TOPIC",
    "Backoff",
    "Channel",
    "ChannelError",
    "DeliveryStatus",
    "DesktopChannel",
    "DiscordChannel",
    "EmailChannel",
    "Field",
    "FlushResult",
    "Message",
    "NotConfigured",
    "NotificationService",
    "Outbox",
    "OutboxRow",
    "SecretGetter",
    "Severity",
    "SmsChannel",
    "Target",
    "TemplateError",
    "Undelivered",
    "create_notification_service",
    "format_amount",
    "format_money",
    "render",
    "send_test_email",
]

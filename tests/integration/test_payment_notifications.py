"""Payment results from the billing relay reach the user as notifications, once per payment."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from app.billing.models import PaymentEvent
from app.bus import Priority
from app.paths import resolve_paths
from app.runtime import Runtime
from app.settings import MarketDataSettings, ProviderSettings, Settings, SimSettings


async def test_a_payment_event_becomes_one_desktop_notification(tmp_path: Path) -> None:
    off = ProviderSettings(enabled=False)
    settings = Settings(sim=SimSettings(seed=1, tick_interval_ms=200, history_days=1),
                        marketdata=MarketDataSettings(coinmarketcap=off, polygon=off, alphavantage=off, yahoo=off))
    rt = Runtime(settings, resolve_paths(tmp_path / "s.toml", tmp_path / "data"))
    rt.open_store()
    shown: list[tuple[str, str]] = []
    await rt.start(stream=False, trading=False)
    # No notification server here: the tray balloon (this fallback) is how the desktop channel shows it.
    await rt.start_alerts(channels=("desktop",), fallback=lambda title, text: shown.append((title, text)))
    try:
        paid = PaymentEvent("points_500", "500 points", 500, Decimal("20.00"), "usd", "pay_123", balance=500)
        for _ in range(2):  # the relay's websocket and the poll both report it
            rt.bus.publish("payment.succeeded", paid, Priority.HIGH)
        failed = PaymentEvent("pro_monthly", "Meridian Pro (monthly)", 0, Decimal("9.99"), "usd", "pay_456",
                              reason="Your card was declined.")
        rt.bus.publish("payment.failed", failed, Priority.HIGH)
        for _ in range(200):
            if len(shown) >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        titles = sorted(t for t, _ in shown)
        assert titles == ["Payment failed: 9.99 USD", "Payment received: 20.00 USD"], shown
        assert any("500 points were added" in text for _, text in shown)
    finally:
        await rt.stop()

"""Desktop notifications: a real notification server (dunst on a private D-Bus under Xvfb) shows
the app's notification and a click reaches the app with the message's target; without any
notification service, the tray fallback gets the message, or the row fails with a sentence.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from app.notify.desktop import DesktopChannel
from app.notify.outbox import Backoff, Outbox
from app.notify.service import NotificationService
from app.resilience.guard import Guard, GuardConfig
from app.settings import DesktopNotifySettings
from app.store import Store
from tests.integration.notify_support import settled, store_fixture, track  # noqa: F401 - the `store` fixture

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "integration" / "notify_desktop_probe.py"
ALERT = {"symbol": "BTC/USDT", "price": Decimal("70012.5"), "condition": "above", "threshold": Decimal("70000")}


def test_a_notification_reaches_a_real_notification_server_and_a_click_comes_back() -> None:
    missing = [tool for tool in ("dbus-run-session", "dunst", "dunstctl", "Xvfb") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (Debian: apt-get install dbus dunst xvfb)")
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run(["dbus-run-session", "--", sys.executable, str(PROBE)], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the probe printed nothing useful (exit {proc.returncode}): {proc.stderr[-2000:]}"
    seen = json.loads(lines[-1])
    assert "error" not in seen, seen
    assert (seen["status"], seen["reason"]) == ("delivered", "")
    assert seen["displayed"] == "1"  # dunst showed it
    history = seen["history"]
    assert {"summary": "BTC/USDT above 70,000", "body": "BTC/USDT is 70,012.5 USDT: above your alert at 70,000.",
            "appname": "Meridian Terminal"} in history
    # Clicking it called the app back with where to go.
    assert seen["clicked"] == [{"kind": "symbol", "value": "BTC/USDT", "venue": "", "symbol": "BTC/USDT"}]


@pytest.fixture
def no_notification_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A session bus address where nothing listens: desktop-notifier cannot reach any notification server.
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")


def desktop_service(store: Store, **kw: object) -> NotificationService:
    channel = DesktopChannel(DesktopNotifySettings(enabled=True),
                             Guard("notify:desktop", GuardConfig(retry_attempts=1, call_timeout=5.0)), **kw)  # type: ignore[arg-type]
    return track(NotificationService(Outbox(store, backoff=Backoff(first=0.2, cap=0.2)), [channel], idle_poll=0.05))


async def test_without_a_notification_service_the_tray_fallback_shows_it(
    store: Store, no_notification_service: None
) -> None:
    shown: list[tuple[str, str]] = []
    service = desktop_service(store, fallback=lambda title, text: shown.append((title, text)))
    await service.start()
    await service.notify("price_alert", ALERT, ["desktop"], message_id="alert:1")
    row = await settled(service, "alert:1", "desktop")
    assert row.status == "delivered"
    assert shown == [("BTC/USDT above 70,000", "BTC/USDT is 70,012.5 USDT: above your alert at 70,000.")]
    await service.stop()


async def test_without_a_notification_service_or_fallback_it_says_what_to_install(
    store: Store, no_notification_service: None
) -> None:
    service = desktop_service(store)
    await service.start()
    await service.notify("price_alert", ALERT, ["desktop"], message_id="alert:2")
    row = await settled(service, "alert:2", "desktop")
    assert row.status == "failed"
    assert row.last_error == ("No desktop notification service answered on the session D-Bus: run a desktop that "
                              "shows notifications (GNOME, KDE Plasma) or a notification daemon such as dunst.")
    await service.stop()

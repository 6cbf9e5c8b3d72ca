"""`main.py --headless` as a user runs it: a real process, the simulated market, an alert saved in the
data file beforehand, an SMTP server on 127.0.0.1; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from app.alerts import Alert, AlertKind, AlertRepo
from app.paths import DATABASE_FILENAME
from app.store import Store

ROOT = Path(__file__).resolve().parents[2]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp() -> Any:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def write_config(path: Path, smtp_port: int) -> None:
    off = "\n".join(f"[marketdata.{n}]\nenabled = false" for n in ("coinmarketcap", "polygon", "alphavantage", "yahoo"))
    path.write_text(
        '[watchlist]\nsymbols = ["BTC/USDT", "ETH/USDT"]\n'
        "[sim]\ntick_interval_ms = 50\nhistory_days = 1\n"
        f'[notify.email]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        'sender = "meridian@example.com"\nrecipients = ["trader@example.com"]\n' + off + "\n"
    )


def test_headless_fires_an_alert_by_email_once_and_stops_cleanly_on_sigterm(tmp_path: Path, smtp: Any) -> None:
    controller, inbox = smtp
    config, data = tmp_path / "settings.toml", tmp_path / "data"
    write_config(config, controller.port)
    store = Store.open(data / DATABASE_FILENAME)
    import asyncio

    alert = Alert(AlertKind.PCT_CHANGE, "BTC/USDT", pct=Decimal("0.0001"), window_s=60, channels=("email",),
                  cooldown_s=3600, repeat=True, note="any move")
    asyncio.run(AlertRepo(store).add(alert))
    store.close()

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "main.py", "--headless", "--config", str(config), "--data-dir", str(data)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 40
        while not inbox.messages and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert inbox.messages, f"no email arrived; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        time.sleep(1.0)  # more ticks: the cooldown must hold
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "running headless on Simulated market" in err and "1 active alert(s)" in err and "Stopped." in err
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert "BTC/USDT" in mail["Subject"] and mail["To"] == "trader@example.com"
    log = (data / "logs" / "meridian.log").read_text()
    assert "alert 1 fired" in log and "notifications at shutdown" in log

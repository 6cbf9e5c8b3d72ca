"""Probe: the app's desktop channel against a real notification server (dunst) on a private D-Bus.

Run by tests/integration/test_notify_desktop.py as

    dbus-run-session -- python tests/integration/notify_desktop_probe.py

It starts Xvfb on a free display and dunst on the session bus dbus-run-session made, sends a
notification through NotificationService -> DesktopChannel -> desktop-notifier -> D-Bus, reads
`dunstctl` to see what dunst received, clicks the notification with `dunstctl action`, and
prints one JSON line with what it saw. Everything it starts, it stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.notify.desktop import DesktopChannel  # noqa: E402
from app.notify.message import Target  # noqa: E402
from app.notify.outbox import Backoff, Outbox  # noqa: E402
from app.notify.service import NotificationService  # noqa: E402
from app.resilience.guard import Guard, GuardConfig  # noqa: E402
from app.settings import DesktopNotifySettings  # noqa: E402
from app.store import Store  # noqa: E402

DUNSTRC = """
[global]
    monitor = 0
    follow = none
    # Keep notifications on screen (and out of history) until closed, so the probe decides.
    idle_threshold = 0
    sticky_history = yes
    history_length = 20
    mouse_left_click = do_action, close_current
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
"""


def free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number")


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


async def _has_owner(name: str) -> bool:
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    bus = await MessageBus().connect()
    try:
        reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                       interface="org.freedesktop.DBus", member="NameHasOwner", signature="s",
                                       body=[name]))
        return bool(reply is not None and reply.body and reply.body[0])
    finally:
        bus.disconnect()


async def _dunst_history() -> list[dict[str, str]]:
    """The same D-Bus call `dunstctl history` makes through busctl (systemd), for machines without it."""
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    bus = await MessageBus().connect()
    try:
        reply = await bus.call(Message(destination="org.freedesktop.Notifications",
                                       path="/org/freedesktop/Notifications", interface="org.dunstproject.cmd0",
                                       member="NotificationListHistory"))
        entries = reply.body[0] if reply is not None and reply.body else []
        return [{key: str(e[key].value) for key in ("summary", "body", "appname") if key in e} for e in entries]
    finally:
        bus.disconnect()


def notification_server_up() -> bool:
    # NameHasOwner, unlike a call to the service, never starts one through D-Bus activation
    # (which would launch a second dunst without a display and fill the output with errors).
    return asyncio.run(_has_owner("org.freedesktop.Notifications"))


def dunstctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dunstctl", *args], capture_output=True, text=True, timeout=10)


async def send_and_click(work: Path) -> dict[str, object]:
    clicked: list[Target | None] = []
    store = Store.open(work / "data.sqlite")
    channel = DesktopChannel(DesktopNotifySettings(enabled=True),
                             Guard("notify:desktop", GuardConfig(retry_attempts=1, call_timeout=10.0)),
                             on_click=clicked.append)
    service = NotificationService(Outbox(store, backoff=Backoff(first=0.2, cap=0.2)), [channel], idle_poll=0.05)
    await service.start()
    await service.notify("price_alert", {"symbol": "BTC/USDT", "price": Decimal("70012.5"), "condition": "above",
                                         "threshold": Decimal("70000")}, ["desktop"], message_id="alert:desktop:1")
    await service.wait_idle(10.0)
    (row,) = await service.outbox.rows("alert:desktop:1")
    result: dict[str, object] = {"status": row.status, "reason": row.last_error}
    result["displayed"] = dunstctl("count", "displayed").stdout.strip()
    # Click it: dunst invokes the "default" action, D-Bus signals ActionInvoked, desktop-notifier calls us.
    action = dunstctl("action", "0")
    result["action_rc"] = action.returncode
    deadline = time.monotonic() + 5
    while not clicked and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    result["clicked"] = [t.to_dict() if t else None for t in clicked]
    dunstctl("close-all")  # closed notifications go to dunst's history
    await asyncio.sleep(0.3)
    history = dunstctl("history")  # busctl --user ... NotificationListHistory
    if history.returncode == 0:
        entries = json.loads(history.stdout)["data"][0]
        result["history_via"] = "dunstctl"
        result["history"] = [{"summary": e["summary"]["data"], "body": e["body"]["data"],
                              "appname": e["appname"]["data"]} for e in entries]
    else:  # no busctl (systemd) on this machine: the same call over D-Bus
        result["history_via"] = "d-bus"
        result["history"] = await _dunst_history()
    await service.stop()
    store.close()
    return result


def main() -> int:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        print(json.dumps({"error": "run me under dbus-run-session"}))
        return 2
    work = Path(tempfile.mkdtemp(prefix="meridian-desktop-probe-"))
    display = free_display()
    env = {**os.environ, "DISPLAY": f":{display}"}
    xvfb = subprocess.Popen(["Xvfb", f":{display}", "-nolisten", "tcp", "-screen", "0", "800x600x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dunst: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: Path(f"/tmp/.X11-unix/X{display}").exists(), 10, "Xvfb")
        (work / "dunstrc").write_text(DUNSTRC)
        dunst = subprocess.Popen(["dunst", "-config", str(work / "dunstrc")], env=env,
                                 stdout=subprocess.DEVNULL, stderr=open(work / "dunst.log", "wb"))
        wait_for(notification_server_up, 10, "dunst on the session bus")
        result = asyncio.run(send_and_click(work))
        print(json.dumps(result))
        return 0
    except Exception as exc:  # the test prints this line when it fails
        log = (work / "dunst.log").read_text(errors="replace")[-2000:] if (work / "dunst.log").exists() else ""
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "dunst_log": log}))
        return 1
    finally:
        for proc in (dunst, xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())

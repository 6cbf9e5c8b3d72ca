"""`python main.py --headless`: streams, alerts and notifications with no window.

For a server or a spare machine: it reads the same settings and data file as the
window (so alerts made in the window fire here), logs to the user log dir, and on
SIGINT or SIGTERM stops cleanly: the alert engine first, then one last attempt at
every due notification (the outbox keeps what still cannot be delivered for the next
start), then the feeds and the data file.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from app.runtime import Runtime

__all__ = ["run_headless"]

log = logging.getLogger(__name__)
HEADLESS_CHANNELS = ("email", "discord", "sms")  # no desktop: there may be no desktop session at all


async def _serve(runtime: Runtime, ready: Callable[[], None] | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C arrives as KeyboardInterrupt instead
            pass
    try:
        await runtime.start()
        await runtime.start_alerts(channels=HEADLESS_CHANNELS)
        billing = runtime.billing_client()
        if billing is not None:  # the plan (SMS, alert limits) and payment notices
            try:
                await billing.start()
            except Exception as exc:  # the relay being down must not stop alerts
                log.warning("billing: %s", exc)
    except Exception as exc:
        log.exception("headless start failed")
        print(f"Meridian could not start: {exc}", file=sys.stderr)
        await runtime.stop()
        return 2
    active = sum(1 for a in runtime.alerts.alerts if a.active)
    message = (f"Meridian is running headless on {getattr(runtime.venue, 'title', runtime.venue.name)}: "
               f"{len(runtime.watchlist)} symbols, {active} active alert(s). Stop it with Ctrl+C or SIGTERM.")
    log.info(message)
    print(message, file=sys.stderr, flush=True)
    if ready is not None:
        ready()
    await stop.wait()
    log.info("headless: stopping")
    print("Stopping: sending what is due, then closing.", file=sys.stderr, flush=True)
    await runtime.stop()  # flushes the outbox before closing the data file
    print("Stopped.", file=sys.stderr, flush=True)
    return 0


def run_headless(runtime: Runtime, ready: Callable[[], None] | None = None) -> int:
    runtime.open_store()
    try:
        return asyncio.run(_serve(runtime, ready))
    except KeyboardInterrupt:
        return 130

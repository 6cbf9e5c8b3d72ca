"""`python main.py relay`: run the billing relay until SIGINT or SIGTERM.

Stripe's secrets come from the environment only (STRIPE_SECRET_KEY,
STRIPE_WEBHOOK_SECRET), never from a flag (flags show in `ps`) or a file in
the repository. Optional: MERIDIAN_RELAY_PUBLIC_URL, the address browsers come
back to after Checkout when the relay sits behind a proxy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from app.billing.relay import RelayServer
from app.billing.service import RelayConfig

__all__ = ["run_relay"]

_log = logging.getLogger(__name__)

SECRET_VARS = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")


def _url_problem(value: str, name: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{name} must be an http:// or https:// address, e.g. http://127.0.0.1:12111."
    return None


def run_relay(*, host: str, port: int, db: Path, stripe_api_base: str | None = None) -> int:
    """Serve until interrupted; returns the process exit code (2: not configured, 1: could not start)."""
    missing = [name for name in SECRET_VARS if not os.environ.get(name, "").strip()]
    if missing:
        print(
            f"The billing relay needs {' and '.join(SECRET_VARS)} in its environment, and "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
            "Export them in the shell or service that starts the relay (never put them in a file you commit), "
            "then start it again.",
            file=sys.stderr,
        )
        return 2
    public_url = os.environ.get("MERIDIAN_RELAY_PUBLIC_URL", "").strip() or None
    for value, name in ((stripe_api_base, "--stripe-api-base"), (public_url, "MERIDIAN_RELAY_PUBLIC_URL")):
        problem = _url_problem(value, name) if value else None
        if problem:
            print(problem, file=sys.stderr)
            return 2
    if not 0 <= port <= 65535:
        print("--port must be between 0 and 65535.", file=sys.stderr)
        return 2
    config = RelayConfig(
        stripe_secret_key=os.environ["STRIPE_SECRET_KEY"].strip(),
        webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"].strip(),
        db_path=Path(db),
        stripe_api_base=stripe_api_base,
        public_url=public_url,
    )
    try:
        return asyncio.run(_serve(config, host, port))
    except KeyboardInterrupt:
        return 0


async def _serve(config: RelayConfig, host: str, port: int) -> int:
    server = RelayServer(config, host, port)
    try:
        await server.start()
    except OSError as exc:
        print(f"The billing relay could not listen on {host}:{port} ({exc.strerror or exc}); "
              "choose another --port or stop what uses it.", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. a database from a newer relay: a sentence, the traceback in the log
        _log.exception("the billing relay could not start")
        print(f"The billing relay could not start: {exc}", file=sys.stderr)
        return 1
    print(f"Billing relay listening on {server.url} (database {config.db_path}). Press Ctrl+C to stop.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: only SIGINT, as KeyboardInterrupt
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        await stop.wait()
    finally:
        await server.stop()
    print("Billing relay stopped.", flush=True)
    return 0

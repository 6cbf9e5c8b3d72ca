"""Meridian Terminal: parses the command line, builds the runtime, opens the window or runs a headless command.

    python main.py                          open the terminal (simulated market by default)
    python main.py --smoke-test --screenshot out.png
    python main.py watch BTC/USDT --count 5 live tickers as JSON lines
    python main.py --headless               streams, alerts and notifications with no window
    python main.py relay --port 8765        the billing relay service
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

MIN_PYTHON = (3, 12)


def _common_options(sub: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the command. After it they default to SUPPRESS, because
    argparse would otherwise overwrite `--config X watch ...` with the subcommand's default None."""
    common = argparse.ArgumentParser(add_help=False)
    default = {"default": argparse.SUPPRESS} if sub else {}
    common.add_argument("--config", type=Path, metavar="PATH", help="settings file (default: the user config dir)", **default)
    common.add_argument("--data-dir", type=Path, metavar="PATH", help="where the database and logs live", **default)
    common.add_argument("--venue", metavar="NAME", help="venue to use instead of the one in settings (e.g. sim)", **default)
    common.add_argument("--paper", action="store_true", help="trade on paper: live prices, nothing sent", **default)
    common.add_argument("-v", "--verbose", action="store_true", help="log debug messages too", **default)
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meridian", description="Meridian Terminal", parents=[_common_options(False)])
    parser.add_argument("--smoke-test", action="store_true",
                        help="open the window, run the live market for a few seconds, check it painted, then exit")
    parser.add_argument("--smoke-seconds", type=float, default=4.0, metavar="S", help="how long the smoke test runs")
    parser.add_argument("--screenshot", type=Path, metavar="FILE", help="with --smoke-test: save a PNG of the window")
    parser.add_argument("--headless", action="store_true",
                        help="run streams, alerts and notifications with no window (stop with Ctrl+C or SIGTERM)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    watch = commands.add_parser("watch", parents=[_common_options(True)], help="print live tickers as JSON lines (no window)")
    watch.add_argument("symbol", metavar="SYMBOL", help="unified symbol, e.g. BTC/USDT")
    watch.add_argument("--count", type=int, metavar="N", help="stop after N tickers (default: run until interrupted)")
    relay = commands.add_parser("relay", help="run the billing relay service (Stripe secrets from the environment)")
    relay.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    relay.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    relay.add_argument("--db", type=Path, metavar="PATH", help="the relay's SQLite file (default: relay.sqlite3 in the data dir)")
    relay.add_argument("--stripe-api-base", metavar="URL", help="send Stripe API calls here instead of https://api.stripe.com")
    return parser


def main(argv: list[str] | None = None) -> int:
    if sys.version_info < MIN_PYTHON:
        print("Meridian Terminal needs Python 3.12 or newer (PySide6 6.12 crashes on 3.11). "
              "Install Python 3.12 and run `make run` again.", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)

    from app.logs import setup_logging
    from app.paths import resolve_paths

    paths = resolve_paths(args.config, args.data_dir)
    setup_logging(paths.log_dir, verbose=args.verbose)
    if args.command == "relay":
        # The relay is a server: no window, no venue, no settings file; its secrets come from the environment.
        from app.billing.cli import run_relay

        return run_relay(host=args.host, port=args.port, db=args.db or paths.data_dir / "relay.sqlite3",
                         stripe_api_base=args.stripe_api_base)
    # Below the relay: it needs none of the terminal (importing the runtime costs it seconds).
    from app.runtime import Runtime
    from app.settings import load_settings
    from app.venues.base import VenueError

    loaded = load_settings(paths.config_file)
    problems = list(loaded.problems)
    if loaded.problems:
        aside = f" Your file was kept as {loaded.kept_aside}." if loaded.kept_aside else ""
        problems = [f"Settings file {paths.config_file} has problems, so default settings are in use.{aside}"] + problems
        for p in problems:
            print(p, file=sys.stderr)
    try:
        runtime = Runtime(loaded.settings, paths, venue_name=args.venue, paper=True if args.paper else None)
    except VenueError as exc:
        print(exc, file=sys.stderr)
        if args.command is None and not args.smoke_test and not args.headless:
            from ui.app import show_startup_error

            show_startup_error(str(exc))  # someone who started the window should see why it did not open
        return 2
    runtime.notices.extend(problems)

    if args.command == "watch":
        from app.watch import watch

        if args.count is not None and args.count < 1:
            print("--count must be 1 or more.", file=sys.stderr)
            return 2
        try:
            asyncio.run(watch(runtime, args.symbol.upper(), args.count))
        except VenueError as exc:
            print(exc, file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        return 0

    if args.headless:
        from app.headless import run_headless

        return run_headless(runtime)

    from ui.app import SmokeTest, run_window

    smoke = SmokeTest(args.smoke_seconds, args.screenshot) if args.smoke_test else None
    return run_window(runtime, smoke)


if __name__ == "__main__":
    sys.exit(main())

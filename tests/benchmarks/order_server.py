"""The local Binance REST server (tests/servers/binance.py) in its own process, timing its own work.

Run by bench_orders.py so that the server does not share the client's core:

    python tests/benchmarks/order_server.py [--cpu 1] [--lifetime S]

It starts `BinanceServer` (test keys, the two-symbol exchangeInfo, a large USDT
balance so a few thousand resting orders fit) on 127.0.0.1 and prints one line,
`READY <rest_url>`, on stdout. It exits when its stdin closes (the benchmark
ended or died) or after --lifetime seconds, whichever comes first.

What "the server's own time" is: an outer aiohttp middleware wraps the server's
own middleware and handler. It reads `time.monotonic_ns()` when it is entered,
lets the request be handled (parameter logging, API-key and HMAC signature check,
the order book-keeping, the JSON body), then prepares the response and writes its
last byte to the socket itself (`prepare` + `write_eof`; aiohttp's own later calls
are then no-ops) and reads the clock again. So a request's server time runs from
the first middleware to the response handed to the kernel. aiohttp's parsing of
the request line and headers and its routing happen before the first middleware
and are *not* counted as the server's: they stay in the client's figure, which
is the conservative side.

`GET /bench/timings` returns every timed request as
`[start_ns, end_ns, method, path, newClientOrderId or "", status]`, in arrival
order. The clock is CLOCK_MONOTONIC, which on Linux is one clock for every
process of the machine, so the benchmark can place each request inside the
window of the order that sent it. `/bench/` requests themselves are not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers.binance import BinanceServer  # noqa: E402

BALANCES = {"USDT": "100000000", "BTC": "1", "ETH": "10"}
TIMINGS_PATH = "/bench/timings"


class TimedBinanceServer(BinanceServer):
    """BinanceServer that records how long it spends on each request (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(balances=BALANCES, **kwargs)
        self.timings: list[list[Any]] = []

    def routes(self, router: web.UrlDispatcher) -> None:
        super().routes(router)
        router.add_get(TIMINGS_PATH, self._timings)

    async def _timings(self, request: web.Request) -> web.Response:
        return web.json_response(self.timings)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if request.path.startswith("/bench/"):
            return await handler(request)
        start = time.monotonic_ns()
        response = await super()._middleware(request, handler)
        await response.prepare(request)
        await response.write_eof()
        end = time.monotonic_ns()
        cid = ""
        if request.method == "POST":
            cid = dict(parse_qsl(await request.text())).get("newClientOrderId", "")  # cached body: no I/O
        self.timings.append([start, end, request.method, request.path, cid, response.status])
        return response


async def serve(lifetime: float) -> None:
    server = TimedBinanceServer(rate=1.0)  # websocket pushes are not used here
    await server.start()
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(1):
                pass
        finally:
            loop.call_soon_threadsafe(lambda: stdin_closed.done() or stdin_closed.set_result(None))

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"READY {server.rest_url}", flush=True)
    try:
        await asyncio.wait_for(stdin_closed, lifetime)
    except TimeoutError:
        pass
    finally:
        await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--lifetime", type=float, default=900.0, help="exit after this many seconds whatever happens")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(serve(args.lifetime))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Order round trip: from `OrderService.submit` to the `order.updated` OPEN event, against the local REST server.

Run: `python tests/benchmarks/bench_orders.py [--orders N] [--warmup W] [--target-ms MS]
[--compare-orders M] [--poll S] [--app-rate-limit] [--gap S] [--no-probe] [--no-pin]
[--data-dir DIR] [--dump FILE]`.

The server: tests/servers/binance.py's BinanceServer, run by order_server.py in its
own process on 127.0.0.1 (pinned to CPU 1 when the machine has two cores; this
process, with its store thread, to CPU 0), with the test keys. It times its own
work per request: from its first aiohttp middleware to the response's last byte
handed to the kernel (see order_server.py), and hands the timings over at the end
on `GET /bench/timings`.

This process builds the app the way the window does, minus Qt: a `Runtime` with a
real `BinanceVenue` (ccxt.async_support, the app's own `Guard`) pointed at the server
with the test keys, a real `Store` (a SQLite file in a fresh temporary directory on
disk, not tmpfs), the runtime's `EventBus`, `Runtime.start(["BTC/USDT"], stream=False,
trading=False)` (markets and a ticker from the server, no websocket), and an
`OrderService` built as `Runtime._start_trading` builds it, `OrderService(venue, store,
bus, validator=runtime.validate_order)`, set as `runtime.orders` and started (it
reconciles nothing: the file is new). So every order goes through the runtime's real
validator: a signed `GET /api/v3/account` for fresh balances, `rules.check_order` and
the risk checks (limits set high enough to pass but switched on, so every rule runs).
Two differences from the window, both options: the service's 2 s poll of open orders
is off (`--poll 2` turns it on), and the guard's token bucket is raised from ccxt's
20 requests/s (burst 20) to a rate that never waits (`--app-rate-limit` keeps it):
every order is two requests, so back-to-back orders would otherwise be paced at
10 a second by the limiter, which a user clicking Submit never meets. Orders go
back to back; `--gap S` idles S seconds between them, as a user does (slower here:
see the README).

One order, timed: a limit buy of 0.0002 BTC at half the current bid (it rests OPEN,
as on Binance, whose PERCENT_PRICE_BY_SIDE allows bids down to 0.2x), with a new
client id from `new_client_order_id()` as the order ticket makes it. The clock
(`time.monotonic_ns`) starts just before `await service.submit(request)` ("pressing
Submit": the ticket's `_send` calls exactly that, after its own local `check_order`
on the form, which is not timed) and stops in a synchronous `order.updated`
subscriber when the event whose payload is that client id's OPEN order reaches it.
Orders run one at a time, W warm-up orders first (not counted), then N timed ones.
A whole pass is bounded by --timeout seconds and each order by --order-timeout.

Net time: every server request whose start falls inside an order's window is that
order's (there must be exactly one `GET /api/v3/account` and one `POST
/api/v3/order` with the order's `newClientOrderId`, else the run fails); their
server times are subtracted from that order's round trip (a server time that ends
after the client already had the answer, the server having been preempted between
writing and reading its clock, is cut at the client's receipt; with `--poll`, the
poll's own `GET /api/v3/openOrders` may overlap an order and is not subtracted).
A reference line times ccxt's unsigned `GET /api/v3/ping` the same way: the floor
of one HTTP round trip through ccxt and aiohttp here. Raw and net p50/p99 are
reported (nearest rank), with a breakdown: thin wrappers on the instances (no app
code changed) time the validator, `venue.fetch_balance`, `journal.insert_pending`,
`venue.create_order`, `journal.apply_order`, ccxt's `sign` and `fetch` (its HTTP
call) and the store thread's execution of each SQLite function; the event's
delivery is from `apply_order` returning to the subscriber. Only work done for the
order being timed is charged to it (see `Probe`). The wrappers cost a few
microseconds per order; `--no-probe` runs without them. `--dump FILE` writes every
order's timestamps and stages and the server's timings as JSON.

The journal's first write of an order (`insert_pending`) runs with
`PRAGMA synchronous = FULL`, so it waits for an fsync of the WAL: an order must
survive a power cut. To show what that costs, a second pass (--compare-orders,
by default as many orders as the main pass; 0 skips it) runs the same orders with
that one statement at NORMAL, on a fresh data file against the same server. It is
a measurement only: the app always uses FULL. The data files are deleted after
each pass.

Exits with status 1 unless the net p50 of the main pass is <= --target-ms (10 ms).
Not collected by pytest: the file name does not start with `test_`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextvars
import json
import math
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import app.trading.journal as journal_module  # noqa: E402
from app.bus import Event  # noqa: E402
from app.domain import OrderRequest, OrderStatus, OrderType, Side  # noqa: E402
from app.paths import resolve_paths  # noqa: E402
from app.resilience.ratelimit import TokenBucket  # noqa: E402
from app.runtime import Runtime  # noqa: E402
from app.settings import RiskSettings, Settings, WatchlistSettings  # noqa: E402
from app.trading.orders import TOPIC_ORDER_UPDATED, OrderService, new_client_order_id  # noqa: E402
from app.venues.binance import BinanceVenue  # noqa: E402
from app.venues.ccxt_venue import ExchangeConfig  # noqa: E402
from tests.benchmarks.order_server import TIMINGS_PATH  # noqa: E402
from tests.servers.base import API_KEY, API_SECRET  # noqa: E402

SYMBOL = "BTC/USDT"
AMOUNT = Decimal("0.0002")  # about 6.5 USDT at half of 65,000: above the 5 USDT minimum notional
CLIENT_CPU, SERVER_CPU = 0, 1
ORDER_PATH, ACCOUNT_PATH, PING_PATH = "/api/v3/order", "/api/v3/account", "/api/v3/ping"
OPEN_ORDERS_PATH = "/api/v3/openOrders"  # the service's poll, with --poll
SQL_INSERT_ROW = "  on the store thread (SQL; synchronous=FULL in the app)"
now = time.monotonic_ns


# ----------------------------------------------------------------------------- the server process


class ServerProcess:
    """order_server.py in its own process; `url` comes from its READY line. Closing its stdin stops it."""

    def __init__(self, pin: bool, lifetime: float) -> None:
        cmd = [sys.executable, str(HERE / "order_server.py"), "--lifetime", str(lifetime)]
        if pin:
            cmd += ["--cpu", str(SERVER_CPU)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(f"the order server did not start (said {line!r})")
        self.url = line.split()[1]

    def timings(self) -> list[list[Any]]:
        with urllib.request.urlopen(self.url + TIMINGS_PATH, timeout=30) as response:
            return json.loads(response.read())

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(5)


# ----------------------------------------------------------------------------- probes


@dataclass
class OrderTimes:
    cid: str
    start: int = 0
    end: int = 0
    stages: dict[str, int] = field(default_factory=dict)  # stage -> ns (summed if it happens twice)
    marks: dict[str, int] = field(default_factory=dict)  # instant -> monotonic ns

    def add(self, stage: str, ns: int) -> None:
        self.stages[stage] = self.stages.get(stage, 0) + ns


_ORDER: contextvars.ContextVar[OrderTimes | None] = contextvars.ContextVar("bench_order", default=None)
_CALL: contextvars.ContextVar[str] = contextvars.ContextVar("bench_call", default="")


class Probe:
    """Thin timing wrappers set on instances (never on classes, never in app code).

    Only work done for the order being timed is charged to it: the order is a context variable set
    in the benchmark's task before `submit`, which the service's placing task inherits, while the
    poller and the bus dispatcher, started earlier, do not. The venue call that ccxt's `sign` and
    `fetch` serve ("balance" or "create") is a context variable too. The store thread does not see
    context variables, so a SQLite function is charged only when its client id is the current order's.
    """

    def __init__(self) -> None:
        self._times: OrderTimes | None = None  # the order being timed, for the store thread

    def begin(self, times: OrderTimes) -> None:
        _ORDER.set(times)
        self._times = times

    def end(self) -> None:
        _ORDER.set(None)
        self._times = None

    def wrap_async(self, fn: Callable[..., Any], stage: str, *, call: str = "", after: str = "") -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            token = _CALL.set(call) if call else None
            t = now()
            try:
                return await fn(*args, **kwargs)
            finally:
                end = now()
                if token is not None:
                    _CALL.reset(token)
                times = _ORDER.get()
                if times is not None:
                    times.add(stage, end - t)
                    if after:
                        times.marks[after] = end

        return timed

    def wrap_ccxt_fetch(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = now()
            try:
                return await fn(*args, **kwargs)
            finally:
                end = now()
                times, call = _ORDER.get(), _CALL.get()
                if times is not None and call:
                    times.add(f"{call}.http", end - t)
                    times.marks[f"{call}.http_end"] = end

        return timed

    def wrap_ccxt_sign(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = now()
            try:
                return fn(*args, **kwargs)
            finally:
                times, call = _ORDER.get(), _CALL.get()
                if times is not None and call:
                    times.add(f"{call}.sign", now() - t)

        return timed

    def wrap_store_call(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Store._call runs each SQLite function on the store's thread: time the function itself there."""
        probe = self

        def timed(sql_fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
            t = now()
            try:
                return fn(sql_fn, args)
            finally:
                elapsed = now() - t
                first = args[0] if args else None
                cid = first if isinstance(first, str) else getattr(first, "client_order_id", None)
                times = probe._times
                if cid is not None and times is not None and cid == times.cid:
                    times.add(f"sql.{getattr(sql_fn, '__name__', 'fn')}", elapsed)

        return timed


def insert_pending_at_normal(conn: Any, entry: Any) -> bool:
    """The journal's insert_pending with its PRAGMA synchronous = FULL replaced by NORMAL (comparison only)."""
    return _ORIGINAL_INSERT_PENDING(_NormalSync(conn), entry)


insert_pending_at_normal.__name__ = "insert_pending"
_ORIGINAL_INSERT_PENDING = journal_module.insert_pending


class _NormalSync:
    """A connection that runs `PRAGMA synchronous = FULL` as NORMAL; everything else goes straight through."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "PRAGMA synchronous = FULL":
            sql = "PRAGMA synchronous = NORMAL"
        return self._conn.execute(sql, *args)


# ----------------------------------------------------------------------------- one pass


@dataclass
class PassResult:
    label: str
    orders: list[OrderTimes]  # timed orders only (warm-up dropped)
    ping: list[tuple[int, int]]  # (start, end) of each reference ping
    limiter_waited: float
    refresh_ns: int = 0  # one explicit service.refresh() with every order still open (--poll only)
    listing_ns: int = 0  # of which venue.fetch_open_orders, measured on its own just before


def risk_settings() -> RiskSettings:
    """Every risk rule switched on, with limits no order here reaches."""
    return RiskSettings(max_order_notional=1_000_000.0, max_position_notional=1_000_000_000.0,
                        max_daily_loss=1_000_000_000.0, max_open_orders=1_000_000)


async def run_pass(url: str, args: argparse.Namespace, *, count: int, label: str, sync_full: bool,
                   data_root: Path) -> PassResult:
    data_dir = Path(tempfile.mkdtemp(prefix="meridian-bench-orders-", dir=data_root))
    settings = Settings(watchlist=WatchlistSettings(symbols=(SYMBOL,)), risk=risk_settings())
    venue = BinanceVenue(ExchangeConfig(rest_url=url, api_key=API_KEY, secret=API_SECRET))  # the app's timeout, guard
    runtime = Runtime(settings, resolve_paths(data_dir / "settings.toml", data_dir / "data"), venue=venue)
    venue.guard._bus = runtime.bus  # factory.create hands the venue the runtime's bus for health events
    waited = [0.0]
    if not args.app_rate_limit:
        venue.guard.limiter = TokenBucket(1e9, 1e9)  # still acquired on every call; never waits
    limiter_acquire = venue.guard.limiter.acquire

    async def acquire(cost: float = 1.0) -> float:
        w = await limiter_acquire(cost)
        waited[0] += w
        return w

    venue.guard.limiter.acquire = acquire  # type: ignore[method-assign]
    journal_module.insert_pending = _ORIGINAL_INSERT_PENDING if sync_full else insert_pending_at_normal
    probe = Probe()
    runtime.open_store()
    store = runtime.store
    assert store is not None
    service: OrderService | None = None
    ping: list[tuple[int, int]] = []
    timed: list[OrderTimes] = []
    try:
        await runtime.start([SYMBOL], stream=False, trading=False)
        validator = runtime.validate_order
        if not args.no_probe:
            validator = probe.wrap_async(runtime.validate_order, "validate")
            venue.fetch_balance = probe.wrap_async(venue.fetch_balance, "balance", call="balance")  # type: ignore[method-assign]
            venue.create_order = probe.wrap_async(venue.create_order, "create", call="create")  # type: ignore[method-assign]
            venue.exchange.fetch = probe.wrap_ccxt_fetch(venue.exchange.fetch)
            venue.exchange.sign = probe.wrap_ccxt_sign(venue.exchange.sign)
            store._call = probe.wrap_store_call(store._call)  # type: ignore[method-assign]
        # As Runtime._start_trading builds it, but the poll is an option (see the module docstring).
        service = OrderService(venue, store, runtime.bus, validator=validator, poll_interval=args.poll or None)
        runtime.orders = service
        if not args.no_probe:
            service.journal.insert_pending = probe.wrap_async(service.journal.insert_pending, "insert")  # type: ignore[method-assign]
            service.journal.apply_order = probe.wrap_async(service.journal.apply_order, "apply",  # type: ignore[method-assign]
                                                           after="applied")
        await service.start()
        if not service.trading_enabled:
            raise RuntimeError("the order service did not enable trading")

        ticker = runtime.state.tickers[SYMBOL]
        tick = runtime.markets[SYMBOL].price_tick
        price = ((ticker.bid or ticker.last) / 2).quantize(tick)

        # A reference floor: ccxt's unsigned GET /api/v3/ping, the same session and server.
        for _ in range(args.pings):
            t = now()
            await venue.exchange.public_get_ping()
            ping.append((t, now()))

        waiting: dict[str, asyncio.Future[int]] = {}

        def on_order(event: Event) -> None:
            order = event.payload
            if order.status is OrderStatus.OPEN:
                future = waiting.pop(order.client_order_id, None)
                if future is not None and not future.done():
                    future.set_result(now())

        runtime.bus.subscribe(TOPIC_ORDER_UPDATED, on_order)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(args.timeout):
            for i in range(args.warmup + count):
                request = OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, AMOUNT, new_client_order_id(), price=price)
                times = OrderTimes(request.client_order_id)
                arrived = loop.create_future()
                waiting[request.client_order_id] = arrived
                probe.begin(times)
                times.start = now()
                order = await service.submit(request)  # "pressing Submit"
                async with asyncio.timeout(args.order_timeout):
                    times.end = await arrived
                probe.end()
                if order.status is not OrderStatus.OPEN:
                    raise RuntimeError(f"order {i + 1} came back {order.status.value}: {order.reason}")
                if i >= args.warmup:
                    timed.append(times)
                if args.gap:
                    await asyncio.sleep(args.gap)
        refresh_ns = listing_ns = 0
        if args.poll:
            t = now()
            await venue.fetch_open_orders(SYMBOL)  # the poll's one request, with ccxt's parsing
            listing_ns = now() - t
            t = now()
            await service.refresh()  # what each poll costs with all of them open
            refresh_ns = now() - t
    finally:
        probe.end()
        if service is not None:
            await service.close()
        await runtime.stop()
        journal_module.insert_pending = _ORIGINAL_INSERT_PENDING
        shutil.rmtree(data_dir, ignore_errors=True)
    return PassResult(label, timed, ping, waited[0], refresh_ns, listing_ns)


# ----------------------------------------------------------------------------- analysis


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p50 of 1,000 values is the 500th smallest, p99 the 990th)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def attribute(result: PassResult, timings: list[list[Any]]) -> tuple[list[dict[str, int]], list[int], int, int]:
    """Each order's server requests by time window; checks that each order made exactly the expected two."""
    timings = sorted(timings)  # appended as they finish; a poll's request may overlap an order's
    starts = [t[0] for t in timings]
    per_order: list[dict[str, int]] = []
    clipped = overlapped = 0

    for o in result.orders:
        lo, hi = bisect.bisect_left(starts, o.start), bisect.bisect_right(starts, o.end)
        mine = timings[lo:hi]
        server: dict[str, int] = {}
        posts = [t for t in mine if t[2] == "POST" and t[3] == ORDER_PATH]
        accounts = [t for t in mine if t[2] == "GET" and t[3] == ACCOUNT_PATH]
        polls = [t for t in mine if t[2] == "GET" and t[3] == OPEN_ORDERS_PATH]
        overlapped += bool(polls)
        if len(posts) != 1 or posts[0][4] != o.cid or len(accounts) != 1 or len(mine) != 2 + len(polls):
            seen = [(t[2], t[3], t[4]) for t in mine]
            raise RuntimeError(f"order {o.cid}: expected one GET {ACCOUNT_PATH} and one POST {ORDER_PATH} with its "
                               f"client id inside its window, the server saw {seen}")
        if any(t[5] != 200 for t in mine):
            raise RuntimeError(f"order {o.cid}: the server answered {[t[5] for t in mine]}")
        # The server reads its clock after handing the response to the kernel; if it is preempted in between,
        # the client may have the answer first. Its time is then cut at the client's receipt (conservative).
        account_end = min(accounts[0][1], o.marks.get("balance.http_end", o.end))
        order_end = min(posts[0][1], o.marks.get("create.http_end", o.end))
        clipped += (account_end < accounts[0][1]) + (order_end < posts[0][1])
        server["server.account"] = account_end - accounts[0][0]
        server["server.order"] = order_end - posts[0][0]
        per_order.append(server)
    ping_server = []
    for s, e in result.ping:
        lo, hi = bisect.bisect_left(starts, s), bisect.bisect_right(starts, e)
        mine = [t for t in timings[lo:hi] if t[3] == PING_PATH]
        ping_server.append(sum(min(t[1], e) - t[0] for t in mine))
    return per_order, ping_server, clipped, overlapped


def ms(ns: float) -> float:
    return ns / 1e6


def summarize(result: PassResult, timings: list[list[Any]], probed: bool) -> dict[str, Any]:
    server, ping_server, clipped, overlapped = attribute(result, timings)
    raw = [o.end - o.start for o in result.orders]
    srv = [s["server.account"] + s["server.order"] for s in server]
    net = [r - s for r, s in zip(raw, srv, strict=True)]
    out: dict[str, Any] = {
        "label": result.label,
        "n": len(raw),
        "raw": raw, "net": net, "server": srv,
        "limiter_waited_s": result.limiter_waited,
        "clipped": clipped,
        "overlapped": overlapped,
        "refresh_ns": result.refresh_ns,
        "listing_ns": result.listing_ns,
    }
    if result.ping:
        pr = [e - s for s, e in result.ping]
        out["ping_raw"], out["ping_net"] = pr, [r - s for r, s in zip(pr, ping_server, strict=True)]
    if not probed:
        return out
    rows: dict[str, list[int]] = {}

    def row(name: str, values: list[int]) -> None:
        rows[name] = values

    st = [o.stages for o in result.orders]
    g = lambda key: [s.get(key, 0) for s in st]  # noqa: E731
    delivery = [o.end - o.marks["applied"] for o in result.orders]
    row("validate (runtime.validate_order)", g("validate"))
    row("  fetch_balance: ccxt sign", g("balance.sign"))
    row("  fetch_balance: HTTP GET /account, client side", [h - s["server.account"] for h, s in zip(g("balance.http"), server, strict=True)])
    row("  fetch_balance: server's own time", [s["server.account"] for s in server])
    row("  fetch_balance: rest (guard, ccxt params + parse, Balance)", [b - h - sg for b, h, sg in zip(g("balance"), g("balance.http"), g("balance.sign"), strict=True)])
    row("  rules.check_order + risk + open-order count", [v - b for v, b in zip(g("validate"), g("balance"), strict=True)])
    row("journal insert PENDING (await)", g("insert"))
    row(SQL_INSERT_ROW, g("sql.insert_pending"))
    row("  thread hand-off both ways", [a - b for a, b in zip(g("insert"), g("sql.insert_pending"), strict=True)])
    row("venue.create_order (await)", g("create"))
    row("  ccxt sign", g("create.sign"))
    row("  HTTP POST /order, client side", [h - s["server.order"] for h, s in zip(g("create.http"), server, strict=True)])
    row("  server's own time", [s["server.order"] for s in server])
    row("  rest (guard, ccxt params + parse_order, to_order)", [c - h - sg for c, h, sg in zip(g("create"), g("create.http"), g("create.sign"), strict=True)])
    row("journal apply OPEN (await)", g("apply"))
    row("  on the store thread (SQL, synchronous=NORMAL)", g("sql.apply_order"))
    row("  thread hand-off both ways", [a - b for a, b in zip(g("apply"), g("sql.apply_order"), strict=True)])
    row("publish OPEN -> subscriber", delivery)
    accounted = [v + i + c + a + d for v, i, c, a, d in zip(g("validate"), g("insert"), g("create"), g("apply"), delivery, strict=True)]
    row("other (task, shield, PENDING row + event, ...)", [r - a for r, a in zip(raw, accounted, strict=True)])
    out["rows"] = rows
    return out


def line(label: str, values: list[float]) -> str:
    return (f"{label}: p50 {ms(pct(values, 50)):.2f} ms, p99 {ms(pct(values, 99)):.2f} ms, "
            f"mean {ms(statistics.fmean(values)):.2f} ms, max {ms(max(values)):.2f} ms")


def report(s: dict[str, Any]) -> None:
    print(f"\n== {s['label']}: {s['n']:,} orders")
    print(line("  raw round trip (submit -> OPEN event)", s["raw"]))
    print(line("  server's own time (GET /account + POST /order)", s["server"]))
    print(line("  net of the server's time", s["net"]))
    if "ping_raw" in s:
        print(line("  reference: ccxt GET /api/v3/ping, net of server", s["ping_net"]))
    if s["clipped"]:
        print(f"  {s['clipped']} server time(s) cut at the client's receipt of the answer (server preempted after writing)")
    if s["overlapped"]:
        print(f"  {s['overlapped']} order(s) overlapped the poll's GET /api/v3/openOrders (not subtracted: it is not the order's)")
    if s["refresh_ns"]:
        print(f"  one poll (service.refresh()) with {s['n']:,}+ open orders took {ms(s['refresh_ns']):.1f} ms; "
              f"its GET /api/v3/openOrders with ccxt's parsing alone {ms(s['listing_ns']):.1f} ms, the rest is one "
              "journal apply_order per open order")
    if s["limiter_waited_s"]:
        print(f"  rate limiter waits: {s['limiter_waited_s']:.2f} s in all")
    if "rows" in s:
        print(f"  {'breakdown (ms)':<66}{'mean':>7}{'p50':>7}{'p99':>7}")
        for name, values in s["rows"].items():
            print(f"  {name:<66}{ms(statistics.fmean(values)):>7.3f}{ms(pct(values, 50)):>7.3f}{ms(pct(values, 99)):>7.3f}")


# ----------------------------------------------------------------------------- main


def pin_client() -> bool:
    if not hasattr(os, "sched_setaffinity"):
        return False
    if not {CLIENT_CPU, SERVER_CPU} <= os.sched_getaffinity(0):
        return False
    os.sched_setaffinity(0, {CLIENT_CPU})  # threads started later (the store's) inherit it
    return True


def versions(data_root: Path) -> str:
    import platform
    import sqlite3

    import aiohttp
    import ccxt

    fs = "?"
    try:
        best = ""
        for mount in Path("/proc/mounts").read_text().splitlines():
            _, point, kind, *_ = mount.split()
            if str(data_root.resolve()).startswith(point) and len(point) >= len(best):
                best, fs = point, kind
    except OSError:
        pass
    return (f"Python {platform.python_version()}, ccxt {ccxt.__version__} on aiohttp {aiohttp.__version__}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {os.cpu_count()} cores; "
            f"data files under {data_root} ({fs})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000, help="timed orders in the main pass")
    parser.add_argument("--warmup", type=int, default=20, help="orders sent first and not counted, each pass")
    parser.add_argument("--compare-orders", type=int, default=None,
                        help="timed orders in the comparison pass with the first insert at synchronous=NORMAL "
                             "(default: as many as --orders; 0: skip)")
    parser.add_argument("--target-ms", type=float, default=10.0, help="the net p50 to meet")
    parser.add_argument("--poll", type=float, default=0.0, help="the service's open-order poll interval (the app: 2); 0 = off")
    parser.add_argument("--app-rate-limit", action="store_true", help="keep the guard's ccxt-seeded 20 requests/s bucket")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds of idle between orders")
    parser.add_argument("--pings", type=int, default=200, help="reference ccxt pings before the orders")
    parser.add_argument("--timeout", type=float, default=180.0, help="bound on one pass, seconds")
    parser.add_argument("--order-timeout", type=float, default=10.0, help="bound on one order's OPEN event, seconds")
    parser.add_argument("--no-probe", action="store_true", help="no timing wrappers: totals only")
    parser.add_argument("--dump", type=Path, default=None, help="write every order's times (ns) to this JSON file")
    parser.add_argument("--no-pin", action="store_true", help="do not pin this process and the server to CPUs 0 and 1")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the temporary data files go (a disk: fsync on tmpfs costs nothing)")
    args = parser.parse_args()
    if args.compare_orders is None:
        args.compare_orders = args.orders

    pinnable = not args.no_pin and hasattr(os, "sched_setaffinity") and {CLIENT_CPU, SERVER_CPU} <= os.sched_getaffinity(0)
    lifetime = 2 * args.timeout + 120
    server = ServerProcess(pin=pinnable, lifetime=lifetime)  # started before pinning ourselves
    summaries = []
    dumps: list[dict[str, Any]] = []
    try:
        pinned = pinnable and pin_client()
        print(versions(args.data_dir))
        print(f"client (loop and store thread) pinned to CPU {CLIENT_CPU}, server to CPU {SERVER_CPU}" if pinned
              else "not pinned: fewer than 2 CPUs or --no-pin")
        print(f"poll {'every %g s' % args.poll if args.poll else 'off'}; rate limiter "
              f"{'as the app (ccxt: 20 req/s, burst 20)' if args.app_rate_limit else 'raised (never waits)'}; "
              f"gap between orders {args.gap:g} s; probes {'off' if args.no_probe else 'on'}")
        passes = [("main pass, journal insert at synchronous=FULL (as the app)", args.orders, True)]
        if args.compare_orders:
            passes.append(("comparison pass, journal insert at synchronous=NORMAL (not the app)", args.compare_orders, False))
        for label, count, full in passes:
            started = time.monotonic()
            try:
                result = asyncio.run(run_pass(server.url, args, count=count, label=label, sync_full=full,
                                              data_root=args.data_dir))
                timings = server.timings()
                summary = summarize(result, timings, probed=not args.no_probe)
            except (RuntimeError, TimeoutError) as exc:
                print(f"FAIL in {label}: {type(exc).__name__}: {exc}")
                return 1
            if args.dump is not None:
                dumps.append({"label": label, "orders": [o.__dict__ for o in result.orders], "server": timings,
                              "ping": result.ping})
            summaries.append(summary)
            report(summary)
            print(f"  ({time.monotonic() - started:.1f} s wall)")
    finally:
        server.close()
        if args.dump is not None and dumps:
            args.dump.write_text(json.dumps(dumps))

    main_pass = summaries[0]
    p50 = ms(pct(main_pass["net"], 50))
    if len(summaries) > 1:
        other = summaries[1]
        print(f"\nthe PENDING insert's fsync (synchronous FULL minus NORMAL, {main_pass['n']:,} vs {other['n']:,} orders):")
        for name, key in (("round trip", "raw"), ("net round trip", "net")):
            a, b = main_pass[key], other[key]
            print(f"  {name}: p50 {ms(pct(a, 50) - pct(b, 50)):+.2f} ms, p99 {ms(pct(a, 99) - pct(b, 99)):+.2f} ms, "
                  f"mean {ms(statistics.fmean(a) - statistics.fmean(b)):+.2f} ms")
        if "rows" in main_pass and "rows" in other:
            a, b = main_pass["rows"][SQL_INSERT_ROW], other["rows"][SQL_INSERT_ROW]
            print(f"  the insert on the store thread: p50 {ms(pct(a, 50)):.3f} ms at FULL vs {ms(pct(b, 50)):.3f} ms at "
                  f"NORMAL, p99 {ms(pct(a, 99)):.3f} vs {ms(pct(b, 99)):.3f} ms, mean {ms(statistics.fmean(a)):.3f} vs "
                  f"{ms(statistics.fmean(b)):.3f} ms")
    ok = p50 <= args.target_ms
    print(f"\nnet p50 {p50:.2f} ms, net p99 {ms(pct(main_pass['net'], 99)):.2f} ms over {main_pass['n']:,} orders; "
          f"raw p50 {ms(pct(main_pass['raw'], 50)):.2f} ms, raw p99 {ms(pct(main_pass['raw'], 99)):.2f} ms")
    print("PASS" if ok else f"FAIL: target net p50 <= {args.target_ms:g} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

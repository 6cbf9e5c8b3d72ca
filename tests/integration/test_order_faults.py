"""The order service against the local Binance server with real ccxt: lost answers, a venue that fails
while an order is being reconciled, and a process killed with SIGKILL between the journal write and the
exchange's reply. The server's ledger is the referee: afterwards every request is exactly one order on
the exchange or none, and the journal says which.

The SIGKILL tests run this module as a child process (`python -m tests.integration.test_order_faults
child ...`), which places one order through a real store, service and ccxt venue and is killed by the
parent at the chosen moment; the parent then opens a fresh service on the same SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from app.bus import EventBus
from app.domain import OrderRequest, OrderStatus, OrderType, Side
from app.resilience.guard import Guard, GuardConfig
from app.store import Store
from app.trading.orders import OrderService, new_client_order_id
from app.venues.binance import BinanceVenue
from app.venues.ccxt_venue import ExchangeConfig
from tests.servers.base import API_KEY, API_SECRET
from tests.servers.binance import BinanceServer

ROOT = Path(__file__).resolve().parents[2]
ORDER_PATH = "/api/v3/order"
SYMBOL = "BTC/USDT"
REPEAT = 20
KILL_REPEAT = 4


def binance(srv_rest: str, srv_ws: str, *, call_timeout: float) -> BinanceVenue:
    # A high failure threshold: these tests make many calls fail on purpose and must not trip the breaker.
    guard = Guard("exchange:binance", GuardConfig(retry_first_delay=0.01, retry_max_delay=0.05, rate_per_second=1000, burst=1000,
                                                   failure_threshold=10_000, call_timeout=call_timeout))
    config = ExchangeConfig(rest_url=srv_rest, ws_url=srv_ws, api_key=API_KEY, secret=API_SECRET,
                            timeout_s=max(call_timeout, 3.0))
    return BinanceVenue(config, guard=guard)


def posts(srv: BinanceServer) -> int:
    return sum(r.method == "POST" and r.path == ORDER_PATH for r in srv.requests)


def on_server(srv: BinanceServer, cid: str) -> list:
    return [o for o in srv.ledger.orders.values() if o.client_id == cid]


def row(db: Path, cid: str) -> tuple | None:
    """The journal row as another process sees it (an independent connection)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT status, venue_order_id FROM order_journal WHERE client_order_id = ?",
                            (cid,)).fetchone()
    except sqlite3.OperationalError:  # the child has not created the schema yet
        return None
    finally:
        conn.close()


async def wait_for(predicate, timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    async with BinanceServer() as srv:
        yield srv


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus()
    await b.start()
    yield b
    await b.stop()


async def a_price(srv: BinanceServer) -> Decimal:
    venue = binance(srv.rest_url, srv.ws_url, call_timeout=3.0)
    try:
        ticker = await venue.fetch_ticker(SYMBOL)
        return (ticker.last * Decimal("0.9")).quantize(venue.markets[SYMBOL].price_tick)
    finally:
        await venue.close()


def request(price: Decimal, cid: str = "", *, market: bool = False) -> OrderRequest:
    if market:  # the server fills market orders at once: afterwards only a lookup by client id finds them
        return OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, Decimal("0.001"), cid)
    return OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal("0.01"), cid, price=price)


def expected(entry, placed, market: bool) -> None:
    """The journal row agrees with the server's ledger entry `placed`."""
    assert entry.venue_order_id == placed.id, entry
    if market:
        assert entry.status is OrderStatus.FILLED and entry.filled == placed.amount == Decimal("0.001"), entry
    else:
        assert entry.status is OrderStatus.OPEN and entry.filled == 0, entry


# --------------------------------------------------------------------------- in one process


async def test_an_accepted_order_whose_reply_is_lost_exists_exactly_once_and_is_journalled_open(
        tmp_path: Path, server: BinanceServer, bus: EventBus) -> None:
    srv = server
    price = await a_price(srv)
    venue = binance(srv.rest_url, srv.ws_url, call_timeout=0.25)
    with Store.open(tmp_path / "meridian.sqlite3") as store:
        svc = OrderService(venue, store, bus, settle_window=1.0, backoff_first=0.02, backoff_max=0.2)
        await svc.start()
        try:
            for i in range(REPEAT):
                # The server places the order, then answers after the client has given up.
                market = i % 4 == 3
                srv.faults.lose_answer(1.0, times=1, path=ORDER_PATH)
                order = await svc.submit(request(price, market=market))
                cid = order.client_order_id
                assert order.status is OrderStatus.UNKNOWN, order
                entry = await svc.wait_settled(cid, timeout=10)
                [placed] = on_server(srv, cid)
                expected(entry, placed, market)
                assert posts(srv) == i + 1 and len(srv.ledger.orders) == i + 1
                assert not svc.may_resend(cid)
        finally:
            await svc.close()
            await venue.close()


class InFlightProxy:
    """A TCP proxy in front of the server that can hold the next order request for a while and deliver it
    even after the client has given up: a request still in flight in the network or a load balancer."""

    def __init__(self, upstream_port: int, hold_seconds: float) -> None:
        self.upstream_port = upstream_port
        self.hold_seconds = hold_seconds
        self.hold_posts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> InFlightProxy:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._spawn(self._pipe(reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        answered = asyncio.Event()

        async def from_client() -> None:
            try:
                while data := await reader.read(65536):
                    chunks.put_nowait(data)
            except ConnectionError:
                pass
            chunks.put_nowait(None)

        async def to_server() -> None:
            # In order: a held chunk holds everything behind it, as a slow network path would.
            while (data := await chunks.get()) is not None:
                if self.hold_posts and data.startswith(f"POST {ORDER_PATH}".encode()):
                    self.hold_posts -= 1
                    await asyncio.sleep(self.hold_seconds)
                up_writer.write(data)
                await up_writer.drain()
            # The client is gone; stay connected until the server has answered, or it would cancel the request.
            try:
                await asyncio.wait_for(answered.wait(), 2.0)
            except TimeoutError:
                pass
            up_writer.close()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                answered.set()
                try:
                    writer.write(data)
                    await writer.drain()
                except ConnectionError:
                    pass  # nobody is listening any more
            writer.close()

        await asyncio.gather(from_client(), to_server(), to_client(), return_exceptions=True)


async def test_a_request_still_in_flight_after_the_timeout_is_found_not_declared_missing(
        tmp_path: Path, server: BinanceServer, bus: EventBus) -> None:
    """The client gives up while its order is still on the way; the exchange answers "no such order" to
    the first lookups and then takes the order. The journal must not call it 'not placed' meanwhile."""
    srv = server
    price = await a_price(srv)
    async with InFlightProxy(srv.rest_port, hold_seconds=0.5) as proxy:
        venue = binance(proxy.url, srv.ws_url, call_timeout=0.25)
        with Store.open(tmp_path / "meridian.sqlite3") as store:
            svc = OrderService(venue, store, bus, settle_window=1.5, backoff_first=0.02, backoff_max=0.1)
            await svc.start()
            try:
                for i in range(REPEAT // 2):
                    proxy.hold_posts = 1
                    order = await svc.submit(request(price))
                    cid = order.client_order_id
                    assert order.status is OrderStatus.UNKNOWN
                    entry = await svc.wait_settled(cid, timeout=10)
                    [placed] = on_server(srv, cid)
                    assert entry.status is OrderStatus.OPEN and entry.venue_order_id == placed.id, entry
                    assert not svc.may_resend(cid) and posts(srv) == i + 1
                # The exchange did say "no such order" before the orders arrived: the window is what saved them.
                assert sum(r.method == "GET" and r.path == ORDER_PATH and r.status == 400 for r in srv.requests) \
                    >= REPEAT // 4
            finally:
                await svc.close()
                await venue.close()


async def test_while_the_exchange_fails_the_unknown_order_is_looked_up_again_and_never_resent(
        tmp_path: Path, server: BinanceServer, bus: EventBus) -> None:
    srv = server
    price = await a_price(srv)
    venue = binance(srv.rest_url, srv.ws_url, call_timeout=0.25)
    with Store.open(tmp_path / "meridian.sqlite3") as store:
        svc = OrderService(venue, store, bus, settle_window=0.15, backoff_first=0.02, backoff_max=0.1)
        await svc.start()
        try:
            for i in range(REPEAT // 2):
                placed = i % 2 == 0
                before = posts(srv)
                cid = new_client_order_id()
                if placed:
                    # The exchange takes the order but the reply is late; from then on it answers only 503s.
                    srv.faults.lose_answer(1.0, times=1, path=ORDER_PATH)
                    submitting = asyncio.create_task(svc.submit(request(price, cid)))
                    await wait_for(lambda: on_server(srv, cid), 5, "the order on the server")
                    srv.faults.next_status(503, times=None, path=ORDER_PATH)
                    order = await submitting
                else:
                    # A 503 to the order itself (the client cannot know it was not placed), then to the lookups.
                    srv.faults.next_status(503, times=None, path=ORDER_PATH)
                    order = await svc.submit(request(price, cid))
                assert order.status is OrderStatus.UNKNOWN
                lookups, since = svc.lookups, asyncio.get_running_loop().time()
                # Failing for longer than the settle window: a failure is never taken for "not there".
                await wait_for(lambda: svc.lookups >= lookups + 3 and asyncio.get_running_loop().time() > since + 0.3,
                               10, "lookups")
                entry = svc.entry(cid)
                assert entry.status is OrderStatus.UNKNOWN and not svc.may_resend(cid), entry
                srv.faults.clear()
                entry = await svc.wait_settled(cid, timeout=10)
                assert posts(srv) == before + 1  # never resent
                if placed:
                    [on] = on_server(srv, cid)
                    expected(entry, on, market=False)
                else:
                    assert entry.status is OrderStatus.REJECTED and entry.not_placed and svc.may_resend(cid)
                    assert on_server(srv, cid) == []
                    again = await svc.resend(cid)
                    assert again.status is OrderStatus.OPEN and len(on_server(srv, again.client_order_id)) == 1
        finally:
            await svc.close()
            await venue.close()


# --------------------------------------------------------------------------- killed with SIGKILL


async def run_child(tmp_path: Path, srv: BinanceServer, db: Path, cid: str, price: Decimal, mode: str):
    marker = tmp_path / f"{cid}.stalled"
    log = open(tmp_path / f"{cid}.log", "wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.test_order_faults", "child",
        "--db", str(db), "--rest", srv.rest_url, "--ws", srv.ws_url, "--cid", cid, "--price", str(price),
        "--mode", mode, "--marker", str(marker),
        cwd=ROOT, stdout=log, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    return proc, marker


def child_output(tmp_path: Path, cid: str) -> str:
    return (tmp_path / f"{cid}.log").read_text(errors="replace")[-3000:]


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL


async def restart(srv: BinanceServer, db: Path, bus: EventBus) -> tuple[Store, BinanceVenue, OrderService]:
    store = Store.open(db)  # recovers the WAL the killed process left
    venue = binance(srv.rest_url, srv.ws_url, call_timeout=3.0)
    svc = OrderService(venue, store, bus, settle_window=0.5, backoff_first=0.02, backoff_max=0.2)
    await asyncio.wait_for(svc.start(), 15)
    assert svc.trading_enabled
    return store, venue, svc


async def test_killed_after_the_exchange_took_the_order_the_restart_finds_it_once(
        tmp_path: Path, server: BinanceServer, bus: EventBus) -> None:
    srv = server
    price = await a_price(srv)
    for i in range(KILL_REPEAT):
        db, cid = tmp_path / f"run{i}.sqlite3", new_client_order_id()
        market = i % 2 == 1
        srv.faults.lose_answer(60, times=1, path=ORDER_PATH)  # the reply would come after the kill
        proc, _ = await run_child(tmp_path, srv, db, cid, price, "send-market" if market else "send")
        try:
            await wait_for(lambda: on_server(srv, cid) and row(db, cid) is not None or proc.returncode is not None,
                           30, "the order on the server")
            assert proc.returncode is None, child_output(tmp_path, cid)
            assert row(db, cid) == ("pending", "")  # committed before the send; the reply never came
            await kill(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        srv.faults.clear()
        store, venue, svc = await restart(srv, db, bus)
        try:
            [placed] = on_server(srv, cid)
            entry = svc.entry(cid)
            expected(entry, placed, market)
            assert not svc.may_resend(cid)
            assert posts(srv) == i + 1  # reconciling sent nothing
            assert row(db, cid) == (entry.status.value, placed.id)
        finally:
            await svc.close()
            await venue.close()
            store.close()


async def test_killed_before_the_request_left_the_restart_says_not_placed_and_allows_a_resend(
        tmp_path: Path, server: BinanceServer, bus: EventBus) -> None:
    srv = server
    price = await a_price(srv)
    for i in range(KILL_REPEAT):
        db, cid = tmp_path / f"run{i}.sqlite3", new_client_order_id()
        proc, marker = await run_child(tmp_path, srv, db, cid, price, "stall")
        try:
            await wait_for(lambda: marker.exists() or proc.returncode is not None, 30, "the child to reach the send")
            assert proc.returncode is None, child_output(tmp_path, cid)
            assert row(db, cid) == ("pending", "")
            await kill(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert posts(srv) == i  # the server never saw it
        store, venue, svc = await restart(srv, db, bus)
        try:
            entry = svc.entry(cid)
            assert entry.status is OrderStatus.REJECTED and entry.not_placed and svc.may_resend(cid)
            assert on_server(srv, cid) == []
            again = await svc.resend(cid)
            assert again.status is OrderStatus.OPEN and len(on_server(srv, again.client_order_id)) == 1
            assert posts(srv) == i + 1 and on_server(srv, cid) == []
        finally:
            await svc.close()
            await venue.close()
            store.close()


# --------------------------------------------------------------------------- the child process


async def _child(args: argparse.Namespace) -> None:
    store = Store.open(Path(args.db))
    bus = EventBus()
    await bus.start()
    # Generous timeouts: the parent kills this process long before any of them expires.
    venue = binance(args.rest, args.ws, call_timeout=120.0)
    await venue.load_markets()
    if args.mode == "stall":
        async def stalled(_request: OrderRequest):  # the journal row is committed; the request never leaves
            Path(args.marker).write_text("stalled")
            await asyncio.sleep(3600)

        venue.create_order = stalled  # type: ignore[method-assign]
    svc = OrderService(venue, store, bus)
    await svc.start()
    order = await svc.submit(request(Decimal(args.price), args.cid, market=args.mode == "send-market"))
    print("the submit returned, which the parent should have prevented:", order, flush=True)


def _child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    for name in ("--db", "--rest", "--ws", "--cid", "--price", "--mode", "--marker"):
        parser.add_argument(name, required=True)
    asyncio.run(_child(parser.parse_args(argv)))


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    _child_main(sys.argv[2:])


async def test_gate_order_with_a_lost_answer_is_found_in_history_after_gate_forgets_its_text(tmp_path) -> None:
    """Gate finds a finished order by its text for only a minute; a restart after that must still find
    it (in the order history) and never call it "not placed"."""
    import time as _time

    from app.bus import EventBus
    from app.store import Store
    from app.trading.journal import JournalEntry
    from app.trading.orders import OrderService
    from app.venues.ccxt_venue import ExchangeConfig
    from app.venues.gate import GateVenue
    from tests.servers.base import API_KEY, API_SECRET
    from tests.servers.gate import GateServer

    class Clock:
        off = 0.0

        def __call__(self) -> float:
            return _time.time() + self.off

    clock = Clock()
    async with GateServer(clock=clock) as srv:
        venue = GateVenue(ExchangeConfig(rest_url=srv.rest_url, ws_url=srv.ws_url + "/ws/v4/", api_key=API_KEY,
                                         secret=API_SECRET, timeout_s=3))
        store = Store.open(tmp_path / "journal.sqlite3")
        bus = EventBus()
        await bus.start()
        request = OrderRequest("BTC/USDT", Side.SELL, OrderType.MARKET, Decimal("0.001"), "mtdeadbeef00112233aabb")
        first = OrderService(venue, store, bus)
        await first.journal.insert_pending(JournalEntry.pending("gate", request, int(_time.time() * 1000)))
        placed = await venue.create_order(request)  # it reached Gate; the answer never reached the journal
        clock.off = 120  # restarted two minutes later: Gate no longer finds it by its text
        service = OrderService(venue, store, bus, settle_window=0.5)
        try:
            await asyncio.wait_for(service.start(), 30)
            entry = service.entry(request.client_order_id)
            assert entry.status is OrderStatus.FILLED and entry.venue_order_id == placed.id
            assert not service.may_resend(request.client_order_id)
        finally:
            await service.close()
            await venue.close()
            await bus.stop()
            store.close()

"""What the three venue servers share: the runner, the price model, the ledger, faults.

Every server is an aiohttp app (REST) plus a `websockets` server (streams), each
on its own free port of 127.0.0.1, started by `async with SomeServer() as srv:`.
Market data comes from one deterministic model so that REST and websocket agree
with each other, across server instances and across reconnects: the price of a
symbol at a given millisecond is a pure function of (symbol, time). Frame shapes,
quote sizes and book depth come from the recordings in ../shared/fixtures/,
which are read in place and never copied.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar, Self

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
HOST = "127.0.0.1"
API_KEY = "meridian-test-key"
API_SECRET = "meridian-test-secret"
MINUTE_MS = 60_000
DAY_MS = 1440 * MINUTE_MS
DEFAULT_BALANCES: Mapping[str, str] = {"USDT": "100000", "BTC": "1", "ETH": "10"}

# Rough real-world levels so that symbols look familiar; anything else gets a
# deterministic level derived from its name.
KNOWN_PRICES: Mapping[str, float] = {
    "BTCUSDT": 65_000.0, "ETHUSDT": 3_200.0, "ETHBTC": 0.05, "BTCUSDC": 65_000.0,
    "NKNUSDT": 0.35, "LRCBTC": 0.0000095, "BLZETH": 0.000061, "RUNEEUR": 8.6,
    "NEOBTC": 0.0018, "NANOUSDT": 8.8, "OMGUSDT": 7.9,
}


# --------------------------------------------------------------------------- fixtures

@dataclass(frozen=True, slots=True)
class Captured:
    """One record of a capture log: `<url> <direction> <unix-seconds>: <payload>`."""

    url: str
    direction: str
    ts: float
    payload: str


@cache
def read_capture(path: Path) -> tuple[Captured, ...]:
    """Parse a capture log. Lines without a URL continue the connection above."""
    records: list[Captured] = []
    url, direction = "", "<-"
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        head, _, payload = line.partition(": ")
        parts = head.split()
        if not re.fullmatch(r"[0-9.]+", parts[-1]):
            continue  # the recorder's trailing "configuration: {...}" line
        if len(parts) == 3:
            url, direction, ts = parts
        else:
            ts = parts[-1]
        if direction == "<->" and payload:
            direction = "<-"  # frames that follow a connection record are received frames
        records.append(Captured(url, direction, float(ts), payload))
    return tuple(records)


@cache
def fixture_json(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


# --------------------------------------------------------------------------- price model

@dataclass(frozen=True, slots=True)
class Bar:
    """One candle of the model. `closed` is False for the candle still forming."""

    open_ms: int
    interval_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool

    @property
    def close_ms(self) -> int:
        return self.open_ms + self.interval_ms - 1

    @property
    def quote_volume(self) -> float:
        return self.volume * (self.open + self.high + self.low + self.close) / 4


@cache
def _chained_rows() -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """The recorded 1m candles with each open moved to the previous close.

    The recording has gaps, so its opens jump; chaining keeps the live price
    continuous from one minute to the next (high/low widen to include the open).
    The series is used cyclically, so row 0 follows the last row.
    """
    rows = fixture_json("candles/UNITTEST_BTC-1m.json")
    o, h, lo, c, v = [], [], [], [], []
    prev = rows[-1][4]
    for _, _open, high, low, close, volume in rows:
        o.append(prev)
        h.append(max(high, prev))
        lo.append(min(low, prev))
        c.append(close)
        v.append(volume)
        prev = close
    return o, h, lo, c, v


class PriceModel:
    """Deterministic candles for any symbol, at any time, from the recorded shape.

    Minute m of symbol S is row (m + offset(S)) mod N of the recording, scaled to
    S's price level. Within a minute the price walks open -> low -> high -> close
    (or open -> high -> low -> close for a falling candle) in three straight legs,
    so a forming candle's running high/low always end at the recorded ones and a
    tick is always inside its candle.
    """

    def __init__(self, prices: Mapping[str, float] | None = None) -> None:
        self._o, self._h, self._l, self._c, self._v = _chained_rows()
        self._n = len(self._o)
        self._mean = sum(self._c) / self._n
        self._prices = {**KNOWN_PRICES, **{self.key(k): v for k, v in (prices or {}).items()}}
        self._shapes: dict[str, tuple[int, float, int]] = {}
        self._cache: dict[tuple[int, int], tuple[float, float, float, float]] = {}

    @staticmethod
    def key(symbol: str) -> str:
        """BTC/USDT, BTC_USDT and btcusdt all move together, on every venue."""
        return re.sub(r"[^A-Z0-9]", "", symbol.upper())

    def _shape(self, symbol: str) -> tuple[int, float, int]:
        k = self.key(symbol)
        shape = self._shapes.get(k)
        if shape is None:
            crc = zlib.crc32(k.encode())
            level = self._prices.get(k) or 10 ** ((crc >> 8) % 500 / 100 - 1)
            decimals = min(8, max(0, 6 - math.floor(math.log10(level))))
            shape = (crc % self._n, level / self._mean, decimals)
            self._shapes[k] = shape
        return shape

    def decimals(self, symbol: str) -> int:
        """Price decimals: about seven significant digits, at most eight decimals."""
        return self._shape(symbol)[2]

    def fmt(self, symbol: str, price: float, pad: int = 0) -> str:
        d = self.decimals(symbol)
        return f"{round(price, d):.{max(d, pad)}f}"

    def _row(self, symbol: str, minute: int) -> int:
        return (minute + self._shape(symbol)[0]) % self._n

    def _spans(self, row: int, count: int) -> Iterator[tuple[int, int]]:
        while count > 0:
            take = min(count, self._n - row)
            yield row, row + take
            count -= take
            row = 0

    def _closed(self, first: int, count: int) -> tuple[float, float, float, float]:
        """(high, low, volume, close) of `count` whole rows from `first`, unscaled.

        Cached because a 24h ticker pushed at firehose rate would otherwise
        re-scan the same 1,439 rows for every frame within a minute.
        """
        key = (first, count)
        hit = self._cache.get(key)
        if hit is None:
            high, low, volume, close = -math.inf, math.inf, 0.0, self._o[first]
            for a, b in self._spans(first, count):
                high = max(high, max(self._h[a:b]))
                low = min(low, min(self._l[a:b]))
                volume += sum(self._v[a:b])
                close = self._c[b - 1]
            if len(self._cache) > 50_000:
                self._cache.clear()
            hit = self._cache[key] = (high, low, volume, close)
        return hit

    def _partial(self, row: int, fraction: float) -> tuple[float, float, float, float]:
        """(price, running high, running low, volume so far) inside a minute, unscaled."""
        o, h, lo, c = self._o[row], self._h[row], self._l[row], self._c[row]
        legs = (o, lo, h, c) if c >= o else (o, h, lo, c)
        i = min(int(fraction * 3), 2)
        price = legs[i] + (legs[i + 1] - legs[i]) * (fraction * 3 - i)
        seen = (*legs[: i + 1], price)
        return price, max(seen), min(seen), self._v[row] * fraction

    def price(self, symbol: str, t_ms: int) -> float:
        row = self._row(symbol, t_ms // MINUTE_MS)
        return self._partial(row, (t_ms % MINUTE_MS) / MINUTE_MS)[0] * self._shape(symbol)[1]

    def bar(self, symbol: str, open_ms: int, interval_ms: int, now_ms: int) -> Bar | None:
        """The candle [open_ms, open_ms + interval_ms) as seen at now_ms (None if in the future)."""
        if now_ms < open_ms:
            return None
        m0 = open_ms // MINUTE_MS
        end = open_ms + interval_ms
        closed = now_ms >= end
        n_closed = interval_ms // MINUTE_MS if closed else now_ms // MINUTE_MS - m0
        first = self._row(symbol, m0)
        high, low, volume, close = self._closed(first, n_closed)
        if not closed:
            p, ph, pl, pv = self._partial(self._row(symbol, now_ms // MINUTE_MS), (now_ms % MINUTE_MS) / MINUTE_MS)
            high, low, volume, close = max(high, ph), min(low, pl), volume + pv, p
        scale = self._shape(symbol)[1]
        return Bar(open_ms, interval_ms, self._o[first] * scale, high * scale, low * scale, close * scale, volume, closed)

    def bars(
        self,
        symbol: str,
        interval_ms: int,
        now_ms: int,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
        origin_ms: int = 0,
    ) -> list[Bar]:
        """Candles the way kline endpoints page them: open >= start, open <= end, never in the future.

        Without start, the `limit` candles up to end (or now, including the
        forming one). `origin_ms` aligns intervals that do not divide the epoch
        evenly (Binance weeks start on Monday).
        """
        def align(t: int) -> int:
            return t - (t - origin_ms) % interval_ms

        last = align(now_ms) if end_ms is None else min(align(now_ms), align(end_ms))
        if start_ms is not None:
            first = align(start_ms)
            if first < start_ms:
                first += interval_ms
        else:
            first = last - (limit - 1) * interval_ms
        opens = range(first, last + 1, interval_ms)[:limit]
        return [b for o in opens if (b := self.bar(symbol, o, interval_ms, now_ms)) is not None]

    def rolling(self, symbol: str, now_ms: int, span_ms: int = DAY_MS) -> Bar:
        """The rolling window that 24h tickers report, ending with the forming minute."""
        open_ms = (now_ms // MINUTE_MS) * MINUTE_MS - span_ms + MINUTE_MS
        bar = self.bar(symbol, open_ms, span_ms, now_ms)
        assert bar is not None
        return bar


def rescale(price: str | float, ref: float, live: float) -> float:
    """A recorded price moved from the recording's level (ref) to the model's (live)."""
    return float(price) * live / ref


def trade_at(model: PriceModel, symbol: str, second: int) -> tuple[int, float, float, bool]:
    """The model's public trade number `second`: one per second, so ids page like real ones.

    Returns (time ms, price, amount, buyer is maker).
    """
    mix = (second * 2654435761) & 0xFFFFFFFF
    t = second * 1000 + mix % 1000
    row = model._row(symbol, t // MINUTE_MS)
    amount = model._v[row] / 60 * (0.25 + (mix >> 10) % 1000 / 666)
    return t, model.price(symbol, t), amount, bool(mix & 1)


# --------------------------------------------------------------------------- ledger

class LedgerError(Exception):
    pass


class InsufficientBalance(LedgerError):
    pass


class DuplicateClientId(LedgerError):
    pass


@dataclass(eq=False)
class SimOrder:
    id: str
    client_id: str
    symbol: str  # the venue's id, e.g. BTCUSDT or BTC_USDT
    base: str
    quote: str
    side: str  # "buy" | "sell"
    type: str  # "limit" | "market"
    price: Decimal
    amount: Decimal
    created_ms: int
    time_in_force: str = "GTC"
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    status: str = "open"  # "open" | "filled" | "canceled"
    updated_ms: int = 0

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


class Ledger:
    """Balances and orders of the one test account. No matching engine: limit
    orders rest until a test fills them (`fill`), market orders fill at once."""

    def __init__(self, balances: Mapping[str, str | Decimal]) -> None:
        self.free: dict[str, Decimal] = defaultdict(Decimal, {k: Decimal(v) for k, v in balances.items()})
        self.locked: dict[str, Decimal] = defaultdict(Decimal)
        self.orders: dict[str, SimOrder] = {}
        self._by_client: dict[str, SimOrder] = {}

    def assets(self) -> list[str]:
        return sorted(set(self.free) | set(self.locked))

    def find(self, order_id: str | None = None, client_id: str | None = None) -> SimOrder | None:
        if order_id is not None:
            return self.orders.get(str(order_id))
        if client_id is not None:
            return self._by_client.get(client_id)
        return None

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.is_open and symbol in (None, o.symbol)]

    def place(self, order: SimOrder, *, unique_client_id: bool = True) -> SimOrder:
        """Accept an order, locking what it may spend. A client id is unique among open orders
        where the venue says so; otherwise the newest order owns it."""
        held = self._by_client.get(order.client_id)
        if unique_client_id and held is not None and held.is_open:
            raise DuplicateClientId(order.client_id)
        asset, need = (order.quote, order.price * order.amount) if order.side == "buy" else (order.base, order.amount)
        if self.free[asset] < need:
            raise InsufficientBalance(asset)
        self.free[asset] -= need
        self.locked[asset] += need
        order.updated_ms = order.created_ms
        self.orders[order.id] = order
        self._by_client[order.client_id] = order
        if order.type == "market":
            self.fill(order, order.price, order.created_ms)
        return order

    def _unlock(self, order: SimOrder) -> None:
        asset, held = (order.quote, order.price * order.remaining) if order.side == "buy" else (order.base, order.remaining)
        self.locked[asset] -= held
        self.free[asset] += held

    def cancel(self, order: SimOrder, now_ms: int) -> SimOrder:
        if order.is_open:
            self._unlock(order)
            order.status, order.updated_ms = "canceled", now_ms
        return order

    def fill(self, order: SimOrder, price: Decimal | None = None, now_ms: int = 0) -> SimOrder:
        """Fill what is left of an open order at `price` (default: its limit price). No fees."""
        if not order.is_open:
            return order
        self._unlock(order)
        price = order.price if price is None else price
        qty, value = order.remaining, order.remaining * price
        if order.side == "buy":
            self.free[order.quote] -= value
            self.free[order.base] += qty
        else:
            self.free[order.base] -= qty
            self.free[order.quote] += value
        order.filled, order.cost = order.amount, order.cost + value
        order.status, order.updated_ms = "filled", now_ms or order.updated_ms
        return order


def dec(x: Decimal | int) -> str:
    """A Decimal as plain text, without exponent or trailing zeros."""
    s = f"{Decimal(x):f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


# --------------------------------------------------------------------------- logs and faults

@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What ccxt sent, minus every value: parameter names only, and whether it was signed."""

    method: str
    path: str
    params: tuple[str, ...]
    signed: bool
    status: int


@dataclass(frozen=True, slots=True)
class WsEvent:
    kind: str  # "open" | "recv" | "close"
    path: str
    detail: str = ""


@dataclass(slots=True)
class _Rule:
    status: int
    remaining: int | None
    path: str | None
    retry_after: float | None = None
    body: str | None = None

    def matches(self, path: str) -> bool:
        return (self.remaining is None or self.remaining > 0) and (self.path is None or path.startswith(self.path))

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


class Faults:
    """REST faults, changed by a test while the server runs.

    `path` limits a fault to requests whose path starts with it; `times=None`
    keeps it until `clear()`.
    """

    def __init__(self, stop: Callable[[], Any], start: Callable[[], Any]) -> None:
        self._stop, self._start = stop, start
        self._rules: list[_Rule] = []
        self._delays: list[tuple[float, _Rule]] = []
        self._late_answers: list[tuple[float, _Rule]] = []
        self.refused = False

    def next_status(self, status: int, times: int | None = 1, *, path: str | None = None,
                    body: str | None = None, retry_after: float | None = None) -> None:
        """Answer the next `times` requests with `status` and the venue's error body (or `body`)."""
        self._rules.append(_Rule(status, times, path, retry_after, body))

    def rate_limit(self, retry_after: float = 2, times: int | None = 1, *, path: str | None = None) -> None:
        self.next_status(429, times, path=path, retry_after=retry_after)

    def ban(self, retry_after: float = 60, times: int | None = 1, *, path: str | None = None) -> None:
        """Binance's IP ban after ignoring 429s: HTTP 418 with Retry-After."""
        self.next_status(418, times, path=path, retry_after=retry_after)

    def delay(self, seconds: float, times: int | None = None, *, path: str | None = None) -> None:
        """Wait `seconds` before handling: a client that gives up first leaves nothing done."""
        self._delays.append((seconds, _Rule(0, times, path)))

    def lose_answer(self, seconds: float, times: int | None = 1, *, path: str | None = None) -> None:
        """Handle the request, then wait `seconds` before answering: a client that gives up first never
        learns that its order was placed (the case reconciliation by client order id exists for)."""
        self._late_answers.append((seconds, _Rule(0, times, path)))

    async def refuse(self) -> None:
        """Stop listening and drop open connections: new requests get ECONNREFUSED."""
        if not self.refused:
            self.refused = True
            await self._stop()

    async def resume(self) -> None:
        if self.refused:
            await self._start()
            self.refused = False

    def clear(self) -> None:
        self._rules.clear()
        self._delays.clear()
        self._late_answers.clear()

    def _take(self, path: str) -> _Rule | None:
        for rule in self._rules:
            if rule.matches(path):
                rule.consume()
                return rule
        return None

    def _take_late_answer(self, path: str) -> float:
        return self._take_delay(path, self._late_answers)

    def _take_delay(self, path: str, delays: list[tuple[float, _Rule]] | None = None) -> float:
        for seconds, rule in self._delays if delays is None else delays:
            if rule.matches(path):
                rule.consume()
                return seconds
        return 0.0


class WsFaults:
    """Websocket faults, changed by a test while the server runs."""

    def __init__(self, server: VenueServer) -> None:
        self._server = server
        self.close_after: float | None = None
        self.close_code, self.close_abort = 1001, False
        self.silent = False
        self.malformed = 0
        self.pongs_dropped = False
        self.refused = False

    def close_every(self, seconds: float | None, *, code: int = 1001, abort: bool = False) -> None:
        """Close each connection `seconds` after it opened (None: stop doing so).

        abort=True drops the TCP connection without a close frame, like a network cut.
        """
        self.close_after, self.close_code, self.close_abort = seconds, code, abort

    def go_silent(self) -> None:
        """Stop pushing data but keep connections open and answering (a stale feed)."""
        self.silent = True

    def speak(self) -> None:
        self.silent = False

    def send_malformed(self, n: int = 1) -> None:
        """Cut the next n pushed frames in half, so they no longer parse."""
        self.malformed += n

    def drop_pongs(self, enabled: bool = True) -> None:
        """Answer neither protocol pings nor the venue's application-level pings."""
        self.pongs_dropped = enabled

    async def disconnect_all(self, *, code: int = 1001, abort: bool = False) -> None:
        for session in list(self._server.sessions):
            await session.close(code, abort)

    async def refuse(self) -> None:
        if not self.refused:
            self.refused = True
            await self._server._stop_ws()

    async def resume(self) -> None:
        if self.refused:
            await self._server._start_ws()
            self.refused = False

    def clear(self) -> None:
        self.close_after, self.silent, self.malformed, self.pongs_dropped = None, False, 0, False

    def _take_malformed(self) -> bool:
        if self.malformed > 0:
            self.malformed -= 1
            return True
        return False


# --------------------------------------------------------------------------- the server

@dataclass(eq=False)
class WsSession:
    """One websocket client. `subs` maps each subscribed topic to its replay state."""

    conn: ServerConnection
    path: str
    opened: float
    subs: dict[str, Any] = field(default_factory=dict)
    sent: int = 0

    async def close(self, code: int = 1001, abort: bool = False) -> None:
        if abort:
            self.conn.transport.abort()
        else:
            await self.conn.close(code, "test server closing")


async def start_site(runner: web.AppRunner, port: int) -> tuple[web.TCPSite, int]:
    """Listen on 127.0.0.1:`port` (0: any free port, and the same one again after a `stop_site`)."""
    site = web.TCPSite(runner, HOST, port, reuse_address=True)
    await site.start()
    return site, runner.addresses[0][1]


async def stop_site(runner: web.AppRunner, site: web.TCPSite) -> None:
    """Stop listening, so new connections are refused, and drop the kept-alive ones too."""
    await site.stop()
    if runner.server is not None:
        for handler in runner.server.connections:
            handler.force_close()


class LocalHttpServer:
    """An aiohttp app on 127.0.0.1 that can go down and come back on the same port: `stop()` refuses new
    connections and drops kept-alive ones (a server that is down), `start()` listens again, `async with`
    runs it for a block. Subclasses add their routes to `self.app` in `__init__`."""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self.app = web.Application()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def start(self) -> None:
        if self._runner is None:
            self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
            await self._runner.setup()
        self._site, self.port = await start_site(self._runner, self.port)

    async def stop(self) -> None:
        if self._site is not None and self._runner is not None:
            await stop_site(self._runner, self._site)
            self._site = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass(frozen=True, slots=True)
class Template:
    """A recorded push and the price level of its symbol when it was recorded."""

    data: dict[str, Any]
    ref: float


class VenueServer:
    """Base for BinanceServer, GateServer, MexcServer.

    rate: rounds of pushes per second; each round sends one frame per subscribed
    topic. None is the firehose: as fast as the socket takes them.
    clock: seconds since the epoch for market data (a test may run it fast);
    signatures are always checked against the real clock.
    """

    auth_headers: ClassVar[tuple[str, ...]] = ()
    price_pad: ClassVar[int] = 0  # Binance writes every price with eight decimals

    def __init__(
        self,
        *,
        rate: float | None = 10.0,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        api_key: str = API_KEY,
        secret: str = API_SECRET,
        balances: Mapping[str, str | Decimal] | None = None,
        prices: Mapping[str, float] | None = None,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.rng = random.Random(seed)
        self.api_key, self.secret = api_key, secret
        self.model = PriceModel(prices)
        self.ledger = Ledger(DEFAULT_BALANCES if balances is None else balances)
        self.requests: list[RequestRecord] = []
        self.ws_log: list[WsEvent] = []
        self.errors: list[BaseException] = []  # bugs in this server surface here, not silently
        self.sessions: set[WsSession] = set()
        self.faults = Faults(self._stop_rest, self._start_rest)
        self.ws_faults = WsFaults(self)
        self.rest_port = 0
        self.ws_port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._ws: Server | None = None
        self._update_ids: dict[str, int] = {}

    # ---- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 20)
        self.routes(app.router)
        # handler_cancellation: a delayed handler whose client gave up must not
        # hold the shutdown for the default 60 s.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await self._start_rest()
        await self._start_ws()

    async def stop(self) -> None:
        if self._ws is not None:
            await self._stop_ws()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    async def _start_rest(self) -> None:
        assert self._runner is not None
        self._site, self.rest_port = await start_site(self._runner, self.rest_port)

    async def _stop_rest(self) -> None:
        assert self._runner is not None and self._site is not None
        await stop_site(self._runner, self._site)
        self._site = None

    async def _start_ws(self) -> None:
        self._ws = await serve(self._handle_ws, HOST, self.ws_port, compression=None, max_queue=None)
        self.ws_port = self._ws.sockets[0].getsockname()[1]

    async def _stop_ws(self) -> None:
        assert self._ws is not None
        self._ws.close()
        await self._ws.wait_closed()
        self._ws = None

    @property
    def rest_url(self) -> str:
        return f"http://{HOST}:{self.rest_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}"

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- market data helpers shared by REST and websocket

    def px(self, symbol: str, price: float) -> str:
        return self.model.fmt(symbol, price, self.price_pad)

    def levels(self, symbol: str, levels: list[list[str]], ref: float, live: float) -> list[list[str]]:
        """Recorded book levels moved to the live price; levels that round together merge."""
        merged: dict[str, str] = {}
        for price, qty in levels:
            merged[self.px(symbol, rescale(price, ref, live))] = qty
        return [[p, q] for p, q in merged.items()]

    def update_id(self, symbol: str, advance: int = 0) -> int:
        """The book's update id, shared by REST snapshots and pushed diffs so a client can sync them."""
        current = self._update_ids.setdefault(symbol, self.now_ms() // 10)
        self._update_ids[symbol] = current + advance
        return current + advance

    def fill(self, client_id: str, price: str | None = None) -> SimOrder:
        """Fill a resting order, as a test's stand-in for a matching engine."""
        order = self.ledger.find(client_id=client_id)
        assert order is not None, client_id
        return self.ledger.fill(order, Decimal(price) if price else None, self.now_ms())

    # ---- venue hooks

    def routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        """The venue's body for an injected HTTP error."""
        raise NotImplementedError

    async def ws_open(self, session: WsSession) -> None:
        """Subscriptions carried by the connection URL (Binance's /stream?streams=)."""

    async def ws_message(self, session: WsSession, message: str | bytes) -> None:
        raise NotImplementedError

    def ws_frames(self, session: WsSession) -> list[str | bytes]:
        """One round of pushes: a frame per subscribed topic."""
        raise NotImplementedError

    # ---- REST plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        names = await self._param_names(request)
        signed = any(h in request.headers for h in self.auth_headers) or "signature" in names
        path = request.path
        seconds = self.faults._take_delay(path)
        if seconds:
            await asyncio.sleep(seconds)
        rule = self.faults._take(path)
        if rule is not None:
            if rule.body is not None:
                response = web.Response(status=rule.status, text=rule.body)
                if rule.retry_after is not None:
                    response.headers["Retry-After"] = str(int(rule.retry_after))
            else:
                response = self.error_response(rule.status, rule.retry_after)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
            except Exception as exc:  # a bug here must fail the test that caused it
                self.errors.append(exc)
                raise
        self.requests.append(RequestRecord(request.method, path, names, signed, response.status))
        late = self.faults._take_late_answer(path)
        if late:
            await asyncio.sleep(late)  # done already; only the answer is late
        return response

    @staticmethod
    async def _param_names(request: web.Request) -> tuple[str, ...]:
        names = list(request.query.keys())
        body = await request.text()  # cached by aiohttp, handlers can read it again
        if body:
            if body.lstrip().startswith(("{", "[")):
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {}
                rows = data if isinstance(data, list) else [data]
                names += [k for row in rows if isinstance(row, dict) for k in row]
            else:
                names += [part.partition("=")[0] for part in body.split("&") if part]
        return tuple(dict.fromkeys(names))

    # ---- websocket plumbing

    async def _handle_ws(self, conn: ServerConnection) -> None:
        protocol_send = conn.protocol.send_frame

        def send_frame(frame: Frame) -> None:
            # The protocol answers pings by itself; this is the only place to stop it.
            if frame.opcode is Opcode.PONG and self.ws_faults.pongs_dropped:
                return
            protocol_send(frame)

        conn.protocol.send_frame = send_frame  # type: ignore[method-assign]
        assert conn.request is not None
        session = WsSession(conn, conn.request.path, time.monotonic())
        self.sessions.add(session)
        self.ws_log.append(WsEvent("open", session.path))
        tasks = [asyncio.create_task(self._pump(session)), asyncio.create_task(self._watchdog(session))]
        try:
            await self.ws_open(session)
            async for message in conn:
                self.ws_log.append(WsEvent("recv", session.path, message if isinstance(message, str) else "<binary>"))
                await self.ws_message(session, message)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug here must fail the test that caused it
            self.errors.append(exc)
            await conn.close(1011, "test server error")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.sessions.discard(session)
            self.ws_log.append(WsEvent("close", session.path, str(conn.close_code)))

    async def send(self, session: WsSession, frame: str | bytes) -> None:
        """A reply (ack, error). Sent even while the feed is silent."""
        await session.conn.send(frame)

    async def send_pong(self, session: WsSession, frame: str | bytes) -> None:
        if not self.ws_faults.pongs_dropped:
            await session.conn.send(frame)

    async def _pump(self, session: WsSession) -> None:
        try:
            while True:
                sent = 0
                if session.subs and not self.ws_faults.silent:
                    for frame in self.ws_frames(session):
                        if self.ws_faults._take_malformed():
                            frame = frame[: len(frame) // 2]
                        await session.conn.send(frame)
                        sent += 1
                    session.sent += sent
                if self.rate is not None:
                    await asyncio.sleep(1 / self.rate)
                else:
                    await asyncio.sleep(0 if sent else 0.01)  # firehose, but never a busy idle loop
        except ConnectionClosed:
            pass
        except Exception as exc:
            self.errors.append(exc)
            await session.conn.close(1011, "test server error")

    async def _watchdog(self, session: WsSession) -> None:
        while True:
            await asyncio.sleep(0.02)
            after = self.ws_faults.close_after
            if after is not None and time.monotonic() - session.opened >= after:
                await session.close(self.ws_faults.close_code, self.ws_faults.close_abort)
                return


def plain_error(status: int, retry_after: float | None = None) -> web.Response:
    """The bare status page a gateway or CDN in front of an API answers with."""
    headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
    return web.Response(status=status, text=HTTPStatus(status).phrase, headers=headers)

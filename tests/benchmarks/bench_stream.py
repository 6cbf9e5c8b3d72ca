"""Frames per second from a local websocket replay through the codec and the bus, against ccxt.pro.

Run: `python tests/benchmarks/bench_stream.py [--frames N] [--ccxt-frames M] [--repeats R]
[--min-rate FPS] [--min-ratio X]`.

A replay server (tests/benchmarks/replay_server.py) runs in its own process on
127.0.0.1 and sends pre-built Binance frames as fast as the socket takes them;
each frame's event time is `E = E0 + i`, so a client knows the last one when it
sees it. When the machine has two cores, this process is pinned to CPU 0 and the
server to CPU 1 (`os.sched_setaffinity`), so the client has one core to itself.

Ours, per run: a fresh connection through `stream_events(StreamSpec(url), BinanceCodec)`
(the app's websocket loop, its transport app/streams/transport.py and codec; compression
off, silence_after 30 s, the app's 20 s protocol pings), each event published to an `EventBus` with conflation off
(`price.updated` for a Ticker, `market.candle` for a CandleUpdate, as
`app.market.feed` does) and one sync subscriber counting. Two replays of N frames:
(a) 24hrTicker frames only (`/stream?streams=btcusdt@ticker`) and (b) two tickers to
one kline_1m (`/stream?streams=btcusdt@ticker/btcusdt@kline_1m`). The run stops after
the event carrying the last sequence has been published; the time is from the
first event out of `stream_events` to `bus.drain()` returning, and the subscriber
must have counted all N events.

ccxt.pro, per run: a fresh `ccxt.pro.binance` with its markets set from the recorded
exchangeInfo (no REST: `set_markets`, and its REST URLs point at a closed port),
`urls['api']['ws']['spot']` at the replay server; `await watch_ticker("BTC/USDT")` in
a loop on M raw 24hrTicker frames plus a tail (ccxt connects to `<ws>/ws/0`, sends
SUBSCRIBE, gets the ack, then the frames). ccxt parses every message in order and keeps
the newest ticker in `exchange.tickers`; watch_ticker returns the ticker of the message
that woke it, which can be frames behind. So the clock is read after the first
watch_ticker returns and after the one that returns the M-th frame's timestamp (or a
later one: the tail makes sure a waiting consumer is woken), each reading paired with
the newest parsed sequence, and the rate is the frames parsed between them over the
time. As installed (ccxt 4.5.64 on aiohttp 3.14) ccxt.pro stops receiving after ~2,200
frames of a burst; the benchmark corrects the one line of ccxt's byte accounting that
causes it (`_AccountedBuffer`; `--no-ccxt-fix` shows the stall).

Ours is timed over N - 1 frames (the clock starts once the first is through).
Each figure is the median of R runs, the runs of the three kinds
interleaved so that a noisy neighbour hits all of them alike. Beside the wall-clock
rate each run also reports frames per CPU second of this process (`time.process_time`
over the same span): on a shared machine that figure moves much less, since time spent
waiting for the CPU is left out. Exits with status 1 unless ours (ticker frames)
>= --min-rate and ours / ccxt.pro >= --min-ratio, both on ticker frames by the wall
clock. Every run is bounded by --run-timeout seconds; the server process
is killed at the end whatever happens.
Not collected by pytest: the file name does not start with `test_`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from app.bus import Event, EventBus  # noqa: E402
from app.domain import Ticker  # noqa: E402
from app.market.feed import TOPIC_CANDLE, TOPIC_PRICE  # noqa: E402
from app.streams.codecs.binance import BinanceCodec  # noqa: E402
from app.streams.connection import StreamSpec, StreamStats, stream_events  # noqa: E402
from app.venues.base import VenueUnavailable  # noqa: E402

REST_RESPONSES = ROOT.parent / "shared" / "fixtures" / "binance" / "rest-responses.json"
SYMBOL = "BTC/USDT"
CLIENT_CPU, SERVER_CPU = 0, 1


# ----------------------------------------------------------------------------- the server process


class Replay:
    """The replay server in its own process; `port` and `e0` come from its READY line."""

    def __init__(self, ours: int, ccxt_frames: int, pin: bool) -> None:
        cmd = [sys.executable, str(HERE / "replay_server.py"), "--ours", str(ours), "--ccxt", str(ccxt_frames), "--lifetime", "900"]
        if pin:
            cmd += ["--cpu", str(SERVER_CPU)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(f"the replay server did not start (said {line!r})")
        _, port, e0 = line.split()
        self.port, self.e0 = int(port), int(e0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ----------------------------------------------------------------------------- ours


async def run_ours(port: int, e0: int, n: int, channels: list[str], timeout: float) -> tuple[float, float]:
    """Frames/s of one replay through stream_events -> BinanceCodec -> EventBus -> one counting subscriber,
    by the wall clock and per CPU second of this process."""
    codec = BinanceCodec({"BTCUSDT": SYMBOL})
    spec = StreamSpec(url=f"ws://127.0.0.1:{port}" + codec.stream_path([SYMBOL], channels), silence_after=30.0, label="replay")
    bus = EventBus(conflate={TOPIC_PRICE: None})
    seen = 0

    def count(event: Event) -> None:
        nonlocal seen
        seen += 1

    bus.subscribe(TOPIC_PRICE, count)
    bus.subscribe(TOPIC_CANDLE, count)
    await bus.start()
    publish = bus.publish
    last_e = e0 + n - 1
    stats = StreamStats()
    events = stream_events(spec, codec, stats)
    started = cpu_started = 0.0
    try:
        async with asyncio.timeout(timeout):
            async for event in events:
                if not started:
                    started, cpu_started = time.perf_counter(), time.process_time()
                if event.__class__ is Ticker:
                    publish(TOPIC_PRICE, event)
                    if event.ts == last_e:
                        break
                else:
                    publish(TOPIC_CANDLE, event)
            await bus.drain()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
    finally:
        await events.aclose()  # closes the websocket, outside the timed part
        await bus.stop(drain=False)
    if seen != n or stats.frames != n or stats.malformed:
        raise RuntimeError(f"lost frames: {stats.frames} read, {seen} delivered of {n}, malformed {dict(stats.malformed)}")
    return (n - 1) / elapsed, (n - 1) / cpu


# ----------------------------------------------------------------------------- ccxt.pro


def recorded_markets() -> list[dict[str, Any]]:
    """Markets parsed by ccxt from the recorded exchangeInfo, without the network."""
    import ccxt.async_support as ccxt_async

    info = json.loads(REST_RESPONSES.read_text())["exchangeInfo"]
    parser = ccxt_async.binance({"options": {"crossMarginPairsData": [], "isolatedMarginPairsData": []}})
    markets = parser.parse_markets(info["symbols"])  # what fetch_markets does with the exchangeInfo body
    return markets


class _AccountedBuffer:
    """aiohttp's message deque as ccxt's fast drain sees it, with each message's queue overhead counted.

    ccxt.pro's `Client.receive_loop` pops queued messages straight off aiohttp's
    `WebSocketDataQueue._buffer` and adds their sizes to the next message's, so that the
    queue's byte count comes down when that one is read. aiohttp 3.14 counts each message as
    `size + MSG_SIZE_OVERHEAD` (128 bytes), and ccxt 4.5.64 gives back only `size`: every
    message drained that way leaks 128 bytes of the count, and after ~2,000 of them the
    count stays above the low-water mark, parsing stays stalled, and the connection
    receives nothing more, for good (measured here: it stops after ~2,200 frames of a burst).
    This wrapper returns `size + overhead` from `popleft`, which is the one-line fix, so
    ccxt runs its own fast path with correct accounting. Cost: one Python call per drained
    message.
    """

    __slots__ = ("_deque", "_overhead")

    def __init__(self, deque: Any, overhead: int) -> None:
        self._deque = deque
        self._overhead = overhead

    def __len__(self) -> int:
        return len(self._deque)

    def popleft(self) -> tuple[Any, int]:
        message, size = self._deque.popleft()
        return message, size + self._overhead

    def __getitem__(self, i: int) -> Any:
        return self._deque[i]

    def __setitem__(self, i: int, value: Any) -> None:
        self._deque[i] = value


def fix_ccxt_buffer_accounting() -> bool:
    """Install _AccountedBuffer if this aiohttp counts a per-message overhead; True if installed."""
    try:
        from aiohttp._websocket.reader_py import MSG_SIZE_OVERHEAD
    except ImportError:
        return False
    from ccxt.async_support.base.ws.client import Client

    original = Client.buffer
    if getattr(original.fget, "_bench_fixed", False):
        return True

    def buffer(self: Any) -> Any:
        raw = original.fget(self)
        return None if raw is None else _AccountedBuffer(raw, MSG_SIZE_OVERHEAD)

    fixed = property(buffer)
    fixed.fget._bench_fixed = True  # type: ignore[attr-defined]
    Client.buffer = fixed  # type: ignore[method-assign]
    return True


async def run_ccxt(port: int, e0: int, n: int, markets: list[dict[str, Any]], timeout: float) -> tuple[float, float]:
    """Frames/s of ccxt.pro's watch_ticker on raw 24hrTicker frames, by the wall clock and per CPU second.

    ccxt parses every message as it arrives and keeps the newest ticker in `exchange.tickers`;
    `watch_ticker` hands the consumer the ticker of the message that resolved its future, which
    can be some frames behind. So the clock's two readings are paired with the sequence of the
    newest parsed ticker (frames processed by then), not with the returned one, and the replay
    goes on past the n-th frame with a tail, so a consumer that is waiting when frame n is parsed
    is still woken.
    """
    import ccxt.pro as ccxtpro

    exchange = ccxtpro.binance({
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
        },
    })
    dead = "http://127.0.0.1:9/api/v3"  # nothing listens there: any REST call would fail loudly
    exchange.urls["api"]["public"] = exchange.urls["api"]["private"] = dead
    exchange.urls["api"]["ws"]["spot"] = f"ws://127.0.0.1:{port}/ws"
    exchange.set_markets(markets)
    last_e = e0 + n - 1
    newest = exchange.tickers  # ccxt's cache, updated by every parsed message
    try:
        async with asyncio.timeout(timeout):
            ticker = await exchange.watch_ticker(SYMBOL)
            started, cpu_started = time.perf_counter(), time.process_time()
            first = newest[SYMBOL]["timestamp"]
            while ticker["timestamp"] < last_e:
                ticker = await exchange.watch_ticker(SYMBOL)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            last = newest[SYMBOL]["timestamp"]
    except TimeoutError:
        parsed = newest[SYMBOL]["timestamp"] - e0 + 1 if SYMBOL in newest else 0
        raise RuntimeError(f"ccxt.pro did not finish within {timeout:g} s: it had parsed {parsed:,} of {n:,} frames") from None
    finally:
        await exchange.close()
    if ticker["symbol"] != SYMBOL or ticker["last"] is None:
        raise RuntimeError(f"ccxt.pro returned an odd ticker: {ticker}")
    return (last - first) / elapsed, (last - first) / cpu


# ----------------------------------------------------------------------------- main


def pin_client() -> bool:
    if not hasattr(os, "sched_setaffinity"):
        return False
    cpus = os.sched_getaffinity(0)
    if not {CLIENT_CPU, SERVER_CPU} <= cpus:
        return False
    os.sched_setaffinity(0, {CLIENT_CPU})
    return True


def versions() -> str:
    import platform

    import aiohttp
    import ccxt
    import msgspec
    import websockets

    orjson = "with orjson" if _has("orjson") else "no orjson, so ccxt parses with the standard json module"
    return (
        f"Python {platform.python_version()}, websockets {websockets.__version__} Sans-I/O + msgspec {msgspec.__version__} (ours), "
        f"ccxt {ccxt.__version__} on aiohttp {aiohttp.__version__} ({orjson}), {platform.system()} {os.cpu_count()} cores"
    )


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000, help="frames per run of ours")
    parser.add_argument("--ccxt-frames", type=int, default=50_000, help="frames per run of ccxt.pro (rates are compared, not totals)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-rate", type=float, default=50_000.0)
    parser.add_argument("--min-ratio", type=float, default=5.0)
    parser.add_argument("--run-timeout", type=float, default=60.0)
    parser.add_argument("--no-pin", action="store_true", help="do not pin the client and server to CPUs 0 and 1")
    parser.add_argument("--no-ccxt-fix", action="store_true", help="run ccxt.pro as installed (it stalls: see _AccountedBuffer)")
    args = parser.parse_args()

    pinnable = not args.no_pin and hasattr(os, "sched_setaffinity") and {CLIENT_CPU, SERVER_CPU} <= os.sched_getaffinity(0)
    replay = Replay(args.frames, args.ccxt_frames, pin=pinnable)  # started before pinning ourselves
    try:
        pinned = pinnable and pin_client()
        print(versions())
        print(f"client pinned to CPU {CLIENT_CPU}, server to CPU {SERVER_CPU}" if pinned else "not pinned: fewer than 2 CPUs or --no-pin")
        markets = recorded_markets()
        if not args.no_ccxt_fix and fix_ccxt_buffer_accounting():
            print("ccxt.pro: its receive_loop's byte count is corrected for aiohttp's MSG_SIZE_OVERHEAD (see _AccountedBuffer)")
        rates: dict[str, list[float]] = {"ticker": [], "mix": [], "ccxt": []}
        cpu_rates: dict[str, list[float]] = {"ticker": [], "mix": [], "ccxt": []}
        for r in range(args.repeats):
            try:
                a, a_cpu = asyncio.run(run_ours(replay.port, replay.e0, args.frames, ["ticker"], args.run_timeout))
                b, b_cpu = asyncio.run(run_ours(replay.port, replay.e0, args.frames, ["ticker", "kline"], args.run_timeout))
                c, c_cpu = asyncio.run(run_ccxt(replay.port, replay.e0, args.ccxt_frames, markets, args.run_timeout))
            except (RuntimeError, TimeoutError, VenueUnavailable) as exc:
                print(f"FAIL in run {r + 1}: {type(exc).__name__}: {exc}")
                return 1
            for key, wall, cpu in (("ticker", a, a_cpu), ("mix", b, b_cpu), ("ccxt", c, c_cpu)):
                rates[key].append(wall)
                cpu_rates[key].append(cpu)
            print(
                f"run {r + 1}: ours ticker {a:,.0f} frames/s, ours ticker+kline {b:,.0f} frames/s, "
                f"ccxt.pro watch_ticker {c:,.0f} frames/s: {a / c:.1f}x "
                f"(per client CPU second: {a_cpu:,.0f}, {b_cpu:,.0f}, {c_cpu:,.0f}: {a_cpu / c_cpu:.1f}x)"
            )
    finally:
        replay.close()

    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu_rates.items()}
    ratio = med["ticker"] / med["ccxt"]

    def line(label: str, key: str, n: int) -> str:
        v = rates[key]
        return (
            f"{label}: median {med[key]:,.0f} frames/s over {len(v)} runs of {n:,} (min {min(v):,.0f}, max {max(v):,.0f}); "
            f"{cpu_med[key]:,.0f} per client CPU second ({1e6 / cpu_med[key]:.1f} us a frame)"
        )

    print(line("ours, 24hrTicker frames -> codec -> bus -> subscriber", "ticker", args.frames))
    print(line("ours, 2 tickers : 1 kline_1m", "mix", args.frames))
    print(line("ccxt.pro watch_ticker, 24hrTicker frames", "ccxt", args.ccxt_frames))
    # The CPU-time ratio is what a noisy neighbour moves least: it leaves out time spent off the CPU.
    print(f"ratio ours / ccxt.pro (ticker frames): {ratio:.1f}x by the wall clock, {cpu_med['ticker'] / cpu_med['ccxt']:.1f}x per CPU second")
    ok = med["ticker"] >= args.min_rate and ratio >= args.min_ratio
    print("PASS" if ok else f"FAIL: target >= {args.min_rate:,.0f} frames/s and >= {args.min_ratio:g}x ccxt.pro")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

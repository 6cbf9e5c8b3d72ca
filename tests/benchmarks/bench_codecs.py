"""Decode rate of the Binance frame codec: frames per second on one core, codec only.

Run: `python tests/benchmarks/bench_codecs.py [--frames N] [--repeats R] [--min-rate FPS]`.

Decodes the recorded combined-stream frames of ../shared/fixtures/binance/
stream-capture-2021-10-12.log in a loop: the bookTicker frames ("ticker"), the
kline_1m and the aggTrade frames, each as its own figure; plus, for information, a
24hrTicker frame shaped as Binance documents it (the capture has none, but it is the
channel `subscribe_messages` uses for tickers). Frames are str, as the stream
transport hands text frames over, and every event is built in full (msgspec's JSON
decoder, Decimal from the wire strings, frozen domain objects). 24hrTicker, kline,
aggTrade and trade frames take the codec's typed decoding; bookTicker frames fail it
and take the general way (the parsed dict), so they pay for both.

Before timing, every frame is also decoded the general way (`_decode_any`) and the
events compared: the typed decoding must give exactly the same ones.

The full pipeline (socket -> codec -> bus -> consumers) targets 50,000 frames/s
on one core. Two gates: the codec alone must reach that rate (--min-rate), and
it must cost at most --max-ratio times a bare (standard library) json.loads of the
same frames, measured in the same run. The ratio is the codec's own overhead and holds still
on a busy machine, where the absolute rate swings by half. Exits with status 1
if a gated median misses either.
Not collected by pytest: the file name does not start with `test_`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.streams.codecs.binance import BinanceCodec  # noqa: E402

CAPTURE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "binance" / "stream-capture-2021-10-12.log"
SYMBOLS = {"NKNUSDT": "NKN/USDT", "BLZETH": "BLZ/ETH", "LRCBTC": "LRC/BTC", "RUNEEUR": "RUNE/EUR"}

TICKER_24H = json.dumps({"stream": "nknusdt@ticker", "data": {
    "e": "24hrTicker", "E": 1633998523963, "s": "NKNUSDT", "p": "0.00420000", "P": "1.205", "w": "0.35012345",
    "x": "0.34860000", "c": "0.35280000", "Q": "58.00000000", "b": "0.35210000", "B": "672.00000000",
    "a": "0.35260000", "A": "3199.00000000", "o": "0.34860000", "h": "0.36500000", "l": "0.34010000",
    "v": "18734521.00000000", "q": "6559012.12345600", "O": 1633912123963, "C": 1633998523963,
    "F": 19001234, "L": 19862790, "n": 861557}}, separators=(",", ":"))


def capture_frames(stream_suffix: str) -> list[str]:
    frames = []
    for line in CAPTURE.read_text().splitlines():
        head, sep, payload = line.partition(": ")
        if sep and json.loads(payload)["stream"].endswith(stream_suffix):
            frames.append(payload)
    return frames


def one_run(codec: BinanceCodec, frames: list[str], n: int) -> tuple[float, float, int]:
    """(codec frames/s, bare json.loads frames/s, events produced) over n frames cycling through `frames`.

    The json.loads pass over the same frames is the floor no JSON codec can beat; measured
    in the same run, their ratio holds still while a shared machine's absolute figures move.
    """
    decode = codec.decode
    loads = json.loads
    batch = (frames * (n // len(frames) + 1))[:n]
    started = time.perf_counter()
    for frame in batch:
        loads(frame)
    json_elapsed = time.perf_counter() - started
    events = 0
    started = time.perf_counter()
    for frame in batch:
        events += len(decode(frame, 1633998512000))
    elapsed = time.perf_counter() - started
    return n / elapsed, n / json_elapsed, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-rate", type=float, default=50_000.0)
    parser.add_argument("--max-ratio", type=float, default=3.0)
    args = parser.parse_args()
    n: int = args.frames
    codec = BinanceCodec(SYMBOLS)

    scenarios = [
        # (label, frames, gated)
        ("bookTicker frames from the capture (ticker)", capture_frames("@bookTicker"), True),
        ("kline_1m frames from the capture (kline)", capture_frames("@kline_1m"), True),
        ("aggTrade frames from the capture (trades)", capture_frames("@aggTrade"), True),
        ("24hrTicker frame as documented (ticker channel we subscribe)", [TICKER_24H], False),
    ]
    failed = False
    for label, frames, gated in scenarios:
        if not frames:
            print(f"FAIL {label}: no frames found in {CAPTURE}")
            failed = True
            continue
        differ = [f for f in frames if codec.decode(f, 1633998512000) != codec._decode_any(f, 1633998512000)]
        if differ:
            print(f"FAIL {label}: the typed decoding differs from the general way on {len(differ)} frames, e.g. {differ[0][:120]}")
            failed = True
        rates: list[float] = []
        ratios: list[float] = []
        for _ in range(args.repeats):
            rate, json_rate, events = one_run(codec, frames, n)
            if events != n:  # each of these frames carries exactly one event
                print(f"FAIL {label}: {events} events from {n} frames")
                failed = True
            rates.append(rate)
            ratios.append(json_rate / rate)
        median = statistics.median(rates)
        ratio = statistics.median(ratios)
        fast_enough = median >= args.min_rate and ratio <= args.max_ratio
        verdict = ("ok" if fast_enough else "TOO SLOW") if gated else "info"
        failed = failed or (gated and not fast_enough)
        print(
            f"{label}: median {median:,.0f} frames/s over {args.repeats} runs of {n:,} "
            f"({len(frames)} distinct; min {min(rates):,.0f}, max {max(rates):,.0f}; "
            f"{ratio:.1f}x the time of json.loads alone) [{verdict}]"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Replaying a recorded candle file through the simulated market.

The recording is read from `../shared/fixtures/` in place (never copied); broken
files are written to `tmp_path`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest

from app.domain import Candle, OrderRequest, OrderStatus, OrderType, Side, Ticker, Trade
from app.venues.base import UnknownSymbol, VenueError
from app.venues.sim import SimConfig, SimVenue
from app.venues.sim_replay import ReplayFileError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
CANDLES_1M = FIXTURES / "candles" / "UNITTEST_BTC-1m.json"
SYMBOL = "ETH/BTC"
MIN = 60_000
WALL0 = 1_750_000_000_000  # the wall clock has nothing to do with the recording's time


class FakeClock:
    def __init__(self, ms: int = WALL0) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000.0


@cache
def rows() -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(r) for r in json.loads(CANDLES_1M.read_text()))


def dec(x: float) -> Decimal:
    """A recorded number as the Decimal it was written as."""
    return Decimal(repr(x))


def recorded(i: int) -> Candle:
    ts, o, h, lo, c, v = rows()[i]
    return Candle(int(ts), dec(o), dec(h), dec(lo), dec(c), dec(v))


def make(speed: float = 60.0, days: int = 1, path: Path = CANDLES_1M, **kw) -> tuple[SimVenue, FakeClock]:
    clock = FakeClock()
    cfg = SimConfig(history_days=days, replay_file=path, replay_symbol=SYMBOL, replay_speed=speed, **kw)
    return SimVenue(cfg, clock=clock), clock


def play(venue: SimVenue, clock: FakeClock, wall_ms: int, every_ms: int = 250) -> list:
    events: list = []
    end = clock.ms + wall_ms
    while clock.ms < end:
        clock.ms = min(end, clock.ms + every_ms)
        events.extend(venue.step(clock.ms))
    return events


async def test_only_the_replayed_symbol_is_listed() -> None:
    venue, _ = make()
    markets = await venue.load_markets()
    assert list(markets) == [SYMBOL]
    m = markets[SYMBOL]
    assert (m.base, m.quote) == ("ETH", "BTC")
    # The market's tick shows every recorded price exactly.
    for r in rows()[:2000]:
        for p in r[1:5]:
            assert dec(p) % m.price_tick == 0
    with pytest.raises(UnknownSymbol) as err:
        await venue.fetch_ohlcv("BTC/USDT", "1m")
    assert SYMBOL in str(err.value)


@pytest.mark.parametrize("days", [1, 2])
async def test_history_is_the_first_part_of_the_file(days: int) -> None:
    venue, _ = make(days=days)
    history = await venue.fetch_ohlcv(SYMBOL, "1m")
    assert len(history) == days * 1440
    assert history == [recorded(i) for i in range(days * 1440)]
    ticker = await venue.fetch_ticker(SYMBOL)
    assert ticker.last == recorded(days * 1440 - 1).close


async def test_a_history_longer_than_the_file_keeps_half_of_it_to_play() -> None:
    venue, clock = make(days=30)
    history = await venue.fetch_ohlcv(SYMBOL, "1m")
    assert 0 < len(history) < len(rows())
    events = play(venue, clock, 2_000)
    assert any(isinstance(e, Trade) for e in events)


async def test_playing_rebuilds_the_recorded_candles_exactly() -> None:
    venue, clock = make(speed=600.0)
    await venue.load_markets()
    events = play(venue, clock, 20_000)  # 20 wall seconds at 600x: 200 market minutes
    trades = [e for e in events if isinstance(e, Trade)]
    assert trades and all(t.symbol == SYMBOL for t in trades)
    candles = await venue.fetch_ohlcv(SYMBOL, "1m")
    played = candles[1440:]
    assert len(played) > 100
    # Every candle but the live one has been played out entirely.
    for i, c in enumerate(played[:-1]):
        want = recorded(1440 + i)
        assert c.ts == want.ts
        assert (c.open, c.high, c.low, c.close) == (want.open, want.high, want.low, want.close), (i, c, want)
        assert c.volume == want.volume, (i, c.volume, want.volume)  # numeric: 1E-8 == 0.00000001
    # The prints themselves: per candle, first = open, last = close, extremes = high/low, amounts sum to the volume.
    by_bucket: dict[int, list[Trade]] = {}
    for t in trades:
        by_bucket.setdefault(t.ts - t.ts % MIN, []).append(t)
    for i, c in enumerate(played[:-1]):
        got = by_bucket[c.ts]
        want = recorded(1440 + i)
        assert got[0].price == want.open and got[-1].price == want.close
        assert max(t.price for t in got) == want.high and min(t.price for t in got) == want.low
        assert sum((t.amount for t in got), Decimal(0)) == want.volume, (i, [t.amount for t in got], want.volume)
        assert all(t.amount >= 0 for t in got)
    ts = [t.ts for t in trades]
    assert ts == sorted(ts)


async def test_replay_speed_sets_how_much_market_time_passes() -> None:
    for speed in (30.0, 300.0):
        venue, clock = make(speed=speed)
        await venue.load_markets()
        start = recorded(1440).ts
        wall = 10_000
        trades = [e for e in play(venue, clock, wall) if isinstance(e, Trade)]
        reached = start + wall * speed
        assert all(t.ts <= reached for t in trades)
        # The recording has gaps of up to a few minutes, no more.
        assert trades[-1].ts > reached - 10 * MIN, (speed, trades[-1].ts, reached)


async def test_replayed_tickers_are_consistent() -> None:
    venue, clock = make(speed=600.0)
    m = (await venue.load_markets())[SYMBOL]
    events = play(venue, clock, 5_000)
    tickers = [e for e in events if isinstance(e, Ticker)]
    assert tickers
    for t in tickers:
        assert t.bid is not None and t.ask is not None and t.high_24h is not None and t.low_24h is not None
        assert t.bid < t.ask and t.bid <= t.last <= t.ask
        assert t.low_24h <= t.last <= t.high_24h
        for p in (t.last, t.bid, t.ask):
            assert p % m.price_tick == 0


async def test_orders_work_on_the_replayed_market() -> None:
    venue, clock = make(speed=600.0)
    await venue.load_markets()
    play(venue, clock, 1_000)
    b0 = await venue.fetch_balance()
    o = await venue.create_order(OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, Decimal("10"), "r-1"))
    assert o.status is OrderStatus.FILLED and o.filled == 10
    b1 = await venue.fetch_balance()
    assert b1["BTC"].free == b0["BTC"].free - sum(f.price * f.amount for f in o.fills) - o.fee
    assert b1["ETH"].free == b0["ETH"].free + 10


async def test_a_finished_replay_goes_quiet() -> None:
    venue, clock = make(speed=100_000.0)
    await venue.load_markets()
    play(venue, clock, 20_000, every_ms=1_000)
    assert play(venue, clock, 5_000) == []
    candles = await venue.fetch_ohlcv(SYMBOL, "1m")
    assert candles[-1] == recorded(len(rows()) - 1)


# -- broken files --------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "candles.json"
    path.write_text(text, encoding="utf-8")
    return path


def _good_rows(n: int = 10) -> list[list[float]]:
    t = 1_700_000_040_000 - 1_700_000_040_000 % MIN
    return [[t + i * MIN, 1.0 + i, 1.5 + i, 0.5 + i, 1.2 + i, 3.0] for i in range(n)]


BROKEN = {
    "not-json": ("[[1, 2, 3", ["JSON"]),
    "not-a-list": (json.dumps({"candles": []}), ["list"]),
    "one-row": (json.dumps(_good_rows(1)), ["at least two"]),
    "short-row": (json.dumps(_good_rows(3)[:2] + [[1_700_000_160_000, 1, 2, 0.5, 1]]), ["Row 3"]),
    "text-in-row": (json.dumps(_good_rows(3)[:1] + [[1_700_000_100_000, "1", 2, 0.5, 1, 3]] + _good_rows(3)[2:]), ["Row 2"]),
    "nan": ("[[1700000040000, NaN, 2, 0.5, 1, 3], [1700000100000, 1, 2, 0.5, 1, 3]]", ["Row 1"]),
    "unsorted": (json.dumps(list(reversed(_good_rows(4)))), ["order"]),
    "duplicate": (json.dumps(_good_rows(3) + _good_rows(3)[-1:]), ["order"]),
    "seconds-not-ms": (json.dumps([[r[0] // 1000, *r[1:]] for r in _good_rows(4)]), ["minute"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_a_broken_file_is_refused_naming_the_file_and_the_problem(tmp_path: Path, case: str) -> None:
    text, words = BROKEN[case]
    path = _write(tmp_path, text)
    venue, _ = make(path=path)
    with pytest.raises(VenueError) as err:
        await venue.load_markets()
    message = str(err.value)
    assert str(path) in message, message
    for w in words:
        assert w.lower() in message.lower(), (w, message)
    assert "Traceback" not in message


async def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    venue, _ = make(path=path)
    with pytest.raises(VenueError) as err:
        await venue.fetch_ohlcv(SYMBOL, "1m")
    assert str(path) in str(err.value) and "does not exist" in str(err.value)


def test_stepping_a_broken_replay_raises_the_file_error(tmp_path: Path) -> None:
    venue, clock = make(path=_write(tmp_path, "not json"))
    with pytest.raises(ReplayFileError):
        venue.step(clock.ms + 1_000)


async def test_a_small_valid_file_replays(tmp_path: Path) -> None:
    data = _good_rows(6)
    venue, clock = make(path=_write(tmp_path, json.dumps(data)), speed=60.0)
    history = await venue.fetch_ohlcv(SYMBOL, "1m")
    assert [c.ts for c in history] == [r[0] for r in data[:3]]
    play(venue, clock, 10_000)
    candles = await venue.fetch_ohlcv(SYMBOL, "1m")
    assert [(c.ts, float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume)) for c in candles] == [
        tuple(r) for r in data
    ]

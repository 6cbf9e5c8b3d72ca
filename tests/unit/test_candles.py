"""Candle ring buffers, aggregation and the store, against real recorded candles and trades."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app.domain import Candle, Side, Ticker, Trade
from app.market.candles import CandleArrays, CandleSeries, CandleStore, aggregate

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
CANDLES_1M = FIXTURES / "candles" / "UNITTEST_BTC-1m.json"
TRADES = FIXTURES / "trades" / "XRP_ETH-trades.json.gz"

T0 = 1_699_920_000_000  # 2023-11-14 00:00:00 UTC: a 1m, 1h and 1d boundary alike
MIN = 60_000
HOUR = 3_600_000


@cache
def fixture_rows() -> tuple[tuple[int, float, float, float, float, float], ...]:
    return tuple(tuple(r) for r in json.loads(CANDLES_1M.read_text()))


@cache
def fixture_trades() -> tuple[tuple[int, float, float], ...]:
    """(ms, price, amount) of each recorded trade, in recorded order."""
    with gzip.open(TRADES, "rt") as f:
        return tuple((int(r[0]), r[4], r[5]) for r in json.load(f))


def rows_of(arrays: CandleArrays) -> list[tuple[int, float, float, float, float, float]]:
    return [
        (int(t), float(o), float(h), float(lo), float(c), float(v))
        for t, o, h, lo, c, v in zip(
            arrays.ts, arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume, strict=True
        )
    ]


def assert_same_candles(got: CandleArrays, want: list[tuple] | CandleArrays) -> None:
    """OHLC and ts exactly (they are picked, never computed); volume to rounding (it is summed)."""
    want_rows = rows_of(want) if isinstance(want, CandleArrays) else [tuple(r) for r in want]
    got_rows = rows_of(got)
    assert len(got_rows) == len(want_rows)
    assert [r[:5] for r in got_rows] == [tuple(r[:5]) for r in want_rows]
    assert [r[5] for r in got_rows] == pytest.approx([r[5] for r in want_rows], rel=1e-12, abs=1e-12)


def reference_aggregate(rows, seconds: int) -> list[list]:
    """The obvious per-row Python computation the vectorised `aggregate` must agree with."""
    step = seconds * 1000
    out: dict[int, list] = {}
    for ts, o, h, lo, c, v in rows:
        b = ts // step * step
        r = out.get(b)
        if r is None:
            out[b] = [b, o, h, lo, c, v]
        else:
            r[2] = max(r[2], h)
            r[3] = min(r[3], lo)
            r[4] = c
            r[5] += v
    return list(out.values())


def reference_candles_from_trades(trades, seconds: int) -> list[list]:
    return reference_aggregate([(ts, p, p, p, p, a) for ts, p, a in trades], seconds)


def candle(ts: int, o: float, h: float, lo: float, c: float, v: float) -> Candle:
    return Candle(ts, Decimal(str(o)), Decimal(str(h)), Decimal(str(lo)), Decimal(str(c)), Decimal(str(v)))


def trade_event(symbol: str, ts: int, price: float, amount: float) -> SimpleNamespace:
    """What the bus hands a handler: an event whose payload is a domain Trade."""
    return SimpleNamespace(
        payload=Trade(symbol=symbol, ts=ts, price=Decimal(repr(price)), amount=Decimal(repr(amount)), side=Side.BUY)
    )


# ---- rollover and the live candle


def test_trade_on_the_boundary_ms_opens_a_new_candle_and_the_ms_before_does_not() -> None:
    s = CandleSeries("1m", 10)
    assert s.apply_trade(T0 + 5, 100.0, 1.0) is True  # the first candle
    assert s.apply_trade(T0 + MIN - 1, 101.0, 2.0) is False  # last ms of the same minute
    assert len(s) == 1
    assert s.apply_trade(T0 + MIN, 102.0, 3.0) is True  # exactly on the boundary
    assert len(s) == 2
    assert rows_of(s.arrays()) == [
        (T0, 100.0, 101.0, 100.0, 101.0, 3.0),
        (T0 + MIN, 102.0, 102.0, 102.0, 102.0, 3.0),
    ]
    assert s.last() == (T0 + MIN, 102.0, 102.0, 102.0, 102.0, 3.0)


@pytest.mark.parametrize(
    ("timeframe", "last_ms_of_bucket", "boundary"),
    [
        # 4h buckets open at 00/04/08.. UTC and 1d at 00:00 UTC, as exchange klines do.
        ("4h", datetime(2023, 11, 14, 7, 59, 59, 999_000, UTC), datetime(2023, 11, 14, 8, tzinfo=UTC)),
        ("1d", datetime(2023, 11, 14, 23, 59, 59, 999_000, UTC), datetime(2023, 11, 15, tzinfo=UTC)),
    ],
)
def test_higher_timeframes_roll_on_utc_boundaries(
    timeframe: str, last_ms_of_bucket: datetime, boundary: datetime
) -> None:
    s = CandleSeries(timeframe, 10)
    before = int(last_ms_of_bucket.timestamp() * 1000)
    at = int(boundary.timestamp() * 1000)
    assert s.apply_trade(before, 1.0, 1.0) is True
    assert s.apply_trade(at, 2.0, 1.0) is True
    assert s.arrays().ts.tolist() == [at - s.seconds * 1000, at]


def test_live_candle_tracks_high_low_close_and_volume() -> None:
    s = CandleSeries("1m", 10)
    prices = [100.0, 99.0, 104.0, 95.0, 103.0, 97.5]
    amounts = [0.5, 1.25, 2.0, 0.25, 1.0, 3.0]
    for k, (p, a) in enumerate(zip(prices, amounts, strict=True)):
        s.apply_trade(T0 + 1000 * k, p, a)
    assert len(s) == 1
    assert s.last() == (T0, 100.0, 104.0, 95.0, 97.5, sum(amounts))


def test_buckets_without_trades_are_not_invented() -> None:
    s = CandleSeries("1m", 10)
    s.apply_trade(T0 + 10, 1.0, 1.0)
    s.apply_trade(T0 + 5 * MIN + 10, 2.0, 1.0)
    assert s.arrays().ts.tolist() == [T0, T0 + 5 * MIN]


def test_unknown_timeframe_is_refused_with_a_sentence() -> None:
    with pytest.raises(ValueError, match="not a chart timeframe"):
        CandleSeries("7m", 10)


# ---- capacity and wrap-around


def test_eviction_keeps_the_newest_in_chronological_order_after_wrapping() -> None:
    s = CandleSeries("1m", 5)
    for k in range(13):  # wraps the 5 slots twice and a bit
        s.apply_trade(T0 + k * MIN, float(k), 1.0)
    a = s.arrays()
    assert len(s) == len(a) == 5 == s.capacity
    assert a.ts.tolist() == [T0 + k * MIN for k in range(8, 13)]
    assert a.open.tolist() == [8.0, 9.0, 10.0, 11.0, 12.0]
    assert s.last() == (T0 + 12 * MIN, 12.0, 12.0, 12.0, 12.0, 1.0)
    # The live candle still updates in its (wrapped) slot.
    s.apply_trade(T0 + 12 * MIN + 1, 20.0, 1.0)
    assert s.arrays().high.tolist() == [8.0, 9.0, 10.0, 11.0, 20.0]


def test_load_keeps_the_newest_capacity_and_rolls_on_from_there() -> None:
    rows = fixture_rows()
    s = CandleSeries("1m", 1000)
    s.load_arrays(CandleArrays.from_rows(rows))
    assert_same_candles(s.arrays(), list(rows[-1000:]))
    last_ts = rows[-1][0]
    for k in range(1, 4):
        assert s.apply_trade(last_ts + k * MIN, 0.5, 2.0) is True
    assert_same_candles(
        s.arrays(), list(rows[-997:]) + [(last_ts + k * MIN, 0.5, 0.5, 0.5, 0.5, 2.0) for k in range(1, 4)]
    )


def test_arrays_is_a_snapshot_not_a_view() -> None:
    s = CandleSeries("1m", 4)
    s.apply_trade(T0, 1.0, 1.0)
    snap = s.arrays()
    s.apply_trade(T0 + 1, 5.0, 1.0)
    s.apply_trade(T0 + MIN, 6.0, 1.0)
    assert rows_of(snap) == [(T0, 1.0, 1.0, 1.0, 1.0, 1.0)]


def test_load_sorts_and_dedupes_overlapping_pages_and_refuses_other_timeframes() -> None:
    s = CandleSeries("1m", 10)
    # Two REST pages overlapping at T0+MIN, the second page first; the later row wins.
    page2 = [candle(T0 + MIN, 2, 2, 2, 2, 9), candle(T0 + 2 * MIN, 3, 3, 3, 3, 1)]
    page1 = [candle(T0, 1, 1, 1, 1, 1), candle(T0 + MIN, 2, 2, 2, 2, 1)]
    s.load(page2 + page1)
    assert rows_of(s.arrays()) == [
        (T0, 1.0, 1.0, 1.0, 1.0, 1.0),
        (T0 + MIN, 2.0, 2.0, 2.0, 2.0, 1.0),
        (T0 + 2 * MIN, 3.0, 3.0, 3.0, 3.0, 1.0),
    ]
    with pytest.raises(ValueError, match="not 1h candles"):
        CandleSeries("1h", 10).load(page1)


# ---- aggregation


@pytest.mark.parametrize("timeframe", ["5m", "15m", "1h", "4h", "1d"])
def test_aggregating_the_recorded_1m_candles_matches_a_plain_python_reference(timeframe: str) -> None:
    rows = fixture_rows()
    got = aggregate(CandleArrays.from_rows(rows), timeframe)
    seconds = {"5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}[timeframe]
    assert_same_candles(got, reference_aggregate(rows, seconds))
    assert got.ts.dtype == np.int64 and got.volume.dtype == np.float64


def test_daily_and_4h_buckets_open_at_utc_boundaries() -> None:
    arrays = CandleArrays.from_rows(fixture_rows())
    days = aggregate(arrays, "1d")
    opens = [datetime.fromtimestamp(t / 1000, UTC) for t in days.ts.tolist()]
    assert all((d.hour, d.minute, d.second) == (0, 0, 0) for d in opens)
    # One daily candle per distinct UTC date in the recorded data.
    dates = {datetime.fromtimestamp(r[0] / 1000, UTC).date() for r in fixture_rows()}
    assert [d.date() for d in opens] == sorted(dates)
    four = [datetime.fromtimestamp(t / 1000, UTC) for t in aggregate(arrays, "4h").ts.tolist()]
    assert all(d.hour % 4 == 0 and d.minute == 0 for d in four)


def test_aggregate_of_nothing_is_empty() -> None:
    assert len(aggregate(CandleArrays.empty(), "1h")) == 0


# ---- live trades across timeframes


def test_replayed_real_trades_keep_1m_5m_and_1h_consistent() -> None:
    trades = fixture_trades()
    store = CandleStore()
    store.load_history("XRP/ETH", "1m", [])
    store.ensure("XRP/ETH", "5m")
    store.ensure("XRP/ETH", "1h")
    for ts, price, amount in trades:
        store.on_trade(trade_event("XRP/ETH", ts, price, amount))
    one_min = store.series("XRP/ETH", "1m")
    assert one_min is not None
    # Each series equals candles computed straight from the trades...
    assert_same_candles(one_min.arrays(), reference_candles_from_trades(trades, 60))
    hour = store.series("XRP/ETH", "1h")
    assert hour is not None
    assert_same_candles(hour.arrays(), reference_candles_from_trades(trades, 3600))
    # ...and the coarse series equal the aggregate of the fine one.
    for tf in ("5m", "1h"):
        s = store.series("XRP/ETH", tf)
        assert s is not None
        assert_same_candles(s.arrays(), aggregate(one_min.arrays(), tf))
    assert float(one_min.arrays().volume.sum()) == pytest.approx(sum(a for _, _, a in trades), rel=1e-12)


def test_trades_after_recorded_history_keep_1m_and_1h_consistent_including_late_prints() -> None:
    rows = fixture_rows()
    store = CandleStore()
    store.load_history("BTC/USDT", "1m", CandleArrays.from_rows(rows))
    hour = store.ensure("BTC/USDT", "1h")
    one_min = store.series("BTC/USDT", "1m")
    assert hour is not None and one_min is not None
    last_ts = rows[-1][0]
    rng = np.random.default_rng(7)
    price = rows[-1][4]
    # Three hours of trades every 7 s, crossing hour boundaries, with prices outside
    # the recorded highs and lows so they must move the coarser candle too.
    for ts in range(last_ts + 1_000, last_ts + 3 * HOUR, 7_000):
        price *= 1.0 + float(rng.normal(0, 0.002))
        store.apply_trade("BTC/USDT", ts, price, float(rng.uniform(0.01, 2.0)))
    # Late prints into recorded minutes that 1m holds, some in closed hours.
    for k in (5, 61, 600):
        ts = rows[-k][0] + 30_000
        store.apply_trade("BTC/USDT", ts, price * 3, 1.5)
        store.apply_trade("BTC/USDT", ts, price / 3, 1.5)
    assert_same_candles(hour.arrays(), aggregate(one_min.arrays(), "1h"))
    assert len(hour) > len(reference_aggregate(rows, 3600))  # the live hours were really added
    late_hour = rows[-600][0] // HOUR * HOUR
    h = hour.arrays()
    assert float(h.high[h.ts == late_hour][0]) == price * 3  # the late prints really landed


# ---- late trades


def _three_candles() -> CandleSeries:
    s = CandleSeries("1m", 10)
    s.load([
        candle(T0, 10, 12, 9, 11, 1),
        candle(T0 + 2 * MIN, 11, 13, 10, 12, 1),
        candle(T0 + 3 * MIN, 12, 12, 12, 12, 1),
    ])
    return s


def test_late_trade_updates_high_low_volume_of_its_candle_but_not_the_close() -> None:
    s = _three_candles()
    v0, h0 = s.version, s.history_version
    assert s.apply_trade(T0 + 30_000, 15.0, 2.0) is False
    assert s.apply_trade(T0 + 31_000, 8.0, 0.5) is False
    assert s.apply_trade(T0 + 32_000, 10.5, 0.25) is False  # inside the range: volume only
    assert rows_of(s.arrays()) == [
        (T0, 10.0, 15.0, 8.0, 11.0, 3.75),
        (T0 + 2 * MIN, 11.0, 13.0, 10.0, 12.0, 1.0),
        (T0 + 3 * MIN, 12.0, 12.0, 12.0, 12.0, 1.0),
    ]
    assert (s.version - v0, s.history_version - h0) == (3, 3)  # closed candles changed


def test_late_trade_older_than_the_buffer_is_ignored() -> None:
    s = _three_candles()
    before = rows_of(s.arrays())
    v0, h0 = s.version, s.history_version
    assert s.apply_trade(T0 - 1, 50.0, 1.0) is False
    assert rows_of(s.arrays()) == before
    assert (s.version, s.history_version) == (v0, h0)


def test_late_trade_in_a_gap_inside_the_buffer_opens_that_candle_in_order() -> None:
    s = _three_candles()
    h0 = s.history_version
    s.apply_trade(T0 + MIN + 5, 20.0, 0.5)
    a = s.arrays()
    assert a.ts.tolist() == [T0, T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
    assert rows_of(a)[1] == (T0 + MIN, 20.0, 20.0, 20.0, 20.0, 0.5)
    assert s.last() == (T0 + 3 * MIN, 12.0, 12.0, 12.0, 12.0, 1.0)
    assert s.history_version > h0


def test_late_trade_after_wrap_around_finds_the_right_slot() -> None:
    s = CandleSeries("1m", 4)
    for k in range(7):  # slots now hold minutes 3..6, the oldest not in slot 0
        s.apply_trade(T0 + k * MIN, 10.0, 1.0)
    s.apply_trade(T0 + 4 * MIN + 1, 30.0, 2.0)
    assert rows_of(s.arrays()) == [
        (T0 + 3 * MIN, 10.0, 10.0, 10.0, 10.0, 1.0),
        (T0 + 4 * MIN, 10.0, 30.0, 10.0, 10.0, 3.0),
        (T0 + 5 * MIN, 10.0, 10.0, 10.0, 10.0, 1.0),
        (T0 + 6 * MIN, 10.0, 10.0, 10.0, 10.0, 1.0),
    ]


# ---- upsert


def test_upsert_appends_replaces_and_inserts_in_order() -> None:
    s = CandleSeries("1m", 10)
    assert s.upsert(candle(T0, 1, 1, 1, 1, 1)) is True  # empty -> first
    assert s.upsert(candle(T0 + 3 * MIN, 4, 4, 4, 4, 1)) is True  # newer -> append
    assert s.upsert(candle(T0 + 3 * MIN, 4, 5, 3, 4.5, 2)) is True  # live -> replaced
    assert s.upsert(candle(T0 + MIN, 2, 2, 2, 2, 1)) is True  # missing older -> inserted
    assert s.upsert(candle(T0, 1, 1.5, 0.5, 1.2, 7)) is True  # closed -> replaced
    assert s.upsert(candle(T0 - 2 * MIN, 0, 0, 0, 0, 1)) is True  # room left: older history prepends
    assert rows_of(s.arrays()) == [
        (T0 - 2 * MIN, 0.0, 0.0, 0.0, 0.0, 1.0),
        (T0, 1.0, 1.5, 0.5, 1.2, 7.0),
        (T0 + MIN, 2.0, 2.0, 2.0, 2.0, 1.0),
        (T0 + 3 * MIN, 4.0, 5.0, 3.0, 4.5, 2.0),
    ]
    assert s.last() == (T0 + 3 * MIN, 4.0, 5.0, 3.0, 4.5, 2.0)


def test_upsert_into_a_full_wrapped_buffer() -> None:
    s = CandleSeries("1m", 3)
    for k in (0, 2, 3, 5):  # wrapped once; holds minutes 2, 3, 5
        s.upsert(candle(T0 + k * MIN, k, k, k, k, 1))
    assert s.upsert(candle(T0 + MIN, 9, 9, 9, 9, 1)) is False  # older than everything held
    assert s.upsert(candle(T0 + 4 * MIN, 4, 4, 4, 4, 1)) is True  # a gap: inserted, oldest evicted
    assert s.arrays().ts.tolist() == [T0 + 3 * MIN, T0 + 4 * MIN, T0 + 5 * MIN]
    assert s.arrays().open.tolist() == [3.0, 4.0, 5.0]
    # Live trades still land on the live candle after the rebuild.
    s.apply_trade(T0 + 5 * MIN + 1, 8.0, 1.0)
    assert s.last() == (T0 + 5 * MIN, 5.0, 8.0, 5.0, 8.0, 2.0)


def test_upsert_of_an_identical_candle_changes_nothing() -> None:
    s = _three_candles()
    v0, h0 = s.version, s.history_version
    assert s.upsert(candle(T0, 10, 12, 9, 11, 1)) is False
    assert s.upsert(candle(T0 + 3 * MIN, 12, 12, 12, 12, 1)) is False
    assert (s.version, s.history_version) == (v0, h0)


def test_upsert_refuses_a_kline_of_another_timeframe() -> None:
    with pytest.raises(ValueError, match="not on a 1h boundary"):
        CandleSeries("1h", 10).upsert(candle(T0 + MIN, 1, 1, 1, 1, 1))


# ---- versions


def test_history_version_moves_only_when_closed_candles_change() -> None:
    s = CandleSeries("1m", 10)

    def step(action) -> tuple[int, int]:
        v0, h0 = s.version, s.history_version
        action()
        return s.version - v0, s.history_version - h0

    assert step(lambda: s.load([candle(T0, 1, 1, 1, 1, 1)])) == (1, 1)
    assert step(lambda: s.apply_trade(T0 + 1, 2.0, 1.0)) == (1, 0)  # live candle only
    assert step(lambda: s.upsert(candle(T0, 1, 3, 1, 3, 5))) == (1, 0)  # kline for the live candle
    assert step(lambda: s.apply_trade(T0 + MIN, 2.0, 1.0)) == (1, 1)  # roll: T0 is now closed
    assert step(lambda: s.apply_trade(T0 + MIN + 1, 2.5, 1.0)) == (1, 0)
    assert step(lambda: s.apply_trade(T0 + 2, 9.0, 1.0)) == (1, 1)  # late print on a closed candle
    assert step(lambda: s.upsert(candle(T0, 1, 9, 1, 3, 7))) == (1, 1)  # kline for a closed candle
    assert step(lambda: s.upsert(candle(T0 + 2 * MIN, 1, 1, 1, 1, 1))) == (1, 1)  # new candle
    assert step(lambda: s.apply_trade(T0 - HOUR, 9.0, 1.0)) == (0, 0)  # ignored: older than the buffer


# ---- the store


def test_loading_the_base_rebuilds_derived_series_but_not_explicit_ones() -> None:
    rows = fixture_rows()
    half = CandleArrays.from_rows(rows[: len(rows) // 2])
    full = CandleArrays.from_rows(rows)
    store = CandleStore()
    store.load_history("BTC/USDT", "1m", half)
    derived = store.ensure("BTC/USDT", "1h")
    assert derived is not None
    assert_same_candles(derived.arrays(), reference_aggregate(rows[: len(rows) // 2], 3600))
    venue_4h = [candle(T0, 1, 2, 0.5, 1.5, 10), candle(T0 + 4 * HOUR, 1.5, 3, 1, 2, 20)]
    explicit = store.load_history("BTC/USDT", "4h", venue_4h)

    store.load_history("BTC/USDT", "1m", full)
    assert store.series("BTC/USDT", "1h") is derived
    assert_same_candles(derived.arrays(), reference_aggregate(rows, 3600))
    assert rows_of(explicit.arrays()) == [
        (T0, 1.0, 2.0, 0.5, 1.5, 10.0),
        (T0 + 4 * HOUR, 1.5, 3.0, 1.0, 2.0, 20.0),
    ]


def test_ensure_builds_only_what_the_base_can_give() -> None:
    store = CandleStore(base_timeframe="5m")
    assert store.ensure("BTC/USDT", "1h") is None  # no base held
    store.load_history("BTC/USDT", "5m", [candle(T0, 1, 2, 0.5, 1.5, 3), candle(T0 + 5 * MIN, 1.5, 4, 1, 2, 1)])
    assert store.ensure("BTC/USDT", "1m") is None  # finer than the base
    hour = store.ensure("BTC/USDT", "1h")
    assert hour is not None and store.ensure("BTC/USDT", "1h") is hour
    assert rows_of(hour.arrays()) == [(T0, 1.0, 4.0, 0.5, 2.0, 4.0)]
    assert store.symbols() == ["BTC/USDT"]
    assert store.timeframes("BTC/USDT") == ["5m", "1h"]


def test_store_ignores_trades_for_symbols_it_does_not_hold_and_non_trade_payloads() -> None:
    store = CandleStore()
    store.on_trade(trade_event("ETH/USDT", T0, 1.0, 1.0))
    assert store.symbols() == [] and store.series("ETH/USDT", "1m") is None
    s = store.load_history("BTC/USDT", "1m", [candle(T0, 1, 1, 1, 1, 1)])
    store.on_trade(SimpleNamespace(payload=Ticker(symbol="BTC/USDT", ts=T0 + MIN, last=Decimal(5))))
    assert (len(s), s.last()) == (1, (T0, 1.0, 1.0, 1.0, 1.0, 1.0))
    store.on_trade(trade_event("BTC/USDT", T0 + MIN, 5.0, 0.5))
    assert s.last() == (T0 + MIN, 5.0, 5.0, 5.0, 5.0, 0.5)


def test_a_final_exchange_kline_corrects_the_base_and_its_derived_bucket() -> None:
    from decimal import Decimal

    from app.bus import Event, Priority
    from app.domain import Candle, CandleUpdate

    store = CandleStore(capacity=100)
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 3_600_000  # an hour boundary
    store.load_history("BTC/USDT", "1m", [
        Candle(t0 + m * 60_000, Decimal(100), Decimal(101), Decimal(99), Decimal(100), Decimal(1)) for m in range(3)])
    hour = store.ensure("BTC/USDT", "1h")
    # The trade stream missed the spike to 130 in the second minute; the exchange's final kline has it.
    final = Candle(t0 + 60_000, Decimal(100), Decimal(130), Decimal(95), Decimal(120), Decimal(5))
    store.on_candle(Event("market.candle", CandleUpdate("BTC/USDT", "1m", final, closed=True), Priority.LOW, "e1", 0.0))
    minute = store.series("BTC/USDT", "1m").arrays()
    assert (minute.high[1], minute.low[1], minute.close[1], minute.volume[1]) == (130.0, 95.0, 120.0, 5.0)
    h = hour.arrays()
    assert (h.open[-1], h.high[-1], h.low[-1], h.close[-1], h.volume[-1]) == (100.0, 130.0, 95.0, 100.0, 7.0)
    # A forming kline is not applied: the trades already draw the live candle.
    forming = Candle(t0 + 120_000, Decimal(100), Decimal(500), Decimal(1), Decimal(300), Decimal(9))
    store.on_candle(Event("market.candle", CandleUpdate("BTC/USDT", "1m", forming, closed=False), Priority.LOW, "e2", 0.0))
    assert store.series("BTC/USDT", "1m").arrays().high[-1] == 101.0

"""Candles for the charts: per symbol and timeframe, OHLCV in numpy ring buffers.

Floats are deliberate here: these arrays feed pyqtgraph, and a chart does not
need Decimal. Money everywhere else stays Decimal (see `app.domain`).

Buckets align to UTC epoch multiples of the timeframe, as exchange klines do
(a 1d candle opens at 00:00 UTC, a 4h candle at 00/04/08.. UTC); every
timestamp is the bucket's open time in int ms.

Gaps are kept, not filled: when no trade happens in a bucket, no candle exists
for it. Exchanges' klines for illiquid pairs have the same holes (the recorded
fixture has hundreds), and an invented flat candle would claim a price and a
zero volume nobody traded. The chart plots by timestamp, so a hole shows as a
gap.

Everything here runs on the event loop's thread (the Qt thread, through
qasync); nothing is locked.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from decimal import Decimal

import numpy as np

from app.domain import TIMEFRAMES, Candle, CandleUpdate, Trade

CandleRow = tuple[int, float, float, float, float, float]
"""`(ts_ms, open, high, low, close, volume)` with plain Python numbers."""


def timeframe_ms(timeframe: str) -> int:
    """The length of one bucket of `timeframe` in ms; ValueError for an unknown timeframe."""
    try:
        return TIMEFRAMES[timeframe] * 1000
    except KeyError:
        known = ", ".join(TIMEFRAMES)
        raise ValueError(f"'{timeframe}' is not a chart timeframe: use one of {known}") from None


@dataclass(frozen=True, eq=False)
class CandleArrays:
    """Candles as parallel arrays in chronological order (the shape a chart plots).

    `eq=False`: comparing numpy arrays with `==` gives an array, not a bool.
    """

    ts: np.ndarray  # int64 ms, the buckets' open times
    open: np.ndarray  # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ts)
        if any(len(a) != n for a in (self.open, self.high, self.low, self.close, self.volume)):
            raise ValueError("CandleArrays needs arrays of equal length")

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls) -> CandleArrays:
        f = np.empty(0, dtype=np.float64)
        return cls(np.empty(0, dtype=np.int64), f, f.copy(), f.copy(), f.copy(), f.copy())

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[float]]) -> CandleArrays:
        """From `[ms, open, high, low, close, volume]` rows (ccxt's OHLCV shape, the recorded fixtures)."""
        if len(rows) == 0:
            return cls.empty()
        # The ms column is read as int64 on its own: through float64 it would be exact
        # today, but only by luck of magnitude.
        ts = np.fromiter((int(r[0]) for r in rows), dtype=np.int64, count=len(rows))
        v = np.asarray([r[1:6] for r in rows], dtype=np.float64)
        return cls(ts, v[:, 0].copy(), v[:, 1].copy(), v[:, 2].copy(), v[:, 3].copy(), v[:, 4].copy())

    @classmethod
    def from_candles(cls, candles: Iterable[Candle]) -> CandleArrays:
        return cls.from_rows(
            [(c.ts, float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume)) for c in candles]
        )


def aggregate(arrays: CandleArrays, timeframe: str) -> CandleArrays:
    """Candles of a coarser `timeframe` built from finer chronological `arrays`.

    Open is the bucket's first open, high the max, low the min, close the last
    close, volume the sum. `timeframe` must be a whole multiple of the source's
    timeframe (the caller knows the source; `CandleStore` checks it). The oldest
    bucket is partial when the source starts mid-bucket, as any truncated
    history is.
    """
    n = len(arrays)
    if n == 0:
        return CandleArrays.empty()
    step = timeframe_ms(timeframe)
    ts = arrays.ts
    buckets = ts - ts % step  # numpy's % floors like Python's, so pre-1970 buckets align too
    # The input is sorted, so a bucket starts wherever the bucket id changes: cheaper than np.unique.
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(buckets[1:], buckets[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = n - 1
    return CandleArrays(
        ts=buckets[starts],
        open=arrays.open[starts],
        high=np.maximum.reduceat(arrays.high, starts),
        low=np.minimum.reduceat(arrays.low, starts),
        close=arrays.close[ends],
        volume=np.add.reduceat(arrays.volume, starts),
    )


class CandleSeries:
    """The newest `capacity` candles of one symbol and timeframe, in a ring buffer.

    The arrays are allocated once; a new candle overwrites the oldest slot and
    moves `_head` (the oldest candle's slot), so the hot path never reallocates.

    Two counters let a chart redraw only what changed:
    `version` moves on every change; `history_version` moves only when something
    other than the live (last) candle's values changed: a load, a new candle (the
    previous live one becomes closed history, the oldest may be evicted), an
    insert, or a change to a closed candle. While it holds still, the chart only
    redraws the live bar from `last()`.
    """

    def __init__(self, timeframe: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a candle series needs a capacity of at least 1")
        self._timeframe = timeframe
        self._step = timeframe_ms(timeframe)
        self._cap = capacity
        self._ts = np.zeros(capacity, dtype=np.int64)
        self._o = np.zeros(capacity, dtype=np.float64)
        self._h = np.zeros(capacity, dtype=np.float64)
        self._l = np.zeros(capacity, dtype=np.float64)
        self._c = np.zeros(capacity, dtype=np.float64)
        self._v = np.zeros(capacity, dtype=np.float64)
        self._head = 0  # slot of the oldest candle
        self._len = 0
        # The live candle's slot and bucket as Python ints: read by every trade,
        # and a numpy scalar read and compare costs several times more.
        self._last_i = 0
        self._last_ts = 0
        self.version = 0
        self.history_version = 0

    @property
    def timeframe(self) -> str:
        return self._timeframe

    @property
    def seconds(self) -> int:
        return self._step // 1000

    @property
    def capacity(self) -> int:
        return self._cap

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"CandleSeries({self._timeframe!r}, capacity={self._cap}, len={self._len})"

    # ---- reading

    def arrays(self) -> CandleArrays:
        """A chronological copy. Never views: the buffer is overwritten in place by
        later trades and wraps around, so a view would change (or tear) under the
        chart's feet. The chart copies only when `history_version` moves."""
        h, n, cap = self._head, self._len, self._cap
        if h + n <= cap:
            sl = slice(h, h + n)
            return CandleArrays(
                self._ts[sl].copy(), self._o[sl].copy(), self._h[sl].copy(),
                self._l[sl].copy(), self._c[sl].copy(), self._v[sl].copy(),
            )  # fmt: skip
        tail = h + n - cap  # the wrapped part lives in slots [0, tail)

        def cat(a: np.ndarray) -> np.ndarray:
            return np.concatenate((a[h:], a[:tail]))

        return CandleArrays(cat(self._ts), cat(self._o), cat(self._h), cat(self._l), cat(self._c), cat(self._v))

    def last(self) -> CandleRow | None:
        """The live candle as plain Python numbers, or None when empty."""
        if not self._len:
            return None
        i = self._last_i
        return (
            self._last_ts, float(self._o[i]), float(self._h[i]),
            float(self._l[i]), float(self._c[i]), float(self._v[i]),
        )  # fmt: skip

    # ---- replacing

    def load(self, candles: Iterable[Candle]) -> None:
        """Replace the contents (keeping the newest `capacity`)."""
        self.load_arrays(CandleArrays.from_candles(candles))

    def load_arrays(self, arrays: CandleArrays) -> None:
        """Replace the contents (keeping the newest `capacity`).

        Paged REST history can overlap at page edges, so unsorted or duplicated
        buckets are sorted and deduplicated (the later row wins). Timestamps not
        on this timeframe's bucket boundaries are refused: they mean candles of
        another timeframe were handed to this series.
        """
        ts = np.asarray(arrays.ts, dtype=np.int64)
        cols = [
            np.asarray(a, dtype=np.float64)
            for a in (arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume)
        ]
        if len(ts) and np.any(ts % self._step):
            tf = self._timeframe
            raise ValueError(f"these candles are not {tf} candles: their times are not on {tf} boundaries")
        if len(ts) > 1 and not np.all(ts[1:] > ts[:-1]):
            # Reverse, take the first of each ts (= the last in input order), stable-sorted.
            rev = ts[::-1]
            _, first = np.unique(rev, return_index=True)
            idx = len(ts) - 1 - first
            ts = ts[idx]
            cols = [c[idx] for c in cols]
        self._replace(ts, *cols)

    def _replace(
        self, ts: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
    ) -> None:
        n = min(len(ts), self._cap)
        for dst, src in ((self._ts, ts), (self._o, o), (self._h, h), (self._l, lo), (self._c, c), (self._v, v)):
            dst[:n] = src[len(src) - n :]
        self._head = 0
        self._len = n
        if n:
            self._last_i = n - 1
            self._last_ts = int(self._ts[n - 1])
        self.version += 1
        self.history_version += 1

    # ---- live updates

    def apply_trade(self, ts_ms: int, price: float, amount: float) -> bool:
        """Fold one trade in; True when it opened a new candle (a roll, or the first).

        A trade for an older bucket than the live one (a late print) updates that
        candle's high, low and volume but not its close: later trades of that
        bucket were already seen, so this one was not the last. A late trade for
        a gap bucket inside the buffer opens a candle there (the bucket did trade);
        one older than the whole buffer is dropped.
        """
        bucket = ts_ms - ts_ms % self._step
        if self._len and bucket == self._last_ts:
            i = self._last_i
            h, lo = self._h, self._l
            if price > h[i]:
                h[i] = price
            elif price < lo[i]:  # elif: a price above the high cannot be below the low
                lo[i] = price
            self._c[i] = price
            self._v[i] += amount
            self.version += 1
            return False
        if not self._len or bucket > self._last_ts:
            self._append(bucket, price, price, price, price, amount)
            return True
        self._late_trade(bucket, price, amount)
        return False

    def _append(self, ts: int, o: float, h: float, lo: float, c: float, v: float) -> None:
        cap = self._cap
        if self._len < cap:
            i = (self._head + self._len) % cap
            self._len += 1
        else:
            i = self._head  # full: overwrite the oldest
            self._head = (i + 1) % cap
        self._ts[i] = ts
        self._o[i] = o
        self._h[i] = h
        self._l[i] = lo
        self._c[i] = c
        self._v[i] = v
        self._last_i = i
        self._last_ts = ts
        self.version += 1
        self.history_version += 1

    def _slot(self, k: int) -> int:
        """The buffer slot of the k-th candle in chronological order."""
        return (self._head + k) % self._cap

    def _position(self, bucket: int) -> int:
        """Chronological index where `bucket` is or would be inserted (bisect, O(log n))."""
        ts, head, cap = self._ts, self._head, self._cap
        return bisect.bisect_left(range(self._len), bucket, key=lambda k: int(ts[(head + k) % cap]))

    def _late_trade(self, bucket: int, price: float, amount: float) -> None:
        k = self._position(bucket)  # < len: the bucket is older than the live one
        if int(self._ts[self._slot(k)]) == bucket:
            i = self._slot(k)
            if price > self._h[i]:
                self._h[i] = price
            if price < self._l[i]:
                self._l[i] = price
            self._v[i] += amount
            self.version += 1
            self.history_version += 1
        elif k > 0:
            self._insert(k, bucket, price, price, price, price, amount)
        # k == 0: older than anything held; dropping it keeps "the newest capacity" true.

    # ---- klines

    def upsert(self, candle: Candle) -> bool:
        """Store an exchange kline (stream or REST backfill); True when the series changed.

        Same bucket as a held candle -> replaced; newer than the live one ->
        appended; a missing older bucket -> inserted in order (O(n), rare), unless
        the buffer is full and it is older than everything held, where it would be
        the one evicted anyway.
        """
        ts = int(candle.ts)
        if ts % self._step:
            tf = self._timeframe
            raise ValueError(f"a kline at {ts} ms is not on a {tf} boundary: it belongs to another timeframe")
        o, h, lo, c = float(candle.open), float(candle.high), float(candle.low), float(candle.close)
        v = float(candle.volume)
        if not self._len or ts > self._last_ts:
            self._append(ts, o, h, lo, c, v)
            return True
        if ts == self._last_ts:
            return self._overwrite(self._last_i, o, h, lo, c, v, closed=False)
        k = self._position(ts)
        if int(self._ts[self._slot(k)]) == ts:  # k < len holds: ts < the last ts
            return self._overwrite(self._slot(k), o, h, lo, c, v, closed=True)
        if k == 0 and self._len == self._cap:
            return False
        self._insert(k, ts, o, h, lo, c, v)
        return True

    def _overwrite(self, i: int, o: float, h: float, lo: float, c: float, v: float, *, closed: bool) -> bool:
        # A reconnect's REST backfill resends candles we already hold; skipping
        # identical ones spares the chart a history rebuild per resent candle.
        if (self._o[i], self._h[i], self._l[i], self._c[i], self._v[i]) == (o, h, lo, c, v):
            return False
        self._o[i], self._h[i], self._l[i], self._c[i], self._v[i] = o, h, lo, c, v
        self.version += 1
        if closed:
            self.history_version += 1
        return True

    def _insert(self, k: int, ts: int, o: float, h: float, lo: float, c: float, v: float) -> None:
        """Insert before chronological index k by rebuilding the buffer (O(n); rare)."""
        a = self.arrays()
        self._replace(
            np.insert(a.ts, k, ts), np.insert(a.open, k, o), np.insert(a.high, k, h),
            np.insert(a.low, k, lo), np.insert(a.close, k, c), np.insert(a.volume, k, v),
        )  # fmt: skip


class CandleStore:
    """Every candle series the terminal holds, by symbol and timeframe.

    A series is either *explicit* (its history was loaded, e.g. a venue's 1h
    klines) or *derived* (built by aggregating the base timeframe). The rule:
    loading the base timeframe rebuilds the derived series of that symbol from
    it and leaves explicit ones alone, because a venue's own klines are more
    complete than an aggregate of however much base history we hold. Live
    trades update every series of the symbol either way.
    """

    def __init__(self, capacity: int = 20_000, base_timeframe: str = "1m") -> None:
        self._capacity = capacity
        self._base = base_timeframe
        self._base_seconds = timeframe_ms(base_timeframe) // 1000
        self._series: dict[str, dict[str, CandleSeries]] = {}
        self._derived: dict[str, set[str]] = {}

    @property
    def base_timeframe(self) -> str:
        return self._base

    def load_history(self, symbol: str, timeframe: str, candles: Iterable[Candle] | CandleArrays) -> CandleSeries:
        """Replace one series' history (creating it) and return it."""
        by_tf = self._series.setdefault(symbol, {})
        series = by_tf.get(timeframe)
        if series is None:
            series = by_tf[timeframe] = CandleSeries(timeframe, self._capacity)
        if isinstance(candles, CandleArrays):
            series.load_arrays(candles)
        else:
            series.load(candles)
        derived = self._derived.setdefault(symbol, set())
        if timeframe == self._base:
            base = series.arrays()
            for tf in derived:
                by_tf[tf].load_arrays(aggregate(base, tf))
        else:
            derived.discard(timeframe)  # loaded explicitly now: the base no longer overwrites it
        return series

    def series(self, symbol: str, timeframe: str) -> CandleSeries | None:
        return self._series.get(symbol, {}).get(timeframe)

    def ensure(self, symbol: str, timeframe: str) -> CandleSeries | None:
        """The series, building it from the base timeframe when not held; None when it cannot be."""
        held = self.series(symbol, timeframe)
        if held is not None:
            return held
        seconds = timeframe_ms(timeframe) // 1000
        base = self.series(symbol, self._base)
        if base is None or seconds % self._base_seconds:
            return None
        series = CandleSeries(timeframe, self._capacity)
        series.load_arrays(aggregate(base.arrays(), timeframe))
        self._series[symbol][timeframe] = series
        self._derived.setdefault(symbol, set()).add(timeframe)
        return series

    def apply_trade(self, symbol: str, ts_ms: int, price: float, amount: float) -> None:
        """Fold a trade into every series held for `symbol`, so all timeframes agree.

        Symbols with no series are skipped: the store follows what the charts
        opened (history first), not every symbol a stream happens to carry.
        """
        by_tf = self._series.get(symbol)
        if by_tf:
            for series in by_tf.values():
                series.apply_trade(ts_ms, price, amount)

    def apply_kline(self, symbol: str, timeframe: str, candle: Candle) -> None:
        """Store an exchange's final kline: it is the candle as the exchange defines it, so it
        corrects whatever the trade stream missed. The derived timeframes' bucket is re-aggregated
        from the base so every timeframe keeps agreeing."""
        by_tf = self._series.get(symbol)
        series = by_tf.get(timeframe) if by_tf else None
        if series is None or not series.upsert(candle) or timeframe != self._base:
            return
        derived = self._derived.get(symbol, ())
        if not derived:
            return
        base = series.arrays()
        for tf in derived:
            step = timeframe_ms(tf)
            bucket = int(candle.ts) - int(candle.ts) % step
            lo = int(np.searchsorted(base.ts, bucket))
            hi = int(np.searchsorted(base.ts, bucket + step))
            if hi <= lo:
                continue
            by_tf[tf].upsert(Candle(
                bucket,
                Decimal(repr(float(base.open[lo]))),
                Decimal(repr(float(base.high[lo:hi].max()))),
                Decimal(repr(float(base.low[lo:hi].min()))),
                Decimal(repr(float(base.close[hi - 1]))),
                Decimal(repr(float(base.volume[lo:hi].sum()))),
            ))

    def on_candle(self, event: Any) -> None:
        """Bus handler for `market.candle` (`app.domain.CandleUpdate`): final klines only; a forming
        kline adds nothing the trades have not already drawn."""
        update = event.payload
        if isinstance(update, CandleUpdate) and update.closed:
            self.apply_kline(update.symbol, update.timeframe, update.candle)

    def on_trade(self, event: Any) -> None:
        """Bus handler: `event.payload` is an `app.domain.Trade`.

        Other payloads (a stream's Tickers share the topic) are ignored: a
        ticker's last price carries no volume and may repeat a trade already
        counted. The topic must not conflate trades, or volume is lost.
        """
        trade = event.payload
        if isinstance(trade, Trade):
            self.apply_trade(trade.symbol, trade.ts, float(trade.price), float(trade.amount))

    def is_derived(self, symbol: str, timeframe: str) -> bool:
        """True when the series is aggregated from the base rather than loaded from a venue."""
        return timeframe in self._derived.get(symbol, ())

    def symbols(self) -> list[str]:
        return list(self._series)

    def timeframes(self, symbol: str) -> list[str]:
        """Held timeframes of `symbol`, shortest first."""
        return sorted(self._series.get(symbol, {}), key=lambda tf: TIMEFRAMES[tf])

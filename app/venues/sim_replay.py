"""Replaying a recorded candle file through the simulated market.

The file is JSON: a list of `[ms, open, high, low, close, volume]` rows, as
freqtrade and ccxt write one-minute candles. The first part becomes the chart's
history; the rest is played as trades at `speed` market seconds per wall-clock
second, four prints per candle (open, the nearer extreme, the farther extreme,
close) so the live candle draws the recorded bar exactly. The candle's volume is
split over its prints in whole 1e-8 units, so the prints add up to the recorded
volume exactly (a print may carry nothing when the candle traded less than four units).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path

import numpy as np

SUB_TICK_OFFSETS_MS = (0, 15_000, 30_000, 59_000)
VOLUME_UNITS = 10**8  # recorded volumes carry at most 8 decimals
MINUTE_MS = 60_000


class ReplayFileError(ValueError):
    """The candle file cannot be replayed; the message says why and what to do."""


def load_candle_file(path: Path) -> np.ndarray:
    """Read and check a candle file; returns an (n, 6) float array sorted by time."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayFileError(f"The replay file {path} does not exist: check sim.replay_file in your settings.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReplayFileError(f"The replay file {path} could not be read as JSON ({exc}).") from None
    if not isinstance(rows, list) or len(rows) < 2:
        raise ReplayFileError(f"The replay file {path} must be a JSON list of at least two [ms, open, high, low, close, volume] rows.")
    for i, row in enumerate(rows):
        if (
            not isinstance(row, list)
            or len(row) < 6
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row[:6])
        ):
            raise ReplayFileError(f"Row {i + 1} of the replay file {path} is not [ms, open, high, low, close, volume] numbers: {str(row)[:80]}")
    data = np.array([row[:6] for row in rows], dtype=np.float64)
    if np.any(np.diff(data[:, 0]) <= 0):
        raise ReplayFileError(f"The rows of the replay file {path} must be in increasing time order with no duplicates.")
    off = np.flatnonzero(data[:, 0] % MINUTE_MS)
    if len(off):
        i = int(off[0])
        raise ReplayFileError(
            f"Row {i + 1} of the replay file {path} does not start on a whole minute ({rows[i][0]}): "
            "the file must hold one-minute candles timed in milliseconds since 1970."
        )
    return data


def infer_tick(data: np.ndarray) -> Decimal:
    """The finest price increment the recording uses (at most 8 decimals)."""
    prices = data[:, 1:5].ravel()
    for decimals in range(0, 9):
        if np.allclose(prices, np.round(prices, decimals), rtol=0, atol=10.0 ** -(decimals + 3)):
            return Decimal(1).scaleb(-decimals)
    return Decimal("1e-8")


class ReplayFeed:
    """The replay cursor: which recorded prints are due at the current replay time."""

    def __init__(self, data: np.ndarray, history_count: int, speed: float) -> None:
        self.data = data
        self.speed = speed
        self.cursor = max(1, min(history_count, len(data) - 1))
        self._sub = 0  # next sub-tick of the candle at the cursor
        self.replay_ms = float(data[self.cursor, 0])

    @property
    def history(self) -> np.ndarray:
        return self.data[: self.cursor]

    @property
    def finished(self) -> bool:
        return self.cursor >= len(self.data)

    def advance(self, wall_seconds: float) -> list[tuple[int, float, float]]:
        """Move replay time on; return the due prints as (ms, price, amount)."""
        self.replay_ms += wall_seconds * 1000.0 * self.speed
        due: list[tuple[int, float, float]] = []
        while self.cursor < len(self.data):
            ts, o, h, low, c, v = self.data[self.cursor]
            first, second = (low, h) if c >= o else (h, low)
            prices = (o, first, second, c)
            share, extra = divmod(round(float(v) * VOLUME_UNITS), 4)
            while self._sub < 4:
                tick_ms = ts + SUB_TICK_OFFSETS_MS[self._sub]
                if tick_ms > self.replay_ms:
                    return due
                units = share + (1 if self._sub < extra else 0)
                due.append((int(tick_ms), float(prices[self._sub]), units / VOLUME_UNITS))
                self._sub += 1
            self.cursor += 1
            self._sub = 0
        return due

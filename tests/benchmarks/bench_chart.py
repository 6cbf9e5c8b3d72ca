"""Frame time of the chart for one live tick with 5,000 visible candles.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_chart.py

Each iteration applies one trade to the live candle, lets the chart take it
(`ChartWidget.refresh`, what its timer does) and repaints the view synchronously.
The same candles are drawn in the same run by the classic QPicture-per-bar item
(one recorded picture per candle, re-recorded for the live one on each tick),
and the ratio between the two is reported: the machines are shared and noisy,
so the ratio is the figure to compare. Real candles come from
../shared/fixtures/candles/UNITTEST_BTC-1m.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPointF, QRectF  # noqa: E402
from PySide6.QtGui import QPainter, QPicture  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.market.candles import CandleArrays, CandleSeries  # noqa: E402
from ui import theme  # noqa: E402
from ui.chart import ChartWidget  # noqa: E402

BARS = 5_000
ITERATIONS = 150
SIZE = (1600, 900)
TARGET_MS = 4.0
TARGET_RATIO = 10.0
FIXTURE = ROOT.parent / "shared" / "fixtures" / "candles" / "UNITTEST_BTC-1m.json"


def real_candles(n: int) -> CandleArrays:
    rows = json.loads(FIXTURE.read_text())
    a = np.array(rows[-n:], dtype=np.float64)
    # Scale the 0.002-priced pair to BTC-like prices so the axis reads like a real chart.
    scale = 40_000_000.0
    return CandleArrays(a[:, 0].astype(np.int64), a[:, 1] * scale, a[:, 2] * scale, a[:, 3] * scale, a[:, 4] * scale, a[:, 5])


class QPicturePerBarItem(pg.GraphicsObject):
    """The reference: pyqtgraph's classic candlestick example, one QPicture per candle."""

    def __init__(self, a: CandleArrays, width: float) -> None:
        super().__init__()
        self.width = width
        self.data = a
        self.pictures = [self._record(i) for i in range(len(a))]
        self._bounds = QRectF(float(a.ts[0] / 1000) - width, float(a.low.min()), float((a.ts[-1] - a.ts[0]) / 1000) + 2 * width,
                              float(a.high.max() - a.low.min()))

    def _record(self, i: int) -> QPicture:
        a = self.data
        t = a.ts[i] / 1000.0
        up = a.close[i] >= a.open[i]
        picture = QPicture()
        p = QPainter(picture)
        p.setPen(pg.mkPen(theme.UP if up else theme.DOWN))
        p.setBrush(pg.mkBrush(theme.UP if up else theme.DOWN))
        p.drawLine(QPointF(t, a.low[i]), QPointF(t, a.high[i]))
        p.drawRect(QRectF(t - self.width / 2, a.open[i], self.width, a.close[i] - a.open[i]))
        p.end()
        return picture

    def update_last(self) -> None:
        self.pictures[-1] = self._record(len(self.data) - 1)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._bounds

    def paint(self, p: QPainter, *args: object) -> None:
        for picture in self.pictures:
            picture.play(p)


def tick(a: CandleArrays, k: int) -> tuple[int, float, float]:
    """A trade inside the live candle: price wanders within the candle's range."""
    price = float(a.close[-1]) * (1 + 0.0004 * np.sin(k / 7.0))
    return int(a.ts[-1]) + 30_000, price, 0.5


def time_loop(step, repaint) -> list[float]:
    times = []
    for k in range(ITERATIONS):
        t0 = time.perf_counter()
        step(k)
        repaint()
        times.append((time.perf_counter() - t0) * 1000)
    return times[10:]  # the first frames warm caches


def bench(app: QApplication, a: CandleArrays, reference: bool) -> float:
    """One live tick + synchronous repaint, in the real ChartWidget. With `reference`, the candles are
    drawn by the QPicture-per-bar item instead; everything else on screen (volume, axes, grid, last-price
    line, read-out) is the same, so the ratio isolates how candles are drawn."""
    series = CandleSeries("1m", BARS + 10)
    series.load_arrays(a)
    chart = ChartWidget(lambda s, t: None, refresh_hz=60)
    chart.timer.stop()  # the benchmark drives refresh itself
    chart.resize(*SIZE)
    chart.show()
    chart.symbol, chart.series = "BTC/USDT", series
    chart.refresh()
    chart.price_plot.getViewBox().setXRange(a.ts[0] / 1000, a.ts[-1] / 1000, padding=0.01)
    old = None
    if reference:
        chart.price_plot.removeItem(chart.candles)
        chart.price_plot.removeItem(chart.live_candle)
        old = QPicturePerBarItem(series.arrays(), series.seconds * 0.7)
        chart.price_plot.addItem(old)
    app.processEvents()
    assert chart.visible_count() >= BARS - 1, chart.visible_count()
    viewport = chart.graphics.viewport()

    def step(k: int) -> None:
        ts, price, amount = tick(a, k)
        series.apply_trade(ts, price, amount)
        chart.refresh()
        if old is not None:
            old.data.close[-1] = price
            old.update_last()

    times = time_loop(step, viewport.repaint)
    if old is None:
        assert chart.live_candle.paints > ITERATIONS / 2, "the live candle did not repaint"
    chart.close()
    return statistics.median(times)


def main() -> int:
    app = QApplication.instance() or QApplication([])
    a = real_candles(BARS)
    fast = bench(app, a, reference=False)
    slow = bench(app, a, reference=True)
    ratio = slow / fast
    print(f"vectorised chart, live tick + repaint, {BARS} candles: {fast:.2f} ms (median of {ITERATIONS - 10})")
    print(f"QPicture-per-bar reference, same candles and view: {slow:.2f} ms")
    print(f"ratio: {ratio:.1f}x faster")
    ok = fast <= TARGET_MS and ratio >= TARGET_RATIO
    print("PASS" if ok else f"FAIL: target <= {TARGET_MS} ms and >= {TARGET_RATIO}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

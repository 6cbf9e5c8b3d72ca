"""Vectorised candlestick and volume items for pyqtgraph.

A chart of thousands of candles must repaint in a few milliseconds while the
live candle moves. These items keep every body and wick in contiguous numpy
arrays of QRectF/QLineF and hand them to QPainter in one `drawRects` /
`drawLines` call per colour, instead of one QPicture or one draw call per bar
(measured in tests/benchmarks/bench_chart.py).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import internals  # PrimitiveArray: numpy-backed QRectF/QLineF arrays
from PySide6.QtCore import QLineF, QRectF
from PySide6.QtGui import QBrush, QColor, QPainter, QPen

from ui import theme


def _pen(colour: str) -> QPen:
    pen = QPen(QColor(colour))
    pen.setCosmetic(True)  # one pixel wide whatever the zoom
    pen.setWidth(1)
    return pen


class _TwoColourItem(pg.GraphicsObject):
    """Bars in two colours (rising and falling), drawn from primitive arrays."""

    def __init__(self, up: str = theme.UP, down: str = theme.DOWN) -> None:
        super().__init__()
        self._pens = (_pen(up), _pen(down))
        self._brushes = (QBrush(QColor(up)), QBrush(QColor(down)))
        self._rects = (internals.PrimitiveArray(QRectF, 4), internals.PrimitiveArray(QRectF, 4))
        self._lines = (internals.PrimitiveArray(QLineF, 4), internals.PrimitiveArray(QLineF, 4))
        self._bounds = QRectF()
        self.paints = 0  # how often Qt painted this item: the smoke test checks it

    def _fill(self, k: int, x: np.ndarray, y0: np.ndarray, y1: np.ndarray, width: float,
              lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> None:
        rects = self._rects[k]
        rects.resize(len(x))
        r = rects.ndarray()
        r[:, 0] = x - width / 2
        r[:, 1] = np.minimum(y0, y1)
        r[:, 2] = width
        r[:, 3] = np.abs(y1 - y0)
        lines = self._lines[k]
        if lo is None or hi is None:
            lines.resize(0)
            return
        lines.resize(len(x))
        w = lines.ndarray()
        w[:, 0] = x
        w[:, 1] = lo
        w[:, 2] = x
        w[:, 3] = hi

    def _set_bounds(self, x: np.ndarray, low: np.ndarray, high: np.ndarray, width: float) -> None:
        self.prepareGeometryChange()
        if len(x):
            self._bounds = QRectF(float(x[0]) - width, float(low.min()), float(x[-1] - x[0]) + 2 * width,
                                  float(high.max() - low.min()))
        else:
            self._bounds = QRectF()
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt API)
        return self._bounds

    def paint(self, p: QPainter, *args: object) -> None:
        self.paints += 1
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for k in (0, 1):
            p.setPen(self._pens[k])
            if len(self._lines[k]):
                p.drawLines(*self._lines[k].drawargs())
            if len(self._rects[k]):
                p.setBrush(self._brushes[k])
                p.drawRects(*self._rects[k].drawargs())


class CandlestickItem(_TwoColourItem):
    """Candles: bodies from open to close, wicks from low to high."""

    def set_data(self, x: np.ndarray, o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, width: float) -> None:
        up = c >= o
        for k, mask in enumerate((up, ~up)):
            self._fill(k, x[mask], o[mask], c[mask], width, low[mask], h[mask])
        self._set_bounds(x, low, h, width)


class VolumeItem(_TwoColourItem):
    """Volume bars coloured by the candle's direction."""

    def set_data(self, x: np.ndarray, o: np.ndarray, c: np.ndarray, volume: np.ndarray, width: float) -> None:
        up = c >= o
        zero = np.zeros_like(volume)
        for k, mask in enumerate((up, ~up)):
            self._fill(k, x[mask], zero[mask], volume[mask], width)
        self._set_bounds(x, zero, volume, width)

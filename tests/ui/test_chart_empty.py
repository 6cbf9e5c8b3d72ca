"""Before its first candle the chart shows no last-price tag (a tag at 0 would read as a price)."""

from __future__ import annotations

import asyncio

from tests.ui.test_chart_alerts import series_for
from ui.chart import ChartWidget


def test_no_last_price_tag_until_candles_arrive(qtbot, qloop) -> None:
    gate: asyncio.Future = asyncio.get_event_loop().create_future()

    async def slow_load(symbol: str, _timeframe: str):  # noqa: ANN202
        await gate
        return series_for(symbol)

    chart = ChartWidget(slow_load, refresh_hz=30)
    qtbot.addWidget(chart)
    chart.resize(900, 500)
    chart.show()
    qtbot.waitExposed(chart)
    chart.set_symbol("BTC/USDT", 2)
    qtbot.wait(200)
    assert not chart.last_label.isVisible() and not chart.last_line.isVisible()
    gate.set_result(None)
    qtbot.waitUntil(lambda: chart.last_label.isVisible(), timeout=5_000)
    assert chart.last_label.textItem.toPlainText() != ""
    chart.shutdown()

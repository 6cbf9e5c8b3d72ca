"""Stocks and forex in the watchlist priced by a provider, and the sources view, in the real window
against a Yahoo-compatible server on 127.0.0.1."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.settings import MarketDataSettings, ProviderSettings, WatchlistSettings
from tests.servers.providers import YahooServer
from tests.ui.conftest import FAST, run
from ui.sources import COLUMNS as SOURCE_COLUMNS
from ui.watchlist import COLUMNS, SYMBOL_ROLE


@pytest.fixture
def yahoo(qtbot, qloop):
    srv = YahooServer()
    run(qtbot, srv.start())
    yield srv
    run(qtbot, srv.stop())


def settings(url: str):
    off = ProviderSettings(enabled=False)
    return replace(FAST, watchlist=WatchlistSettings(symbols=("BTC/USDT", "AAPL", "EUR/USD")),
                   marketdata=MarketDataSettings(coinmarketcap=off, polygon=off, alphavantage=off,
                                                 yahoo=ProviderSettings(priority=40, base_url=url)))


def cell(model, symbol: str, column: str) -> str:
    for row in range(model.rowCount()):
        if model.data(model.index(row, 0), SYMBOL_ROLE) == symbol:
            return model.data(model.index(row, COLUMNS.index(column)))
    raise AssertionError(f"{symbol} is not in the watchlist")


def test_watchlist_rows_priced_by_a_provider_show_where_from_and_how_old(open_window, qtbot, yahoo) -> None:
    window = open_window(settings(yahoo.url))
    model = window.watchlist_model
    assert model.symbols == ["BTC/USDT", "AAPL", "EUR/USD"]
    qtbot.waitUntil(lambda: cell(model, "AAPL", "Last") not in ("—", None), timeout=10_000)
    assert cell(model, "AAPL", "Source").startswith("yahoo · ")
    qtbot.waitUntil(lambda: not window.watchlist.isColumnHidden(COLUMNS.index("Source")), timeout=3_000)
    assert window.watchlist.isColumnHidden(COLUMNS.index("Mkt cap"))  # no CoinMarketCap key: nothing to show
    assert cell(model, "BTC/USDT", "Source") == "sim"
    eur = cell(model, "EUR/USD", "Last")
    assert eur != "—" and len(eur.split(".")[1]) >= 4  # forex keeps the provider's precision
    tip = model.data(model.index(1, COLUMNS.index("Source")), 3)  # ToolTipRole
    assert "No connected exchange lists AAPL" in tip and "Yahoo Finance" in tip


def test_a_row_no_provider_can_price_says_why(open_window, qtbot, yahoo) -> None:
    yahoo.faults.next_status(404, times=None)  # every answer: not found
    window = open_window(settings(yahoo.url))
    model = window.watchlist_model
    qtbot.waitUntil(lambda: cell(model, "AAPL", "Source") == "no price", timeout=15_000)
    tip = model.data(model.index(1, COLUMNS.index("Source")), 3)
    assert tip.startswith("No market-data provider could give a price for AAPL.")


def test_sources_view_lists_every_source_with_age_and_distance_from_the_median(open_window, qtbot, yahoo) -> None:
    window = open_window(settings(yahoo.url))
    panel = window.sources
    model = panel.model
    assert model.rowCount() == 0  # behind another tab: it asks nobody
    window.sources_dock.raise_()

    def column(name: str) -> list[str]:
        return [model.data(model.index(r, SOURCE_COLUMNS.index(name))) for r in range(model.rowCount())]

    qtbot.waitUntil(lambda: model.rowCount() == 2, timeout=10_000)
    assert column("Source") == ["Simulated market", "Yahoo Finance (BTC/USD)"]
    assert column("Type") == ["Exchange", "Provider"]
    a, b = (float(m.removesuffix(" bps")) for m in column("vs median"))
    assert a == pytest.approx(-b, abs=0.011)  # two sources sit either side of their median

    window.show_symbol("AAPL")
    qtbot.waitUntil(lambda: column("Source") == ["Yahoo Finance"], timeout=10_000)
    assert column("Last")[0] not in ("", "—") and column("Age")[0].endswith(("s", "m", "h", "d"))
    assert window.chart.symbol == "AAPL"
    assert window.ticket.symbol == "BTC/USDT"  # a stock priced by a provider is not tradable on this venue

    yahoo.faults.next_status(500, times=None)
    window.runtime.aggregator.cache._data.clear()  # noqa: SLF001 the next refresh must ask again
    panel.refresh()
    qtbot.waitUntil(lambda: model.rowCount() == 1 and model.rows[0].ticker is None, timeout=20_000)
    assert "Yahoo" in column("Bid")[0]  # the reason sits where the price would be

"""MEXC spot: ccxt for REST, the protobuf websocket for live data. MEXC has no testnet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, ClassVar

from app.domain import OrderRequest, Ticker
from app.streams.codecs.mexc import MexcCodec
from app.venues.base import StreamEvent
from app.venues.ccxt_venue import CcxtVenue

class MexcVenue(CcxtVenue):
    exchange_id = "mexc"
    title = "MEXC"
    rest_hosts = ("https://api.mexc.com",)
    has_testnet = False
    ws_base = "wss://wbs-api.mexc.com/ws"
    codec_class = MexcCodec
    channels = ("ticker", "trades", "quotes")  # no klines: MEXC allows 30 topics a connection, 3 per symbol fit 10
    ccxt_options: ClassVar[dict[str, Any]] = {
        "defaultType": "spot",
        "fetchMarkets": {"types": {"spot": True, "swap": {"linear": False, "inverse": False}}},
        "fetchCurrencies": False,
    }

    def order_params(self, request: OrderRequest) -> dict[str, Any]:
        params = super().order_params(request)
        params["newClientOrderId"] = params.pop("clientOrderId")
        return params

    def client_id_lookup_params(self, client_order_id: str) -> dict[str, Any]:
        return {"origClientOrderId": client_order_id}

    async def watch(self, symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:  # type: ignore[override]
        """miniTicker has the last price and 24h statistics but no bid/ask; bookTicker has only bid/ask.
        Quotes are kept per symbol and merged into each ticker, so the watchlist gets one full row."""
        quotes: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        async for event in super().watch(symbols):
            if isinstance(event, Ticker):
                if event.high_24h is None:  # a bookTicker: remember it, it is not a price print
                    quotes[event.symbol] = (event.bid, event.ask)
                    continue
                bid, ask = quotes.get(event.symbol, (None, None))
                event = replace(event, bid=bid, ask=ask)
            yield event

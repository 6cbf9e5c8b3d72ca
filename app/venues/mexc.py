"""MEXC spot: ccxt for REST, the protobuf websocket for live data. MEXC has no testnet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from app.domain import OrderRequest
from app.streams.codecs.mexc import MexcCodec
from app.streams.connection import StreamSpec
from app.venues.ccxt_venue import CcxtVenue

CHANNELS = ("ticker", "trades")


class MexcVenue(CcxtVenue):
    exchange_id = "mexc"
    title = "MEXC"
    rest_hosts = ("https://api.mexc.com",)
    has_testnet = False
    ws_base = "wss://wbs-api.mexc.com/ws"
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

    def codec(self) -> MexcCodec:
        return MexcCodec(self.market_ids())

    def stream_spec(self, codec: MexcCodec, symbols: Sequence[str]) -> StreamSpec:
        interval = codec.interval_seconds("ticker")
        return StreamSpec(
            url=self.config.ws_url or self.ws_base,
            subscribe=codec.subscribe_messages(symbols, CHANNELS),
            silence_after=interval * self.config.silence_multiple,
            app_ping=codec.ping_message,
            app_ping_interval=codec.ping_interval or 20.0,
            label=self.title,
        )

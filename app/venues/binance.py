"""Binance spot: ccxt for REST, combined websocket streams for live data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from app.domain import OrderRequest
from app.streams.codecs.binance import BinanceCodec
from app.streams.connection import StreamSpec
from app.venues.ccxt_venue import CcxtVenue

class BinanceVenue(CcxtVenue):
    exchange_id = "binance"
    title = "Binance"
    rest_hosts = ("https://api.binance.com",)
    ws_base = "wss://stream.binance.com:9443"
    ws_testnet = "wss://stream.testnet.binance.vision"
    codec_class = BinanceCodec
    channels = ("ticker", "trades", "kline")  # final klines correct candles built from trades
    # One GET /api/v3/exchangeInfo for markets: no currencies (needs keys), no margin or derivatives.
    ccxt_options: ClassVar[dict[str, Any]] = {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
    }

    def testnet_hosts(self, exchange: Any) -> tuple[str, ...]:
        return ("https://testnet.binance.vision",)

    def order_params(self, request: OrderRequest) -> dict[str, Any]:
        params = super().order_params(request)
        params["newClientOrderId"] = params.pop("clientOrderId")
        return params

    def client_id_lookup_params(self, client_order_id: str) -> dict[str, Any]:
        return {"origClientOrderId": client_order_id}

    def stream_spec(self, codec: BinanceCodec, symbols: Sequence[str]) -> StreamSpec:
        # Binance names its streams in the URL path (/stream?streams=...) rather than subscribing.
        base = self.ws_url().rstrip("/")
        if base.endswith("/ws") or base.endswith("/stream"):
            base = base.rsplit("/", 1)[0]
        interval = max(codec.interval_seconds(c) for c in self.channels if c != "trades")
        return StreamSpec(
            url=base + codec.stream_path(symbols, self.channels),
            silence_after=interval * self.config.silence_multiple,
            ping_interval=self.config.ping_interval_s,  # Binance pings every 20 s too and expects pongs
            ping_timeout=self.config.ping_interval_s,
            label=self.title,
        )

    @property
    def stale_after(self) -> float:
        return 5.0

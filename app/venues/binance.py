"""Binance spot: ccxt for REST, combined websocket streams for live data.

OCO lists go through ccxt's implicit methods for Binance's order-list endpoints (ccxt 4.5 has no
unified OCO call): `private_post_orderlist_oco` (POST /api/v3/orderList/oco, the endpoint with
above/below legs that replaced the deprecated /api/v3/order/oco) and `private_delete_orderlist`
(DELETE /api/v3/orderList). A sell OCO is aboveType=LIMIT_MAKER + belowType=STOP_LOSS_LIMIT, a buy
OCO aboveType=STOP_LOSS_LIMIT + belowType=LIMIT_MAKER, the two combinations Binance's price rule
names ("The relationship of the prices for the orders is not correct": abovePrice > last >
belowStopPrice, or aboveStopPrice > last > belowPrice). Every id is ours (listClientOrderId,
aboveClientOrderId, belowClientOrderId), so a lost answer is reconciled leg by leg through
GET /api/v3/order?origClientOrderId=..., like any order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

from app.domain import Order, OrderRequest, OrderType, Side
from app.streams.codecs.binance import BinanceCodec
from app.streams.connection import StreamSpec
from app.venues.base import OcoRequest, OrderList
from app.venues.ccxt_venue import CcxtVenue

_CONDITIONAL = ("STOP_LOSS", "TAKE_PROFIT")  # Binance's raw types that wait for a trigger

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

    supports_oco = True

    def testnet_hosts(self, exchange: Any) -> tuple[str, ...]:
        return ("https://testnet.binance.vision",)

    def to_order(self, o: dict[str, Any]) -> Order:
        order = super().to_order(o)
        info = o.get("info") or {}
        raw_type = str(info.get("type") or "")
        if order.type is OrderType.LIMIT and raw_type.startswith(_CONDITIONAL):
            # ccxt calls STOP_LOSS_LIMIT a "limit" order with a trigger price: it is our stop-limit.
            order = replace(order, type=OrderType.STOP_LIMIT)
        if info.get("status") == "EXPIRED" and str(info.get("orderListId", -1)) not in ("-1", ""):
            # Binance expires the other leg of an OCO when one leg fills or triggers; a cancel says CANCELED.
            order = replace(order, reason=order.reason or "Cancelled by Binance: the other order of its OCO list "
                                                          "filled or triggered.")
        return order

    # -- OCO order lists ---------------------------------------------------------------------

    def oco_params(self, request: OcoRequest) -> dict[str, Any]:
        """The POST /api/v3/orderList/oco parameters (see the module docstring)."""
        limit = {"Type": "LIMIT_MAKER", "ClientOrderId": request.limit_client_id, "Price": format(request.price, "f")}
        stop = {"Type": "STOP_LOSS_LIMIT", "ClientOrderId": request.stop_client_id,
                "Price": format(request.stop_limit_price, "f"), "StopPrice": format(request.stop_price, "f"),
                "TimeInForce": "GTC"}
        above, below = (limit, stop) if request.side is Side.SELL else (stop, limit)
        params: dict[str, Any] = {
            "symbol": self._ids[request.symbol],
            "side": request.side.value.upper(),
            "quantity": format(request.amount, "f"),
            "listClientOrderId": request.list_client_id,
            "newOrderRespType": "RESULT",  # each leg's state in orderReports
        }
        params.update({f"above{k}": v for k, v in above.items()})
        params.update({f"below{k}": v for k, v in below.items()})
        return params

    def to_order_list(self, raw: dict[str, Any], symbol: str) -> OrderList:
        """An order-list answer (placement or cancel) with its orderReports, limit leg first."""
        market = self.exchange.market(symbol)
        orders: list[Order] = []
        for report in raw.get("orderReports") or []:
            # A cancel's report carries the cancel request's id in clientOrderId and the leg's in origClientOrderId.
            report = {**report, "clientOrderId": report.get("origClientOrderId") or report.get("clientOrderId")}
            orders.append(self.to_order(self.exchange.parse_order(report, market)))
        orders.sort(key=lambda o: o.type is not OrderType.LIMIT)
        return OrderList(str(raw.get("orderListId", "")), str(raw.get("listClientOrderId") or ""), symbol,
                         tuple(orders))

    async def create_oco(self, request: OcoRequest) -> OrderList:
        """Send the OCO once; a lost answer raises OrderOutcomeUnknown (reconcile the legs by client id)."""
        self._require_keys("Placing an OCO order")
        await self._market(request.symbol)
        params = self.oco_params(request)
        raw = await self._send_once("create OCO", request.list_client_id, "OCO order list",
                                    lambda: self.exchange.private_post_orderlist_oco(params))
        return self.to_order_list(raw, request.symbol)

    async def cancel_order_list(self, list_client_id: str, symbol: str) -> OrderList:
        self._require_keys("Cancelling an OCO order")
        await self._market(symbol)
        params = {"symbol": self._ids[symbol], "listClientOrderId": list_client_id}
        raw = await self._call("cancel order list", lambda: self.exchange.private_delete_orderlist(params))
        return self.to_order_list(raw, symbol)

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

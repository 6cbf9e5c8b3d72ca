"""Gate.io spot: ccxt for REST, the v4 websocket (spot.tickers, spot.trades) for live data."""

from __future__ import annotations

from typing import Any, ClassVar

from app.domain import Order, OrderRequest, OrderType, Side
from app.streams.codecs.gate import GateCodec
from app.venues.base import OrderNotFound, OrderRejected, VenueUnavailable
from app.venues.ccxt_venue import CcxtVenue

class GateVenue(CcxtVenue):
    exchange_id = "gate"
    title = "Gate.io"
    rest_hosts = ("https://api.gateio.ws",)
    ws_base = "wss://api.gateio.ws/ws/v4/"
    ws_testnet = "wss://ws-testnet.gate.com/v4/ws/spot"
    codec_class = GateCodec
    channels = ("ticker", "trades", "kline")  # final klines correct candles built from trades
    ccxt_options: ClassVar[dict[str, Any]] = {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "unifiedAccount": False,  # skips a signed /account/detail probe on every start with keys
    }

    def testnet_hosts(self, exchange: Any) -> tuple[str, ...]:
        return ("https://api-testnet.gateapi.io",)

    def order_params(self, request: OrderRequest) -> dict[str, Any]:
        params = super().order_params(request)
        # Gate keeps a client id in `text`, which must start with "t-".
        cid = params.pop("clientOrderId")
        params["text"] = cid if cid.startswith("t-") else f"t-{cid}"
        return params

    def client_id_lookup_params(self, client_order_id: str) -> dict[str, Any]:
        return {}

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> Order:  # type: ignore[override]
        # Gate accepts the custom text in place of the order id, but finds a FINISHED order by its text
        # only for about a minute. "Not found" is therefore no proof of absence: look in the history,
        # and if it is not there either, stay undecided (never "not placed") so nothing is sent twice.
        text = client_order_id if client_order_id.startswith("t-") else f"t-{client_order_id}"
        try:
            return await self.fetch_order(text, symbol)
        except OrderNotFound:
            for order in await self.fetch_closed_orders(symbol):
                if order.client_order_id in (text, client_order_id):
                    return order
            raise VenueUnavailable(
                f"Gate.io does not find order {text} by its id, and it is not in the recent history either; "
                "it cannot be confirmed either way. Check it on Gate.io before sending it again."
            ) from None

    async def fetch_closed_orders(self, symbol: str) -> list[Order]:
        """Recent finished orders (the order service searches them when a lookup is inconclusive)."""
        self._require_keys("Reading order history")
        raw = await self._call("order history", lambda: self.exchange.fetch_closed_orders(symbol, None, 100))
        return [self.to_order(o) for o in raw]

    async def market_order_price(self, request: OrderRequest) -> str | None:
        # Gate sizes a market buy in quote currency: ccxt needs a price to turn the amount into a cost.
        if request.side is Side.BUY:
            ticker = await self.fetch_ticker(request.symbol)
            return format(ticker.ask or ticker.last, "f")
        return None

    async def create_order(self, request: OrderRequest) -> Order:
        if request.type is OrderType.STOP_LIMIT:
            # Refused on purpose (checked against ccxt 4.5 and Gate's API v4 docs): ccxt's gate createOrder does
            # send a spot stop to POST /spot/price_orders, but (1) the answer is only {"id": n}, in a separate id
            # space that GET/DELETE /spot/orders do not know (every later call needs params trigger=True, and the
            # order that fires gets yet another id, fired_order_id); (2) the documented price-order model has no
            # client id (ccxt puts ours in trigger.text, which Gate does not document), so a lost answer cannot be
            # reconciled by client order id: we could neither prove the stop absent nor avoid sending it twice;
            # (3) ccxt adds trigger.expiration = 86400 s by default, so a "GTC" stop would silently expire after a
            # day. Refusing keeps the journal's never-lose/never-double promise.
            raise OrderRejected("Stop-limit orders are not supported on Gate.io in Meridian yet: Gate keeps them "
                                "apart from ordinary orders, where an order lost on the way could not be checked. "
                                "Place a limit order, or use Binance or MEXC for stops.")
        return await super().create_order(request)


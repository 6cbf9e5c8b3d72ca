"""A local MEXC spot v3 server: REST /api/v3 (Binance-like) and the protobuf websocket.

ccxt is pointed at it with `srv.configure(exchange)`, which sets:
    urls['api']['spot']['public'] = urls['api']['spot']['private'] = rest_url
    urls['api']['contract']['public'] = rest_url + '/api/v1/contract'
    urls['api']['contract']['private'] = rest_url + '/api/v1/private'
    urls['api']['spot2'][*] = rest_url + '/open/api/v2', urls['api']['broker']['private'] = rest_url + '/api/v3/broker'
    urls['api']['ws']['spot'] = ws_url + '/ws'          (ccxt.pro only)
and, with keys=True, apiKey/secret. ccxt 4.5's mexc load_markets() always asks
for swap contracts too (its options['fetchMarkets'] is not consulted), so this
server answers GET /api/v1/contract/detail with the recorded empty list; with
keys set it also calls the signed GET /api/v3/capital/config/getall.

Websocket (any path): {"method": "SUBSCRIPTION" | "UNSUBSCRIPTION", "params": [..], "id": n}
-> {"id": n, "code": 0, "msg": "<topics>"}; {"method": "PING"} -> {"id": 0, "code": 0, "msg": "PONG"}.
Pushes are binary PushDataV3ApiWrapper protobuf, encoded with ccxt's own schemas:
spot@public.kline.v3.api.pb@<SYMBOL>@<Min1..Month1>,
spot@public.aggre.deals.v3.api.pb@<100ms|10ms>@<SYMBOL>,
spot@public.aggre.bookTicker.v3.api.pb@<100ms|10ms>@<SYMBOL>,
spot@public.miniTicker.v3.api.pb@<SYMBOL>@<24H|UTC+8|UTC+0>,
spot@public.aggre.depth.v3.api.pb@<100ms|10ms>@<SYMBOL>.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from ccxt.protobuf.mexc import PushDataV3ApiWrapper_pb2
from google.protobuf.json_format import ParseDict

from . import binance
from .base import (
    MINUTE_MS,
    InsufficientBalance,
    SimOrder,
    VenueServer,
    WsSession,
    dec,
    fixture_json,
    plain_error,
    rescale,
    trade_at,
)

INTERVALS_MIN = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "60m": 60, "4h": 240, "1d": 1440, "1W": 10080}
WS_INTERVALS_MIN = {"Min1": 1, "Min5": 5, "Min15": 15, "Min30": 30, "Min60": 60, "Hour4": 240, "Hour8": 480,
                    "Day1": 1440, "Week1": 10080}
WEEK_ORIGIN_MS = 4 * 1440 * MINUTE_MS
STATUS = {"open": "NEW", "filled": "FILLED", "canceled": "CANCELED"}
TOPIC = re.compile(r"spot@public\.(kline|miniTicker|aggre\.deals|aggre\.bookTicker|aggre\.depth)\.v3\.api\.pb@(.+)")
MINI_TICKER_WINDOWS = ("24H", "UTC+8", "UTC+0")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def recorded() -> dict[str, Any]:
    return fixture_json("mexc/rest-and-decoded-ws.json")


def err(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"msg": msg, "code": code, "_extend": None}, status=status)


def bad_symbol() -> web.Response:
    return err(400, -1121, "Invalid symbol.")


@dataclass(slots=True)
class Topic:
    name: str
    kind: str  # kline | miniTicker | deals | bookTicker | depth
    symbol: str
    interval: str = ""
    cursor: int = 0
    last_open: int | None = None


def parse_topic(name: str) -> Topic | None:
    m = TOPIC.fullmatch(name)
    if m is None:
        return None
    kind, rest = m.group(1).removeprefix("aggre."), m.group(2).split("@")
    if kind == "kline":
        if len(rest) == 2 and rest[1] in WS_INTERVALS_MIN:
            return Topic(name, kind, rest[0], rest[1])
        return None
    if kind == "miniTicker":  # spot@public.miniTicker.v3.api.pb@BTCUSDT@24H: rolling 24h statistics
        if len(rest) == 2 and rest[1] in MINI_TICKER_WINDOWS:
            return Topic(name, kind, rest[0], rest[1])
        return None
    if len(rest) == 2 and rest[0] in ("100ms", "10ms"):
        return Topic(name, kind, rest[1])
    return None


class MexcServer(VenueServer):
    auth_headers = ("X-MEXC-APIKEY",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exchange_info: dict[str, Any] = recorded()["exchangeInfo"]
        self.symbols = {s["symbol"]: s for s in self.exchange_info["symbols"]}
        self._order_ids = itertools.count(self.rng.randrange(10**20, 10**21))

    def configure(self, exchange: Any, *, keys: bool = True) -> Any:
        """Point a ccxt (or ccxt.pro) mexc at this server. See the module docstring."""
        api = exchange.urls["api"]
        api["spot"]["public"] = api["spot"]["private"] = self.rest_url
        api["contract"]["public"] = f"{self.rest_url}/api/v1/contract"
        api["contract"]["private"] = f"{self.rest_url}/api/v1/private"
        api["spot2"]["public"] = api["spot2"]["private"] = f"{self.rest_url}/open/api/v2"
        api["broker"]["private"] = f"{self.rest_url}/api/v3/broker"
        if isinstance(api.get("ws"), dict):
            api["ws"]["spot"] = f"{self.ws_url}/ws"
        if keys:
            exchange.apiKey, exchange.secret = self.api_key, self.secret
        return exchange

    def _quote(self, symbol: str, now: int) -> tuple[str, str, str, str]:
        books = binance.stream_templates()["bookTicker"]  # MEXC has no recorded quotes; Binance's shape them
        t = books[(now // 100) % len(books)]
        live = self.model.price(symbol, now)
        return (self.px(symbol, rescale(t.data["b"], t.ref, live)), t.data["B"],
                self.px(symbol, rescale(t.data["a"], t.ref, live)), t.data["A"])

    # ---- REST: public

    def routes(self, router: web.UrlDispatcher) -> None:
        r = "/api/v3"
        router.add_get(f"{r}/ping", self.ping)
        router.add_get(f"{r}/time", self.server_time)
        router.add_get(f"{r}/exchangeInfo", self.exchange_info_handler)
        router.add_get(f"{r}/ticker/24hr", self.ticker_24hr)
        router.add_get(f"{r}/ticker/bookTicker", self.book_ticker)
        router.add_get(f"{r}/klines", self.klines)
        router.add_get(f"{r}/depth", self.depth)
        router.add_get(f"{r}/trades", self.trades)
        router.add_get(f"{r}/aggTrades", self.agg_trades)
        router.add_get("/api/v1/contract/detail", self.contract_detail)
        router.add_get(f"{r}/capital/config/getall", self._signed(self.currencies))
        router.add_get(f"{r}/account", self._signed(self.account))
        router.add_post(f"{r}/order", self._signed(self.create_order))
        router.add_get(f"{r}/order", self._signed(self.get_order))
        router.add_delete(f"{r}/order", self._signed(self.cancel_order))
        router.add_get(f"{r}/openOrders", self._signed(self.open_orders))

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        if status == 503:  # MEXC's maintenance answer, as quoted in ccxt's mexc.py
            return web.json_response({"code": 500, "message": "Under maintenance, please try again later",
                                      "announcement": "https://www.mexc.com/support/articles/17827791510263"},
                                     status=503)
        return plain_error(status, retry_after)

    def _symbol(self, request: web.Request) -> str | None:
        symbol = request.query.get("symbol", "")
        return symbol if symbol in self.symbols else None

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def server_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def exchange_info_handler(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.exchange_info, serverTime=int(time.time() * 1000)))

    async def contract_detail(self, request: web.Request) -> web.Response:
        return web.json_response(recorded()["contractDetail"])

    def _ticker(self, symbol: str, now: int) -> dict[str, Any]:
        day = self.model.rolling(symbol, now)
        last = self.model.price(symbol, now)
        bid, bid_qty, ask, ask_qty = self._quote(symbol, now)
        return {"symbol": symbol, "priceChange": self.px(symbol, last - day.open),
                "priceChangePercent": f"{(last - day.open) / day.open:.4f}",  # a fraction on MEXC, not percent
                "prevClosePrice": self.px(symbol, day.open), "lastPrice": self.px(symbol, last),
                "bidPrice": bid, "bidQty": bid_qty, "askPrice": ask, "askQty": ask_qty,
                "openPrice": self.px(symbol, day.open), "highPrice": self.px(symbol, day.high),
                "lowPrice": self.px(symbol, day.low), "volume": f"{day.volume:.6f}",
                "quoteVolume": f"{day.quote_volume:.2f}", "openTime": day.open_ms, "closeTime": now, "count": None}

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        now = self.now_ms()
        if "symbol" in request.query:
            symbol = self._symbol(request)
            return web.json_response(self._ticker(symbol, now)) if symbol else bad_symbol()
        return web.json_response([self._ticker(s, now) for s in self.symbols])

    async def book_ticker(self, request: web.Request) -> web.Response:
        now = self.now_ms()
        names = list(self.symbols)
        if "symbol" in request.query:
            symbol = self._symbol(request)
            if symbol is None:
                return bad_symbol()
            names = [symbol]
        rows = [dict(zip(("bidPrice", "bidQty", "askPrice", "askQty"), self._quote(n, now)), symbol=n) for n in names]
        return web.json_response(rows[0] if "symbol" in request.query else rows)

    async def klines(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return bad_symbol()
        q = request.query
        interval = q.get("interval", "")
        if interval not in INTERVALS_MIN:
            return err(400, -1121, "Invalid interval.")
        interval_ms = INTERVALS_MIN[interval] * MINUTE_MS
        now = self.now_ms()
        bars = self.model.bars(symbol, interval_ms, now,
                               start_ms=int(q["startTime"]) if "startTime" in q else None,
                               end_ms=int(q["endTime"]) if "endTime" in q else None,
                               limit=min(int(q.get("limit", 500)), 1000),
                               origin_ms=WEEK_ORIGIN_MS if interval == "1W" else 0)
        # MEXC's close time is the next candle's open, not open + interval - 1 as on Binance.
        return web.json_response([[b.open_ms, self.px(symbol, b.open), self.px(symbol, b.high),
                                   self.px(symbol, b.low), self.px(symbol, b.close), f"{b.volume:.6f}",
                                   b.open_ms + interval_ms, f"{b.quote_volume:.2f}"] for b in bars])

    async def depth(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return bad_symbol()
        limit = min(int(request.query.get("limit", 100)), 5000)
        now = self.now_ms()
        t = binance.depth_template()
        live = self.model.price(symbol, now)
        return web.json_response({"lastUpdateId": self.update_id(symbol),
                                  "bids": self.levels(symbol, t.data["bids"][:limit], t.ref, live),
                                  "asks": self.levels(symbol, t.data["asks"][:limit], t.ref, live),
                                  "timestamp": now})

    def _recent(self, request: web.Request) -> range:
        last = self.now_ms() // 1000
        limit = min(int(request.query.get("limit", 500)), 1000)
        return range(last - limit + 1, last + 1)

    async def trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return bad_symbol()
        rows = []
        for i in reversed(self._recent(request)):  # newest first, like MEXC
            t, price, amount, maker = trade_at(self.model, symbol, i)
            rows.append({"id": None, "price": self.px(symbol, price), "qty": f"{amount:.6f}",
                         "quoteQty": f"{price * amount:.2f}", "time": t, "isBuyerMaker": maker,
                         "isBestMatch": True, "tradeType": "ASK" if maker else "BID"})
        return web.json_response(rows)

    async def agg_trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return bad_symbol()
        rows = []
        for i in self._recent(request):
            t, price, amount, maker = trade_at(self.model, symbol, i)
            rows.append({"a": None, "f": None, "l": None, "p": self.px(symbol, price), "q": f"{amount:.6f}",
                         "T": t, "m": maker, "M": True})
        return web.json_response(rows)

    # ---- REST: signed (HMAC-SHA256 of the query string, X-MEXC-APIKEY)

    def _signed(self, handler: Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            key = request.headers.get("X-MEXC-APIKEY")
            if not key or not hmac.compare_digest(key, self.api_key):
                return err(400, 700001, "API-key format invalid.")
            query, body = request.rel_url.raw_query_string, await request.text()
            params = dict(parse_qsl(query)) | dict(parse_qsl(body))
            signature = params.pop("signature", "")
            total = "".join("&".join(p for p in part.split("&") if p and not p.startswith("signature="))
                            for part in (query, body))
            expected = hmac.new(self.secret.encode(), total.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(signature, expected):
                return err(400, 700002, "Signature for this request is not valid.")
            stamp = int(params.get("timestamp", 0))
            if abs(time.time() * 1000 - stamp) > int(params.get("recvWindow", 5000)):
                return err(400, 700003, "Timestamp for this request is outside of the recvWindow.")
            return await handler(request, params)

        return checked

    async def currencies(self, request: web.Request, p: dict[str, str]) -> web.Response:
        coins = sorted({s[k] for s in self.symbols.values() for k in ("baseAsset", "quoteAsset")})
        return web.json_response([{"coin": c, "name": c, "networkList": [
            {"coin": c, "depositEnable": True, "withdrawEnable": True, "name": c, "netWork": c, "network": c,
             "withdrawFee": "0", "withdrawMin": "0", "withdrawMax": "1000000", "contract": ""}]} for c in coins])

    async def account(self, request: web.Request, p: dict[str, str]) -> web.Response:
        return web.json_response({
            "makerCommission": None, "takerCommission": None, "buyerCommission": None, "sellerCommission": None,
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "updateTime": None, "accountType": "SPOT",
            "balances": [{"asset": a, "free": dec(self.ledger.free[a]), "locked": dec(self.ledger.locked[a])}
                         for a in self.ledger.assets()],
            "permissions": ["SPOT"]})

    def _order_json(self, o: SimOrder) -> dict[str, Any]:
        return {"symbol": o.symbol, "orderId": o.id, "orderListId": "-1", "clientOrderId": o.client_id,
                "price": dec(o.price), "origQty": dec(o.amount), "executedQty": dec(o.filled),
                "cummulativeQuoteQty": dec(o.cost), "status": STATUS[o.status], "timeInForce": "",
                "type": o.type.upper(), "side": o.side.upper(), "stopPrice": "", "icebergQty": "",
                "time": o.created_ms, "updateTime": o.updated_ms, "isWorking": True, "origQuoteOrderQty": ""}

    async def create_order(self, request: web.Request, p: dict[str, str]) -> web.Response:
        info = self.symbols.get(p.get("symbol", ""))
        if info is None:
            return bad_symbol()
        kind, side = p.get("type", "").upper(), p.get("side", "").upper()
        if kind not in ("LIMIT", "MARKET", "LIMIT_MAKER") or side not in ("BUY", "SELL"):
            return err(400, 700008, "Illegal characters found in parameter.")
        now = self.now_ms()
        try:
            qty = Decimal(p["quantity"])
            price = Decimal(p["price"]) if kind != "MARKET" else Decimal(self.px(info["symbol"],
                                                                                  self.model.price(info["symbol"], now)))
        except (KeyError, InvalidOperation):
            return err(400, 700004, "Mandatory parameter was not sent, was empty/null, or malformed.")
        order = SimOrder(f"C02__{next(self._order_ids)}", p.get("newClientOrderId", ""), info["symbol"],
                         info["baseAsset"], info["quoteAsset"], side.lower(), "market" if kind == "MARKET" else "limit",
                         price, qty, now)
        try:
            self.ledger.place(order, unique_client_id=False)  # MEXC's duplicate rule is undocumented; not enforced
        except InsufficientBalance:
            return err(400, 30004, "Insufficient position")
        return web.json_response({"symbol": order.symbol, "orderId": order.id, "orderListId": -1,
                                  "price": dec(order.price), "origQty": dec(order.amount), "type": kind,
                                  "side": side, "transactTime": now})

    def _find(self, p: dict[str, str]) -> SimOrder | web.Response:
        if "orderId" not in p and "origClientOrderId" not in p:
            return err(400, 700004, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if p.get("symbol") not in self.symbols:
            return bad_symbol()
        order = self.ledger.find(p.get("orderId"), p.get("origClientOrderId") if "orderId" not in p else None)
        if order is None or order.symbol != p["symbol"]:
            return err(400, -2013, "Order does not exist.")
        return order

    async def get_order(self, request: web.Request, p: dict[str, str]) -> web.Response:
        found = self._find(p)
        return found if isinstance(found, web.Response) else web.json_response(self._order_json(found))

    async def cancel_order(self, request: web.Request, p: dict[str, str]) -> web.Response:
        found = self._find(p)
        if isinstance(found, web.Response):
            return found
        if not found.is_open:
            return err(400, -2011, "Unknown order sent.")
        self.ledger.cancel(found, self.now_ms())
        body = self._order_json(found)
        return web.json_response({k: body[k] for k in ("symbol", "orderId", "price", "origQty", "executedQty",
                                                       "cummulativeQuoteQty", "status", "timeInForce", "type", "side")}
                                 | {"origClientOrderId": found.client_id, "clientOrderId": found.client_id})

    async def open_orders(self, request: web.Request, p: dict[str, str]) -> web.Response:
        if p.get("symbol") not in self.symbols:
            return bad_symbol()
        return web.json_response([self._order_json(o) for o in self.ledger.open_orders(p["symbol"])])

    # ---- websocket

    async def ws_message(self, session: WsSession, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
            method = str(msg["method"]).upper()  # ccxt.pro sends "ping" in lower case
        except (ValueError, KeyError, TypeError):
            await self.send(session, json.dumps({"id": 0, "code": 0, "msg": "Wrong format"}))
            return
        req_id = msg.get("id", 0)
        if method == "PING":
            await self.send_pong(session, json.dumps({"id": req_id, "code": 0, "msg": "PONG"}))
            return
        if method not in ("SUBSCRIPTION", "UNSUBSCRIPTION"):
            await self.send(session, json.dumps({"id": req_id, "code": 0, "msg": "Wrong format"}))
            return
        params = msg.get("params", [])
        topics = [(name, parse_topic(name)) for name in params]
        bad = [name for name, topic in topics if topic is None or topic.symbol not in self.symbols]
        if bad:
            await self.send(session, json.dumps({"id": req_id, "code": 0,
                                                 "msg": f"Not Subscribed successfully! [{','.join(bad)}].  "
                                                        "Reason： Blocked! "}))
            return
        await self.send(session, json.dumps({"id": req_id, "code": 0, "msg": ",".join(params)}))
        for name, topic in topics:
            if method == "SUBSCRIPTION":
                session.subs.setdefault(name, topic)
            else:
                session.subs.pop(name, None)

    def ws_frames(self, session: WsSession) -> list[str | bytes]:
        now = self.now_ms()
        frames: list[str | bytes] = []
        for topic in list(session.subs.values()):
            for decoded in self._push(topic, now):
                frames.append(ParseDict(decoded, PushDataV3ApiWrapper_pb2.PushDataV3ApiWrapper()).SerializeToString())
        return frames

    def _wrapper(self, topic: Topic, now: int, time_key: str) -> dict[str, Any]:
        symbol_id = recorded()["ws_kline_pb_decoded"]["symbolId"] if topic.symbol == "BTCUSDT" \
            else hashlib.md5(topic.symbol.encode()).hexdigest()
        return {"channel": topic.name, "symbol": topic.symbol, "symbolId": symbol_id, time_key: str(now)}

    def _push(self, topic: Topic, now: int) -> list[dict[str, Any]]:
        sym, live = topic.symbol, self.model.price(topic.symbol, now)
        if topic.kind == "kline":
            return self._kline_push(topic, now)
        if topic.kind == "deals":
            _, _, amount, maker = trade_at(self.model, sym, now // 1000)
            return [self._wrapper(topic, now, "sendTime") | {"publicAggreDeals": {
                "deals": [{"price": self.px(sym, live), "quantity": f"{amount:.8f}",
                           "tradeType": 2 if maker else 1, "time": str(now)}],  # 1 buy, 2 sell
                "eventType": topic.name.rsplit("@", 1)[0]}}]
        if topic.kind == "miniTicker":
            day = self.model.bar(sym, now - 1440 * MINUTE_MS, 1440 * MINUTE_MS, now)
            assert day is not None
            rate = (live - day.open) / day.open if day.open else 0.0  # a fraction, as MEXC sends it
            return [self._wrapper(topic, now, "sendTime") | {"publicMiniTicker": {
                "symbol": sym, "price": self.px(sym, live), "rate": f"{rate:.4f}", "zonedRate": f"{rate:.4f}",
                "high": self.px(sym, max(day.high, live)), "low": self.px(sym, min(day.low, live)),
                "volume": f"{day.quote_volume:.2f}", "quantity": f"{day.volume:.8f}"}}]
        if topic.kind == "bookTicker":
            bid, bid_qty, ask, ask_qty = self._quote(sym, now)
            return [self._wrapper(topic, now, "sendTime") | {"publicAggreBookTicker": {
                "bidPrice": bid, "bidQuantity": bid_qty, "askPrice": ask, "askQuantity": ask_qty}}]
        templates = binance.stream_templates()["depth"]  # no recorded MEXC depth; Binance's diffs give the shape
        t = templates[topic.cursor % len(templates)]
        topic.cursor += 1
        first = self.update_id(sym) + 1
        last = self.update_id(sym, t.data["u"] - t.data["U"] + 1)
        return [self._wrapper(topic, now, "sendTime") | {"publicAggreDepths": {
            "asks": [{"price": p, "quantity": q} for p, q in self.levels(sym, t.data["a"], t.ref, live)],
            "bids": [{"price": p, "quantity": q} for p, q in self.levels(sym, t.data["b"], t.ref, live)],
            "eventType": topic.name.rsplit("@", 1)[0], "fromVersion": str(first), "toVersion": str(last)}}]

    def _kline_push(self, topic: Topic, now: int) -> list[dict[str, Any]]:
        """The forming candle; when a new one starts, first the final push of the last one."""
        interval_ms = WS_INTERVALS_MIN[topic.interval] * MINUTE_MS
        origin = WEEK_ORIGIN_MS if topic.interval == "Week1" else 0
        open_ms = now - (now - origin) % interval_ms
        opens = [open_ms] if topic.last_open in (None, open_ms) else [topic.last_open, open_ms]
        topic.last_open = open_ms
        out = []
        for o in opens:
            bar = self.model.bar(topic.symbol, o, interval_ms, now)
            assert bar is not None
            out.append(self._wrapper(topic, now, "createTime") | {"publicSpotKline": {
                "interval": topic.interval, "windowStart": str(o // 1000),
                "openingPrice": self.px(topic.symbol, bar.open), "closingPrice": self.px(topic.symbol, bar.close),
                "highestPrice": self.px(topic.symbol, bar.high), "lowestPrice": self.px(topic.symbol, bar.low),
                "volume": f"{bar.volume:.8f}", "amount": f"{bar.quote_volume:.2f}",
                "windowEnd": str((o + interval_ms) // 1000)}})
        return out

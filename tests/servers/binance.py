"""A local Binance spot server: REST /api/v3 and the market-data websocket streams.

ccxt (async_support and pro) is pointed at it with `srv.configure(exchange)`,
which sets:
    urls['api']['public'] = urls['api']['private'] = rest_url + '/api/v3'
    urls['api']['ws']['spot'] = ws_url + '/ws'          (ccxt.pro only)
    options['fetchMarkets'] = {'types': ['spot']}, options['fetchCurrencies'] = False,
    options['fetchMargins'] = False                      (load_markets = one GET /api/v3/exchangeInfo)
and, with keys=True, apiKey/secret = API_KEY/API_SECRET.

Websocket: `/stream?streams=a/b` (combined: {"stream": .., "data": ..}) and
`/ws`, `/ws/<stream>` (raw payloads, what ccxt.pro uses), both taking
{"method": "SUBSCRIBE" | "UNSUBSCRIBE" | "LIST_SUBSCRIPTIONS", "params": [..], "id": n}.
Streams: <symbol>@trade, @aggTrade, @bookTicker, @depth, @depth@100ms,
@depth5/10/20[@100ms], @kline_<interval>, @ticker, @miniTicker.

OCO order lists (POST /api/v3/orderList/oco, DELETE /api/v3/orderList, and a leg through
DELETE /api/v3/order, which cancels the whole list) speak Binance's documented format: above/below
legs, LIMIT_MAKER + STOP_LOSS_LIMIT (the limit leg above for a sell, below for a buy), the price rule
against the last traded price, one reservation for the list, responses with `orders` and
`orderReports`. The legs are ordinary orders to GET /api/v3/order and /openOrders (with their
`orderListId`). There is no matching engine: a test fills or triggers a leg with `oco_fill` /
`oco_trigger`, and the other leg then EXPIRES, as on Binance. `drop_oco_answers = n` makes the
server accept the next n lists and then drop the connection without answering.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from .base import (
    FIXTURES,
    MINUTE_MS,
    DuplicateClientId,
    InsufficientBalance,
    SimOrder,
    Template,
    VenueServer,
    WsSession,
    fixture_json,
    plain_error,
    read_capture,
    rescale,
    trade_at,
)

STREAM_CAPTURE = FIXTURES / "binance" / "stream-capture-2021-10-12.log"
DEPTH_CAPTURE = FIXTURES / "binance" / "rest-capture-2021-10-12.log"
FULL_EXCHANGE_INFO = FIXTURES / "binance" / "exchangeInfo-capture-2021-10-12.log"

INTERVALS_MIN = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240,
                 "6h": 360, "8h": 480, "12h": 720, "1d": 1440, "3d": 4320, "1w": 10080}
WEEK_ORIGIN_MS = 4 * 1440 * MINUTE_MS  # Binance weeks open on Monday; 1970-01-05 was one
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)
STATUS = {"open": "NEW", "filled": "FILLED", "canceled": "CANCELED", "expired": "EXPIRED"}
OCO_ABOVE_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS", "LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
OCO_BELOW_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT", "LIMIT_MAKER")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@cache
def stream_templates() -> dict[str, tuple[Template, ...]]:
    """Recorded frames by kind (depth, bookTicker, aggTrade, kline), in recorded order."""
    mids: dict[str, float] = {}
    out: dict[str, list[Template]] = {}
    for rec in read_capture(STREAM_CAPTURE):
        if not rec.payload:
            continue
        msg = json.loads(rec.payload)
        kind, data = msg["stream"].split("@", 1)[1], msg["data"]
        sym = data["s"]
        if kind == "bookTicker":
            mids[sym] = (float(data["b"]) + float(data["a"])) / 2
        elif kind == "aggTrade":
            mids.setdefault(sym, float(data["p"]))
        elif kind.startswith("kline"):
            mids.setdefault(sym, float(data["k"]["c"]))
        elif sym not in mids:
            tops = [float(side[0][0]) for side in (data["b"], data["a"]) if side]
            mids[sym] = sum(tops) / len(tops)
        key = "depth" if kind.startswith("depth") else "kline" if kind.startswith("kline") else kind
        out.setdefault(key, []).append(Template(data, mids[sym]))
    return {k: tuple(v) for k, v in out.items()}


@cache
def depth_template() -> Template:
    """The recorded 1000-level NKNUSDT snapshot, the shape of every REST book here."""
    book = json.loads(read_capture(DEPTH_CAPTURE)[0].payload)
    return Template(book, (float(book["bids"][0][0]) + float(book["asks"][0][0])) / 2)


@cache
def full_exchange_info_capture() -> dict[str, Any]:
    return json.loads(read_capture(FULL_EXCHANGE_INFO)[0].payload)


@dataclass(slots=True)
class Stream:
    name: str
    symbol: str
    kind: str  # trade | aggTrade | bookTicker | depth | partial | kline | ticker | miniTicker
    interval: str = ""
    levels: int = 0
    cursor: int = 0
    last_open: int | None = None  # kline: the candle last pushed, to push its close once


def parse_stream(name: str) -> Stream | None:
    sym, _, kind = name.partition("@")
    if not re.fullmatch(r"[a-z0-9]+", sym):
        return None
    symbol = sym.upper()
    if kind in ("trade", "aggTrade", "bookTicker", "ticker", "miniTicker", "depth", "depth@100ms", "depth@1000ms"):
        return Stream(name, symbol, kind.partition("@")[0])
    if (m := re.fullmatch(r"depth(5|10|20)(@100ms|@1000ms)?", kind)) is not None:
        return Stream(name, symbol, "partial", levels=int(m.group(1)))
    if kind.startswith("kline_") and kind[6:] in INTERVALS_MIN:
        return Stream(name, symbol, "kline", interval=kind[6:])
    return None


@dataclass(eq=False)
class OcoLeg(SimOrder):
    """One leg of an order list: type "limit_maker" or "stop_loss_limit" (Binance's type, lower case)."""

    list_id: int = -1
    stop_price: Decimal = Decimal(0)
    triggered: bool = False


@dataclass(eq=False)
class OrderListRecord:
    id: int
    client_id: str
    symbol: str
    legs: list[OcoLeg]  # Binance's order: the below leg, then the above leg
    asset: str  # what the list holds locked, once for both legs
    locked: Decimal
    created_ms: int
    updated_ms: int = 0
    cancel_ids: dict[str, str] = field(default_factory=dict)  # leg client id -> the cancel request's id

    @property
    def executing(self) -> bool:
        return any(leg.is_open for leg in self.legs)


def err(status: int, code: int, msg: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def bad_symbol() -> web.Response:
    return err(400, -1121, "Invalid symbol.")


def missing(name: str) -> web.Response:
    return err(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


class BinanceServer(VenueServer):
    auth_headers = ("X-MBX-APIKEY",)
    price_pad = 8

    def __init__(self, *, full_exchange_info: bool = False, **kwargs: Any) -> None:
        """full_exchange_info: serve the real 1,695-symbol capture instead of the two-symbol body."""
        super().__init__(**kwargs)
        # Parsed once per process and shared: nothing here mutates it.
        self.exchange_info: dict[str, Any] = full_exchange_info_capture() if full_exchange_info \
            else fixture_json("binance/rest-responses.json")["exchangeInfo"]
        self.symbols = {s["symbol"]: s for s in self.exchange_info["symbols"]}
        self._order_ids = itertools.count(self.rng.randrange(10**9, 10**10))
        self._trade_ids: dict[str, int] = {}
        self._list_ids = itertools.count(self.rng.randrange(10**5, 10**6))
        self.order_lists: dict[int, OrderListRecord] = {}
        self.drop_oco_answers = 0  # accept the next n lists, then drop the connection instead of answering

    # ---- ccxt

    def configure(self, exchange: Any, *, keys: bool = True) -> Any:
        """Point a ccxt (or ccxt.pro) binance at this server. See the module docstring."""
        api = exchange.urls["api"]
        api["public"] = api["private"] = f"{self.rest_url}/api/v3"
        if isinstance(api.get("ws"), dict):
            api["ws"]["spot"] = f"{self.ws_url}/ws"
        exchange.options["fetchMarkets"] = {"types": ["spot"]}
        exchange.options["fetchCurrencies"] = False
        exchange.options["fetchMargins"] = False
        if keys:
            exchange.apiKey, exchange.secret = self.api_key, self.secret
        return exchange

    # ---- helpers shared by REST and websocket

    def _quote(self, symbol: str, now: int) -> tuple[str, str, str, str]:
        """Best bid/ask at `now`: the model price with a recorded bookTicker's spread and sizes."""
        books = stream_templates()["bookTicker"]
        t = books[(now // 100) % len(books)]
        live = self.model.price(symbol, now)
        return (self.px(symbol, rescale(t.data["b"], t.ref, live)), t.data["B"],
                self.px(symbol, rescale(t.data["a"], t.ref, live)), t.data["A"])

    def _book(self, symbol: str, now: int, limit: int) -> dict[str, Any]:
        t = depth_template()
        live = self.model.price(symbol, now)
        return {"lastUpdateId": self.update_id(symbol),
                "bids": self.levels(symbol, t.data["bids"][:limit], t.ref, live),
                "asks": self.levels(symbol, t.data["asks"][:limit], t.ref, live)}

    def _ticker(self, symbol: str, now: int) -> dict[str, Any]:
        day = self.model.rolling(symbol, now)
        last = self.model.price(symbol, now)
        bid, bid_qty, ask, ask_qty = self._quote(symbol, now)
        first_id, last_id = day.open_ms // 1000, now // 1000
        return {
            "symbol": symbol,
            "priceChange": self.px(symbol, last - day.open),
            "priceChangePercent": f"{(last - day.open) / day.open * 100:.3f}",
            "weightedAvgPrice": self.px(symbol, day.quote_volume / day.volume if day.volume else last),
            "prevClosePrice": self.px(symbol, day.open),
            "lastPrice": self.px(symbol, last),
            "lastQty": f"{trade_at(self.model, symbol, last_id)[2]:.8f}",
            "bidPrice": bid, "bidQty": bid_qty, "askPrice": ask, "askQty": ask_qty,
            "openPrice": self.px(symbol, day.open),
            "highPrice": self.px(symbol, day.high),
            "lowPrice": self.px(symbol, day.low),
            "volume": f"{day.volume:.8f}",
            "quoteVolume": f"{day.quote_volume:.8f}",
            "openTime": day.open_ms, "closeTime": now,
            "firstId": first_id, "lastId": last_id, "count": last_id - first_id + 1,
        }

    def _kline(self, symbol: str, interval: str, open_ms: int, now: int) -> list[Any] | None:
        bar = self.model.bar(symbol, open_ms, INTERVALS_MIN[interval] * MINUTE_MS, now)
        if bar is None:
            return None
        first, last = open_ms // 1000, min(now, bar.close_ms) // 1000
        return [bar.open_ms, self.px(symbol, bar.open), self.px(symbol, bar.high), self.px(symbol, bar.low),
                self.px(symbol, bar.close), f"{bar.volume:.8f}", bar.close_ms, f"{bar.quote_volume:.8f}",
                last - first + 1, f"{bar.volume / 2:.8f}", f"{bar.quote_volume / 2:.8f}", "0"]

    # ---- REST: public

    def routes(self, router: web.UrlDispatcher) -> None:
        r = "/api/v3"
        router.add_get(f"{r}/ping", self.ping)
        router.add_get(f"{r}/time", self.server_time)
        router.add_get(f"{r}/exchangeInfo", self.exchange_info_handler)
        router.add_get(f"{r}/ticker/24hr", self.ticker_24hr)
        router.add_get(f"{r}/ticker/bookTicker", self.book_ticker)
        router.add_get(f"{r}/ticker/price", self.ticker_price)
        router.add_get(f"{r}/klines", self.klines)
        router.add_get(f"{r}/depth", self.depth)
        router.add_get(f"{r}/aggTrades", self.agg_trades)
        router.add_get(f"{r}/trades", self.trades)
        router.add_get(f"{r}/account", self._signed(self.account))
        router.add_post(f"{r}/order", self._signed(self.create_order))
        router.add_get(f"{r}/order", self._signed(self.get_order))
        router.add_delete(f"{r}/order", self._signed(self.cancel_order))
        router.add_get(f"{r}/openOrders", self._signed(self.open_orders))
        router.add_post(f"{r}/orderList/oco", self._signed(self.create_oco))
        router.add_delete(f"{r}/orderList", self._signed(self.cancel_order_list))

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        if status == 429:
            return err(429, -1003, "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per "
                       "minute. Please use the websocket for live updates to avoid polling the API.", retry_after)
        if status == 418:
            until = int(time.time() * 1000 + (retry_after or 0) * 1000)
            return err(418, -1003, f"Way too many requests; IP(127.0.0.1) banned until {until}. "
                       "Please use the websocket for live updates to avoid bans.", retry_after)
        if status == 500:
            return err(status, -1001, "Internal error; unable to process your request. Please try again.", retry_after)
        return plain_error(status, retry_after)  # 502/503/504 come from the CDN in front of the API

    def _symbol(self, request: web.Request) -> str | None:
        symbol = request.query.get("symbol", "")
        return symbol if symbol in self.symbols else None

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def server_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def exchange_info_handler(self, request: web.Request) -> web.Response:
        wanted = request.query.get("symbol")
        wanted_list = json.loads(request.query["symbols"]) if "symbols" in request.query else None
        body = dict(self.exchange_info, serverTime=int(time.time() * 1000))
        if wanted is not None or wanted_list is not None:
            names = [wanted] if wanted is not None else wanted_list
            if any(n not in self.symbols for n in names):
                return bad_symbol()
            body["symbols"] = [self.symbols[n] for n in names]
        return web.json_response(body)

    def _symbols_param(self, request: web.Request) -> list[str] | web.Response:
        if "symbol" in request.query:
            symbol = self._symbol(request)
            return [symbol] if symbol else bad_symbol()
        if "symbols" in request.query:
            names = json.loads(request.query["symbols"])
            return names if all(n in self.symbols for n in names) else bad_symbol()
        return list(self.symbols)

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        names = self._symbols_param(request)
        if isinstance(names, web.Response):
            return names
        now = self.now_ms()
        tickers = [self._ticker(n, now) for n in names]
        return web.json_response(tickers[0] if "symbol" in request.query else tickers)

    async def book_ticker(self, request: web.Request) -> web.Response:
        names = self._symbols_param(request)
        if isinstance(names, web.Response):
            return names
        now = self.now_ms()
        rows = []
        for n in names:
            bid, bid_qty, ask, ask_qty = self._quote(n, now)
            rows.append({"symbol": n, "bidPrice": bid, "bidQty": bid_qty, "askPrice": ask, "askQty": ask_qty})
        return web.json_response(rows[0] if "symbol" in request.query else rows)

    async def ticker_price(self, request: web.Request) -> web.Response:
        names = self._symbols_param(request)
        if isinstance(names, web.Response):
            return names
        now = self.now_ms()
        rows = [{"symbol": n, "price": self.px(n, self.model.price(n, now))} for n in names]
        return web.json_response(rows[0] if "symbol" in request.query else rows)

    async def klines(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return bad_symbol() if "symbol" in request.query else missing("symbol")
        interval = request.query.get("interval")
        if interval not in INTERVALS_MIN:
            return err(400, -1120, "Invalid interval.") if interval else missing("interval")
        q = request.query
        limit = min(int(q.get("limit", 500)), 1000)
        now = self.now_ms()
        bars = self.model.bars(
            symbol, INTERVALS_MIN[interval] * MINUTE_MS, now,
            start_ms=int(q["startTime"]) if "startTime" in q else None,
            end_ms=int(q["endTime"]) if "endTime" in q else None,
            limit=limit, origin_ms=WEEK_ORIGIN_MS if interval == "1w" else 0)
        return web.json_response([self._kline(symbol, interval, b.open_ms, now) for b in bars])

    async def depth(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return bad_symbol() if "symbol" in request.query else missing("symbol")
        limit = int(request.query.get("limit", 100))
        if limit not in DEPTH_LIMITS:
            return err(400, -1100, "Illegal characters found in parameter 'limit'; legal range is "
                       f"'{', '.join(map(str, DEPTH_LIMITS))}'.")
        return web.json_response(self._book(symbol, self.now_ms(), limit))

    def _trade_range(self, request: web.Request, now: int) -> range:
        """Public trades are the model's one-per-second trades; ids are their seconds."""
        q = request.query
        limit = min(int(q.get("limit", 500)), 1000)
        last = now // 1000
        if "fromId" in q:
            first = int(q["fromId"])
            return range(first, min(first + limit, last + 1))
        if "startTime" in q or "endTime" in q:
            end = min(int(q.get("endTime", now)), now) // 1000
            start = int(q["startTime"]) // 1000 if "startTime" in q else end - limit + 1
            return range(start, min(end + 1, start + limit))
        return range(last - limit + 1, last + 1)

    async def agg_trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return bad_symbol()
        rows = []
        for i in self._trade_range(request, self.now_ms()):
            t, price, amount, maker = trade_at(self.model, symbol, i)
            rows.append({"a": i, "p": self.px(symbol, price), "q": f"{amount:.8f}", "f": i, "l": i,
                         "T": t, "m": maker, "M": True})
        return web.json_response(rows)

    async def trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return bad_symbol()
        rows = []
        for i in self._trade_range(request, self.now_ms()):
            t, price, amount, maker = trade_at(self.model, symbol, i)
            rows.append({"id": i, "price": self.px(symbol, price), "qty": f"{amount:.8f}",
                         "quoteQty": f"{price * amount:.8f}", "time": t, "isBuyerMaker": maker, "isBestMatch": True})
        return web.json_response(rows)

    # ---- REST: signed

    def _signed(self, handler: Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            key = request.headers.get("X-MBX-APIKEY")
            if not key:
                return err(401, -2014, "API-key format invalid.")
            if not hmac.compare_digest(key, self.api_key):
                return err(401, -2015, "Invalid API-key, IP, or permissions for action.")
            query, body = request.rel_url.raw_query_string, await request.text()
            params = dict(parse_qsl(query)) | dict(parse_qsl(body))
            signature = params.pop("signature", None)
            if not signature:
                return missing("signature")
            # totalParams = query string + body, each without its signature, as Binance signs them
            total = "".join("&".join(p for p in part.split("&") if p and not p.startswith("signature="))
                            for part in (query, body))
            expected = hmac.new(self.secret.encode(), total.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(signature, expected):
                return err(400, -1022, "Signature for this request is not valid.")
            if "timestamp" not in params:
                return missing("timestamp")
            server_ms, stamp = int(time.time() * 1000), int(params["timestamp"])
            if stamp >= server_ms + 1000:
                return err(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
            if server_ms - stamp > int(params.get("recvWindow", 5000)):
                return err(400, -1021, "Timestamp for this request is outside of the recvWindow.")
            return await handler(request, params)

        return checked

    async def account(self, request: web.Request, params: dict[str, str]) -> web.Response:
        body = dict(fixture_json("binance/rest-responses.json")["account"])
        body["updateTime"] = self.now_ms()
        body["balances"] = [{"asset": a, "free": f"{self.ledger.free[a]:.8f}", "locked": f"{self.ledger.locked[a]:.8f}"}
                            for a in self.ledger.assets()]
        return web.json_response(body)

    def _order_json(self, o: SimOrder, *, resp_type: str = "QUERY") -> dict[str, Any]:
        leg = o if isinstance(o, OcoLeg) else None
        body: dict[str, Any] = {"symbol": o.symbol, "orderId": int(o.id), "orderListId": leg.list_id if leg else -1,
                                "clientOrderId": o.client_id}
        if resp_type == "ACK":
            return body | {"transactTime": o.created_ms}
        status = "PARTIALLY_FILLED" if o.status == "open" and o.filled > 0 else STATUS[o.status]
        body |= {"price": f"{o.price:.8f}" if o.type != "market" else "0.00000000",
                 "origQty": f"{o.amount:.8f}", "executedQty": f"{o.filled:.8f}",
                 "cummulativeQuoteQty": f"{o.cost:.8f}", "status": status,
                 "timeInForce": o.time_in_force, "type": o.type.upper(), "side": o.side.upper()}
        stop = f"{leg.stop_price:.8f}" if leg is not None and leg.type == "stop_loss_limit" else "0.00000000"
        if resp_type != "QUERY" and leg is not None and leg.type == "stop_loss_limit":
            body["stopPrice"] = stop  # a conditional field: only stop orders carry it in placement answers
        if resp_type == "QUERY":
            return body | {"stopPrice": stop, "icebergQty": "0.00000000", "time": o.created_ms,
                           "updateTime": o.updated_ms, "isWorking": True, "workingTime": o.created_ms,
                           "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "EXPIRE_MAKER"}
        body = {**body, "transactTime": o.created_ms, "workingTime": o.created_ms,
                "selfTradePreventionMode": "EXPIRE_MAKER"}
        if resp_type == "FULL":
            body["fills"] = [] if o.status != "filled" else [
                {"price": f"{o.cost / o.amount:.8f}", "qty": f"{o.amount:.8f}", "commission": "0.00000000",
                 "commissionAsset": o.base if o.side == "buy" else o.quote, "tradeId": o.created_ms}]
        return body

    def _filter_failure(self, info: dict[str, Any], qty: Decimal, price: Decimal | None) -> str | None:
        for f in info.get("filters", []):
            kind = f["filterType"]
            if kind == "LOT_SIZE" and qty < Decimal(f["minQty"]):
                return "LOT_SIZE"
            if kind in ("NOTIONAL", "MIN_NOTIONAL") and price is not None and price * qty < Decimal(f["minNotional"]):
                return kind
        return None

    async def create_order(self, request: web.Request, p: dict[str, str]) -> web.Response:
        for name in ("symbol", "side", "type"):
            if not p.get(name):
                return missing(name)
        info = self.symbols.get(p["symbol"])
        if info is None:
            return bad_symbol()
        kind, side = p["type"].upper(), p["side"].upper()
        if kind not in ("LIMIT", "MARKET") or side not in ("BUY", "SELL"):
            return err(400, -1116 if kind not in ("LIMIT", "MARKET") else -1117,
                       "Invalid orderType." if kind not in ("LIMIT", "MARKET") else "Invalid side.")
        required = ("quantity", "price", "timeInForce") if kind == "LIMIT" else ("quantity",)
        for name in required:
            if not p.get(name):
                return missing(name)
        try:
            qty = Decimal(p["quantity"])
            price = Decimal(p["price"]) if kind == "LIMIT" else \
                Decimal(self.px(info["symbol"], self.model.price(info["symbol"], self.now_ms())))
        except InvalidOperation:
            return err(400, -1100, "Illegal characters found in a parameter.")
        failure = self._filter_failure(info, qty, price)
        if failure:
            return err(400, -1013, f"Filter failure: {failure}")
        now = self.now_ms()
        client_id = p.get("newClientOrderId") or "web_" + "".join(self.rng.choices("abcdef0123456789", k=28))
        order = SimOrder(str(next(self._order_ids)), client_id, info["symbol"], info["baseAsset"], info["quoteAsset"],
                         side.lower(), kind.lower(), price, qty, now, p.get("timeInForce", "GTC"))
        try:
            self.ledger.place(order)
        except DuplicateClientId:
            return err(400, -2010, "Duplicate order sent.")
        except InsufficientBalance:
            return err(400, -2010, "Account has insufficient balance for requested action.")
        return web.json_response(self._order_json(order, resp_type=p.get("newOrderRespType", "FULL").upper()))

    def _find(self, p: dict[str, str]) -> SimOrder | None:
        order = self.ledger.find(p.get("orderId"), p.get("origClientOrderId") if "orderId" not in p else None)
        return order if order is not None and order.symbol == p.get("symbol") else None

    async def get_order(self, request: web.Request, p: dict[str, str]) -> web.Response:
        if "orderId" not in p and "origClientOrderId" not in p:
            return err(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if p.get("symbol") not in self.symbols:
            return bad_symbol()
        order = self._find(p)
        return web.json_response(self._order_json(order)) if order else err(400, -2013, "Order does not exist.")

    async def cancel_order(self, request: web.Request, p: dict[str, str]) -> web.Response:
        if "orderId" not in p and "origClientOrderId" not in p:
            return err(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if p.get("symbol") not in self.symbols:
            return bad_symbol()
        order = self._find(p)
        if order is None or not order.is_open:
            return err(400, -2011, "Unknown order sent.")
        if isinstance(order, OcoLeg):
            # "Canceling an individual order from an order list will cancel the entire order list."
            self._cancel_list(self.order_lists[order.list_id], self.now_ms())
            body = self._order_json(order, resp_type="RESULT")
            return web.json_response(body | {"origClientOrderId": order.client_id,
                                             "clientOrderId": self._random_id(), "transactTime": self.now_ms()})
        self.ledger.cancel(order, self.now_ms())
        body = self._order_json(order, resp_type="RESULT")
        body |= {"origClientOrderId": order.client_id,
                 "clientOrderId": p.get("newClientOrderId") or "".join(self.rng.choices("abcdefABCDEF0123456789", k=22)),
                 "transactTime": self.now_ms()}
        return web.json_response(body)

    # ---- REST: order lists (OCO)

    def _random_id(self) -> str:
        return "".join(self.rng.choices("abcdefABCDEF0123456789", k=22))

    async def create_oco(self, request: web.Request, p: dict[str, str]) -> web.StreamResponse:
        """POST /api/v3/orderList/oco."""
        for name in ("symbol", "side", "quantity", "aboveType", "belowType"):
            if not p.get(name):
                return missing(name)
        info = self.symbols.get(p["symbol"])
        if info is None:
            return bad_symbol()
        side, above_type, below_type = p["side"].upper(), p["aboveType"], p["belowType"]
        if side not in ("BUY", "SELL"):
            return err(400, -1117, "Invalid side.")
        if above_type not in OCO_ABOVE_TYPES or below_type not in OCO_BELOW_TYPES:
            return err(400, -1158, "Order type not supported in OCO.")
        kinds = {above_type, below_type}
        if kinds != {"LIMIT_MAKER", "STOP_LOSS_LIMIT"}:
            # Binance takes other combinations (TAKE_PROFIT..., STOP_LOSS); this server implements the pair Meridian sends.
            return err(400, -1158, "Order type not supported in OCO.")
        if side == "SELL" and above_type != "LIMIT_MAKER":
            return err(400, -1166, "A limit order in a sell OCO must be above.")
        if side == "BUY" and below_type != "LIMIT_MAKER":
            return err(400, -1165, "A limit order in a buy OCO must be below.")
        limit_pos, stop_pos = ("above", "below") if above_type == "LIMIT_MAKER" else ("below", "above")
        for name in (f"{limit_pos}Price", f"{stop_pos}Price", f"{stop_pos}StopPrice", f"{stop_pos}TimeInForce"):
            if not p.get(name):
                return missing(name)
        try:
            qty = Decimal(p["quantity"])
            limit_price = Decimal(p[f"{limit_pos}Price"])
            stop_limit_price = Decimal(p[f"{stop_pos}Price"])
            stop_price = Decimal(p[f"{stop_pos}StopPrice"])
        except InvalidOperation:
            return err(400, -1100, "Illegal characters found in a parameter.")
        for price in (limit_price, stop_limit_price):
            failure = self._filter_failure(info, qty, price)
            if failure:
                return err(400, -1013, f"Filter failure: {failure}")
        symbol, now = info["symbol"], self.now_ms()
        last = Decimal(self.px(symbol, self.model.price(symbol, now)))
        ordered = limit_price > last > stop_price if side == "SELL" else stop_price > last > limit_price
        if not ordered:
            return err(400, -2010, "The relationship of the prices for the orders is not correct.")
        bid, _, ask, _ = self._quote(symbol, now)
        if (side == "SELL" and limit_price <= Decimal(bid)) or (side == "BUY" and limit_price >= Decimal(ask)):
            return err(400, -2010, "Order would immediately match and take.")
        list_cid = p.get("listClientOrderId") or self._random_id()
        limit_cid = p.get(f"{limit_pos}ClientOrderId") or self._random_id()
        stop_cid = p.get(f"{stop_pos}ClientOrderId") or self._random_id()
        if any(lst.client_id == list_cid and lst.executing for lst in self.order_lists.values()):
            return err(400, -2010, "Duplicate order sent.")
        for cid in (limit_cid, stop_cid):
            held = self.ledger.find(client_id=cid)
            if held is not None and held.is_open or limit_cid == stop_cid:
                return err(400, -2010, "Duplicate order sent.")
        base, quote = info["baseAsset"], info["quoteAsset"]
        asset, need = (base, qty) if side == "SELL" else (quote, qty * max(limit_price, stop_limit_price))
        if self.ledger.free[asset] < need:
            return err(400, -2010, "Account has insufficient balance for requested action.")
        list_id = next(self._list_ids)
        tif = p[f"{stop_pos}TimeInForce"]

        def leg(cid: str, kind: str, price: Decimal, stop: Decimal) -> OcoLeg:
            return OcoLeg(str(next(self._order_ids)), cid, symbol, base, quote, side.lower(), kind, price, qty, now,
                          "GTC" if kind == "limit_maker" else tif, updated_ms=now, list_id=list_id, stop_price=stop)

        limit_leg = leg(limit_cid, "limit_maker", limit_price, Decimal(0))
        stop_leg = leg(stop_cid, "stop_loss_limit", stop_limit_price, stop_price)
        below, above = (stop_leg, limit_leg) if limit_pos == "above" else (limit_leg, stop_leg)
        self.ledger.free[asset] -= need
        self.ledger.locked[asset] += need
        for o in (below, above):
            self.ledger.orders[o.id] = o
            self.ledger._by_client[o.client_id] = o  # noqa: SLF001 - the legs are orders like any other
        record = OrderListRecord(list_id, list_cid, symbol, [below, above], asset, need, now, now)
        self.order_lists[list_id] = record
        if self.drop_oco_answers > 0:
            self.drop_oco_answers -= 1
            assert request.transport is not None
            request.transport.abort()  # accepted, then the connection dies before the answer
            return web.Response(status=500)  # never reaches the client
        return web.json_response(self._list_json(record, p.get("newOrderRespType", "ACK").upper()))

    def _list_json(self, lst: OrderListRecord, resp_type: str, *, cancel: bool = False) -> dict[str, Any]:
        done = not lst.executing
        reports = []
        for leg in lst.legs:
            report = self._order_json(leg, resp_type="RESULT" if resp_type != "ACK" or cancel else "ACK")
            report["transactTime"] = lst.updated_ms
            if cancel:
                report = {"symbol": leg.symbol, "origClientOrderId": leg.client_id, **report,
                          "clientOrderId": lst.cancel_ids.get(leg.client_id) or self._random_id()}
            reports.append(report)
        return {
            "orderListId": lst.id, "contingencyType": "OCO",
            "listStatusType": "ALL_DONE" if done else "EXEC_STARTED",
            "listOrderStatus": "ALL_DONE" if done else "EXECUTING",
            "listClientOrderId": lst.client_id, "transactionTime": lst.updated_ms, "symbol": lst.symbol,
            "orders": [{"symbol": leg.symbol, "orderId": int(leg.id), "clientOrderId": leg.client_id} for leg in lst.legs],
            "orderReports": reports,
        }

    def _settle_list(self, lst: OrderListRecord, now: int) -> None:
        """Once no leg is open, what the list still holds is free again."""
        lst.updated_ms = now
        if not lst.executing and lst.locked:
            self.ledger.locked[lst.asset] -= lst.locked
            self.ledger.free[lst.asset] += lst.locked
            lst.locked = Decimal(0)

    def _cancel_list(self, lst: OrderListRecord, now: int) -> None:
        for leg in lst.legs:
            if leg.is_open:
                leg.status, leg.updated_ms = "canceled", now
                lst.cancel_ids[leg.client_id] = self._random_id()
        self._settle_list(lst, now)

    async def cancel_order_list(self, request: web.Request, p: dict[str, str]) -> web.Response:
        """DELETE /api/v3/orderList: by orderListId or listClientOrderId."""
        if p.get("symbol") not in self.symbols:
            return bad_symbol() if p.get("symbol") else missing("symbol")
        if "orderListId" not in p and "listClientOrderId" not in p:
            return missing("orderListId")
        lst = next((lst for lst in self.order_lists.values() if lst.symbol == p["symbol"] and (
            str(lst.id) == p["orderListId"] if "orderListId" in p else lst.client_id == p["listClientOrderId"])
            and lst.executing), None)
        if lst is None:
            return err(400, -2011, "Order list does not exist.")
        self._cancel_list(lst, self.now_ms())
        return web.json_response(self._list_json(lst, "RESULT", cancel=True))

    def _leg(self, client_id: str) -> tuple[OcoLeg, OrderListRecord]:
        leg = self.ledger.find(client_id=client_id)
        assert isinstance(leg, OcoLeg), client_id
        return leg, self.order_lists[leg.list_id]

    def _expire_others(self, leg: OcoLeg, lst: OrderListRecord, now: int) -> None:
        for other in lst.legs:
            if other is not leg and other.is_open:
                other.status, other.updated_ms = "expired", now

    def oco_trigger(self, client_id: str) -> OcoLeg:
        """The market reached the stop leg's stop price: it starts working and the other leg expires."""
        leg, lst = self._leg(client_id)
        assert leg.type == "stop_loss_limit" and leg.is_open and not leg.triggered
        now = self.now_ms()
        leg.triggered, leg.updated_ms = True, now
        self._expire_others(leg, lst, now)
        self._settle_list(lst, now)
        return leg

    def oco_fill(self, client_id: str, qty: str | Decimal | None = None) -> OcoLeg:
        """Fill `qty` (default: all that is left) of a working leg at its price. As on Binance, the first
        fill of the limit leg, even a partial one, expires the other leg."""
        leg, lst = self._leg(client_id)
        assert leg.is_open and (leg.type == "limit_maker" or leg.triggered), "that leg is not working"
        amount = leg.remaining if qty is None else Decimal(qty)
        assert 0 < amount <= leg.remaining
        now = self.now_ms()
        self._expire_others(leg, lst, now)
        value = amount * leg.price
        if leg.side == "sell":
            self.ledger.locked[leg.base] -= amount
            lst.locked -= amount
            self.ledger.free[leg.quote] += value
        else:
            self.ledger.locked[leg.quote] -= value
            lst.locked -= value
            self.ledger.free[leg.base] += amount
        leg.filled += amount
        leg.cost += value
        leg.updated_ms = now
        if leg.remaining == 0:
            leg.status = "filled"
        self._settle_list(lst, now)
        return leg

    async def open_orders(self, request: web.Request, p: dict[str, str]) -> web.Response:
        symbol = p.get("symbol")
        if symbol is not None and symbol not in self.symbols:
            return bad_symbol()
        return web.json_response([self._order_json(o) for o in self.ledger.open_orders(symbol)])

    # ---- websocket

    async def ws_open(self, session: WsSession) -> None:
        path, _, query = session.path.partition("?")
        if path.startswith("/stream"):
            names = dict(parse_qsl(query)).get("streams", "")
        elif path.startswith("/ws/"):
            names = path[4:]  # ccxt.pro connects to /ws/<n>; a bare number is no stream and is ignored
        else:
            names = ""
        for name in filter(None, names.split("/")):
            if (stream := parse_stream(name)) is not None:
                session.subs[name] = stream

    async def ws_message(self, session: WsSession, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
            method, params, req_id = msg["method"], msg.get("params", []), msg.get("id")
        except (ValueError, KeyError, TypeError):
            await self.send(session, json.dumps({"error": {"code": 2, "msg": "Invalid request: could not parse"},
                                                 "id": None}))
            return
        if method == "LIST_SUBSCRIPTIONS":
            await self.send(session, json.dumps({"result": list(session.subs), "id": req_id}))
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            await self.send(session, json.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown variant "
                                                           f"`{method}`"}, "id": req_id}))
            return
        streams = [(name, parse_stream(name)) for name in params]
        bad = [name for name, stream in streams if stream is None]
        if bad:
            await self.send(session, json.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown stream "
                                                           f"`{bad[0]}`"}, "id": req_id}))
            return
        # The reply goes out before the first push of a new stream, as on Binance.
        await self.send(session, json.dumps({"result": None, "id": req_id}))
        for name, stream in streams:
            if method == "SUBSCRIBE":
                session.subs.setdefault(name, stream)
            else:
                session.subs.pop(name, None)

    def ws_frames(self, session: WsSession) -> list[str | bytes]:
        combined = session.path.startswith("/stream")
        now = self.now_ms()
        frames: list[str | bytes] = []
        for stream in list(session.subs.values()):
            for data in self._push(stream, now):
                frames.append(json.dumps({"stream": stream.name, "data": data} if combined else data))
        return frames

    def _next(self, kind: str, stream: Stream) -> Template:
        templates = stream_templates()[kind]
        stream.cursor += 1
        return templates[(stream.cursor - 1) % len(templates)]

    def _push(self, s: Stream, now: int) -> list[dict[str, Any]]:
        sym, live = s.symbol, self.model.price(s.symbol, now)
        if s.kind in ("trade", "aggTrade"):
            t = self._next("aggTrade", s)
            tid = self._trade_ids[sym] = self._trade_ids.get(sym, now) + 1
            common = {"E": now, "s": sym}
            price, qty, maker = self.px(sym, live), t.data["q"], t.data["m"]
            if s.kind == "trade":
                return [{"e": "trade", **common, "t": tid, "p": price, "q": qty, "T": now, "m": maker, "M": True}]
            return [{"e": "aggTrade", **common, "a": tid, "p": price, "q": qty, "f": tid, "l": tid, "T": now,
                     "m": maker, "M": True}]
        if s.kind == "bookTicker":
            t = self._next("bookTicker", s)
            return [{"u": self.update_id(sym, 1), "s": sym,
                     "b": self.px(sym, rescale(t.data["b"], t.ref, live)), "B": t.data["B"],
                     "a": self.px(sym, rescale(t.data["a"], t.ref, live)), "A": t.data["A"]}]
        if s.kind == "depth":
            t = self._next("depth", s)
            first = self.update_id(sym) + 1
            last = self.update_id(sym, t.data["u"] - t.data["U"] + 1)
            return [{"e": "depthUpdate", "E": now, "s": sym, "U": first, "u": last,
                     "b": self.levels(sym, t.data["b"], t.ref, live),
                     "a": self.levels(sym, t.data["a"], t.ref, live)}]
        if s.kind == "partial":
            return [self._book(sym, now, s.levels)]
        if s.kind == "kline":
            return self._kline_push(s, now)
        day = self.model.rolling(sym, now)
        if s.kind == "miniTicker":
            return [{"e": "24hrMiniTicker", "E": now, "s": sym, "c": self.px(sym, live), "o": self.px(sym, day.open),
                     "h": self.px(sym, day.high), "l": self.px(sym, day.low), "v": f"{day.volume:.8f}",
                     "q": f"{day.quote_volume:.8f}"}]
        r = self._ticker(sym, now)
        return [{"e": "24hrTicker", "E": now, "s": sym, "p": r["priceChange"], "P": r["priceChangePercent"],
                 "w": r["weightedAvgPrice"], "x": r["prevClosePrice"], "c": r["lastPrice"], "Q": r["lastQty"],
                 "b": r["bidPrice"], "B": r["bidQty"], "a": r["askPrice"], "A": r["askQty"], "o": r["openPrice"],
                 "h": r["highPrice"], "l": r["lowPrice"], "v": r["volume"], "q": r["quoteVolume"],
                 "O": r["openTime"], "C": r["closeTime"], "F": r["firstId"], "L": r["lastId"], "n": r["count"]}]

    def _kline_push(self, s: Stream, now: int) -> list[dict[str, Any]]:
        """The forming candle; when a new one starts, first the final (x=true) push of the last one."""
        interval_ms = INTERVALS_MIN[s.interval] * MINUTE_MS
        origin = WEEK_ORIGIN_MS if s.interval == "1w" else 0
        open_ms = now - (now - origin) % interval_ms
        opens = [open_ms]
        if s.last_open is not None and s.last_open < open_ms:
            opens.insert(0, s.last_open)
        s.last_open = open_ms
        out = []
        for o in opens:
            k = self._kline(s.symbol, s.interval, o, now)
            assert k is not None
            out.append({"e": "kline", "E": now, "s": s.symbol, "k": {
                "t": k[0], "T": k[6], "s": s.symbol, "i": s.interval, "f": o // 1000, "L": o // 1000 + k[8] - 1,
                "o": k[1], "c": k[4], "h": k[2], "l": k[3], "v": k[5], "n": k[8], "x": now > k[6],
                "q": k[7], "V": k[9], "Q": k[10], "B": "0"}})
        return out


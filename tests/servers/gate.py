"""A local Gate.io APIv4 spot server: REST /api/v4 and the v4 websocket.

ccxt is pointed at it with `srv.configure(exchange)`, which sets:
    urls['api']['public'][*] = urls['api']['private'][*] = rest_url + '/api/v4'   (every section)
    urls['api']['spot'] = ws_url + '/ws/v4/'                                      (ccxt.pro only)
    options['fetchMarkets'] = {'types': ['spot']}
and, with keys=True, apiKey/secret. With spot only, ccxt's load_markets() makes
GET /api/v4/spot/currencies, /api/v4/margin/currency_pairs and
/api/v4/spot/currency_pairs, plus GET /api/v4/account/detail once when keys are
set (ccxt's unified-account probe; options['unifiedAccount'] = False skips it).

Websocket (any path): {"time", "id"?, "channel", "event": "subscribe" | "unsubscribe",
"payload"} for spot.tickers, spot.trades, spot.book_ticker ([pairs]),
spot.candlesticks ([interval, pair]), spot.order_book_update ([pair, "100ms"]),
spot.order_book ([pair, levels, "100ms"]); {"channel": "spot.ping"} -> spot.pong.
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
from functools import cache
from typing import Any

from aiohttp import web

from .base import (
    FIXTURES,
    MINUTE_MS,
    InsufficientBalance,
    LedgerError,
    SimOrder,
    Template,
    VenueServer,
    WsSession,
    dec,
    plain_error,
    read_capture,
    rescale,
    trade_at,
)

STREAM_CAPTURE = FIXTURES / "gate" / "stream-capture-2021-04-22.log"
BOOK_CAPTURE = FIXTURES / "gate" / "rest-capture-2021-04-22.log"
PAIRS_CAPTURE = FIXTURES / "gate" / "currency-pairs-capture-2021-04-22.log"

INTERVALS_MIN = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240, "8h": 480, "1d": 1440, "7d": 10080}
TEXT_RULE = re.compile(r"t-[0-9A-Za-z_.\-]{1,28}")
FINISHED_TEXT_LOOKUP_MS = 60_000  # Gate finds a finished order by its text for 60 s only
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@cache
def stream_templates() -> dict[str, tuple[Template, ...]]:
    """Recorded update frames by channel, each with its pair's price level at the time."""
    mids: dict[str, float] = {}
    out: dict[str, list[Template]] = {}
    for rec in read_capture(STREAM_CAPTURE):
        if not rec.payload:
            continue
        msg = json.loads(rec.payload)
        if msg.get("event") != "update":
            continue
        channel, data = msg["channel"], msg["result"]
        if channel == "spot.tickers":
            pair = data["currency_pair"]
            mids[pair] = float(data["last"])
        elif channel == "spot.trades":
            pair = data["currency_pair"]
            mids.setdefault(pair, float(data["price"]))
        elif channel == "spot.candlesticks":
            pair = data["n"].split("_", 1)[1]
            mids.setdefault(pair, float(data["c"]))
        else:
            pair = data["s"]
            if pair not in mids:
                tops = [float(side[0][0]) for side in (data["b"], data["a"]) if side]
                mids[pair] = sum(tops) / len(tops)
        out.setdefault(channel, []).append(Template(data, mids[pair]))
    return {k: tuple(v) for k, v in out.items()}


@cache
def book_template() -> Template:
    book = json.loads(read_capture(BOOK_CAPTURE)[0].payload)
    return Template(book, (float(book["bids"][0][0]) + float(book["asks"][0][0])) / 2)


@cache
def currency_pairs() -> list[dict[str, Any]]:
    """The real 2021-04-22 list: 1,458 pairs with precision and minimum amounts."""
    return json.loads(read_capture(PAIRS_CAPTURE)[0].payload)


def err(status: int, label: str, message: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
    return web.json_response({"label": label, "message": message}, status=status, headers=headers)


@dataclass(slots=True)
class Topic:
    channel: str
    pair: str
    interval: str = ""
    levels: int = 0
    cursor: int = 0
    last_open: int | None = None


class GateServer(VenueServer):
    auth_headers = ("KEY", "SIGN")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pairs = {p["id"]: p for p in currency_pairs()}
        self._order_ids = itertools.count(self.rng.randrange(10**10, 10**11))
        self._trade_ids: dict[str, int] = {}

    def configure(self, exchange: Any, *, keys: bool = True) -> Any:
        """Point a ccxt (or ccxt.pro) gate at this server. See the module docstring."""
        api = exchange.urls["api"]
        for access in ("public", "private"):
            for section in api[access]:
                api[access][section] = f"{self.rest_url}/api/v4"
        if "spot" in api:  # ccxt.pro keeps the spot websocket URL here
            api["spot"] = f"{self.ws_url}/ws/v4/"
        exchange.options["fetchMarkets"] = {"types": ["spot"]}
        if keys:
            exchange.apiKey, exchange.secret = self.api_key, self.secret
        return exchange

    # ---- the ticker, shared by REST and websocket

    def _ticker(self, pair: str, now: int) -> dict[str, Any]:
        tickers = stream_templates()["spot.tickers"]
        t = tickers[(now // 1000) % len(tickers)]
        day = self.model.rolling(pair, now)
        last = self.model.price(pair, now)
        # The recorded spread, centred on the model's price: a recorded last can lie outside its
        # quotes, and a test server whose last trade is not between bid and ask only confuses.
        mid = (float(t.data["lowest_ask"]) + float(t.data["highest_bid"])) / 2
        return {
            "currency_pair": pair,
            "last": self.px(pair, last),
            "lowest_ask": self.px(pair, rescale(t.data["lowest_ask"], mid, last)),
            "highest_bid": self.px(pair, rescale(t.data["highest_bid"], mid, last)),
            "change_percentage": f"{(last - day.open) / day.open * 100:.4f}",
            "base_volume": f"{day.volume:.8f}",
            "quote_volume": f"{day.quote_volume:.8f}",
            "high_24h": self.px(pair, day.high),
            "low_24h": self.px(pair, day.low),
        }

    # ---- REST: public

    def routes(self, router: web.UrlDispatcher) -> None:
        r = "/api/v4"
        router.add_get(f"{r}/spot/time", self.server_time)
        router.add_get(f"{r}/spot/currencies", self.currencies)
        router.add_get(f"{r}/spot/currency_pairs", self.currency_pairs)
        router.add_get(f"{r}/spot/currency_pairs/{{pair}}", self.currency_pair)
        router.add_get(f"{r}/margin/currency_pairs", self.margin_pairs)
        router.add_get(f"{r}/spot/tickers", self.tickers)
        router.add_get(f"{r}/spot/candlesticks", self.candlesticks)
        router.add_get(f"{r}/spot/order_book", self.order_book)
        router.add_get(f"{r}/spot/trades", self.trades)
        router.add_get(f"{r}/account/detail", self._signed(self.account_detail))
        router.add_get(f"{r}/spot/accounts", self._signed(self.accounts))
        router.add_post(f"{r}/spot/orders", self._signed(self.create_order))
        router.add_get(f"{r}/spot/orders", self._signed(self.list_orders))
        router.add_get(f"{r}/spot/open_orders", self._signed(self.open_orders))
        router.add_get(f"{r}/spot/orders/{{order_id}}", self._signed(self.get_order))
        router.add_delete(f"{r}/spot/orders/{{order_id}}", self._signed(self.cancel_order))

    def error_response(self, status: int, retry_after: float | None) -> web.Response:
        if status == 429:
            return err(429, "TOO_MANY_REQUESTS", "Request Rate limit Exceeded", retry_after)
        if status >= 500:
            return err(status, "SERVER_ERROR", "Internal server error", retry_after)
        return plain_error(status, retry_after)

    def _pair(self, request: web.Request) -> str | web.Response:
        pair = request.query.get("currency_pair")
        if not pair:
            return err(400, "MISSING_REQUIRED_PARAM", "Missing required parameter: currency_pair")
        return pair if pair in self.pairs else err(400, "INVALID_CURRENCY_PAIR", f"Invalid currency pair: {pair}")

    async def server_time(self, request: web.Request) -> web.Response:
        return web.json_response({"server_time": int(time.time() * 1000)})

    async def currencies(self, request: web.Request) -> web.Response:
        # The recording has no currency list; a minimal valid row per currency of the pairs.
        names = sorted({p[k] for p in self.pairs.values() for k in ("base", "quote")})
        return web.json_response([{"currency": c, "name": c, "delisted": False, "withdraw_disabled": False,
                                   "withdraw_delayed": False, "deposit_disabled": False, "trade_disabled": False,
                                   "fixed_rate": "", "chain": c,
                                   "chains": [{"name": c, "addr": "", "withdraw_disabled": False,
                                               "withdraw_delayed": False, "deposit_disabled": False}]}
                                  for c in names])

    async def currency_pairs(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.pairs.values()))

    async def currency_pair(self, request: web.Request) -> web.Response:
        pair = request.match_info["pair"]
        if pair not in self.pairs:
            return err(400, "INVALID_CURRENCY_PAIR", f"Invalid currency pair: {pair}")
        return web.json_response(self.pairs[pair])

    async def margin_pairs(self, request: web.Request) -> web.Response:
        return web.json_response([])  # no margin here: every market is spot only

    async def tickers(self, request: web.Request) -> web.Response:
        now = self.now_ms()
        if "currency_pair" in request.query:
            pair = self._pair(request)
            if isinstance(pair, web.Response):
                return pair
            return web.json_response([self._ticker(pair, now)])
        return web.json_response([self._ticker(p, now) for p in self.pairs])

    async def candlesticks(self, request: web.Request) -> web.Response:
        pair = self._pair(request)
        if isinstance(pair, web.Response):
            return pair
        q = request.query
        interval = q.get("interval", "30m")
        if interval not in INTERVALS_MIN:
            return err(400, "INVALID_PARAM_VALUE", f"invalid argument: interval {interval}")
        if "limit" in q and ("from" in q or "to" in q):
            return err(400, "INVALID_PARAM_VALUE", "limit is conflicted with from and to")
        interval_ms = INTERVALS_MIN[interval] * MINUTE_MS
        now = self.now_ms()
        start = int(q["from"]) * 1000 if "from" in q else None
        if start is not None and start < now - 10_000 * interval_ms:
            return err(400, "INVALID_PARAM_VALUE", "Candlestick too long ago. Maximum 10000 points ago are allowed")
        limit = min(int(q.get("limit", 100)), 1000)
        bars = self.model.bars(pair, interval_ms, now, start_ms=start,
                               end_ms=int(q["to"]) * 1000 if "to" in q else None, limit=limit)
        return web.json_response([[str(b.open_ms // 1000), f"{b.quote_volume:.8f}", self.px(pair, b.close),
                                   self.px(pair, b.high), self.px(pair, b.low), self.px(pair, b.open),
                                   f"{b.volume:.8f}", str(b.closed).lower()] for b in bars])

    def _book(self, pair: str, now: int, limit: int, with_id: bool) -> dict[str, Any]:
        t = book_template()
        live = self.model.price(pair, now)
        body: dict[str, Any] = {"id": self.update_id(pair)} if with_id else {}
        return body | {"current": now, "update": now,
                       "asks": self.levels(pair, t.data["asks"][:limit], t.ref, live),
                       "bids": self.levels(pair, t.data["bids"][:limit], t.ref, live)}

    async def order_book(self, request: web.Request) -> web.Response:
        pair = self._pair(request)
        if isinstance(pair, web.Response):
            return pair
        limit = min(int(request.query.get("limit", 10)), 100)
        return web.json_response(self._book(pair, self.now_ms(), limit, request.query.get("with_id") == "true"))

    async def trades(self, request: web.Request) -> web.Response:
        pair = self._pair(request)
        if isinstance(pair, web.Response):
            return pair
        now = self.now_ms()
        limit = min(int(request.query.get("limit", 100)), 1000)
        last = now // 1000
        rows = []
        for i in range(last, last - limit, -1):  # newest first, like Gate
            t, price, amount, maker = trade_at(self.model, pair, i)
            rows.append({"id": str(i), "create_time": str(t // 1000), "create_time_ms": f"{t}.000",
                         "currency_pair": pair, "side": "sell" if maker else "buy",
                         "amount": f"{amount:.8f}", "price": self.px(pair, price)})
        return web.json_response(rows)

    # ---- REST: signed (APIv4: KEY, Timestamp, SIGN = HMAC-SHA512 hex)

    def _signed(self, handler: Callable[[web.Request, str], Awaitable[web.Response]]) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            for header in ("KEY", "Timestamp", "SIGN"):
                if header not in request.headers:
                    return err(401, "MISSING_REQUIRED_HEADER", f"Missing required header: {header}")
            if not hmac.compare_digest(request.headers["KEY"], self.api_key):
                return err(401, "INVALID_KEY", "Invalid key provided")
            body = await request.text()
            # Gate signs the query string as sent but not URL-encoded, as ccxt's rawencode builds it.
            payload = "\n".join([request.method, request.path, request.rel_url.query_string,
                                 hashlib.sha512(body.encode()).hexdigest(), request.headers["Timestamp"]])
            expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha512).hexdigest()
            if not hmac.compare_digest(request.headers["SIGN"], expected):
                return err(401, "INVALID_SIGNATURE", "Signature mismatch")
            if abs(time.time() - float(request.headers["Timestamp"])) > 60:
                return err(401, "REQUEST_EXPIRED", "gap between request Timestamp and server time exceeds 60")
            return await handler(request, body)

        return checked

    async def account_detail(self, request: web.Request, body: str) -> web.Response:
        return web.json_response({"user_id": 10001, "ip_whitelist": [], "currency_pairs": [], "key": {"mode": 1},
                                  "tier": 0, "tier_expire_time": "0001-01-01T00:00:00Z", "copy_trading_role": 0})

    async def accounts(self, request: web.Request, body: str) -> web.Response:
        only = request.query.get("currency")
        return web.json_response([{"currency": a, "available": dec(self.ledger.free[a]),
                                   "locked": dec(self.ledger.locked[a]), "update_id": 1}
                                  for a in self.ledger.assets() if only in (None, a)])

    def _order_json(self, o: SimOrder) -> dict[str, Any]:
        finish = {"open": "open", "filled": "filled", "canceled": "cancelled"}[o.status]
        status = {"open": "open", "filled": "closed", "canceled": "cancelled"}[o.status]
        avg = o.cost / o.filled if o.filled else Decimal(0)
        return {"id": o.id, "text": o.client_id, "amend_text": "-",
                "create_time": str(o.created_ms // 1000), "update_time": str(o.updated_ms // 1000),
                "create_time_ms": o.created_ms, "update_time_ms": o.updated_ms,
                "status": status, "currency_pair": o.symbol, "type": o.type, "account": "spot", "side": o.side,
                "amount": dec(o.amount), "price": dec(o.price) if o.type == "limit" else "0",
                "time_in_force": o.time_in_force.lower(), "iceberg": "0", "left": dec(o.remaining),
                "filled_amount": dec(o.filled), "fill_price": dec(o.cost), "filled_total": dec(o.cost),
                "avg_deal_price": dec(avg), "fee": "0", "fee_currency": o.base if o.side == "buy" else o.quote,
                "point_fee": "0", "gt_fee": "0", "gt_maker_fee": "0", "gt_taker_fee": "0", "gt_discount": False,
                "rebated_fee": "0", "rebated_fee_currency": o.quote, "finish_as": finish}

    async def create_order(self, request: web.Request, body: str) -> web.Response:
        try:
            p = json.loads(body)
        except ValueError:
            return err(400, "INVALID_REQUEST_BODY", "request body is not valid JSON")
        pair = p.get("currency_pair")
        if pair not in self.pairs:
            return err(400, "INVALID_CURRENCY_PAIR", f"Invalid currency pair: {pair}")
        info = self.pairs[pair]
        kind, side = p.get("type", "limit"), p.get("side")
        if side not in ("buy", "sell") or kind not in ("limit", "market"):
            return err(400, "INVALID_PARAM_VALUE", f"invalid argument: {'side' if side not in ('buy', 'sell') else 'type'}")
        text = p.get("text", "apiv4")
        if "text" in p and not TEXT_RULE.fullmatch(text):
            return err(400, "INVALID_PARAM_VALUE", "invalid argument: text must start with t- and have at most "
                       "28 more characters among 0-9 A-Z a-z _ - .")
        now = self.now_ms()
        try:
            amount = Decimal(p["amount"])
            price = Decimal(p["price"]) if kind == "limit" else Decimal(self.px(pair, self.model.price(pair, now)))
        except (KeyError, InvalidOperation):
            return err(400, "INVALID_PARAM_VALUE", "invalid argument: amount or price")
        if kind == "market" and side == "buy":
            amount = amount / price  # Gate's market buy amount is what to spend, in quote
        if amount * price < Decimal(info.get("min_quote_amount", "0")):
            return err(400, "INVALID_PARAM_VALUE", f"Your order size {dec(amount * price)} {info['quote']} is too "
                       f"small. The minimum is {info['min_quote_amount']} {info['quote']}")
        order = SimOrder(str(next(self._order_ids)), text, pair, info["base"], info["quote"], side, kind,
                         price, amount, now, p.get("time_in_force", "gtc").upper())
        try:
            self.ledger.place(order, unique_client_id=False)  # Gate does not reject a repeated text
        except InsufficientBalance:
            return err(400, "BALANCE_NOT_ENOUGH", "Not enough balance")
        except LedgerError as exc:
            return err(400, "INVALID_PARAM_VALUE", str(exc))
        return web.json_response(self._order_json(order), status=201)

    def _lookup(self, order_id: str, pair: str | None) -> SimOrder | web.Response:
        if order_id.startswith("t-"):
            order = self.ledger.find(client_id=order_id)
            if order is not None and not order.is_open and self.now_ms() - order.updated_ms > FINISHED_TEXT_LOOKUP_MS:
                order = None
        else:
            order = self.ledger.find(order_id)
        if order is None or order.symbol != pair:
            return err(400, "ORDER_NOT_FOUND", "Order not found")
        return order

    async def get_order(self, request: web.Request, body: str) -> web.Response:
        found = self._lookup(request.match_info["order_id"], request.query.get("currency_pair"))
        return found if isinstance(found, web.Response) else web.json_response(self._order_json(found))

    async def cancel_order(self, request: web.Request, body: str) -> web.Response:
        found = self._lookup(request.match_info["order_id"], request.query.get("currency_pair"))
        if isinstance(found, web.Response):
            return found
        if found.status == "filled":
            return err(400, "ORDER_CLOSED", "Order closed")
        if found.status == "canceled":
            return err(400, "ORDER_CANCELLED", "Order cancelled")
        return web.json_response(self._order_json(self.ledger.cancel(found, self.now_ms())))

    async def list_orders(self, request: web.Request, body: str) -> web.Response:
        pair = self._pair(request)
        if isinstance(pair, web.Response):
            return pair
        status = request.query.get("status", "open")
        rows = [o for o in self.ledger.orders.values() if o.symbol == pair and (o.is_open == (status == "open"))]
        return web.json_response([self._order_json(o) for o in rows])

    async def open_orders(self, request: web.Request, body: str) -> web.Response:
        by_pair: dict[str, list[SimOrder]] = {}
        for o in self.ledger.open_orders():
            by_pair.setdefault(o.symbol, []).append(o)
        return web.json_response([{"currency_pair": p, "total": len(rows), "orders": [self._order_json(o) for o in rows]}
                                  for p, rows in by_pair.items()])

    # ---- websocket

    async def ws_message(self, session: WsSession, message: str | bytes) -> None:
        now = self.now_ms()
        try:
            msg = json.loads(message)
            channel = msg["channel"]
        except (ValueError, KeyError, TypeError):
            await self.send(session, json.dumps({"time": now // 1000, "channel": "", "event": "",
                                                 "error": {"code": 1, "message": "invalid argument struct"},
                                                 "result": {"status": "fail"}}))
            return
        head: dict[str, Any] = {"time": now // 1000, "time_ms": now}
        if "id" in msg:
            head["id"] = msg["id"]
        if channel == "spot.ping":
            await self.send_pong(session, json.dumps(head | {"channel": "spot.pong", "event": "", "result": None}))
            return
        event = msg.get("event")
        topics = self._topics(channel, msg.get("payload") or [])
        if event not in ("subscribe", "unsubscribe") or isinstance(topics, str):
            reason = topics if isinstance(topics, str) else f"unknown event {event}"
            await self.send(session, json.dumps(head | {"channel": channel, "event": event, "payload": msg.get("payload"),
                                                        "error": {"code": 2, "message": reason},
                                                        "result": {"status": "fail"}}))
            return
        await self.send(session, json.dumps(head | {"channel": channel, "event": event,
                                                    "payload": msg.get("payload"), "result": {"status": "success"}}))
        for key, topic in topics:
            if event == "subscribe":
                session.subs.setdefault(key, topic)
            else:
                session.subs.pop(key, None)

    def _topics(self, channel: str, payload: list[str]) -> list[tuple[str, Topic]] | str:
        """(key, topic) per stream the request names, or the reason it is refused."""
        if channel in ("spot.tickers", "spot.trades", "spot.book_ticker"):
            pairs = payload
        elif channel == "spot.candlesticks" and len(payload) == 2:
            if payload[0] not in INTERVALS_MIN:
                return f"invalid interval {payload[0]}"
            pairs = [payload[1]]
        elif channel in ("spot.order_book_update", "spot.order_book") and payload:
            pairs = [payload[0]]
        else:
            return f"unknown channel {channel} or payload"
        unknown = [p for p in pairs if p not in self.pairs]
        if unknown:
            return f"unknown currency pair: {unknown[0]}"
        out = []
        for pair in pairs:
            topic = Topic(channel, pair, interval=payload[0] if channel == "spot.candlesticks" else "",
                          levels=int(payload[1]) if channel == "spot.order_book" and len(payload) > 1 else 20)
            out.append((f"{channel}|{topic.interval}|{pair}", topic))
        return out

    def ws_frames(self, session: WsSession) -> list[str | bytes]:
        now = self.now_ms()
        frames: list[str | bytes] = []
        for topic in list(session.subs.values()):
            for result in self._push(topic, now):
                frames.append(json.dumps({"time": now // 1000, "time_ms": now, "channel": topic.channel,
                                          "event": "update" if topic.channel != "spot.order_book" else "all",
                                          "result": result}))
        return frames

    def _next(self, channel: str, topic: Topic) -> Template:
        templates = stream_templates()[channel]
        topic.cursor += 1
        return templates[(topic.cursor - 1) % len(templates)]

    def _push(self, topic: Topic, now: int) -> list[dict[str, Any]]:
        pair, live = topic.pair, self.model.price(topic.pair, now)
        if topic.channel == "spot.tickers":
            return [self._ticker(pair, now)]
        if topic.channel == "spot.trades":
            t = self._next("spot.trades", topic)
            tid = self._trade_ids[pair] = self._trade_ids.get(pair, now) + 1
            return [{"id": tid, "create_time": now // 1000, "create_time_ms": f"{now}.000", "side": t.data["side"],
                     "currency_pair": pair, "amount": t.data["amount"], "price": self.px(pair, live)}]
        if topic.channel == "spot.book_ticker":
            t = self._ticker(pair, now)
            book = book_template().data
            return [{"t": now, "u": self.update_id(pair, 1), "s": pair, "b": t["highest_bid"], "B": book["bids"][0][1],
                     "a": t["lowest_ask"], "A": book["asks"][0][1]}]
        if topic.channel == "spot.order_book_update":
            t = self._next("spot.order_book_update", topic)
            first = self.update_id(pair) + 1
            last = self.update_id(pair, t.data["u"] - t.data["U"] + 1)
            return [{"t": now, "e": "depthUpdate", "E": now // 1000, "s": pair, "U": first, "u": last,
                     "b": self.levels(pair, t.data["b"], t.ref, live),
                     "a": self.levels(pair, t.data["a"], t.ref, live)}]
        if topic.channel == "spot.order_book":
            book = self._book(pair, now, topic.levels, True)
            return [{"t": now, "lastUpdateId": book["id"], "s": pair, "bids": book["bids"], "asks": book["asks"]}]
        return self._candle_push(topic, now)

    def _candle_push(self, topic: Topic, now: int) -> list[dict[str, Any]]:
        """The forming candle; when a new one starts, first the final (w=true) push of the last one."""
        interval_ms = INTERVALS_MIN[topic.interval] * MINUTE_MS
        open_ms = now - now % interval_ms
        opens = [open_ms] if topic.last_open in (None, open_ms) else [topic.last_open, open_ms]
        topic.last_open = open_ms
        out = []
        for o in opens:
            bar = self.model.bar(topic.pair, o, interval_ms, now)
            assert bar is not None
            out.append({"t": str(o // 1000), "v": f"{bar.quote_volume:.8f}", "c": self.px(topic.pair, bar.close),
                        "h": self.px(topic.pair, bar.high), "l": self.px(topic.pair, bar.low),
                        "o": self.px(topic.pair, bar.open), "n": f"{topic.interval}_{topic.pair}",
                        "a": f"{bar.volume:.8f}", "w": bar.closed})
        return out

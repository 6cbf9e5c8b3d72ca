"""The local venue servers, proven with real ccxt (async_support and pro) and plain websockets.

These tests are also the reference for how the rest of the suite points ccxt at
the servers and what each injected fault looks like from ccxt's side.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import ccxt.pro as ccxtpro
import pytest
import websockets
from ccxt.protobuf.mexc import PushDataV3ApiWrapper_pb2
from google.protobuf.json_format import MessageToDict
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from tests.servers.base import API_KEY, API_SECRET, MINUTE_MS, VenueServer
from tests.servers.binance import BinanceServer
from tests.servers.gate import GateServer
from tests.servers.mexc import MexcServer

VENUES: dict[str, tuple[type[VenueServer], type[Any], type[Any]]] = {
    "binance": (BinanceServer, ccxt.binance, ccxtpro.binance),
    "gate": (GateServer, ccxt.gate, ccxtpro.gate),
    "mexc": (MexcServer, ccxt.mexc, ccxtpro.mexc),
}
CLIENT_ID_PARAM = {"binance": "newClientOrderId", "gate": "text", "mexc": "newClientOrderId"}


class FastClock:
    """Market time at `speed`x, anchored a day back so it never runs ahead of ccxt's real clock."""

    def __init__(self, speed: float = 60.0) -> None:
        self.origin, self.start, self.speed = time.time() - 86_400, time.monotonic(), speed

    def __call__(self) -> float:
        return self.origin + (time.monotonic() - self.start) * self.speed


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Any]]:
    """Start servers on demand; on the way out, stop them and fail on any error they swallowed."""
    started: list[VenueServer] = []

    async def make(cls: type[VenueServer], **kwargs: Any) -> Any:
        server = cls(**kwargs)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()
        assert server.errors == [], server.errors


@pytest.fixture
async def clients() -> AsyncIterator[list[Any]]:
    """ccxt instances to close at the end, whatever the test did."""
    made: list[Any] = []
    yield made
    for exchange in made:
        await exchange.close()


async def venue(name: str, make: Callable[..., Any], clients: list[Any], **kwargs: Any) -> tuple[Any, Any]:
    server_cls, ccxt_cls, _ = VENUES[name]
    server = await make(server_cls, **kwargs)
    # ccxt's own throttle off: these servers have no limits, and mexc's load_markets leaves
    # ccxt 5 s of throttle debt (contract/detail costs 100 x 50 ms) that would slow every test.
    exchange = server.configure(ccxt_cls({"timeout": 3000, "enableRateLimit": False}))
    clients.append(exchange)
    return server, exchange


async def read_json(ws: Any, n: int, timeout: float = 5.0) -> list[Any]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(n)]


# --------------------------------------------------------------------------- ccxt REST

async def test_binance_load_markets_is_one_request_with_rewritten_urls(make_server, clients) -> None:
    srv = await make_server(BinanceServer)
    # What configure() does, spelled out: the lead's venue code does the same.
    exchange = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                                         "fetchMargins": False}})
    clients.append(exchange)
    exchange.urls["api"]["public"] = exchange.urls["api"]["private"] = f"{srv.rest_url}/api/v3"
    markets = await exchange.load_markets()
    assert sorted(markets) == ["BTC/USDT", "ETH/USDT"]
    assert [(r.method, r.path) for r in srv.requests] == [("GET", "/api/v3/exchangeInfo")]


async def test_binance_full_exchange_info_capture_loads_1695_markets(make_server, clients) -> None:
    srv, exchange = await venue("binance", make_server, clients, full_exchange_info=True)
    markets = await exchange.load_markets()
    assert len(markets) == 1695
    assert markets["BTC/USDT"]["limits"]["cost"]["min"] == 10.0  # the real MIN_NOTIONAL of 2021
    assert markets["BTC/USDT"]["precision"]["price"] == 0.01


async def test_gate_and_mexc_load_markets_requests(make_server, clients) -> None:
    gate, gx = await venue("gate", make_server, clients)
    assert len(await gx.load_markets()) == 1458
    assert sorted(r.path for r in gate.requests) == sorted(
        ["/api/v4/spot/currencies", "/api/v4/account/detail", "/api/v4/margin/currency_pairs",
         "/api/v4/spot/currency_pairs"])
    mexc, mx = await venue("mexc", make_server, clients)
    assert list(await mx.load_markets()) == ["BTC/USDT"]
    assert sorted(r.path for r in mexc.requests) == sorted(
        ["/api/v3/capital/config/getall", "/api/v3/exchangeInfo", "/api/v1/contract/detail"])


@pytest.mark.parametrize("name", VENUES)
async def test_public_market_data(name: str, make_server, clients) -> None:
    srv, exchange = await venue(name, make_server, clients)
    ticker = await exchange.fetch_ticker("BTC/USDT")
    assert ticker["bid"] < ticker["ask"] and ticker["bid"] <= ticker["last"] <= ticker["ask"]
    assert ticker["low"] <= ticker["last"] <= ticker["high"]

    candles = await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    opens = [c[0] for c in candles]
    assert opens == list(range(opens[0], opens[0] + 5 * MINUTE_MS, MINUTE_MS))
    assert opens[-1] == srv.now_ms() // MINUTE_MS * MINUTE_MS or opens[-1] == (srv.now_ms() // MINUTE_MS - 1) * MINUTE_MS
    for (_, o, h, low, c, v), prev in zip(candles[1:], candles):
        assert low <= min(o, c) <= max(o, c) <= h and v > 0
        assert o == prev[4]  # the model's price is continuous across minutes

    book = await exchange.fetch_order_book("BTC/USDT", 5 if name != "gate" else 10)
    assert book["bids"][0][0] < book["asks"][0][0]
    assert [b[0] for b in book["bids"]] == sorted((b[0] for b in book["bids"]), reverse=True)

    trades = await exchange.fetch_trades("BTC/USDT", limit=3)
    assert len(trades) == 3 and all(t["price"] > 0 and t["amount"] > 0 for t in trades)


@pytest.mark.parametrize("name", VENUES)
async def test_order_lifecycle_with_client_order_id(name: str, make_server, clients) -> None:
    srv, exchange = await venue(name, make_server, clients)
    await exchange.load_markets()
    balance = await exchange.fetch_balance()
    assert balance["USDT"]["free"] == 100_000

    order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 50_000, {"clientOrderId": "mt42"})
    expected_client_id = "t-mt42" if name == "gate" else "mt42"
    locked = await exchange.fetch_balance()
    assert locked["USDT"]["used"] == 500 and locked["USDT"]["free"] == 99_500

    fetched = await exchange.fetch_order(order["id"], "BTC/USDT")
    assert (fetched["status"], fetched["clientOrderId"], fetched["amount"], fetched["price"]) == \
        ("open", expected_client_id, 0.01, 50_000)
    assert [o["id"] for o in await exchange.fetch_open_orders("BTC/USDT")] == [order["id"]]

    canceled = await exchange.cancel_order(order["id"], "BTC/USDT")
    assert canceled["status"] == "canceled"
    assert (await exchange.fetch_balance())["USDT"]["free"] == 100_000

    create = next(r for r in srv.requests if r.method == "POST")
    assert CLIENT_ID_PARAM[name] in create.params and create.signed
    assert API_KEY not in repr(srv.requests) and API_SECRET not in repr(srv.requests)


async def test_binance_reconciles_by_client_order_id_and_rejects(make_server, clients) -> None:
    srv, exchange = await venue("binance", make_server, clients)
    await exchange.load_markets()
    await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50_000, {"clientOrderId": "j-1"})
    found = await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "j-1"})
    assert found["clientOrderId"] == "j-1" and found["status"] == "open"
    srv.fill("j-1")
    assert (await exchange.fetch_order(found["id"], "BTC/USDT"))["status"] == "closed"
    assert (await exchange.fetch_balance())["BTC"]["free"] == 1.001

    await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50_000, {"clientOrderId": "j-2"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent."):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50_000, {"clientOrderId": "j-2"})
    with pytest.raises(ccxt.InsufficientFunds, match="Account has insufficient balance for requested action."):
        await exchange.create_order("BTC/USDT", "limit", "buy", 10, 50_000, {"clientOrderId": "j-3"})
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):  # -1013; ccxt does not check min cost
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.00005, 50_000)
    with pytest.raises(ccxt.OrderNotFound):
        await exchange.fetch_order("1", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        await exchange.cancel_order("1", "BTC/USDT")
    exchange.secret = "not-the-secret"
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        await exchange.fetch_balance()


async def test_gate_text_rule_and_lookup_by_text(make_server, clients) -> None:
    srv, exchange = await venue("gate", make_server, clients)
    await exchange.load_markets()
    order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50_000, {"text": "t-abc"})
    assert (await exchange.fetch_order("t-abc", "BTC/USDT"))["id"] == order["id"]
    with pytest.raises(ccxt.BadRequest, match="INVALID_PARAM_VALUE"):  # starts with "t" so ccxt sends it as is
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50_000, {"text": "tabc"})
    with pytest.raises(ccxt.InsufficientFunds):
        await exchange.create_order("BTC/USDT", "limit", "buy", 10, 50_000)
    with pytest.raises(ccxt.OrderNotFound):
        await exchange.fetch_order("12345", "BTC/USDT")
    exchange.secret = "not-the-secret"
    with pytest.raises(ccxt.AuthenticationError, match="INVALID_SIGNATURE"):
        await exchange.fetch_balance()


async def test_mexc_rejections(make_server, clients) -> None:
    srv, exchange = await venue("mexc", make_server, clients)
    await exchange.load_markets()
    await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50_000, {"clientOrderId": "m-1"})
    assert (await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "m-1"}))["status"] == "open"
    with pytest.raises(ccxt.InsufficientFunds):
        await exchange.create_order("BTC/USDT", "limit", "buy", 10, 50_000)
    # MEXC's real "not found" body; ccxt 4.5 has no mapping for -2013, so it is a plain ExchangeError.
    with pytest.raises(ccxt.ExchangeError, match="-2013") as caught:
        await exchange.fetch_order("C02__1", "BTC/USDT")
    assert type(caught.value) is ccxt.ExchangeError
    exchange.secret = "not-the-secret"
    with pytest.raises(ccxt.AuthenticationError, match="700002"):
        await exchange.fetch_balance()


# --------------------------------------------------------------------------- REST wire format and faults

async def test_binance_error_bodies_and_statuses_on_the_wire(make_server) -> None:
    srv = await make_server(BinanceServer)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{srv.rest_url}/api/v3/ticker/24hr", params={"symbol": "NOPE"}) as r:
            assert (r.status, await r.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
        srv.faults.rate_limit(retry_after=2)
        async with http.get(f"{srv.rest_url}/api/v3/time") as r:
            assert (r.status, r.headers["Retry-After"], (await r.json())["code"]) == (429, "2", -1003)
        srv.faults.ban(retry_after=120)
        async with http.get(f"{srv.rest_url}/api/v3/time") as r:
            assert (r.status, r.headers["Retry-After"]) == (418, "120")
            assert (await r.json())["msg"].startswith("Way too many requests; IP(127.0.0.1) banned until")
        async with http.get(f"{srv.rest_url}/api/v3/account", params={"timestamp": "1", "signature": "x"},
                            headers={"X-MBX-APIKEY": API_KEY}) as r:
            assert (r.status, await r.json()) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
        async with http.get(f"{srv.rest_url}/api/v3/account") as r:
            assert r.status == 401


async def test_binance_klines_paging(make_server) -> None:
    srv = await make_server(BinanceServer)
    now = srv.now_ms()
    start = (now // MINUTE_MS - 100) * MINUTE_MS
    async with aiohttp.ClientSession() as http:
        async def klines(**params: Any) -> list[list[Any]]:
            async with http.get(f"{srv.rest_url}/api/v3/klines", params={"symbol": "BTCUSDT", **params}) as r:
                return await r.json()

        page = await klines(interval="1m", startTime=start, limit=10)
        assert [k[0] for k in page] == [start + i * MINUTE_MS for i in range(10)]
        assert page[0][6] == start + MINUTE_MS - 1
        assert (await klines(interval="1m", startTime=start + 1, limit=1))[0][0] == start + MINUTE_MS
        assert [k[0] for k in await klines(interval="1m", startTime=start, endTime=start + 2 * MINUTE_MS)] == \
            [start, start + MINUTE_MS, start + 2 * MINUTE_MS]
        assert (await klines(interval="1m", endTime=start, limit=2))[-1][0] == start
        # An hour is its sixty minutes: same open, close, extremes and volume.
        hour = (now // 3_600_000 - 2) * 3_600_000
        h = (await klines(interval="1h", startTime=hour, limit=1))[0]
        minutes = await klines(interval="1m", startTime=hour, limit=60)
        assert (h[1], h[4]) == (minutes[0][1], minutes[-1][4])
        assert float(h[2]) == max(float(m[2]) for m in minutes) and float(h[3]) == min(float(m[3]) for m in minutes)
        assert float(h[5]) == pytest.approx(sum(float(m[5]) for m in minutes))
        async with http.get(f"{srv.rest_url}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "7m"}) as r:
            assert (r.status, (await r.json())["code"]) == (400, -1120)


async def test_servers_are_deterministic(make_server) -> None:
    a, b = await make_server(BinanceServer, clock=FakeClock()), await make_server(BinanceServer, clock=FakeClock())
    async with aiohttp.ClientSession() as http:
        bodies = []
        for srv in (a, b):
            async with http.get(f"{srv.rest_url}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"}) as r:
                klines = await r.json()
            async with http.get(f"{srv.rest_url}/api/v3/ticker/24hr", params={"symbol": "BTCUSDT"}) as r:
                bodies.append((klines, await r.json()))
    assert bodies[0] == bodies[1]


async def test_quotes_straddle_the_last_price_whatever_the_recording(make_server) -> None:
    """Quotes take their spread from recorded frames, whose last price may lie outside them."""
    clock = FakeClock()
    binance_srv, gate_srv = await make_server(BinanceServer, clock=clock), await make_server(GateServer, clock=clock)
    async with aiohttp.ClientSession() as http:
        for step in range(60):
            clock.t = 1_700_000_000 + step * 1.1
            async with http.get(f"{binance_srv.rest_url}/api/v3/ticker/24hr", params={"symbol": "BTCUSDT"}) as r:
                t = await r.json()
            assert float(t["bidPrice"]) <= float(t["lastPrice"]) <= float(t["askPrice"])
            async with http.get(f"{gate_srv.rest_url}/api/v4/spot/tickers", params={"currency_pair": "BTC_USDT"}) as r:
                g = (await r.json())[0]
            assert float(g["highest_bid"]) <= float(g["last"]) <= float(g["lowest_ask"])


EXPECTED_EXCEPTIONS = [
    # (venue, fault, ccxt class raised). The lead's breaker keys on these.
    ("binance", ("status", 500), ccxt.OperationFailed),  # -1001 JSON body: not a NetworkError in ccxt 4.5
    ("binance", ("status", 503), ccxt.ExchangeNotAvailable),
    ("binance", ("status", 429), ccxt.DDoSProtection),
    ("binance", ("status", 418), ccxt.DDoSProtection),
    ("gate", ("status", 500), ccxt.ExchangeNotAvailable),
    ("gate", ("status", 429), ccxt.RateLimitExceeded),
    ("gate", ("status", 418), ccxt.DDoSProtection),
    ("mexc", ("status", 500), ccxt.ExchangeNotAvailable),
    ("mexc", ("status", 503), ccxt.OnMaintenance),
    ("mexc", ("status", 429), ccxt.RateLimitExceeded),
    ("mexc", ("status", 418), ccxt.DDoSProtection),
    *[(name, ("delay", 0), ccxt.RequestTimeout) for name in VENUES],
    *[(name, ("refuse", 0), ccxt.ExchangeNotAvailable) for name in VENUES],
]


@pytest.mark.parametrize(("name", "fault", "expected"), EXPECTED_EXCEPTIONS,
                         ids=[f"{n}-{f[0]}{f[1] or ''}" for n, f, _ in EXPECTED_EXCEPTIONS])
async def test_fault_maps_to_ccxt_exception(name: str, fault: tuple[str, int], expected: type, make_server,
                                            clients) -> None:
    srv, exchange = await venue(name, make_server, clients)
    await exchange.load_markets()
    exchange.timeout = 500
    kind, status = fault
    if kind == "status":
        srv.faults.next_status(status, retry_after=1 if status in (418, 429) else None)
    elif kind == "delay":
        srv.faults.delay(1.5, times=1)
    else:
        await srv.faults.refuse()
    with pytest.raises(ccxt.BaseError) as caught:
        await exchange.fetch_ticker("BTC/USDT")
    assert type(caught.value) is expected, repr(caught.value)
    await srv.faults.resume()
    assert (await exchange.fetch_ticker("BTC/USDT"))["last"] > 0  # and it recovers


async def test_faults_count_filter_and_refuse_resume(make_server, clients) -> None:
    srv, exchange = await venue("binance", make_server, clients)
    await exchange.load_markets()
    srv.faults.next_status(503, times=3, path="/api/v3/klines")
    assert (await exchange.fetch_ticker("BTC/USDT"))["last"] > 0  # another path is unaffected
    for _ in range(3):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=2)
    assert len(await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=2)) == 2
    assert [r.status for r in srv.requests if r.path == "/api/v3/klines"] == [503, 503, 503, 200]

    port = srv.rest_port
    await srv.faults.refuse()
    with pytest.raises(ccxt.NetworkError):
        await exchange.fetch_ticker("BTC/USDT")
    await srv.faults.resume()
    assert srv.rest_port == port and (await exchange.fetch_ticker("BTC/USDT"))["last"] > 0


# --------------------------------------------------------------------------- websockets, plain client

STREAMS = ["btcusdt@bookTicker", "btcusdt@aggTrade", "btcusdt@trade", "btcusdt@depth@100ms", "btcusdt@kline_1m",
           "btcusdt@ticker", "btcusdt@miniTicker", "btcusdt@depth5"]


async def test_binance_combined_stream_by_path(make_server) -> None:
    srv = await make_server(BinanceServer, rate=20)
    async with websockets.connect(f"{srv.ws_url}/stream?streams={'/'.join(STREAMS)}") as ws:
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < len(STREAMS):
            msg = (await read_json(ws, 1))[0]
            seen[msg["stream"]] = msg["data"]
    now = srv.now_ms()
    events = {s: d.get("e") for s, d in seen.items()}
    assert events == {"btcusdt@bookTicker": None, "btcusdt@aggTrade": "aggTrade", "btcusdt@trade": "trade",
                      "btcusdt@depth@100ms": "depthUpdate", "btcusdt@kline_1m": "kline",
                      "btcusdt@ticker": "24hrTicker", "btcusdt@miniTicker": "24hrMiniTicker", "btcusdt@depth5": None}
    assert all(abs(d["E"] - now) < 5000 for d in seen.values() if "E" in d)  # re-stamped with current time
    book = seen["btcusdt@bookTicker"]
    assert float(book["b"]) < float(book["a"]) and book["s"] == "BTCUSDT"
    assert len(seen["btcusdt@depth5"]["bids"]) == 5


async def test_binance_json_subscribe_list_unsubscribe(make_server) -> None:
    srv = await make_server(BinanceServer, rate=50)
    async with websockets.connect(f"{srv.ws_url}/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "ethusdt@bookTicker"], "id": 1}))
        assert (await read_json(ws, 1))[0] == {"result": None, "id": 1}
        frames = await read_json(ws, 6)
        assert {f.get("e", "bookTicker") for f in frames} == {"aggTrade", "bookTicker"}  # raw payloads on /ws
        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 2}))
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
        replies = [f for f in await read_json(ws, 40) if "id" in f]
        assert replies == [{"result": None, "id": 2}, {"result": ["ethusdt@bookTicker"], "id": 3}]
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@nonsense"], "id": 4}))
        errors = [f for f in await read_json(ws, 40) if f.get("id") == 4]
        assert errors and errors[0]["error"]["code"] == 2


async def test_gate_subscribe_ack_updates_and_ping(make_server) -> None:
    srv = await make_server(GateServer, rate=20)
    async with websockets.connect(f"{srv.ws_url}/ws/v4/") as ws:
        await ws.send(json.dumps({"time": int(time.time()), "channel": "spot.ping"}))
        assert (await read_json(ws, 1))[0]["channel"] == "spot.pong"
        requests = [("spot.tickers", ["BTC_USDT"]), ("spot.trades", ["BTC_USDT"]),
                    ("spot.candlesticks", ["1m", "BTC_USDT"]), ("spot.order_book_update", ["BTC_USDT", "100ms"]),
                    ("spot.book_ticker", ["BTC_USDT"])]
        for i, (channel, payload) in enumerate(requests):
            await ws.send(json.dumps({"time": int(time.time()), "id": i, "channel": channel, "event": "subscribe",
                                      "payload": payload}))
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < 2 * len(requests):
            msg = (await read_json(ws, 1))[0]
            seen.setdefault(f"{msg['channel']}:{msg['event']}", msg)
        assert all(seen[f"{c}:subscribe"]["result"] == {"status": "success"} for c, _ in requests)
        assert seen["spot.tickers:update"]["result"]["currency_pair"] == "BTC_USDT"
        assert seen["spot.candlesticks:update"]["result"]["n"] == "1m_BTC_USDT"
        assert seen["spot.order_book_update:update"]["result"]["e"] == "depthUpdate"
        await ws.send(json.dumps({"time": 0, "channel": "spot.tickers", "event": "subscribe", "payload": ["NOPE_X"]}))
        fails = [m for m in await read_json(ws, 60) if m.get("result") == {"status": "fail"}]
        assert fails and "NOPE_X" in fails[0]["error"]["message"]


async def test_mexc_json_acks_and_protobuf_pushes(make_server) -> None:
    srv = await make_server(MexcServer, rate=20)
    topics = ["spot@public.kline.v3.api.pb@BTCUSDT@Min1", "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT",
              "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT", "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"]
    async with websockets.connect(f"{srv.ws_url}/ws") as ws:
        await ws.send(json.dumps({"method": "PING"}))
        assert json.loads(await ws.recv()) == {"id": 0, "code": 0, "msg": "PONG"}
        await ws.send(json.dumps({"method": "SUBSCRIPTION", "params": topics, "id": 7}))
        assert json.loads(await ws.recv()) == {"id": 7, "code": 0, "msg": ",".join(topics)}
        bodies: dict[str, dict[str, Any]] = {}
        while len(bodies) < len(topics):
            frame = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(frame, bytes)
            message = PushDataV3ApiWrapper_pb2.PushDataV3ApiWrapper()
            message.ParseFromString(frame)
            decoded = MessageToDict(message)
            bodies[decoded["channel"]] = decoded
    kline = bodies[topics[0]]["publicSpotKline"]
    assert kline["interval"] == "Min1" and int(kline["windowEnd"]) - int(kline["windowStart"]) == 60
    assert bodies[topics[1]]["publicAggreDeals"]["deals"][0]["tradeType"] in (1, 2)
    ticker = bodies[topics[2]]["publicAggreBookTicker"]
    assert float(ticker["bidPrice"]) < float(ticker["askPrice"])
    assert bodies[topics[3]]["publicAggreDepths"]["eventType"] == "spot@public.aggre.depth.v3.api.pb@100ms"


async def test_ws_close_every_drops_the_connection(make_server) -> None:
    srv = await make_server(BinanceServer, rate=20)
    srv.ws_faults.close_every(0.3)
    started = time.monotonic()
    async with websockets.connect(f"{srv.ws_url}/ws/btcusdt@bookTicker") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert time.monotonic() - started >= 0.25 and closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    srv.ws_faults.close_every(0.2, abort=True)  # a cut cable: no close frame at all
    async with websockets.connect(f"{srv.ws_url}/ws/btcusdt@bookTicker") as ws:
        with pytest.raises(ConnectionClosedError) as cut:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert cut.value.rcvd is None


async def test_ws_go_silent_keeps_the_connection(make_server) -> None:
    srv = await make_server(BinanceServer, rate=50)
    async with websockets.connect(f"{srv.ws_url}/ws/btcusdt@bookTicker") as ws:
        await read_json(ws, 2)
        srv.ws_faults.go_silent()
        await asyncio.sleep(0.1)
        while True:  # drain what was already on the way
            try:
                await asyncio.wait_for(ws.recv(), 0.1)
            except TimeoutError:
                break
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        await asyncio.wait_for(await ws.ping(), 1)  # still alive and answering
        srv.ws_faults.speak()
        assert (await read_json(ws, 1))[0]["s"] == "BTCUSDT"


async def test_ws_send_malformed(make_server) -> None:
    srv = await make_server(BinanceServer, rate=50)
    async with websockets.connect(f"{srv.ws_url}/ws/btcusdt@bookTicker") as ws:
        await read_json(ws, 1)
        srv.ws_faults.send_malformed(2)
        parsed = []
        for _ in range(8):
            try:
                parsed.append(bool(json.loads(await asyncio.wait_for(ws.recv(), 5))))
            except json.JSONDecodeError:
                parsed.append(False)
        assert parsed.count(False) == 2
        first_bad = parsed.index(False)
        assert parsed[first_bad:first_bad + 2] == [False, False] and all(parsed[first_bad + 2:])


async def test_ws_drop_pongs(make_server) -> None:
    srv = await make_server(GateServer)
    srv.ws_faults.drop_pongs()
    async with websockets.connect(f"{srv.ws_url}/ws/v4/") as ws:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(await ws.ping(), 0.5)  # protocol-level pong withheld
        await ws.send(json.dumps({"time": int(time.time()), "channel": "spot.ping"}))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)  # and the venue's spot.pong too
        srv.ws_faults.drop_pongs(False)
        await ws.send(json.dumps({"time": int(time.time()), "channel": "spot.ping"}))
        assert (await read_json(ws, 1))[0]["channel"] == "spot.pong"


async def test_ws_refuse_and_resume(make_server) -> None:
    srv = await make_server(MexcServer)
    port = srv.ws_port
    await srv.ws_faults.refuse()
    with pytest.raises(OSError):
        await websockets.connect(f"{srv.ws_url}/ws", open_timeout=2)
    await srv.ws_faults.resume()
    assert srv.ws_port == port
    async with websockets.connect(f"{srv.ws_url}/ws") as ws:
        await ws.send(json.dumps({"method": "PING"}))
        assert json.loads(await ws.recv())["msg"] == "PONG"


async def test_ws_rate_and_firehose(make_server) -> None:
    async def count(srv: VenueServer, seconds: float) -> int:
        n = 0
        async with websockets.connect(f"{srv.ws_url}/ws/btcusdt@bookTicker") as ws:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    await asyncio.wait_for(ws.recv(), end - time.monotonic())
                    n += 1
                except TimeoutError:
                    break
        return n

    paced = await count(await make_server(BinanceServer, rate=20), 1.0)
    firehose = await count(await make_server(BinanceServer, rate=None), 1.0)
    assert 5 <= paced <= 30
    assert firehose > 20 * paced, (paced, firehose)


async def test_candles_continuous_after_reconnect_with_rest_backfill(make_server, clients) -> None:
    """The scenario the stream layer must handle: a gap in the kline stream, filled over REST."""
    srv, exchange = await venue("binance", make_server, clients, clock=FastClock(60), rate=20)  # 1 s = 1 minute
    closed: dict[int, dict[str, Any]] = {}

    async def listen(seconds: float) -> list[int]:
        opens = []
        async with websockets.connect(f"{srv.ws_url}/ws/btcusdt@kline_1m") as ws:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                k = json.loads(await asyncio.wait_for(ws.recv(), 5))["k"]
                opens.append(k["t"])
                if k["x"]:
                    closed[k["t"]] = k
        return opens

    before = await listen(2.5)
    await asyncio.sleep(2.5)  # about two and a half market minutes missed
    after = await listen(2.5)
    last_seen, resumed_at = max(before), min(after)
    assert resumed_at - last_seen >= 2 * MINUTE_MS  # there really is a gap

    backfill = await exchange.fetch_ohlcv("BTC/USDT", "1m", since=last_seen, limit=20)
    rest = {c[0]: c for c in backfill}
    series = sorted(set(before) | set(after) | {t for t in rest if t <= max(after)})
    assert series == list(range(series[0], series[-1] + MINUTE_MS, MINUTE_MS))  # no hole left
    for t, k in closed.items():  # a closed candle is the same over websocket and REST
        if t in rest:
            assert rest[t][1:] == [float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"])]
    assert any(t in rest for t in closed)


# --------------------------------------------------------------------------- ccxt.pro

async def test_ccxt_pro_binance_watch_ticker(make_server, clients) -> None:
    srv = await make_server(BinanceServer, rate=20)
    exchange = ccxtpro.binance({"options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                                            "fetchMargins": False}})
    clients.append(exchange)
    exchange.urls["api"]["public"] = exchange.urls["api"]["private"] = f"{srv.rest_url}/api/v3"
    exchange.urls["api"]["ws"]["spot"] = f"{srv.ws_url}/ws"  # ccxt.pro appends /<stream index> and SUBSCRIBEs
    stamps = []
    for _ in range(5):
        ticker = await exchange.watch_ticker("BTC/USDT")
        assert ticker["bid"] < ticker["ask"] and ticker["low"] <= ticker["last"] <= ticker["high"]
        stamps.append(ticker["timestamp"])
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert abs(stamps[-1] - srv.now_ms()) < 5000
    candles = await exchange.watch_ohlcv("BTC/USDT", "1m")
    assert candles[-1][0] == srv.now_ms() // MINUTE_MS * MINUTE_MS
    sent = [json.loads(e.detail) for e in srv.ws_log if e.kind == "recv"]
    assert [m["params"] for m in sent] == [["btcusdt@ticker"], ["btcusdt@kline_1m"]]


@pytest.mark.parametrize("name", ["gate", "mexc"])
async def test_ccxt_pro_gate_and_mexc_watch_ticker(name: str, make_server, clients) -> None:
    server_cls, _, pro_cls = VENUES[name]
    srv = await make_server(server_cls, rate=20)
    exchange = srv.configure(pro_cls({"enableRateLimit": False}))
    clients.append(exchange)
    first = await exchange.watch_ticker("BTC/USDT")
    second = await exchange.watch_ticker("BTC/USDT")
    assert first["bid"] < first["ask"] and second["bid"] < second["ask"]
    trades = await exchange.watch_trades("BTC/USDT")
    assert trades[-1]["price"] > 0

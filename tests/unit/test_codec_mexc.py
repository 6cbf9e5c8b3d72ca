"""MEXC protobuf push frames decode to exact domain events; JSON acks and pongs decode to nothing.

The fixture holds MEXC push frames as decoded dicts; each test encodes them back
to wire bytes with ccxt's compiled schemas, so the codec reads real protobuf.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ccxt.protobuf.mexc.PushDataV3ApiWrapper_pb2 import PushDataV3ApiWrapper
from google.protobuf import json_format

from app.domain import CandleUpdate, Side, Ticker, Trade
from app.streams.codecs import codec_for
from app.streams.codecs.common import MalformedFrame, StreamError
from app.streams.codecs.mexc import TIMEFRAMES, MexcCodec
from app.venues.base import UnknownSymbol

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
RECORDED = json.loads((FIXTURES / "mexc" / "rest-and-decoded-ws.json").read_text())

SYMBOLS = {"BTCUSDT": "BTC/USDT", "MXUSDT": "MX/USDT"}

# Shaped as the MEXC "Websocket Market Streams" docs show these pushes (not in the fixture).
MINI_TICKER = {
    "channel": "spot@public.miniTicker.v3.api.pb@MXUSDT@UTC+8", "symbol": "MXUSDT", "sendTime": "1755076752201",
    "publicMiniTicker": {"symbol": "MXUSDT", "price": "2.5174", "rate": "0.0766", "zonedRate": "0.0766",
                         "high": "2.6299", "low": "2.302", "volume": "11336518.0264", "quantity": "4638390.17",
                         "lastCloseRate": "0.0767", "lastCloseZonedRate": "0.0767", "lastCloseHigh": "2.6299",
                         "lastCloseLow": "2.302"},
}
BOOK_TICKER = {
    "channel": "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT", "symbol": "BTCUSDT", "sendTime": "1736412092433",
    "publicAggreBookTicker": {"bidPrice": "93387.28", "bidQuantity": "3.73485", "askPrice": "93387.29",
                              "askQuantity": "7.669875"},
}
DEPTH = {
    "channel": "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "symbol": "BTCUSDT", "sendTime": "1736411507002",
    "publicAggreDepths": {"asks": [], "bids": [{"price": "92877.58", "quantity": "0.00000000"}],
                          "eventType": "spot@public.aggre.depth.v3.api.pb@100ms", "fromVersion": "10589632359",
                          "toVersion": "10589632359"},
}


def encode(decoded: dict[str, Any]) -> bytes:
    """The wire bytes of a decoded push frame."""
    return json_format.ParseDict(decoded, PushDataV3ApiWrapper()).SerializeToString()


def recorded(name: str) -> dict[str, Any]:
    return copy.deepcopy(RECORDED[name])


@pytest.fixture
def codec() -> MexcCodec:
    return MexcCodec(SYMBOLS)


def test_encoding_keeps_every_recorded_field() -> None:
    # Guards the tests below: a field name the schema does not know would make ParseDict fail,
    # and a dropped one would make the round trip differ.
    for name in ("ws_kline_pb_decoded", "ws_deals_pb_decoded"):
        wire = encode(recorded(name))
        assert json_format.MessageToDict(PushDataV3ApiWrapper.FromString(wire)) == RECORDED[name]


def test_recorded_kline_push(codec: MexcCodec) -> None:
    k = RECORDED["ws_kline_pb_decoded"]["publicSpotKline"]
    (update,) = codec.decode(encode(recorded("ws_kline_pb_decoded")))
    assert isinstance(update, CandleUpdate)
    assert (update.symbol, update.timeframe, update.venue) == ("BTC/USDT", "1m", "mexc")
    c = update.candle
    assert c.ts == int(k["windowStart"]) * 1000 == 1754737920000
    for value, wire in ((c.open, k["openingPrice"]), (c.high, k["highestPrice"]), (c.low, k["lowestPrice"]),
                        (c.close, k["closingPrice"]), (c.volume, k["volume"])):
        assert value == Decimal(wire) and value.as_tuple() == Decimal(wire).as_tuple()
    assert c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high
    # Pushed at 1754737941062, inside the window that ends at 1754737980: still forming.
    assert update.closed is False


def test_a_kline_pushed_after_its_window_ended_is_closed(codec: MexcCodec) -> None:
    frame = recorded("ws_kline_pb_decoded")
    frame["createTime"] = str(int(frame["publicSpotKline"]["windowEnd"]) * 1000)
    assert codec.decode(encode(frame))[0].closed is True


@pytest.mark.parametrize(
    ("interval", "unified"),
    [("Min1", "1m"), ("Min5", "5m"), ("Min15", "15m"), ("Min30", "30m"), ("Min60", "1h"), ("Hour4", "4h"),
     ("Hour8", "8h"), ("Day1", "1d"), ("Week1", "1w"), ("Month1", "1M")],
)
def test_kline_intervals_map_to_unified_timeframes(codec: MexcCodec, interval: str, unified: str) -> None:
    frame = recorded("ws_kline_pb_decoded")
    frame["publicSpotKline"]["interval"] = interval
    frame["channel"] = f"spot@public.kline.v3.api.pb@BTCUSDT@{interval}"
    assert codec.decode(encode(frame))[0].timeframe == unified
    assert set(TIMEFRAMES) == {"Min1", "Min5", "Min15", "Min30", "Min60", "Hour4", "Hour8", "Day1", "Week1", "Month1"}


def test_recorded_deals_push(codec: MexcCodec) -> None:
    deal = RECORDED["ws_deals_pb_decoded"]["publicAggreDeals"]["deals"][0]
    (trade,) = codec.decode(encode(recorded("ws_deals_pb_decoded")))
    assert trade == Trade("BTC/USDT", int(deal["time"]), Decimal("93220.00"), Decimal("0.04438243"), Side.SELL, "", "mexc")
    assert str(trade.price) == deal["price"] and str(trade.amount) == deal["quantity"]


def test_a_push_with_several_deals_gives_one_trade_each_in_order(codec: MexcCodec) -> None:
    frame = recorded("ws_deals_pb_decoded")
    first = frame["publicAggreDeals"]["deals"][0]
    frame["publicAggreDeals"]["deals"].append({**first, "price": "93221.5", "tradeType": 1, "time": "1736409765052"})
    trades = codec.decode(encode(frame))
    assert [(t.side, t.price, t.ts) for t in trades] == [
        (Side.SELL, Decimal("93220.00"), 1736409765051), (Side.BUY, Decimal("93221.5"), 1736409765052)]


def test_symbol_comes_from_the_channel_when_the_wrapper_has_none(codec: MexcCodec) -> None:
    frame = recorded("ws_deals_pb_decoded")
    del frame["symbol"]
    assert codec.decode(encode(frame))[0].symbol == "BTC/USDT"
    frame = recorded("ws_kline_pb_decoded")
    del frame["symbol"]
    assert codec.decode(encode(frame))[0].symbol == "BTC/USDT"


def test_mini_ticker(codec: MexcCodec) -> None:
    (ticker,) = codec.decode(encode(MINI_TICKER))
    assert ticker == Ticker(
        symbol="MX/USDT", ts=1755076752201, last=Decimal("2.5174"), high_24h=Decimal("2.6299"), low_24h=Decimal("2.302"),
        open_24h=Decimal("2.3383"),  # derived from rate 0.0766 (a fraction: +7.66 %): 2.5174 / 1.0766
        base_volume_24h=Decimal("4638390.17"),  # `quantity`: MEXC's `volume` is the quote turnover
        quote_volume_24h=Decimal("11336518.0264"), venue="mexc",
    )


def test_book_ticker_is_a_quote_with_the_mid_as_last(codec: MexcCodec) -> None:
    (ticker,) = codec.decode(encode(BOOK_TICKER))
    assert (ticker.symbol, ticker.ts, ticker.bid, ticker.ask, ticker.last) == (
        "BTC/USDT", 1736412092433, Decimal("93387.28"), Decimal("93387.29"), Decimal("93387.285"))
    assert ticker.high_24h is None


def test_a_push_without_any_time_takes_the_receive_time(codec: MexcCodec) -> None:
    frame = copy.deepcopy(BOOK_TICKER)
    del frame["sendTime"]
    assert codec.decode(encode(frame), received_ms=1736412092999)[0].ts == 1736412092999


def test_depth_pushes_return_nothing(codec: MexcCodec) -> None:
    assert codec.decode(encode(DEPTH)) == []


def test_json_acks_and_pongs_return_nothing(codec: MexcCodec) -> None:
    assert codec.decode('{"id":0,"code":0,"msg":"PONG"}') == []
    assert codec.decode('{"id":0,"code":0,"msg":"spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"}') == []
    assert codec.decode(b'{"id":0,"code":0,"msg":"spot@public.kline.v3.api.pb@BTCUSDT@Min1,spot@public.miniTicker.v3.api.pb@BTCUSDT@24H"}') == []


@pytest.mark.parametrize(
    "frame",
    ['{"id":0,"code":0,"msg":"Not Subscribed successfully! [spot@public.deals.v3.api@BTCUSDT].  Reason： Blocked! "}',
     '{"id":0,"code":100,"msg":"spot@public.kline.v3.api.pb@BTCUSDT@Min2"}'],
)
def test_refused_subscriptions_raise_stream_error(codec: MexcCodec, frame: str) -> None:
    with pytest.raises(StreamError) as info:
        codec.decode(frame)
    assert info.value.venue == "mexc" and info.value.kind == "venue-error"


def _edited(base: dict[str, Any], path: tuple[str, ...], value: Any) -> bytes:
    frame = copy.deepcopy(base)
    target = frame
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return encode(frame)


KLINE = RECORDED["ws_kline_pb_decoded"]
DEALS = RECORDED["ws_deals_pb_decoded"]


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b"\x0a\xff", "protobuf"),  # a length-delimited field cut short
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "protobuf"),  # a varint that never ends
        ('{"id":0,"code":0,"msg":"PON', "json"),
        ("[]", "json"),
        ('{"c":"spot@public.deals.v3.api@BTCUSDT","d":{"deals":[]}}', "unknown-channel"),  # the retired JSON pushes
        (encode({"channel": "spot@public.kline.v3.api.pb@BTCUSDT@Min1", "symbol": "BTCUSDT"}), "missing-field"),
        (_edited(KLINE, ("publicSpotKline", "closingPrice"), ...), "missing-field"),
        (_edited(KLINE, ("publicSpotKline", "windowStart"), ...), "missing-field"),
        (_edited(DEALS, ("publicAggreDeals", "deals", 0, "price"), ...), "missing-field"),
        (_edited(KLINE, ("publicSpotKline", "highestPrice"), "117,341"), "bad-number"),
        (_edited(DEALS, ("publicAggreDeals", "deals", 0, "quantity"), "-Infinity"), "bad-number"),
        (_edited(DEALS, ("publicAggreDeals", "deals", 0, "tradeType"), 3), "bad-value"),
        (_edited(KLINE, ("publicSpotKline", "interval"), "Min2"), "unknown-timeframe"),
        (_edited(KLINE, ("symbol",), "ETHUSDT"), "unknown-symbol"),
        (encode({"channel": "spot@private.account.v3.api.pb", "privateAccount": {"vcoinName": "USDT"}}), "unknown-channel"),
    ],
)
def test_malformed_frames_raise_with_their_kind(codec: MexcCodec, frame: str | bytes, kind: str) -> None:
    with pytest.raises(MalformedFrame) as info:
        codec.decode(frame)
    assert info.value.kind == kind
    assert not isinstance(info.value, StreamError)


def test_subscriptions(codec: MexcCodec) -> None:
    assert codec.subscribe_messages(["BTC/USDT"], ["ticker", "trades", "kline"], "4h") == [
        '{"method":"SUBSCRIPTION","params":["spot@public.miniTicker.v3.api.pb@BTCUSDT@24H",'
        '"spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT","spot@public.kline.v3.api.pb@BTCUSDT@Hour4"]}'
    ]
    with pytest.raises(UnknownSymbol):
        codec.subscribe_messages(["ETH/USDT"], ["ticker"])
    with pytest.raises(ValueError, match="klines"):
        codec.subscribe_messages(["BTC/USDT"], ["kline"], "3m")
    many = MexcCodec({f"C{i}USDT": f"C{i}/USDT" for i in range(11)})
    with pytest.raises(ValueError, match="30"):
        many.subscribe_messages([f"C{i}/USDT" for i in range(11)], ["ticker", "trades", "kline"])


def test_intervals_and_keepalive(codec: MexcCodec) -> None:
    assert [codec.interval_seconds(c) for c in ("ticker", "kline", "trades")] == [3.0, 1.0, 60.0]
    assert json.loads(codec.ping_message()) == {"method": "PING"}
    assert codec.ping_interval is not None and codec.ping_interval < 60  # the server drops a silent connection at 1 min


def test_the_package_builds_the_mexc_codec_by_name() -> None:
    codec = codec_for("mexc", SYMBOLS)
    assert isinstance(codec, MexcCodec) and codec.decode(encode(MINI_TICKER))[0].symbol == "MX/USDT"


def test_quotes_channel_subscribes_book_tickers_beside_mini_tickers(codec: MexcCodec) -> None:
    topics = codec.topics(["BTC/USDT"], ["ticker", "trades", "quotes"])
    assert topics == [
        "spot@public.miniTicker.v3.api.pb@BTCUSDT@24H",
        "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT",
        "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT",
    ]

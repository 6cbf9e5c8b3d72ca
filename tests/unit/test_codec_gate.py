"""Gate.io v4 frames decode to exact domain events: every recorded frame, and the ways a frame goes wrong."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.domain import ZERO, CandleUpdate, Side, Ticker, Trade
from app.streams.codecs.common import MalformedFrame, StreamError
from app.streams.codecs.gate import GateCodec
from app.venues.base import UnknownSymbol

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
CAPTURE = FIXTURES / "gate" / "stream-capture-2021-04-22.log"

# The ten pairs the capture subscribed.
PAIRS = ["INK_USDT", "HAI_ETH", "BTC_USDC", "NANO_USDT", "QTUM3S_USDT", "DIS_USDT", "NEO_BTC", "FAST_USDT", "ZKS_ETH", "OMG_USDT"]
SYMBOLS = {pair: pair.replace("_", "/") for pair in PAIRS}

DAY_START = int(datetime(2021, 4, 22, tzinfo=UTC).timestamp() * 1000)
DAY_END = DAY_START + 86_400_000


def read_capture(path: Path) -> list[tuple[int, str]]:
    """(received ms, payload) of every websocket frame in a capture log (`<url> <dir> <unix-s>: <payload>`)."""
    frames = []
    for line in path.read_text().splitlines():
        head, sep, payload = line.partition(": ")
        if not sep:  # "<url> <-> <unix-s>": a connection opened; or a blank line
            continue
        fields = head.split(" ")
        if len(fields) == 3 and fields[1] != "<-":
            continue
        frames.append((int(float(fields[-1]) * 1000), payload))
    return frames


def exact(value: Decimal | None, wire: str) -> bool:
    """Equal to the wire string, digit for digit (same exponent): proof it never went through float."""
    return value is not None and value == Decimal(wire) and value.as_tuple() == Decimal(wire).as_tuple()


@pytest.fixture(scope="module")
def frames() -> list[tuple[int, str]]:
    return read_capture(CAPTURE)


@pytest.fixture
def codec() -> GateCodec:
    return GateCodec(SYMBOLS)


def test_every_recorded_frame_decodes_to_the_events_it_carries(codec: GateCodec, frames: list[tuple[int, str]]) -> None:
    assert len(frames) == 261
    expected: Counter[str] = Counter()
    got: Counter[str] = Counter()
    for received_ms, payload in frames:
        msg = json.loads(payload)
        expected[f"{msg['channel']} {msg['event']}"] += 1
        for event in codec.decode(payload, received_ms=received_ms):
            got[type(event).__name__] += 1
            assert event.venue == "gate"
            assert event.symbol in SYMBOLS.values()
            ts = event.candle.ts if isinstance(event, CandleUpdate) else event.ts
            assert DAY_START <= ts < DAY_END
            assert ts <= received_ms
            assert received_ms - ts < (120_000 if isinstance(event, CandleUpdate) else 5_000)
    assert expected == {
        "spot.trades subscribe": 2, "spot.tickers subscribe": 2, "spot.candlesticks subscribe": 20,
        "spot.order_book_update subscribe": 20, "spot.order_book_update update": 172,
        "spot.tickers update": 22, "spot.trades update": 9, "spot.candlesticks update": 14,
    }
    # Acks and order-book updates are recognised and dropped; each data frame is one event.
    assert got == {"Ticker": 22, "Trade": 9, "CandleUpdate": 14}


def test_decimal_fields_are_the_wire_strings(codec: GateCodec, frames: list[tuple[int, str]]) -> None:
    checked: Counter[str] = Counter()
    for _, payload in frames:
        msg = json.loads(payload)
        events = codec.decode(payload)
        if not events:
            continue
        (event,) = events
        r = msg["result"]
        if isinstance(event, Ticker):
            assert exact(event.last, r["last"]) and exact(event.bid, r["highest_bid"]) and exact(event.ask, r["lowest_ask"])
            assert exact(event.high_24h, r["high_24h"]) and exact(event.low_24h, r["low_24h"])
            assert exact(event.base_volume_24h, r["base_volume"]) and exact(event.quote_volume_24h, r["quote_volume"])
            # The channel has only a change percentage; the open is derived from it, to the last's precision.
            pct = Decimal(r["change_percentage"])
            assert abs(event.change_pct_24h - pct) <= abs(pct) * Decimal("0.01") + Decimal("0.1")
            assert event.ts == msg["time"] * 1000
            assert event.symbol == r["currency_pair"].replace("_", "/")
        elif isinstance(event, Trade):
            assert exact(event.price, r["price"]) and exact(event.amount, r["amount"])
            assert event.ts == int(r["create_time_ms"].split(".")[0]) and event.id == str(r["id"])
            assert event.side == r["side"]  # Gate reports the taker's side
        else:
            c = event.candle
            assert [exact(c.open, r["o"]), exact(c.high, r["h"]), exact(c.low, r["l"]), exact(c.close, r["c"])] == [True] * 4
            assert c.ts == int(r["t"]) * 1000 and event.timeframe == "1m"
            assert c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high
            # These 2021 frames predate Gate's base amount `a`; `v` is the QUOTE volume
            # (DIS_USDT: 0.201 traded at 121.58 made v = 24.43758), so volume is unknown: 0.
            assert "a" not in r and c.volume == ZERO
            assert event.closed is False  # all inside the 12:12 window, no `w`
        checked[type(event).__name__] += 1
    assert checked == {"Ticker": 22, "Trade": 9, "CandleUpdate": 14}


def test_recorded_trade(codec: GateCodec) -> None:
    frame = (
        '{"time":1619093543,"channel":"spot.trades","event":"update","result":{"id":816995772,"create_time":1619093543,'
        '"create_time_ms":"1619093543708.2642","side":"sell","currency_pair":"DIS_USDT","amount":"0.2010000000",'
        '"price":"121.5800000000"}}'
    )
    assert codec.decode(frame) == [
        Trade("DIS/USDT", 1619093543708, Decimal("121.5800000000"), Decimal("0.2010000000"), Side.SELL, "816995772", "gate")
    ]


# Shaped as the Gate v4 docs show the current frames (with time_ms, `a` and `w`).
CANDLE_NOW = {
    "time": 1606292600, "time_ms": 1606292600376, "channel": "spot.candlesticks", "event": "update",
    "result": {"t": "1606292580", "v": "2362.32035", "c": "19128.1", "h": "19128.1", "l": "19128.1",
               "o": "19128.1", "n": "1m_BTC_USDT", "a": "3.8283", "w": True},
}


def test_current_candles_take_the_base_amount_and_the_window_closed_mark() -> None:
    codec = GateCodec({"BTC_USDT": "BTC/USDT"})
    (update,) = codec.decode(json.dumps(CANDLE_NOW))
    assert update.candle.volume == Decimal("3.8283")  # `a`, base; not `v`, quote
    assert update.closed is True and update.candle.ts == 1606292580000 and update.symbol == "BTC/USDT"
    open_window = {**CANDLE_NOW, "result": {**CANDLE_NOW["result"], "w": False}}
    assert codec.decode(json.dumps(open_window))[0].closed is False
    # No `w` ("may be missing"): a frame sent after the window ended is final all the same.
    late = {**CANDLE_NOW, "time_ms": 1606292640000, "result": {k: v for k, v in CANDLE_NOW["result"].items() if k != "w"}}
    assert codec.decode(json.dumps(late))[0].closed is True


@pytest.mark.parametrize(("gate", "unified"), [("10s", "10s"), ("1h", "1h"), ("4h", "4h"), ("1d", "1d"), ("7d", "1w")])
def test_candle_intervals_map_to_unified_timeframes(gate: str, unified: str) -> None:
    codec = GateCodec({"BTC_USDT": "BTC/USDT"})
    frame = {**CANDLE_NOW, "result": {**CANDLE_NOW["result"], "n": f"{gate}_BTC_USDT", "w": False}}
    assert codec.decode(json.dumps(frame))[0].timeframe == unified


def test_ticker_with_an_empty_book_side_and_millisecond_time() -> None:
    codec = GateCodec({"BTC_USDT": "BTC/USDT"})
    frame = {"time": 1669107766, "time_ms": 1669107766406, "channel": "spot.tickers", "event": "update",
             "result": {"currency_pair": "BTC_USDT", "last": "15743.4", "lowest_ask": "15744.4", "highest_bid": "",
                        "change_percentage": "-1.8254", "base_volume": "9110.473081735",
                        "quote_volume": "145082083.2535", "high_24h": "16280.9", "low_24h": "15468.5"}}
    (ticker,) = codec.decode(json.dumps(frame))
    assert ticker.ts == 1669107766406 and ticker.bid is None and ticker.ask == Decimal("15744.4")


def test_book_ticker_is_a_quote() -> None:
    codec = GateCodec({"BTC_USDT": "BTC/USDT"})
    frame = {"time": 1606293275, "time_ms": 1606293275723, "channel": "spot.book_ticker", "event": "update",
             "result": {"t": 1606293275123, "u": 48733182, "s": "BTC_USDT", "b": "19177.79", "B": "0.0003341504",
                        "a": "19179.38", "A": "0.09"}}
    (ticker,) = codec.decode(json.dumps(frame))
    assert (ticker.ts, ticker.bid, ticker.ask, ticker.last) == (
        1606293275123, Decimal("19177.79"), Decimal("19179.38"), Decimal("19178.585"))


def test_acks_and_pongs_return_nothing(codec: GateCodec) -> None:
    assert codec.decode('{"time":1619093532,"channel":"spot.trades","event":"subscribe","result":{"status":"success"}}') == []
    assert codec.decode('{"time":1545404023,"channel":"spot.pong","event":"","error":null,"result":null}') == []
    assert codec.decode('{"time":1,"channel":"spot.tickers","event":"unsubscribe","error":null,"result":{"status":"success"}}') == []


def test_an_error_frame_raises_stream_error(codec: GateCodec) -> None:
    frame = ('{"time":1611541000,"channel":"spot.candlesticks","event":"subscribe",'
             '"error":{"code":2,"message":"unknown currency pair BTC_USDX"},"result":null}')
    with pytest.raises(StreamError) as info:
        codec.decode(frame)
    assert (info.value.venue, info.value.code) == ("gate", "2") and "BTC_USDX" in info.value.message


TICKER = {"time": 1, "channel": "spot.tickers", "event": "update",
          "result": {"currency_pair": "NEO_BTC", "last": "0.0018716", "lowest_ask": "0.0018734", "highest_bid": "0.0018697",
                     "base_volume": "1", "quote_volume": "2", "high_24h": "0.0018754", "low_24h": "0.0017148"}}
TRADE = {"time": 1, "channel": "spot.trades", "event": "update",
         "result": {"id": 1, "create_time": 1619093546, "create_time_ms": "1619093546958.116", "side": "buy",
                    "currency_pair": "NEO_BTC", "amount": "0.5", "price": "0.0018735"}}
CANDLE = {"time": 1, "channel": "spot.candlesticks", "event": "update",
          "result": {"t": "1619093520", "v": "0", "c": "7.915", "h": "7.915", "l": "7.915", "o": "7.915", "n": "1m_OMG_USDT"}}


def _result(frame: dict, **changes: object) -> str:
    result = {k: v for k, v in {**frame["result"], **changes}.items() if v is not ...}
    return json.dumps({**frame, "result": result})


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ('{"time":1619093534,"channel":"spot.tickers","event":"update","result":{"currency_pair":"NEO', "json"),
        ("[]", "json"),
        (_result(TICKER, last=...), "missing-field"),
        (_result(TRADE, price=...), "missing-field"),
        (_result(CANDLE, h=...), "missing-field"),
        (json.dumps({k: v for k, v in TICKER.items() if k != "channel"}), "missing-field"),
        (json.dumps({k: v for k, v in TICKER.items() if k != "result"}), "missing-field"),
        (_result(TICKER, last="0,0018716"), "bad-number"),
        (_result(TRADE, amount="Infinity"), "bad-number"),
        (_result(CANDLE, t="yesterday"), "bad-number"),
        (_result(TRADE, side="short"), "bad-value"),
        (_result(CANDLE, n="1mOMGUSDT"), "bad-value"),
        (json.dumps({**TICKER, "result": "NEO_BTC"}), "bad-value"),
        (json.dumps({**TICKER, "channel": "spot.orders"}), "unknown-channel"),
        (json.dumps({**TICKER, "event": "snapshot"}), "unknown-channel"),
        (_result(TICKER, currency_pair="BTC_USDT"), "unknown-symbol"),
        (_result(CANDLE, n="2m_OMG_USDT"), "unknown-timeframe"),
    ],
)
def test_malformed_frames_raise_with_their_kind(codec: GateCodec, frame: str, kind: str) -> None:
    with pytest.raises(MalformedFrame) as info:
        codec.decode(frame)
    assert info.value.kind == kind
    assert not isinstance(info.value, StreamError)


def test_subscriptions(codec: GateCodec) -> None:
    assert codec.subscribe_messages(["NEO/BTC", "OMG/USDT"], ["ticker", "trades", "kline"], "1w", now=1619093532.9) == [
        '{"time":1619093532,"channel":"spot.tickers","event":"subscribe","payload":["NEO_BTC","OMG_USDT"]}',
        '{"time":1619093532,"channel":"spot.trades","event":"subscribe","payload":["NEO_BTC","OMG_USDT"]}',
        '{"time":1619093532,"channel":"spot.candlesticks","event":"subscribe","payload":["7d","NEO_BTC"]}',
        '{"time":1619093532,"channel":"spot.candlesticks","event":"subscribe","payload":["7d","OMG_USDT"]}',
    ]
    with pytest.raises(UnknownSymbol):
        codec.subscribe_messages(["BTC/USDT"], ["ticker"])
    with pytest.raises(ValueError, match="candlesticks"):
        codec.subscribe_messages(["NEO/BTC"], ["kline"], "3m")
    with pytest.raises(ValueError, match="channel"):
        codec.subscribe_messages(["NEO/BTC"], ["book"])


def test_intervals_and_keepalive(codec: GateCodec) -> None:
    assert [codec.interval_seconds(c) for c in ("ticker", "kline", "trades")] == [1.0, 2.0, 60.0]
    assert codec.ping_message(now=1545404023.5) == '{"time":1545404023,"channel":"spot.ping"}'
    assert codec.ping_interval == 15.0
    # The codec decodes the answer to its own ping.
    assert codec.decode('{"time":1545404023,"channel":"spot.pong","event":"","error":null,"result":null}') == []


def test_ticker_open_is_derived_from_the_change_percentage_so_the_24h_change_shows() -> None:
    from decimal import Decimal

    from app.streams.codecs.gate import GateCodec

    frame = ('{"time":1606292218,"channel":"spot.tickers","event":"update","result":{"currency_pair":"BTC_USDT",'
             '"last":"19106.55","lowest_ask":"19108","highest_bid":"19106.55","change_percentage":"3.66",'
             '"base_volume":"2811.3042155865","quote_volume":"53441606.52411221454","high_24h":"19417.74",'
             '"low_24h":"18434.21"}}')
    (ticker,) = GateCodec({"BTC_USDT": "BTC/USDT"}).decode(frame)
    assert ticker.open_24h == Decimal("18431.94")
    assert abs(ticker.change_pct_24h - Decimal("3.66")) < Decimal("0.001")

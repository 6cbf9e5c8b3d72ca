"""Binance frames decode to exact domain events: every recorded frame, and the ways a frame goes wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.domain import CandleUpdate, Side, Ticker, Trade
from app.streams.codecs import codec_for
from app.streams.codecs.binance import BinanceCodec
from app.streams.codecs.common import MalformedFrame, StreamError
from app.venues.base import UnknownSymbol

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
CAPTURE = FIXTURES / "binance" / "stream-capture-2021-10-12.log"

# The four markets the capture subscribed.
SYMBOLS = {"NKNUSDT": "NKN/USDT", "BLZETH": "BLZ/ETH", "LRCBTC": "LRC/BTC", "RUNEEUR": "RUNE/EUR"}

DAY_START = int(datetime(2021, 10, 12, tzinfo=UTC).timestamp() * 1000)
DAY_END = DAY_START + 86_400_000

# A 24hrTicker payload as the Binance docs (web-socket-streams.md) show it, with real-looking numbers.
TICKER_24H = {
    "e": "24hrTicker", "E": 1672515782136, "s": "NKNUSDT", "p": "0.0015", "P": "250.00", "w": "0.0018",
    "x": "0.0009", "c": "0.0025", "Q": "10", "b": "0.0024", "B": "10", "a": "0.0026", "A": "100",
    "o": "0.0010", "h": "0.0025", "l": "0.0010", "v": "10000", "q": "18", "O": 0, "C": 86400000,
    "F": 0, "L": 18150, "n": 18151,
}


def read_capture(path: Path) -> list[tuple[int, str]]:
    """(received ms, payload) of every websocket frame in a capture log.

    Records are `<url> <direction> <unix-s>: <payload>`; this Binance capture writes
    its frames as `<unix-s>: <payload>` under the `<url> <-> <unix-s>` line that opened
    the connection.
    """
    frames = []
    for line in path.read_text().splitlines():
        head, sep, payload = line.partition(": ")
        if not sep:  # a connection opened, or a blank line
            continue
        fields = head.split(" ")
        if len(fields) == 3 and fields[1] != "<-":  # an HTTP response
            continue
        frames.append((int(float(fields[-1]) * 1000), payload))
    return frames


def exact(value: Decimal, wire: str) -> bool:
    """Equal to the wire string, digit for digit (same exponent): proof it never went through float."""
    return value == Decimal(wire) and value.as_tuple() == Decimal(wire).as_tuple()


@pytest.fixture(scope="module")
def frames() -> list[tuple[int, str]]:
    return read_capture(CAPTURE)


@pytest.fixture
def codec() -> BinanceCodec:
    return BinanceCodec(SYMBOLS)


def test_every_recorded_frame_decodes_to_the_events_it_carries(codec: BinanceCodec, frames: list[tuple[int, str]]) -> None:
    assert len(frames) == 265
    expected: Counter[str] = Counter()
    got: Counter[str] = Counter()
    for received_ms, payload in frames:
        stream = json.loads(payload)["stream"]
        expected[stream.split("@", 1)[1]] += 1
        for event in codec.decode(payload, received_ms=received_ms):
            got[type(event).__name__] += 1
            assert event.venue == "binance"
            assert event.symbol in SYMBOLS.values()
            ts = event.candle.ts if isinstance(event, CandleUpdate) else event.ts
            assert DAY_START <= ts < DAY_END
            if not isinstance(event, CandleUpdate):
                assert abs(ts - received_ms) < 5_000  # stamped with the event's own time, not something stale
    assert expected == {"depth@100ms": 177, "bookTicker": 84, "aggTrade": 2, "kline_1m": 2}
    # Depth updates are recognised and dropped; each other frame is exactly one event.
    assert got == {"Ticker": 84, "Trade": 2, "CandleUpdate": 2}


def test_decimal_fields_are_the_wire_strings(codec: BinanceCodec, frames: list[tuple[int, str]]) -> None:
    checked = Counter()
    for received_ms, payload in frames:
        data = json.loads(payload)["data"]
        events = codec.decode(payload, received_ms=received_ms)
        if not events:
            continue
        (event,) = events
        if isinstance(event, Ticker):  # bookTicker
            assert exact(event.bid, data["b"]) and exact(event.ask, data["a"])
            assert event.last == (Decimal(data["b"]) + Decimal(data["a"])) / 2
            assert event.ts == received_ms  # bookTicker has no time of its own
            assert event.bid <= event.last <= event.ask
        elif isinstance(event, Trade):
            assert exact(event.price, data["p"]) and exact(event.amount, data["q"])
            assert event.ts == data["T"] and event.id == str(data["a"])
        else:
            k = data["k"]
            c = event.candle
            assert [exact(c.open, k["o"]), exact(c.high, k["h"]), exact(c.low, k["l"]), exact(c.close, k["c"])] == [True] * 4
            assert exact(c.volume, k["v"])  # base volume, not the quote volume k["q"]
            assert c.ts == k["t"] and event.timeframe == "1m" and event.closed is False
            assert c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high
        checked[type(event).__name__] += 1
    assert checked == {"Ticker": 84, "Trade": 2, "CandleUpdate": 2}


def test_recorded_aggtrade_with_buyer_as_taker_is_a_buy(codec: BinanceCodec) -> None:
    frame = (
        '{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,'
        '"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,"T":1633998523963,"m":false,"M":true}}'
    )
    (trade,) = codec.decode(frame)
    assert trade == Trade("NKN/USDT", 1633998523963, Decimal("0.35280000"), Decimal("58.00000000"), Side.BUY, "15683430", "binance")


def test_buyer_maker_means_the_aggressor_sold(codec: BinanceCodec) -> None:
    payload = {"e": "trade", "E": 1672515782136, "s": "LRCBTC", "t": 12345, "p": "0.001", "q": "100",
               "b": 88, "a": 50, "T": 1672515782136, "m": True, "M": True}
    (trade,) = codec.decode(json.dumps(payload))
    assert trade.side is Side.SELL and trade.id == "12345" and trade.symbol == "LRC/BTC"


def test_24h_ticker_fills_every_field(codec: BinanceCodec) -> None:
    (ticker,) = codec.decode(json.dumps({"stream": "nknusdt@ticker", "data": TICKER_24H}))
    assert ticker == Ticker(
        symbol="NKN/USDT", ts=1672515782136, last=Decimal("0.0025"), bid=Decimal("0.0024"), ask=Decimal("0.0026"),
        open_24h=Decimal("0.0010"), high_24h=Decimal("0.0025"), low_24h=Decimal("0.0010"),
        base_volume_24h=Decimal("10000"), quote_volume_24h=Decimal("18"), venue="binance",
    )
    assert ticker.change_pct_24h == Decimal(150)


def test_mini_ticker(codec: BinanceCodec) -> None:
    payload = {"e": "24hrMiniTicker", "E": 1672515782136, "s": "BLZETH", "c": "0.0025", "o": "0.0010",
               "h": "0.0025", "l": "0.0010", "v": "10000", "q": "18"}
    (ticker,) = codec.decode(json.dumps(payload))
    assert (ticker.symbol, ticker.last, ticker.open_24h, ticker.bid) == ("BLZ/ETH", Decimal("0.0025"), Decimal("0.0010"), None)


def test_raw_stream_payloads_decode_like_combined_ones(codec: BinanceCodec, frames: list[tuple[int, str]]) -> None:
    for received_ms, payload in frames:
        raw = json.dumps(json.loads(payload)["data"])
        assert codec.decode(raw, received_ms=received_ms) == codec.decode(payload, received_ms=received_ms)
    assert codec.decode(json.dumps(TICKER_24H)) == codec.decode(json.dumps({"stream": "x", "data": TICKER_24H}))


def test_bytes_frames_and_array_payloads(codec: BinanceCodec) -> None:
    second = dict(TICKER_24H, s="LRCBTC")
    events = codec.decode(json.dumps([TICKER_24H, second]).encode())
    assert [e.symbol for e in events] == ["NKN/USDT", "LRC/BTC"]


def test_a_bare_number_price_is_read_as_decimal_not_float(codec: BinanceCodec) -> None:
    frame = '{"e":"aggTrade","E":1,"s":"NKNUSDT","a":1,"p":0.1,"q":3,"f":1,"l":1,"T":1633998523963,"m":true}'
    (trade,) = codec.decode(frame)
    assert trade.price == Decimal("0.1") and trade.amount == Decimal(3)


def test_kline_closed_flag(codec: BinanceCodec) -> None:
    payload = {"e": "kline", "E": 1, "s": "NKNUSDT", "k": {"t": 1633998480000, "T": 1633998539999, "s": "NKNUSDT",
               "i": "5m", "o": "1", "c": "2", "h": "3", "l": "0.5", "v": "7", "x": True, "q": "9"}}
    (update,) = codec.decode(json.dumps(payload))
    assert update.closed is True and update.timeframe == "5m" and update.candle.volume == Decimal(7)


def test_acks_return_nothing(codec: BinanceCodec) -> None:
    assert codec.decode('{"result":null,"id":1}') == []
    assert codec.decode('{"stream":"nknusdt@depth5","data":{"lastUpdateId":160,"bids":[],"asks":[]}}') == []
    assert codec.decode('{"e":"serverShutdown","E":1668693940000}') == []


@pytest.mark.parametrize(
    "frame",
    ['{"code":2,"msg":"Invalid request: unknown variant SUBSCRIB","id":1}',
     '{"error":{"code":2,"msg":"Invalid request: unknown variant SUBSCRIB"},"id":1}'],
)
def test_error_responses_raise_stream_error(codec: BinanceCodec, frame: str) -> None:
    with pytest.raises(StreamError) as info:
        codec.decode(frame)
    assert info.value.code == "2" and "unknown variant" in info.value.message
    assert info.value.kind == "venue-error"  # a MalformedFrame too, so a counting loop survives it


BOOK = {"u": 1, "s": "NKNUSDT", "b": "0.35210000", "B": "1", "a": "0.35260000", "A": "1"}
AGG = {"e": "aggTrade", "E": 1, "s": "NKNUSDT", "a": 1, "p": "0.1", "q": "1", "T": 1, "m": False}
KLINE = {"e": "kline", "E": 1, "s": "NKNUSDT", "k": {"t": 1, "s": "NKNUSDT", "i": "1m", "o": "1", "c": "1",
                                                     "h": "1", "l": "1", "v": "1", "x": False}}


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ('{"stream":"nknusdt@bookTicker","data":{"u":4998', "json"),
        ("", "json"),
        (b"\xff\xfe{", "json"),
        ("null", "json"),
        (json.dumps(_without(AGG, "p")), "missing-field"),
        (json.dumps(_without(TICKER_24H, "c")), "missing-field"),
        (json.dumps({**KLINE, "k": _without(KLINE["k"], "x")}), "missing-field"),
        (json.dumps({**BOOK, "b": "0.35a"}), "bad-number"),
        (json.dumps({**AGG, "q": "NaN"}), "bad-number"),
        (json.dumps({**AGG, "q": None}), "bad-number"),
        (json.dumps({**AGG, "T": "soon"}), "bad-number"),
        (json.dumps({**AGG, "m": "false"}), "bad-value"),
        (json.dumps({**KLINE, "k": {**KLINE["k"], "x": 0}}), "bad-value"),
        (json.dumps({"stream": "x", "data": "hello"}), "bad-value"),
        ("[1, 2]", "bad-value"),
        (json.dumps({**AGG, "e": "avgPrice"}), "unknown-channel"),
        ('{"stream":"x","data":{"foo":1}}', "unknown-channel"),
        (json.dumps({**BOOK, "s": "BTCUSDT"}), "unknown-symbol"),
        (json.dumps({**KLINE, "k": {**KLINE["k"], "i": "7m"}}), "unknown-timeframe"),
    ],
)
def test_malformed_frames_raise_with_their_kind(codec: BinanceCodec, frame: str | bytes, kind: str) -> None:
    with pytest.raises(MalformedFrame) as info:
        codec.decode(frame)
    assert info.value.kind == kind
    assert not isinstance(info.value, StreamError)


def test_subscriptions(codec: BinanceCodec) -> None:
    assert codec.stream_path(["NKN/USDT", "LRC/BTC"], ["ticker", "trades", "kline"], "1h") == (
        "/stream?streams=nknusdt@ticker/nknusdt@aggTrade/nknusdt@kline_1h/lrcbtc@ticker/lrcbtc@aggTrade/lrcbtc@kline_1h"
    )
    assert codec.subscribe_messages(["RUNE/EUR"], ["kline", "trades"], request_id=7) == [
        '{"method":"SUBSCRIBE","params":["runeeur@kline_1m","runeeur@aggTrade"],"id":7}'
    ]
    with pytest.raises(UnknownSymbol):
        codec.subscribe_messages(["BTC/USDT"], ["ticker"])
    with pytest.raises(ValueError, match="channel"):
        codec.subscribe_messages(["NKN/USDT"], ["depth"])
    with pytest.raises(ValueError, match="klines"):
        codec.stream_path(["NKN/USDT"], ["kline"], "2m")
    many = BinanceCodec({f"C{i}USDT": f"C{i}/USDT" for i in range(400)})
    with pytest.raises(ValueError, match="1024"):
        many.streams([f"C{i}/USDT" for i in range(400)], ["ticker", "trades", "kline"])


def test_intervals_and_keepalive(codec: BinanceCodec) -> None:
    assert [codec.interval_seconds(c) for c in ("ticker", "kline", "trades")] == [1.0, 2.0, 60.0]
    assert codec.ping_message() is None and codec.ping_interval is None
    with pytest.raises(ValueError):
        codec.interval_seconds("depth")


def test_a_symbol_map_with_two_ids_for_one_symbol_is_refused() -> None:
    with pytest.raises(ValueError, match="BTC/USDT"):
        BinanceCodec({"BTCUSDT": "BTC/USDT", "XBTUSDT": "BTC/USDT"})


def test_the_package_builds_codecs_by_venue_without_loading_ccxt_for_binance() -> None:
    # MexcCodec's schemas come from ccxt, whose import takes most of a second: only MEXC pays it.
    code = (
        "import sys; from app.streams.codecs import codec_for, MalformedFrame; "
        "c = codec_for('binance', {'BTCUSDT': 'BTC/USDT'}); "
        "print(type(c).__name__, 'ccxt' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["BinanceCodec", "False"]
    with pytest.raises(ValueError, match="kraken"):
        codec_for("kraken", {})


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", None])
def test_a_24h_ticker_with_a_bad_number_is_malformed_not_a_price(bad) -> None:
    from app.streams.codecs.binance import BinanceCodec
    from app.streams.codecs.common import MalformedFrame

    data = {"e": "24hrTicker", "E": 1634000000000, "s": "BTCUSDT", "c": "57000.01", "b": "57000.00", "a": "57000.02",
            "o": "56000", "h": "58000", "l": "55000", "v": "1234.5", "q": "70000000"}
    data["h"] = bad
    with pytest.raises(MalformedFrame) as err:
        BinanceCodec({"BTCUSDT": "BTC/USDT"}).decode(json.dumps({"stream": "btcusdt@ticker", "data": data}))
    assert err.value.kind == "bad-number"

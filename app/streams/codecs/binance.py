"""Binance spot websocket frames <-> domain events.

Binance serves the same events on raw streams (`/ws/<stream>`, bare payloads)
and combined streams (`/stream?streams=a/b/c`, payloads wrapped as
`{"stream": ..., "data": ...}`); `decode` accepts both. Which event a payload
is comes from its `e` field, except bookTicker, which has none.

Numbers are Binance's strings, parsed straight to Decimal. Source of the
stream names, payloads and update speeds: Binance spot API docs,
web-socket-streams.md (github.com/binance/binance-spot-api-docs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal as D
from decimal import InvalidOperation
from typing import Any

import msgspec

from app.domain import Candle, CandleUpdate, Side, Ticker, Trade, new_ticker
from app.streams.codecs.common import (
    BAD_NUMBER,
    BAD_VALUE,
    JSON,
    MISSING_FIELD,
    TRADES_QUIET_SECONDS,
    UNKNOWN_CHANNEL,
    UNKNOWN_SYMBOL,
    UNKNOWN_TIMEFRAME,
    MalformedFrame,
    StreamError,
    dec,
    int_ms,
    load_json,
    market_ids,
    mid,
    now_ms,
    require_channels,
    reverse_symbols,
    snippet,
)
from app.venues.base import StreamEvent

VENUE = "binance"

INTERVALS = frozenset({"1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"})
"""Binance kline intervals; their names already are the unified timeframe names."""

# Events a stream may carry that are not StreamEvents: recognised and dropped,
# so they are not counted as malformed. serverShutdown announces a close that
# the connection layer sees and reconnects from anyway.
_IGNORED_EVENTS = frozenset({"depthUpdate", "serverShutdown"})

_INTERVAL_SECONDS = {
    "ticker": 1.0,  # <symbol>@ticker, "Update Speed: 1000ms"
    "kline": 2.0,  # <symbol>@kline_<interval>, "2000ms for the other intervals" (1000ms for 1s)
    "trades": TRADES_QUIET_SECONDS,  # <symbol>@aggTrade, "Real-time": only when someone trades
}


# Typed JSON decoding of the frames a live stream carries by the thousand: a combined-stream
# frame (`{"stream": ..., "data": {...}}`) whose payload is a 24hrTicker, kline, aggTrade or
# trade. msgspec reads only the fields the events need, straight into ints, strs and Decimals
# (a Decimal field takes the wire string as `Decimal(text)` does, NaN and all, so the finiteness
# checks stay), skipping the rest: about 1.4 us less a frame than building the whole dict
# (tests/benchmarks/README.md). Anything else, or any field of another type, fails this decoder
# and goes the general way (`_decode_any`), which also words every error; so does a typed frame
# whose numbers, symbol or interval the general way would refuse. The events are the same
# either way. gc=False: these hold only numbers and strings, so they can never be in a
# reference cycle, and untracked objects are cheaper to make and to free.


class _Ticker24(msgspec.Struct, tag_field="e", tag="24hrTicker", gc=False):
    E: int
    s: str
    c: D
    b: D
    a: D
    o: D
    h: D
    l: D  # noqa: E741 -- Binance's field name
    v: D
    q: D


class _KlineBody(msgspec.Struct, gc=False):
    t: int
    i: str
    x: bool
    o: D
    h: D
    l: D  # noqa: E741
    c: D
    v: D


class _Kline(msgspec.Struct, tag_field="e", tag="kline", gc=False):
    s: str
    k: _KlineBody


class _AggTrade(msgspec.Struct, tag_field="e", tag="aggTrade", gc=False):
    s: str
    T: int
    p: D
    q: D
    m: bool
    a: int | str


class _Trade(msgspec.Struct, tag_field="e", tag="trade", gc=False):
    s: str
    T: int
    p: D
    q: D
    m: bool
    t: int | str


class _Combined(msgspec.Struct, gc=False):
    data: _Ticker24 | _Kline | _AggTrade | _Trade


_decode_combined = msgspec.json.Decoder(_Combined).decode
_finite = D.is_finite  # all(map(_finite, values)): half the time of a generator expression


class BinanceCodec:
    """Frames of one Binance spot connection. `symbols` maps market ids ("BTCUSDT") to unified symbols."""

    venue = VENUE
    # The server pings (every 20 s in the current docs) and the websockets
    # library answers with a pong by itself: no application-level ping.
    ping_interval: float | None = None
    max_topics_per_connection: int | None = 1024  # "A single connection can listen to a maximum of 1024 streams"

    def __init__(self, symbols: Mapping[str, str]) -> None:
        self._symbols: dict[str, str] = dict(symbols)
        self._ids = reverse_symbols(self._symbols)
        self._handlers: dict[str, Callable[[dict[str, Any]], StreamEvent]] = {
            "24hrTicker": self._ticker,
            "24hrMiniTicker": self._mini_ticker,
            "aggTrade": self._agg_trade,
            "trade": self._trade,
            "kline": self._kline,
        }

    # -- requests -------------------------------------------------------------

    def streams(self, symbols: Sequence[str], channels: Sequence[str], timeframe: str = "1m") -> list[str]:
        """Stream names, symbol by symbol: `btcusdt@ticker`, `btcusdt@aggTrade`, `btcusdt@kline_1m`."""
        require_channels(channels)
        if "kline" in channels and timeframe not in INTERVALS:
            raise ValueError(f"Binance has no {timeframe!r} klines: use one of {sorted(INTERVALS)}")
        suffixes = {"ticker": "ticker", "trades": "aggTrade", "kline": f"kline_{timeframe}"}
        names = [f"{market_id.lower()}@{suffixes[c]}" for market_id in market_ids(self._ids, symbols, VENUE) for c in channels]
        if len(names) > 1024:
            raise ValueError(f"{len(names)} streams do not fit one Binance connection (at most 1024): split the symbols")
        return names

    def stream_path(self, symbols: Sequence[str], channels: Sequence[str], timeframe: str = "1m") -> str:
        """The combined-stream path to connect to, subscribed from the start: `/stream?streams=a/b/c`."""
        return "/stream?streams=" + "/".join(self.streams(symbols, channels, timeframe))

    def subscribe_messages(
        self, symbols: Sequence[str], channels: Sequence[str], timeframe: str = "1m", *, request_id: int = 1
    ) -> list[str | bytes]:
        """One SUBSCRIBE request (Binance accepts 5 messages a second, so one message, not one per stream)."""
        params = self.streams(symbols, channels, timeframe)
        return [json.dumps({"method": "SUBSCRIBE", "params": params, "id": request_id}, separators=(",", ":"))]

    def interval_seconds(self, channel: str) -> float:
        require_channels([channel])
        return _INTERVAL_SECONDS[channel]

    def ping_message(self) -> str | None:
        return None

    # -- frames ---------------------------------------------------------------

    def decode(self, frame: str | bytes, received_ms: int | None = None) -> list[StreamEvent]:
        """Events in the frame; [] for acks and order-book events.

        `received_ms` stamps events whose payload has no time (bookTicker); without it
        the wall clock is used.
        """
        try:
            data = _decode_combined(frame).data
        except ValueError:  # msgspec.ValidationError/DecodeError, UnicodeError: not one of the typed frames
            return self._decode_any(frame, received_ms)
        cls = data.__class__
        if cls is _Ticker24:
            event: StreamEvent | None = self._fast_ticker(data)  # type: ignore[arg-type]
        elif cls is _Kline:
            event = self._fast_kline(data)  # type: ignore[arg-type]
        else:
            event = self._fast_trade(data)  # type: ignore[arg-type]
        if event is None:  # a value the general way refuses: let it say which
            return self._decode_any(frame, received_ms)
        return [event]

    def _decode_any(self, frame: str | bytes, received_ms: int | None) -> list[StreamEvent]:
        """Any frame, through the parsed JSON: the general way, and the one that words every error."""
        msg = load_json(frame)
        try:
            if type(msg) is dict:
                data = msg.get("data")
                payload = msg if data is None else data
                if type(payload) is dict:
                    return self._event(payload, received_ms)
            elif type(msg) is list:
                payload = msg
            else:
                raise MalformedFrame(JSON, f"not an object: {snippet(frame)}")
            if type(payload) is not list:
                raise MalformedFrame(BAD_VALUE, f"data is neither an object nor a list: {snippet(frame)}")
            events: list[StreamEvent] = []
            for item in payload:  # the !ticker@arr style streams: an array of payloads
                events.extend(self._event(item, received_ms))
            return events
        except KeyError as exc:
            raise MalformedFrame(MISSING_FIELD, f"no {exc} in {snippet(frame)}") from None
        except (TypeError, AttributeError, ValueError) as exc:
            raise MalformedFrame(BAD_VALUE, f"{exc} in {snippet(frame)}") from None

    def _fast_ticker(self, d: _Ticker24) -> Ticker | None:
        values = (d.c, d.b, d.a, d.o, d.h, d.l, d.v, d.q)
        symbol = self._symbols.get(d.s)
        if symbol is None or not all(map(_finite, values)):
            return None
        return new_ticker(symbol, d.E, *values, VENUE)  # type: ignore[no-any-return]

    def _fast_kline(self, d: _Kline) -> CandleUpdate | None:
        k = d.k
        symbol = self._symbols.get(d.s)
        values = (k.o, k.h, k.l, k.c, k.v)
        if symbol is None or k.i not in INTERVALS or not all(map(_finite, values)):
            return None
        return CandleUpdate(symbol, k.i, Candle(k.t, *values), k.x, VENUE)

    def _fast_trade(self, d: _AggTrade | _Trade) -> Trade | None:
        symbol = self._symbols.get(d.s)
        if symbol is None or not (d.p.is_finite() and d.q.is_finite()):
            return None
        trade_id = d.a if d.__class__ is _AggTrade else d.t  # type: ignore[union-attr]
        return Trade(symbol, d.T, d.p, d.q, Side.SELL if d.m else Side.BUY, str(trade_id), VENUE)

    def _event(self, d: dict[str, Any], received_ms: int | None) -> list[StreamEvent]:
        kind = d.get("e")
        if kind is not None:
            handler = self._handlers.get(kind)
            if handler is not None:
                return [handler(d)]
            if kind in _IGNORED_EVENTS:
                return []
            raise MalformedFrame(UNKNOWN_CHANNEL, f"event {kind!r}")
        if "u" in d and "b" in d and "a" in d:
            return [self._book_ticker(d, received_ms)]
        if "lastUpdateId" in d:  # partial book depth
            return []
        if "id" in d and "result" in d:  # {"result": null, "id": 1}: a request succeeded
            return []
        error = d.get("error", d)
        if type(error) is dict and "code" in error and "msg" in error:
            raise StreamError(VENUE, str(error["code"]), str(error["msg"]))
        raise MalformedFrame(UNKNOWN_CHANNEL, f"payload with no event type: {sorted(d)[:8]}")

    def _symbol(self, market_id: str) -> str:
        symbol = self._symbols.get(market_id)
        if symbol is None:
            raise MalformedFrame(UNKNOWN_SYMBOL, repr(market_id))
        return symbol

    def _ticker(self, d: dict[str, Any]) -> Ticker:
        # The hot path of a live watchlist (one frame per symbol per second): Decimals straight from
        # the wire strings with one finiteness check, and the Ticker built without __init__.
        try:
            values = (D(d["c"]), D(d["b"]), D(d["a"]), D(d["o"]), D(d["h"]), D(d["l"]), D(d["v"]), D(d["q"]))
        except (InvalidOperation, TypeError, ValueError):
            raise MalformedFrame(BAD_NUMBER, f"a 24hrTicker field is not a number: {d.get('s')!r}") from None
        if not all(v.is_finite() for v in values):
            raise MalformedFrame(BAD_NUMBER, f"a 24hrTicker field is not a finite number: {d.get('s')!r}")
        return new_ticker(self._symbol(d["s"]), int_ms(d["E"]), *values, VENUE)

    def _mini_ticker(self, d: dict[str, Any]) -> Ticker:
        return Ticker(
            symbol=self._symbol(d["s"]),
            ts=int_ms(d["E"]),
            last=dec(d["c"]),
            open_24h=dec(d["o"]),
            high_24h=dec(d["h"]),
            low_24h=dec(d["l"]),
            base_volume_24h=dec(d["v"]),
            quote_volume_24h=dec(d["q"]),
            venue=VENUE,
        )

    def _book_ticker(self, d: dict[str, Any], received_ms: int | None) -> Ticker:
        # Best bid/ask only: no trade price and no time. `last` is the mid so a
        # quote still shows a price; subscribe_messages uses @ticker, so these
        # arrive only when someone subscribes bookTicker on purpose.
        bid = dec(d["b"])
        ask = dec(d["a"])
        return Ticker(
            symbol=self._symbol(d["s"]),
            ts=now_ms() if received_ms is None else received_ms,
            last=mid(bid, ask),
            bid=bid,
            ask=ask,
            venue=VENUE,
        )

    def _agg_trade(self, d: dict[str, Any]) -> Trade:
        return self._trade(d, id_field="a")  # aggTrade: the aggregate trade id

    def _trade(self, d: dict[str, Any], id_field: str = "t") -> Trade:
        return Trade(
            symbol=self._symbol(d["s"]),
            ts=int_ms(d["T"]),
            price=dec(d["p"]),
            amount=dec(d["q"]),
            side=_aggressor(d["m"]),
            id=str(d[id_field]),
            venue=VENUE,
        )

    def _kline(self, d: dict[str, Any]) -> CandleUpdate:
        k = d["k"]
        interval = k["i"]
        if interval not in INTERVALS:
            raise MalformedFrame(UNKNOWN_TIMEFRAME, repr(interval))
        closed = k["x"]
        if type(closed) is not bool:
            raise MalformedFrame(BAD_VALUE, f"kline x={closed!r} is not a boolean")
        return CandleUpdate(
            symbol=self._symbol(d["s"]),
            timeframe=interval,
            candle=Candle(
                ts=int_ms(k["t"]),
                open=dec(k["o"]),
                high=dec(k["h"]),
                low=dec(k["l"]),
                close=dec(k["c"]),
                volume=dec(k["v"]),  # base asset volume ("q" is the quote volume)
            ),
            closed=closed,
            venue=VENUE,
        )


def _aggressor(buyer_is_maker: Any) -> Side:
    # `m` says the buyer was the resting (maker) order, so the taker sold.
    if buyer_is_maker is True:
        return Side.SELL
    if buyer_is_maker is False:
        return Side.BUY
    raise MalformedFrame(BAD_VALUE, f"m={buyer_is_maker!r} is not a boolean")

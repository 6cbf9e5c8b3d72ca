"""MEXC spot websocket frames <-> domain events.

Since August 2025 MEXC pushes market data as binary protobuf
(`PushDataV3ApiWrapper`: a `channel` string, optional `symbol`/`sendTime`/
`createTime`, and one body message per channel) on wss://wbs-api.mexc.com/ws;
acks and pongs are JSON text. The schemas are the ones ccxt ships compiled in
`ccxt.protobuf.mexc`. Source of the topics, payloads and push rates: MEXC spot
v3 docs, "Websocket Market Streams" (mexc.com/api-docs/spot-v3/websocket-market-streams).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ccxt.protobuf.mexc.PushDataV3ApiWrapper_pb2 import PushDataV3ApiWrapper
from google.protobuf.message import DecodeError

from app.domain import Candle, CandleUpdate, Side, Ticker, Trade
from app.streams.codecs.common import (
    BAD_VALUE,
    JSON,
    MISSING_FIELD,
    PROTOBUF,
    TRADES_QUIET_SECONDS,
    UNKNOWN_CHANNEL,
    UNKNOWN_SYMBOL,
    UNKNOWN_TIMEFRAME,
    MalformedFrame,
    StreamError,
    dec,
    load_json,
    market_ids,
    mid,
    now_ms,
    require_channels,
    reverse_symbols,
    snippet,
)
from app.venues.base import StreamEvent

VENUE = "mexc"

TIMEFRAMES: Mapping[str, str] = {
    "Min1": "1m",
    "Min5": "5m",
    "Min15": "15m",
    "Min30": "30m",
    "Min60": "1h",
    "Hour4": "4h",
    "Hour8": "8h",
    "Day1": "1d",
    "Week1": "1w",
    "Month1": "1M",
}
"""MEXC kline interval -> unified timeframe."""

_MEXC_INTERVALS = {unified: mexc for mexc, unified in TIMEFRAMES.items()}

_SIDES = {1: Side.BUY, 2: Side.SELL}  # tradeType: "1: Buy, 2: Sell", the taker's side

# Order book bodies: recognised and dropped (not StreamEvents).
_IGNORED_BODIES = frozenset({"publicIncreaseDepths", "publicLimitDepths", "publicAggreDepths", "publicIncreaseDepthsBatch"})

_INTERVAL_SECONDS = {
    "ticker": 3.0,  # miniTicker: "pushed every 3 seconds"
    "kline": 1.0,  # kline: "push updates to the current klines/candlestick every second"
    "trades": TRADES_QUIET_SECONDS,  # aggre.deals: batched per 100 ms, and only when someone trades
}


class MexcCodec:
    """Frames of one MEXC spot connection. `symbols` maps market ids ("BTCUSDT") to unified symbols."""

    venue = VENUE
    # "If the subscription is successful but there is no data flow, the server will
    # disconnect after one minute. The client can send a ping to keep the connection
    # alive." Every 20 s leaves two spare pings inside that minute.
    ping_interval: float | None = 20.0
    max_topics_per_connection: int | None = 30  # "One ws connection supports a maximum of 30 subscriptions"
    mini_ticker_window = "24H"  # rolling 24 h statistics, like the other venues' tickers

    def __init__(self, symbols: Mapping[str, str]) -> None:
        self._symbols: dict[str, str] = dict(symbols)
        self._ids = reverse_symbols(self._symbols)
        self._handlers: dict[str, Callable[[Any, int], list[StreamEvent]]] = {
            "publicSpotKline": self._kline,
            "publicAggreDeals": self._deals,
            "publicDeals": self._deals,
            "publicMiniTicker": self._mini_ticker,
            "publicMiniTickers": self._mini_tickers,
            "publicAggreBookTicker": self._book_ticker,
            "publicBookTicker": self._book_ticker,
            "publicBookTickerBatch": self._book_ticker_batch,
        }

    # -- requests -------------------------------------------------------------

    def topics(self, symbols: Sequence[str], channels: Sequence[str], timeframe: str = "1m") -> list[str]:
        # "quotes" (best bid/ask, aggre.bookTicker) is MEXC-only: miniTicker carries no bid or ask, so a
        # venue that wants both subscribes to both and merges them (app/venues/mexc.py).
        quotes = "quotes" in channels
        channels = [c for c in channels if c != "quotes"]
        require_channels(channels)
        interval = _MEXC_INTERVALS.get(timeframe)
        if "kline" in channels and interval is None:
            raise ValueError(f"MEXC has no {timeframe!r} klines: use one of {sorted(_MEXC_INTERVALS)}")
        names = []
        for market_id in market_ids(self._ids, symbols, VENUE):
            for channel in channels:
                if channel == "ticker":
                    names.append(f"spot@public.miniTicker.v3.api.pb@{market_id}@{self.mini_ticker_window}")
                elif channel == "trades":
                    names.append(f"spot@public.aggre.deals.v3.api.pb@100ms@{market_id}")
                else:
                    names.append(f"spot@public.kline.v3.api.pb@{market_id}@{interval}")
            if quotes:
                names.append(f"spot@public.aggre.bookTicker.v3.api.pb@100ms@{market_id}")
        if len(names) > 30:
            raise ValueError(f"{len(names)} topics do not fit one MEXC connection (at most 30): split the symbols")
        return names

    def subscribe_messages(
        self, symbols: Sequence[str], channels: Sequence[str], timeframe: str = "1m"
    ) -> list[str | bytes]:
        params = self.topics(symbols, channels, timeframe)
        return [json.dumps({"method": "SUBSCRIPTION", "params": params}, separators=(",", ":"))]

    def interval_seconds(self, channel: str) -> float:
        require_channels([channel])
        return _INTERVAL_SECONDS[channel]

    def ping_message(self) -> str | None:
        return '{"method":"PING"}'

    # -- frames ---------------------------------------------------------------

    def decode(self, frame: str | bytes, received_ms: int | None = None) -> list[StreamEvent]:
        """Events in a binary push frame; [] for JSON acks and pongs and for order-book pushes.

        `received_ms` stamps a push whose wrapper has neither sendTime nor createTime;
        without it the wall clock is used.
        """
        if isinstance(frame, str) or frame[:1] == b"{":
            return self._text(frame)
        try:
            msg = PushDataV3ApiWrapper.FromString(bytes(frame))
        except DecodeError as exc:
            raise MalformedFrame(PROTOBUF, f"{exc}: {snippet(frame)}") from None
        body = msg.WhichOneof("body")
        if body is None:
            raise MalformedFrame(MISSING_FIELD, f"no body in push for channel {msg.channel!r}")
        handler = self._handlers.get(body)
        if handler is None:
            if body in _IGNORED_BODIES:
                return []
            raise MalformedFrame(UNKNOWN_CHANNEL, f"{body} on {msg.channel!r}")
        if msg.HasField("sendTime"):
            event_ms = msg.sendTime
        elif msg.HasField("createTime"):
            event_ms = msg.createTime
        else:
            event_ms = now_ms() if received_ms is None else received_ms
        return handler(msg, event_ms)

    def _text(self, frame: str | bytes) -> list[StreamEvent]:
        msg = load_json(frame)
        if type(msg) is not dict:
            raise MalformedFrame(JSON, f"not an object: {snippet(frame)}")
        if "msg" not in msg:
            # Pushes are binary now; a JSON push is the retired text format.
            raise MalformedFrame(UNKNOWN_CHANNEL, f"text frame that is no ack: {snippet(frame)}")
        text = msg["msg"]
        if text == "PONG":
            return []
        # An ack echoes the topics it subscribed, comma separated. A refusal says so
        # in the same field ("Not Subscribed successfully! [...] Reason: Blocked!"),
        # sometimes with code 0.
        if msg.get("code") == 0 and type(text) is str and text and all(t.startswith("spot@") for t in text.split(",")):
            return []
        raise StreamError(VENUE, str(msg.get("code")), str(text))

    def _symbol(self, msg: Any) -> str:
        market_id = msg.symbol if msg.HasField("symbol") else None
        if market_id is None:
            # No symbol field: take it from the channel, where its position varies by topic.
            for part in msg.channel.split("@")[2:]:
                if part in self._symbols:
                    return self._symbols[part]
            raise MalformedFrame(UNKNOWN_SYMBOL, f"no known symbol in channel {msg.channel!r}")
        symbol = self._symbols.get(market_id)
        if symbol is None:
            raise MalformedFrame(UNKNOWN_SYMBOL, repr(market_id))
        return symbol

    def _item_symbol(self, market_id: str) -> str:
        symbol = self._symbols.get(market_id)
        if symbol is None:
            raise MalformedFrame(UNKNOWN_SYMBOL, repr(market_id))
        return symbol

    def _kline(self, msg: Any, event_ms: int) -> list[StreamEvent]:
        k = msg.publicSpotKline
        timeframe = TIMEFRAMES.get(k.interval)
        if timeframe is None:
            raise MalformedFrame(UNKNOWN_TIMEFRAME, repr(k.interval))
        if not k.windowStart:
            raise MalformedFrame(MISSING_FIELD, "windowStart")
        # No closed flag on this channel: a push sent at or after the window's end
        # is final. Pushes inside the window are the bar as it stands.
        closed = bool(k.windowEnd) and event_ms >= k.windowEnd * 1000
        return [
            CandleUpdate(
                symbol=self._symbol(msg),
                timeframe=timeframe,
                candle=Candle(
                    ts=k.windowStart * 1000,  # seconds on the wire
                    open=_pdec(k.openingPrice, "openingPrice"),
                    high=_pdec(k.highestPrice, "highestPrice"),
                    low=_pdec(k.lowestPrice, "lowestPrice"),
                    close=_pdec(k.closingPrice, "closingPrice"),
                    volume=_pdec(k.volume, "volume"),  # base quantity; `amount` is the quote turnover
                ),
                closed=closed,
                venue=VENUE,
            )
        ]

    def _deals(self, msg: Any, event_ms: int) -> list[StreamEvent]:
        body = msg.publicAggreDeals if msg.WhichOneof("body") == "publicAggreDeals" else msg.publicDeals
        symbol = self._symbol(msg)
        trades: list[StreamEvent] = []
        for deal in body.deals:
            side = _SIDES.get(deal.tradeType)
            if side is None:
                raise MalformedFrame(BAD_VALUE, f"tradeType {deal.tradeType!r}")
            if not deal.time:
                raise MalformedFrame(MISSING_FIELD, "deal time")
            trades.append(
                Trade(
                    symbol=symbol,
                    ts=deal.time,
                    price=_pdec(deal.price, "price"),
                    amount=_pdec(deal.quantity, "quantity"),
                    side=side,
                    venue=VENUE,  # MEXC's public deals carry no trade id
                )
            )
        return trades

    def _mini_ticker(self, msg: Any, event_ms: int) -> list[StreamEvent]:
        t = msg.publicMiniTicker
        symbol = self._item_symbol(t.symbol) if t.symbol else self._symbol(msg)
        return [_mini(symbol, t, event_ms)]

    def _mini_tickers(self, msg: Any, event_ms: int) -> list[StreamEvent]:
        # The all-pairs topic: keep the pairs this codec knows, skip the rest (it carries every market).
        symbols = self._symbols
        return [_mini(symbols[t.symbol], t, event_ms) for t in msg.publicMiniTickers.items if t.symbol in symbols]

    def _book_ticker(self, msg: Any, event_ms: int) -> list[StreamEvent]:
        body = msg.publicAggreBookTicker if msg.WhichOneof("body") == "publicAggreBookTicker" else msg.publicBookTicker
        return [_quote(self._symbol(msg), body, event_ms)]

    def _book_ticker_batch(self, msg: Any, event_ms: int) -> list[StreamEvent]:
        symbol = self._symbol(msg)
        return [_quote(symbol, item, event_ms) for item in msg.publicBookTickerBatch.items]


def _pdec(value: str, name: str) -> Decimal:
    # proto3 strings read "" when absent
    if not value:
        raise MalformedFrame(MISSING_FIELD, name)
    return dec(value)


def _mini(symbol: str, t: Any, event_ms: int) -> Ticker:
    # MEXC's naming is the reverse of Binance's: `volume` is the quote turnover and
    # `quantity` the base volume (docs: "Rolling turnover amount" / "Rolling trading volume").
    # There is no bid/ask on this topic, and no open price: only `rate`, the 24h change as a fraction
    # (like the REST ticker's priceChangePercent, which ccxt multiplies by 100). The open is derived from
    # it, to the last price's precision, so the watchlist shows the 24h change like other venues'.
    last = _pdec(t.price, "price")
    open_24h = None
    if t.rate:
        rate = dec(t.rate)
        if rate > -1 and last:
            open_24h = (last / (1 + rate)).quantize(last)
    return Ticker(
        symbol=symbol,
        ts=event_ms,
        last=last,
        open_24h=open_24h,
        high_24h=_pdec(t.high, "high"),
        low_24h=_pdec(t.low, "low"),
        base_volume_24h=_pdec(t.quantity, "quantity"),
        quote_volume_24h=_pdec(t.volume, "volume"),
        venue=VENUE,
    )


def _quote(symbol: str, q: Any, event_ms: int) -> Ticker:
    # Best bid/ask only: `last` is the mid. subscribe_messages uses miniTicker, so
    # these arrive only when someone subscribes bookTicker on purpose.
    bid = _pdec(q.bidPrice, "bidPrice")
    ask = _pdec(q.askPrice, "askPrice")
    return Ticker(symbol=symbol, ts=event_ms, last=mid(bid, ask), bid=bid, ask=ask, venue=VENUE)

"""Gate.io spot websocket v4 frames <-> domain events.

Every frame is `{"time": s, "time_ms": ms, "channel": ..., "event": ..., "error": ..., "result": ...}`:
`event` is "update" for data, "subscribe"/"unsubscribe" for acks, and a
non-null `error` means the server refused a request. Source of the channel
payloads and update speeds: Gate API v4 docs, "Spot WebSocket v4"
(gate.io/docs/developers/apiv4/ws/en/), checked against the recorded
2021-04-22 capture.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.domain import ZERO, Candle, CandleUpdate, Side, Ticker, Trade
from app.streams.codecs.common import (
    BAD_VALUE,
    JSON,
    MISSING_FIELD,
    TIMEFRAME_SECONDS,
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
    opt_dec,
    require_channels,
    reverse_symbols,
    snippet,
)
from app.venues.base import StreamEvent

VENUE = "gate"

TIMEFRAMES: Mapping[str, str] = {
    "10s": "10s",
    "1m": "1m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1h",
    "4h": "4h",
    "8h": "8h",
    "1d": "1d",
    "7d": "1w",
}
"""Gate candlestick interval -> unified timeframe (the intervals spot.candlesticks documents)."""

_GATE_INTERVALS = {unified: gate for gate, unified in TIMEFRAMES.items()}

# Order book channels: recognised and dropped (not StreamEvents).
_IGNORED_CHANNELS = frozenset({"spot.order_book_update", "spot.order_book"})

_SIDES = {"buy": Side.BUY, "sell": Side.SELL}

_INTERVAL_SECONDS = {
    # spot.tickers "update speed: 1000ms". Gate pushes only when the ticker changed:
    # the 2021 capture shows gaps of 8-13 s on quiet pairs.
    "ticker": 1.0,
    # spot.candlesticks "update speed: 2000ms", also only on change (14 s gaps in the capture).
    "kline": 2.0,
    "trades": TRADES_QUIET_SECONDS,  # spot.trades "realtime": only when someone trades
}


class GateCodec:
    """Frames of one Gate spot connection. `symbols` maps currency pairs ("BTC_USDT") to unified symbols."""

    venue = VENUE
    # Gate pings at the protocol level and does not require spot.ping, but the
    # application ping resets the server's idle timer and its spot.pong proves
    # the server still answers while a quiet pair sends nothing.
    ping_interval: float | None = 15.0
    max_topics_per_connection: int | None = None  # no documented limit

    def __init__(self, symbols: Mapping[str, str]) -> None:
        self._symbols: dict[str, str] = dict(symbols)
        self._ids = reverse_symbols(self._symbols)
        self._handlers: dict[str, Callable[[int, dict[str, Any]], StreamEvent]] = {
            "spot.tickers": self._ticker,
            "spot.trades": self._trade,
            "spot.candlesticks": self._candle,
            "spot.book_ticker": self._book_ticker,
        }

    # -- requests -------------------------------------------------------------

    def subscribe_messages(
        self, symbols: Sequence[str], channels: Sequence[str], timeframe: str = "1m", *, now: float | None = None
    ) -> list[str | bytes]:
        """Tickers and trades take every pair in one request; candlesticks take one `[interval, pair]` each.

        Gate rejects a request whose `time` is more than 60 s off its clock; `now`
        (unix seconds) is for tests, the wall clock otherwise.
        """
        require_channels(channels)
        ids = market_ids(self._ids, symbols, VENUE)
        t = int(time.time() if now is None else now)
        messages: list[str | bytes] = []
        for channel in channels:
            if channel == "ticker":
                messages.append(_request(t, "spot.tickers", ids))
            elif channel == "trades":
                messages.append(_request(t, "spot.trades", ids))
            else:
                interval = _GATE_INTERVALS.get(timeframe)
                if interval is None:
                    raise ValueError(f"Gate has no {timeframe!r} candlesticks: use one of {sorted(_GATE_INTERVALS)}")
                messages.extend(_request(t, "spot.candlesticks", [interval, pair]) for pair in ids)
        return messages

    def interval_seconds(self, channel: str) -> float:
        require_channels([channel])
        return _INTERVAL_SECONDS[channel]

    def ping_message(self, *, now: float | None = None) -> str | None:
        t = int(time.time() if now is None else now)
        return json.dumps({"time": t, "channel": "spot.ping"}, separators=(",", ":"))

    # -- frames ---------------------------------------------------------------

    def decode(self, frame: str | bytes, received_ms: int | None = None) -> list[StreamEvent]:
        """Events in the frame; [] for acks, pongs and order-book updates.

        Every Gate frame carries its own time, so `received_ms` is accepted for the
        common codec interface and not needed.
        """
        msg = load_json(frame)
        if type(msg) is not dict:
            raise MalformedFrame(JSON, f"not an object: {snippet(frame)}")
        try:
            error = msg.get("error")
            if error is not None:
                if type(error) is dict:
                    raise StreamError(VENUE, str(error.get("code")), str(error.get("message")))
                raise StreamError(VENUE, "?", str(error))
            channel = msg["channel"]
            event = msg.get("event")
            if event == "update":
                handler = self._handlers.get(channel)
                if handler is None:
                    if channel in _IGNORED_CHANNELS:
                        return []
                    raise MalformedFrame(UNKNOWN_CHANNEL, repr(channel))
                time_ms = msg.get("time_ms")
                frame_ms = int_ms(msg["time"]) * 1000 if time_ms is None else int_ms(time_ms)
                result = msg["result"]
                if type(result) is list:
                    return [handler(frame_ms, r) for r in result]
                return [handler(frame_ms, result)]
            if event in ("subscribe", "unsubscribe") or channel == "spot.pong":
                return []
            raise MalformedFrame(UNKNOWN_CHANNEL, f"{channel!r} event {event!r}")
        except KeyError as exc:
            raise MalformedFrame(MISSING_FIELD, f"no {exc} in {snippet(frame)}") from None
        except (TypeError, AttributeError, ValueError) as exc:
            raise MalformedFrame(BAD_VALUE, f"{exc} in {snippet(frame)}") from None

    def _symbol(self, pair: str) -> str:
        symbol = self._symbols.get(pair)
        if symbol is None:
            raise MalformedFrame(UNKNOWN_SYMBOL, repr(pair))
        return symbol

    def _ticker(self, frame_ms: int, r: dict[str, Any]) -> Ticker:
        # No open price on this channel, only change_percentage: the open is derived from it (to the
        # last price's precision) so the watchlist can show the 24h change like every other venue's.
        last = dec(r["last"])
        change = opt_dec(r.get("change_percentage"))
        open_24h = None
        if change is not None and change > -100:
            open_24h = (last / (1 + change / 100)).quantize(last) if last else None
        return Ticker(
            symbol=self._symbol(r["currency_pair"]),
            ts=frame_ms,
            last=last,
            open_24h=open_24h,
            bid=opt_dec(r.get("highest_bid")),  # "" when that side of the book is empty
            ask=opt_dec(r.get("lowest_ask")),
            high_24h=dec(r["high_24h"]),
            low_24h=dec(r["low_24h"]),
            base_volume_24h=dec(r["base_volume"]),
            quote_volume_24h=dec(r["quote_volume"]),
            venue=VENUE,
        )

    def _trade(self, frame_ms: int, r: dict[str, Any]) -> Trade:
        side = _SIDES.get(r["side"])  # the taker's side: "Only the taker side is notified"
        if side is None:
            raise MalformedFrame(BAD_VALUE, f"side {r['side']!r}")
        create_ms = r.get("create_time_ms")  # "1606292218213.4578": sub-millisecond digits cut off
        trade_id = r["id"] if "id" in r else r["id_market"]
        return Trade(
            symbol=self._symbol(r["currency_pair"]),
            ts=int_ms(r["create_time"]) * 1000 if create_ms is None else int_ms(create_ms),
            price=dec(r["price"]),
            amount=dec(r["amount"]),
            side=side,
            id=str(trade_id),
            venue=VENUE,
        )

    def _candle(self, frame_ms: int, r: dict[str, Any]) -> CandleUpdate:
        interval, sep, pair = r["n"].partition("_")  # "1m_BTC_USDT"
        if not sep:
            raise MalformedFrame(BAD_VALUE, f"candlestick name {r['n']!r}")
        timeframe = TIMEFRAMES.get(interval)
        if timeframe is None:
            raise MalformedFrame(UNKNOWN_TIMEFRAME, repr(interval))
        start_ms = int_ms(r["t"]) * 1000
        # `v` is the QUOTE volume; `a` is the base amount. Frames from before Gate added
        # `a` (the 2021 capture) carry no base volume at all: volume 0, meaning unknown.
        base = r.get("a")
        # `w: true` marks the final update of a window, but "may be missing"; a frame
        # sent at or after the window's end is final too.
        closed = r.get("w") is True or frame_ms >= start_ms + TIMEFRAME_SECONDS[timeframe] * 1000
        return CandleUpdate(
            symbol=self._symbol(pair),
            timeframe=timeframe,
            candle=Candle(
                ts=start_ms,
                open=dec(r["o"]),
                high=dec(r["h"]),
                low=dec(r["l"]),
                close=dec(r["c"]),
                volume=ZERO if base is None else dec(base),
            ),
            closed=closed,
            venue=VENUE,
        )

    def _book_ticker(self, frame_ms: int, r: dict[str, Any]) -> Ticker:
        # Best bid/ask only (spot.book_ticker): `last` is the mid; subscribe_messages
        # uses spot.tickers, so these arrive only when subscribed on purpose.
        bid = dec(r["b"])
        ask = dec(r["a"])
        return Ticker(
            symbol=self._symbol(r["s"]),
            ts=int_ms(r["t"]),
            last=mid(bid, ask),
            bid=bid,
            ask=ask,
            venue=VENUE,
        )


def _request(t: int, channel: str, payload: list[str]) -> str:
    return json.dumps({"time": t, "channel": channel, "event": "subscribe", "payload": payload}, separators=(",", ":"))

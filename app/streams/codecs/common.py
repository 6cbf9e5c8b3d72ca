"""What the venue codecs share: their errors, the number and time parsers, the tables.

A codec turns one websocket frame into domain events and nothing else: no I/O,
no asyncio, no state beyond the immutable tables it was built with. The
connection layer owns sockets, timers and logging: it counts `MalformedFrame`
by `kind` (a short stable category) and logs each kind once. `StreamError`, the
venue refusing a request, is a MalformedFrame of kind "venue-error" that also
carries the venue's code and message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import msgspec

from app.venues.base import StreamEvent, UnknownSymbol

# MalformedFrame kinds. Stable strings: the connection layer keys counters and
# "log once" on them.
JSON = "json"  # text that is not a JSON object
PROTOBUF = "protobuf"  # binary that the venue's schema cannot decode
MISSING_FIELD = "missing-field"  # a field the event needs is absent (or empty)
BAD_NUMBER = "bad-number"  # a price, amount or time that is not a finite number
BAD_VALUE = "bad-value"  # a field of the wrong type or outside its enumeration
UNKNOWN_CHANNEL = "unknown-channel"  # an event or channel this codec does not know
UNKNOWN_SYMBOL = "unknown-symbol"  # a market id the codec was not built with
UNKNOWN_TIMEFRAME = "unknown-timeframe"  # a kline interval with no unified name
VENUE_ERROR = "venue-error"  # the venue refused a request (StreamError)

CHANNELS = frozenset({"ticker", "trades", "kline"})
"""The channels `subscribe_messages` and `interval_seconds` accept."""

TRADES_QUIET_SECONDS = 60.0
"""Trades arrive only when someone trades, so no venue promises an interval; a
minute of silence on a trades-only stream is unremarkable for a quiet pair."""

TIMEFRAME_SECONDS: Mapping[str, int] = {
    "1s": 1,
    "10s": 10,
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
    "3d": 259200,
    "1w": 604800,
}
"""Unified timeframe -> seconds, for inferring a closed candle from its window.
`1M` is absent on purpose: a month has no fixed length."""


class MalformedFrame(Exception):
    """A frame the codec cannot turn into events. `kind` is one of the module constants."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class StreamError(MalformedFrame):
    """The venue answered a request on the stream with an error (a refused subscription, a bad request).

    Not a parse failure: the frame was understood, and it says our request was wrong or
    refused. It is a MalformedFrame of kind VENUE_ERROR so that a connection loop that
    only counts and logs MalformedFrame keeps running (and logs the venue's words);
    a loop that wants to act on it catches StreamError first.
    """

    def __init__(self, venue: str, code: str, message: str) -> None:
        super().__init__(VENUE_ERROR, f"{venue} refused a stream request ({code}): {message}")
        self.venue = venue
        self.code = code
        self.message = message


class FrameCodec(Protocol):
    """The interface every venue codec offers the connection layer."""

    venue: str
    ping_interval: float | None
    max_topics_per_connection: int | None

    def subscribe_messages(
        self, symbols: Sequence[str], channels: Sequence[str], timeframe: str = "1m"
    ) -> list[str | bytes]: ...

    def decode(self, frame: str | bytes, received_ms: int | None = None) -> list[StreamEvent]: ...

    def interval_seconds(self, channel: str) -> float: ...

    def ping_message(self) -> str | None: ...


# msgspec's JSON decoder, not the standard library's: about half the time on exchange frames
# (tests/benchmarks/bench_codecs.py), and the JSON is a fifth of a frame's way from the socket
# to the bus. `float_hook=Decimal` hands every JSON non-integer to Decimal as its text, so a
# venue that sends a price as a bare number still never passes through float; integers stay
# int at any size. It is stricter than `json`: NaN/Infinity literals and lone surrogate
# escapes are malformed here (json read them as a float nan and an unpaired surrogate).
_decode_json = msgspec.json.Decoder(float_hook=Decimal).decode


def load_json(frame: str | bytes) -> Any:
    """The parsed frame; raises MalformedFrame(JSON) for anything but JSON text."""
    try:
        return _decode_json(frame)
    except ValueError as exc:  # msgspec.DecodeError, and UnicodeError for bytes that are not UTF-8
        raise MalformedFrame(JSON, f"{exc}: {snippet(frame)}") from None


def dec(value: Any) -> Decimal:
    """A finite Decimal straight from the wire string (or int); raises MalformedFrame(BAD_NUMBER)."""
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise MalformedFrame(BAD_NUMBER, f"{value!r} is not a number") from None
    if result.is_finite():
        return result
    raise MalformedFrame(BAD_NUMBER, f"{value!r} is not a finite number")


def opt_dec(value: Any) -> Decimal | None:
    """Like `dec`, but None (and an empty string) stay None: for optional fields."""
    if value is None or value == "":
        return None
    return dec(value)


def int_ms(value: Any) -> int:
    """An integer time from an int or a digit string; a fraction (Gate's "1606292218213.4578") is cut off."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        head = value.partition(".")[0]
        if head.isdecimal():
            return int(head)
    raise MalformedFrame(BAD_NUMBER, f"{value!r} is not a timestamp")


def mid(bid: Decimal, ask: Decimal) -> Decimal:
    """The mid price of a quote-only frame, which carries no trade price."""
    return (bid + ask) / 2


def now_ms() -> int:
    """Wall-clock fallback for frames without a venue timestamp when the caller gave none."""
    return time.time_ns() // 1_000_000


def snippet(frame: Any, limit: int = 160) -> str:
    text = frame if isinstance(frame, str) else repr(frame)
    return text if len(text) <= limit else text[:limit] + "..."


def require_channels(channels: Sequence[str]) -> None:
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown stream channel(s) {unknown}: use {sorted(CHANNELS)}")


def reverse_symbols(symbols: Mapping[str, str]) -> dict[str, str]:
    """Unified symbol -> market id, refusing a map where two ids claim one symbol."""
    reverse: dict[str, str] = {}
    for market_id, symbol in symbols.items():
        if symbol in reverse:
            raise ValueError(f"{symbol} is mapped from both {reverse[symbol]} and {market_id}")
        reverse[symbol] = market_id
    return reverse


def market_ids(reverse: Mapping[str, str], symbols: Sequence[str], venue: str) -> list[str]:
    """The venue's ids for unified symbols, in order; UnknownSymbol names the first one it lacks."""
    ids = []
    for symbol in symbols:
        market_id = reverse.get(symbol)
        if market_id is None:
            raise UnknownSymbol(f"{symbol} is not a {venue} market this stream knows: load the markets first")
        ids.append(market_id)
    return ids

"""One websocket connection's life: connect, subscribe, read frames, decode, detect silence.

A connection ends by raising `VenueUnavailable` with a sentence (refused, closed by
the server, silent for too long, pong overdue). Reconnecting with backoff, resetting
after a healthy period and telling the user is the feed's job (`app.market.feed`),
so this stays one straight loop that is easy to reason about.

- Subscriptions are sent on every connect, so a reconnect always resubscribes.
- Silence: no frame within `silence_after` seconds (a multiple of the channel's
  normal push interval, from the codec) closes the connection.
- The websocket is `app.streams.transport`: the `websockets` library's Sans-I/O
  protocol on our own asyncio protocol, which hands over every frame of a TCP read
  at once. It sends protocol pings every `ping_interval` s and fails the connection
  when a pong is `ping_timeout` s overdue; exchanges that want an application ping
  (Gate's `spot.ping`, MEXC's `PING`) get it from the codec on their own interval.
- A frame the codec cannot parse is counted and logged once per kind; it never ends
  the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from app.streams.codecs.common import MalformedFrame
from app.streams.transport import WsConnection, open_connection
from app.venues.base import StreamEvent, VenueUnavailable

log = logging.getLogger(__name__)

# How long the closing handshake may take before the TCP connection is dropped; it was 2 s around
# websockets' close() before, and a reconnect should not wait longer for a server that hangs.
CLOSE_TIMEOUT = 2.0


class Codec(Protocol):
    def decode(self, frame: str | bytes) -> list[Any]: ...


@dataclass
class StreamStats:
    frames: int = 0
    events: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    connects: int = 0


@dataclass(frozen=True)
class StreamSpec:
    url: str
    subscribe: Sequence[str | bytes] = ()
    silence_after: float = 30.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    # An exchange-level keepalive, if the exchange wants one: a message, or a function that builds a fresh
    # one each time (Gate's ping carries the current time).
    app_ping: str | bytes | Callable[[], str | bytes | None] | None = None
    app_ping_interval: float = 20.0
    open_timeout: float = 10.0
    label: str = "stream"  # names the venue in sentences


async def stream_events(spec: StreamSpec, codec: Codec, stats: StreamStats | None = None) -> AsyncIterator[StreamEvent]:
    """Yield decoded events until the connection fails; then raise VenueUnavailable."""
    stats = stats if stats is not None else StreamStats()
    try:
        conn = await open_connection(
            spec.url,
            open_timeout=spec.open_timeout,
            ping_interval=spec.ping_interval,
            ping_timeout=spec.ping_timeout,
            max_size=4 * 1024 * 1024,
            close_timeout=CLOSE_TIMEOUT,
        )  # no compression: exchanges' frames are small, and deflate costs CPU per frame
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise VenueUnavailable(f"Could not connect to the {spec.label} stream ({_reason(exc)}).") from None
    stats.connects += 1
    pinger: asyncio.Task[None] | None = None
    watch: asyncio.TimerHandle | None = None
    silent = False
    try:
        for message in spec.subscribe:
            conn.send(message)
        if spec.app_ping is not None:
            pinger = asyncio.get_running_loop().create_task(_app_pings(conn, spec.app_ping, spec.app_ping_interval))
        decode = codec.decode
        # The transport puts every frame of a TCP read on `messages` at once (app/streams/transport.py):
        # we take them one by one and wait only when it is empty, so a burst costs one wake-up.
        messages = conn.messages
        take = messages.popleft
        wait = conn.wait
        loop = asyncio.get_running_loop()
        clock = loop.time
        silence_after = spec.silence_after
        waiting_since: float | None = None  # set while we wait for frames: silence is counted only there

        def watchdog() -> None:
            # One timer per silence period rather than a timeout around every wait, which cost ~4 us
            # a frame: a fifth of the whole socket-to-bus path (tests/benchmarks).
            nonlocal silent, watch
            now = clock()
            if waiting_since is not None and now - waiting_since >= silence_after:
                silent = True
                conn.abort()  # the pending wait() raises ConnectionClosed at once
                return
            watch = loop.call_at((now if waiting_since is None else waiting_since) + silence_after, watchdog)

        watch = loop.call_at(clock() + silence_after, watchdog)
        while True:
            if not messages:
                waiting_since = clock()
                await wait()
                waiting_since = None
            frame = take()
            stats.frames += 1
            try:
                events = decode(frame)
            except MalformedFrame as exc:
                stats.malformed[exc.kind] += 1
                if stats.malformed[exc.kind] == 1:  # once per kind: a broken feed must not flood the log
                    log.warning("%s: ignoring a malformed frame (%s): %s", spec.label, exc.kind, exc.detail)
                continue
            for event in events:
                stats.events += 1
                yield event
    except ConnectionClosed as exc:
        if silent:
            raise VenueUnavailable(
                f"The {spec.label} stream sent nothing for {spec.silence_after:.0f} s; reconnecting."
            ) from None
        if conn.ping_timed_out:
            raise VenueUnavailable(
                f"The {spec.label} stream did not answer a ping within {spec.ping_timeout:.0f} s; reconnecting."
            ) from None
        raise VenueUnavailable(f"The {spec.label} stream closed ({_reason(exc)}); reconnecting.") from None
    except OSError as exc:
        raise VenueUnavailable(f"The {spec.label} stream failed ({_reason(exc)}); reconnecting.") from None
    finally:
        if watch is not None:
            watch.cancel()
        if pinger is not None:
            pinger.cancel()
        with contextlib.suppress(Exception):
            await conn.close()  # bounded by CLOSE_TIMEOUT


async def _app_pings(conn: WsConnection, message: str | bytes | Callable[[], str | bytes | None], interval: float) -> None:
    while not conn.closed:
        await asyncio.sleep(interval)
        payload = message() if callable(message) else message
        if payload is not None:
            conn.send(payload)  # a no-op once the connection is closing


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is not None:
            return f"code {exc.rcvd.code}{': ' + exc.rcvd.reason if exc.rcvd.reason else ''}"
        return "the connection dropped without a close frame"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.split("?")[0][:200]  # never echo query strings


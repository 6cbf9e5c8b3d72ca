"""The websocket client under the market data streams: the `websockets` library's Sans-I/O
`ClientProtocol`, driven from our own `asyncio.Protocol`.

Why not `websockets.asyncio.client.connect`: a market stream is a firehose of small frames
that arrive many to a TCP read. That client parses each frame through a chain of generators,
queues each message and wakes `recv()` through a future, about 6.5 us a frame here, a third
of the socket-to-bus path (tests/benchmarks/README.md). Here one TCP read becomes one batch:
`data_received` turns every complete frame in it into a message on `messages` (a deque) and
wakes the reader once.

What the library still does, for every connection: the opening handshake (`connect`,
`send_request`, parsing and checking the response), and every frame that is not a plain,
complete, unfragmented text or binary frame: pings (it writes the pong), pongs, close frames
(it echoes them and moves to CLOSING), fragments and continuations (it checks their order and
the size limit), and anything invalid (masked frames from a server, reserved bits or opcodes,
oversized frames: it fails the connection with the right close code). With `fast_frames`
(the default) we find the frame boundaries ourselves and hand the library each such frame
whole, so its parser is always between frames; the plain data frames, the ones that matter
for throughput, are sliced out of the read directly (FIN set, no reserved bits, unmasked, at
most `max_size`; without extensions the library does exactly that with them and nothing
else). With `fast_frames=False` the library parses every byte (about 4 us a frame).

Also here: keepalive pings with a pong deadline, the closing handshake with a timeout, flow
control (reading pauses while the reader is `max_queue` messages behind), TLS for wss://
(`loop.create_connection(ssl=...)`), redirects as `websockets` follows them, no proxy.
"""

from __future__ import annotations

import asyncio
import random
import struct
import urllib.parse
from collections import deque
from ssl import SSLContext
from typing import Final

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, InvalidURI, SecurityError
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import CONNECTING, OPEN
from websockets.uri import WebSocketURI, parse_uri

__all__ = ["WsConnection", "open_connection"]

MAX_REDIRECTS: Final = 10  # as websockets' connect()
MAX_HEAD: Final = 64 * 1024  # a handshake response longer than this is handed to the library, which refuses it
REDIRECTS: Final = frozenset({300, 301, 302, 303, 307, 308})

_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
_FIN_TEXT: Final = 0x81  # first header byte of a whole text frame: FIN, no reserved bits, opcode 1
_FIN_BINARY: Final = 0x82


class WsConnection(asyncio.Protocol):
    """One client connection. Read `messages` (str for text frames, bytes for binary ones) and
    `await wait()` when it is empty; `wait()` raises the library's ConnectionClosed once the
    connection has ended and every message before the end has been taken."""

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        max_size: int | None,
        fast_frames: bool = True,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_queue: int = 4096,
        max_queue_bytes: int = 16 * 1024 * 1024,
        user_agent: str | None = USER_AGENT,
    ) -> None:
        self.protocol = protocol
        self.messages: deque[str | bytes] = deque()
        self.ping_timed_out = False  # the connection was failed because a pong was overdue
        self.response: Response | None = None
        self.transport: asyncio.Transport | None = None
        self._fast = fast_frames
        self._max_size = max_size  # the same limit as the protocol's: a longer frame is left to it to refuse
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._user_agent = user_agent
        self._loop = asyncio.get_running_loop()
        self._handshake: asyncio.Future[None] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        # Bytes not yet parsed: an incomplete frame at the end of a read (fast_frames), or the
        # handshake response until its blank line.
        self._buf = bytearray()
        # A fragmented message being assembled: its opcode and the fragments so far.
        self._frag_opcode: Opcode | None = None
        self._fragments: list[bytes] = []
        self._paused = False
        self._queued_bytes = 0  # bytes read since the reader last found `messages` empty
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ the reader's side

    async def wait(self) -> None:
        """Return when `messages` is not empty; raise ConnectionClosed when nothing more will come."""
        if self._paused:
            self._paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
        self._queued_bytes = 0
        while not self.messages:
            if self._lost.done():
                raise self.protocol.close_exc
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def send(self, message: str | bytes) -> bool:
        """Send a text (str) or binary (bytes) message; False when the connection is not open."""
        protocol = self.protocol
        if protocol.state is not OPEN:
            return False
        if isinstance(message, str):
            protocol.send_text(message.encode())
        else:
            protocol.send_binary(message)
        self._flush()
        return True

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """The closing handshake: send a close frame, wait up to close_timeout for the server to end
        the TCP connection, then drop it."""
        if self.protocol.state is OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
        if not self._lost.done():
            try:
                async with asyncio.timeout(self._close_timeout):
                    await asyncio.shield(self._lost)
            except TimeoutError:
                self.abort()
                await asyncio.shield(self._lost)

    def abort(self) -> None:
        """Drop the TCP connection at once (no closing handshake): the reader gets ConnectionClosed."""
        if self.transport is not None:
            self.transport.abort()

    @property
    def closed(self) -> bool:
        return self._lost.done()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        request = self.protocol.connect()
        if self._user_agent is not None:
            request.headers.setdefault("User-Agent", self._user_agent)
        self.protocol.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        self._queued_bytes += len(data)
        if protocol.state is OPEN and self._fast:
            buf = self._buf
            if buf:
                buf += data
                self._parse(buf)
            else:
                self._parse(data)
        elif protocol.state is CONNECTING:
            self._handshake_data(data)
        else:
            if self._buf:  # an incomplete frame the fast path kept when the state left OPEN (we sent a close)
                data = bytes(self._buf) + data
                self._buf = bytearray()
            self._to_library(data)
        messages = self.messages
        if messages:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if not self._paused and (len(messages) > self._max_queue or self._queued_bytes > self._max_queue_bytes):
                self._paused = True  # the reader resumes it when it has caught up (wait())
                if self.transport is not None:
                    self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._library_events()
        self._flush()
        return None  # let the transport close: the websocket closing handshake needs no more writes

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent: the state is CLOSED from here on
        for timer in (self._ping_timer, self._pong_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        if not self._handshake.done():
            lost = self.protocol.handshake_exc or ConnectionError("the connection closed during the handshake")
            self._handshake.set_exception(lost)
            self._handshake.exception()  # retrieved here: open_connection may already have given up
        if not self._lost.done():
            self._lost.set_result(None)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ frames

    def _parse(self, data: bytes | bytearray) -> None:
        """Take every complete frame off the front of `data` (`self._buf` or a fresh read): plain
        data frames straight onto `messages`, any other frame whole to the library. Keeps the
        incomplete rest in `self._buf`."""
        n = len(data)
        pos = 0
        append = self.messages.append
        max_size = self._max_size
        plain = self._frag_opcode is None  # inside a fragmented message every frame goes to the library
        while n - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1]
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = data[pos + 2] << 8 | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10])
                start = pos + 10
            else:  # the mask bit: servers must not mask, and the library says so (close code 1002)
                self._give_up(data, pos)
                return
            if max_size is not None and length > max_size:  # the library refuses it (1009) before its payload
                self._give_up(data, pos)
                return
            end = start + length
            if end > n:
                break
            if b0 == _FIN_TEXT and plain:
                try:
                    append(data[start:end].decode())
                except UnicodeDecodeError as exc:
                    self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                    self._buf = bytearray()
                    return
            elif b0 == _FIN_BINARY and plain:
                append(bytes(data[start:end]))
            else:
                self._to_library(data[pos:end])
                if self.protocol.state is not OPEN:  # closed or failed: the library discards the rest
                    self._buf = bytearray()
                    if n > end:
                        self._to_library(data[end:])
                    return
                plain = self._frag_opcode is None
            pos = end
        if data is self._buf:
            del data[:pos]
        else:
            self._buf = bytearray(data[pos:]) if pos < n else self._buf

    def _give_up(self, data: bytes | bytearray, pos: int) -> None:
        # A frame the library will refuse from its header alone: hand it everything from there.
        self._buf = bytearray()
        self._to_library(data[pos:])

    def _handshake_data(self, data: bytes) -> None:
        # Only the response head goes to the library, so that after a 101 it has not started on
        # the frames behind it (its parser must sit between frames for the fast path).
        buf = self._buf
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0 and len(buf) <= MAX_HEAD:
            return
        cut = len(buf) if end < 0 else end + 4
        head, rest = bytes(buf[:cut]), buf[cut:]
        self._buf = bytearray()
        self._to_library(head)
        if not rest:
            return
        if self.protocol.state is OPEN and self._fast:
            self._parse(bytes(rest))  # frames that came with the 101
        else:
            self._to_library(rest)  # frames for the library, or the body of a refusal

    def _to_library(self, data: bytes | bytearray) -> None:
        self.protocol.receive_data(bytes(data))
        self._library_events()
        self._flush()

    def _library_events(self) -> None:
        protocol = self.protocol
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Response):
                self.response = event
        if not self._handshake.done():
            # A refused or broken handshake leaves the state at CONNECTING: its exception says so.
            if protocol.handshake_exc is not None:
                self._handshake.set_exception(protocol.handshake_exc)
            elif protocol.state is not CONNECTING:
                self._handshake.set_result(None)
                self._start_keepalive()
        if protocol.close_expected() and self._close_timer is None and not self._lost.done():
            # We sent or answered a close frame: the server should now end the TCP connection.
            self._close_timer = self._loop.call_later(self._close_timeout, self.abort)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if frame.fin:
                self._deliver(opcode, frame.data)
            else:
                self._frag_opcode = opcode
                self._fragments = [bytes(frame.data)]
        elif opcode is _CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                first, parts = self._frag_opcode, self._fragments
                self._frag_opcode, self._fragments = None, []
                assert first is not None  # the library refuses a continuation without a start
                self._deliver(first, b"".join(parts))
        elif opcode is _PONG:
            if self._ping_payload is not None and frame.data == self._ping_payload:
                self._pong_received()
        # PING: the library has queued the pong; CLOSE: it has echoed it and changed state.

    def _deliver(self, opcode: Opcode, data: bytes | bytearray) -> None:
        if opcode is _TEXT:
            try:
                self.messages.append(bytes(data).decode())
            except UnicodeDecodeError as exc:
                self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
        else:
            self.messages.append(bytes(data))

    def _fail(self, code: int, reason: str) -> None:
        self.protocol.fail(code, reason)
        self._library_events()
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        for data in self.protocol.data_to_send():
            if transport is None or transport.is_closing():
                return
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # the library's SEND_EOF: half-close, as websockets does
                try:
                    transport.write_eof()
                except (OSError, RuntimeError):
                    pass
            else:
                transport.close()

    # ------------------------------------------------------------------ keepalive

    def _start_keepalive(self) -> None:
        if self._ping_interval is not None:
            self._ping_timer = self._loop.call_later(self._ping_interval, self._send_ping)

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self.protocol.state is not OPEN:
            return
        payload = struct.pack("!I", random.getrandbits(32))
        self._ping_payload = payload
        self._ping_sent_at = self._loop.time()
        self.protocol.send_ping(payload)
        self._flush()
        if self._ping_timeout is not None:
            self._pong_timer = self._loop.call_later(self._ping_timeout, self._pong_overdue)
        else:
            self._start_keepalive()

    def _pong_received(self) -> None:
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            # As websockets does: the next ping an interval after this one was sent.
            latency = self._loop.time() - self._ping_sent_at
            if self._ping_interval is not None:
                self._ping_timer = self._loop.call_later(max(0.0, self._ping_interval - latency), self._send_ping)

    def _pong_overdue(self) -> None:
        self._pong_timer = None
        if self.protocol.state is OPEN:
            self.ping_timed_out = True
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")  # what websockets sends


async def open_connection(
    url: str,
    *,
    open_timeout: float | None = 10.0,
    max_size: int | None = 2**20,
    fast_frames: bool = True,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    max_queue: int = 4096,
    user_agent: str | None = USER_AGENT,
    ssl: SSLContext | None = None,
) -> WsConnection:
    """Connect and complete the opening handshake (no compression, no subprotocol, no proxy).

    Raises what `websockets.asyncio.client.connect` raises: InvalidURI, OSError, TimeoutError
    (`open_timeout` covers TCP, TLS and the handshake), InvalidHandshake (InvalidStatus,
    InvalidMessage, ...), SecurityError for a redirect from wss:// to ws://. `ssl` is the TLS
    context for wss:// (default: asyncio's default context, system CAs and host-name checks).
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(open_timeout):
        for _ in range(MAX_REDIRECTS):
            uri = parse_uri(url)
            conn = WsConnection(
                ClientProtocol(uri, max_size=max_size),
                max_size=max_size,
                fast_frames=fast_frames,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                close_timeout=close_timeout,
                max_queue=max_queue,
                user_agent=user_agent,
            )
            await _connect_tcp(loop, conn, uri, ssl)
            try:
                await conn._handshake
            except BaseException as exc:
                conn.abort()
                new_url = _redirect(url, uri, exc) if isinstance(exc, InvalidStatus) else None
                if new_url is None:
                    raise
                url = new_url
                continue
            return conn
    raise SecurityError(f"more than {MAX_REDIRECTS} redirects")


async def _connect_tcp(loop: asyncio.AbstractEventLoop, conn: WsConnection, uri: WebSocketURI, ssl: SSLContext | None) -> None:
    if uri.secure:
        # ssl=True is asyncio's default context (system CAs, host name checked), as websockets uses.
        await loop.create_connection(lambda: conn, uri.host, uri.port, ssl=ssl or True, server_hostname=uri.host)
    else:
        await loop.create_connection(lambda: conn, uri.host, uri.port)


def _redirect(url: str, uri: WebSocketURI, exc: InvalidStatus) -> str | None:
    """The URL a 3xx answer points to, as websockets follows it; None when it is no redirect."""
    response = exc.response
    if response.status_code not in REDIRECTS or "Location" not in response.headers:
        return None
    new_url = urllib.parse.urljoin(url, response.headers["Location"])
    try:
        new_uri = parse_uri(new_url)
    except InvalidURI:
        return None
    if uri.secure and not new_uri.secure:
        raise SecurityError(f"cannot follow redirect to non-secure URI {new_url}") from exc
    return new_url


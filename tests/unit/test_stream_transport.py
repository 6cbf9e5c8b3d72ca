"""The stream transport (app/streams/transport.py) against real websocket servers on 127.0.0.1.

Two kinds of server: the `websockets` library's own (`serve`), for what a well-behaved
exchange does, and `RawServer`, which accepts the handshake with the library's Sans-I/O
`ServerProtocol` and then writes whatever bytes a test gives it, cut wherever the test
likes (fragments, pings in the middle of a burst, broken frames). Every socket test runs
twice: with the fast path for plain data frames and with the library parsing every byte,
which must behave the same.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import random
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from app.streams.codecs.binance import BinanceCodec
from app.streams.connection import StreamSpec, StreamStats, stream_events
from app.streams.transport import WsConnection, open_connection
from app.venues.base import VenueUnavailable

HOST = "127.0.0.1"

pytestmark = pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "library-only"])


async def read_all(conn: WsConnection, n: int, timeout: float = 5.0) -> list[str | bytes]:
    """The next n messages."""
    out: list[str | bytes] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            if not conn.messages:
                await conn.wait()
            out.append(conn.messages.popleft())
    return out


async def closed_exc(conn: WsConnection, timeout: float = 5.0) -> ConnectionClosed:
    """Drain the connection until wait() raises; return what it raised."""
    async with asyncio.timeout(timeout):
        while True:
            conn.messages.clear()
            try:
                await conn.wait()
            except ConnectionClosed as exc:
                return exc


# ----------------------------------------------------------------------------- a raw server


@dataclass
class RawPeer:
    """One accepted connection of RawServer: write raw bytes, read the client's frames."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: ServerProtocol
    request: Request
    frames: list[Frame] = field(default_factory=list)

    async def write(self, data: bytes, pieces: int = 1, pause: float = 0.002) -> None:
        """`data` in `pieces` writes cut at random places, with a pause between them so that the
        client's reads are cut there too."""
        cuts = sorted(random.sample(range(1, len(data)), min(pieces - 1, len(data) - 1))) if pieces > 1 else []
        start = 0
        for end in [*cuts, len(data)]:
            self.writer.write(data[start:end])
            await self.writer.drain()
            start = end
            if end != len(data):
                await asyncio.sleep(pause)

    async def read_frame(self, timeout: float = 5.0) -> Frame:
        """The client's next frame (pongs, close), unmasked by the library."""
        async with asyncio.timeout(timeout):
            while not self.frames:
                data = await self.reader.read(65536)
                if not data:
                    self.protocol.receive_eof()
                    raise EOFError("the client closed the connection")
                self.protocol.receive_data(data)
                self.frames += [e for e in self.protocol.events_received() if isinstance(e, Frame)]
        return self.frames.pop(0)

    def abort(self) -> None:
        self.writer.transport.abort()


class RawServer:
    """`greeting`: bytes sent in the same write as the 101 response; `handshake_pieces`: the
    response and greeting written in that many pieces (a slow or chatty server)."""

    def __init__(self, greeting: bytes = b"", handshake_pieces: int = 1) -> None:
        self.greeting = greeting
        self.handshake_pieces = handshake_pieces
        self.peers: asyncio.Queue[RawPeer] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        while not self.peers.empty():
            self.peers.get_nowait().abort()

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/stream?streams=btcusdt@ticker"

    async def peer(self, timeout: float = 5.0) -> RawPeer:
        async with asyncio.timeout(timeout):
            return await self.peers.get()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocol = ServerProtocol()
        request: Request | None = None
        while request is None:
            data = await reader.read(65536)
            if not data:
                return
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Request):
                    request = event
        protocol.send_response(protocol.accept(request))
        peer = RawPeer(reader, writer, protocol, request)
        await peer.write(b"".join(protocol.data_to_send()) + self.greeting, pieces=self.handshake_pieces)
        await self.peers.put(peer)


async def raw_open(raw: RawServer, fast: bool, **kwargs: object) -> WsConnection:
    """A connection to `raw`. The raw server never answers our close frame, so closing takes close_timeout."""
    kwargs.setdefault("close_timeout", 0.3)
    return await open_connection(raw.url, fast_frames=fast, **kwargs)  # type: ignore[arg-type]


def frame(payload: str | bytes, opcode: Opcode | None = None, fin: bool = True) -> bytes:
    """One server-to-client frame (unmasked), as the library writes it."""
    if opcode is None:
        opcode = Opcode.TEXT if isinstance(payload, str) else Opcode.BINARY
    data = payload.encode() if isinstance(payload, str) else payload
    return Frame(opcode, data, fin).serialize(mask=False)


def raw_frame(first_byte: int, payload: bytes) -> bytes:
    """A frame built by hand, for frames the library refuses to write."""
    n = len(payload)
    if n < 126:
        return bytes([first_byte, n]) + payload
    if n < 65536:
        return bytes([first_byte, 126]) + n.to_bytes(2, "big") + payload
    return bytes([first_byte, 127]) + n.to_bytes(8, "big") + payload


def ticker_payloads(n: int, e0: int = 1_700_000_000_000) -> list[str]:
    """Binance combined-stream 24hrTicker frames of assorted lengths (short, 126-byte and 64 KB+ headers)."""
    out = []
    for i in range(n):
        data = {"e": "24hrTicker", "E": e0 + i, "s": "BTCUSDT", "c": f"{56000 + i}.01", "b": "55999.99", "a": "56000.02",
                "o": "55000", "h": "57000", "l": "54000", "v": "1234.5", "q": "69000000"}
        if i % 7 == 3:
            data["x"] = "pad" * (i % 50)  # some shorter, some longer than 125 bytes
        if i % 97 == 50:
            data["x"] = "p" * 70_000  # a frame with the 8-byte length
        out.append(json.dumps({"stream": "btcusdt@ticker", "data": data}, separators=(",", ":")))
    return out


def tls_contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for a self-signed certificate for 127.0.0.1; the client checks
    the certificate and the host name as in production, trusting this one through a CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Meridian test stream")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_file.write_bytes(pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    return server, client


# ----------------------------------------------------------------------------- handshake and messages


async def test_handshake_and_text_and_binary_messages_with_the_library_server(fast: bool) -> None:
    seen: dict[str, str] = {}

    async def handler(ws: ServerConnection) -> None:
        seen["path"] = ws.request.path
        seen["agent"] = ws.request.headers.get("User-Agent", "")
        seen["extensions"] = ws.request.headers.get("Sec-WebSocket-Extensions", "")
        await ws.send("hello")
        await ws.send(b"\x00\x01protobuf")
        seen["echo"] = await ws.recv()
        await ws.wait_closed()

    async with serve(handler, HOST, 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(f"ws://{HOST}:{port}/stream?streams=a/b", fast_frames=fast)
        try:
            assert conn.send('{"method":"SUBSCRIBE"}')
            assert await read_all(conn, 2) == ["hello", b"\x00\x01protobuf"]
        finally:
            await conn.close()
    assert seen["path"] == "/stream?streams=a/b"
    assert "websockets" in seen["agent"]
    assert seen["extensions"] == ""  # no compression offered
    assert seen["echo"] == '{"method":"SUBSCRIBE"}'
    assert conn.protocol.close_code == CloseCode.NORMAL_CLOSURE  # our close, echoed by the server


@pytest.mark.parametrize("pieces", [1, 40])
async def test_frames_that_come_with_the_101_response_are_delivered(fast: bool, pieces: int) -> None:
    greeting = frame("first") + frame(b"\x02second") + frame("thi", Opcode.TEXT, fin=False) + frame("rd", Opcode.CONT)
    async with RawServer(greeting=greeting + frame("fourth")[:3], handshake_pieces=pieces) as raw:
        conn = await raw_open(raw, fast)
        peer = await raw.peer()
        await peer.write(frame("fourth")[3:])
        assert await read_all(conn, 4) == ["first", b"\x02second", "third", "fourth"]
        assert conn.response is not None and conn.response.status_code == 101
        await conn.close()


async def test_a_refused_handshake_raises_invalid_status(fast: bool) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(404, "no such stream\n")

    async with serve(lambda ws: ws.wait_closed(), HOST, 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(InvalidStatus) as info:
            await open_connection(f"ws://{HOST}:{port}/nope", fast_frames=fast)
    assert info.value.response.status_code == 404


async def test_a_redirect_is_followed(fast: bool) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(ws.request.path)
        await ws.wait_closed()

    def redirect(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/old":
            return Response(302, "Found", Headers({"Location": "/new", "Content-Length": "0"}))
        return None

    async with serve(handler, HOST, 0, process_request=redirect) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(f"ws://{HOST}:{port}/old", fast_frames=fast)
        try:
            assert await read_all(conn, 1) == ["/new"]
        finally:
            await conn.close()


async def test_wss_over_tls_with_certificate_checks(fast: bool, tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts(tmp_path)
    payloads = ticker_payloads(500)

    async def handler(ws: ServerConnection) -> None:
        for p in payloads:
            await ws.send(p)
        await ws.send([b"\x01", b"\x02"])
        await ws.wait_closed()

    async with serve(handler, HOST, 0, ssl=server_ctx) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(f"wss://{HOST}:{port}/", fast_frames=fast, ssl=client_ctx)
        try:
            assert await read_all(conn, 501, timeout=20) == [*payloads, b"\x01\x02"]
            assert conn.transport is not None and conn.transport.get_extra_info("ssl_object") is not None
        finally:
            await conn.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # an OSError: "Could not connect" in stream_events
            await open_connection(f"wss://{HOST}:{port}/", fast_frames=fast)  # the system CAs do not know it


async def test_nothing_listening_is_an_os_error(fast: bool) -> None:
    async with RawServer() as raw:
        url = raw.url
    with pytest.raises(OSError):
        await open_connection(url, fast_frames=fast, open_timeout=5)


# ----------------------------------------------------------------------------- frames


async def test_fragmented_messages_are_assembled(fast: bool) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(["frag", "mented ", "text é"])
        await ws.send([b"\x01\x02", b"\x03"])
        await ws.send("after")
        await ws.wait_closed()

    async with serve(handler, HOST, 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(f"ws://{HOST}:{port}/", fast_frames=fast)
        try:
            assert await read_all(conn, 3) == ["fragmented text é", b"\x01\x02\x03", "after"]
        finally:
            await conn.close()


async def test_a_utf8_character_split_between_fragments(fast: bool) -> None:
    async with RawServer() as raw:
        conn = await raw_open(raw, fast)
        peer = await raw.peer()
        text = "prix: 5 €".encode()
        cut = text.index("€".encode()) + 1  # inside the three bytes of the euro sign
        ping = frame(b"mid", Opcode.PING)  # a control frame between fragments is allowed
        await peer.write(frame(text[:cut], Opcode.TEXT, fin=False) + ping + frame(text[cut:], Opcode.CONT))
        assert await read_all(conn, 1) == ["prix: 5 €"]
        pong = await peer.read_frame()
        assert (pong.opcode, pong.data) == (Opcode.PONG, b"mid")
        await conn.close()


async def test_a_ping_is_answered_with_a_pong_while_the_reader_is_busy(fast: bool) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("before")
        latency = await asyncio.wait_for(await ws.ping(b"are you there"), 5)
        await ws.send(f"pong after {latency >= 0}")
        await ws.wait_closed()

    async with serve(handler, HOST, 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(f"ws://{HOST}:{port}/", fast_frames=fast)
        try:
            await asyncio.sleep(0.2)  # not reading: the pong goes out from data_received all the same
            assert await read_all(conn, 2) == ["before", "pong after True"]
        finally:
            await conn.close()


async def test_our_keepalive_pings_are_sent_and_pongs_accepted(fast: bool) -> None:
    async with RawServer() as raw:
        conn = await raw_open(raw, fast, ping_interval=0.05, ping_timeout=1.0)
        peer = await raw.peer()
        for _ in range(3):
            ping = await peer.read_frame()
            assert ping.opcode is Opcode.PING and len(ping.data) == 4
            await peer.write(frame(ping.data, Opcode.PONG))
        assert not conn.ping_timed_out and conn.protocol.state is OPEN
        await conn.close()


async def test_an_overdue_pong_fails_the_connection_with_1011(fast: bool) -> None:
    async with RawServer() as raw:
        conn = await raw_open(raw, fast, ping_interval=0.05, ping_timeout=0.2)
        peer = await raw.peer()
        assert (await peer.read_frame()).opcode is Opcode.PING  # and no pong from us
        close = await peer.read_frame(timeout=2)
        assert close.opcode is Opcode.CLOSE
        assert Close.parse(close.data) == Close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        exc = await closed_exc(conn)  # the server never closes: our close timeout drops the connection
        assert conn.ping_timed_out
        assert exc.sent is not None and exc.sent.code == CloseCode.INTERNAL_ERROR


@pytest.mark.parametrize(("code", "reason"), [(1001, "going away"), (1000, ""), (4000, "custom")])
async def test_the_servers_close_code_reaches_the_reader_after_the_messages_before_it(fast: bool, code: int, reason: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        await ws.send("two")
        await ws.close(code, reason)

    async with serve(handler, HOST, 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection(f"ws://{HOST}:{port}/", fast_frames=fast)
        assert await read_all(conn, 2) == ["one", "two"]
        exc = await closed_exc(conn)
        assert exc.rcvd is not None and (exc.rcvd.code, exc.rcvd.reason) == (code, reason)
        assert exc.sent is not None and exc.sent.code == code  # the library echoed it
        assert conn.closed


async def test_data_after_a_close_frame_is_discarded(fast: bool) -> None:
    async with RawServer() as raw:
        conn = await raw_open(raw, fast)
        peer = await raw.peer()
        close = Close(CloseCode.GOING_AWAY, "bye").serialize()
        await peer.write(frame("kept") + frame(close, Opcode.CLOSE) + frame("dropped"))
        echo = await peer.read_frame()
        assert echo.opcode is Opcode.CLOSE and Close.parse(echo.data).code == CloseCode.GOING_AWAY
        peer.writer.close()  # the server ends the TCP connection, as it should
        assert await read_all(conn, 1) == ["kept"]
        exc = await closed_exc(conn)
        assert exc.rcvd is not None and exc.rcvd.code == CloseCode.GOING_AWAY
        assert not conn.messages


async def test_a_dropped_connection_is_closed_without_a_close_frame(fast: bool) -> None:
    async with RawServer() as raw:
        conn = await raw_open(raw, fast)
        peer = await raw.peer()
        await peer.write(frame("last words") + frame("half a frame")[:5])
        await asyncio.sleep(0.05)
        peer.abort()
        assert await read_all(conn, 1) == ["last words"]
        exc = await closed_exc(conn)
        assert exc.rcvd is None


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(b"\xff\xfe not utf-8", Opcode.TEXT), CloseCode.INVALID_DATA),
        (Frame(Opcode.TEXT, b"masked").serialize(mask=True), CloseCode.PROTOCOL_ERROR),  # servers must not mask
        (raw_frame(0x83, b"\x00"), CloseCode.PROTOCOL_ERROR),  # reserved opcode 3
        (raw_frame(0xC1, b"A"), CloseCode.PROTOCOL_ERROR),  # RSV1 without a negotiated extension
        (raw_frame(0x89, b"x" * 200), CloseCode.PROTOCOL_ERROR),  # a control frame over 125 bytes
        (frame("y", Opcode.CONT), CloseCode.PROTOCOL_ERROR),  # a continuation of nothing
        (frame("z" * 2000), CloseCode.MESSAGE_TOO_BIG),
        (bytes([0x81, 0x7F]) + (2**62).to_bytes(8, "big"), CloseCode.MESSAGE_TOO_BIG),  # refused from the header alone
    ],
    ids=["bad-utf8", "masked", "bad-opcode", "rsv1", "long-ping", "stray-continuation", "too-big", "huge-header"],
)
async def test_broken_frames_fail_the_connection_with_the_right_code(fast: bool, bad: bytes, code: int) -> None:
    async with RawServer() as raw:
        conn = await raw_open(raw, fast, max_size=1024)
        peer = await raw.peer()
        await peer.write(frame("fine") + bad + frame("never delivered"))
        close = await peer.read_frame()
        assert close.opcode is Opcode.CLOSE and Close.parse(close.data).code == code
        assert await read_all(conn, 1) == ["fine"]
        exc = await closed_exc(conn)
        assert exc.sent is not None and exc.sent.code == code
        assert not conn.messages


async def test_a_text_frame_inside_a_fragmented_message_is_a_protocol_error(fast: bool) -> None:
    async with RawServer() as raw:
        conn = await raw_open(raw, fast)
        peer = await raw.peer()
        await peer.write(frame("start", Opcode.TEXT, fin=False) + frame("a new message"))
        close = await peer.read_frame()
        assert Close.parse(close.data).code == CloseCode.PROTOCOL_ERROR
        exc = await closed_exc(conn)
        assert exc.sent is not None and exc.sent.code == CloseCode.PROTOCOL_ERROR


# ----------------------------------------------------------------------------- bursts


async def test_a_burst_cut_into_random_tcp_reads_arrives_whole_and_in_order(fast: bool) -> None:
    payloads = ticker_payloads(400)
    binary = [bytes([i % 256]) * (i % 300) for i in range(50)]  # MEXC-style binary frames, some empty
    stream: list[str | bytes] = [*payloads[:200], *binary, *payloads[200:]]
    data = b"".join(frame(p) for p in stream)
    async with RawServer() as raw:
        conn = await raw_open(raw, fast)
        peer = await raw.peer()
        random.seed(7)
        writer = asyncio.ensure_future(peer.write(data, pieces=60))
        got = await read_all(conn, len(stream), timeout=20)
        await writer
        assert got == stream
        assert [type(m) for m in got] == [type(m) for m in stream]
        await conn.close()


async def test_reading_pauses_while_the_reader_lags_and_resumes(fast: bool) -> None:
    payloads = ticker_payloads(3000)
    async with RawServer() as raw:
        conn = await raw_open(raw, fast, max_queue=50)
        peer = await raw.peer()
        writer = asyncio.ensure_future(peer.write(b"".join(frame(p) for p in payloads), pieces=30, pause=0))
        await asyncio.sleep(0.3)  # nobody reads: the transport stops reading after max_queue messages
        assert conn._paused
        assert 50 < len(conn.messages) < len(payloads)
        assert await read_all(conn, len(payloads), timeout=20) == payloads
        await writer
        await conn.close()


async def test_stream_events_decodes_a_burst_and_reports_the_servers_close(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # stream_events on this transport: every frame decoded in order, then the close as a sentence.
    import app.streams.connection as connection

    real_open = connection.open_connection

    async def opener(url: str, **kwargs: object) -> WsConnection:
        return await real_open(url, fast_frames=fast, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(connection, "open_connection", opener)
    payloads = ticker_payloads(300)
    async with RawServer() as raw:
        stats = StreamStats()
        spec = StreamSpec(raw.url, subscribe=['{"method":"SUBSCRIBE"}'], label="Test")
        events = stream_events(spec, BinanceCodec({"BTCUSDT": "BTC/USDT"}), stats)
        seen: list[int] = []

        async def consume() -> None:
            async for event in events:
                seen.append(event.ts)

        task = asyncio.ensure_future(consume())
        peer = await raw.peer()
        subscribe = await peer.read_frame()
        assert subscribe.data == b'{"method":"SUBSCRIBE"}'
        await peer.write(b"".join(frame(p) for p in payloads) + frame(b"not json at all", Opcode.TEXT), pieces=25)
        await peer.write(frame(Close(CloseCode.GOING_AWAY, "maintenance").serialize(), Opcode.CLOSE))
        await peer.read_frame()  # our echo
        peer.writer.close()
        with pytest.raises(VenueUnavailable, match=r"The Test stream closed \(code 1001: maintenance\); reconnecting\."):
            await asyncio.wait_for(task, 10)
    assert seen == [1_700_000_000_000 + i for i in range(300)]
    assert (stats.frames, stats.events, dict(stats.malformed), stats.connects) == (301, 300, {"json": 1}, 1)


# ----------------------------------------------------------------------------- every cut, without a socket


class _Transport(asyncio.Transport):
    """Just enough transport for data_received: records writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _open_connection(fast: bool) -> WsConnection:
    protocol = ClientProtocol(parse_uri("ws://x/"), state=OPEN, max_size=2**20)
    conn = WsConnection(protocol, max_size=2**20, fast_frames=fast, ping_interval=None)
    conn.transport = _Transport()
    return conn


_BURST: list[str | bytes] = [*ticker_payloads(12)[:6], b"\x08\x01\x12\x03abc", "", *ticker_payloads(12)[6:]]
_BURST_BYTES = (
    b"".join(frame(m) for m in _BURST[:3])
    + frame(b"hi", Opcode.PING)
    + frame("frag", Opcode.TEXT, fin=False)
    + frame("ment", Opcode.CONT)
    + b"".join(frame(m) for m in _BURST[3:])
)


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(_BURST_BYTES) - 1), max_size=40, unique=True))
def test_any_cut_of_a_burst_gives_the_same_messages_and_pong(fast: bool, cuts: list[int]) -> None:
    async def run() -> tuple[list[str | bytes], list[bytes]]:
        conn = _open_connection(fast)
        start = 0
        for end in [*sorted(cuts), len(_BURST_BYTES)]:
            conn.data_received(_BURST_BYTES[start:end])
            start = end
        assert isinstance(conn.transport, _Transport)
        return list(conn.messages), conn.transport.written

    messages, written = asyncio.run(run())
    assert messages == [*_BURST[:3], "fragment", *_BURST[3:]]
    assert len(written) == 1  # one pong, masked: the library wrote it
    server = ServerProtocol(state=OPEN)  # the pong as a server reads it
    server.receive_data(written[0])
    (event,) = server.events_received()
    assert isinstance(event, Frame) and (event.opcode, event.data) == (Opcode.PONG, b"hi")


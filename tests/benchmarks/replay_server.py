"""A local websocket server that replays pre-built Binance frames as fast as the socket takes them.

Run by bench_stream.py in its own process (so it does not share the client's core):

    python tests/benchmarks/replay_server.py --ours N --ccxt M [--cpu 1] [--lifetime S]

It builds every frame before it says it is ready, then prints one line,
`READY <port> <E0>`, on stdout. Frame i of every replay carries the event time
`E = E0 + i` (one re-stamp, at start-up: the sequence lets a client know when it
has seen the last frame). Each connection gets a whole replay, from frame 0:

- `/stream?streams=btcusdt@ticker`                  N 24hrTicker frames, combined-stream wrappers
- `/stream?streams=btcusdt@ticker/btcusdt@kline_1m`   N frames, two tickers to one kline (Binance pushes
                                                    @ticker every 1000 ms and @kline_1m every 2000 ms),
                                                    the last frame always a ticker
- `/ws` or `/ws/<anything>` (what ccxt.pro opens)     waits for `{"method":"SUBSCRIBE",...,"id":n}`,
                                                    answers `{"result":null,"id":n}`, then M raw
                                                    24hrTicker payloads (no wrapper), and a tail of
                                                    `ccxt_tail(M)` more, numbered on

The websocket side is a minimal RFC 6455 server on plain sockets: the frames are
encoded once into 256 KB chunks cut at frame boundaries, and a connection is one
`sendall` per chunk. Between chunks it reads what the client sent and answers
pings (with pongs) and close frames; nothing is negotiated (no compression).
After the replay it keeps the connection open until the client closes it.

Where the frames come from (../shared/fixtures/binance/stream-capture-2021-10-12.log):
the capture has no 24hrTicker frames, so tickers are built in Binance's documented
shape (e,E,s,p,P,w,x,c,Q,b,B,a,A,o,h,l,v,q,O,C,F,L,n) from the capture's nknusdt
bookTicker quotes, rescaled to a BTC/USDT price level. The klines are the capture's
two kline_1m frames, renamed to BTCUSDT and rescaled the same way. `C` (close time)
equals `E`, as on Binance, because ccxt.pro takes a ticker's timestamp from `C`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

CAPTURE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "binance" / "stream-capture-2021-10-12.log"
MARKET_ID = "BTCUSDT"
STREAM = MARKET_ID.lower()
BTC_PRICE = 56_000.0  # BTC/USDT on 2021-10-12, the capture's day
CHUNK = 256 * 1024
DAY_MS = 86_400_000
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TICKER_PATH = f"/stream?streams={STREAM}@ticker"
MIX_PATH = f"/stream?streams={STREAM}@ticker/{STREAM}@kline_1m"


# ----------------------------------------------------------------------------- frames


def _capture(kind_suffix: str) -> list[dict[str, Any]]:
    """Payloads (`data`) of the capture's frames whose stream name ends with `kind_suffix`, in order."""
    out = []
    for line in CAPTURE.read_text().splitlines():
        _, sep, payload = line.partition(": ")
        if not sep or not payload.startswith("{"):
            continue
        msg = json.loads(payload)
        if msg["stream"].endswith(kind_suffix):
            out.append(msg["data"])
    return out


def _px(value: float) -> str:
    return f"{value:.2f}000000"  # BTCUSDT's tick is 0.01; Binance prints 8 decimals


def _qty(value: float) -> str:
    return f"{value:.8f}"


def ticker_templates() -> list[dict[str, Any]]:
    """24hrTicker payloads without E/C/O/F/L/n, one per recorded nknusdt bookTicker quote."""
    quotes = [d for d in _capture("@bookTicker") if d["s"] == "NKNUSDT"]
    ref = (float(quotes[0]["b"]) + float(quotes[0]["a"])) / 2
    scale = BTC_PRICE / ref
    bids = [float(q["b"]) * scale for q in quotes]
    asks = [float(q["a"]) * scale for q in quotes]
    open_ = round(ref * scale * 0.988, 2)
    high = round(max(asks) * 1.021, 2)
    low = round(min(open_, *bids) * 0.993, 2)
    volume = 41_234.56789
    out = []
    for i, q in enumerate(quotes):
        bid, ask = round(bids[i], 2), round(asks[i], 2)
        last = bid if i % 2 else ask  # trades go off at the touch, alternately
        out.append({
            "e": "24hrTicker",
            "s": MARKET_ID,
            "p": f"{last - open_:.8f}",
            "P": f"{(last - open_) / open_ * 100:.3f}",
            "w": f"{(high + low + last) / 3:.8f}",
            "x": _px(open_ - 0.01),
            "c": _px(last),
            "Q": _qty(0.00042 + 0.0001 * (i % 7)),
            "b": _px(bid),
            "B": _qty(float(q["B"]) / scale),
            "a": _px(ask),
            "A": _qty(float(q["A"]) / scale),
            "o": _px(open_),
            "h": _px(high),
            "l": _px(low),
            "v": _qty(volume + i * 0.0131),
            "q": f"{(volume + i * 0.0131) * last:.8f}",
        })
    return out


def kline_templates() -> list[dict[str, Any]]:
    """The capture's kline_1m payloads, renamed to BTCUSDT and rescaled to its price level."""
    out = []
    for d in _capture("@kline_1m"):
        k = dict(d["k"])
        scale = BTC_PRICE / float(k["o"])
        for f in ("o", "c", "h", "l"):
            k[f] = _px(float(k[f]) * scale)
        for f in ("v", "V"):
            k[f] = _qty(float(k[f]) / scale)
        k["q"] = f"{float(k['v']) * float(k['c']):.8f}"
        k["Q"] = f"{float(k['V']) * float(k['c']):.8f}"
        k["s"] = MARKET_ID
        out.append({"e": "kline", "s": MARKET_ID, "k": k})
    return out


def ccxt_tail(n: int) -> int:
    """Frames sent after the n-th of the raw replay (see bench_stream.run_ccxt: they wake a waiting consumer)."""
    return max(5_000, n // 5)


def is_kline(i: int, n: int) -> bool:
    """In the mixed replay of n frames: is frame i a kline? Two tickers, one kline; the last is a ticker."""
    return i % 3 == 2 and i != n - 1


def _ticker(t: dict[str, Any], e: int) -> dict[str, Any]:
    trade_id = 1_000_000_000 + e % 1_000_000_000
    return {"e": t["e"], "E": e, **{k: v for k, v in t.items() if k != "e"},
            "O": e - DAY_MS, "C": e, "F": trade_id - 861_556, "L": trade_id, "n": 861_557}


def _kline(t: dict[str, Any], e: int) -> dict[str, Any]:
    k = dict(t["k"])
    k["t"] = e - e % 60_000
    k["T"] = k["t"] + 59_999
    return {"e": "kline", "E": e, "s": t["s"], "k": k}


def build_payloads(scenario: str, n: int, e0: int) -> list[bytes]:
    """The JSON text of every frame of one replay, as the client will receive it."""
    tickers, klines = ticker_templates(), kline_templates()
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    out = []
    for i in range(n):
        e = e0 + i
        if scenario == "raw":
            out.append(dumps(_ticker(tickers[i % len(tickers)], e)).encode())
        elif scenario == "mix" and is_kline(i, n):
            data = _kline(klines[(i // 3) % len(klines)], e)
            out.append(dumps({"stream": f"{STREAM}@kline_1m", "data": data}).encode())
        else:
            data = _ticker(tickers[i % len(tickers)], e)
            out.append(dumps({"stream": f"{STREAM}@ticker", "data": data}).encode())
    return out


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked server-to-client frame (FIN set)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def chunked(frames: list[bytes], size: int = CHUNK) -> list[bytes]:
    """Encoded frames joined into chunks of about `size` bytes, never splitting a frame."""
    chunks, part, length = [], [], 0
    for payload in frames:
        f = ws_frame(payload)
        part.append(f)
        length += len(f)
        if length >= size:
            chunks.append(b"".join(part))
            part, length = [], 0
    if part:
        chunks.append(b"".join(part))
    return chunks


# ----------------------------------------------------------------------------- websocket plumbing


def parse_client_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take the complete (masked) client frames off the front of `buf`: [(opcode, payload)]."""
    out = []
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, pos = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
        masked = b1 & 0x80
        end = pos + (4 if masked else 0) + n
        if len(buf) < end:
            break
        if masked:
            key = buf[pos:pos + 4]
            data = _unmask(bytes(buf[pos + 4:end]), bytes(key))
        else:
            data = bytes(buf[pos:end])
        del buf[:end]
        out.append((b0 & 0x0F, data))
    return out


def _unmask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    def read_request(self) -> tuple[str, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("client went away during the handshake")
            self.buf += data
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return path, headers

    def accept(self, key: str) -> None:
        digest = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        self.sock.sendall(
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Accept: {digest}\r\n\r\n").encode()
        )

    def refuse(self, status: str) -> None:
        self.sock.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())

    def handle(self, frames: list[tuple[int, bytes]]) -> list[bytes]:
        """Answer control frames; return the text/binary payloads."""
        data = []
        for opcode, payload in frames:
            if opcode == 0x9:  # ping
                self.sock.sendall(ws_frame(payload, 0xA))
            elif opcode == 0x8:  # close: echo it and stop
                if not self.closed:
                    self.sock.sendall(ws_frame(payload[:2], 0x8))
                self.closed = True
            elif opcode in (0x1, 0x2):
                data.append(payload)
        return data

    def poll(self, timeout: float) -> list[bytes]:
        """Read whatever the client sent within `timeout` seconds (0: only what is already there)."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if ready:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed = True
                return []
            self.buf += chunk
        return self.handle(parse_client_frames(self.buf))


class ReplayServer:
    def __init__(self, replays: dict[str, list[bytes]], lifetime: float) -> None:
        self.replays = replays
        self.deadline = time.monotonic() + lifetime
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self.listener.getsockname()[1]

    def serve_forever(self) -> None:
        self.listener.settimeout(1.0)
        parent = os.getppid()
        while time.monotonic() < self.deadline and os.getppid() == parent:  # the benchmark died: so do we
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(120)  # nothing here may hang forever
        conn = Conn(sock)
        try:
            path, headers = conn.read_request()
            key = headers.get("sec-websocket-key")
            split = urlsplit(path)
            if key is None:
                conn.refuse("400 Bad Request")
                return
            if split.path == "/stream":
                streams = parse_qs(split.query).get("streams", [""])[0]
                scenario = {f"{STREAM}@ticker": "ticker", f"{STREAM}@ticker/{STREAM}@kline_1m": "mix"}.get(streams)
                if scenario is None:
                    conn.refuse("404 Not Found")
                    return
                conn.accept(key)
            elif split.path == "/ws" or split.path.startswith("/ws/"):
                scenario = "raw"
                conn.accept(key)
                if not self._await_subscribe(conn):
                    return
            else:
                conn.refuse("404 Not Found")
                return
            for chunk in self.replays[scenario]:
                sock.sendall(chunk)
                conn.poll(0)
                if conn.closed:
                    return
            while not conn.closed and time.monotonic() < self.deadline:
                conn.poll(1.0)
        except (OSError, ConnectionError):
            pass  # the client went away: that is how benchmarks end
        finally:
            sock.close()

    @staticmethod
    def _await_subscribe(conn: Conn) -> bool:
        deadline = time.monotonic() + 30
        while not conn.closed and time.monotonic() < deadline:
            for payload in conn.poll(1.0):
                try:
                    msg = json.loads(payload)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("method") == "SUBSCRIBE":
                    conn.sock.sendall(ws_frame(json.dumps({"result": None, "id": msg.get("id")}).encode()))
                    return True
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", type=int, default=200_000, help="frames in each combined-stream replay")
    parser.add_argument("--ccxt", type=int, default=200_000, help="frames in the raw (ccxt.pro) replay")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--lifetime", type=float, default=900.0, help="exit after this many seconds whatever happens")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    e0 = (int(time.time() * 1000) // 1000) * 1000  # the one re-stamp; frame i carries E = e0 + i
    replays = {
        "ticker": chunked(build_payloads("ticker", args.ours, e0)),
        "mix": chunked(build_payloads("mix", args.ours, e0)),
        "raw": chunked(build_payloads("raw", args.ccxt + ccxt_tail(args.ccxt), e0)),
    }
    server = ReplayServer(replays, args.lifetime)
    print(f"READY {server.port} {e0}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

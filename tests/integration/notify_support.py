"""Shared by the notification tests: a real SMTP server (aiosmtpd) with STARTTLS or implicit TLS
and AUTH, a self-signed certificate made on the spot, secrets, stores and fast guards.

The certificate is for 127.0.0.1 (an IP SAN) and `localhost`; the client trusts it through a CA
file, the production path, so certificate and host-name checks stay on in the tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.resilience.guard import GuardConfig, GuardRegistry
from app.store import Store

HOST = "127.0.0.1"
SMTP_USER = "alerts@meridian.test"
SMTP_PASSWORD = "smtp-SECRET-pa55word-7c1e9"
WRONG_PASSWORD = "wrong-SECRET-guess-1b2c3d"

FAST_GUARD = dict(retry_attempts=1, call_timeout=5.0, rate_per_second=1000.0, burst=1000.0, failure_threshold=50,
                  reset_timeout=0.2, max_concurrent=2)


def fast_guards(**overrides: Any) -> GuardRegistry:
    config = GuardConfig(**{**FAST_GUARD, **overrides})
    return GuardRegistry(None, {"notify": config})


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Meridian test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


@dataclass
class Mailbox:
    """What the SMTP server received, with the AUTH attempts it saw."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)
    mechanisms: list[str] = field(default_factory=list)  # the AUTH mechanism of each login
    tls_at_data: list[bool] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def parsed(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.box.lock:
            self.box.messages.append(msg)  # type: ignore[arg-type]
            self.box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.box.tls_at_data.append(session.ssl is not None)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 in its own thread. mode: "starttls" | "tls" | "plain"."""

    def __init__(
        self,
        mode: str,
        cert: tuple[Path, Path] | None = None,
        *,
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        box: Mailbox | None = None,
        mechanisms: tuple[str, ...] = ("LOGIN", "PLAIN"),
    ) -> None:
        self.mode = mode
        self.cert = cert
        self.port = port or free_port()
        self.users = dict(users if users is not None else {SMTP_USER: SMTP_PASSWORD})
        self.box = box or Mailbox()
        self.mechanisms = mechanisms
        self._controller: Controller | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = self.users.get(user) == password
        with self.box.lock:
            self.box.logins.append((user, ok))
            self.box.mechanisms.append(mechanism)
        # handled=False: aiosmtpd answers 535 itself (handled=True would leave the client waiting).
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {"server_hostname": "mail.meridian.test", "authenticator": self._authenticate,
                                  "ready_timeout": 5.0,
                                  "auth_exclude_mechanism": [m for m in ("LOGIN", "PLAIN") if m not in self.mechanisms]}
        if self.mode == "starttls":
            assert self.cert is not None
            kwargs.update(tls_context=server_context(*self.cert), require_starttls=True, auth_require_tls=True)
        elif self.mode == "tls":
            assert self.cert is not None
            # Implicit TLS: aiosmtpd cannot tell the socket is wrapped, so AUTH must not wait for STARTTLS.
            kwargs.update(ssl_context=server_context(*self.cert), auth_require_tls=False)
        else:
            kwargs.update(auth_require_tls=False)
        self._controller = Controller(_Handler(self.box), hostname=HOST, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HangingServer:
    """Accepts TCP connections and never says a word (an SMTP server that hangs before its greeting)."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            await reader.read()  # until the client gives up
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def __aenter__(self) -> HangingServer:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for w in self._writers:
            w.close()
        self._server.close()
        await self._server.wait_closed()


class Secrets:
    """The injected `async secret(name)`; records which names were asked for."""

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self.values = dict(values)
        self.asked: list[str] = []

    async def __call__(self, name: str) -> str | None:
        self.asked.append(name)
        return self.values.get(name)


def client_context(cert_file: Path) -> ssl.SSLContext:
    """What production builds from a CA file: verification and host-name checks on."""
    ctx = ssl.create_default_context(cafile=str(cert_file))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx


async def eventually(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(interval)
    return False


async def settled(service: Any, message_id: str, channel: str, timeout: float = 5.0) -> Any:
    """The outbox row once its first try has finished (delivered, failed, or waiting to retry)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for row in await service.outbox.rows(message_id):
            if row.channel == channel and (row.attempts >= 1 or row.status != "pending"):
                return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"{message_id} on {channel} was not tried within {timeout} s")


_live: list[Any] = []


def track(service: Any) -> Any:
    """Remember a service so the `store` fixture stops it even when a test fails half-way
    (a service left running would keep retrying against servers that are gone)."""
    _live.append(service)
    return service


async def stop_tracked() -> None:
    while _live:
        await _live.pop().stop()


@pytest.fixture(name="store")
async def store_fixture(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh data file; services built with `track` are stopped before it closes."""
    s = Store.open(tmp_path / "data.sqlite")
    try:
        yield s
    finally:
        await stop_tracked()
        s.close()

"""Email through SMTP (aiosmtplib): STARTTLS, implicit TLS or none; login when a username is set.

Decisions:
* Certificates are verified by default (the system's CAs). A CA file or a whole
  `ssl.SSLContext` can be injected for a company relay with its own CA (and the
  tests' self-signed server); verification is never switched off silently.
* `security = "starttls"` *requires* STARTTLS: a server that does not offer it
  gets nothing, rather than the password and the message in plain text.
* The password is read from the secret store at each send ("notify_smtp") and
  only handed to aiosmtplib; server replies are redacted before they become
  sentences, in case a server echoes what it was sent.
* The message is multipart/alternative (plain text, then HTML), with a
  Message-ID derived from the notification's id: a resent copy (after a
  timeout that hid a delivery) carries the same Message-ID, so mail clients
  and the user can recognise it.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import re
import socket
import ssl
import time
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from app.notify.channel import SECRET_SMTP, ChannelError, NotConfigured, SecretGetter, guarded, redact
from app.notify.message import Message
from app.notify.templates import APP
from app.resilience.errors import FailureKind
from app.resilience.guard import Guard, GuardConfig
from app.settings import EmailSettings

__all__ = ["EmailChannel", "build_email", "message_id_header", "send_test_email"]

log = logging.getLogger(__name__)

SERVICE = "Email"
SETTINGS_HINT = "Settings → Notifications"


def message_id_header(message_id: str, sender: str) -> str:
    """`<meridian.{id}@{sender's domain}>`; characters a Message-ID cannot hold are replaced and hashed."""
    domain = sender.rpartition("@")[2].strip() or "meridian.invalid"
    domain = re.sub(r"[^A-Za-z0-9.-]", "-", domain) or "meridian.invalid"
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", message_id)[:64]
    if safe != message_id:  # keep different ids different after replacing characters
        safe += "." + hashlib.sha256(message_id.encode()).hexdigest()[:16]
    return f"<meridian.{safe}@{domain}>"


def build_email(message: Message, sender: str, recipients: Sequence[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = message.title
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = email.utils.formatdate(message.created_at or time.time(), localtime=False, usegmt=True)
    msg["Message-ID"] = message_id_header(message.message_id, sender)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to an alert
    msg["X-Meridian-Kind"] = message.kind
    msg.set_content(message.text)
    msg.add_alternative(message.html, subtype="html")
    return msg


def _network_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return exc.strerror or type(exc).__name__


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    # create_default_context verifies the certificate and the host name.
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


class EmailChannel:
    name = "email"

    def __init__(
        self,
        settings: EmailSettings,
        secret: SecretGetter,
        guard: Guard,
        *,
        tls_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        timeout: float = 20.0,
        local_hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self.guard = guard
        self._secret = secret
        self._tls_context = tls_context
        self._ca_file = ca_file
        self._timeout = timeout
        self._local_hostname = local_hostname

    def __repr__(self) -> str:
        s = self.settings
        return f"<EmailChannel {s.host}:{s.port} {s.security}>"

    def update(self, settings: EmailSettings) -> None:
        self.settings = settings

    async def close(self) -> None:
        return None

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    async def send(self, message: Message, progress: str = "") -> None:
        s = self.settings
        if not s.host:
            raise NotConfigured(f"Email notifications are off: set the SMTP server in {SETTINGS_HINT}.")
        if not s.recipients:
            raise NotConfigured(f"No email recipients are set: add an address in {SETTINGS_HINT}.")
        sender = s.sender or (s.username if "@" in s.username else "")
        if not sender:
            raise NotConfigured(f"No sender address is set for email notifications: set it in {SETTINGS_HINT}.")
        password: str | None = None
        if s.username:
            password = await self._secret(SECRET_SMTP)
            if not password:
                raise NotConfigured(
                    f"No SMTP password is stored for {s.username}: enter it in {SETTINGS_HINT}."
                )
        msg = build_email(message, sender, s.recipients)
        await guarded(
            self.guard, lambda: self._attempt(msg, password), service=SERVICE, what=f"email {message.message_id}"
        )

    async def _attempt(self, msg: EmailMessage, password: str | None) -> None:
        s = self.settings
        context: ssl.SSLContext | None = None
        if s.security != "none":
            if self._tls_context is None:  # built once: loading the system's CAs takes a while
                self._tls_context = await asyncio.to_thread(_tls_context, self._ca_file)
            context = self._tls_context
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",  # True: required, an error if not offered; False: never
            tls_context=context,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
            username=s.username or None,
            password=password if s.username else None,
        )
        try:
            await smtp.connect()
            refused, _ = await smtp.send_message(msg)
            if refused:
                log.warning("email: the server refused some recipients (%s); the others got the message",
                            ", ".join(sorted(refused)))
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                pass  # delivered already; a rude goodbye changes nothing
        except aiosmtplib.SMTPException as exc:
            raise self._translate(exc, password) from None
        except ssl.SSLError as exc:
            raise self._tls_error(exc) from None
        except OSError as exc:
            raise ChannelError(
                f"The SMTP server {self._where()} could not be reached ({_network_reason(exc)}); "
                "the email will be sent when it answers.",
                kind=FailureKind.UNHEALTHY,
            ) from None
        finally:
            smtp.close()

    # ------------------------------------------------------------------ sentences

    def _tls_error(self, exc: ssl.SSLError) -> ChannelError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ChannelError(
                f"The SMTP server {self._where()} presented a certificate that could not be verified "
                f"({exc.verify_message or 'untrusted'}); nothing was sent. Check the server name in {SETTINGS_HINT}, "
                "or install its certificate authority.",
                kind=FailureKind.BUSINESS,
            )
        return ChannelError(
            f"The encrypted connection to the SMTP server {self._where()} failed ({exc.reason or 'TLS error'}); "
            "check that the port and the security setting match the server (465 = tls, 587 = starttls) in "
            f"{SETTINGS_HINT}.",
            kind=FailureKind.BUSINESS,
        )

    def _translate(self, exc: aiosmtplib.SMTPException, password: str | None) -> ChannelError:
        s = self.settings
        where = self._where()

        def reply(code: int, text: str) -> str:
            return redact(" ".join(f"{code} {text}".split()), [password])[:200]

        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            return self._tls_error(cause)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return ChannelError(
                f"The SMTP server refused the login: check the username and the password in {SETTINGS_HINT}.",
                kind=FailureKind.AUTH,
            )
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPRecipientRefused):
            refused = exc.recipients if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) else [exc]
            temporary = all(400 <= r.code < 500 for r in refused)
            addresses = ", ".join(r.recipient for r in refused)
            if temporary:
                return ChannelError(
                    f"The SMTP server cannot take mail for {addresses} right now "
                    f"({reply(refused[0].code, refused[0].message)}); "
                    "the email will be sent again later.",
                    kind=FailureKind.UNHEALTHY,
                )
            return ChannelError(
                f"The SMTP server refused the recipient {addresses} ({reply(refused[0].code, refused[0].message)}): "
                f"check the address in {SETTINGS_HINT}.",
                kind=FailureKind.BUSINESS,
            )
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            if 400 <= exc.code < 500:
                return ChannelError(
                    f"The SMTP server cannot take mail right now ({reply(exc.code, exc.message)}); "
                    "it will be sent later.",
                    kind=FailureKind.UNHEALTHY,
                )
            return ChannelError(
                f"The SMTP server refused the sender address {exc.sender} ({reply(exc.code, exc.message)}): "
                f"use an address this account may send from in {SETTINGS_HINT}.",
                kind=FailureKind.BUSINESS,
            )
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            return ChannelError(
                f"The SMTP server {where} did not answer in time; the email will be sent when it does.",
                kind=FailureKind.UNHEALTHY,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            if 400 <= exc.code < 500 or isinstance(exc, aiosmtplib.SMTPConnectResponseError):
                return ChannelError(
                    f"The SMTP server {where} is not accepting mail right now ({reply(exc.code, exc.message)}); "
                    "the email will be sent later.",
                    kind=FailureKind.UNHEALTHY,
                )
            return ChannelError(
                f"The SMTP server {where} refused the email ({reply(exc.code, exc.message)}).",
                kind=FailureKind.BUSINESS,
            )
        if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
            reason = _network_reason(cause) if isinstance(cause, OSError) else "no connection"
            disconnected = isinstance(exc, aiosmtplib.SMTPServerDisconnected)
            verb = "closed the connection" if disconnected else "could not be reached"
            return ChannelError(
                f"The SMTP server {where} {verb} ({reason}); the email will be sent when it answers.",
                kind=FailureKind.UNHEALTHY,
            )
        text = str(exc).lower()
        if "starttls" in text:
            return ChannelError(
                f"The SMTP server {where} does not offer STARTTLS, so nothing was sent unencrypted: choose "
                f"security \"tls\" (port 465) or another server in {SETTINGS_HINT}"
                + (", or \"none\" only on a trusted network." if not s.username else "."),
                kind=FailureKind.BUSINESS,
            )
        if "auth" in text and "not supported" in text:
            return ChannelError(
                f"The SMTP server {where} does not accept a login on this connection: clear the username, or use "
                f"security \"starttls\" or \"tls\" in {SETTINGS_HINT}.",
                kind=FailureKind.BUSINESS,
            )
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return ChannelError(
                f"The SMTP server {where} does not support this email ({redact(str(exc), [password])}).",
                kind=FailureKind.BUSINESS,
            )
        return ChannelError(
            f"Sending email through {where} failed ({redact(' '.join(str(exc).split()), [password])[:200]}); "
            "it will be tried again.",
            kind=FailureKind.UNHEALTHY,
        )


# --------------------------------------------------------------------------- the settings dialog's button


async def send_test_email(
    settings: EmailSettings,
    secret: SecretGetter,
    *,
    guard: Guard | None = None,
    tls_context: ssl.SSLContext | None = None,
    ca_file: str | None = None,
    timeout: float = 20.0,
) -> str:
    """Send one test email now (not through the outbox) and say what happened, as a sentence.

    Uses its own guard by default: a breaker opened by earlier failures must not
    stop the user from testing the settings they just fixed.
    """
    guard = guard or Guard("notify:email", GuardConfig(call_timeout=timeout + 5, max_concurrent=1))
    channel = EmailChannel(settings, secret, guard, tls_context=tls_context, ca_file=ca_file, timeout=timeout)
    now = time.time()
    text = (
        f"This is a test email from {APP}.\n\nIf you can read it, alert emails will reach "
        f"{', '.join(settings.recipients)} through {settings.host}:{settings.port} ({settings.security})."
    )
    html = (
        f"<!DOCTYPE html><html><body><h2>Test email from {APP}</h2>"
        "<p>If you can read it, alert emails will arrive here.</p></body></html>"
    )
    message = Message(
        message_id=f"test-{int(now * 1000)}", kind="test", title=f"{APP}: test email", text=text, html=html,
        created_at=now,
    )
    try:
        await channel.send(message)
    except ChannelError as exc:
        return str(exc)
    return f"A test email was sent to {', '.join(settings.recipients)}. Check the inbox (and the spam folder)."

"""SMS through Twilio's Python SDK (`twilio.rest.Client`), optional.

Decisions:
* twilio is an optional dependency (`meridian-terminal[sms]`); without it, or
  unconfigured, the channel says so in a sentence and sends nothing.
* The SDK is blocking (requests): each send runs in a worker thread
  (`asyncio.to_thread`), never on the event loop. The SDK's own HTTP timeout is
  kept below the guard's call timeout, so the thread finishes (and says what
  happened) before the guard gives up on it.
* `[notify.sms] api_base` points the SDK elsewhere (a proxy, the tests' server)
  through a custom `http_client`, the SDK's documented extension point: it
  swaps the scheme and host of each request URL and keeps the path.
* The Pro-plan gate lives elsewhere; an injected `allowed()` is asked first.
* The auth token ("notify_twilio") is only handed to the SDK; Twilio's error
  texts are redacted before they become sentences.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.notify.channel import SECRET_TWILIO, ChannelError, NotConfigured, SecretGetter, guarded, redact
from app.notify.message import Message
from app.resilience.errors import FailureKind
from app.resilience.guard import Guard
from app.settings import SmsSettings

__all__ = ["SMS_MAX_CHARS", "SmsChannel", "sms_body", "twilio_available"]

log = logging.getLogger(__name__)
# The SDK logs every request and response header at INFO; only its warnings are worth keeping.
_sdk_log = logging.getLogger(__name__ + ".twilio_sdk")
_sdk_log.setLevel(logging.WARNING)

SERVICE = "SMS (Twilio)"
HINT = "Settings → Notifications"
SMS_MAX_CHARS = 1600  # Twilio's limit for one message body (it splits it into segments itself)

# Twilio error codes that mean "this number is wrong", not "try later".
_BAD_NUMBER = {21211: "the phone number to send to", 21614: "the phone number to send to",
               21408: "the phone number to send to (its country is not enabled on the account)",
               21606: "the sending number", 21659: "the sending number", 21212: "the sending number",
               21610: "the phone number to send to (it replied STOP)"}


def twilio_available() -> bool:
    return importlib.util.find_spec("twilio") is not None


def sms_body(message: Message) -> str:
    text = f"{message.title}\n{message.short_text()}"
    return text if len(text) <= SMS_MAX_CHARS else text[: SMS_MAX_CHARS - 1] + "…"


def _rebase(url: str, base: str) -> str:
    target = urlsplit(base)
    parts = urlsplit(url)
    path = target.path.rstrip("/") + parts.path
    return urlunsplit(parts._replace(scheme=target.scheme, netloc=target.netloc, path=path))


def _make_client(account_sid: str, token: str, api_base: str, timeout: float) -> Any:
    from twilio.http.http_client import TwilioHttpClient  # noqa: PLC0415 - optional dependency
    from twilio.rest import Client  # noqa: PLC0415

    class RebasedHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK ships no type hints
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            return super().request(method, _rebase(url, api_base) if api_base else url, *args, **kwargs)

    return Client(account_sid, token, http_client=RebasedHttpClient(timeout=timeout, logger=_sdk_log))


class SmsChannel:
    name = "sms"

    def __init__(
        self,
        settings: SmsSettings,
        secret: SecretGetter,
        guard: Guard,
        *,
        allowed: Callable[[], bool] | None = None,
        timeout: float | None = None,
        client_factory: Callable[[str, str, str, float], Any] = _make_client,
    ) -> None:
        self.settings = settings
        self.guard = guard
        self._secret = secret
        self._allowed = allowed
        # Below the guard's timeout, so the thread ends before the guard stops waiting for it.
        self._timeout = timeout if timeout is not None else max(1.0, guard.config.call_timeout * 0.8)
        self._factory = client_factory
        self._client: Any = None
        self._client_key: tuple[str, str, str] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SmsChannel enabled={self.settings.enabled}>"

    def update(self, settings: SmsSettings) -> None:
        self.settings = settings

    async def close(self) -> None:
        self._client = None

    def unavailable(self) -> str | None:
        """Why SMS cannot be sent now (a sentence), or None."""
        s = self.settings
        if not s.enabled:
            return f"SMS notifications are off: turn them on in {HINT}."
        if self._allowed is not None and not self._allowed():
            return "SMS notifications are part of the Pro plan: upgrade in the billing panel to receive them."
        if not twilio_available():
            return "SMS needs the Twilio package, which is not installed: install meridian-terminal[sms]."
        missing = [name for name, value in (("account SID", s.account_sid), ("sending number", s.from_number),
                                            ("your phone number", s.to_number)) if not value]
        if missing:
            return f"SMS is not set up: enter the Twilio {' and '.join(missing)} in {HINT}."
        return None

    async def send(self, message: Message, progress: str = "") -> None:
        reason = self.unavailable()
        if reason:
            raise NotConfigured(reason)
        token = await self._secret(SECRET_TWILIO)
        if not token:
            raise NotConfigured(f"No Twilio auth token is stored: enter it in {HINT}.")
        s = self.settings
        body = sms_body(message)

        def create() -> str:
            client = self._client_for(s.account_sid, token, s.api_base)
            created = client.messages.create(to=s.to_number, from_=s.from_number, body=body)
            return str(getattr(created, "sid", ""))

        async def attempt() -> str:
            try:
                return await asyncio.to_thread(create)
            except Exception as exc:
                raise self._translate(exc, token) from None

        sid = await guarded(self.guard, attempt, service=SERVICE, what=f"sms {message.message_id}")
        log.info("sms: %s accepted by Twilio as %s", message.message_id, sid or "(no sid)")

    def _client_for(self, account_sid: str, token: str, api_base: str) -> Any:
        with self._lock:  # to_thread may run two sends at once
            key = (account_sid, token, api_base)
            if self._client is None or self._client_key != key:
                self._client = self._factory(account_sid, token, api_base, self._timeout)
                self._client_key = key
            return self._client

    def _translate(self, exc: Exception, token: str) -> ChannelError:
        status = getattr(exc, "status", None)
        code = getattr(exc, "code", None)
        if isinstance(status, int) and status >= 400 and type(exc).__module__.startswith("twilio"):
            text = getattr(exc, "msg", "") or getattr(exc, "detail", "") or getattr(exc, "title", "") or ""
            detail = redact(" ".join(str(text).split()), [token])[:200]
            if status == 401 or code == 20003:
                return ChannelError(f"Twilio refused the account SID or the auth token: check them in {HINT}.",
                                    kind=FailureKind.AUTH)
            if status == 429:
                return ChannelError("Twilio asked us to slow down; the SMS will be sent a little later.",
                                    kind=FailureKind.RATE_LIMITED)
            if status >= 500:
                return ChannelError(f"Twilio had a server error (HTTP {status}); the SMS will be sent again later.",
                                    kind=FailureKind.UNHEALTHY)
            if isinstance(code, int) and code in _BAD_NUMBER:
                return ChannelError(f"Twilio refused {_BAD_NUMBER[code]} (error {code}): check it in {HINT}.",
                                    kind=FailureKind.BUSINESS)
            kind = FailureKind.AUTH if status == 403 else FailureKind.BUSINESS
            return ChannelError(f"Twilio refused the SMS (HTTP {status}{f', error {code}' if code else ''}): "
                                f"{detail.rstrip('.') or 'no reason given'}.",
                                kind=kind)
        # requests' errors are OSErrors; their texts hold only the host, but redact anyway.
        name = type(exc).__name__
        if "Timeout" in name or isinstance(exc, TimeoutError):
            return ChannelError("Twilio did not answer in time; the SMS will be sent again later "
                                "(if it did arrive, you may get it twice).", kind=FailureKind.UNHEALTHY)
        if isinstance(exc, OSError):
            return ChannelError(f"Twilio could not be reached ({name}); the SMS will be sent when it answers.",
                                kind=FailureKind.UNHEALTHY)
        return ChannelError(f"Sending the SMS failed ({name}); it will be tried again.", kind=FailureKind.UNKNOWN)

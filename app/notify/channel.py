"""What every notification channel shares: the protocol, the error, secrets, the guard.

Decisions others rely on:
* A channel's `send` either returns (delivered) or raises `ChannelError`, whose
  `str()` is a sentence for the user and whose `failure_kind` says what the
  failure means (app.resilience.errors). AUTH and BUSINESS are permanent: the
  outbox marks the row failed and stops. Everything else is retried later.
* Channels raise `ChannelError` from *inside* the guarded call, so the guard
  classifies by `failure_kind` (a refused login never trips the breaker; a
  dead server does) and a Discord 429's `retry_after` opens the breaker for
  exactly as long as Discord asked.
* Sending is not idempotent (a timeout may hide a delivered email), so every
  send is one guard attempt (`idempotent=False`); the outbox does the retrying,
  with its own backoff, across restarts.
* Secrets come from an injected `async secret(name) -> str | None`, read at
  each send (a password changed in the keyring works at once). They are never
  logged, never put in an exception, and `redact` removes them from any text
  a server sent back.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Protocol, TypeVar
from urllib.parse import quote

from app.notify.message import Message
from app.resilience.errors import (
    BulkheadFullError,
    CallTimeoutError,
    CircuitOpenError,
    FailureKind,
    ResilienceError,
)
from app.resilience.guard import Guard

__all__ = [
    "SECRET_DISCORD_BOT",
    "SECRET_DISCORD_WEBHOOK",
    "SECRET_SMTP",
    "SECRET_TWILIO",
    "Channel",
    "ChannelError",
    "NotConfigured",
    "SecretGetter",
    "guarded",
    "redact",
]

T = TypeVar("T")

SecretGetter = Callable[[str], Awaitable[str | None]]
"""`await secret("notify_smtp")` -> the secret, or None when none is stored."""

SECRET_SMTP = "notify_smtp"  # the SMTP password
SECRET_DISCORD_WEBHOOK = "notify_discord_webhook"  # the whole webhook URL (its path holds a token)
SECRET_DISCORD_BOT = "notify_discord_bot"  # the bot token for direct messages
SECRET_TWILIO = "notify_twilio"  # the Twilio auth token

_PERMANENT = (FailureKind.AUTH, FailureKind.BUSINESS)


class ChannelError(Exception):
    """A delivery attempt failed. `str(err)` is a sentence for the user, free of secrets.

    retry_after: seconds the service asked us to wait (a 429); the guard reads it.
    retry_at: wall-clock epoch seconds before which a retry is pointless (an open circuit).
    progress: for channels with several destinations, what was delivered before the failure.
    """

    def __init__(
        self,
        sentence: str,
        *,
        kind: FailureKind,
        retry_after: float | None = None,
        retry_at: float | None = None,
        progress: str | None = None,
    ) -> None:
        super().__init__(sentence)
        self.failure_kind = kind
        self.retry_after = retry_after
        self.retry_at = retry_at
        self.progress = progress

    @property
    def permanent(self) -> bool:
        """True when retrying cannot help until the user changes something."""
        return self.failure_kind in _PERMANENT

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, kind={self.failure_kind.value})"


class NotConfigured(ChannelError):
    """The channel is off or lacks a setting or a secret: nothing was sent."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence, kind=FailureKind.BUSINESS)


class Channel(Protocol):
    """One way of reaching the user. `name` is one of message.CHANNELS."""

    name: str
    guard: Guard

    async def send(self, message: Message, progress: str = "") -> None:
        """Deliver `message` or raise ChannelError. `progress` is what an earlier attempt already delivered."""
        ...

    async def close(self) -> None: ...


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret (also base64- and URL-encoded, as SMTP AUTH and URLs carry them) as ***."""
    for secret in secrets:
        if not secret or len(secret) < 3:
            continue
        forms = {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode().rstrip("=")}
        for form in sorted(forms, key=len, reverse=True):
            if form:
                text = text.replace(form, "***")
    return text


def _clock(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S") if epoch else "a while"


async def guarded(guard: Guard, fn: Callable[[], Awaitable[T]], *, service: str, what: str) -> T:
    """`fn()` as one guarded attempt; the guard's own refusals become sentences about `service`.

    `fn` must raise only ChannelError (wrapping library errors inside the attempt,
    where the guard can classify them).
    """
    try:
        return await guard.call(fn, idempotent=False, what=what)
    except ChannelError:
        raise
    except CircuitOpenError as exc:
        if exc.retry_at is not None:
            sentence = (
                f"{service} notifications are paused until {_clock(exc.retry_at)} after repeated failures "
                f"({exc.last_error or 'no answer'}); this one will be sent then."
            )
        else:
            sentence = f"{service} is recovering from repeated failures; this notification will be sent in a moment."
        raise ChannelError(sentence, kind=FailureKind.REJECTED, retry_at=exc.retry_at) from None
    except BulkheadFullError:
        raise ChannelError(
            f"Too many {service} notifications are being sent at once; this one will be sent shortly.",
            kind=FailureKind.REJECTED,
        ) from None
    except CallTimeoutError as exc:
        raise ChannelError(
            f"{service} did not answer within {exc.timeout:g} s; the notification will be sent again later "
            "(if it did arrive, the copy carries the same message id).",
            kind=FailureKind.UNHEALTHY,
        ) from None
    except ResilienceError as exc:
        raise ChannelError(str(exc), kind=FailureKind.REJECTED) from None
    except Exception as exc:  # a bug in a channel: say what it was, without its text (it may hold a secret)
        raise ChannelError(
            f"{service}: an unexpected {type(exc).__name__} stopped this notification; it will be tried again.",
            kind=FailureKind.UNKNOWN,
        ) from None


"""Discord: webhook messages and direct messages through a bot, with embeds.

Wire format (Discord API v10):
* webhook: `POST <webhook url>?wait=true` with `{"embeds": [...]}`; 200 with the message.
* direct message: `POST /users/@me/channels` `{"recipient_id": id}` -> a DM channel
  (its id is cached), then `POST /channels/{id}/messages`; header `Authorization: Bot <token>`.
* rate limits: a 429's JSON body has `retry_after` (seconds, a float) and `global`;
  every answer may carry `X-RateLimit-Remaining` and `X-RateLimit-Reset-After`
  (seconds): at 0 remaining we wait that long before the next call to that route.

Decisions:
* A 429 never delivered the message, so it is the one failure retried inside
  an outbox attempt: the guard opens the breaker for `retry_after` (the group
  waits, not just this message), then we wait it out and post again, when the
  wait is short (`max_inline_wait`); a longer one goes back to the outbox with
  that time as its earliest retry.
* The webhook URL is a secret (its path holds a token): it lives in the keyring
  ("notify_discord_webhook"), and no sentence, log line or exception carries it.
  With `[notify.discord] api_base` set, its scheme and host are replaced by the
  api_base's (a proxy or a test server); its path is kept.
* When both the webhook and a DM recipient are configured, both get the message;
  `progress` remembers which one already did, so a retry does not repeat it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from app.notify.channel import (
    SECRET_DISCORD_BOT,
    SECRET_DISCORD_WEBHOOK,
    ChannelError,
    NotConfigured,
    SecretGetter,
    guarded,
)
from app.notify.discord_embeds import build_embeds
from app.notify.message import Message
from app.resilience.errors import FailureKind
from app.resilience.guard import Guard
from app.settings import DiscordSettings

__all__ = ["DEFAULT_API_BASE", "DiscordChannel", "DiscordRateLimited"]

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://discord.com/api/v10"
SERVICE = "Discord"
HINT = "Settings → Notifications"
MAX_BODY = 1 << 20


class DiscordRateLimited(ChannelError):
    def __init__(self, retry_after: float, *, is_global: bool) -> None:
        scope = "all requests" if is_global else "this destination"
        super().__init__(
            f"Discord asked us to slow down ({scope}, for {retry_after:.3g} s); the message will be sent after that.",
            kind=FailureKind.RATE_LIMITED,
            retry_after=retry_after,
        )
        self.is_global = is_global


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result and result >= 0 else None  # not NaN, not negative


class DiscordChannel:
    name = "discord"

    def __init__(
        self,
        settings: DiscordSettings,
        secret: SecretGetter,
        guard: Guard,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 15.0,
        max_inline_wait: float = 10.0,
        max_rate_limit_waits: int = 3,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.guard = guard
        self._secret = secret
        self._session = session
        self._own_session = session is None
        self._timeout = timeout
        self._max_inline_wait = max_inline_wait
        self._max_waits = max_rate_limit_waits
        self._monotonic = monotonic
        self._wall = wall
        self._dm_channels: dict[str, str] = {}  # user id -> DM channel id
        self._not_before: dict[str, float] = {}  # route key ("*" = global) -> monotonic time

    def __repr__(self) -> str:
        return f"<DiscordChannel enabled={self.settings.enabled} dm={'yes' if self.settings.user_id else 'no'}>"

    def update(self, settings: DiscordSettings) -> None:
        if settings.user_id != self.settings.user_id or settings.api_base != self.settings.api_base:
            self._dm_channels.clear()
        self.settings = settings

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
            self._own_session = True
        return self._session

    @property
    def api_base(self) -> str:
        return (self.settings.api_base or DEFAULT_API_BASE).rstrip("/")

    # ------------------------------------------------------------------ sending

    async def send(self, message: Message, progress: str = "") -> None:
        s = self.settings
        if not s.enabled:
            raise NotConfigured(f"Discord notifications are off: turn them on in {HINT}.")
        webhook = (await self._secret(SECRET_DISCORD_WEBHOOK) or "").strip()
        token = (await self._secret(SECRET_DISCORD_BOT) or "").strip() if s.user_id else ""
        if s.user_id and not token:
            raise NotConfigured(f"Direct messages need the Discord bot token: enter it in {HINT}.")
        if not webhook and not s.user_id:
            raise NotConfigured(
                f"No Discord webhook is stored and no user is set for direct messages: set one in {HINT}."
            )
        done = set(filter(None, progress.split(",")))
        payload = {"embeds": build_embeds(message), "allowed_mentions": {"parse": []}}
        destinations: list[tuple[str, Callable[[], Any]]] = []
        if webhook:
            url = self._webhook_url(webhook)
            destinations.append(("webhook", lambda: self._post_webhook(url, payload, message)))
        if s.user_id:
            destinations.append(("dm", lambda: self._post_dm(s.user_id, token, payload, message)))
        for name, post in destinations:
            if name in done:
                continue
            try:
                await post()
            except ChannelError as exc:
                exc.progress = ",".join(sorted(done))
                raise
            done.add(name)

    def _webhook_url(self, webhook: str) -> str:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.netloc or "/webhooks/" not in parts.path:
            raise NotConfigured(
                f"The stored Discord webhook is not a webhook URL (https://discord.com/api/webhooks/…): "
                f"copy it again from the channel's Integrations settings into {HINT}."
            )
        if self.settings.api_base:
            base = urlsplit(self.settings.api_base)
            parts = parts._replace(scheme=base.scheme, netloc=base.netloc)
        query = "wait=true"
        return urlunsplit(parts._replace(query=query, fragment=""))

    async def _post_webhook(self, url: str, payload: dict[str, Any], message: Message) -> None:
        route = "webhook:" + urlsplit(url).path.split("/webhooks/", 1)[1].split("/", 1)[0]
        await self._call(route, "POST", url, payload, None, what=f"discord webhook {message.message_id}",
                         refused_401="Discord refused the webhook (its token is invalid): copy the webhook URL "
                         f"again into {HINT}.",
                         missing_404="The Discord webhook no longer exists (it was deleted): create one and store "
                         f"its URL in {HINT}.")

    async def _post_dm(self, user_id: str, token: str, payload: dict[str, Any], message: Message) -> None:
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            answer = await self._call(
                "dm-open", "POST", f"{self.api_base}/users/@me/channels", {"recipient_id": user_id}, token,
                what="discord open DM",
                refused_401=f"Discord refused the bot token: enter it again in {HINT}.",
                missing_404=f"Discord knows no user {user_id}: check the user id in {HINT}.",
            )
            channel_id = str((answer or {}).get("id") or "")
            if not channel_id:
                raise ChannelError("Discord answered without a direct-message channel; it will be tried again.",
                                   kind=FailureKind.UNHEALTHY)
            self._dm_channels[user_id] = channel_id
        try:
            await self._call(
                f"channel:{channel_id}", "POST", f"{self.api_base}/channels/{channel_id}/messages", payload, token,
                what=f"discord DM {message.message_id}",
                refused_401=f"Discord refused the bot token: enter it again in {HINT}.",
                missing_404="",
            )
        except ChannelError as exc:
            if getattr(exc, "status", None) == 404:  # a stale cached channel: open it again next time
                self._dm_channels.pop(user_id, None)
                raise ChannelError("Discord's direct-message channel had gone; it will be opened again.",
                                   kind=FailureKind.UNHEALTHY) from None
            raise

    # ------------------------------------------------------------------ one request, rate limits included

    async def _call(
        self, route: str, method: str, url: str, body: dict[str, Any], token: str | None, *, what: str,
        refused_401: str, missing_404: str,
    ) -> dict[str, Any] | None:
        waits = 0
        while True:
            await self._respect_buckets(route)
            try:
                return await guarded(
                    self.guard,
                    lambda: self._request(route, method, url, body, token, refused_401, missing_404),
                    service=SERVICE,
                    what=what,
                )
            except ChannelError as exc:
                wait = self._wait_for(exc)
                if wait is None or waits >= self._max_waits or wait > self._max_inline_wait:
                    if wait is not None and exc.retry_at is None:
                        exc.retry_at = self._wall() + wait
                    raise
                waits += 1
                log.info("discord: rate limited on %s; waiting %.2f s", route.partition(":")[0], wait)
                await asyncio.sleep(wait)

    def _wait_for(self, exc: ChannelError) -> float | None:
        """How long to wait before posting again inside this attempt, or None to give up."""
        if isinstance(exc, DiscordRateLimited):
            # The guard opened the breaker for retry_after; wait until it lets a probe through.
            return max(exc.retry_after or 0.0, self.guard.breaker.remaining_open()) + 0.02
        if exc.failure_kind is FailureKind.REJECTED and exc.retry_at is not None:
            # Another message's 429 opened the breaker: the same short wait applies to this one.
            return max(0.0, exc.retry_at - self._wall()) + 0.02
        return None

    async def _respect_buckets(self, route: str) -> None:
        now = self._monotonic()
        until = max(self._not_before.get(route, 0.0), self._not_before.get("*", 0.0))
        if until > now:
            delay = until - now
            if delay > self._max_inline_wait:
                raise ChannelError(
                    f"Discord's rate limit allows the next message in {delay:.0f} s; it will be sent then.",
                    kind=FailureKind.REJECTED, retry_at=self._wall() + delay,
                )
            await asyncio.sleep(delay)

    def _note_headers(self, route: str, headers: Any) -> None:
        remaining = headers.get("X-RateLimit-Remaining")
        reset_after = _float(headers.get("X-RateLimit-Reset-After"))
        if remaining is not None and reset_after is not None and str(remaining).strip() == "0":
            self._not_before[route] = self._monotonic() + reset_after

    async def _request(
        self, route: str, method: str, url: str, body: dict[str, Any], token: str | None,
        refused_401: str, missing_404: str,
    ) -> dict[str, Any] | None:
        headers = {"Content-Type": "application/json", "User-Agent": "MeridianTerminal (notifications, 1.0)"}
        if token:
            headers["Authorization"] = f"Bot {token}"
        try:
            async with self._http().request(method, url, data=json.dumps(body), headers=headers) as resp:
                status = resp.status
                self._note_headers(route, resp.headers)
                raw = await resp.content.read(MAX_BODY)
                data = _json(raw)
                if status == 429:
                    retry = _float(data.get("retry_after")) if isinstance(data, dict) else None
                    if retry is None:
                        retry = _float(resp.headers.get("Retry-After")) or 1.0
                    is_global = bool(isinstance(data, dict) and data.get("global")) or (
                        resp.headers.get("X-RateLimit-Global", "").lower() == "true"
                    )
                    if is_global:
                        self._not_before["*"] = self._monotonic() + retry
                    raise DiscordRateLimited(retry, is_global=is_global)
                if 200 <= status < 300:
                    return data if isinstance(data, dict) else None
                raise self._refused(status, data, refused_401, missing_404)
        except ChannelError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ChannelError("Discord did not answer in time; the message will be sent again later.",
                               kind=FailureKind.UNHEALTHY) from None
        except (aiohttp.ClientError, OSError) as exc:
            # aiohttp's texts can hold the URL (the webhook token): say only what kind of failure it was.
            raise ChannelError(
                f"Discord could not be reached ({type(exc).__name__}); the message will be sent when it answers.",
                kind=FailureKind.UNHEALTHY,
            ) from None

    def _refused(self, status: int, data: Any, refused_401: str, missing_404: str) -> ChannelError:
        detail = ""
        if isinstance(data, dict):
            code, text = data.get("code"), str(data.get("message") or "")
            detail = f" ({' '.join(text.split())[:150]}{f', code {code}' if code else ''})" if text else ""
        if status >= 500:
            exc = ChannelError(f"Discord had a server error (HTTP {status}); the message will be sent again later.",
                               kind=FailureKind.UNHEALTHY)
        elif status == 401:
            exc = ChannelError(refused_401, kind=FailureKind.AUTH)
        elif status == 403:
            exc = ChannelError(
                f"Discord did not allow the message{detail}: check that the bot shares a server with the user and "
                "that they accept direct messages, or check the webhook's channel permissions.",
                kind=FailureKind.AUTH,
            )
        elif status == 404 and missing_404:
            exc = ChannelError(missing_404, kind=FailureKind.BUSINESS)
        else:
            exc = ChannelError(f"Discord refused the message (HTTP {status}){detail}.", kind=FailureKind.BUSINESS)
        exc.status = status  # type: ignore[attr-defined]
        return exc


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None

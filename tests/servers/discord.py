"""A local server on 127.0.0.1 that speaks the parts of Discord's HTTP API v10 the app uses.

    async with DiscordServer() as srv:
        settings = DiscordSettings(enabled=True, api_base=srv.api_base)
        secret = {"notify_discord_webhook": srv.webhook_url}           # a real-looking discord.com URL
        srv.faults.rate_limit(retry_after=0.3)                          # next answer: 429 with retry_after
        srv.faults.status(502, times=2)                                 # next two answers: a server error
        srv.faults.status(503, kind="dm")                               # only the next DM fails
        srv.faults.exhaust_bucket(reset_after=0.5)                      # next answer: X-RateLimit-Remaining 0
        srv.faults.hang(5.0)                                            # answer late
        await srv.stop(); await srv.start()                             # down, then up on the same port
        srv.messages                                                    # what was delivered (webhook and DM)

Endpoints (https://discord.com/developers/docs):
* POST <prefix>/webhooks/{id}/{token}[?wait=true]  — 200 with the message when `wait=true`, else 204;
  an unknown id is 404 `Unknown Webhook` (10015), a wrong token 401 `Invalid Webhook Token` (50027).
* POST /api/v10/users/@me/channels {"recipient_id"} — a DM channel object (type 1).
* POST /api/v10/channels/{id}/messages — needs `Authorization: Bot <token>`, else 401.

Like Discord, the server *validates embeds* and answers 400 `Invalid Form Body` (50035) when a
message breaks a limit (10 embeds; title 256, description 4096, 25 fields, field name 256, value
1024, footer 2048; 6000 characters in all), so a client that overflows finds out in tests.
Rate limits: every answer carries X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket; a 429
has the JSON body {"message", "retry_after" (seconds, float), "global"} plus Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.servers.base import HOST, LocalHttpServer

WEBHOOK_ID = "1234567890123456789"
WEBHOOK_TOKEN = "whk-SECRET-token-abcdefghijklmnopqrstuvwxyz0123456789"
BOT_TOKEN = "bot-SECRET-token-MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.Gabcde.0123456789"
USER_ID = "80351110224678912"
DM_CHANNEL_ID = "319674150115610528"

LIMITS = {"embeds": 10, "title": 256, "description": 4096, "fields": 25, "field_name": 256, "field_value": 1024,
          "footer": 2048, "author": 256, "total": 6000}


@dataclass
class Received:
    """One request the server answered."""

    kind: str  # "webhook" | "dm-open" | "dm"
    path: str
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class _Fault:
    status: int
    times: int
    retry_after: float | None = None
    is_global: bool = False
    delay: float = 0.0
    reset_after: float | None = None  # only a header, with a normal answer
    kind: str | None = None  # only requests of this kind ("webhook", "dm-open", "dm"); None: any


@dataclass
class Faults:
    queue: list[_Fault] = field(default_factory=list)

    def rate_limit(self, retry_after: float = 0.5, times: int = 1, *, is_global: bool = False,
                   kind: str | None = None) -> None:
        self.queue.append(_Fault(429, times, retry_after=retry_after, is_global=is_global, kind=kind))

    def status(self, status: int, times: int = 1, *, kind: str | None = None) -> None:
        self.queue.append(_Fault(status, times, kind=kind))

    def hang(self, seconds: float, times: int = 1, *, kind: str | None = None) -> None:
        self.queue.append(_Fault(0, times, delay=seconds, kind=kind))

    def exhaust_bucket(self, reset_after: float, times: int = 1, *, kind: str | None = None) -> None:
        self.queue.append(_Fault(0, times, reset_after=reset_after, kind=kind))

    def clear(self) -> None:
        self.queue.clear()

    def take(self, kind: str) -> _Fault | None:
        for i, fault in enumerate(self.queue):
            if fault.kind is None or fault.kind == kind:
                fault.times -= 1
                if fault.times <= 0:
                    self.queue.pop(i)
                return fault
        return None


def embed_problems(payload: Any) -> list[str]:
    """What Discord would refuse in a message payload (empty: valid)."""
    problems: list[str] = []
    if not isinstance(payload, dict):
        return ["the body is not a JSON object"]
    embeds = payload.get("embeds") or []
    if not embeds and not payload.get("content"):
        problems.append("cannot send an empty message")
    if len(embeds) > LIMITS["embeds"]:
        problems.append(f"{len(embeds)} embeds > 10")
    total = 0
    for i, e in enumerate(embeds):
        for key, limit in (("title", "title"), ("description", "description")):
            if len(e.get(key, "")) > LIMITS[limit]:
                problems.append(f"embeds[{i}].{key} longer than {LIMITS[limit]}")
            total += len(e.get(key, ""))
        fields = e.get("fields", [])
        if len(fields) > LIMITS["fields"]:
            problems.append(f"embeds[{i}] has {len(fields)} fields > 25")
        for j, f in enumerate(fields):
            if not f.get("name") or len(f["name"]) > LIMITS["field_name"]:
                problems.append(f"embeds[{i}].fields[{j}].name empty or longer than 256")
            if not f.get("value") or len(f["value"]) > LIMITS["field_value"]:
                problems.append(f"embeds[{i}].fields[{j}].value empty or longer than 1024")
            total += len(f.get("name", "")) + len(f.get("value", ""))
        footer = e.get("footer", {}).get("text", "")
        if len(footer) > LIMITS["footer"]:
            problems.append(f"embeds[{i}].footer.text longer than 2048")
        total += len(footer) + len(e.get("author", {}).get("name", ""))
        if "color" in e and not (0 <= int(e["color"]) <= 0xFFFFFF):
            problems.append(f"embeds[{i}].color out of range")
    if total > LIMITS["total"]:
        problems.append(f"embeds hold {total} characters > 6000")
    return problems


class DiscordServer(LocalHttpServer):
    def __init__(self, *, port: int = 0, bucket_limit: int = 5) -> None:
        super().__init__(port=port)
        self.faults = Faults()
        self.requests: list[Received] = []
        self.bucket_limit = bucket_limit
        self.request_times: list[float] = []  # monotonic arrival time of each request
        self.app.router.add_post(r"/{prefix:.*}/webhooks/{id}/{token}", self._webhook)
        self.app.router.add_post("/api/v10/users/@me/channels", self._open_dm)
        self.app.router.add_post(r"/api/v10/channels/{id}/messages", self._dm)

    @property
    def api_base(self) -> str:
        return f"http://{HOST}:{self.port}/api/v10"

    @property
    def webhook_url(self) -> str:
        """As Discord shows it; the client swaps the host for api_base's."""
        return f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"

    @property
    def messages(self) -> list[Received]:
        """Messages that were delivered (2xx), webhook and DM."""
        return [r for r in self.requests if r.kind in ("webhook", "dm") and 200 <= r.status < 300]

    # ------------------------------------------------------------------ answers

    def _headers(self, route: str, remaining: int, reset_after: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.bucket_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": f"bucket-{route}",
        }

    async def _answer(self, request: web.Request, kind: str, ok: Any, *, check_embeds: bool) -> web.Response:
        self.request_times.append(time.monotonic())
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        fault = self.faults.take(kind)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        status, payload, extra = 200, ok, self._headers(kind, self.bucket_limit - 1, 1.0)
        if fault is not None and fault.status == 429:
            assert fault.retry_after is not None
            status = 429
            payload = {"message": "You are being rate limited.", "retry_after": fault.retry_after,
                       "global": fault.is_global}
            extra = self._headers(kind, 0, fault.retry_after)
            extra["Retry-After"] = str(math.ceil(fault.retry_after))
            extra["X-RateLimit-Scope"] = "global" if fault.is_global else "user"
            if fault.is_global:
                extra["X-RateLimit-Global"] = "true"
        elif fault is not None and fault.status:
            status = fault.status
            payload = {"message": "Internal Server Error" if status >= 500 else "error", "code": 0}
        elif fault is not None and fault.reset_after is not None:
            extra = self._headers(kind, 0, fault.reset_after)
        elif check_embeds and (problems := embed_problems(body)):
            status = 400
            payload = {"message": "Invalid Form Body", "code": 50035, "errors": problems}
        self.requests.append(Received(kind, request.path, status, body, headers))
        if status == 200 and payload is None:
            return web.Response(status=204, headers=extra)
        return web.json_response(payload, status=status, headers=extra)

    async def _webhook(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != WEBHOOK_ID:
            self.requests.append(Received("webhook", request.path, 404, None, {}))
            return web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        if request.match_info["token"] != WEBHOOK_TOKEN:
            self.requests.append(Received("webhook", request.path, 401, None, {}))
            return web.json_response({"message": "Invalid Webhook Token", "code": 50027}, status=401)
        wait = request.query.get("wait", "false").lower() == "true"
        message = {"id": str(int(time.time() * 1000)), "channel_id": "555", "webhook_id": WEBHOOK_ID}
        return await self._answer(request, "webhook", message if wait else None, check_embeds=True)

    def _bot_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {BOT_TOKEN}"

    async def _open_dm(self, request: web.Request) -> web.Response:
        if not self._bot_ok(request):
            self.requests.append(Received("dm-open", request.path, 401, None, {}))
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        channel = {"id": DM_CHANNEL_ID, "type": 1, "recipients": [{"id": USER_ID, "username": "trader"}]}
        return await self._answer(request, "dm-open", channel, check_embeds=False)

    async def _dm(self, request: web.Request) -> web.Response:
        if not self._bot_ok(request):
            self.requests.append(Received("dm", request.path, 401, None, {}))
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        if request.match_info["id"] != DM_CHANNEL_ID:
            self.requests.append(Received("dm", request.path, 404, None, {}))
            return web.json_response({"message": "Unknown Channel", "code": 10003}, status=404)
        message = {"id": str(int(time.time() * 1000)), "channel_id": DM_CHANNEL_ID}
        return await self._answer(request, "dm", message, check_embeds=True)
